"""How near Arm2DEnv's hand can get to a target when the whole episode is planned for it: open-loop
muscle activations optimised per target by CMA-ES, starting from a trained policy's own actions.

bench/arm_statics.py shows that on the near-horizontal targets the arm cannot *rest* within
0.05 m: nearer than its static floor even every muscle that helps, fully on, leaves a net
downward torque about the shoulder. It can still *pass* nearer, and a lengthening muscle pulls
far harder than a shortening one (the lift there reaches +8.9 N m while the arm sinks), so an arm
thrown up early and let down slowly might spend the episode's last half nearer than the floor.
Whether it can is a question about the model, not about a learner: this answers it by search.

For each evaluation target (bench/learn.py's: reset seed ``EVAL_SEED`` + k) the policy is run
once and its actions recorded (one per agent step; the policy's environment settings, e.g. frame
skip 2 and the ``fast`` preset). Replayed open loop on the same reset (the simulation is
deterministic; every episode, the policy's included, runs on an environment built for it) they
give back the policy's own episode. The search then adds a correction,
piecewise constant over ``--knots`` equal spans of the episode, one value per muscle and span,
to those actions (clipped to [0, 1]), and CMA-ES (the ``cma`` package) looks for the correction
that minimises the episode's task measure: the hand's mean distance to its target over the
episode's last half, as evaluate.py scores it. An episode that ends early (diverged, or over
the step budget) scores 1 m. The zero correction is the first candidate, so a target's result is
never worse than the policy's.

The result is what a plan made knowing the target and the whole future can do, the best a
feedback policy could hope for, and found by a search, so an estimate from above: where it stays
beyond 0.05 m, so does any policy as far as this search can tell.

    python bench/arm_trajectory.py --policy results/policies/sac_Arm2DEnv_root_seed2_200k --json
        [--targets 20] [--only 1 2 5 ...] [--knots 8] [--evals 400] [--sigma 0.2]
        [--processes 2] [--verbose] [--quick]

Prints one JSON object; ``results/arm2d_trajectory.json`` is its output.
"""
import argparse
import itertools
import json
import logging
import multiprocessing
import os
import platform
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.dirname(os.path.abspath(__file__))

from bench.arm_reach import check_policies  # noqa: E402
from bench.learn import EVAL_SEED  # noqa: E402

log = logging.getLogger('arm_trajectory')
FAILED = 1.0  # the score, in metres, of an episode that ended early


def replay(env_name, env_kwargs, seed, actions):
    """``(return, mean distance over the last half, length)`` of ``actions`` played open loop
    from the reset with ``seed`` by evaluate.py's episode loop, on an environment built for it;
    the last action is held should the episode outlast ``actions``. The distance is ``FAILED``
    when the episode ended before its time limit (diverged) or its distance is not finite."""
    from run import evaluation
    env = evaluation.make_env(env_name, env_kwargs, False)
    played = itertools.count()
    try:
        returns, lengths, measures = evaluation.run_episodes(
            lambda obs: actions[min(next(played), len(actions) - 1)], env, 1, seed)
    finally:
        env.close()
    distance = measures[0].get('distance', FAILED)
    if lengths[0] < env.max_episode_steps or not np.isfinite(distance):
        distance = FAILED
    return returns[0], distance, lengths[0]


def corrected(base, x, knots):
    """``base`` (steps x muscles) plus the correction ``x`` (knots x muscles, flattened), each
    knot's value held over its span of the episode, clipped to the muscles' range."""
    steps, muscles = base.shape
    span = np.minimum(np.arange(steps) * knots // steps, knots - 1)
    return np.clip(base + np.asarray(x).reshape(knots, muscles)[span], 0.0, 1.0)


def search(job):
    """One target's search (runs in a worker process): its row of the result."""
    import cma
    k, seed, target, base, env_name, env_kwargs, args = job
    progress(args['verbose'])
    base = np.asarray(base, dtype=float)
    start = time.time()
    ret0, dist0, len0 = replay(env_name, env_kwargs, seed, base)
    best = (dist0, ret0, np.zeros(args['knots'] * base.shape[1]))
    evals = 1
    es = cma.CMAEvolutionStrategy(best[2], args['sigma'], {
        'seed': 1000 + k, 'verbose': -9, 'maxfevals': args['evals'] - 1})
    while not es.stop():
        xs = es.ask()
        scores = []
        for x in xs:
            ret, dist, _ = replay(env_name, env_kwargs, seed,
                                  corrected(base, x, args['knots']))
            evals += 1
            scores.append(dist)
            if dist < best[0]:
                best = (dist, ret, np.asarray(x))
        es.tell(xs, scores)
        log.info('target %d: %d episodes, best %.4f m (policy %.4f)', k, evals, best[0], dist0)
    # the best plan once more, for its return, length and where the hand ended
    actions = corrected(base, best[2], args['knots'])
    ret, dist, length = replay(env_name, env_kwargs, seed, actions)
    return {'k': k, 'target': [round(float(v), 4) for v in target],
            'angle_deg': round(float(np.degrees(np.arctan2(0.8 - target[1], target[0]))), 1),
            'policy_distance_m': round(dist0, 4), 'policy_return': round(ret0, 2),
            'policy_length': len0,
            'planned_distance_m': round(dist, 4), 'planned_return': round(ret, 2),
            'planned_length': length, 'episodes': evals,
            # unrounded: near the edge of diverging, actions rounded to 6 decimals replay to
            # another episode (target 2 of the committed run: 0.205 m exact, 0.371 rounded)
            'planned_actions': [[float(a) for a in row] for row in actions],
            'wall_s': round(time.time() - start, 1)}


def progress(verbose):
    """This script's own progress on stderr (with ``--verbose``), nobody else's chatter."""
    logging.basicConfig(level=logging.WARNING)
    log.setLevel(logging.INFO if verbose else logging.WARNING)


def record(policy, ks):
    """The policy's environment, its settings, and for each evaluation target in ``ks`` its
    actions (agent steps x muscles) and the target, from evaluate.py's own loading code."""
    import evaluate
    from run import evaluation
    algo, env_name, env_kwargs, hidden = evaluate.plan(evaluate.parse_args([policy]))
    # Each episode on an environment of its own, as replay() plays it: osim-rl's Arm2DEnv keeps
    # a trace of earlier episodes (hundredths of a millimetre), enough to tip an episode at the
    # edge of diverging one way or the other.
    env = evaluation.make_env(env_name, env_kwargs, False)
    act, _ = evaluation.load_policy(algo, hidden, env, policy)
    env.close()
    episodes = []
    for k in sorted(ks):
        first, played = [], []

        def recording(obs):
            if not first:  # the reset's observation: it shows the target
                first.append(obs)
            played.append(np.clip(np.asarray(act(obs), dtype=float).ravel(), 0.0, 1.0))
            return played[-1]

        env = evaluation.make_env(env_name, env_kwargs, False)
        try:
            evaluation.run_episodes(recording, env, 1, EVAL_SEED + k)
        finally:
            env.close()
        target = np.asarray(first[0], dtype=float)[:2]  # as bench/arm_reach.py reads it
        episodes.append((k, EVAL_SEED + k, target.tolist(), [a.tolist() for a in played]))
    return env_name, env_kwargs, episodes


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--policy', required=True, metavar='DIR',
                        help='an exported Arm2DEnv policy (or run) whose actions the search starts from')
    parser.add_argument('--json', action='store_true', help='print the one JSON object (default)')
    parser.add_argument('--targets', type=int, default=20,
                        help='bench/learn.py evaluation targets (its default: 20)')
    parser.add_argument('--only', type=int, nargs='+', metavar='K',
                        help='search only these of the targets (0-based)')
    parser.add_argument('--knots', type=int, default=8, help='spans of the correction')
    parser.add_argument('--evals', type=int, default=400, help='episodes per target')
    parser.add_argument('--sigma', type=float, default=0.2, help="CMA-ES's first step size")
    parser.add_argument('--processes', type=int, default=2)
    parser.add_argument('--verbose', action='store_true',
                        help='each target\'s best so far on stderr, once per CMA-ES generation')
    parser.add_argument('--quick', action='store_true',
                        help='a smoke run: 1 target, 2 knots, about 10 episodes')
    args = parser.parse_args(argv)
    if args.quick:
        args.targets, args.knots, args.evals, args.only = 1, 2, 6, None
    if args.targets < 1 or args.knots < 1 or args.evals < 2 or args.processes < 1:
        parser.error('--targets, --knots and --processes must be >= 1, --evals >= 2')
    only = set(range(args.targets) if args.only is None else args.only)
    if not only <= set(range(args.targets)):
        parser.error('--only: targets are 0 to %d' % (args.targets - 1))
    progress(args.verbose)
    start = time.time()
    check_policies([args.policy], 'bench/arm_trajectory.py')
    env_name, env_kwargs, episodes = record(args.policy, only)
    settings = {'knots': args.knots, 'evals': args.evals, 'sigma': args.sigma,
                'verbose': args.verbose}
    jobs = [(k, seed, target, actions, env_name, env_kwargs, settings)
            for k, seed, target, actions in episodes]
    # spawn: the parent has TensorFlow loaded, which a fork would carry along half-initialised
    with multiprocessing.get_context('spawn').Pool(min(args.processes, len(jobs))) as pool:
        rows = sorted(pool.map(search, jobs, chunksize=1), key=lambda r: r['k'])
    policy_d = [r['policy_distance_m'] for r in rows]
    planned_d = [r['planned_distance_m'] for r in rows]
    result = {'env': env_name, 'env_kwargs': env_kwargs, 'policy': args.policy,
              'eval_seed': EVAL_SEED, 'knots': args.knots, 'evals_per_target': args.evals,
              'sigma': args.sigma, 'targets': rows,
              'searched_targets': [r['k'] for r in rows],
              'mean_policy_distance_m': round(float(np.mean(policy_d)), 4),
              'mean_planned_distance_m': round(float(np.mean(planned_d)), 4),
              'planned_beyond_5cm': int(sum(d > 0.05 for d in planned_d)),
              'wall_s': round(time.time() - start, 1), 'python': platform.python_version(),
              'command': ' '.join(['bench/arm_trajectory.py'] + list(
                  sys.argv[1:] if argv is None else argv))}
    print(json.dumps(result, sort_keys=True))


if __name__ == '__main__':
    main()
