"""Builds an environment adapter from a registered name and keyword arguments.

``make(name, frame_skip=1, seed=None, **kwargs)``: ``name`` is one of :func:`names` or a
gymnasium/gym id. Every adapter is wrapped in :class:`envs.seeding.Seeding` (a seed at reset, or
``seed`` here for the first reset, gives the same episodes every time, for every environment), to
reject bad actions with a clear message, and in ``FrameSkip`` when ``frame_skip > 1``.
Python 2.7 compatible.
"""
from __future__ import absolute_import

from envs import drill, gym_ids, osim, seeding, toy
from envs.base import CheckedAction, EnvError, FrameSkip, keywords

_OWN = {
    'CheapEnv': toy.CheapEnv,
    'SlowEnv': toy.SlowEnv,
    'DrillEnv': drill.DrillEnv,  # bench/drills.py: observations that carry their identity
}


def names():
    """The project's own and osim-rl's names; any gym id is accepted besides these."""
    return sorted(_OWN) + list(osim.OSIM_NAMES)


def make(name, frame_skip=1, seed=None, **kwargs):
    if not isinstance(name, str if str is not bytes else basestring):  # noqa: F821 (2.7)
        raise EnvError('environment name must be a string, got %r' % (name,))
    if seed is not None:
        seed = seeding.check(seed, name)
    if name in _OWN:
        cls = _OWN[name]
        if seed is not None and 'seed' in (keywords(cls.__init__) or ()):
            kwargs['seed'] = seed
        try:
            adapter = cls(**kwargs)
        except TypeError as e:
            raise EnvError('%s: %s' % (name, e))
    elif name in osim.OSIM_NAMES:
        adapter = osim.OsimAdapter(name, seed=seed, **kwargs)
    elif gym_ids.known(name):
        adapter = gym_ids.GymAdapter(name, **kwargs)
    else:
        raise EnvError(gym_ids.unknown(name, names()))
    adapter = CheckedAction(seeding.Seeding(adapter, seed))
    if int(frame_skip) != 1:
        adapter = FrameSkip(adapter, frame_skip)
    return adapter
