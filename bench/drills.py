#!/usr/bin/env python
"""drills.py: break a running training on purpose, one fault at a time, and count what it cost.

    python bench/drills.py --json [--only NAME ...] [--quick] [--stepping MODE] [--keep DIR]
    python bench/drills.py --markdown results/drills.json     # the README's table of a saved run

Every drill runs real processes on this machine: ``farm.py`` daemons (each in a process session of
its own, stderr to a log), and a learner, ``bench/drill_learner.py`` (train_sac.py's learner:
SAC from agents/, ``session.Session``, a 16x16 network) training on ``DrillEnv`` (envs/drill.py),
whose observations carry ``(identity, episode, t)``. The drill injects one fault, watches the
learner's heartbeat and the farms, stops everything, and writes one row:

``drill``, ``done`` (what was done), ``recovered`` (bool: the drill's own condition, below, and
the learner trained to the end without an error), ``seconds_to_recover`` (from the moment the
fault ends: the kill, the SIGCONT, the restart, the link back up; until the drill's condition
holds: three more vector steps trained, and capacity back where the drill checks it),
``transitions_lost``, ``transitions_duplicated``, ``processes_left`` (farm workers, farms and
learners still alive that should not be: counted after the fault where a process was killed, and
after the orderly stop at the end), ``notes`` (the learner's error, what the farms' logs said, what is odd), and ``counts``
(the full counting, below). ``--json`` prints ``{"rows": [...], ...}`` on stdout; a table goes
to stderr either way. ``--keep DIR`` keeps every log, heartbeat, run directory and memory dump.
``--stepping`` (``async``, ``lockstep`` or ``both``, the default): the learners' stepping mode;
with ``both`` every drill runs once in each, and each row says its mode (``stepping``).

Counting (``count_transitions``; tests/test_drills.py checks it on planted faults)
------------------------------------------------------------------------------
A transition is ``(s, a, r, s')``; its key is ``(identity, episode, t)`` decoded from ``s``.

- *received*: what the learner got from its vectorized env, recorded at that boundary by
  drill_learner.py (``step_wait`` in lockstep, ``recv`` in asynchronous stepping): for each env
  of each step, ``s`` (the observation the agent acted on)
  and ``s'`` (the next observation, or ``info['terminal_observation']`` when the episode ended; an
  ended episode without one gives nothing, as the agent stores nothing for it).
- *stored*: the replay memory at the end of the run (``TransitionReplay``, dumped; its limit is far
  above what a drill produces, and a wrapped memory is reported).
- A transition is *real* when ``s'`` has the same identity and episode as ``s`` and ``t + 1``;
  *phantom* when ``s' == s`` (the farmer's stand-in for a step lost with its worker or farm: the
  environment never produced it; counted and noted, not counted as lost); *mismatched* otherwise
  (``s'`` from another environment or episode: a corrupt transition).
- ``transitions_duplicated``: over the real keys stored, ``sum(count - 1)`` for keys stored more
  than once.
- ``transitions_lost`` = ``gaps`` + ``missing``. ``gaps``: for every ``(identity, episode)`` with
  real transitions stored, the ``t`` in ``0 .. max t stored`` that are not stored (a step the
  environment took that the learner skipped: e.g. a step replayed on the farm, or a transition
  dropped between vector env and memory). ``missing``: real transitions received more times than
  stored.
- ``episodes.csv`` against the received episode ends (vector index and length of each):
  ``csv_missing`` / ``csv_extra`` rows.
- A cross-check with nothing on one side fails the drill (``recovered`` false, noted): stored
  transitions with none recorded as received, or episodes.csv rows with no episode end received.
  Then the recorder missed the learner's calls, and "0 lost" would mean nothing was compared.

Steps that were in flight when a worker or a farm died are lost with it by nature; the episode is
then cut (truncated, ``info['lost']``), which the counting sees as the end of that episode's
``t``, not as a gap.

The drills (``--quick`` skips ``link_down_5min`` and runs two checkpoint trials instead of three):

- ``worker_kill``: kill -9 of one worker mid-episode. Recovered: training goes on and the farm is
  back to one worker per environment.
- ``hung_step``: SIGSTOP of one worker on a farm with ``--step-timeout 2``. Recovered: the farm
  kills and replaces it; training goes on.
- ``farm_kill_restart``: two farms; kill -9 of one (its workers must go too), restart on the same
  port 5 s later. Recovered: training never stops, and the restarted farm gets its environments
  back (both farms at their capacity, none above).
- ``farm_stop_30s`` / ``farm_stop_long``: two farms (``--step-timeout 3``, so the farmer's call
  timeout is 33 s); SIGSTOP of one for 30 s, and for 45 s, then SIGCONT. Recovered: training goes
  on and no farm ends above its capacity (within 75 s).
- ``learner_stop_past_ttl``: a farm with ``--lease-ttl 5``; SIGSTOP of the learner for 15 s, then
  SIGCONT. Recovered: the learner rebuilds and trains on. Notes say whether the lease expired.
- ``learner_kill_new_learner``: kill -9 of the learner; a second learner, already started and
  waiting, asks for the full capacity at once. Recovered: it trains within 20 s of the kill.
- ``checkpoint_kill``: a learner saving checkpoints back to back is killed -9 at a random moment,
  then a learner resumes the run (``--resume``); repeated. Recovered: every resume loads the newest
  whole checkpoint (weights digest and counters equal those of the last save that completed, or of
  the one in flight if it completed).
- ``link_down_20s`` / ``link_down_5min`` (root only): a farm in a network namespace of its own
  behind a veth pair; the host's end is taken down for 20 s / 300 s. Single farm. Recovered: the
  learner survives and trains again within 60 s of the link coming back.
- ``link_delay_20ms`` / ``link_stalls``: the learner reaches its farm through a TCP proxy of this
  script's own (this kernel has no netem): 20 ms added in each direction; or forwarding held for
  1-4 s every few seconds (like retransmission stalls). Recovered: training goes on throughout.
"""
import argparse
import collections
import csv
import itertools
import json
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

from bench import netns

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

log = logging.getLogger('drills')

ID_SCALE = float(2 ** 24)   # envs/drill.py's encoding
COUNT_SCALE = 1024.0
ENV_KWARGS = {'episode_length': 100, 'step_seconds': 0.005}
LEARNER_FLAGS = ['--env', 'DrillEnv', '--hidden', '16,16', '--batch-size', '32', '--warmup',
                 '64', '--updates-per-step', '0.25', '--memory-limit', '400000',
                 '--log-every', '30', '--checkpoint-every', '100000']
COLUMNS = ('drill', 'recovered', 'seconds_to_recover', 'transitions_lost',
           'transitions_duplicated', 'processes_left', 'notes')


# --- counting --------------------------------------------------------------------------------------
def decode(obs):
    """``(identity, episode, t)`` int64 columns of DrillEnv observations (rows)."""
    obs = np.asarray(obs, dtype=np.float64).reshape(-1, np.shape(obs)[-1] if np.ndim(obs) else 1)
    hi = np.rint(obs[:, 0] * ID_SCALE).astype(np.int64)
    lo = np.rint(obs[:, 1] * ID_SCALE).astype(np.int64)
    return (hi << 24) + lo, np.rint(obs[:, 2] * COUNT_SCALE).astype(np.int64), \
        np.rint(obs[:, 3] * COUNT_SCALE).astype(np.int64)


def _classify(obs, next_obs):
    """Keys of ``s`` as an (n, 3) array, and masks real / phantom / mismatched."""
    i0, e0, t0 = decode(obs)
    i1, e1, t1 = decode(next_obs)
    same = (i0 == i1) & (e0 == e1)
    real = same & (t1 == t0 + 1)
    phantom = same & (t1 == t0)
    return np.stack([i0, e0, t0], axis=1), real, phantom, ~(real | phantom)


def count_transitions(memory_obs, memory_next, received_obs=None, received_next=None):
    """Compares the replay memory with what the learner received (see the module docstring)."""
    keys, real, phantom, mismatched = _classify(memory_obs, memory_next)
    stored = collections.Counter(map(tuple, keys[real].tolist()))
    duplicated = sum(c - 1 for c in stored.values() if c > 1)
    episodes = {}
    for ident, episode, t in stored:
        episodes.setdefault((ident, episode), set()).add(t)
    gaps = sum(max(ts) + 1 - len(ts) for ts in episodes.values())
    counts = {'stored': int(len(keys)), 'real': int(real.sum()), 'phantom': int(phantom.sum()),
              'mismatched': int(mismatched.sum()), 'duplicated': int(duplicated),
              'gaps': int(gaps), 'episodes': len(episodes), 'received': None, 'missing': 0}
    if received_obs is not None and len(received_obs):
        rkeys, rreal, _, _ = _classify(received_obs, received_next)
        received = collections.Counter(map(tuple, rkeys[rreal].tolist()))
        counts['received'] = int(len(rkeys))
        counts['missing'] = int(sum(max(0, c - stored.get(k, 0)) for k, c in received.items()))
    elif received_obs is not None:
        counts['received'] = 0
    counts['lost'] = counts['gaps'] + counts['missing']
    return counts


def nothing_compared(counts):
    """Whether a cross-check had nothing on one side: transitions stored but none recorded as
    received, or episodes.csv rows but no episode end received. "0 lost" would then mean that
    nothing was compared (a recorder that no longer sees the learner's calls)."""
    return bool(counts['stored'] and not counts['received']
                or counts.get('csv_rows') and not counts.get('episodes_received'))


def count_episodes(csv_path, ended_env, ended_length):
    """``episodes.csv`` rows against the episode ends the learner received: missing / extra."""
    rows = []
    if os.path.exists(csv_path):
        with open(csv_path) as f:
            rows = [(int(r['env']), int(r['length'])) for r in csv.DictReader(f)]
    wanted = collections.Counter(zip(np.asarray(ended_env).tolist(),
                                     np.asarray(ended_length).tolist()))
    have = collections.Counter(rows)
    return {'csv_rows': len(rows), 'episodes_received': int(sum(wanted.values())),
            'csv_missing': int(sum((wanted - have).values())),
            'csv_extra': int(sum((have - wanted).values()))}


def count_dump(dump_path, csv_path=None):
    """The counts of one learner's run from its ``--dump`` (and its ``episodes.csv``)."""
    data = np.load(dump_path)
    counts = count_transitions(data['memory_obs'], data['memory_next'], data['received_obs'],
                               data['received_next'])
    if csv_path is not None:
        counts.update(count_episodes(csv_path, data['ended_env'], data['ended_length']))
    reasons = collections.Counter(data['ended_reason'].tolist())
    counts['end_reasons'] = dict(reasons)
    return counts


# --- processes -------------------------------------------------------------------------------------
def _stat(pid):
    with open('/proc/%d/stat' % pid) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return fields[0], int(fields[1]), int(fields[3])   # state, ppid, session


def processes(where=None):
    """``{pid: (state, ppid, sid)}`` of live (non-zombie) processes, ``where(pid, stat)``."""
    found = {}
    for name in os.listdir('/proc'):
        if not name.isdigit():
            continue
        pid = int(name)
        try:
            stat = _stat(pid)
        except (IOError, OSError, ValueError, IndexError):
            continue
        if stat[0] != 'Z' and (where is None or where(pid, stat)):
            found[pid] = stat
    return found


def session_alive(sid):
    return sorted(processes(lambda pid, stat: stat[2] == sid))


def cmdline(pid):
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as f:
            return f.read().decode(errors='replace').replace('\0', ' ')
    except (IOError, OSError):
        return ''


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def wait_for(condition, timeout, every=0.1):
    """Polls ``condition()`` until it is truthy; returns its value, or None at the timeout."""
    deadline = time.time() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.time() >= deadline:
            return None
        time.sleep(every)


class Farm(object):
    """One ``farm.py`` process in a session of its own (optionally inside a network namespace)."""

    def __init__(self, ctx, name, capacity=2, extra=(), host='127.0.0.1', netns=None, key=None,
                 port=None):
        self.ctx, self.name, self.capacity = ctx, name, capacity
        self.host, self.netns, self.key = host, netns, key
        self.port = port or free_port()
        self.extra = list(extra)
        self.log_path = os.path.join(ctx.dir, 'farm-%s.log' % name)
        self.process = None
        self.start()

    def start(self):
        command = [sys.executable, os.path.join(ROOT, 'farm.py'), '--host', self.host,
                   '--port', str(self.port), '--capacity', str(self.capacity)] + self.extra
        if self.netns:
            command = ['ip', 'netns', 'exec', self.netns] + command
        env = dict(os.environ)
        env.pop('FARM_KEY', None)
        if self.key:
            env['FARM_KEY'] = self.key
        with open(self.log_path, 'a') as logf:
            self.process = subprocess.Popen(command, env=env, start_new_session=True,
                                            stdout=logf, stderr=subprocess.STDOUT, cwd=self.ctx.dir)
        self.ctx.sessions.add(self.process.pid)
        if not wait_for(lambda: self.info(timeout=1.0) is not None, 60, 0.2):
            raise RuntimeError('farm %s did not answer within 60 s: %s' % (self.name, self.log()[-2000:]))

    @property
    def pid(self):
        return self.process.pid

    def log(self):
        with open(self.log_path) as f:
            return f.read()

    def info(self, timeout=3.0):
        import Pyro4
        Pyro4.config.SERIALIZER = 'msgpack'  # the only one a farm accepts
        proxy = Pyro4.Proxy('PYRO:farm@%s:%d' % (self.host, self.port))
        proxy._pyroMaxRetries = 0
        proxy._pyroTimeout = timeout
        if self.key:
            proxy._pyroHmacKey = self.key.encode()
        try:
            with proxy:
                return proxy.info()
        except Exception:
            return None

    def signal(self, sig):
        os.kill(self.process.pid, sig)

    def workers(self):
        """PIDs of this farm's environment workers: children of its forkserver."""
        mine = processes(lambda pid, stat: stat[2] == self.process.pid)
        servers = [pid for pid, stat in mine.items() if stat[1] == self.process.pid
                   and 'forkserver' in cmdline(pid)]
        return sorted(pid for pid, stat in mine.items() if stat[1] in servers)

    def stop(self):
        """SIGTERM, as an operator would; returns the PIDs of its session still alive after 20 s."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                pass
        wait_for(lambda: not session_alive(self.pid), 5)
        return session_alive(self.pid)


class Learner(object):
    """``bench/drill_learner.py`` in a session of its own, watched through its heartbeat."""

    def __init__(self, ctx, name, farms, n_envs, extra=(), env=None, wait=False, run_dir=None,
                 env_kwargs=None):
        self.ctx, self.name = ctx, name
        base = os.path.join(ctx.dir, 'learner-%s' % name)
        self.heartbeat_path, self.stop_path = base + '.heartbeat.json', base + '.stop'
        self.dump_path, self.result_path = base + '.npz', base + '.result.json'
        self.wait_path, self.log_path = base + '.go', base + '.log'
        self.run_dir = run_dir or base + '.run'
        self.n_envs = n_envs
        command = [sys.executable, os.path.join(ROOT, 'bench', 'drill_learner.py'),
                   '--heartbeat', self.heartbeat_path, '--stop-file', self.stop_path,
                   '--dump', self.dump_path, '--result', self.result_path,
                   '--farms', ','.join(farms), '--n-envs', str(n_envs), '--run-dir', self.run_dir,
                   '--env-kwargs', json.dumps(env_kwargs or ENV_KWARGS),
                   '--seed', str(random.randint(1, 10 ** 6)), '--stepping', ctx.stepping]
        command += LEARNER_FLAGS + list(extra)
        if wait:
            command += ['--wait-file', self.wait_path]
        full_env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
        full_env.pop('FARM_KEY', None)
        full_env.update(env or {})
        with open(self.log_path, 'a') as logf:
            self.process = subprocess.Popen(command, env=full_env, start_new_session=True,
                                            stdout=logf, stderr=subprocess.STDOUT, cwd=ctx.dir)
        ctx.sessions.add(self.process.pid)

    @property
    def pid(self):
        return self.process.pid

    def beat(self):
        try:
            with open(self.heartbeat_path) as f:
                return json.load(f)
        except (IOError, OSError, ValueError):
            return {}

    def step(self):
        return int(self.beat().get('global_step', 0))

    def alive(self):
        return self.process.poll() is None

    def wait_phase(self, phases, timeout=120):
        return wait_for(lambda: self.beat().get('phase') in phases or not self.alive(), timeout)

    def wait_steps(self, target, timeout):
        """The learner's own time at which its global step reached ``target``, or None."""
        def reached():
            b = self.beat()
            if int(b.get('global_step', 0)) >= target:
                return b['time']
            return None if self.alive() else -1
        value = wait_for(reached, timeout, 0.05)
        return None if value in (None, -1) else value

    def progress_after(self, moment, timeout, vector_steps=3):
        """Seconds from ``moment`` until the learner has taken ``vector_steps`` more vector steps
        than it had at ``moment`` (None if it does not within ``timeout``)."""
        done = self.wait_steps(self.step() + vector_steps * self.n_envs, timeout)
        return None if done is None else max(0.0, done - moment)

    def error(self):
        try:
            with open(self.result_path) as f:
                error = json.load(f).get('error')
        except (IOError, OSError, ValueError):
            error = None
        if error is None and self.process.poll() not in (None, 0):
            lines = [l for l in self.log().splitlines() if l.strip()]
            error = 'exit code %s: %s' % (self.process.returncode, lines[-1] if lines else '')
        return error

    def log(self):
        with open(self.log_path) as f:
            return f.read()

    def go(self):
        open(self.wait_path, 'w').close()

    def stop(self, timeout=90):
        """Asks it to stop (stop file); returns its result JSON (None if it never wrote one)."""
        open(self.stop_path, 'w').close()
        if self.alive():
            try:
                self.process.send_signal(signal.SIGCONT)
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning('learner %s did not stop within %d s: killed', self.name, timeout)
                os.killpg(self.pid, signal.SIGKILL)
                self.process.wait()
        try:
            with open(self.result_path) as f:
                return json.load(f)
        except (IOError, OSError, ValueError):
            return None

    def counts(self):
        if not os.path.exists(self.dump_path):
            return None
        return count_dump(self.dump_path, os.path.join(self.run_dir, 'episodes.csv'))


class Context(object):
    """One drill's directory and every process session it started; cleans up whatever is left."""

    def __init__(self, name, base, stepping='async'):
        self.name, self.stepping = name, stepping
        self.dir = os.path.join(base, name if stepping == 'async' else name + '-' + stepping)
        os.makedirs(self.dir)
        self.sessions = set()
        self.farms, self.learners = [], []
        self.left = []         # PIDs found alive that should not have been, with why
        self.notes = []
        self.cleanups = []

    def farm(self, name, **kwargs):
        f = Farm(self, name, **kwargs)
        self.farms.append(f)
        return f

    def learner(self, name, farms, n_envs, **kwargs):
        links = ['%s:%d:%d' % (f.host, f.capacity, f.port) for f in farms]
        one = Learner(self, name, links, n_envs, **kwargs)
        self.learners.append(one)
        return one

    def note(self, text):
        self.notes.append(text)

    def finish(self, row, learner, count=True):
        """Stops ``learner`` (counting its transitions unless not ``count``), then everything;
        fills ``row``."""
        result = learner.stop() if learner is not None else None
        error = learner.error() if learner is not None else None
        if error:
            row['recovered'] = False
            self.note('learner %s: %s' % (learner.name, error[:300]))
        counts = learner.counts() if learner is not None and count else None
        if counts is not None and nothing_compared(counts):
            row['recovered'] = False
            self.note('nothing to compare: %d transitions stored, %s recorded as received, %s '
                      'episode ends received; the recorder missed the learner\'s calls'
                      % (counts['stored'], counts['received'], counts.get('episodes_received')))
        if counts is not None:
            row['transitions_lost'] = counts['lost']
            row['transitions_duplicated'] = counts['duplicated']
            row['counts'] = counts
            if counts['phantom']:
                self.note('%d phantom transitions stored (s\' = s: the farmer\'s stand-in for a '
                          'lost step)' % counts['phantom'])
            if counts['mismatched']:
                row['recovered'] = False
                self.note('%d mismatched transitions (s\' from another env or episode)'
                          % counts['mismatched'])
            if counts.get('csv_missing') or counts.get('csv_extra'):
                self.note('episodes.csv: %d rows missing, %d extra' % (
                    counts['csv_missing'], counts['csv_extra']))
            if result and result.get('memory_size') == result.get('memory_limit'):
                self.note('replay memory wrapped: counts cover its newest part only')
        for other in self.learners:
            if other is not learner and other.alive():
                other.stop(30)
        # Leases closed: every farm still running should drop to no worker at all.
        for f in self.farms:
            if f.process.poll() is None:
                wait_for(lambda: not f.workers(), 15)
                stray = f.workers()
                if stray:
                    self.left.extend(stray)
                    self.note('farm %s kept %d workers after its learners closed' % (f.name,
                                                                                      len(stray)))
        for f in self.farms:
            if f.process.poll() is None:
                rest = f.stop()
                if rest:
                    self.left.extend(rest)
                    self.note('farm %s left %d processes after SIGTERM' % (f.name, len(rest)))
        self.cleanup()
        row['processes_left'] = len(set(self.left))
        row['notes'] = '; '.join(collections.OrderedDict.fromkeys(self.notes))
        return row

    def cleanup(self):
        for sid in self.sessions:
            alive = session_alive(sid)
            for pid in alive:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        for fn in reversed(self.cleanups):
            try:
                fn()
            except Exception as e:  # cleaning up must go on
                log.warning('%s: cleanup failed: %s', self.name, e)
        self.cleanups = []


def new_row(name, done):
    return {'drill': name, 'done': done, 'recovered': False, 'seconds_to_recover': None,
            'transitions_lost': None, 'transitions_duplicated': None, 'processes_left': None,
            'notes': ''}


def start_training(learner, steps=300, timeout=150):
    """Waits until ``learner`` trains (``steps`` env steps done)."""
    if learner.wait_steps(steps, timeout) is None:
        raise RuntimeError('learner %s did not train: %s' % (learner.name,
                                                               learner.error() or 'no progress'))


def log_lines(farm, *words):
    return [l for l in farm.log().splitlines() if all(w in l for w in words)]


# --- the drills ------------------------------------------------------------------------------------
def drill_worker_kill(ctx, quick):
    row = new_row('worker_kill', 'kill -9 of one of 2 workers mid-episode (1 farm, 2 envs)')
    farm = ctx.farm('a', capacity=2)
    learner = ctx.learner('1', [farm], 2)
    start_training(learner)
    victim = random.choice(farm.workers())
    moment = time.time()
    os.kill(victim, signal.SIGKILL)
    row['seconds_to_recover'] = learner.progress_after(moment, 30)
    back = wait_for(lambda: len(farm.workers()) == 2 and victim not in farm.workers(), 30)
    learner.wait_steps(learner.step() + 200, 30)
    row['recovered'] = row['seconds_to_recover'] is not None and bool(back)
    if not back:
        ctx.note('farm has %d workers, not 2' % len(farm.workers()))
    return ctx.finish(row, learner)


def drill_hung_step(ctx, quick):
    row = new_row('hung_step', 'SIGSTOP of one worker (farm --step-timeout 2)')
    farm = ctx.farm('a', capacity=2, extra=['--step-timeout', '2'])
    learner = ctx.learner('1', [farm], 2)
    start_training(learner)
    victim = random.choice(farm.workers())
    moment = time.time()
    os.kill(victim, signal.SIGSTOP)
    gone = wait_for(lambda: victim not in farm.workers(), 30)
    row['seconds_to_recover'] = learner.progress_after(moment, 30)
    learner.wait_steps(learner.step() + 200, 30)
    row['recovered'] = bool(gone) and row['seconds_to_recover'] is not None
    if not gone:
        ctx.left.append(victim)
        ctx.note('the stopped worker %d was never killed' % victim)
    return ctx.finish(row, learner)


def _over_capacity(farms):
    """Farms above their capacity (or not answering) now: ``{name: in_use or None}``."""
    over = {}
    for f in farms:
        info = f.info(timeout=3.0)
        if info is None or info['in_use'] > info['capacity']:
            over[f.name] = None if info is None else info['in_use']
    return over


def _in_use(farms):
    return ', '.join('%s %s' % (f.name, (f.info(timeout=3.0) or {}).get('in_use', 'down'))
                     for f in farms)


def drill_farm_kill_restart(ctx, quick):
    row = new_row('farm_kill_restart', 'kill -9 of farm a (2 farms x 2 envs, 4 envs), '
                  'restart on its port 5 s later')
    a, b = ctx.farm('a', capacity=2), ctx.farm('b', capacity=2)
    learner = ctx.learner('1', [a, b], 4)
    start_training(learner)
    a_session = a.pid
    moment = time.time()
    a.signal(signal.SIGKILL)
    a.process.wait()
    kept = learner.progress_after(moment, 60)
    wait_for(lambda: not session_alive(a_session), 10)
    orphans = session_alive(a_session)
    if orphans:
        ctx.left.extend(orphans)
        ctx.note('%d of the killed farm\'s processes still alive 10 s later' % len(orphans))
    ctx.note('training went on %s after the kill' % ('%.1f s' % kept if kept is not None
                                                     else 'NOT (60 s)'))
    time.sleep(max(0.0, moment + 5 - time.time()))
    a.start()
    restarted = time.time()
    back = wait_for(lambda: (a.info() or {}).get('in_use') == 2 and not _over_capacity([a, b]),
                    75, 0.5)
    row['seconds_to_recover'] = time.time() - restarted if back else None
    if not back:
        ctx.note('75 s after the restart: in use %s' % _in_use([a, b]))
    learner.wait_steps(learner.step() + 100, 30)
    row['recovered'] = kept is not None and bool(back) and learner.alive()
    return ctx.finish(row, learner)


def _farm_stop(ctx, quick, seconds, name):
    row = new_row(name, 'SIGSTOP of farm a for %d s, then SIGCONT (2 farms x 2 envs, 4 envs, '
                  '--step-timeout 3: call timeout 33 s)' % seconds)
    a = ctx.farm('a', capacity=2, extra=['--step-timeout', '3'])
    b = ctx.farm('b', capacity=2, extra=['--step-timeout', '3'])
    learner = ctx.learner('1', [a, b], 4)
    start_training(learner)
    a.signal(signal.SIGSTOP)
    ctx.cleanups.append(lambda: a.process.poll() is None and a.signal(signal.SIGCONT))
    time.sleep(seconds)
    a.signal(signal.SIGCONT)
    moment = time.time()
    went_on = learner.progress_after(moment, 60)
    placed = wait_for(lambda: not _over_capacity([a, b]), 75, 1.0)
    settled = time.time() - moment
    if not placed:
        ctx.note('75 s after SIGCONT: in use %s (capacity 2 each)' % _in_use([a, b]))
    row['seconds_to_recover'] = max(went_on, settled) if went_on is not None and placed else None
    learner.wait_steps(learner.step() + 100, 30)
    row['recovered'] = went_on is not None and bool(placed) and learner.alive()
    return ctx.finish(row, learner)


def drill_farm_stop_30s(ctx, quick):
    return _farm_stop(ctx, quick, 30, 'farm_stop_30s')


def drill_farm_stop_long(ctx, quick):
    return _farm_stop(ctx, quick, 45, 'farm_stop_long')


def drill_learner_stop_past_ttl(ctx, quick):
    row = new_row('learner_stop_past_ttl', 'SIGSTOP of the learner for 15 s (farm --lease-ttl 5), '
                  'then SIGCONT')
    farm = ctx.farm('a', capacity=2, extra=['--lease-ttl', '5'])
    learner = ctx.learner('1', [farm], 2)
    start_training(learner)
    os.kill(learner.pid, signal.SIGSTOP)
    ctx.cleanups.append(lambda: learner.alive() and os.kill(learner.pid, signal.SIGCONT))
    time.sleep(15)
    os.kill(learner.pid, signal.SIGCONT)
    moment = time.time()
    row['seconds_to_recover'] = learner.progress_after(moment, 60)
    expired = log_lines(farm, 'expired')
    ctx.note('the farm expired the lease' if expired else 'the lease did NOT expire: the fault '
             'did not bite (the farm granted the learner a longer TTL than its --lease-ttl)')
    learner.wait_steps(learner.step() + 100, 30)
    row['recovered'] = row['seconds_to_recover'] is not None and learner.alive()
    return ctx.finish(row, learner)


def drill_learner_kill_new_learner(ctx, quick):
    row = new_row('learner_kill_new_learner', 'kill -9 of the learner (1 farm, 2 envs = its '
                  'capacity), a second learner asks for 2 envs at once')
    farm = ctx.farm('a', capacity=2)
    first = ctx.learner('1', [farm], 2)
    second = ctx.learner('2', [farm], 2, wait=True)
    start_training(first)
    second.wait_phase(('waiting',))
    moment = time.time()
    os.killpg(first.pid, signal.SIGKILL)
    first.process.wait()
    second.go()
    done = second.wait_steps(3 * 2, 30)
    row['seconds_to_recover'] = None if done is None else done - moment
    if done is None:
        freed = wait_for(lambda: (farm.info() or {}).get('in_use') == 0, 70, 0.5)
        ctx.note('the killed learner\'s environments were %s' % (
            'freed %.0f s after the kill' % (time.time() - moment) if freed
            else 'still held 70 s after the kill'))
    row['recovered'] = done is not None
    return ctx.finish(row, second)


def drill_checkpoint_kill(ctx, quick):
    trials = 2 if quick else 3
    row = new_row('checkpoint_kill', 'kill -9 of a learner saving checkpoints back to back, at a '
                  'random moment, then --resume; %d times' % trials)
    # Room for every learner: a killed one's environments may stay leased until its lease
    # expires, which is another drill's business (learner_kill_new_learner), not this one's.
    farm = ctx.farm('a', capacity=2 * (trials + 1))
    run_dir = os.path.join(ctx.dir, 'run')
    kwargs = {'episode_length': 5, 'step_seconds': 0.0}
    good, waits = 0, []
    resume = []
    for k in range(trials + 1):
        learner = Learner(ctx, str(k), ['127.0.0.1:2:%d' % farm.port], 2, run_dir=run_dir,
                          env_kwargs=kwargs,
                          extra=['--save-storm', '--episodes', '2'] + resume)
        ctx.learners.append(learner)
        resume = ['--resume', run_dir]
        if k > 0:
            started = learner.wait_phase(('saving', 'saved', 'failed'), 150)
            beat = learner.beat()
            waits.append(time.time() - moment)
            loaded = dict(beat.get('loaded') or {}, digest=beat.get('loaded_digest'))
            candidates = [c for c in (last.get('saved'), last.get('saving')) if c]
            if started and beat.get('phase') != 'failed' and loaded['digest'] and any(
                    all(loaded.get(key) == c.get(key) for key in ('digest', 'global_step',
                                                                  'episodes', 'updates'))
                    for c in candidates):
                good += 1
            else:
                ctx.note('trial %d: resume %s' % (k, (learner.error() or '')[:300] or (
                    'loaded %s, the last whole save was %s' % (loaded, candidates[:1]))))
        if k == trials:
            break
        if not wait_for(lambda: learner.beat().get('save', 0) >= 3 or not learner.alive(), 150):
            ctx.note('learner %d never saved' % k)
            break
        if not learner.alive():
            ctx.note('learner %d: %s' % (k, learner.error()))
            break
        time.sleep(random.uniform(0.0, 0.5))
        os.killpg(learner.pid, signal.SIGKILL)
        moment = time.time()
        learner.process.wait()
        last = learner.beat()
    row['recovered'] = good == trials
    row['seconds_to_recover'] = round(max(waits), 1) if waits and good == trials else None
    ctx.note('%d of %d resumes loaded the newest whole checkpoint (seconds include starting '
             'a learner process)' % (good, trials))
    # Several learners wrote this run, killed mid-step: transitions are not what this drill counts.
    return ctx.finish(row, ctx.learners[-1], count=False)


def _link_down(ctx, quick, seconds, name):
    row = new_row(name, 'a farm in its own network namespace behind a veth; the link down for '
                  '%d s (single farm, 2 envs, --step-timeout 3)' % seconds)
    why = netns.unavailable()
    if why:
        row['notes'] = 'skipped: ' + why
        row['recovered'] = None
        return row
    ns = netns.Host('drill%d' % os.getpid(), 231, random.randint(1, 250))
    ctx.cleanups.append(ns.close)
    key = 'drill-%d' % random.randint(0, 10 ** 9)
    farm = ctx.farm('a', capacity=2, host=ns.address, netns=ns.name, key=key,
                    extra=['--step-timeout', '3'])
    learner = ctx.learner('1', [farm], 2, env={'FARM_KEY': key})
    start_training(learner)
    ns.set_link(False)
    ctx.cleanups.append(lambda: ns.set_link(True))
    deadline = time.time() + seconds
    died = None
    while time.time() < deadline:
        if not learner.alive() and died is None:
            died = seconds - (deadline - time.time())
        time.sleep(min(1.0, max(0.0, deadline - time.time())))
    ns.set_link(True)
    moment = time.time()
    if died is not None:
        ctx.note('the learner exited %.0f s into the outage' % died)
    row['seconds_to_recover'] = learner.progress_after(moment, 60) if learner.alive() else None
    learner.wait_steps(learner.step() + 100, 30)
    row['recovered'] = row['seconds_to_recover'] is not None and learner.alive()
    return ctx.finish(row, learner)


def drill_link_down_20s(ctx, quick):
    return _link_down(ctx, quick, 20, 'link_down_20s')


def drill_link_down_5min(ctx, quick):
    return _link_down(ctx, quick, 300, 'link_down_5min')


class LinkProxy(object):
    """A TCP proxy between a learner and a farm that delays and stalls what it forwards."""

    def __init__(self, target, delay=0.0):
        self.target, self.delay = target, delay
        self.stalled_until = 0.0
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(('127.0.0.1', 0))
        self.server.listen(64)
        self.port = self.server.getsockname()[1]
        self.closed = False
        self.sockets = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sockets += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                queue = collections.deque()
                ready = threading.Condition()
                threading.Thread(target=self._read, args=(src, queue, ready), daemon=True).start()
                threading.Thread(target=self._write, args=(dst, queue, ready), daemon=True).start()

    def _read(self, src, queue, ready):
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b''
            with ready:
                queue.append((time.time() + self.delay, data))
                ready.notify()
            if not data:
                return

    def _write(self, dst, queue, ready):
        while True:
            with ready:
                while not queue:
                    ready.wait()
                due, data = queue.popleft()
            while True:  # in order: a stall holds everything behind it, as TCP does
                wait = max(due, self.stalled_until) - time.time()
                if wait <= 0:
                    break
                time.sleep(min(wait, 0.01))
            try:
                if not data:
                    dst.shutdown(socket.SHUT_WR)
                    return
                dst.sendall(data)
            except OSError:
                return

    def stall(self, seconds):
        self.stalled_until = time.time() + seconds

    def close(self):
        self.closed = True
        for s in [self.server] + self.sockets:
            try:
                s.close()
            except OSError:
                pass


def _link_proxy(ctx, quick, name, delay, stalls):
    what = ('%d ms added each way' % (delay * 1000) if delay else
            'forwarding held 1-4 s every 4-8 s (retransmit-like stalls)')
    row = new_row(name, 'the learner reaches its farm through a TCP proxy: %s, for %d s '
                  '(1 farm, 2 envs, --step-timeout 3)' % (what, 30))
    farm = ctx.farm('a', capacity=2, extra=['--step-timeout', '3'])
    proxy = LinkProxy(('127.0.0.1', farm.port), delay)
    ctx.cleanups.append(proxy.close)
    learner = Learner(ctx, '1', ['127.0.0.1:2:%d' % proxy.port], 2)
    ctx.learners.append(learner)
    start_training(learner, steps=100)
    first = learner.step()
    moment = time.time()
    end = moment + 30
    longest = 0.0
    while time.time() < end and learner.alive():
        if stalls:
            hold = random.uniform(1.0, 4.0)
            longest = max(longest, hold)
            proxy.stall(hold)
            time.sleep(min(end - time.time(), hold + random.uniform(4.0, 8.0)) if end > time.time() else 0)
        else:
            time.sleep(1.0)
    rate = (learner.step() - first) / max(time.time() - moment, 1e-9)
    row['seconds_to_recover'] = learner.progress_after(time.time(), 30)
    ctx.note('%.0f env steps/s through the proxy%s' % (
        rate, ', longest stall %.1f s' % longest if stalls else ''))
    row['recovered'] = row['seconds_to_recover'] is not None and learner.alive()
    return ctx.finish(row, learner)


def drill_link_delay_20ms(ctx, quick):
    return _link_proxy(ctx, quick, 'link_delay_20ms', 0.02, False)


def drill_link_stalls(ctx, quick):
    return _link_proxy(ctx, quick, 'link_stalls', 0.0, True)


DRILLS = collections.OrderedDict((name[len('drill_'):], fn) for name, fn in [
    ('drill_worker_kill', drill_worker_kill),
    ('drill_hung_step', drill_hung_step),
    ('drill_farm_kill_restart', drill_farm_kill_restart),
    ('drill_farm_stop_30s', drill_farm_stop_30s),
    ('drill_farm_stop_long', drill_farm_stop_long),
    ('drill_learner_stop_past_ttl', drill_learner_stop_past_ttl),
    ('drill_learner_kill_new_learner', drill_learner_kill_new_learner),
    ('drill_checkpoint_kill', drill_checkpoint_kill),
    ('drill_link_down_20s', drill_link_down_20s),
    ('drill_link_down_5min', drill_link_down_5min),
    ('drill_link_delay_20ms', drill_link_delay_20ms),
    ('drill_link_stalls', drill_link_stalls),
])
LONG = ('link_down_5min',)


# --- running -------------------------------------------------------------------------------------
def run_drill(name, base, quick, stepping='async'):
    ctx = Context(name, base, stepping)
    started = time.time()
    try:
        row = DRILLS[name](ctx, quick)
    except Exception as e:  # a drill that cannot even run is a failed row, not a crash
        log.exception('drill %s failed to run', name)
        row = new_row(name, 'see notes')
        ctx.note('the drill could not run: %s: %s' % (type(e).__name__, e))
        row = ctx.finish(row, ctx.learners[-1] if ctx.learners else None)
    finally:
        ctx.cleanup()
    row['stepping'] = stepping
    row['wall_s'] = round(time.time() - started, 1)
    if row['seconds_to_recover'] is not None:
        row['seconds_to_recover'] = round(row['seconds_to_recover'], 2)
    return row


def label(row):
    """A row's drill, with its stepping mode where the run recorded one."""
    return '%s (%s)' % (row['drill'], row['stepping']) if 'stepping' in row else row['drill']


def table(rows):
    head = '%-37s %-9s %9s %6s %6s %5s  %s' % ('drill', 'recovered', 'recover_s', 'lost',
                                               'dup', 'left', 'notes')
    lines = [head, '-' * len(head)]
    for r in rows:
        lines.append('%-37s %-9s %9s %6s %6s %5s  %s' % (
            label(r), {True: 'yes', False: 'NO', None: 'skipped'}[r['recovered']],
            '-' if r['seconds_to_recover'] is None else '%.1f' % r['seconds_to_recover'],
            '-' if r['transitions_lost'] is None else r['transitions_lost'],
            '-' if r['transitions_duplicated'] is None else r['transitions_duplicated'],
            '-' if r['processes_left'] is None else r['processes_left'], r['notes']))
    return '\n'.join(lines)


def markdown(rows):
    """The README's "what happens when" table from the rows of a run."""
    lines = ['| drill | what was done | recovered | seconds to recover | lost | duplicated | '
             'compared (received / stored) | processes left | notes |',
             '|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        counts = r.get('counts') or {}
        compared = ('%s / %s' % (counts['received'], counts['stored'])
                    if counts.get('received') is not None else '-')
        lines.append('| `%s` | %s | %s | %s | %s | %s | %s | %s | %s |' % (
            label(r), r['done'], {True: 'yes', False: '**no**', None: 'skipped'}[r['recovered']],
            '-' if r['seconds_to_recover'] is None else '%.1f' % r['seconds_to_recover'],
            '-' if r['transitions_lost'] is None else r['transitions_lost'],
            '-' if r['transitions_duplicated'] is None else r['transitions_duplicated'],
            compared, '-' if r['processes_left'] is None else r['processes_left'],
            r['notes'].replace('|', '/')))
    return '\n'.join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--json', action='store_true', help='print the rows as JSON on stdout')
    parser.add_argument('--only', nargs='+', choices=list(DRILLS), metavar='NAME',
                        help='run only these drills: %s' % ', '.join(DRILLS))
    parser.add_argument('--quick', action='store_true', help='skip %s' % ', '.join(LONG))
    parser.add_argument('--stepping', choices=('async', 'lockstep', 'both'), default='both',
                        help='the learners\' stepping mode; both: every drill in each mode')
    parser.add_argument('--keep', default='', help='keep logs and runs in this directory')
    parser.add_argument('--markdown', metavar='JSON',
                        help='run nothing: print the rows of a saved --json run as a Markdown '
                        'table (the README\'s "what happens when")')
    args = parser.parse_args(argv)
    if args.markdown:
        with open(args.markdown) as f:
            print(markdown(json.load(f)['rows']))
        return 0
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format='%(asctime)s %(name)s %(message)s', datefmt='%H:%M:%S')
    names = args.only or [n for n in DRILLS if not (args.quick and n in LONG)]
    base = args.keep or tempfile.mkdtemp(prefix='drills-')
    os.makedirs(base, exist_ok=True)
    random.seed()
    started = time.time()
    rows = []
    # SIGTERM (timeout, a scheduler) as Ctrl-C: the drill in progress kills its farms, learners,
    # namespaces and links (run_drill's finally) instead of leaving them running
    signal.signal(signal.SIGTERM, _interrupt)
    interrupted = False
    try:
        modes = ('async', 'lockstep') if args.stepping == 'both' else (args.stepping,)
        for name, mode in itertools.product(names, modes):
            log.info('drill %s (%s) ...', name, mode)
            rows.append(run_drill(name, base, args.quick, mode))
            r = rows[-1]
            log.info('drill %s (%s): recovered %s, %s s to recover, lost %s, duplicated %s, left %s; %s',
                     name, mode, r['recovered'], r['seconds_to_recover'], r['transitions_lost'],
                     r['transitions_duplicated'], r['processes_left'], r['notes'])
    except KeyboardInterrupt:
        interrupted = True
        log.warning('interrupted: the drill in progress was stopped and cleaned up')
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    sys.stderr.write('\n' + table(rows) + '\n')
    if args.json:
        print(json.dumps({'rows': rows, 'quick': args.quick, 'total_wall_s':
                          round(time.time() - started, 1), 'kept': args.keep or None,
                          'interrupted': interrupted},
                         indent=1, sort_keys=True))
    if interrupted:
        return 130
    return 0 if all(r['recovered'] is not False for r in rows) else 1


def _interrupt(signum, frame):
    raise KeyboardInterrupt('signal %d' % signum)


if __name__ == '__main__':
    sys.exit(main())
