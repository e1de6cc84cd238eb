"""The adapter every environment is wrapped in, and the wrappers applied on the farm side.

Contract of an adapter (all a worker process relies on):

- ``observation_space`` / ``action_space``: plain dicts, ``{'kind': 'box', 'low': [...],
  'high': [...], 'shape': [n], 'dtype': 'float32'}`` or ``{'kind': 'discrete', 'n': k}``;
- ``max_episode_steps``: int or None (the episode is *truncated* there);
- ``reset(seed=None)`` returns the first observation, a flat float vector (list or 1-D array);
- ``step(action)`` returns ``(observation, reward, terminated, truncated, info)``;
- ``close()``;
- ``set_params(**params)``: changes the parameters named in ``settable_params`` (plain data,
  e.g. a target speed for a curriculum) without rebuilding the environment. They take effect at
  the environment's next reset, never mid-episode; an unknown name raises :class:`EnvError`
  naming the accepted ones. Only declared names are ever set: the names come from the wire.

Python 2.7 compatible: no numpy-only conveniences newer than 1.16, no f-strings.
"""
from __future__ import absolute_import, division

import inspect
import math

import numpy as np


class EnvError(ValueError):
    """Bad input for an environment: unknown name, bad keyword, bad action. Names what was wrong."""


def keywords(func):
    """Names of the keyword arguments ``func`` takes; None when it takes ``**kwargs``."""
    try:
        spec = inspect.getfullargspec(func)
        varkw = spec.varkw
    except AttributeError:  # Python 2.7
        spec = inspect.getargspec(func)
        varkw = spec.keywords
    return None if varkw else set(spec.args)


def box(low, high, dtype='float32'):
    """A plain-data Box space; infinite bounds travel as +-inf floats (msgpack carries them)."""
    low = [float(x) for x in np.asarray(low, dtype=float).ravel()]
    high = [float(x) for x in np.asarray(high, dtype=float).ravel()]
    return {'kind': 'box', 'low': low, 'high': high, 'shape': [len(low)], 'dtype': dtype}


def discrete(n):
    return {'kind': 'discrete', 'n': int(n)}


def unbounded_box(size):
    return box([-np.inf] * size, [np.inf] * size)


class EnvAdapter(object):
    """Base class; subclasses set the spaces in ``__init__`` and implement reset/step."""

    observation_space = None
    action_space = None
    max_episode_steps = None
    name = '?'
    settable_params = ()  # names set_params accepts; none unless a subclass declares them
    _pending_params = None

    def reset(self, seed=None):
        raise NotImplementedError

    def set_params(self, **params):
        """Checks ``params`` now; they are applied by the next reset (:meth:`take_params`)."""
        unknown = sorted(k for k in params if k not in self.settable_params)
        if unknown:
            raise EnvError('%s: unknown parameter%s %s; %s' % (
                self.name, 's' if len(unknown) > 1 else '', ', '.join(unknown),
                'accepted: ' + ', '.join(self.settable_params) if self.settable_params
                else 'it accepts none'))
        checked = dict((k, self.check_param(k, v)) for k, v in params.items())
        pending = dict(self._pending_params or {})
        pending.update(checked)
        self._pending_params = pending

    def check_param(self, key, value):
        """The value to apply for parameter ``key``; raises EnvError when it is unusable, at
        ``set_params`` time rather than at the reset that applies it."""
        return value

    def take_params(self):
        """Applies the pending parameters; a subclass's reset calls it first."""
        pending, self._pending_params = self._pending_params, None
        if pending:
            self.apply_params(pending)

    def apply_params(self, params):
        """Sets each (declared, checked) parameter as an attribute; override for more."""
        for key, value in params.items():
            setattr(self, str(key), value)

    def step(self, action):
        raise NotImplementedError

    def close(self):
        pass


class Wrapper(EnvAdapter):
    def __init__(self, inner):
        self.inner = inner
        self.observation_space = inner.observation_space
        self.action_space = inner.action_space
        self.max_episode_steps = inner.max_episode_steps
        self.name = inner.name

    def reset(self, seed=None):
        return self.inner.reset(seed)

    def step(self, action):
        return self.inner.step(action)

    def set_params(self, **params):
        return self.inner.set_params(**params)

    def close(self):
        self.inner.close()


def all_finite(values):
    """Whether every element of the float array ``values`` is finite (no NaN, no infinity).

    On a flat array it costs one dot product: the sum of squares is finite only if every element
    is (NaN and infinities carry through; a square that overflows is checked exactly). A farm's
    workers check every action and observation, and 32 of them wake at once on a few cores:
    numpy's element-wise machinery (np.isfinite, then .all()) is most of their work there."""
    if values.ndim == 1:
        square = float(values.dot(values))  # a Python float: inf - inf gives NaN silently
        if square - square == 0.0:  # finite (NaN and +-inf give NaN)
            return True
    return bool(np.isfinite(values).all())


# numpy would read True as 1.0 and '0.5' as 0.5; an action holding either is a caller's mistake.
_NOT_NUMBERS = (bool, type(u''), type(b''))


class CheckedAction(Wrapper):
    """Rejects actions of the wrong length or with NaN/inf before they reach the simulator.

    A NaN muscle activation makes OpenSim's integrator fail deep inside C++ with a message that
    names neither the environment nor the action; this says which element was wrong instead.
    """

    def step(self, action):
        space = self.action_space
        if space['kind'] == 'discrete':
            try:
                value = int(action[0] if isinstance(action, (list, tuple)) else action)
            except (TypeError, ValueError, IndexError):
                raise EnvError('%s: action must be an integer in [0, %d), got %r'
                               % (self.name, space['n'], action))
            if not 0 <= value < space['n']:
                raise EnvError('%s: action %d out of range [0, %d)' % (self.name, value, space['n']))
            return self.inner.step(value)
        expected = space['shape'][0]
        if isinstance(action, np.ndarray) and action.dtype.kind == 'f' \
                and action.shape == (expected,):
            # The farm's shared-block steps come this way: one numpy call checks it all.
            if not all_finite(action):
                self._explain(action.tolist())  # plain floats: named as the learner wrote them
            return self.inner.step(action)
        if not isinstance(action, (list, tuple, np.ndarray)):
            raise EnvError('%s: action must be a list of %d floats, got %s'
                           % (self.name, expected, type(action).__name__))
        if len(action) != expected:
            raise EnvError('%s: action has length %d, expected %d' % (self.name, len(action), expected))
        # One vectorised check on the hot path (a per-element loop cost ~35 us per step);
        # the element-wise search below only runs to name what was wrong.
        try:
            values = np.asarray(action, dtype=float)
            ok = values.ndim == 1 and bool(np.isfinite(values).all())
        except (TypeError, ValueError):
            ok = False
        if not ok or any(isinstance(a, _NOT_NUMBERS) for a in action):
            self._explain(action)
        return self.inner.step(action)

    def _explain(self, action):
        for i, a in enumerate(action):
            if isinstance(a, bool) or not isinstance(a, (int, float, np.integer, np.floating)):
                raise EnvError('%s: action[%d] is %r, not a number' % (self.name, i, a))
            if not np.isfinite(a):
                raise EnvError('%s: action[%d] is %r; actions must be finite' % (self.name, i, a))
        raise EnvError('%s: action %r is not a flat list of numbers' % (self.name, action))


class FrameSkip(Wrapper):
    """Repeats each action ``skip`` times on the farm, summing rewards: one call, one agent step.

    The original farm design used 3. Stops early at the end of an episode.
    """

    def __init__(self, inner, skip):
        Wrapper.__init__(self, inner)
        if int(skip) < 1:
            raise EnvError('frame_skip must be >= 1, got %r' % (skip,))
        self.skip = int(skip)
        if self.max_episode_steps is not None:
            self.max_episode_steps = int(math.ceil(self.max_episode_steps / self.skip))

    def step(self, action):
        total = 0.0
        for _ in range(self.skip):
            obs, reward, terminated, truncated, info = self.inner.step(action)
            total += reward
            if terminated or truncated:
                break
        return obs, total, terminated, truncated, info
