"""Builds an environment adapter from a registered name and keyword arguments.

``make(name, frame_skip=1, **kwargs)``: ``name`` is one of :func:`names` or a gymnasium/gym id.
Every adapter is wrapped to reject bad actions with a clear message, and in ``FrameSkip`` when
``frame_skip > 1``. Python 2.7 compatible.
"""
from __future__ import absolute_import

from envs import drill, gym_ids, osim, toy
from envs.base import CheckedAction, EnvError, FrameSkip

_OWN = {
    'CheapEnv': toy.CheapEnv,
    'SlowEnv': toy.SlowEnv,
    'DrillEnv': drill.DrillEnv,  # bench/drills.py: observations that carry their identity
}


def names():
    """The project's own and osim-rl's names; any gym id is accepted besides these."""
    return sorted(_OWN) + list(osim.OSIM_NAMES)


def make(name, frame_skip=1, **kwargs):
    if not isinstance(name, str if str is not bytes else basestring):  # noqa: F821 (2.7)
        raise EnvError('environment name must be a string, got %r' % (name,))
    if name in _OWN:
        try:
            adapter = _OWN[name](**kwargs)
        except TypeError as e:
            raise EnvError('%s: %s' % (name, e))
    elif name in osim.OSIM_NAMES:
        adapter = osim.OsimAdapter(name, **kwargs)
    elif gym_ids.known(name):
        adapter = gym_ids.GymAdapter(name, **kwargs)
    else:
        raise EnvError("unknown environment '%s'; known: %s, or any registered gym id"
                       % (name, ', '.join(names())))
    adapter = CheckedAction(adapter)
    if int(frame_skip) != 1:
        adapter = FrameSkip(adapter, frame_skip)
    return adapter
