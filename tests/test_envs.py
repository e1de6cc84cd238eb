"""envs/: names, adapters, plain-data spaces, frame skip, bad input; osim-rl's own `envs` package
still importable next to ours."""
import numpy as np
import pytest

import envs
from envs.base import FrameSkip


def test_unknown_name_lists_what_is_known():
    with pytest.raises(envs.EnvError, match="unknown environment 'nope'.*CheapEnv.*L2M2019Env"):
        envs.make('nope')
    with pytest.raises(envs.EnvError, match='must be a string'):
        envs.make(['CheapEnv'])


def test_cheap_env_is_deterministic_and_terminates():
    env = envs.make('CheapEnv', episode_length=2)
    assert env.reset(seed=5).tolist() == [0, 5, 5]
    assert env.step([0.5, 0.5])[2] is False
    obs, reward, terminated, truncated, info = env.step([0.0, 1.0])
    assert terminated and not truncated and reward == -0.5 and obs.tolist() == [2, 7, 7]


def test_slow_env_has_the_requested_observation_and_cost():
    env = envs.make('SlowEnv', step_seconds=0.02, obs_size=339)
    assert env.observation_space['shape'] == [339] and env.action_space['shape'] == [22]
    assert len(env.reset()) == 339
    import time
    started = time.time()
    env.step([0.0] * 22)
    assert time.time() - started >= 0.02


def test_frame_skip_repeats_on_the_farm_side_and_sums_rewards():
    env = envs.make('CheapEnv', frame_skip=3, episode_length=7)
    assert isinstance(env, FrameSkip)
    env.reset()
    obs, reward, terminated, _, _ = env.step([0.0, 0.0])
    assert obs[0] == 3 and reward == pytest.approx(-1.5)
    env.step([0.5, 0.5])
    obs, _, terminated, _, _ = env.step([0.5, 0.5])
    assert obs[0] == 7 and terminated  # stops at the episode's end, not after 9


def test_bad_actions_name_the_problem():
    env = envs.make('CheapEnv')
    env.reset()
    for action, message in (([1.0], 'length 1, expected 2'), ([np.nan, 0], 'must be finite'),
                            ([np.inf, 0], 'must be finite'), ('ab', 'must be a list')):
        with pytest.raises(envs.EnvError, match=message):
            env.step(action)


def test_gym_ids_are_built_by_name():
    env = envs.make('Pendulum-v1')
    assert env.observation_space['shape'] == [3] and env.max_episode_steps == 200
    assert len(env.reset(seed=0)) == 3
    assert len(env.step([0.0])) == 5


def test_osim_rl_own_envs_package_still_resolves():
    import envs.target  # osim-rl's, found through our package's extended __path__
    assert hasattr(envs.target, 'VTgtField')


@pytest.mark.parametrize('name,obs_size,act_size,limit', [('L2M2019Env', 339, 22, 1000),
                                                          ('Arm2DEnv', 16, 6, 200)])
def test_osim_envs_are_headless_flat_vectors(name, obs_size, act_size, limit):
    kwargs = {'difficulty': 2, 'seed': 3} if name == 'L2M2019Env' else {}
    env = envs.make(name, integrator_accuracy=1e-3, **kwargs)
    assert env.observation_space['shape'] == [obs_size]
    assert env.action_space['shape'] == [act_size] and env.max_episode_steps == limit
    obs = env.reset()
    assert np.asarray(obs).shape == (obs_size,)
    obs, reward, terminated, truncated, info = env.step([0.1] * act_size)
    assert np.asarray(obs).shape == (obs_size,) and np.isfinite(obs).all()
    assert isinstance(reward, float)
    with pytest.raises(envs.EnvError, match="Arm2DEnv: .*unexpected keyword argument 'difficulty'"):
        envs.make('Arm2DEnv', difficulty=1)
