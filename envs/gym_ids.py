"""Any registered gymnasium or gym id (``Pendulum-v1``, ...), as a flat-vector adapter.

gymnasium is tried first: gym 0.26's environment checker and some of its classic-control code use
``np.bool8``, which numpy 2 removed. Python 2.7 farms have neither, and say so.
"""
from __future__ import absolute_import

import numpy as np

from envs.base import EnvAdapter, EnvError, box, discrete


def _space(space, env_id):
    if hasattr(space, 'n') and not hasattr(space, 'low'):
        return discrete(space.n)
    if hasattr(space, 'low'):
        return box(space.low, space.high)
    raise EnvError('%s: space %r is neither Box nor Discrete; only flat vectors cross the wire'
                   % (env_id, space))


def known(env_id):
    for module in ('gymnasium', 'gym'):
        try:
            registry = __import__(module).envs.registry
        except Exception:  # not installed, or broken on this numpy
            continue
        if env_id in registry:
            return module
    return None


class GymAdapter(EnvAdapter):
    def __init__(self, env_id, **kwargs):
        module = known(env_id)
        if module is None:
            raise EnvError("unknown environment '%s'" % (env_id,))
        self.name = env_id
        lib = __import__(module)
        try:
            if module == 'gym':
                self.env = lib.make(env_id, disable_env_checker=True, **kwargs)
            else:
                self.env = lib.make(env_id, **kwargs)
        except TypeError as e:
            raise EnvError('%s: %s' % (env_id, e))
        self.observation_space = _space(self.env.observation_space, env_id)
        self.action_space = _space(self.env.action_space, env_id)
        spec = getattr(self.env, 'spec', None)
        self.max_episode_steps = getattr(spec, 'max_episode_steps', None)

    def reset(self, seed=None):
        obs, _ = self.env.reset(seed=seed)
        return np.asarray(obs, dtype=float).ravel()

    def step(self, action):
        if self.action_space['kind'] == 'box':
            action = np.asarray(action, dtype=np.float32)
        obs, reward, terminated, truncated, info = self.env.step(action)
        return (np.asarray(obs, dtype=float).ravel(), float(reward), bool(terminated),
                bool(truncated), info)

    def close(self):
        self.env.close()
