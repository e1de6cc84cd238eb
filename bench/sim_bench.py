"""The simulator's speed knobs, measured: step time per preset and how far a fast trajectory drifts.

For each osim-rl environment (``Arm2DEnv``, ``L2M2019Env``) this builds one environment per preset
of ``envs.SIM_PRESETS`` (exact, default, fast) in this process, all with the same seed, and steps
them in lockstep with the same seeded random muscle activations: each step goes to every preset in
turn, so all of them see the same machine load (a shared machine's noise is not one preset's).
Episodes that end restart unseeded (the seeded streams continue, the same for every preset).

Beside the presets, ``--also`` measures further accuracies (1e-2 by default: looser than the
fast preset, to show what is left on the table). Per preset it reports the step time (median, p99,
mean, max, in ms, as ``envs.make`` serves it: the guard included), the episodes' lengths, how many
steps diverged (no step budget is set: every step runs to its end), and the *drift* of the first
episode from the exact preset's under the same actions: the mean absolute difference of the
observations after 10, 50 and 100 steps (null when either episode ended before), beside the mean absolute observation of the exact run for scale, and
the mean absolute difference of the per-step rewards over those first steps (the task's own
measure: Arm2DEnv's reward is 1 - distance to the target squared).

    python bench/sim_bench.py --json [--steps 400] [--seed 0] [--envs Arm2DEnv,L2M2019Env]
                                     [--also 1e-2]

Prints one JSON object (``rows``: one per environment and preset); ``results/sim_bench.json`` is
its output.
"""
import argparse
import json
import logging
import os
import platform
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import envs  # noqa: E402
from envs import guard  # noqa: E402

DRIFT_AT = (10, 50, 100)
REFERENCE = 'exact'


def _innermost(env):
    while hasattr(env, 'inner'):
        env = env.inner
    return env


def configs(extra):
    """(label, make's kwargs): every preset, then each accuracy of ``extra`` on its own."""
    found = [(p, {'sim': p}) for p in sorted(envs.SIM_PRESETS)]
    return found + [('accuracy %g' % a, {'integrator_accuracy': a}) for a in extra]


def bench_env(name, steps, seed, extra=()):
    """Rows for ``name``, one per configuration, stepped in lockstep under the same actions."""
    presets = [label for label, _ in configs(extra)]
    made = {}
    try:
        for preset, kwargs in configs(extra):
            made[preset] = envs.make(name, seed=seed, **kwargs)
        act_size = made[presets[0]].action_space['shape'][0]
        actions = np.random.RandomState(seed).uniform(0.0, 1.0, (steps, act_size)).tolist()
        times = dict((p, []) for p in presets)
        lengths = dict((p, []) for p in presets)
        diverged = dict((p, 0) for p in presets)
        first = dict((p, {}) for p in presets)  # step -> observation, first episode only
        first_rewards = dict((p, []) for p in presets)
        in_first = dict((p, True) for p in presets)
        t = dict((p, 0) for p in presets)
        for p in presets:
            made[p].reset()
        for action in actions:
            for p in presets:
                start = time.perf_counter()
                obs, reward, terminated, truncated, info = made[p].step(action)
                times[p].append(time.perf_counter() - start)
                t[p] += 1
                if in_first[p]:
                    first_rewards[p].append(reward)
                    if t[p] in DRIFT_AT:
                        first[p][t[p]] = np.asarray(obs, dtype=float)
                if info.get('truncated_reason') == guard.DIVERGED:
                    diverged[p] += 1
                if terminated or truncated:
                    lengths[p].append(t[p])
                    in_first[p] = False
                    t[p] = 0
                    made[p].reset()
        rows = []
        for p in presets:
            ms = np.asarray(times[p]) * 1000.0
            drift, scale, reward_drift = {}, {}, {}
            for k in DRIFT_AT:
                a, b = first[p].get(k), first[REFERENCE].get(k)
                drift[str(k)] = None if a is None or b is None else float(np.mean(np.abs(a - b)))
                scale[str(k)] = None if b is None else float(np.mean(np.abs(b)))
                ra, rb = first_rewards[p][:k], first_rewards[REFERENCE][:k]
                reward_drift[str(k)] = (float(np.mean(np.abs(np.subtract(ra, rb))))
                                        if len(ra) == len(rb) == k else None)
            inner = _innermost(made[p])
            rows.append({
                'env': name, 'preset': p,
                'integrator_accuracy': float(inner.env.integrator_accuracy),
                'frame_skip': getattr(made[p], 'skip', 1),
                'steps': len(ms), 'median_ms': round(float(np.median(ms)), 2),
                'p99_ms': round(float(np.percentile(ms, 99)), 1),
                'mean_ms': round(float(np.mean(ms)), 2), 'max_ms': round(float(np.max(ms)), 1),
                'episode_lengths': lengths[p], 'diverged': diverged[p],
                'drift_from_exact': drift, 'exact_obs_mean_abs': scale,
                'reward_drift_from_exact': reward_drift,
            })
        return rows
    finally:
        for env in made.values():
            env.close()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--json', action='store_true', help='print one JSON object (default)')
    parser.add_argument('--steps', type=int, default=400, help='steps per environment and preset')
    parser.add_argument('--seed', type=int, default=0, help='seeds the environments and actions')
    parser.add_argument('--envs', default='Arm2DEnv,L2M2019Env', help='comma-separated names')
    parser.add_argument('--also', default='1e-2',
                        help='comma-separated integrator accuracies measured beside the presets')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    started = time.time()
    load = os.getloadavg()[0] if hasattr(os, 'getloadavg') else None
    rows = []
    for name in args.envs.split(','):
        rows.extend(bench_env(name.strip(), args.steps, args.seed,
                              [float(a) for a in args.also.split(',') if a.strip()]))
    result = {'rows': rows, 'presets': envs.SIM_PRESETS, 'steps': args.steps, 'seed': args.seed,
              'drift_at': list(DRIFT_AT), 'python': platform.python_version(),
              'cpus': os.cpu_count(), 'load_before': load, 'seconds': round(time.time() - started)}
    print(json.dumps(result, sort_keys=True))


if __name__ == '__main__':
    main()
