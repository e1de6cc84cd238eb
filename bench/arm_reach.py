"""Where Arm2DEnv's hand can be held, and so how close any policy can hold it to its targets.

osim-rl's Arm2DEnv draws each episode's target at an angle of 0 to 120 degrees below the horizontal
and 0.3 to 0.65 m from (0, 0.8) (``generate_new_target``), and scores the hand's distance to it. Its
six muscles are the arm's elbow flexors and extensors (biceps, triceps, brachialis); only the long
heads of biceps and triceps cross the shoulder. This measures where they can hold the hand against
gravity: each of a set of constant activation vectors (the 64 corners of [0, 1]^6, then
``--samples`` uniform ones) is held for 100 simulator steps from the reset pose, and the hand's
position over the last 20 is recorded when it has settled (moved less than ``--settled`` m). The
held positions found are a subset of the reachable ones, so the figures below are estimates that
more samples can only lower, not proofs.

For each target, the distance to the nearest held position is a floor for a policy's mean
distance over the episode's last half if that policy can only hold the hand where constant
activations can (holding elsewhere needs a torque the muscles cannot give: feedback can stabilise
a balance point, not create one). Reported for bench/learn.py's evaluation targets (seeds
``EVAL_SEED`` + k, k < ``--targets``) and for ``--draws`` targets from osim-rl's distribution.

    python bench/arm_reach.py --json [--quick] [--samples 300] [--targets 20] [--sim fast]

Prints one JSON object; ``results/arm2d_reach.json`` is its output.
"""
import argparse
import itertools
import json
import logging
import math
import os
import platform
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.dirname(os.path.abspath(__file__))
for path in (ROOT, HERE):
    if path not in sys.path:
        sys.path.insert(0, path)

import envs  # noqa: E402
from learn import EVAL_SEED  # noqa: E402

log = logging.getLogger('arm_reach')
HOLD_STEPS, TAIL = 100, 20


def held_positions(env, activations, settled):
    """``[(activation, hand position)]`` for those of ``activations`` that hold still."""
    found = []
    for k, act in enumerate(activations):
        obs = env.reset(seed=k)
        tail = []
        for t in range(HOLD_STEPS):
            obs, _, terminated, truncated, _ = env.step(act)
            if t >= HOLD_STEPS - TAIL:
                tail.append(np.asarray(obs[-2:], dtype=float))
            if terminated or truncated:
                break
        if len(tail) == TAIL and np.ptp(np.asarray(tail), axis=0).max() < settled:
            found.append((act, tail[-1]))
    return found


def targets_of(env, seeds):
    """The targets Arm2DEnv draws for these reset seeds (the observation's first two values)."""
    return np.array([np.asarray(env.reset(seed=s), dtype=float)[:2] for s in seeds])


def drawn_targets(n, seed):
    """``n`` targets from osim-rl's own distribution (arm.py's generate_new_target)."""
    rng = np.random.RandomState(seed)
    theta = rng.uniform(0, math.pi * 2 / 3, n)
    radius = rng.uniform(0.3, 0.65, n)
    return np.stack([np.cos(theta) * radius, -np.sin(theta) * radius + 0.8], axis=1)


def floors(targets, held):
    return np.min(np.linalg.norm(targets[:, None, :] - held[None, :, :], axis=2), axis=1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--json', action='store_true', help='print the one JSON object (default)')
    parser.add_argument('--samples', type=int, default=300,
                        help='uniform random activation vectors besides the 64 corners')
    parser.add_argument('--targets', type=int, default=20,
                        help='bench/learn.py evaluation targets to report (its default: 20)')
    parser.add_argument('--draws', type=int, default=10000,
                        help='targets drawn from osim-rl\'s distribution')
    parser.add_argument('--sim', choices=sorted(envs.SIM_PRESETS), default='fast')
    parser.add_argument('--settled', type=float, default=0.005,
                        help='metres the hand may move over the last 20 steps to count as held')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--quick', action='store_true',
                        help='a smoke run: 4 random activations (no corners), 2 targets, 100 draws')
    args = parser.parse_args(argv)
    if args.quick:
        args.samples, args.targets, args.draws = 4, 2, 100
    if args.samples < 0 or args.targets < 1 or args.draws < 1 or args.settled <= 0:
        parser.error('--samples >= 0, --targets and --draws >= 1, --settled > 0')
    logging.basicConfig(level=logging.WARNING)
    start = time.time()
    rng = np.random.RandomState(args.seed)
    corners = [] if args.quick else itertools.product([0.0, 1.0], repeat=6)
    activations = [[float(a) for a in c] for c in corners]
    activations += rng.uniform(0, 1, (args.samples, 6)).tolist()
    env = envs.make('Arm2DEnv', sim=args.sim)
    try:
        held = held_positions(env, activations, args.settled)
        eval_targets = targets_of(env, [EVAL_SEED + k for k in range(args.targets)])
    finally:
        env.close()
    if not held:
        sys.exit('bench/arm_reach.py: none of %d activations held the hand still (--settled %g); '
                 'try more --samples' % (len(activations), args.settled))
    points = np.array([p for _, p in held])
    eval_floor = floors(eval_targets, points)
    draw_floor = floors(drawn_targets(args.draws, args.seed), points)
    angles = np.degrees(np.arctan2(0.8 - points[:, 1], points[:, 0]))
    radii = np.hypot(points[:, 0], points[:, 1] - 0.8)
    result = {
        'env': 'Arm2DEnv', 'sim': args.sim, 'activations_tried': len(activations),
        'held': len(held), 'settled_m': args.settled,
        'held_x_range': [round(float(points[:, 0].min()), 4), round(float(points[:, 0].max()), 4)],
        'held_y_range': [round(float(points[:, 1].min()), 4), round(float(points[:, 1].max()), 4)],
        'held_angle_deg_range': [round(float(angles.min()), 1), round(float(angles.max()), 1)],
        'held_radius_range': [round(float(radii.min()), 4), round(float(radii.max()), 4)],
        'eval_seed': EVAL_SEED, 'eval_targets': [[round(float(v), 4) for v in t]
                                                 for t in eval_targets],
        'eval_target_floor_m': [round(float(d), 4) for d in eval_floor],
        'eval_mean_floor_m': round(float(eval_floor.mean()), 4),
        'eval_targets_beyond_5cm': int((eval_floor > 0.05).sum()),
        'drawn_targets': args.draws,
        'drawn_mean_floor_m': round(float(draw_floor.mean()), 4),
        'drawn_share_beyond_5cm': round(float((draw_floor > 0.05).mean()), 4),
        'wall_s': round(time.time() - start, 1),
        'python': platform.python_version(), 'command': ' '.join(['bench/arm_reach.py'] +
                                                                 list(argv or sys.argv[1:])),
    }
    print(json.dumps(result, sort_keys=True))


if __name__ == '__main__':
    main()
