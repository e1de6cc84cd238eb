"""The project's own environments, which need only numpy: for tests, benchmarks and fault drills.

- ``CheapEnv``: deterministic and instant. The observation is ``[t, x0, x1, ...]``; reward is
  ``-sum((a - 0.5)**2)``; terminated after ``episode_length`` steps, unless ``max_episode_steps``
  truncates it first. ``hang_after`` / ``crash_after`` steps make the worker hang forever or die
  (``os._exit``): the farm's failure handling is tested against real misbehaving processes.
  ``reset(seed)`` offsets the observation by the seed; an unseeded reset by 0 (tests rely on both).
  ``diverge_after`` steps of an episode, its observation turns to NaN, as a diverging simulator's
  does: envs.guard's handling is tested through real farms, whose workers build envs by name.
- ``SlowEnv``: each step costs ``step_seconds`` (sleeping, like a simulator waiting on nothing the
  farm can help with) and returns an observation of ``obs_size`` floats (339 as L2M2019Env). Each
  episode starts from an observation drawn from its own RNG, which ``seed`` (at construction or
  reset) seeds and unseeded resets continue. ``set_params`` takes ``step_seconds``.
- ``TraceEnv``: replays a recorded step-time trace of a real simulator (``bench/record_trace.py``
  writes ``bench/traces/<trace>.json``: every step's and reset's wall-clock duration and where the
  episodes ended) by sleeping those durations, with the real environment's observation and action
  sizes: a benchmark on it means the same on 2 cores as on 64. See the class for where it starts.
- ``BusyEnv``: each step burns ``step_seconds`` of this process's CPU time in a busy loop (CPU
  time, not wall time: on a machine with fewer cores than environments the steps queue for the
  CPU, as a simulator's do). Otherwise as ``SlowEnv``.
"""
from __future__ import absolute_import, division

import json
import math
import numbers
import os
import re
import time

import numpy as np

from envs.base import EnvAdapter, EnvError, box, unbounded_box
from envs.seeding import derive


def _rng(seed):
    # derived: RandomState takes 32 bits, a seed may be any non-negative integer
    return np.random.RandomState(None if seed is None else derive(seed, 'SlowEnv'))


def _number(env, key, value, kind, minimum):
    # A bool is an int to Python; a curriculum that sets a length to True is a mistake.
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
            or (minimum is not None and value < minimum)):
        raise EnvError('%s: parameter %s must be a number%s, got %r'
                       % (env.name, key, '' if minimum is None else ' >= %s' % minimum, value))
    return kind(value)


class CheapEnv(EnvAdapter):
    name = 'CheapEnv'
    settable_params = ('episode_length', 'offset')

    def __init__(self, obs_size=3, act_size=2, episode_length=10, max_episode_steps=None,
                 hang_after=None, crash_after=None, diverge_after=None):
        self.obs_size = int(obs_size)
        self.observation_space = unbounded_box(self.obs_size)
        self.action_space = box([0.0] * int(act_size), [1.0] * int(act_size))
        self.episode_length = int(episode_length)
        self.max_episode_steps = max_episode_steps
        self.hang_after = hang_after
        self.crash_after = crash_after
        self.diverge_after = diverge_after
        self.t = 0
        self.total_steps = 0
        self.offset = 0.0
        self.base_offset = 0.0

    def check_param(self, key, value):
        return _number(self, key, value, int if key == 'episode_length' else float,
                       None if key == 'offset' else 0)

    def apply_params(self, params):
        if 'episode_length' in params:
            self.episode_length = params['episode_length']
        if 'offset' in params:
            self.base_offset = params['offset']

    def _obs(self):
        obs = np.full(self.obs_size, self.offset + self.t, dtype=float)
        obs[0] = self.t
        if self.diverge_after is not None and self.t > self.diverge_after:
            obs[:] = np.nan
        return obs

    def reset(self, seed=None):
        self.take_params()
        self.t = 0
        self.offset = self.base_offset + float(seed or 0)
        return self._obs()

    def step(self, action):
        self.total_steps += 1
        if self.crash_after is not None and self.total_steps > self.crash_after:
            os._exit(3)
        if self.hang_after is not None and self.total_steps > self.hang_after:
            while True:
                time.sleep(60)
        a = np.asarray(action, dtype=float)
        self.t += 1
        reward = -float(np.sum((a - 0.5) ** 2))
        terminated = self.t >= self.episode_length
        truncated = (not terminated and self.max_episode_steps is not None
                     and self.t >= self.max_episode_steps)
        return self._obs(), reward, terminated, truncated, {'t': self.t}


class SlowEnv(EnvAdapter):
    name = 'SlowEnv'
    settable_params = ('step_seconds',)

    def __init__(self, step_seconds=0.03, obs_size=339, act_size=22, episode_length=1000,
                 seed=None):
        self.step_seconds = float(step_seconds)
        self.observation_space = unbounded_box(int(obs_size))
        self.action_space = box([0.0] * int(act_size), [1.0] * int(act_size))
        self.max_episode_steps = int(episode_length)
        self.obs_size = int(obs_size)
        self.rng = _rng(seed)
        self.obs = self.rng.uniform(-1, 1, self.obs_size)
        self.t = 0

    def check_param(self, key, value):
        return _number(self, key, value, float, 0)

    def reset(self, seed=None):
        self.take_params()
        if seed is not None:
            self.rng = _rng(seed)
        self.t = 0
        self.obs = self.rng.uniform(-1, 1, self.obs_size)
        return self.obs

    def step(self, action):
        if self.step_seconds > 0:
            time.sleep(self.step_seconds)
        self.t += 1
        # The observation changes a little each step so that nothing can cache it; computing it
        # costs microseconds next to the sleep.
        self.obs[self.t % len(self.obs)] = self.t
        return self.obs, 0.0, False, self.t >= self.max_episode_steps, {}


# Where TraceEnv finds its traces: the project's bench/traces (a farm runs from a copy of the
# project). A trace is named, never given as a path: the name comes from the wire.
TRACE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         'bench', 'traces')
_TRACE_NAME = re.compile(r'^[A-Za-z0-9_]+$')
_traces = {}  # (directory, name) -> parsed trace; one parse per process
_sleep = time.sleep  # tests replace it (a fake clock); nothing else should
# The golden ratio's fractional part: consecutive seeds (a vector env's seed + i) get start points
# spread evenly over the trace (a Weyl sequence), not clustered as random draws may be.
_SPREAD = (math.sqrt(5.0) - 1.0) / 2.0


def load_trace(name):
    """The trace ``name`` (bench/traces/<name>.json), parsed once per process."""
    if not isinstance(name, (str, type(u''))) or not _TRACE_NAME.match(name):
        raise EnvError('TraceEnv: trace must be a name of bench/traces/*.json such as '
                       "'l2m' or 'arm2d', got %r" % (name,))
    key = (TRACE_DIR, name)
    if key not in _traces:
        path = os.path.join(TRACE_DIR, name + '.json')
        try:
            with open(path) as f:
                data = json.load(f)
        except (IOError, OSError) as e:
            known = sorted(n[:-5] for n in os.listdir(TRACE_DIR) if n.endswith('.json')) \
                if os.path.isdir(TRACE_DIR) else []
            raise EnvError('TraceEnv: cannot read trace %r (%s); known: %s'
                           % (name, e, ', '.join(known) or 'none'))
        episodes = [e for e in data['episodes'] if e['steps_ms']]
        if not episodes:
            raise EnvError('TraceEnv: trace %r has no steps' % name)
        data['episodes'] = episodes
        _traces[key] = data
    return _traces[key]


class TraceEnv(EnvAdapter):
    """Replays ``bench/traces/<trace>.json``: each reset and step sleeps its recorded duration
    (times ``time_scale``), episodes end where the recorded ones ended (terminated or truncated
    as they were; a recording cut mid-episode ends there as truncated), and after the trace's
    last episode it starts again from its first.

    Where it starts: a seeded reset (``seed`` at construction or ``reset(seed)``) picks a point
    of the trace from the seed, the fractional part of seed x 0.618... (consecutive seeds, as a
    vector env gives its environments, spread evenly over the trace), and starts there (the
    reset is that episode's own; its first episode may so be shorter). ``start`` says what the
    point is a fraction of, so that N environments replay the trace as the real simulators would
    run it from the first step on, whatever the window a benchmark measures:

    - ``'time'`` (default): of the trace's time, and the first step sleeps only what is left of
      the step running at that point. Environments that run independently (asynchronous
      stepping) are then inside a long stall with the probability the real simulator spends in
      it, and a window of any length holds N / mean step time steps/s in expectation.
    - ``'step'``: of its steps, each replayed whole: stepped in lockstep, every environment moves
      one step per vector step, so an environment is in a stall as often as stalls are among the
      steps.

    Unseeded: the first reset picks the point at random; later ones (auto-resets) start the next
    episode. ``info['trace_step']`` is the index of the replayed step in the whole trace.
    """
    name = 'TraceEnv'
    STARTS = ('time', 'step')

    def __init__(self, trace='l2m', time_scale=1.0, seed=None, start='time'):
        self.trace_name = trace
        data = load_trace(trace)
        self.time_scale = _number(self, 'time_scale', time_scale, float, 0)
        if start not in self.STARTS:
            raise EnvError('TraceEnv: start must be one of %s, got %r'
                           % (', '.join(self.STARTS), start))
        self.start = start
        self.obs_size = int(data['obs_size'])
        self.observation_space = unbounded_box(self.obs_size)
        self.action_space = box([0.0] * int(data['act_size']), [1.0] * int(data['act_size']))
        limit = data.get('max_episode_steps')
        self.max_episode_steps = None if limit is None else int(limit)
        self.episodes = data['episodes']
        # Flat views: the start of each episode in the trace's steps, and in its time (ms).
        self._first_step = []
        starts, total, index = [], 0.0, 0
        for episode in self.episodes:
            self._first_step.append(index)
            starts.append(total)
            total += episode['reset_ms'] + sum(episode['steps_ms'])
            index += len(episode['steps_ms'])
        self._time_starts = starts
        self.total_ms = total
        self.total_steps = index
        self._seed = seed
        self._episode = None  # index into self.episodes; None until the first reset
        self._step = 0
        self._left_ms = None  # what the next step sleeps when not its whole duration
        self.t = 0
        self.obs = np.zeros(self.obs_size)

    def _sleep_ms(self, ms):
        if ms > 0 and self.time_scale > 0:
            _sleep(ms * self.time_scale / 1000.0)

    def position(self, seed):
        """(episode, step, ms): where a reset seeded with ``seed`` (None: at random) starts, and
        what its first step sleeps (None: the step's whole duration)."""
        if seed is None:
            fraction = np.random.RandomState().uniform()
        else:
            fraction = (int(seed) * _SPREAD) % 1.0
        if self.start == 'step':
            index = min(int(fraction * self.total_steps), self.total_steps - 1)
            episode = int(np.searchsorted(self._first_step, index, side='right')) - 1
            return episode, index - self._first_step[episode], None
        point = fraction * self.total_ms
        episode = max(0, int(np.searchsorted(self._time_starts, point, side='right')) - 1)
        # Within the episode: the step running at that point (the reset's part counts as step 0,
        # whole: a reset always sleeps its own duration).
        elapsed = self._time_starts[episode] + self.episodes[episode]['reset_ms']
        if point < elapsed:
            return episode, 0, None
        steps = self.episodes[episode]['steps_ms']
        for step, ms in enumerate(steps):
            elapsed += ms
            if elapsed > point:
                return episode, step, elapsed - point
        return episode, len(steps) - 1, 0.0  # rounding at the episode's very end

    def reset(self, seed=None):
        self.take_params()
        if seed is None and self._episode is None:
            seed = self._seed
        self._left_ms = None
        if seed is not None or self._episode is None:
            self._episode, self._step, self._left_ms = self.position(seed)
        else:
            self._episode, self._step = (self._episode + 1) % len(self.episodes), 0
        self._sleep_ms(self.episodes[self._episode]['reset_ms'])
        self.t = 0
        self.obs = np.zeros(self.obs_size)
        return self.obs

    def step(self, action):
        if self._episode is None:
            raise EnvError('TraceEnv: step before the first reset')
        episode = self.episodes[self._episode]
        if self._step >= len(episode['steps_ms']):
            raise EnvError('TraceEnv: step after the end of an episode; reset first')
        ms, self._left_ms = self._left_ms, None
        self._sleep_ms(episode['steps_ms'][self._step] if ms is None else ms)
        info = {'trace_step': self._first_step[self._episode] + self._step}
        self._step += 1
        self.t += 1
        self.obs[self.t % self.obs_size] = self.t  # changes each step: nothing can cache it
        over = self._step >= len(episode['steps_ms'])
        terminated = over and episode.get('end') == 'terminated'
        return self.obs, 0.0, terminated, over and not terminated, info


def _cpu_clock():
    # This process's CPU time; Python 2.7 has no process_time, and its clock() is CPU time on POSIX.
    if hasattr(time, 'process_time'):
        return time.process_time()  # novermin (3.3+; the branch below is 2.7's)
    return time.clock()


class BusyEnv(EnvAdapter):
    """Each step keeps a CPU busy for ``step_seconds`` of this process's CPU time (a busy loop:
    what a simulator's integrator does), then returns an observation of ``obs_size`` floats.
    Episodes last ``episode_length`` steps (truncated). ``set_params`` takes ``step_seconds``."""
    name = 'BusyEnv'
    settable_params = ('step_seconds',)

    def __init__(self, step_seconds=0.02, obs_size=339, act_size=22, episode_length=1000):
        self.step_seconds = _number(self, 'step_seconds', step_seconds, float, 0)
        self.observation_space = unbounded_box(int(obs_size))
        self.action_space = box([0.0] * int(act_size), [1.0] * int(act_size))
        self.max_episode_steps = int(episode_length)
        self.obs_size = int(obs_size)
        self.obs = np.zeros(self.obs_size)
        self.t = 0
        self.spins = 0  # busy-loop rounds in the last step (tests: it did spin)

    def check_param(self, key, value):
        return _number(self, key, value, float, 0)

    def reset(self, seed=None):
        self.take_params()
        self.t = 0
        self.obs = np.zeros(self.obs_size)
        return self.obs

    def step(self, action):
        deadline = _cpu_clock() + self.step_seconds
        spins, x = 0, 0.0
        while True:  # at least one round, so a zero-length step still does some work
            for i in range(200):  # work between clock reads: reading it costs a system call
                x += i * 1e-9
            spins += 1
            if _cpu_clock() >= deadline:
                break
        self.spins = spins
        self.t += 1
        self.obs[self.t % self.obs_size] = self.t + x * 0.0
        return self.obs, 0.0, False, self.t >= self.max_episode_steps, {}
