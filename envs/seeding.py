"""Seeding every environment the same way, in-process and in a farm's worker: one seed, one episode.

A seed given to ``reset(seed)`` (or to ``make(name, seed=S)``, which seeds the first reset) seeds,
in this order:

1. Python's ``random`` and numpy's global RNG, each from its own value *derived* from the seed
   (:func:`derive`): osim-rl draws from both (Arm2DEnv's targets from ``random``, L2M2019Env's
   velocity field from ``numpy.random``) and takes no seed for them itself. Deriving, rather than
   using the seed as it is, keeps any two seeds' streams distinct (numpy takes only 32 bits) and
   apart from the streams the environment seeds itself with the plain seed;
2. the environment, with the plain seed, through its own ``reset(seed)`` (gymnasium/gym ids,
   L2M2019Env's velocity field, SlowEnv; CheapEnv offsets its observation by it).

Resets without a seed (auto-resets) then continue those streams deterministically. Several seeded
environments in one process (an in-process vectorized env) each keep their own global streams:
:class:`Seeding` swaps them in around each call of the environment whose streams they are, so an
environment's episodes do not depend on what the others drew; in a worker (one environment per
process) nothing is ever swapped.

When a farm replaces a worker (recycled, or lost), the new worker is built with
:func:`successor` of the last seed the old one was given: its episodes are new, and still the same
from one run to the next. Python 2.7 compatible.
"""
from __future__ import absolute_import

import hashlib
import numbers
import random

import numpy as np

from envs.base import EnvError, Wrapper


def valid(seed):
    """True for a seed :func:`check` accepts: a non-negative integer (gymnasium's rule)."""
    return (isinstance(seed, numbers.Integral) and not isinstance(seed, bool)
            and int(seed) >= 0)


def check(seed, name):
    if not valid(seed):
        raise EnvError('%s: seed must be a non-negative integer, got %r' % (name, seed))
    return int(seed)


def derive(seed, purpose, bits=32):
    """A ``bits``-bit integer for ``purpose`` from ``seed``: stable across runs, processes and
    Python versions (unlike ``hash``), distinct for distinct seeds and purposes."""
    digest = hashlib.sha256(('osimfarm:%s:%d' % (purpose, seed)).encode('ascii')).hexdigest()
    return int(digest[:bits // 4], 16)


def successor(seed):
    """The seed a replacement worker starts from, after a worker last given ``seed``."""
    return derive(seed, 'successor', 32)  # 32 bits: a seed every environment takes as it is


def seed_globals(seed):
    random.seed(derive(seed, 'random', 64))
    np.random.seed(derive(seed, 'numpy', 32))


# The Seeding whose streams the process's global RNGs hold now (None: nobody's in particular).
_holder = [None]


class Seeding(Wrapper):
    """Seeds the global RNGs and then the environment at a seeded reset; ``seed`` (from ``make``)
    seeds the first reset when that reset is given none. Not thread-safe: one thread per process
    steps environments, as the farm's workers and the in-process vectorized env do."""

    def __init__(self, inner, seed=None):
        Wrapper.__init__(self, inner)
        self._pending = None if seed is None else check(seed, self.name)
        self._streams = None  # this env's (random, numpy) states while another holds the globals

    def _take_globals(self):
        holder = _holder[0]
        if holder is not None:
            holder._streams = (random.getstate(), np.random.get_state())
        if self._streams is not None:
            random.setstate(self._streams[0])
            np.random.set_state(self._streams[1])
            self._streams = None
            _holder[0] = self
        else:  # never seeded: it draws from whatever the globals hold
            _holder[0] = None

    def reset(self, seed=None):
        if seed is None:
            seed = self._pending
        self._pending = None
        if _holder[0] is not self:
            self._take_globals()
        if seed is not None:
            seed = check(seed, self.name)
            seed_globals(seed)
            _holder[0] = self
        return self.inner.reset(seed)

    def step(self, action):
        if _holder[0] is not self:
            self._take_globals()
        return self.inner.step(action)

    def close(self):
        if _holder[0] is self:
            _holder[0] = None
        self._streams = None
        self.inner.close()
