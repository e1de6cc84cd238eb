"""The formulas of Soft Actor-Critic (Haarnoja et al. 2018, arXiv:1812.05905), as TensorFlow ops.

Pure functions over tensors, usable eagerly (tests) and inside the agent's update graph:

- :func:`squashed_sample`: ``a = tanh(mean + std * noise)`` and its log-probability
  ``log N(u; mean, std) - sum log(1 - tanh(u)^2)`` (change of variables, paper appendix C).
- :func:`critic_target`: ``y = r + gamma * (1 - terminal) * (min(Q1', Q2') - alpha * log pi(a'|s'))``.
- :func:`temperature_loss`: ``-log_alpha * (log pi + target_entropy)``, whose gradient raises
  ``alpha`` when the policy's entropy is below the target and lowers it above.
"""
import math

from agents.compat import tf

LOG_STD_MIN = -20.0  # the clamp used by the reference implementations
LOG_STD_MAX = 2.0
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_LOG_2 = math.log(2.0)


def squashed_sample(mean, log_std, noise):
    """``(action, log_prob)`` for standard-normal ``noise``; ``log_prob`` sums over action dims."""
    log_std = tf.clip_by_value(log_std, LOG_STD_MIN, LOG_STD_MAX)
    pre_tanh = mean + tf.exp(log_std) * noise
    # (pre_tanh - mean) / std is the noise itself: no division, exact under the reparametrization.
    gaussian = tf.reduce_sum(-0.5 * tf.square(noise) - log_std - _HALF_LOG_2PI, axis=-1)
    # log(1 - tanh(u)^2) = 2 * (log 2 - u - softplus(-2u)): finite even where tanh(u) rounds to 1
    # (the form used in OpenAI Spinning Up's SAC).
    log_det = tf.reduce_sum(2.0 * (_LOG_2 - pre_tanh - tf.nn.softplus(-2.0 * pre_tanh)), axis=-1)
    return tf.tanh(pre_tanh), gaussian - log_det


def critic_target(rewards, terminals, gamma, next_q1, next_q2, next_log_prob, alpha):
    """Soft Bellman target; ``terminals`` is 1.0 for a true end (truncation is 0.0)."""
    soft_value = tf.minimum(next_q1, next_q2) - alpha * next_log_prob
    return rewards + gamma * (1.0 - terminals) * soft_value


def temperature_loss(log_alpha, log_prob, target_entropy):
    """Loss whose gradient step moves ``log_alpha`` towards the target entropy."""
    return -tf.reduce_mean(log_alpha * tf.stop_gradient(log_prob + target_entropy))
