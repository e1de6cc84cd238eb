"""Guards every served environment against a simulator that diverges or stalls.

:class:`Guard` wraps each adapter ``envs.make`` builds (inside ``FrameSkip``, so it sees every
simulator step):

- **Divergence.** A step whose observation or reward holds a NaN or an infinity ends its episode
  as *truncated*, with ``info['truncated_reason'] = 'diverged'``. The non-finite values are never
  handed on: the observation returned is the last finite one, the reward 0. A learner must never
  store a NaN in its replay memory: one such transition poisons every network update that samples
  it (stable-baselines3's SAC on Arm2DEnv at accuracy 1e-3 died on NaN actions after 25,000
  steps). A reset whose observation is not finite has no way to say so: its non-finite entries
  become 0, and the next step ends the episode the same way without stepping the simulator again.
- **Step budget.** With ``step_budget`` seconds, a step that took longer ends its episode as
  truncated with ``info['truncated_reason'] = 'step budget'``: OpenSim's integrator slows by two
  orders of magnitude in some states (p99 1.4 s against a 17 ms median on Arm2DEnv), and a new
  episode is cheaper than waiting for the next stall. osim-rl integrates inside one C++ call that
  cannot be interrupted, so the budget is checked after the step returns: a single very long
  step still completes. The farm's ``--step-timeout`` is the hard limit (it gives up on the worker).

Python 2.7 compatible.
"""
from __future__ import absolute_import

import logging
import time

import numpy as np

from envs.base import EnvError, Wrapper, all_finite

log = logging.getLogger(__name__)

DIVERGED = 'diverged'
STEP_BUDGET = 'step budget'

# The clock the step budget is measured with; tests replace it.
clock = time.time


def _finite(values):
    # The hot path: one vectorised check, a few microseconds per step against osim-rl's ~10 ms.
    try:
        if isinstance(values, float):
            return values - values == 0.0  # NaN and +-inf give NaN; math.isfinite is not in 2.7
        if isinstance(values, np.ndarray) and values.dtype.kind == 'f':
            return all_finite(values)
        return bool(np.isfinite(values).all())
    except TypeError:  # not numbers at all: the adapter's own bug, left for the caller to see
        return True


def check_budget(name, step_budget):
    """``step_budget`` as float seconds (or None); EnvError naming ``name`` when it is not > 0."""
    if step_budget is None:
        return None
    try:
        seconds = float(step_budget)
    except (TypeError, ValueError):
        seconds = -1.0
    if isinstance(step_budget, bool) or not seconds > 0 or seconds == float('inf'):
        raise EnvError('%s: step_budget must be a number of seconds > 0 (or None), got %r'
                       % (name, step_budget))
    return seconds


class Guard(Wrapper):
    """Ends an episode as truncated when a step diverges or overruns ``step_budget`` seconds."""

    def __init__(self, inner, step_budget=None):
        Wrapper.__init__(self, inner)
        self.step_budget = check_budget(self.name, step_budget)
        self._last_obs = None
        self._diverged = False  # the last reset's observation was not finite

    def reset(self, seed=None):
        obs = np.asarray(self.inner.reset(seed), dtype=float)
        self._diverged = not _finite(obs)
        if self._diverged:
            log.warning('%s: reset returned a non-finite observation; its NaN/inf entries are '
                        'handed on as 0 and the first step ends the episode', self.name)
            obs = np.where(np.isfinite(obs), obs, 0.0)
        self._last_obs = obs
        return obs

    def step(self, action):
        if self._diverged:  # a diverged state is not stepped again: it may only fail harder
            return self._last_obs, 0.0, False, True, {'truncated_reason': DIVERGED}
        budget = self.step_budget  # the clock is read only when there is a budget to keep
        start = clock() if budget is not None else 0.0
        obs, reward, terminated, truncated, info = self.inner.step(action)
        if not (_finite(obs) and _finite(reward)):
            self._diverged = True
            if _finite(obs):
                self._last_obs = obs
            info = dict(info or {})
            info['truncated_reason'] = DIVERGED
            log.info('%s: the simulation diverged (NaN or inf); episode truncated', self.name)
            return self._last_obs, 0.0, False, True, info
        self._last_obs = obs
        took = clock() - start if budget is not None else 0.0
        if budget is not None and took > budget and not (terminated or truncated):
            info = dict(info or {})
            info['truncated_reason'] = STEP_BUDGET
            info['step_seconds'] = took
            log.info('%s: a step took %.3f s, over the step budget of %.3f s; episode truncated',
                     self.name, took, self.step_budget)
            truncated = True
        return obs, reward, terminated, truncated, info
