"""SAC's formulas (agents/sac_math.py) against independent numeric computations. Eager mode."""
import math

import agents_support  # noqa: F401  (paths, tf-keras)
import numpy as np
import pytest

from agents import sac_math
from agents.compat import tf


def _normal_cdf(x):
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def _numeric_density(action, mean, std, h=1e-6):
    """d/da P(tanh(U) <= a) for U ~ N(mean, std), by central differences of the CDF."""
    def cdf(a):
        return _normal_cdf((math.atanh(a) - mean) / std)
    return (cdf(action + h) - cdf(action - h)) / (2 * h)


@pytest.mark.parametrize('mean,log_std', [(0.3, -0.5), (-1.2, 0.4), (0.0, -2.0)])
def test_log_prob_matches_the_numeric_density_of_tanh_of_a_gaussian(mean, log_std):
    noise = np.array([-2.0, -1.0, -0.3, 0.0, 0.5, 1.5, 2.2])
    actions, log_prob = sac_math.squashed_sample(
        tf.constant(np.full((len(noise), 1), mean)), tf.constant(np.full((len(noise), 1), log_std)),
        tf.constant(noise[:, None]))
    actions, log_prob = actions.numpy()[:, 0], log_prob.numpy()
    np.testing.assert_allclose(actions, np.tanh(mean + np.exp(log_std) * noise), rtol=1e-12)
    numeric = [_numeric_density(a, mean, math.exp(log_std)) for a in actions]
    np.testing.assert_allclose(np.exp(log_prob), numeric, rtol=1e-4)


def test_log_prob_sums_over_action_dimensions():
    mean = tf.constant([[0.2, -0.7]], dtype=tf.float64)
    log_std = tf.constant([[-0.3, 0.1]], dtype=tf.float64)
    noise = tf.constant([[0.4, -1.1]], dtype=tf.float64)
    _, joint = sac_math.squashed_sample(mean, log_std, noise)
    parts = [sac_math.squashed_sample(mean[:, i:i + 1], log_std[:, i:i + 1], noise[:, i:i + 1])[1]
             for i in range(2)]
    np.testing.assert_allclose(joint.numpy(), (parts[0] + parts[1]).numpy(), rtol=1e-12)


def test_log_prob_stays_finite_where_tanh_saturates_in_float32():
    # tanh(12) rounds to 1.0 in float32: the naive log(1 - tanh^2) would be log(0) = -inf.
    actions, log_prob = sac_math.squashed_sample(tf.constant([[12.0]]), tf.constant([[-3.0]]),
                                                 tf.constant([[0.5]]))
    assert actions.numpy()[0, 0] == 1.0
    assert np.isfinite(log_prob.numpy()).all()
    # analytic value: log N(u) - log(1 - tanh(u)^2) with u = 12 + e^-3 * 0.5, in float64
    u = 12.0 + math.exp(-3.0) * 0.5
    expected = (-0.5 * 0.25 + 3.0 - 0.5 * math.log(2 * math.pi)
                - (2 * (math.log(2) - u - math.log1p(math.exp(-2 * u)))))
    np.testing.assert_allclose(log_prob.numpy()[0], expected, rtol=1e-5)


def test_log_std_is_clipped_to_the_reference_range():
    _, wide = sac_math.squashed_sample(tf.constant([[0.0]]), tf.constant([[50.0]]),
                                       tf.constant([[0.0]]))
    _, at_max = sac_math.squashed_sample(tf.constant([[0.0]]),
                                         tf.constant([[sac_math.LOG_STD_MAX]]), tf.constant([[0.0]]))
    np.testing.assert_allclose(wide.numpy(), at_max.numpy())


def test_critic_target_bootstraps_unless_terminal_and_uses_the_smaller_critic():
    y = sac_math.critic_target(rewards=tf.constant([1.0, 1.0]), terminals=tf.constant([0.0, 1.0]),
                               gamma=0.9, next_q1=tf.constant([10.0, 10.0]),
                               next_q2=tf.constant([8.0, 8.0]),
                               next_log_prob=tf.constant([-1.0, -1.0]), alpha=0.5)
    # soft value = min(10, 8) - 0.5 * (-1) = 8.5
    np.testing.assert_allclose(y.numpy(), [1.0 + 0.9 * 8.5, 1.0], rtol=1e-6)


@pytest.mark.parametrize('log_prob,target_entropy,alpha_should', [
    (-0.5, -1.0, 'fall'),   # entropy 0.5 above the target -1
    (2.0, -1.0, 'rise'),    # entropy -2 below the target -1
])
def test_temperature_gradient_step_moves_alpha_towards_the_target_entropy(
        log_prob, target_entropy, alpha_should):
    log_alpha = tf.Variable(0.0)
    with tf.GradientTape() as tape:
        loss = sac_math.temperature_loss(log_alpha, tf.constant([log_prob, log_prob]),
                                         target_entropy)
    grad = tape.gradient(loss, log_alpha).numpy()
    stepped = 0.0 - 0.1 * grad  # one gradient-descent step
    assert (stepped > 0) == (alpha_should == 'rise')
    assert stepped != 0
