"""agents/noise.py: one independent exploration process per environment."""
import agents_support  # noqa: F401  (paths)
import numpy as np
import pytest

from agents.noise import VectorNoise


def test_ou_processes_are_independent_per_env_and_reset_one_at_a_time():
    noise = VectorNoise(2, 'ou', sigma=0.3, theta=0.15, dt=1.0, seed=0)
    samples = np.array([noise.sample(3) for _ in range(2000)])  # (time, env, act)
    assert samples.shape == (2000, 3, 2)
    # OU is correlated in time within an env, and uncorrelated across envs
    lag1 = np.corrcoef(samples[1:, 0, 0], samples[:-1, 0, 0])[0, 1]
    across = np.corrcoef(samples[:, 0, 0], samples[:, 1, 0])[0, 1]
    assert lag1 > 0.7 and abs(across) < 0.2
    noise.reset([1])
    assert (noise.state[1] == 0).all() and (noise.state[[0, 2]] != 0).all()


def test_gaussian_noise_has_the_asked_scale_and_no_memory():
    noise = VectorNoise(1, 'gaussian', sigma=0.2, seed=0)
    samples = np.array([noise.sample(4) for _ in range(3000)])[:, :, 0]
    assert abs(samples.std() - 0.2) < 0.01
    assert abs(np.corrcoef(samples[1:, 0], samples[:-1, 0])[0, 1]) < 0.1


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match='gaussian'):
        VectorNoise(1, 'pink')
