"""How close to its targets Arm2DEnv's hand can be held: the best constant muscle activation per
target, found by search, scored as bench/learn.py scores a policy.

osim-rl's Arm2DEnv draws each episode's target at an angle of 0 to 120 degrees below the
horizontal and 0.3 to 0.65 m from (0, 0.8) (arm.py's ``generate_new_target``) and rewards the
hand's closeness to it. Its six muscles are the elbow's flexors and extensors (biceps, triceps,
brachialis); only three (the long heads of biceps and triceps, the short head of biceps) also
cross the shoulder, so how high the arm can be raised against gravity is limited. This
measures what that limit costs.

A *hold* is one constant activation vector applied for a whole episode (200 simulator steps from
the reset pose); its score for a target is the hand's mean distance to that target over the
episode's last half, the measure bench/learn.py and evaluate.py report for a policy. Holds do not
depend on the target (only the score does), so they are shared: first the 64 corners of [0, 1]^6
and ``--samples`` uniform ones, then, per target, ``--refine`` perturbations of the best hold so
far (Gaussian, shrinking), each added to the pool. Reported for bench/learn.py's evaluation targets
(reset seeds ``EVAL_SEED`` + k, k < ``--targets``): the best hold's score per target and their mean.

A search finds good holds, not the best: these figures are estimates from above of what constant
activations can do. A feedback policy can do better only by holding the hand where no constant
activation holds it (an unstable balance point it stabilises) or by reaching sooner; where a
target is out of the muscles' reach against gravity, no policy can do better.

    python bench/arm_reach.py --json [--quick] [--samples 64] [--refine 40] [--targets 20]
                              [--policy results/policies/sac_Arm2DEnv_root_seed0 ...]

With ``--policy DIR`` (repeatable), each target's row also has that policy's own distance
(``policy_distance_m``), scored by evaluate.py's code on the same reset seeds.

Prints one JSON object; ``results/arm2d_reach.json`` is its output.
"""
import argparse
import itertools
import json
import logging
import os
import platform
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.dirname(os.path.abspath(__file__))

import envs  # noqa: E402
from bench.learn import EVAL_SEED  # noqa: E402

log = logging.getLogger('arm_reach')
EPISODE = 200  # Arm2DEnv's time limit, in simulator steps


class Holds(object):
    """Constant activations and where they hold the hand over an episode's last half."""

    def __init__(self, env, steps=EPISODE):
        self.env, self.steps = env, steps
        self.activations, self.tails = [], []

    def add(self, activation):
        activation = [float(a) for a in np.clip(activation, 0.0, 1.0)]
        self.env.reset(seed=len(self.activations))
        tail = []
        for t in range(self.steps):
            obs, _, terminated, truncated, info = self.env.step(activation)
            if t >= self.steps // 2:
                tail.append(obs[-2:])
            if terminated or (truncated and (t < self.steps - 1 or
                                             info.get('truncated_reason'))):
                return None  # diverged, or over the step budget: not a hold (the episode's
                #              own time limit ends its last step)
        self.activations.append(activation)
        self.tails.append(np.asarray(tail, dtype=float))
        return len(self.tails) - 1

    def scores(self, target):
        tails = np.asarray(self.tails)  # (holds, steps, 2)
        return np.linalg.norm(tails - np.asarray(target)[None, None, :], axis=2).mean(axis=1)


def best_hold(holds, target, refine, rng):
    """The best hold's index and score for ``target`` after ``refine`` perturbations of the best."""
    scores = holds.scores(target)
    best = int(np.argmin(scores))
    score = float(scores[best])
    sigma = 0.25
    for _ in range(refine):
        k = holds.add(np.asarray(holds.activations[best]) + rng.normal(0.0, sigma, 6))
        if k is None:
            continue
        new = float(holds.scores(target)[k])
        if new < score:
            best, score = k, new
        else:
            sigma = max(0.02, sigma * 0.85)
    return best, score


def check_policies(paths, script):
    """Exits with one line unless every path in ``paths`` is an Arm2DEnv policy (or run) that
    evaluate.py can load: said before a search of an hour, not after it."""
    from common import errors
    import evaluate
    for path in paths:
        try:
            _, env_name, _, _ = evaluate.plan(evaluate.parse_args([path]))
        except errors.UserError as e:
            sys.exit('%s: --policy %s' % (script, e))
        if env_name != 'Arm2DEnv':
            sys.exit('%s: --policy %s is a policy for %s, not Arm2DEnv' % (script, path, env_name))


def policy_distances(path, n):
    """The mean distance over each episode's last half of the policy at ``path`` (evaluate.py's
    code and episode seeds: episode k is reset with EVAL_SEED + k, the k-th target here)."""
    import evaluate
    out = evaluate.evaluate(evaluate.parse_args([path, '--episodes', str(n), '--seed',
                                                 str(EVAL_SEED), '--json']))
    return [float(d) for d in out['distances']]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--json', action='store_true', help='print the one JSON object (default)')
    parser.add_argument('--samples', type=int, default=64,
                        help='uniform random holds besides the 64 corners')
    parser.add_argument('--refine', type=int, default=40, help='perturbations per target')
    parser.add_argument('--targets', type=int, default=20,
                        help='bench/learn.py evaluation targets (its default: 20)')
    parser.add_argument('--sim', choices=sorted(envs.SIM_PRESETS), default='fast')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--policy', action='append', default=[], metavar='DIR',
                        help='an exported policy (or run) to score on the same targets, '
                        'as evaluate.py does; repeatable')
    parser.add_argument('--quick', action='store_true',
                        help='a smoke run: 4 random holds (no corners), 2 targets, '
                        '2 perturbations, short episodes')
    args = parser.parse_args(argv)
    if args.samples < 0 or args.refine < 0 or args.targets < 1:
        parser.error('--samples and --refine must be >= 0, --targets >= 1')
    logging.basicConfig(level=logging.WARNING)
    check_policies(args.policy, 'bench/arm_reach.py')
    start = time.time()
    rng = np.random.RandomState(args.seed)
    corners = [] if args.quick else itertools.product([0.0, 1.0], repeat=6)
    first = [list(c) for c in corners] + rng.uniform(0, 1, (4 if args.quick else args.samples,
                                                            6)).tolist()
    if args.quick:
        args.targets, args.refine = 2, 2
    env = envs.make('Arm2DEnv', sim=args.sim)
    try:
        targets = [np.asarray(env.reset(seed=EVAL_SEED + k), dtype=float)[:2]
                   for k in range(args.targets)]
        holds = Holds(env, 20 if args.quick else EPISODE)
        for activation in first:
            holds.add(activation)
        if not holds.tails:
            sys.exit('bench/arm_reach.py: every one of %d holds diverged' % len(first))
        rows = []
        for target in targets:
            k, score = best_hold(holds, target, args.refine, rng)
            hand = holds.tails[k][-1]
            rows.append({'target': [round(float(v), 4) for v in target],
                         'angle_deg': round(float(np.degrees(np.arctan2(0.8 - target[1],
                                                                        target[0]))), 1),
                         'radius_m': round(float(np.hypot(target[0], target[1] - 0.8)), 4),
                         'best_hold_distance_m': round(score, 4),
                         'hand_at_end': [round(float(v), 4) for v in hand],
                         'activation': [round(a, 3) for a in holds.activations[k]]})
    finally:
        env.close()
    policies = {}
    for path in args.policy:
        scored = policy_distances(path, len(targets))
        policies[path] = {'mean_distance_m': round(float(np.mean(scored)), 4),
                          'targets_beyond_5cm': int(sum(d > 0.05 for d in scored))}
        for row, d in zip(rows, scored):
            row.setdefault('policy_distance_m', {})[path] = round(d, 4)
    distances = [r['best_hold_distance_m'] for r in rows]
    result = {'policies': policies, 'env': 'Arm2DEnv', 'sim': args.sim,
              'episode_sim_steps': holds.steps,
              'holds_tried': len(first) + args.targets * args.refine, 'holds': len(holds.tails),
              'eval_seed': EVAL_SEED, 'targets': rows,
              'mean_best_hold_distance_m': round(float(np.mean(distances)), 4),
              'targets_beyond_5cm': int(sum(d > 0.05 for d in distances)),
              'wall_s': round(time.time() - start, 1), 'python': platform.python_version(),
              'command': ' '.join(['bench/arm_reach.py'] + list(
                  sys.argv[1:] if argv is None else argv))}
    print(json.dumps(result, sort_keys=True))


if __name__ == '__main__':
    main()
