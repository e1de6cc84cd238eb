#!/usr/bin/env python
"""soak.py: a farm and a learner training for M minutes; do their memory, files or threads grow?

    python bench/soak.py --minutes 30 --json [--every 5] [--envs 4] [--keep DIR]

One ``farm.py`` (capacity ``--envs``, ``--recycle-steps 2000`` so that workers are recycled many
times) and one learner (bench/drill_learner.py: train_sac.py's SAC learner, 16x16 networks) on
``DrillEnv`` with a 10 ms step. The replay memory is capped at 10,000 transitions (0.5 MB here), so
that filling it is not mistaken for a leak; it is full within the first minute. The learner keeps
no record of its transitions (``--no-record``: that record grows with every step), so the soak
counts no lost or duplicated transitions; the drills do.

Every ``--every`` seconds, from /proc: resident memory (MiB), open file descriptors and threads of

- ``farm``: the farm daemon;
- ``forkserver``: the process the farm forks its workers from;
- ``workers``: the environment workers, as ``workers_sum_*`` and ``workers_max_*`` (and
  ``workers_n``, how many are alive);
- ``learner``: the learning process;

plus the learner's env steps. Summary per series: first, last, min, max, and ``growth_per_hour``:
the least-squares slope over the second half of the samples (the first half holds start-up and
the replay memory filling), times 3600. The farm's log says how many workers were recycled
(``recycled``). ``--json`` prints ``{"summary": ..., "samples": [...], ...}`` on stdout; the
summary table goes to stderr. Workers are replaced as they are recycled, so a worker's own memory
is bounded by its recycling; what must not grow is the farm, the forkserver and the learner.
"""
import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from bench import drills  # noqa: E402

log = logging.getLogger('soak')
MEASURES = ('rss_mib', 'fds', 'threads')


def measure(pid):
    """``{rss_mib, fds, threads}`` of process ``pid`` from /proc, or None if it is gone."""
    try:
        with open('/proc/%d/status' % pid) as f:
            status = dict(line.split(':', 1) for line in f if ':' in line)
        fds = len(os.listdir('/proc/%d/fd' % pid))
    except (IOError, OSError):
        return None
    return {'rss_mib': int(status.get('VmRSS', '0 kB').split()[0]) / 1024.0,
            'fds': fds, 'threads': int(status['Threads'])}


def sample(farm, learner, started):
    row = {'t': round(time.time() - started, 2), 'env_steps': learner.step()}
    found = {'farm': measure(farm.pid), 'learner': measure(learner.pid)}
    servers = [pid for pid, stat in drills.processes(lambda p, s: s[1] == farm.pid).items()
               if 'forkserver' in drills.cmdline(pid)]
    found['forkserver'] = measure(servers[0]) if servers else None
    workers = [m for m in (measure(pid) for pid in farm.workers()) if m]
    row['workers_n'] = len(workers)
    for name, m in found.items():
        for key in MEASURES:
            row['%s_%s' % (name, key)] = None if m is None else m[key]
    for key in MEASURES:
        values = [w[key] for w in workers]
        row['workers_sum_%s' % key] = sum(values) if values else None
        row['workers_max_%s' % key] = max(values) if values else None
    return row


def summarize(samples):
    """Per series: first, last, min, max, and the growth per hour over the second half."""
    summary = {}
    keys = [k for k in samples[0] if k not in ('t',)] if samples else []
    for key in keys:
        points = [(s['t'], s[key]) for s in samples if s.get(key) is not None]
        if not points:
            continue
        t, v = np.array(points, dtype=float).T
        half = len(t) // 2
        slope = (np.polyfit(t[half:], v[half:], 1)[0] * 3600.0
                 if len(t) - half >= 3 and np.ptp(t[half:]) > 0 else None)
        summary[key] = {'first': v[0], 'last': v[-1], 'min': v.min(), 'max': v.max(),
                        'growth_per_hour': None if slope is None else round(float(slope), 3)}
    return summary


def table(summary):
    head = '%-28s %10s %10s %10s %10s %14s' % ('series', 'first', 'last', 'min', 'max',
                                               'growth/hour')
    lines = [head, '-' * len(head)]
    for key, s in summary.items():
        lines.append('%-28s %10.1f %10.1f %10.1f %10.1f %14s' % (
            key, s['first'], s['last'], s['min'], s['max'],
            '-' if s['growth_per_hour'] is None else '%.2f' % s['growth_per_hour']))
    return '\n'.join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--minutes', type=float, default=30.0)
    parser.add_argument('--every', type=float, default=5.0, help='seconds between samples')
    parser.add_argument('--envs', type=int, default=4)
    parser.add_argument('--recycle-steps', type=int, default=2000)
    parser.add_argument('--json', action='store_true')
    parser.add_argument('--keep', default='', help='keep the logs and the run in this directory')
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.every <= 0 or args.envs < 1:
        parser.error('--minutes and --every must be positive, --envs at least 1')
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format='%(asctime)s %(name)s %(message)s', datefmt='%H:%M:%S')
    base = args.keep or tempfile.mkdtemp(prefix='soak-')
    os.makedirs(base, exist_ok=True)
    ctx = drills.Context('soak-%d' % os.getpid(), base)
    samples = []
    error = None
    try:
        farm = ctx.farm('a', capacity=args.envs,
                        extra=['--recycle-steps', str(args.recycle_steps)])
        learner = ctx.learner('1', [farm], args.envs,
                              env_kwargs={'episode_length': 200, 'step_seconds': 0.01},
                              extra=['--memory-limit', '10000', '--no-record'])
        drills.start_training(learner, steps=args.envs)
        started = time.time()
        end = started + args.minutes * 60
        while time.time() < end:
            samples.append(sample(farm, learner, started))
            if not learner.alive():
                error = 'the learner exited: %s' % learner.error()
                break
            if len(samples) % max(1, int(60 / args.every)) == 0:
                log.info('%.0f s: %d env steps, farm %.0f MiB, learner %.0f MiB, %d workers',
                         samples[-1]['t'], samples[-1]['env_steps'],
                         samples[-1]['farm_rss_mib'] or 0, samples[-1]['learner_rss_mib'] or 0,
                         samples[-1]['workers_n'])
            time.sleep(max(0.0, min(args.every, end - time.time())))
        recycled = len(drills.log_lines(farm, 'recycling worker'))
        row = ctx.finish(drills.new_row('soak', ''), learner, count=False)
    finally:
        ctx.cleanup()
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    summary = summarize(samples)
    sys.stderr.write('\n' + table(summary) + '\n')
    steps = samples[-1]['env_steps'] - samples[0]['env_steps'] if samples else 0
    seconds = samples[-1]['t'] if samples else 0
    sys.stderr.write('%d env steps in %.0f s (%.0f/s), %d workers recycled, %d processes left%s\n'
                     % (steps, seconds, steps / max(seconds, 1e-9), recycled,
                        row['processes_left'], '; ' + error if error else ''))
    if args.json:
        print(json.dumps({'minutes': args.minutes, 'every_s': args.every, 'envs': args.envs,
                          'recycle_steps': args.recycle_steps, 'recycled': recycled,
                          'env_steps': steps, 'error': error, 'summary': summary,
                          'processes_left': row['processes_left'], 'notes': row['notes'],
                          'samples': samples}, sort_keys=True))
    return 0 if error is None else 1


if __name__ == '__main__':
    sys.exit(main())
