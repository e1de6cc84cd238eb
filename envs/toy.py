"""The project's own environments, which need only numpy: for tests, benchmarks and fault drills.

- ``CheapEnv``: deterministic and instant. The observation is ``[t, x0, x1, ...]``; reward is
  ``-sum((a - 0.5)**2)``; terminated after ``episode_length`` steps, unless ``max_episode_steps``
  truncates it first. ``hang_after`` / ``crash_after`` steps make the worker hang forever or die
  (``os._exit``): the farm's failure handling is tested against real misbehaving processes.
  ``reset(seed)`` offsets the observation by the seed; an unseeded reset by 0 (tests rely on both).
  ``diverge_after`` steps of an episode, its observation turns to NaN, as a diverging simulator's
  does: envs.guard's handling is tested through real farms, whose workers build envs by name.
- ``SlowEnv``: each step costs ``step_seconds`` (sleeping, like a simulator waiting on nothing the
  farm can help with) and returns an observation of ``obs_size`` floats (339 as L2M2019Env). Each
  episode starts from an observation drawn from its own RNG, which ``seed`` (at construction or
  reset) seeds and unseeded resets continue. ``set_params`` takes ``step_seconds``.
"""
from __future__ import absolute_import, division

import numbers
import os
import time

import numpy as np

from envs.base import EnvAdapter, EnvError, box, unbounded_box
from envs.seeding import derive


def _rng(seed):
    # derived: RandomState takes 32 bits, a seed may be any non-negative integer
    return np.random.RandomState(None if seed is None else derive(seed, 'SlowEnv'))


def _number(env, key, value, kind, minimum):
    # A bool is an int to Python; a curriculum that sets a length to True is a mistake.
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
            or (minimum is not None and value < minimum)):
        raise EnvError('%s: parameter %s must be a number%s, got %r'
                       % (env.name, key, '' if minimum is None else ' >= %s' % minimum, value))
    return kind(value)


class CheapEnv(EnvAdapter):
    name = 'CheapEnv'
    settable_params = ('episode_length', 'offset')

    def __init__(self, obs_size=3, act_size=2, episode_length=10, max_episode_steps=None,
                 hang_after=None, crash_after=None, diverge_after=None):
        self.obs_size = int(obs_size)
        self.observation_space = unbounded_box(self.obs_size)
        self.action_space = box([0.0] * int(act_size), [1.0] * int(act_size))
        self.episode_length = int(episode_length)
        self.max_episode_steps = max_episode_steps
        self.hang_after = hang_after
        self.crash_after = crash_after
        self.diverge_after = diverge_after
        self.t = 0
        self.total_steps = 0
        self.offset = 0.0
        self.base_offset = 0.0

    def check_param(self, key, value):
        return _number(self, key, value, int if key == 'episode_length' else float,
                       None if key == 'offset' else 0)

    def apply_params(self, params):
        if 'episode_length' in params:
            self.episode_length = params['episode_length']
        if 'offset' in params:
            self.base_offset = params['offset']

    def _obs(self):
        obs = np.full(self.obs_size, self.offset + self.t, dtype=float)
        obs[0] = self.t
        if self.diverge_after is not None and self.t > self.diverge_after:
            obs[:] = np.nan
        return obs

    def reset(self, seed=None):
        self.take_params()
        self.t = 0
        self.offset = self.base_offset + float(seed or 0)
        return self._obs()

    def step(self, action):
        self.total_steps += 1
        if self.crash_after is not None and self.total_steps > self.crash_after:
            os._exit(3)
        if self.hang_after is not None and self.total_steps > self.hang_after:
            while True:
                time.sleep(60)
        a = np.asarray(action, dtype=float)
        self.t += 1
        reward = -float(np.sum((a - 0.5) ** 2))
        terminated = self.t >= self.episode_length
        truncated = (not terminated and self.max_episode_steps is not None
                     and self.t >= self.max_episode_steps)
        return self._obs(), reward, terminated, truncated, {'t': self.t}


class SlowEnv(EnvAdapter):
    name = 'SlowEnv'
    settable_params = ('step_seconds',)

    def __init__(self, step_seconds=0.03, obs_size=339, act_size=22, episode_length=1000,
                 seed=None):
        self.step_seconds = float(step_seconds)
        self.observation_space = unbounded_box(int(obs_size))
        self.action_space = box([0.0] * int(act_size), [1.0] * int(act_size))
        self.max_episode_steps = int(episode_length)
        self.obs_size = int(obs_size)
        self.rng = _rng(seed)
        self.obs = self.rng.uniform(-1, 1, self.obs_size)
        self.t = 0

    def check_param(self, key, value):
        return _number(self, key, value, float, 0)

    def reset(self, seed=None):
        self.take_params()
        if seed is not None:
            self.rng = _rng(seed)
        self.t = 0
        self.obs = self.rng.uniform(-1, 1, self.obs_size)
        return self.obs

    def step(self, action):
        if self.step_seconds > 0:
            time.sleep(self.step_seconds)
        self.t += 1
        # The observation changes a little each step so that nothing can cache it; computing it
        # costs microseconds next to the sleep.
        self.obs[self.t % len(self.obs)] = self.t
        return self.obs, 0.0, False, self.t >= self.max_episode_steps, {}
