"""``DrillEnv``: an environment whose every observation says where it came from, for fault drills.

The observation is ``[id_hi, id_lo, episode, t, x]``:

- ``id_hi``, ``id_lo``: a random 48-bit identity drawn when the instance is built (two 24-bit
  integers, each divided by 2**24), so a worker that is replaced or recycled starts a new identity;
- ``episode``: how many resets this instance has done, minus one (the first episode is 0), / 1024;
- ``t``: steps since that reset, / 1024;
- ``x``: a small signal for the policy to follow (the reward is ``-sum((a - x)**2)``).

Every value is an integer times a power of two below 2**24, so it survives float64 -> float32 ->
float64 exactly: the learner's replay memory can be decoded back to ``(identity, episode, t)``
without rounding doubt (bench/drills.py does). Episodes end *terminated* after
``episode_length`` steps, or *truncated* at ``max_episode_steps``; ``step_seconds`` sleeps in
each step, like a simulator, so that faults land mid-episode. Needs numpy only; Python 2.7
compatible.
"""
from __future__ import absolute_import, division

import random
import time

import numpy as np

from envs.base import EnvAdapter, box, unbounded_box

ID_SCALE = float(2 ** 24)
COUNT_SCALE = 1024.0
OBS_SIZE = 5


class DrillEnv(EnvAdapter):
    name = 'DrillEnv'

    def __init__(self, episode_length=50, max_episode_steps=None, step_seconds=0.0, act_size=1):
        # SystemRandom: two workers forked from the same forkserver must not share an identity.
        draw = random.SystemRandom()
        self.identity = (draw.randrange(1, 2 ** 24), draw.randrange(0, 2 ** 24))
        self.episode_length = int(episode_length)
        self.max_episode_steps = None if max_episode_steps is None else int(max_episode_steps)
        self.step_seconds = float(step_seconds)
        self.observation_space = unbounded_box(OBS_SIZE)
        self.action_space = box([-1.0] * int(act_size), [1.0] * int(act_size))
        self.episode = -1
        self.t = 0

    def _x(self):
        return ((self.t % 16) - 8) / 16.0

    def _obs(self):
        return [self.identity[0] / ID_SCALE, self.identity[1] / ID_SCALE,
                self.episode / COUNT_SCALE, self.t / COUNT_SCALE, self._x()]

    def reset(self, seed=None):
        # The seed is deliberately ignored for the identity: identity is per instance.
        self.episode += 1
        self.t = 0
        return self._obs()

    def step(self, action):
        if self.step_seconds > 0:
            time.sleep(self.step_seconds)
        reward = -float(np.sum((np.asarray(action, dtype=float) - self._x()) ** 2))
        self.t += 1
        terminated = self.t >= self.episode_length
        truncated = (not terminated and self.max_episode_steps is not None
                     and self.t >= self.max_episode_steps)
        return self._obs(), reward, terminated, truncated, {}
