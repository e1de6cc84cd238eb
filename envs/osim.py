"""osim-rl environments, headless, with flat float-vector observations.

Supports whatever osim-rl is installed: 3.x (``L2M2019Env``, ``Arm2DEnv``), 2.x (``L2RunEnv``,
``ProstheticsEnv``, ``Arm2DEnv``) and 1.x (``RunEnv``). ``difficulty``, ``integrator_accuracy``
and ``seed`` pass through to osim-rl where that environment accepts them (the seeding of every
environment, osim-rl's included, is :mod:`envs.seeding`'s: a seed works for all of them);
``max_episode_steps`` truncates episodes earlier than osim-rl's own time limit.

``forward_reward`` (walkers only, default 0: osim-rl's reward unchanged) adds that many reward
units per metre the pelvis moves forward in a step: osim-rl's L2M2019Env pays its velocity term
only at footsteps and 0.1 per step for staying up, so a policy that stands earns nearly what one
that walks does (issue 23: SAC learned to stand). Reward shaping heads the heuristics the NIPS 2017
Learning to Run solutions shared (Kidzinski et al., arXiv:1804.00361). Evaluations measure length
and ``forward_distance`` from the state, not from the reward, so they mean the same either way.

*terminated* is osim-rl's own ``is_done()`` (the model fell); reaching the environment's
``time_limit`` is *truncated*.

``OsimAdapter.task_measures()`` reads the task's own measure from osim-rl's state, in plain
floats, for evaluations (the reward alone hides it: Arm2DEnv's moves by hundredths): Arm2DEnv's
``distance`` (metres from the hand's marker to the target), and for the walkers (those with a
pelvis) ``forward_distance`` (metres the pelvis moved forward since the reset). Every step's
``info['task']`` holds them too, so that an evaluation through a farm sees them
(envs/measures.py).

osim-rl prints as it builds and resets ("difficulty 3 for Round 2", Arm2DEnv's every new target):
one line per worker and episode would bury a farm's log, so those prints go to this module's
logger at debug level instead. Python 2.7 compatible.
"""
from __future__ import absolute_import

import contextlib
import logging
import os
import sys

import numpy as np

from envs import osim_compat
from envs.base import EnvAdapter, EnvError, box, keywords, unbounded_box

OSIM_NAMES = ('L2M2019Env', 'Arm2DEnv', 'L2RunEnv', 'ProstheticsEnv', 'RunEnv')

log = logging.getLogger(__name__)

# VTgtField (L2M2019Env) hands its seed to numpy.random.seed, which takes 32 bits; a larger seed
# still seeds the episode, through the numpy stream envs.seeding sets up.
_NUMPY_SEED_LIMIT = 2 ** 32


def _python():
    return 'Python %s (%s)' % (sys.version.split()[0], sys.executable)


def _install_hint():
    if sys.version_info[0] == 2:
        return 'conda env create -f environment-py27.yml (opensim 4.0 + osim-rl 2.x)'
    if (3, 11) <= sys.version_info[:2] <= (3, 13):
        return 'pip install opensim==4.6 osim-rl==3.0.11 scipy==1.13.1 (or ./setup.sh)'
    return ('a Python 3.11-3.13 farm (opensim wheels exist for those only) with ./setup.sh, '
            'or conda env create -f environment-py27.yml')


@contextlib.contextmanager
def _stderr_quiet():
    stderr = sys.stderr
    sys.stderr = open(os.devnull, 'w')
    try:
        yield
    finally:
        sys.stderr.close()
        sys.stderr = stderr


def _osim_class(name):
    """osim-rl's class ``name``; when this interpreter lacks opensim or osim-rl, says which,
    for which Python, and how to install them."""
    for module, package in (('opensim', 'opensim'), ('osim.env', 'osim-rl')):
        try:
            with _stderr_quiet():  # osim.env imports gym, whose banner is about gym itself
                __import__(module)
        except ImportError as e:
            raise EnvError('%s needs opensim and osim-rl, but this farm\'s %s cannot import %s '
                           '(%s): install them with: %s'
                           % (name, _python(), package, e, _install_hint()))
    osim_env = sys.modules['osim.env']
    cls = getattr(osim_env, name, None)
    if cls is None:
        raise EnvError('%s is not in the installed osim-rl (%s)'
                       % (name, getattr(osim_env, '__file__', '?')))
    return cls


class _PrintsToLog(object):
    """A stand-in for sys.stdout that sends whole lines to the debug log."""

    def __init__(self):
        self.partial = ''

    def write(self, text):
        lines = (self.partial + text).split('\n')
        self.partial = lines.pop()
        for line in lines:
            if line.strip():
                log.debug('osim-rl: %s', line)

    def flush(self):
        pass


@contextlib.contextmanager
def _prints_logged():
    stdout = sys.stdout
    sys.stdout = _PrintsToLog()
    try:
        yield
    finally:
        sys.stdout = stdout


class OsimAdapter(EnvAdapter):
    def __init__(self, name, difficulty=None, seed=None, integrator_accuracy=None,
                 max_episode_steps=None, forward_reward=0.0, **kwargs):
        # Checked before osim-rl builds its model (seconds): a bad value is one line at once.
        try:
            self._forward_reward = float(forward_reward)
        except (TypeError, ValueError):
            raise EnvError('%s: forward_reward must be a number, got %r' % (name, forward_reward))
        if not np.isfinite(self._forward_reward):
            raise EnvError('%s: forward_reward must be finite, got %r' % (name, forward_reward))
        if self._forward_reward and name == 'Arm2DEnv':
            raise EnvError('%s: forward_reward is for walkers (a pelvis to move forward)' % name)
        cls = _osim_class(name)
        osim_compat.apply()
        self.name = name
        accepted = keywords(cls.__init__)
        kwargs['visualize'] = False  # a farm has no display; osim-rl defaults to True
        for key, value in (('difficulty', difficulty), ('integrator_accuracy', integrator_accuracy)):
            if value is not None:
                if accepted is not None and key not in accepted:
                    raise EnvError('%s does not take %s' % (name, key))
                kwargs[key] = value
        # The first reset is seeded with it either way (envs.seeding); a class that names it
        # (L2M2019Env) gets it too, as osim-rl intends. Arm2DEnv takes **kwargs but passes them
        # to a base that refuses a seed: only a named parameter counts.
        if seed is not None and seed < _NUMPY_SEED_LIMIT and accepted and 'seed' in accepted:
            kwargs['seed'] = seed
        try:
            with _prints_logged():
                self.env = cls(**kwargs)
        except TypeError as e:  # an unknown keyword: say which environment refused it
            raise EnvError('%s: %s' % (name, e))
        self._reset_takes = keywords(self.env.reset)
        self._step_takes = keywords(self.env.step)
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
        if max_episode_steps is not None:  # shorter episodes than osim-rl's time limit
            if int(max_episode_steps) < 1:
                raise EnvError('%s: max_episode_steps must be >= 1, got %r'
                               % (name, max_episode_steps))
            self.max_episode_steps = min(int(max_episode_steps),
                                         self.max_episode_steps or int(max_episode_steps))
        # A curriculum's knob (set_params): L2M2019Env's difficulty, which decides how its target
        # velocity field is drawn at each reset. Only among difficulties with the time limit it
        # was built with: the episode length is part of what the farm told the learner at make.
        if name == 'L2M2019Env' and hasattr(self.env, 'set_difficulty'):
            self.settable_params = ('difficulty',)
        self._time_limit = limit
        self._t = 0
        self._obs_size = self.observation_space['shape'][0]
        self._start_x = None  # the pelvis' forward position at the last reset (walkers)
        self._walked = 0.0  # forward_distance after the last step (what forward_reward paid)

    def _flat(self, obs):
        flat = np.asarray(obs, dtype=float).ravel()
        if flat.size != self._obs_size:
            raise RuntimeError('%s returned %d observation values, expected %d'
                               % (self.name, flat.size, self._obs_size))
        return flat

    def check_param(self, key, value):
        if isinstance(value, bool) or value not in (0, 1, 2, 3):
            raise EnvError('%s: difficulty must be 0, 1, 2 or 3, got %r' % (self.name, value))
        if (2500 if value == 3 else 1000) != self._time_limit:
            raise EnvError('%s: difficulty %d has another time limit than this environment was '
                           'built with (%s steps); build it with difficulty %s instead'
                           % (self.name, value, self._time_limit, value))
        return int(value)

    def apply_params(self, params):
        with _prints_logged():
            self.env.set_difficulty(params['difficulty'])

    def reset(self, seed=None):
        self.take_params()
        kwargs = {}
        if self._reset_takes is None or 'obs_as_dict' in self._reset_takes:
            kwargs['obs_as_dict'] = False
        if (seed is not None and seed < _NUMPY_SEED_LIMIT
                and (self._reset_takes is None or 'seed' in self._reset_takes)):
            kwargs['seed'] = seed
        with _prints_logged():
            obs = self.env.reset(**kwargs)
            if self.name == 'Arm2DEnv' and hasattr(self.env, 'get_observation'):
                # osim-rl's Arm2DEnv.reset computes the observation before it draws the new
                # target: its first two values are the previous episode's target (0, 0 at the
                # first reset), so the first action of every episode aimed at the wrong place.
                # The state is unchanged by the draw: read the observation again.
                obs = self.env.get_observation()
        self._t = 0
        self._start_x = self._pelvis_x()
        self._walked = 0.0
        return self._flat(obs)

    def _state(self):
        get = getattr(self.env, 'get_state_desc', None)  # osim-rl 1.x's RunEnv has none
        try:
            return get() if get is not None else None
        except Exception:  # a state OpenSim cannot realize: no measure rather than no episode
            log.debug('%s: no state description', self.name, exc_info=True)
            return None

    def _pelvis_x(self):
        # Only walkers need it; get_state_desc is cached per step by osim-rl, so this is a lookup.
        if self.name == 'Arm2DEnv':
            return None
        state = self._state()
        try:
            return float(state['body_pos']['pelvis'][0])
        except (KeyError, IndexError, TypeError, ValueError):
            return None

    def task_measures(self):
        """The task's own measure in the current state, as ``{name: float}`` (empty when this
        environment has none): Arm2DEnv ``distance``, the hand's (marker ``r_radius_styloid``)
        distance to the target in metres, the quantity its reward is 1 minus the square of; the
        walkers ``forward_distance``, how far the pelvis has moved forward (x) since the reset.
        A non-finite value (a diverged simulation) is left out."""
        measures = {}
        if self.name == 'Arm2DEnv':
            state = self._state()
            try:
                hand = state['markers']['r_radius_styloid']['pos']
                measures['distance'] = float(np.hypot(hand[0] - self.env.target_x,
                                                      hand[1] - self.env.target_y))
            except (KeyError, IndexError, TypeError, AttributeError):
                pass
        elif self._start_x is not None:
            x = self._pelvis_x()
            if x is not None:
                measures['forward_distance'] = x - self._start_x
        return dict((k, v) for k, v in measures.items() if np.isfinite(v))

    def step(self, action):
        takes = self._step_takes
        kwargs = {'obs_as_dict': False} if takes is None or 'obs_as_dict' in takes else {}
        obs, reward, done, info = self.env.step(list(action), **kwargs)
        self._t += 1
        terminated = bool(done) and bool(self.env.is_done())
        truncated = not terminated and (bool(done) or self._t >= (self.max_episode_steps or 1e18))
        task = self.task_measures()
        if self._forward_reward and 'forward_distance' in task:  # (finite: task_measures)
            walked = task['forward_distance']
            reward = float(reward) + self._forward_reward * (walked - self._walked)
            self._walked = walked
        if task:  # for evaluations, through a farm too (envs/measures.py); a few floats
            info = dict(info or {}, task=task)
        return self._flat(obs), float(reward), terminated, truncated, info or {}

    def close(self):
        close = getattr(self.env, 'close', None)
        if close is not None:
            close()
