#!/usr/bin/env python
"""Records how long each step and reset of an osim-rl environment takes, for envs.toy.TraceEnv.

    python bench/record_trace.py --env L2M2019Env --steps 3000 [--seed 0] [--out FILE]
    python bench/record_trace.py --env Arm2DEnv --steps 3000 [--seed 0] [--out FILE]

(default FILE: bench/traces/l2m.json, bench/traces/arm2d.json.)

Builds ONE environment with ``envs.make(name)`` in this process (osim-rl's default integrator
accuracy: the 'default' sim preset, no frame skip, no step budget), resets it, and steps it with
random actions uniform in [0, 1] (seeded) until ``--steps`` steps are taken, resetting (and timing
the reset) whenever an episode ends. Each step's and reset's wall-clock duration is measured around
the adapter call, as a farm worker makes it.

The trace file (small JSON, committed) holds:

- ``episodes``: a list, one per episode, each ``{'reset_ms': float, 'steps_ms': [float, ...],
  'end': 'terminated' | 'truncated' | 'cut'}`` ('cut': the recording stopped mid-episode);
  durations in ms rounded to 0.01;
- ``obs_size``, ``act_size``, ``max_episode_steps`` of the real environment;
- ``stats``: step p10/p50/p90/p99/max/mean and reset mean/p50/max (ms);
- ``machine``, ``python``, ``date``, ``command``, ``loadavg_before`` / ``loadavg_after``
  (1-minute load averages: how busy the machine was; other processes' CPU use slows OpenSim's
  steps, so a trace recorded on a loaded machine is slower than the simulator alone), and
  ``others_busy_cores``: the CPU the rest of the machine used while this recorded (cores' worth,
  from /proc/stat less this process's own time).

Prints the stats as one JSON line on stdout.
"""
import argparse
import json
import logging
import os
import platform
import socket
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import envs  # noqa: E402

DEFAULT_OUT = {'L2M2019Env': 'l2m.json', 'Arm2DEnv': 'arm2d.json'}


def stats(episodes):
    steps = np.asarray([d for e in episodes for d in e['steps_ms']], dtype=float)
    resets = np.asarray([e['reset_ms'] for e in episodes], dtype=float)
    out = {'steps': int(steps.size), 'episodes': len(episodes), 'resets': int(resets.size)}
    for p in (10, 50, 90, 99):
        out['step_p%d_ms' % p] = round(float(np.percentile(steps, p)), 2)
    out['step_max_ms'] = round(float(steps.max()), 2)
    out['step_mean_ms'] = round(float(steps.mean()), 3)
    out['reset_mean_ms'] = round(float(resets.mean()), 2)
    out['reset_p50_ms'] = round(float(np.median(resets)), 2)
    out['reset_max_ms'] = round(float(resets.max()), 2)
    return out


def _machine_busy_s():
    """CPU seconds the whole machine has spent busy (Linux /proc/stat); None elsewhere."""
    try:
        with open('/proc/stat') as f:
            fields = [float(x) for x in f.readline().split()[1:]]
    except (IOError, OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    return (sum(fields) - idle) / os.sysconf('SC_CLK_TCK')


def record(name, steps, seed):
    """Episodes of ``name`` covering ``steps`` steps, each ``{'reset_ms', 'steps_ms', 'end'}``."""
    env = envs.make(name)
    try:
        act_size = env.action_space['shape'][0]
        rng = np.random.RandomState(seed)
        episodes = []
        taken = 0
        first = True
        while taken < steps:
            start = time.perf_counter()
            env.reset(seed if first else None)  # the first reset seeded, the rest continue
            episode = {'reset_ms': round((time.perf_counter() - start) * 1000.0, 2),
                       'steps_ms': [], 'end': 'cut'}
            first = False
            episodes.append(episode)
            while taken < steps:
                action = rng.uniform(0.0, 1.0, act_size).tolist()
                start = time.perf_counter()
                _, _, terminated, truncated, _ = env.step(action)
                episode['steps_ms'].append(round((time.perf_counter() - start) * 1000.0, 2))
                taken += 1
                if terminated or truncated:
                    episode['end'] = 'terminated' if terminated else 'truncated'
                    break
        sizes = {'obs_size': env.observation_space['shape'][0], 'act_size': act_size,
                 'max_episode_steps': env.max_episode_steps}
        return episodes, sizes
    finally:
        env.close()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--env', required=True, choices=sorted(DEFAULT_OUT))
    parser.add_argument('--steps', type=int, default=3000, help='steps to record in all')
    parser.add_argument('--seed', type=int, default=0, help='seeds the first reset and actions')
    parser.add_argument('--out', default=None,
                        help='trace file (default bench/traces/l2m.json or arm2d.json)')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    out = args.out or os.path.join(ROOT, 'bench', 'traces', DEFAULT_OUT[args.env])
    load_before = os.getloadavg()[0]
    started = time.time()
    busy_before, own_before = _machine_busy_s(), os.times()
    episodes, sizes = record(args.env, args.steps, args.seed)
    busy_after, own_after = _machine_busy_s(), os.times()
    wall = time.time() - started
    # Others' load during the recording, in cores: the machine's busy CPU time minus this
    # process's own, per wall second. What the load average cannot separate from ours.
    others = None
    if busy_before is not None:
        own = (own_after[0] + own_after[1]) - (own_before[0] + own_before[1])
        others = round(max(0.0, (busy_after - busy_before - own) / wall), 2)
    trace = {
        'env': args.env, 'integrator_accuracy': 'osim-rl default', 'seed': args.seed,
        'episodes': episodes, 'stats': stats(episodes),
        'machine': '%s, %s, %d cores' % (socket.gethostname(), platform.machine(),
                                         os.cpu_count() or 0),
        'python': platform.python_version(),
        'date': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(started)),
        'command': 'python bench/record_trace.py ' + ' '.join(argv if argv is not None
                                                               else sys.argv[1:]),
        'loadavg_before': round(load_before, 2), 'loadavg_after': round(os.getloadavg()[0], 2),
        'wall_s': round(wall, 1), 'others_busy_cores': others,
    }
    trace.update(sizes)
    directory = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(directory):
        os.makedirs(directory)
    with open(out, 'w') as f:
        json.dump(trace, f, sort_keys=True, separators=(',', ':'))
        f.write('\n')
    print(json.dumps(dict(trace['stats'], env=args.env, out=out,
                          loadavg_before=trace['loadavg_before'],
                          loadavg_after=trace['loadavg_after'], wall_s=trace['wall_s'],
                          others_busy_cores=others)))


if __name__ == '__main__':
    main()
