"""osim-rl environments, headless, with flat float-vector observations.

Supports whatever osim-rl is installed: 3.x (``L2M2019Env``, ``Arm2DEnv``), 2.x (``L2RunEnv``,
``ProstheticsEnv``, ``Arm2DEnv``) and 1.x (``RunEnv``). ``difficulty``, ``seed`` and
``integrator_accuracy`` pass through to osim-rl where that environment accepts them.

*terminated* is osim-rl's own ``is_done()`` (the model fell); reaching the environment's
``time_limit`` is *truncated*. Python 2.7 compatible.
"""
from __future__ import absolute_import

import inspect

import numpy as np

from envs import osim_compat
from envs.base import EnvAdapter, EnvError, box, unbounded_box

OSIM_NAMES = ('L2M2019Env', 'Arm2DEnv', 'L2RunEnv', 'ProstheticsEnv', 'RunEnv')


def _osim_class(name):
    try:
        import osim.env as osim_env
    except ImportError as e:
        raise EnvError('%s needs osim-rl, which is not installed on this farm (%s)' % (name, e))
    cls = getattr(osim_env, name, None)
    if cls is None:
        raise EnvError('%s is not in the installed osim-rl (%s)'
                       % (name, getattr(osim_env, '__file__', '?')))
    return cls


def _accepted(func):
    """Names of the keyword arguments ``func`` takes; None when it takes ``**kwargs``."""
    try:
        spec = inspect.getfullargspec(func)
        varkw = spec.varkw
    except AttributeError:  # Python 2.7
        spec = inspect.getargspec(func)
        varkw = spec.keywords
    return None if varkw else set(spec.args)


class OsimAdapter(EnvAdapter):
    def __init__(self, name, difficulty=None, seed=None, integrator_accuracy=None, **kwargs):
        osim_compat.apply()
        cls = _osim_class(name)
        self.name = name
        accepted = _accepted(cls.__init__)
        kwargs['visualize'] = False  # a farm has no display; osim-rl defaults to True
        for key, value in (('difficulty', difficulty), ('seed', seed),
                           ('integrator_accuracy', integrator_accuracy)):
            if value is not None:
                if accepted is not None and key not in accepted:
                    raise EnvError('%s does not take %s' % (name, key))
                kwargs[key] = value
        try:
            self.env = cls(**kwargs)
        except TypeError as e:  # an unknown keyword: say which environment refused it
            raise EnvError('%s: %s' % (name, e))
        self._reset_takes = _accepted(self.env.reset)
        self._step_takes = _accepted(self.env.step)
        self._seed = seed
        act_size = self.env.get_action_space_size()
        self.action_space = box([0.0] * act_size, [1.0] * act_size)
        space = self.env.observation_space
        low = np.asarray(space.low, dtype=float).ravel()
        high = np.asarray(space.high, dtype=float).ravel()
        if np.all(low == high):  # osim-rl fills some spaces with zeros: bounds unknown
            self.observation_space = unbounded_box(low.size)
        else:
            self.observation_space = box(low, high)
        limit = getattr(self.env, 'time_limit', None)
        self.max_episode_steps = int(limit) if limit and limit < 1e9 else None
        self._obs_size = self.observation_space['shape'][0]

    def _flat(self, obs):
        flat = np.asarray(obs, dtype=float).ravel()
        if flat.size != self._obs_size:
            raise RuntimeError('%s returned %d observation values, expected %d'
                               % (self.name, flat.size, self._obs_size))
        return flat

    def reset(self, seed=None):
        kwargs = {}
        if self._reset_takes is None or 'obs_as_dict' in self._reset_takes:
            kwargs['obs_as_dict'] = False
        if seed is not None and (self._reset_takes is None or 'seed' in self._reset_takes):
            kwargs['seed'] = seed
        return self._flat(self.env.reset(**kwargs))

    def step(self, action):
        takes = self._step_takes
        kwargs = {'obs_as_dict': False} if takes is None or 'obs_as_dict' in takes else {}
        obs, reward, done, info = self.env.step(list(action), **kwargs)
        terminated = bool(done) and bool(self.env.is_done())
        truncated = bool(done) and not terminated
        return self._flat(obs), float(reward), terminated, truncated, info or {}

    def close(self):
        close = getattr(self.env, 'close', None)
        if close is not None:
            close()
