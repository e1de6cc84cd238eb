#!/usr/bin/env python
"""farm_bench.py: what the farm costs and what it buys, measured side by side in one run.

    python bench/farm_bench.py --json [--quick]

Prints ONE JSON object on stdout (everything else, including whatever OpenSim and osim-rl print,
goes to stderr). Every farm is a local ``farm.py`` subprocess started by ``farmer.Farmer`` on a
free loopback port of its own, and closed (with its workers) before the script returns; the
``leftover_farm_processes`` key lists any ``farm.py`` of ours still running at the end (should be
``[]``). Warm-up steps are never timed. Where two setups are compared, they are stepped in
alternating blocks, so that background load on the machine falls on both alike.

Keys
----
``rpc_round_trip_ms``
    What one environment step costs through a local farm beyond the step itself:
    ``farm_step_ms - inproc_step_ms``. ``farm_step_ms`` is the median wall time of
    ``FarmVecEnv.step`` with ONE ``SlowEnv`` (``step_seconds=0``, 339-float observation) on a
    local farm; ``inproc_step_ms`` the median of ``contract.InProcessVecEnv.step`` over the same
    environment in this process. Both sides do the same vector-env bookkeeping (action check,
    float32 observation array, episode tracker), so the difference is the farm: Pyro4 + msgpack
    to the daemon, its worker process (a one-byte message and a shared block), and back. ``rpc_steps`` steps per side;
    ``farm_step_p90_ms`` / ``inproc_step_p90_ms`` give the tails.
    Target: <= 0.3 ms.
``efficiency_slow_32``
    32 ``SlowEnv`` (``step_seconds=0.03``) on one local farm of capacity 32, stepped as ONE vector
    env: achieved env steps/s / ideal, ideal being 32 / 0.03 s (every worker sleeping all the
    time, zero overhead). Context: ``slow_32_ideal_steps_per_s``, ``slow_32_steps_per_s``,
    ``slow_32_vec_step_ms_median`` (ideal 30 ms), and ``slow_1_inproc_step_ms_median``: one such
    step in this process (InProcessVecEnv), i.e. what ``time.sleep(0.03)`` really takes here; the
    excess over 30 ms is the machine's, not the farm's. Target: >= 0.95. Where the rest goes:
    ``slow_32_farm_alone_vec_step_ms_median`` / ``slow_32_farm_alone_efficiency`` step the same
    32 environments with a ``farm.Farm`` called in this process (its worker processes and
    dispatching; no Pyro4, msgpack or farmer), and ``slow_32_wire_convert_ms_median`` is what
    one 32-environment answer costs to pack, unpack and turn into a float32 array.
    ``slow_32_bare_vec_step_ms_median`` / ``slow_32_bare_efficiency``: what this machine allows
    for the same work at all, 32 bare processes that each sleep 0.03 s per one-byte command on a
    socket pair of their own (commands written in turn, answers collected with one poll; no
    environment, no shared block, no farm). On a machine with far fewer cores than 32 the
    farm's loss is mostly its workers' own per-step work, which the bare processes do not do,
    queueing for the cores when all 32 wake at once.
``osim_speedup_2``
    ``L2M2019Env`` steps/s of 2 environments through a local farm (capacity 2, one ``FarmVecEnv``
    of 2, auto-reset on the farm) / steps/s of ONE ``L2M2019Env`` built with ``envs.make`` and
    stepped directly in this process (reset called as episodes end, and timed). Both take the
    same number of env steps (``osim_steps``), with actions uniform in [0, 1]. With random
    actions the model falls after about 100 steps, so resets (about 50 ms each) are part of the
    work. Target: >= 1.7 on 2 cores. ``osim_bare_speedup_2`` is the machine's own ceiling: two
    plain processes (a spawned pool of 2, each stepping its own env, no farm, no pipes) / one;
    ``osim_farm_vs_bare_2`` the farm's steps/s / that.
``osim_vs_async_2``
    The same 2-env farm's steps/s / ``gymnasium.vector.AsyncVectorEnv`` over 2 ``L2M2019Env``
    (each a small ``gymnasium.Env`` around an ``envs.make`` adapter, in a spawned worker
    process), also ``osim_steps`` env steps. ``autoreset_mode=SAME_STEP``: an ended episode is
    reset inside the step that ended it, as the farm does, so one counted step is the same work
    on both sides (gymnasium's default NEXT_STEP would count the reset-only step as a step).
    Target: >= 0.95.

``lockstep_l2m_trace_32`` / ``async_l2m_trace_32``
    32 ``TraceEnv`` (``trace='l2m'``: ``L2M2019Env``'s recorded step and reset times,
    bench/traces/l2m.json, replayed by sleeping them) over 2 local farms of capacity 16, as ONE
    vector env: env steps/s / ideal, ideal = 32 / the trace's mean step time (resets not counted
    in the ideal: they are work the real simulator does too; ``*_ideal_with_resets`` counts them).
    ``*_lockstep_bound``: what lockstep can reach on the trace at all, mean step / E[max of the
    steps of 32 environments] (drawn independently from the trace): the issue's figure.
    Lockstep: ``step`` with random actions; asynchronous: ``recv()`` (batch_size 1: whichever
    environments are ready), random actions for them, ``send``. Each mode gets a vector env of
    its own, seeded 0..31 so that the environments start spread over the trace, where that mode
    would find them in the long run (``TraceEnv``'s ``start``: 'step' for lockstep, 'time' for
    asynchronous), then ``trace_warmup_s`` untimed and ``trace_seconds`` timed without a pause.
    Targets: async >= 0.90 (lockstep expected about 0.5).
``lockstep_arm_trace_16`` / ``async_arm_trace_16``
    The same with 16 ``TraceEnv(trace='arm2d')`` (``Arm2DEnv``: its integrator stalls for seconds
    in some states) over the same 2 farms, timed ``arm_factor`` times longer: the stalls make it
    noisy (``--trace-seconds`` sets both windows). Target: async >= 0.85.
``osim_async_2``
    2 real ``Arm2DEnv`` (osim-rl's default accuracy) through a local farm of capacity 2, one vector
    env: env steps/s asynchronous (``recv`` batch 1, ``send``) / lockstep (``step``), in
    alternating timed windows (``osim_async_seconds`` each, ``osim_async_rounds`` of each), every
    window from a reset.

Context keys: ``cores``, ``python``, ``loadavg_start`` / ``loadavg_end`` and, per measurement,
``<m>_background_busy_cores`` (cores' worth of CPU the machine used in the second before it, while
this script was idle: others' load, which these numbers cannot separate out) and
``<m>_bench_busy_cores`` (the whole machine, ours included, during it), ``mode``, per measurement the env steps counted, the timed wall seconds
(``*_wall_s``) and the rates (``*_steps_per_s``), ``targets`` and ``targets_met``, and
``total_wall_s``.
"""
import argparse
import functools
import json
import logging
import multiprocessing
import os
import platform
import select
import socket
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import gymnasium  # noqa: E402
import msgpack  # noqa: E402

import farmer  # noqa: E402
from vecenv import contract  # noqa: E402

log = logging.getLogger('farm_bench')

OBS_SIZE = 339
SLOW_STEP_SECONDS = 0.03
TARGETS = {'rpc_round_trip_ms': ('<=', 0.3), 'efficiency_slow_32': ('>=', 0.95),
           'osim_speedup_2': ('>=', 1.7), 'osim_vs_async_2': ('>=', 0.95),
           'async_l2m_trace_32': ('>=', 0.90), 'async_arm_trace_16': ('>=', 0.85)}

# Steps per mode. rpc: timed steps per side, in blocks; slow32 and osim: timed vector steps.
SIZES = {
    'quick': {'rpc_steps': 600, 'rpc_block': 150, 'rpc_warmup': 100,
              'slow_steps': 40, 'slow_warmup': 5, 'slow_single_steps': 20,
              'osim_vec_steps': 60, 'osim_block': 30, 'osim_warmup': 5,
              'trace_seconds': 3.0, 'arm_factor': 1.0, 'trace_warmup_s': 1.0,
              'osim_async_rounds': 1, 'osim_async_seconds': 4.0},
    'full': {'rpc_steps': 5000, 'rpc_block': 250, 'rpc_warmup': 300,
             'slow_steps': 300, 'slow_warmup': 10, 'slow_single_steps': 60,
             'osim_vec_steps': 500, 'osim_block': 50, 'osim_warmup': 10,
             'trace_seconds': 60.0, 'arm_factor': 2.0, 'trace_warmup_s': 3.0,
             'osim_async_rounds': 3, 'osim_async_seconds': 60.0},
}


def free_port():
    """A loopback port nothing listens on now (the farm binds it a moment later)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]
    finally:
        sock.close()


def local_farmer(capacity):
    port = free_port()
    log.info('starting a local farm of capacity %d on port %d', capacity, port)
    return farmer.Farmer(farms=[('127.0.0.1', capacity, port)]), port


def percentile_ms(seconds, q):
    return float(np.percentile(np.asarray(seconds), q) * 1000.0)


# --- rpc round trip ------------------------------------------------------------------------------
def bench_rpc(size, ports):
    kwargs = {'step_seconds': 0, 'obs_size': OBS_SIZE}
    farm_times, inproc_times = [], []
    fm, port = local_farmer(1)
    ports.append(port)
    with fm:
        farm_env = fm.vec_env('SlowEnv', 1, kwargs)
        inproc_env = contract.InProcessVecEnv('SlowEnv', 1, kwargs)
        act_size = farm_env.action_space.shape[0]
        actions = np.random.default_rng(0).uniform(0, 1, (size['rpc_block'], 1, act_size))
        with farm_env, inproc_env:
            for env in (farm_env, inproc_env):
                env.reset()
                for k in range(size['rpc_warmup']):
                    env.step(actions[k % len(actions)])
            clock = time.perf_counter
            while len(farm_times) < size['rpc_steps']:
                for env, times in ((farm_env, farm_times), (inproc_env, inproc_times)):
                    for action in actions:
                        start = clock()
                        env.step(action)
                        times.append(clock() - start)
    farm_ms = percentile_ms(farm_times, 50)
    inproc_ms = percentile_ms(inproc_times, 50)
    log.info('rpc: farm %.3f ms, in-process %.3f ms per step (medians of %d)', farm_ms, inproc_ms,
             len(farm_times))
    return {'rpc_round_trip_ms': round(farm_ms - inproc_ms, 4),
            'farm_step_ms': round(farm_ms, 4), 'inproc_step_ms': round(inproc_ms, 4),
            'farm_step_p90_ms': round(percentile_ms(farm_times, 90), 4),
            'inproc_step_p90_ms': round(percentile_ms(inproc_times, 90), 4),
            'rpc_steps': len(farm_times),
            'rpc_farm_wall_s': round(sum(farm_times), 3),
            'rpc_inproc_wall_s': round(sum(inproc_times), 3)}


# --- 32 slow envs --------------------------------------------------------------------------------
def bench_slow32(size, ports):
    n = 32
    kwargs = {'step_seconds': SLOW_STEP_SECONDS, 'obs_size': OBS_SIZE}
    # What one such step really takes here, sleep overshoot included (not the farm's doing).
    with contract.InProcessVecEnv('SlowEnv', 1, kwargs) as single:
        single.reset()
        one = np.full((1, single.action_space.shape[0]), 0.5)
        single_times = []
        for _ in range(size['slow_single_steps']):
            t = time.perf_counter()
            single.step(one)
            single_times.append(time.perf_counter() - t)
    fm, port = local_farmer(n)
    ports.append(port)
    step_times = []
    with fm:
        env = fm.vec_env('SlowEnv', n, kwargs)
        with env:
            act_size = env.action_space.shape[0]
            actions = np.random.default_rng(1).uniform(0, 1, (size['slow_steps'], n, act_size))
            env.reset()
            for k in range(size['slow_warmup']):
                env.step(actions[k])
            clock = time.perf_counter
            started = clock()
            for action in actions:
                t = clock()
                env.step(action)
                step_times.append(clock() - t)
            wall = clock() - started
    alone_times, answer = farm_alone_slow32(n, kwargs, actions)
    bare_times = bare_slow32(n, len(actions), size['slow_warmup'])
    # The host's share of one such answer on the wire: msgpack out (farm) and in (farmer), and the
    # farmer's conversion to one float32 array.
    convert = []
    for _ in range(20):
        t = time.perf_counter()
        obs = np.array([r[0] for r in msgpack.unpackb(msgpack.packb(answer))], dtype=np.float32)
        convert.append(time.perf_counter() - t)
    assert obs.shape == (n, OBS_SIZE)
    steps = n * len(actions)
    ideal = n / SLOW_STEP_SECONDS
    achieved = steps / wall
    log.info('slow32: %.0f steps/s of an ideal %.0f (median vector step %.2f ms)', achieved, ideal,
             percentile_ms(step_times, 50))
    return {'efficiency_slow_32': round(achieved / ideal, 4),
            'slow_32_ideal_steps_per_s': round(ideal, 1),
            'slow_32_steps_per_s': round(achieved, 1),
            'slow_32_vec_step_ms_median': round(percentile_ms(step_times, 50), 3),
            'slow_32_vec_step_ms_p90': round(percentile_ms(step_times, 90), 3),
            'slow_32_steps': steps, 'slow_32_wall_s': round(wall, 3),
            'slow_1_inproc_step_ms_median': round(percentile_ms(single_times, 50), 3),
            'slow_32_farm_alone_vec_step_ms_median': round(percentile_ms(alone_times, 50), 3),
            'slow_32_farm_alone_efficiency': round(
                SLOW_STEP_SECONDS * 1000.0 / percentile_ms(alone_times, 50), 4),
            'slow_32_wire_convert_ms_median': round(percentile_ms(convert, 50), 3),
            'slow_32_bare_vec_step_ms_median': round(percentile_ms(bare_times, 50), 3),
            'slow_32_bare_efficiency': round(
                SLOW_STEP_SECONDS * 1000.0 / percentile_ms(bare_times, 50), 4)}


def farm_alone_slow32(n, kwargs, actions):
    """The same 32 environments stepped by a ``farm.Farm`` called in this process: its workers
    and dispatching, without Pyro4, msgpack or the farmer. Returns the step times and one answer."""
    import farm
    alone = farm.Farm(capacity=n, label='in-process')
    try:
        lease = alone.open_lease()
        ids = alone.make(lease, 'SlowEnv', kwargs, n)['env_ids']
        alone.reset(lease, ids)
        wire = actions.tolist()
        for action in wire[:5]:
            alone.step(lease, ids, action, True)
        times = []
        for action in wire:
            t = time.perf_counter()
            answer = alone.step(lease, ids, action, True)
            times.append(time.perf_counter() - t)
        return times, answer
    finally:
        alone.close()


def _bare_sleeper(conn, seconds):
    """A bare process of :func:`bare_slow32`: sleeps ``seconds`` per one-byte command."""
    fd = conn.fileno()
    while True:
        command = os.read(fd, 1)
        if command in (b'', b'q'):
            return
        time.sleep(seconds)
        os.write(fd, b'k')


def bare_slow32(n, steps, warmup):
    """Vector step times of ``n`` bare sleeping processes (the slow32 ceiling, no farm)."""
    # fork: the children only read, sleep and write, and start without importing this script
    context = multiprocessing.get_context('fork')
    pairs = [context.Pipe() for _ in range(n)]
    processes = [context.Process(target=_bare_sleeper, args=(child, SLOW_STEP_SECONDS),
                                 daemon=True) for _, child in pairs]
    for process in processes:
        process.start()
    for _, child in pairs:
        child.close()
    fds = [parent.fileno() for parent, _ in pairs]
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    times = []
    try:
        for k in range(warmup + steps):
            started = time.perf_counter()
            for fd in fds:
                os.write(fd, b's')
            answered = 0
            while answered < n:
                for fd, _ in poller.poll(10000):
                    if not os.read(fd, 1):
                        raise RuntimeError('a bare process of the slow32 ceiling died')
                    answered += 1
            if k >= warmup:
                times.append(time.perf_counter() - started)
    finally:
        for fd in fds:
            try:
                os.write(fd, b'q')
            except OSError:
                pass
        for process in processes:
            process.join(5)
            if process.is_alive():
                process.kill()
        for parent, _ in pairs:
            parent.close()
    return times


# --- osim: farm vs in-process vs gymnasium AsyncVectorEnv ---------------------------------------
class AdapterEnv(gymnasium.Env):
    """An ``envs.make`` adapter as a gymnasium.Env, for gymnasium's own vector envs."""

    metadata = {'render_modes': []}

    def __init__(self, name, kwargs):
        import envs
        self.adapter = envs.make(name, **kwargs)
        self.observation_space = contract.make_space(self.adapter.observation_space)
        self.action_space = contract.make_space(self.adapter.action_space)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        return np.asarray(self.adapter.reset(seed), dtype=np.float32), {}

    def step(self, action):
        obs, reward, terminated, truncated, info = self.adapter.step(
            np.asarray(action, dtype=np.float64).tolist())
        return np.asarray(obs, dtype=np.float32), reward, terminated, truncated, dict(info)

    def close(self):
        self.adapter.close()


class InProcessRunner(object):
    """One environment stepped directly; ``run(k)`` takes ``k`` env steps, resetting as needed."""

    def __init__(self, name, kwargs, seed):
        import envs
        self.env = envs.make(name, **kwargs)
        self.act_size = self.env.action_space['shape'][0]
        self.rng = np.random.default_rng(seed)
        self.env.reset()
        self.resets = 0

    def run(self, k):
        actions = self.rng.uniform(0, 1, (k, self.act_size)).tolist()
        step, reset = self.env.step, self.env.reset
        for action in actions:
            _, _, terminated, truncated, _ = step(action)
            if terminated or truncated:
                reset()
                self.resets += 1
        return k

    def close(self):
        self.env.close()


class VecRunner(object):
    """A vector env of ``n``; ``run(k)`` takes ``k`` env steps (k / n vector steps)."""

    def __init__(self, env, seed):
        self.env = env
        self.n = env.num_envs
        self.act_size = env.action_space.shape[-1]
        self.rng = np.random.default_rng(seed)
        self.env.reset()
        self.resets = 0

    def run(self, k):
        actions = self.rng.uniform(0, 1, (k // self.n, self.n, self.act_size))
        for action in actions:
            _, _, terminated, truncated, _ = self.env.step(action)
            self.resets += int(np.count_nonzero(terminated | truncated))
        return len(actions) * self.n

    def close(self):
        self.env.close()


_bare = {}


def _bare_init(name, kwargs, seed):
    _bare['runner'] = InProcessRunner(name, kwargs, seed + os.getpid())


def _bare_run(k):
    return _bare['runner'].run(k)


class BareParallelRunner(object):
    """``n`` plain processes each stepping its own environment, nothing in between: what the
    machine itself allows ``n`` simulations to do at once (the ceiling for any vector env)."""

    def __init__(self, name, kwargs, n, seed):
        import multiprocessing
        self.n = n
        self.pool = multiprocessing.get_context('spawn').Pool(
            n, initializer=_bare_init, initargs=(name, kwargs, seed))
        self.resets = 0

    def run(self, k):
        return sum(self.pool.map(_bare_run, [k // self.n] * self.n, chunksize=1))

    def close(self):
        self.pool.terminate()
        self.pool.join()


def bench_osim(size, ports):
    name, kwargs, n = 'L2M2019Env', {}, 2
    fm, port = local_farmer(n)
    ports.append(port)
    runners = {}
    with fm:
        try:
            runners['farm'] = VecRunner(fm.vec_env(name, n, kwargs), seed=2)
            runners['inproc'] = InProcessRunner(name, kwargs, seed=3)
            runners['async'] = VecRunner(gymnasium.vector.AsyncVectorEnv(
                [functools.partial(AdapterEnv, name, kwargs) for _ in range(n)],
                context='spawn', autoreset_mode=gymnasium.vector.AutoresetMode.SAME_STEP),
                seed=4)
            runners['bare'] = BareParallelRunner(name, kwargs, n, seed=5)
            for key in runners:
                runners[key].run(n * size['osim_warmup'])
                runners[key].resets = 0
            steps = dict.fromkeys(runners, 0)
            wall = dict.fromkeys(runners, 0.0)
            order = list(runners)
            block = n * size['osim_block']
            rounds = 0
            while steps['farm'] < n * size['osim_vec_steps']:
                k = rounds % len(order)
                for key in order[k:] + order[:k]:  # rotate who goes first
                    started = time.perf_counter()
                    steps[key] += runners[key].run(block)
                    wall[key] += time.perf_counter() - started
                rounds += 1
                log.info('osim: %d env steps each so far', steps['farm'])
        finally:
            for runner in runners.values():
                runner.close()
    rate = dict((key, steps[key] / wall[key]) for key in runners)
    log.info('osim steps/s: farm %.1f, in-process %.1f, async %.1f, bare 2 processes %.1f',
             rate['farm'], rate['inproc'], rate['async'], rate['bare'])
    result = {'osim_speedup_2': round(rate['farm'] / rate['inproc'], 4),
              'osim_vs_async_2': round(rate['farm'] / rate['async'], 4),
              'osim_steps': steps['farm'],
              # The machine's own ceiling: 2 bare processes, no farm, no pipes, no vector env.
              'osim_bare_speedup_2': round(rate['bare'] / rate['inproc'], 4),
              'osim_farm_vs_bare_2': round(rate['farm'] / rate['bare'], 4)}
    for key, label in (('farm', 'farm_2'), ('inproc', 'inproc_1'), ('async', 'async_2'),
                       ('bare', 'bare_2')):
        result['osim_%s_steps_per_s' % label] = round(rate[key], 2)
        result['osim_%s_wall_s' % label] = round(wall[key], 3)
        result['osim_%s_resets' % label] = runners[key].resets
    return result


# --- recorded step times replayed: lockstep against asynchronous -------------------------------
def run_lockstep(env, seconds, rng):
    """Lockstep ``step`` with random actions for ``seconds``: (env steps, wall seconds)."""
    n, act_size = env.num_envs, env.action_space.shape[-1]
    steps, clock = 0, time.perf_counter
    started = clock()
    while clock() - started < seconds:
        env.step(rng.uniform(0, 1, (n, act_size)))
        steps += n
    return steps, clock() - started


def run_async(env, seconds, rng, warmup=0.0):
    """The asynchronous loop of i9's API: ``send`` random actions for every environment (whose
    observations the caller's ``reset`` gave), then ``recv()`` (the env's batch_size: whichever
    are ready) and ``send`` for exactly those, for ``warmup`` and then ``seconds`` more.
    Returns (env steps received in the timed part, its wall seconds). Environments are left in
    flight (``reset`` or ``close`` drops them)."""
    n, act_size = env.num_envs, env.action_space.shape[-1]
    clock = time.perf_counter
    env.send(rng.uniform(0, 1, (n, act_size)), np.arange(n))
    steps, started = 0, clock()
    timed_from, end = started + warmup, started + warmup + seconds
    while True:
        ids = contract.env_ids_of(env.recv(timeout=max(0.0, end - clock()))[4])
        now = clock()
        if now >= end:  # what came with the deadline counts; nothing later does
            steps += len(ids) if now - end < 0.05 else 0
            break
        if now >= timed_from:
            steps += len(ids)
        if len(ids):
            env.send(rng.uniform(0, 1, (len(ids), act_size)), ids)
    return steps, end - timed_from


def alternate(env, rounds, seconds, warmup, seed):
    """Lockstep and asynchronous windows of ``seconds`` in turn, ``rounds`` times each, on the
    same vector env of real simulators (so both see the same machine load); every window starts
    from a ``reset`` (all environments at an episode's start, in either mode).
    Returns {'lockstep': (steps, wall), 'async': (steps, wall)}."""
    rng = np.random.default_rng(seed)
    totals = {'lockstep': [0, 0.0], 'async': [0, 0.0]}
    env.reset()
    run_lockstep(env, warmup, rng)
    for _ in range(rounds):
        env.reset()
        steps, wall = run_lockstep(env, seconds, rng)
        totals['lockstep'][0] += steps
        totals['lockstep'][1] += wall
        env.reset()  # also collects what the previous async window left in flight
        steps, wall = run_async(env, seconds, rng)
        totals['async'][0] += steps
        totals['async'][1] += wall
    env.reset()  # nothing left in flight
    return dict((k, tuple(v)) for k, v in totals.items())


def start_local_farms(capacities, ports):
    """Local ``farm.py`` processes, one per capacity, each on a free port: (farmer over all of
    them, [processes]). The farmer starts only one local farm itself."""
    from host import local_farm
    from host.link import FarmLink
    processes, farms = [], []
    try:
        for capacity in capacities:
            port = free_port()
            ports.append(port)
            link = FarmLink('127.0.0.1', capacity, port)
            processes.append(local_farm.start(link, None, lambda: 'see the messages above'))
            link.release_connection()
            farms.append(('127.0.0.1', capacity, port))
        return farmer.Farmer(farms=farms, start_local=False), processes
    except BaseException:
        for process in processes:
            local_farm.stop(process)
        raise


def trace_stats(name):
    import envs.toy
    data = envs.toy.load_trace(name)
    steps = [ms for e in data['episodes'] for ms in e['steps_ms']]
    resets = [e['reset_ms'] for e in data['episodes']]
    # What lockstep can reach on this trace at all, N environments at independent uniformly drawn
    # steps: mean step / E[max of N] (the figure), beside what the farm measures.
    draws = np.asarray(steps)[np.random.default_rng(0).integers(0, len(steps), (20000, 32))]
    bound = dict((n, float(np.mean(steps)) / float(np.mean(draws[:, :n].max(axis=1))))
                 for n in (16, 32))
    return {'lockstep_bound': bound, 'mean_step_s': float(np.mean(steps)) / 1000.0,
            'mean_with_resets_s': (float(np.sum(steps)) + float(np.sum(resets)))
            / 1000.0 / len(steps)}


# Where each mode's environments start in the trace: the replay's stationary state for that mode
# (envs/toy.py TraceEnv): asynchronous environments run through it in time, lockstep ones by steps.
TRACE_START = {'lockstep': 'step', 'async': 'time'}


def bench_trace(size, ports):
    from host import local_farm
    fm, processes = start_local_farms([16, 16], ports)
    result = {}
    try:
        with fm:
            for trace, n, label, seconds in (
                    ('l2m', 32, 'l2m_trace_32', size['trace_seconds']),
                    ('arm2d', 16, 'arm_trace_16', size['trace_seconds'] * size['arm_factor'])):
                stats = trace_stats(trace)
                ideal = n / stats['mean_step_s']
                for mode in ('lockstep', 'async'):
                    kwargs = {'trace': trace, 'seed': 0, 'start': TRACE_START[mode]}
                    rng = np.random.default_rng(7)
                    with fm.vec_env('TraceEnv', n, kwargs, batch_size=1) as env:
                        env.reset()
                        if mode == 'lockstep':
                            run_lockstep(env, size['trace_warmup_s'], rng)
                            steps, wall = run_lockstep(env, seconds, rng)
                        else:
                            steps, wall = run_async(env, seconds, rng, size['trace_warmup_s'])
                    rate = steps / wall
                    result['%s_%s' % (mode, label)] = round(rate / ideal, 4)
                    result['%s_%s_steps_per_s' % (mode, label)] = round(rate, 2)
                    result['%s_%s_steps' % (mode, label)] = steps
                    result['%s_%s_wall_s' % (mode, label)] = round(wall, 2)
                result['%s_ideal_steps_per_s' % label] = round(ideal, 2)
                result['%s_ideal_with_resets' % label] = round(
                    n / stats['mean_with_resets_s'], 2)
                result['%s_mean_step_ms' % label] = round(stats['mean_step_s'] * 1000.0, 3)
                result['%s_lockstep_bound' % label] = round(stats['lockstep_bound'][n], 4)
                log.info('%s: lockstep %.3f, async %.3f of the ideal %.1f steps/s', label,
                         result['lockstep_' + label], result['async_' + label], ideal)
    finally:
        for process in processes:
            local_farm.stop(process)
    return result


def bench_osim_async(size, ports):
    n = 2
    fm, port = local_farmer(n)
    ports.append(port)
    with fm:
        env = fm.vec_env('Arm2DEnv', n, {'seed': 0}, batch_size=1)
        with env:
            totals = alternate(env, size['osim_async_rounds'], size['osim_async_seconds'],
                               3.0, seed=8)
    rate = dict((mode, totals[mode][0] / totals[mode][1]) for mode in totals)
    log.info('osim Arm2DEnv x2: lockstep %.1f, async %.1f env steps/s', rate['lockstep'],
             rate['async'])
    result = {'osim_async_2': round(rate['async'] / rate['lockstep'], 4)}
    for mode in ('lockstep', 'async'):
        result['osim_arm_%s_2_steps_per_s' % mode] = round(rate[mode], 2)
        result['osim_arm_%s_2_steps' % mode] = totals[mode][0]
        result['osim_arm_%s_2_wall_s' % mode] = round(totals[mode][1], 2)
    return result


# --- processes left behind -----------------------------------------------------------------------
def our_farm_processes(ports):
    """pids of ``farm.py`` processes still listening on one of our ports."""
    wanted = set(str(p) for p in ports)
    found = []
    for pid in os.listdir('/proc'):
        if not pid.isdigit():
            continue
        try:
            with open('/proc/%s/cmdline' % pid, 'rb') as f:
                args = f.read().decode('utf-8', 'replace').split('\0')
        except (IOError, OSError):
            continue
        if any(a.endswith('farm.py') for a in args) and '--port' in args:
            port = args[args.index('--port') + 1] if args.index('--port') + 1 < len(args) else ''
            if port in wanted:
                found.append(int(pid))
    return found


def cpu_times():
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open('/proc/stat') as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def busy_cores(before, after):
    """Cores' worth of CPU the whole machine used between two ``cpu_times()``."""
    total = after[1] - before[1]
    return round((after[0] - before[0]) / float(total) * (os.cpu_count() or 1), 2) if total else None


def check_targets(result):
    met = {}
    for key, (op, bound) in TARGETS.items():
        value = result.get(key)
        met[key] = None if value is None else (value <= bound if op == '<=' else value >= bound)
    return met


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--json', action='store_true',
                        help='print the one JSON object on stdout (the default; kept for clarity)')
    parser.add_argument('--quick', action='store_true', help='fewer steps: under a minute')
    parser.add_argument('--only', choices=['rpc', 'slow32', 'osim', 'trace', 'osim_async'],
                        action='append',
                        help='run only these measurements (repeatable)')
    parser.add_argument('--trace-seconds', type=float, default=None,
                        help='seconds per timed window of the trace and osim_async benches '
                        '(default 3 with --quick, else 60 for l2m and osim_async, 120 for arm)')
    parser.add_argument('--log-level', default='INFO')
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format='%(asctime)s %(name)s %(levelname)s %(message)s')

    # stdout is for the JSON alone: anything else (osim-rl prints, OpenSim, farm subprocesses and
    # their workers, which inherit descriptor 1) goes to stderr.
    sys.stdout.flush()
    json_out = os.dup(1)
    os.dup2(2, 1)

    # The local farms inherit this working directory, and their workers only find the project's
    # envs package when it is the repository: Python 3.11's forkserver imports its preload
    # ('envs') from its working directory, ignoring farm.py's sys.path, and from anywhere else
    # gets osim-rl's own top-level 'envs'.
    os.chdir(ROOT)
    mode = 'quick' if args.quick else 'full'
    size = dict(SIZES[mode])
    if args.trace_seconds:
        size['trace_seconds'] = size['osim_async_seconds'] = args.trace_seconds
    started = time.time()
    result = {'mode': mode, 'cores': os.cpu_count(), 'python': platform.python_version(),
              'loadavg_start': [round(x, 2) for x in os.getloadavg()]}
    ports = []
    benches = (('rpc', bench_rpc), ('slow32', bench_slow32), ('trace', bench_trace),
               ('osim', bench_osim), ('osim_async', bench_osim_async))
    for key, bench in benches:
        if args.only and key not in args.only:
            continue
        # Others may be using this machine: what it is busy with while we are idle, and in all
        # (ours included) while the measurement runs.
        probe = cpu_times()
        time.sleep(1.0)
        result['%s_background_busy_cores' % key] = busy_cores(probe, cpu_times())
        t, probe = time.time(), cpu_times()
        result.update(bench(size, ports))
        result['%s_bench_wall_s' % key] = round(time.time() - t, 2)
        result['%s_bench_busy_cores' % key] = busy_cores(probe, cpu_times())
    result['farm_ports'] = ports
    result['targets'] = dict((k, '%s %s' % v) for k, v in TARGETS.items())
    result['targets_met'] = check_targets(result)
    return write_result(result, ports, started, json_out)


def write_result(result, ports, started, json_out):
    """End a bench: what farms of ours are left, the load, the wall time, and the JSON line on
    ``json_out`` (the real stdout, kept apart from the farms' output); returns the exit code."""
    time.sleep(0.5)  # a farm stopped a moment ago may still be exiting
    result['leftover_farm_processes'] = our_farm_processes(ports)
    result['loadavg_end'] = [round(x, 2) for x in os.getloadavg()]
    result['total_wall_s'] = round(time.time() - started, 2)
    os.write(json_out, (json.dumps(result, sort_keys=True) + '\n').encode('utf-8'))
    os.close(json_out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
