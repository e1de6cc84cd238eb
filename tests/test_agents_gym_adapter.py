"""agents/gym_adapter.py: keras-rl's 4-tuple API over gymnasium."""
import agents_support  # noqa: F401  (paths)
import gymnasium
import numpy as np

from agents.gym_adapter import OldGymAPI


def test_four_tuple_api_marks_time_limits_and_seeds_the_first_reset_only():
    env = OldGymAPI(gymnasium.make('Pendulum-v1', max_episode_steps=3), seed=7)
    first = env.reset()
    assert first.dtype == np.float32 and first.shape == (3,)
    infos = []
    for _ in range(3):
        obs, reward, done, info = env.step(np.zeros(1, np.float32))
        infos.append(info)
    assert done and infos[-1].get('TimeLimit.truncated') is True
    assert not any('TimeLimit.truncated' in info for info in infos[:-1])
    np.testing.assert_array_equal(OldGymAPI(gymnasium.make('Pendulum-v1'), seed=7).reset(), first)
    assert not np.array_equal(env.reset(), first)  # later episodes are not re-seeded
    assert env.render(mode='human') is None
    env.close()


def test_wraps_a_plain_data_envs_adapter():
    import envs
    env = OldGymAPI(envs.make('CheapEnv', obs_size=2, episode_length=2), seed=3)
    np.testing.assert_array_equal(env.reset(), [0, 3])
    env.step([0.5, 0.5])
    obs, reward, done, info = env.step([0.5, 0.5])
    assert done and reward == 0.0 and 'TimeLimit.truncated' not in info
