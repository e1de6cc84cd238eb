"""Learning benchmark: train SAC or DDPG on N environments, per seed, and report how far it got.

    python bench/learn.py --algo sac --env Pendulum-v1 --envs 4 --steps 15000 --seeds 0 1 2 --json

For each seed: train ``--steps`` env steps on a vectorized env of ``--envs`` environments (agents'
defaults: the SAC paper's settings; DDPG as agents.ddpg.DDPG.from_spaces), evaluating every
``--eval-every`` steps and at the end with 10 deterministic episodes. Prints one JSON object with
per-seed final mean return, wall time and env steps/s, and writes the curves to ``--out``
(``<algo>_<env>_curves.csv`` and ``.png``).

The vectorized envs come from :func:`make_vec_env`, the one factory: farm-backed
(``farmer.Farmer``, which starts a local farm on a free port) when farmer.py is there, else
``vecenv.InProcessVecEnv``; ``--backend`` forces one.
"""
import argparse
import csv
import json
import logging
import os
import random
import socket
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

import vecenv  # noqa: E402

log = logging.getLogger('bench.learn')

# Targets from the project's issue: final deterministic mean return on Pendulum-v1.
TARGETS = {('sac', 'Pendulum-v1'): -200.0, ('ddpg', 'Pendulum-v1'): -250.0}

_FARMER = []  # the one Farmer of this process, when farm-backed (closed in main)
BACKEND = {'name': 'auto', 'capacity': 16}


def make_vec_env(env_name, n_envs, env_kwargs=None):
    """The one place vectorized envs come from."""
    backend = BACKEND['name']
    if backend == 'auto':
        try:
            import farmer
            backend = 'farm' if hasattr(getattr(farmer, 'Farmer', None), 'vec_env') else 'inprocess'
        except ImportError:
            backend = 'inprocess'
        BACKEND['name'] = backend
    if backend == 'inprocess':
        return vecenv.InProcessVecEnv(env_name, n_envs, env_kwargs)
    if not _FARMER:
        import farmer
        # A local farm of our own on a free port: the default farm list's capacity (one env per
        # core) is below what a run needs, and another user's farm may be on the default port.
        _FARMER.append(farmer.Farmer(farms=[('127.0.0.1', BACKEND['capacity'], _free_port())]))
    return _FARMER[0].vec_env(env_name, n_envs, env_kwargs)


def _free_port():
    sock = socket.socket()
    sock.bind(('127.0.0.1', 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def build_agent(algo, vec, seed):
    """The agent with its library defaults (the SAC paper's for SAC); graph mode for DDPG."""
    if algo == 'ddpg':
        from agents.ddpg import DDPG
        agent = DDPG.from_spaces(vec.observation_space, vec.action_space, seed=seed)
    else:
        from agents.sac import SAC
        agent = SAC.from_spaces(vec.observation_space, vec.action_space, seed=seed)
    agent.compile()
    return agent


def run_seed(args, seed, rows):
    from agents.compat import keras, tf
    keras.backend.clear_session()  # a fresh graph per seed (graph mode would keep growing)
    random.seed(seed)
    np.random.seed(seed)
    tf.random.set_seed(seed)
    env_kwargs = json.loads(args.env_kwargs)
    with make_vec_env(args.env, args.envs, env_kwargs) as vec, \
            make_vec_env(args.env, args.eval_envs, env_kwargs) as eval_vec:
        agent = build_agent(args.algo, vec, seed)

        def on_episode(event):
            rows.append((seed, 'train', event['global_step'], event['return']))

        started = time.time()
        train_seconds = 0.0
        evaluation = None
        first = True
        deadline = started + 60 * args.max_minutes if args.max_minutes else None
        while agent.global_step < args.steps:
            if deadline is not None and time.time() > deadline:
                log.warning('seed %d: %.0f-minute budget spent at %d env steps; stopping',
                            seed, args.max_minutes, agent.global_step)
                break
            chunk = min(args.eval_every, args.steps - agent.global_step)
            t = time.time()
            summary = agent.train_vec(vec, nb_steps=chunk, callback=on_episode,
                                      seed=seed * 1000 if first else None)
            train_seconds += time.time() - t
            first = False
            if summary['interrupted']:
                break
            evaluation = agent.evaluate_vec(eval_vec, nb_episodes=args.eval_episodes,
                                            seed=10 ** 6 + seed * 1000)
            rows.append((seed, 'eval', agent.global_step, evaluation['mean_return']))
            log.info('%s seed %d: %d steps, eval %.1f, %.0f steps/s', args.algo, seed,
                     agent.global_step, evaluation['mean_return'],
                     agent.global_step / max(train_seconds, 1e-9))
        result = {'seed': seed, 'env_steps': agent.global_step, 'updates': agent.updates,
                  'episodes': agent.episodes, 'wall_s': round(time.time() - started, 1),
                  'train_s': round(train_seconds, 1),
                  'env_steps_per_s': round(agent.global_step / max(train_seconds, 1e-9), 1),
                  'final_mean_return': evaluation and round(evaluation['mean_return'], 1),
                  'final_std_return': evaluation and round(evaluation['std_return'], 1),
                  'eval_episodes': evaluation and len(evaluation['returns'])}
        evals = [(step, ret) for s, kind, step, ret in rows if s == seed and kind == 'eval']
        result['eval_curve'] = [[step, round(ret, 1)] for step, ret in evals]
        return result


def random_baseline(args):
    """Mean return of uniformly random actions over ``eval_episodes`` episodes: the floor a
    learning curve is read against."""
    with make_vec_env(args.env, args.eval_envs, json.loads(args.env_kwargs)) as vec:
        rng = np.random.default_rng(12345)
        space = vec.action_space
        vec.reset(seed=777)
        returns = []
        while len(returns) < args.eval_episodes:
            actions = rng.uniform(space.low, space.high, (vec.num_envs,) + space.shape)
            infos = vec.step(actions)[4]
            returns += [info['episode']['r'] for info in infos if 'episode' in info]
        return float(np.mean(returns[:args.eval_episodes]))


def write_curves(args, rows, target, baseline=None):
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, '%s_%s_curves' % (args.algo, args.env))
    with open(stem + '.csv', 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(['seed', 'kind', 'env_steps', 'return'])
        writer.writerows(rows)
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, seed in enumerate(sorted(set(r[0] for r in rows))):
        color = 'C%d' % i
        train = [(r[2], r[3]) for r in rows if r[0] == seed and r[1] == 'train']
        evals = [(r[2], r[3]) for r in rows if r[0] == seed and r[1] == 'eval']
        if train:
            ax.scatter(*zip(*train), s=4, alpha=0.25, color=color)
        if evals:
            ax.plot(*zip(*evals), marker='o', ms=3, color=color,
                    label='seed %d (deterministic eval)' % seed)
    if target is not None:
        ax.axhline(target, ls='--', color='grey', label='target %g' % target)
    if baseline is not None:
        ax.axhline(baseline, ls=':', color='black', label='random policy %.1f' % baseline)
    ax.set_xlabel('env steps')
    ax.set_ylabel('episode return')
    ax.set_title('%s on %s, %d envs (dots: training episodes)'
                 % (args.algo.upper(), args.env, args.envs))
    ax.legend(loc='lower right', fontsize=8)
    fig.tight_layout()
    fig.savefig(stem + '.png', dpi=110)
    plt.close(fig)
    return stem + '.csv', stem + '.png'


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--algo', choices=['sac', 'ddpg'], required=True)
    parser.add_argument('--env', default='Pendulum-v1')
    parser.add_argument('--env-kwargs', default='{}', help='JSON keyword arguments of the env')
    parser.add_argument('--envs', type=int, default=4, help='environments trained on')
    parser.add_argument('--steps', type=int, default=15000, help='env steps per seed')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--eval-every', type=int, default=1000, help='env steps between evals')
    parser.add_argument('--eval-episodes', type=int, default=10)
    parser.add_argument('--eval-envs', type=int, default=10)
    parser.add_argument('--backend', choices=['auto', 'farm', 'inprocess'], default='auto')
    parser.add_argument('--max-minutes', type=float, default=None,
                        help='wall-time budget per seed: no training chunk starts after it '
                        '(slow simulators); the JSON reports the env steps reached')
    parser.add_argument('--target', type=float, default=None,
                        help='final mean return to reach (default: the issue\'s, if any)')
    parser.add_argument('--out', default=os.path.join(ROOT, 'bench', 'out'))
    parser.add_argument('--json', action='store_true', help='print one JSON object (default)')
    parser.add_argument('-v', '--verbose', action='store_true')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format='%(asctime)s %(name)s %(message)s', stream=sys.stderr)
    import agents.compat  # noqa: F401  (tf-keras before TensorFlow)
    if args.algo == 'ddpg':
        import agents.ddpg  # noqa: F401  (graph mode before any model is built)
    BACKEND['name'] = args.backend
    BACKEND['capacity'] = args.envs + args.eval_envs
    target = args.target if args.target is not None else TARGETS.get((args.algo, args.env))

    rows, seeds = [], []
    try:
        baseline = random_baseline(args)
        for seed in args.seeds:
            seeds.append(run_seed(args, seed, rows))
    finally:
        for farmer in _FARMER:
            farmer.close()
    csv_path, png_path = write_curves(args, rows, target, baseline)
    finals = [s['final_mean_return'] for s in seeds if s['final_mean_return'] is not None]
    result = {'algo': args.algo, 'env': args.env, 'envs': args.envs, 'steps': args.steps,
              'backend': BACKEND['name'], 'target': target, 'seeds': seeds,
              'random_policy_mean_return': round(baseline, 1),
              'mean_final_return': round(float(np.mean(finals)), 1) if finals else None,
              'all_seeds_reach_target': (None if target is None or not finals
                                         else all(f >= target for f in finals)
                                         and len(finals) == len(seeds)),
              'csv': csv_path, 'png': png_path}
    print(json.dumps(result))


if __name__ == '__main__':
    main()
