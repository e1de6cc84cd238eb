"""RemoteEnv: one environment on a farm with the gym interface (``Farmer.env(name)``).

A one-environment FarmVecEnv underneath: ``reset(seed=None, options=None) -> (obs, info)`` and the
5-tuple ``step``, with the episodes a local environment stepped the same way would give. The farm
auto-resets, so after ``terminated`` or ``truncated`` an unseeded ``reset()`` returns the first
observation the farm already has (an osim-rl reset, 85 ms, is not paid twice). A lost farm or
worker shows as a truncated step with ``info['lost']``, as in the vector env. Observations are
those of the vector env's row: a float32 array, or for a ``Discrete`` space an ``int``, as the
local environment returns it.

Python 3.6 compatible.
"""
import numpy as np

from vecenv.contract import gym_spaces_lib


class RemoteEnv(gym_spaces_lib.Env):
    """One remote environment with the gym interface (reset -> (obs, info); 5-tuple step).

    After ``terminated`` or ``truncated``, call ``reset`` as usual. The farm has already reset the
    environment by then (auto-reset), so ``reset()`` without a seed returns that first
    observation without a second reset: episodes are those of a local env stepped the same way,
    and an osim-rl reset (85 ms) is not paid twice.
    """

    metadata = {'render_modes': []}

    def __init__(self, vec_env):
        self.vec = vec_env
        self.observation_space = vec_env.observation_space
        self.action_space = vec_env.action_space
        # A Discrete observation is an int64 scalar in the vector env's row: an int here, as
        # gym(nasium)'s own Discrete environments return it.
        discrete = isinstance(self.observation_space, gym_spaces_lib.spaces.Discrete)
        self._single = int if discrete else _as_is
        self._next_obs = None  # the next episode's first observation, once an episode ended

    def reset(self, seed=None, options=None):
        super(RemoteEnv, self).reset(seed=seed)  # seeds np_random, as gym's contract expects
        if seed is None and self._next_obs is not None:
            obs = self._next_obs
        else:
            obs = self._single(self.vec.reset(seed=seed)[0])
        self._next_obs = None
        return obs, {}

    def step(self, action):
        obs, rewards, terminated, truncated, infos = self.vec.step(
            np.asarray(action, dtype=np.float64).reshape(1, -1))
        info = infos[0]
        obs = self._single(obs[0])
        if 'terminal_observation' in info:
            self._next_obs = obs
            obs = self._single(info.pop('terminal_observation'))
            info.pop('episode', None)
        else:
            self._next_obs = None
        return obs, float(rewards[0]), bool(terminated[0]), bool(truncated[0]), info

    def close(self):
        self.vec.close()


def _as_is(obs):
    return obs
