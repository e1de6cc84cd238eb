#!/usr/bin/env python
"""scale_bench.py: env steps/s of ONE vector env of N environments, N = 1, 2, 4, ... 2 x cores,
for the farm (lockstep and asynchronous), gymnasium's AsyncVectorEnv and N bare processes.

    python bench/scale_bench.py --json [--quick] [--envs busy,sleep] [--step-ms 20] [--max-n N]

Environments (the project's own, envs/toy.py): ``busy``: ``BusyEnv``, each step burns
``--step-ms`` of CPU time (a simulator's integrator: on fewer cores than environments the steps
queue for the CPU); ``sleep``: ``SlowEnv``, each step sleeps ``--step-ms`` (what a trace replay
does: the figures mean the same on 2 cores as on 64). Both return 339 floats (L2M2019Env's size)
and take 22 actions.

Runners, each over N environments with random actions in [0, 1]:

- ``farm_lockstep``: ``FarmVecEnv.step`` on a local farm (capacity max N) started for this run;
- ``farm_async``: the same vector env's asynchronous API (``recv()`` with batch_size 1, then
  ``send`` for exactly those environments); each timed block sends until its share of steps is
  sent and receives everything in flight before it ends, so no environment runs while another
  runner is timed;
- ``gym_async``: ``gymnasium.vector.AsyncVectorEnv`` (spawned worker processes, SAME_STEP
  auto-reset as the farm);
- ``bare``: N plain processes each stepping its own environment, nothing in between: the
  machine's ceiling.

For each environment and N, the runners take blocks of steps in turn (the first runner rotating),
so that background load on a shared machine falls on all alike; ``rounds`` blocks each.

Prints ONE JSON object on stdout (``rows``: one per environment, N and runner, with
``steps_per_s``; ``ratios``: per environment and N, ``farm_lockstep_vs_gym``,
``farm_async_vs_gym``, ``farm_lockstep_vs_bare``, ``farm_async_vs_bare``, ``gym_vs_bare``;
``targets_met``: per environment and farm mode, whether the farm >= AsyncVectorEnv at every N, the
issue's target) and the table on stderr (on stdout without ``--json``).
"""
import argparse
import functools
import json
import logging
import os
import platform
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

import gymnasium  # noqa: E402

from vecenv import contract  # noqa: E402
from bench import farm_bench  # noqa: E402  (bench/: its runners, local farm and load probes)

log = logging.getLogger('scale_bench')

ENVS = {'busy': 'BusyEnv', 'sleep': 'SlowEnv'}
RUNNERS = ('farm_lockstep', 'farm_async', 'gym_async', 'bare')
SIZES = {'quick': {'block': 5, 'rounds': 1, 'warmup': 2},
         'full': {'block': 25, 'rounds': 4, 'warmup': 5}}


class AsyncRunner(object):
    """A farm vector env driven through its asynchronous API; ``run(k)`` takes ``k`` env steps
    and returns with nothing in flight."""

    def __init__(self, env, seed):
        self.env = env
        self.n = env.num_envs
        self.act_size = env.action_space.shape[-1]
        self.rng = np.random.default_rng(seed)
        env.async_reset()
        while env.in_flight:  # the first observations: not steps
            env.recv(batch_size=env.in_flight)
        self.resets = 0

    def run(self, k):
        env = self.env
        sent = min(k, self.n)
        env.send(self.rng.uniform(0, 1, (sent, self.act_size)), np.arange(sent))
        done = 0
        while env.in_flight:
            _, _, terminated, truncated, infos = env.recv()
            ids = contract.env_ids_of(infos)
            done += len(ids)
            self.resets += int(np.count_nonzero(terminated | truncated))
            more = ids[:max(0, k - sent)]
            if len(more):
                env.send(self.rng.uniform(0, 1, (len(more), self.act_size)), more)
                sent += len(more)
        return done

    def close(self):
        pass  # the lockstep runner closes the shared vector env


def bench_n(fm, env_key, n, step_ms, size, seed):
    """{runner: (steps, wall seconds)} for ``n`` environments of ``env_key``."""
    name, kwargs = ENVS[env_key], {'step_seconds': step_ms / 1000.0}  # both take it
    runners = {}
    try:
        vec = fm.vec_env(name, n, kwargs, batch_size=1)
        runners['farm_lockstep'] = farm_bench.VecRunner(vec, seed)
        runners['farm_async'] = None  # built after the lockstep warm-up: they share the env
        runners['gym_async'] = farm_bench.VecRunner(gymnasium.vector.AsyncVectorEnv(
            [functools.partial(farm_bench.AdapterEnv, name, kwargs) for _ in range(n)],
            context='spawn', autoreset_mode=gymnasium.vector.AutoresetMode.SAME_STEP),
            seed + 1)
        runners['bare'] = farm_bench.BareParallelRunner(name, kwargs, n, seed + 2)
        runners['farm_lockstep'].run(n * size['warmup'])
        runners['farm_async'] = AsyncRunner(vec, seed + 3)
        for key in ('farm_async', 'gym_async', 'bare'):
            runners[key].run(n * size['warmup'])
        steps = dict.fromkeys(RUNNERS, 0)
        wall = dict.fromkeys(RUNNERS, 0.0)
        block = n * size['block']
        for r in range(size['rounds']):
            order = list(RUNNERS[r % len(RUNNERS):] + RUNNERS[:r % len(RUNNERS)])
            for key in order:
                started = time.perf_counter()
                steps[key] += runners[key].run(block)
                wall[key] += time.perf_counter() - started
        return dict((key, (steps[key], wall[key])) for key in RUNNERS)
    finally:
        for key in ('gym_async', 'bare', 'farm_lockstep'):
            if runners.get(key) is not None:
                runners[key].close()


def ns_for(cores, max_n):
    top = max_n or 2 * cores
    ns, n = [], 1
    while n <= top:
        ns.append(n)
        n *= 2
    if ns[-1] != top:
        ns.append(top)
    return ns


def ratios(rows):
    by = {}
    for row in rows:
        by.setdefault((row['env'], row['n']), {})[row['runner']] = row['steps_per_s']
    out = []
    for (env_key, n), rate in sorted(by.items()):
        entry = {'env': env_key, 'n': n}
        for a, b in (('farm_lockstep', 'gym_async'), ('farm_async', 'gym_async'),
                     ('farm_lockstep', 'bare'), ('farm_async', 'bare'), ('gym_async', 'bare')):
            label = '%s_vs_%s' % (a, 'gym' if b == 'gym_async' else b)
            label = label.replace('gym_async_vs', 'gym_vs')
            entry[label] = round(rate[a] / rate[b], 4) if rate.get(b) else None
        out.append(entry)
    return out


def table(rows, step_ms):
    by = {}
    for row in rows:
        by.setdefault((row['env'], row['n']), {})[row['runner']] = row['steps_per_s']
    lines = ['env    N   ideal  ' + '  '.join('%13s' % r for r in RUNNERS)
             + '  lock/gym async/gym']
    for (env_key, n), rate in sorted(by.items()):
        ideal = n * 1000.0 / step_ms
        lines.append('%-5s %2d %7.1f  %s  %8.3f %9.3f' % (
            env_key, n, ideal, '  '.join('%13.1f' % rate[r] for r in RUNNERS),
            rate['farm_lockstep'] / rate['gym_async'], rate['farm_async'] / rate['gym_async']))
    return '\n'.join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--json', action='store_true',
                        help='print the JSON object on stdout (the table goes to stderr)')
    parser.add_argument('--quick', action='store_true', help='one short block per runner')
    parser.add_argument('--envs', default='busy,sleep', help='comma-separated: busy, sleep')
    parser.add_argument('--step-ms', type=float, default=20.0, help='each step, in ms')
    parser.add_argument('--max-n', type=int, default=None, help='largest N (default 2 x cores)')
    parser.add_argument('--log-level', default='WARNING')
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format='%(asctime)s %(name)s %(levelname)s %(message)s')
    env_keys = [e.strip() for e in args.envs.split(',') if e.strip()]
    unknown = [e for e in env_keys if e not in ENVS]
    if unknown:
        parser.error('unknown --envs %s; known: %s' % (', '.join(unknown), ', '.join(ENVS)))
    # stdout is for the JSON alone (farm subprocesses inherit descriptor 1).
    sys.stdout.flush()
    json_out = os.dup(1)
    os.dup2(2, 1)
    os.chdir(ROOT)  # the local farm's workers find envs/ from the repository (see farm_bench)
    mode = 'quick' if args.quick else 'full'
    size = SIZES[mode]
    cores = os.cpu_count() or 1
    ns = ns_for(cores, args.max_n)
    started = time.time()
    result = {'mode': mode, 'cores': cores, 'python': platform.python_version(),
              'step_ms': args.step_ms, 'ns': ns, 'envs': dict((k, ENVS[k]) for k in env_keys),
              'loadavg_start': [round(x, 2) for x in os.getloadavg()], 'size': size}
    probe = farm_bench.cpu_times()
    time.sleep(1.0)
    result['background_busy_cores'] = farm_bench.busy_cores(probe, farm_bench.cpu_times())
    ports, rows = [], []
    fm, port = farm_bench.local_farmer(max(ns))
    ports.append(port)
    with fm:
        for env_key in env_keys:
            for n in ns:
                measured = bench_n(fm, env_key, n, args.step_ms, size, seed=10 * n)
                for runner in RUNNERS:
                    steps, wall = measured[runner]
                    rows.append({'env': env_key, 'n': n, 'runner': runner, 'steps': steps,
                                 'wall_s': round(wall, 3),
                                 'steps_per_s': round(steps / wall, 2)})
                log.info('%s N=%d: %s', env_key, n, ', '.join(
                    '%s %.1f' % (r['runner'], r['steps_per_s']) for r in rows[-len(RUNNERS):]))
    time.sleep(0.5)
    result['rows'] = rows
    result['ratios'] = ratios(rows)
    # The target: the farm at least as fast as AsyncVectorEnv at every N, per mode.
    result['targets_met'] = dict(
        ('%s_%s_ge_gym_every_n' % (env_key, mode),
         all(r['%s_vs_gym' % mode] >= 1.0 for r in result['ratios'] if r['env'] == env_key))
        for env_key in env_keys for mode in ('farm_lockstep', 'farm_async'))
    result['leftover_farm_processes'] = farm_bench.our_farm_processes(ports)
    result['loadavg_end'] = [round(x, 2) for x in os.getloadavg()]
    result['total_wall_s'] = round(time.time() - started, 2)
    text = table(rows, args.step_ms)
    if args.json:
        sys.stderr.write(text + '\n')
        os.write(json_out, (json.dumps(result, sort_keys=True) + '\n').encode('utf-8'))
    else:
        os.write(json_out, (text + '\n').encode('utf-8'))
    os.close(json_out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
