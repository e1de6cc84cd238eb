"""Any registered gymnasium or gym id (``Pendulum-v1``, ...), as a flat-vector adapter.

gymnasium is tried first: gym 0.26's environment checker and some of its classic-control code use
``np.bool8``, which numpy 2 removed. A farm whose Python has neither (every Python 2.7 farm) says
so, with the interpreter and what to install, when asked for something that looks like a gym id.
"""
from __future__ import absolute_import

import os
import re
import sys

import numpy as np

from envs.base import EnvAdapter, EnvError, box, discrete


def _space(space, env_id):
    if hasattr(space, 'n') and not hasattr(space, 'low'):
        return discrete(space.n)
    if hasattr(space, 'low'):
        return box(space.low, space.high)
    raise EnvError('%s: space %r is neither Box nor Discrete; only flat vectors cross the wire'
                   % (env_id, space))


# gym's and gymnasium's id syntax, loosely: [namespace/]name-vN
_LOOKS_LIKE_GYM_ID = re.compile(r'^([\w:.-]+/)?[\w:.-]+-v\d+$')
_LIBRARIES = ('gymnasium', 'gym')


def _import_quietly(module):
    """Imports ``module``, or returns None. gym 0.26 prints a banner about itself on import under
    numpy 2 (to stderr, once per process): it says nothing about our use of it."""
    if module in sys.modules:
        return sys.modules[module]  # None when imported before and found missing
    stderr = sys.stderr
    try:
        sys.stderr = open(os.devnull, 'w')
        return __import__(module)
    except Exception:  # not installed, or broken on this numpy
        return None
    finally:
        if sys.stderr is not stderr:
            sys.stderr.close()
        sys.stderr = stderr


def known(env_id):
    """'gymnasium' or 'gym', whichever registers ``env_id`` (gymnasium first), else None."""
    for module in _LIBRARIES:
        lib = _import_quietly(module)
        try:
            if lib is not None and env_id in lib.envs.registry:
                return module
        except Exception:  # a broken install: as good as none
            continue
    return None


def _missing():
    """Why gym ids cannot be built here, with what to install; None when they can."""
    if any(_import_quietly(module) is not None for module in _LIBRARIES):
        return None
    where = 'Python %s (%s)' % (sys.version.split()[0], sys.executable)
    if sys.version_info[0] == 2:  # no gymnasium for 2.7, and gym 0.26 needs Python 3
        how = 'serve gym ids from a Python 3 farm (pip install gymnasium there)'
    else:
        how = 'install it with: %s -m pip install gymnasium' % (sys.executable,)
    return 'this farm\'s %s has neither gymnasium nor gym: %s' % (where, how)


def unknown(name, names):
    """The message for a name nothing here can build."""
    missing = _missing()
    if missing and _LOOKS_LIKE_GYM_ID.match(name):
        return "'%s' looks like a gym id, but %s" % (name, missing)
    message = "unknown environment '%s'; known: %s, or any registered gym id" % (
        name, ', '.join(names))
    return message + (' (%s)' % missing if missing else '')


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
