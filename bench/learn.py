"""Learning benchmark: train SAC or DDPG per seed, evaluate as evaluate.py does, resumably.

    python bench/learn.py --algo sac --env Pendulum-v1 --envs 4 --steps 15000 --seeds 0 1 2 --json
    python bench/learn.py --algo sac --env Arm2DEnv --sim fast --frame-skip 2 --envs 2 \\
        --reward-scale 10 --reward-offset -2 --steps 100000 --seeds 0 1 2 \\
        --run-dir runs/learn-arm --export results/policies/sac_Arm2DEnv --out results --json

Budgets (``--steps``, ``--eval-every``, ``--checkpoint-every``) count SIMULATOR steps: with
``--frame-skip K`` one agent step is K of them. Both counts are reported (``sim_steps``,
``agent_steps``; ``env_steps`` is ``sim_steps``); episode lengths are in agent steps (a time
limit given in ``--env-kwargs`` counts simulator steps).

The agent is the train scripts' (agents.sac.SAC / agents.ddpg.DDPG from_spaces, their library
defaults) with the knobs of issue 11: ``--normalize-obs``, ``--reward-scale``,
``--reward-offset``, ``--updates-per-step``, ``--hidden``; ``--sim`` and ``--frame-skip`` go to
the environments (runconfig.apply_sim: an explicit one in ``--env-kwargs`` wins).

Evaluation (every ``--eval-every`` steps and at the end): ``--eval-episodes`` (20) deterministic
episodes with evaluate.py's own code (``run_episodes``/``result``) on an environment of its own in
this process, episode k reset with seed EVAL_SEED + k: seeds the training never used (its resets
are seeded below EVAL_SEED). Besides return and length, the environment's task measure:
Arm2DEnv's distance to the target over each episode's last half (``mean_distance``), a walker's
forward distance (``mean_forward_distance``). The random policy runs through the same code on the
same episodes (``random_policy_mean_return``/``_length``/``_distance``...).

Resume: with ``--run-dir DIR`` each seed keeps a checkpoint in ``DIR/seed<k>/checkpoints``
(run/checkpoints.py: weights, optimizer and RNG states, observation statistics, the replay memory)
every ``--checkpoint-every`` steps and at the end, and its curve in ``DIR/seed<k>/curve.csv``. The
same command run again (after a kill, a reboot) continues each seed from its newest checkpoint,
with its step count, replay memory and curve (rows past the checkpoint are dropped: they are done
again); a finished seed is not trained again. ``--steps`` may grow between runs (a longer run);
the flags that shape training must stay the same (refused in one line otherwise).

Export: ``--export DIR`` writes each seed's trained policy (evaluation.export_policy: actor
weights, observation statistics, config.json; a few hundred KB) to DIR (one seed) or DIR/seed<k>,
for ``python evaluate.py DIR --episodes 20 --seed S --json``.

Output: one JSON object (per seed and over seeds: ``final_mean_return``, ``final_mean_length``,
``final_mean_distance`` / ``final_mean_forward_distance``, and the random policy's), the curves in
``--out`` (``<algo>_<env>_curves.csv`` and ``.png``). The vectorized envs come from
:func:`make_vec_env`: farm-backed (a local farm on a free port) when farmer.py is there, else
``contract.InProcessVecEnv``; ``--backend`` forces one.
"""
import csv
import json
import logging
import math
import os
import random
import socket
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

from common import errors  # noqa: E402
from vecenv import contract  # noqa: E402

log = logging.getLogger('bench.learn')

# Evaluation episodes are reset with EVAL_SEED + k; training resets with seed * 1000 + a count
# below 1000, so evaluation never meets a start the run trained on.
EVAL_SEED = 10 ** 6

# Targets from the project's issues: final deterministic mean return, the arm's mean distance to
# its target over the last half of each episode (m), the walker's episode length as a multiple
# of the random policy's.
TARGETS = {('sac', 'Pendulum-v1'): -200.0, ('ddpg', 'Pendulum-v1'): -250.0,
           ('sac', 'Arm2DEnv'): 197.0}
TARGET_DISTANCE = {'Arm2DEnv': 0.05}
TARGET_LENGTH_FACTOR = {'L2M2019Env': 2.0}

# What must not change when a run directory is continued: it shapes what was trained.
SAME_ON_RESUME = ('algo', 'env', 'env_kwargs', 'envs', 'hidden', 'normalize_obs', 'reward_scale',
                  'reward_offset', 'reward_root', 'updates_per_step', 'warmup', 'batch_size',
                  'memory_limit', 'mirror')
# What a run started before a flag existed trained with (its args.json lacks the key).
ADDED_LATER = {'mirror': False}

_FARMER = []  # the one Farmer of this process, when farm-backed (closed in main)
BACKEND = {'name': 'auto', 'capacity': 16}
CSV_FIELDS = ['seed', 'kind', 'agent_steps', 'sim_steps', 'return', 'length', 'measure']


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
        return contract.InProcessVecEnv(env_name, n_envs, env_kwargs)
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


def build_agent(args, vec, seed):
    """The agent with its library defaults (the SAC paper's for SAC) and this run's knobs."""
    options = dict(hidden=args.hidden, seed=seed, normalize_obs=args.normalize_obs,
                   reward_scale=args.reward_scale, reward_offset=args.reward_offset,
                   reward_root=args.reward_root, updates_per_step=args.updates_per_step,
                   memory_limit=args.memory_limit)
    if args.mirror:  # every transition stored twice, as it came and mirrored (envs/symmetry.py)
        from agents.replay import TransitionReplay
        from envs.symmetry import mirror_for
        options['memory'] = TransitionReplay(
            args.memory_limit, vec.observation_space.shape, vec.action_space.shape, seed=seed,
            mirror=mirror_for(args.env))
    if args.warmup is not None:
        options['nb_steps_warmup'] = args.warmup
    if args.batch_size is not None:
        options['batch_size'] = args.batch_size
    if args.algo == 'ddpg':
        from agents.ddpg import DDPG
        if args.warmup is not None:
            options['nb_steps_random'] = args.warmup
        agent = DDPG.from_spaces(vec.observation_space, vec.action_space, **options)
    else:
        from agents.sac import SAC
        agent = SAC.from_spaces(vec.observation_space, vec.action_space, **options)
    agent.compile()
    return agent


# --- evaluation: evaluate.py's code ---------------------------------------------------------------
def evaluate_policy(act, env, args):
    """evaluate.py's result for ``act`` on ``--eval-episodes`` episodes from EVAL_SEED."""
    from run import evaluation
    returns, lengths, measures = evaluation.run_episodes(act, env, args.eval_episodes, EVAL_SEED)
    return evaluation.result('policy', None, args.env, {}, EVAL_SEED, returns, lengths, measures,
                           None, None, 0)


def task_measure(outcome):
    """``(key, value)`` of the environment's task measure in an evaluation, or (None, None)."""
    from run import evaluation
    for key, _, _ in sorted(evaluation.MEASURES.values()):
        if key in outcome:
            return key, outcome[key]
    return None, None


def random_baseline(args, env_kwargs):
    """The random policy through the same evaluation (cached in the run directory)."""
    cache = os.path.join(args.run_dir, 'random_policy.json') if args.run_dir else None
    if cache and os.path.exists(cache):
        with open(cache) as f:
            cached = json.load(f)
        if cached.get('episodes') == args.eval_episodes:
            return cached
    from run import evaluation
    env = evaluation.make_env(args.env, env_kwargs, video=False)
    try:
        act, _ = evaluation.load_policy('random', (), env, None, seed=12345)
        outcome = evaluate_policy(act, env, args)
    finally:
        env.close()
    if cache:
        _write_json(cache, outcome)
    return outcome


# --- one seed -------------------------------------------------------------------------------------
def run_seed(args, seed, env_kwargs, frame_skip, measure_key=None):
    """Train (or continue) one seed; returns its result dict and its curve rows.
    ``measure_key``: the env's task measure (``mean_distance``...), None where it has none."""
    from run import checkpoints
    from run import evaluation
    from agents.compat import keras, tf
    keras.backend.clear_session()  # a fresh graph per seed (graph mode would keep growing)
    random.seed(seed)
    np.random.seed(seed)
    tf.random.set_seed(seed)
    seed_dir = os.path.join(args.run_dir, 'seed%d' % seed) if args.run_dir else None
    folder = os.path.join(seed_dir, 'checkpoints') if seed_dir else None
    rows = []
    with make_vec_env(args.env, args.envs, env_kwargs) as vec:
        agent = build_agent(args, vec, seed)
        resumed_from = None
        if folder and os.path.isdir(folder) and checkpoints.candidates(folder):
            checkpoints.load(agent, folder)
            resumed_from = agent.global_step
            rows = [r for r in _read_rows(seed_dir) if int(r['agent_steps']) <= agent.global_step]
            log.warning('seed %d: continuing from its checkpoint at %d agent steps (%d '
                        'transitions in its replay memory)', seed, agent.global_step,
                        len(agent.memory))
        if seed_dir:
            _write_rows(seed_dir, rows)  # rows past the checkpoint are done again

        def add_row(kind, agent_steps, ret, length, measure=None):
            row = {'seed': seed, 'kind': kind, 'agent_steps': agent_steps,
                   'sim_steps': agent_steps * frame_skip, 'return': round(ret, 4),
                   'length': length, 'measure': '' if measure is None else round(measure, 5)}
            rows.append(row)
            if seed_dir:
                _write_rows(seed_dir, [row], append=True)

        def on_episode(event):
            add_row('train', event['global_step'], event['return'], event['length'])

        eval_env = evaluation.make_env(args.env, env_kwargs, video=False)
        try:
            act = evaluation.policy_of(agent)
            target = int(math.ceil(args.steps / float(frame_skip)))
            eval_every = max(1, args.eval_every // frame_skip)
            checkpoint_every = max(1, args.checkpoint_every // frame_skip)
            started, train_seconds = time.time(), 0.0
            deadline = started + 60 * args.max_minutes if args.max_minutes else None
            next_eval = (agent.global_step // eval_every + 1) * eval_every
            next_checkpoint = (agent.global_step // checkpoint_every + 1) * checkpoint_every
            # a new vectorized env's resets: seeded apart from every earlier one of this seed
            reset_seed = seed * 1000 + (agent.episodes % 1000)
            while agent.global_step < target:
                if deadline is not None and time.time() > deadline:
                    log.warning('seed %d: %.0f-minute budget spent at %d agent steps; stopping',
                                seed, args.max_minutes, agent.global_step)
                    break
                chunk = min(next_eval, next_checkpoint, target) - agent.global_step
                if chunk <= 0:  # never train_vec(nb_steps=0): it returns at once, for ever
                    raise RuntimeError(
                        'seed %d: training chunk of %d agent steps at step %d (next evaluation '
                        '%d, next checkpoint %d, target %d): a schedule was not advanced'
                        % (seed, chunk, agent.global_step, next_eval, next_checkpoint, target))
                t = time.time()
                summary = agent.train_vec(vec, nb_steps=chunk, callback=on_episode,
                                          seed=reset_seed, mode=args.stepping)
                train_seconds += time.time() - t
                if summary['interrupted']:  # Ctrl-C: keep what was done, then stop
                    if folder:
                        checkpoints.save(agent, folder, 'step%09d' % agent.global_step, keep=2)
                    raise KeyboardInterrupt
                if agent.global_step >= next_eval or agent.global_step >= target:
                    next_eval = (agent.global_step // eval_every + 1) * eval_every
                    _evaluate_into(agent, act, eval_env, args, add_row, seed, frame_skip,
                                   train_seconds)
                if agent.global_step >= next_checkpoint or agent.global_step >= target:
                    # the schedule advances with or without a run directory (issue 23): a
                    # boundary reached and left in place made every later chunk 0 steps
                    next_checkpoint = ((agent.global_step // checkpoint_every + 1)
                                       * checkpoint_every)
                    if folder:
                        checkpoints.save(agent, folder, 'step%09d' % agent.global_step, keep=2)
            evals = [r for r in rows if r['kind'] == 'eval']
            if not evals or int(evals[-1]['agent_steps']) != agent.global_step:
                _evaluate_into(agent, act, eval_env, args, add_row, seed, frame_skip,
                               train_seconds)
                if folder:
                    checkpoints.save(agent, folder, 'step%09d' % agent.global_step, keep=2)
        finally:
            eval_env.close()
        last = dict(_last_evaluation)
        result = {'seed': seed, 'agent_steps': agent.global_step,
                  'sim_steps': agent.global_step * frame_skip,
                  'env_steps': agent.global_step * frame_skip, 'updates': agent.updates,
                  'episodes': agent.episodes, 'replay_size': len(agent.memory),
                  'resumed_from_agent_steps': resumed_from,
                  'wall_s': round(time.time() - started, 1), 'train_s': round(train_seconds, 1),
                  'sim_steps_per_s': round((agent.global_step - (resumed_from or 0)) * frame_skip
                                           / max(train_seconds, 1e-9), 1),
                  'eval_episodes': args.eval_episodes}
        if last.get('seed') == seed:
            outcome = last['outcome']
            result.update(final_mean_return=round(outcome['mean_return'], 3),
                          final_std_return=round(outcome['std_return'], 3),
                          final_mean_length=round(outcome['mean_length'], 2))
            key, value = task_measure(outcome)
            if key is not None:
                result['final_' + key] = round(value, 5)
        else:  # a finished seed run again: its last evaluation is in its curve
            row = [r for r in rows if r['kind'] == 'eval'][-1]
            result.update(final_mean_return=float(row['return']),
                          final_mean_length=float(row['length']))
            if measure_key is not None and row['measure'] not in ('', None):
                result['final_' + measure_key] = float(row['measure'])
        result['eval_curve'] = [[int(r['sim_steps']), float(r['return']), float(r['length'])]
                                + ([float(r['measure'])] if r['measure'] not in ('', None)
                                   else []) for r in rows if r['kind'] == 'eval']
        if args.export:
            where = (args.export if len(args.seeds) == 1
                     else os.path.join(args.export, 'seed%d' % seed))
            evaluation.export_policy(agent, where, args.algo, args.env, env_kwargs, args.hidden,
                                   seed=seed, sim_steps=result['sim_steps'],
                                   agent_steps=result['agent_steps'],
                                   final_mean_return=result.get('final_mean_return'),
                                   command=' '.join(sys.argv))
            result['export'] = where
        return result, rows


_last_evaluation = {}


def _evaluate_into(agent, act, env, args, add_row, seed, frame_skip, train_seconds):
    """Evaluate, add the curve's row, and with ``--run-dir`` export the policy evaluated to
    ``seed<k>/policies/sim<N>``: a run stopped between evaluations (Ctrl-C, the end of a
    session) still has a policy for evaluate.py at every budget it passed."""
    if args.run_dir:
        from run import evaluation
        sim_steps = agent.global_step * frame_skip
        evaluation.export_policy(
            agent, os.path.join(args.run_dir, 'seed%d' % seed, 'policies', 'sim%09d' % sim_steps),
            args.algo, args.env, args.env_kwargs, args.hidden, seed=seed, sim_steps=sim_steps,
            agent_steps=agent.global_step, command=' '.join(sys.argv))
    outcome = evaluate_policy(act, env, args)
    key, value = task_measure(outcome)
    add_row('eval', agent.global_step, outcome['mean_return'], outcome['mean_length'], value)
    _last_evaluation.update(seed=seed, outcome=outcome)
    log.info('%s seed %d: %d sim steps, eval return %.2f, length %.1f%s, %.0f sim steps/s',
             args.algo, seed, agent.global_step * frame_skip, outcome['mean_return'],
             outcome['mean_length'], '' if key is None else ', %s %.4f' % (key, value),
             agent.global_step * frame_skip / max(train_seconds, 1e-9))


def _read_rows(seed_dir):
    path = os.path.join(seed_dir, 'curve.csv')
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return list(csv.DictReader(f))


def _write_rows(seed_dir, rows, append=False):
    if not os.path.isdir(seed_dir):
        os.makedirs(seed_dir)
    path = os.path.join(seed_dir, 'curve.csv')
    new = not (append and os.path.exists(path))
    with open(path, 'w' if new else 'a', newline='') as f:
        writer = csv.DictWriter(f, CSV_FIELDS)
        if new:
            writer.writeheader()
        writer.writerows(rows)
        f.flush()


def _write_json(path, data):
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(data, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


# --- output ---------------------------------------------------------------------------------------
def write_curves(args, rows, target, baseline):
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, '%s_%s_curves' % (args.algo, args.env))
    with open(stem + '.csv', 'w', newline='') as f:
        writer = csv.DictWriter(f, CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    key, random_measure = task_measure(baseline)
    panels = 2 if key is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(7 * panels, 4.5), squeeze=False)
    ax = axes[0][0]
    for i, seed in enumerate(sorted(set(int(r['seed']) for r in rows))):
        color = 'C%d' % i
        train = [(int(r['sim_steps']), float(r['return'])) for r in rows
                 if int(r['seed']) == seed and r['kind'] == 'train']
        evals = [r for r in rows if int(r['seed']) == seed and r['kind'] == 'eval']
        if train:
            ax.scatter(*zip(*train), s=4, alpha=0.25, color=color)
        if evals:
            ax.plot([int(r['sim_steps']) for r in evals], [float(r['return']) for r in evals],
                    marker='o', ms=3, color=color, label='seed %d (deterministic eval)' % seed)
            if panels == 2:
                axes[0][1].plot([int(r['sim_steps']) for r in evals],
                                [float(r['measure']) for r in evals], marker='o', ms=3,
                                color=color, label='seed %d' % seed)
    if target is not None:
        ax.axhline(target, ls='--', color='grey', label='target %g' % target)
    ax.axhline(baseline['mean_return'], ls=':', color='black',
               label='random policy %.1f' % baseline['mean_return'])
    ax.set_xlabel('simulator steps')
    ax.set_ylabel('episode return')
    ax.set_title('%s on %s, %d envs (dots: training episodes)'
                 % (args.algo.upper(), args.env, args.envs))
    ax.legend(loc='lower right', fontsize=8)
    if panels == 2:
        other = axes[0][1]
        other.axhline(random_measure, ls=':', color='black',
                      label='random policy %.3f' % random_measure)
        if args.env in TARGET_DISTANCE and key == 'mean_distance':
            other.axhline(TARGET_DISTANCE[args.env], ls='--', color='grey',
                          label='target %g' % TARGET_DISTANCE[args.env])
        other.set_xlabel('simulator steps')
        other.set_ylabel(key.replace('_', ' ') + ' (m, deterministic eval)')
        other.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(stem + '.png', dpi=110)
    plt.close(fig)
    return stem + '.csv', stem + '.png'


def _reaches(args, result, target, baseline):
    """Whether one seed's final evaluation meets every target known for this env."""
    checks = []
    if target is not None:
        checks.append(result.get('final_mean_return') is not None
                      and result['final_mean_return'] >= target)
    if args.env in TARGET_DISTANCE:
        checks.append(result.get('final_mean_distance', float('inf'))
                      <= TARGET_DISTANCE[args.env])
    if args.env in TARGET_LENGTH_FACTOR:
        checks.append(result.get('final_mean_length', 0)
                      >= TARGET_LENGTH_FACTOR[args.env] * baseline['mean_length'])
    return all(checks) if checks else None


# --- the command ----------------------------------------------------------------------------------
def _yes_no(text):
    if text.lower() in ('yes', 'true', '1', 'on'):
        return True
    if text.lower() in ('no', 'false', '0', 'off'):
        return False
    raise ValueError(text)


_yes_no.__name__ = 'yes/no'


def _hidden(text):
    return tuple(int(x) for x in text.replace(' ', '').split(',') if x)


_hidden.__name__ = 'comma-separated int'


def parse_args(argv=None):
    from run import config as runconfig
    parser = runconfig.Parser(prog='bench/learn.py', description=__doc__.split('\n')[0])
    parser.add_argument('--algo', choices=['sac', 'ddpg'], required=True)
    parser.add_argument('--env', default='Pendulum-v1')
    parser.add_argument('--env-kwargs', default='{}', help='JSON keyword arguments of the env')
    parser.add_argument('--sim', choices=['exact', 'default', 'fast'], default='default',
                        help='osim-rl simulator preset (envs.SIM_PRESETS)')
    parser.add_argument('--frame-skip', type=int, default=1,
                        help='simulator steps per agent step (the action repeated)')
    parser.add_argument('--envs', type=int, default=4, help='environments trained on')
    parser.add_argument('--steps', type=int, default=15000, help='simulator steps per seed')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--normalize-obs', type=_yes_no, default=True, metavar='yes|no',
                        help='running observation normalization (default yes)')
    parser.add_argument('--reward-scale', type=float, default=1.0,
                        help='updates learn from reward_scale * (r + reward_offset)')
    parser.add_argument('--reward-offset', type=float, default=0.0)
    parser.add_argument('--reward-root', type=_yes_no, default=False, metavar='yes|no',
                        help='updates learn from -reward_scale * sqrt(max(0, -(r + '
                        'reward_offset))): a squared penalty made linear (default no)')
    parser.add_argument('--updates-per-step', type=float, default=1.0,
                        help='gradient updates per agent step')
    parser.add_argument('--hidden', type=_hidden, default=(256, 256),
                        help='hidden layer sizes, comma-separated (default 256,256)')
    parser.add_argument('--warmup', type=int, default=None,
                        help='agent steps of random actions before updates (agent default)')
    parser.add_argument('--batch-size', type=int, default=None,
                        help='transitions per gradient update (agent default)')
    parser.add_argument('--memory-limit', type=int, default=1000000)
    parser.add_argument('--mirror', type=_yes_no, default=False, metavar='yes|no',
                        help='also store every transition mirrored left-right (symmetric '
                        'bodies: L2M2019Env; default no)')
    parser.add_argument('--stepping', choices=['async', 'lockstep'], default=None,
                        help='the vectorized env stepping mode (default: async where possible)')
    parser.add_argument('--eval-every', type=int, default=5000, help='simulator steps')
    parser.add_argument('--eval-episodes', type=int, default=20)
    parser.add_argument('--checkpoint-every', type=int, default=10000,
                        help='simulator steps between checkpoints (with --run-dir)')
    parser.add_argument('--run-dir', default='',
                        help='keep checkpoints and curves here; the same command continues')
    parser.add_argument('--export', default='', metavar='DIR',
                        help='write the trained policies here (DIR/seed<k> for several seeds)')
    parser.add_argument('--backend', choices=['auto', 'farm', 'inprocess'], default='auto')
    parser.add_argument('--max-minutes', type=float, default=None,
                        help='wall-time budget per seed: no training chunk starts after it '
                        '(slow simulators); the JSON reports the steps reached')
    parser.add_argument('--target', type=float, default=None,
                        help='final mean return to reach (default: the issue\'s, if any)')
    parser.add_argument('--out', default='', help='where the curves go (default: --run-dir, '
                        'else bench/out)')
    parser.add_argument('--json', action='store_true', help='print one JSON object (default)')
    parser.add_argument('-v', '--verbose', action='store_true')
    args = parser.parse_args(argv)
    checks = [('--frame-skip', args.frame_skip >= 1, 'at least 1'),
              ('--envs', args.envs >= 1, 'at least 1'),
              ('--steps', args.steps >= 1, 'at least 1'),
              ('--reward-scale', 0 < args.reward_scale < float('inf'), 'a finite number above 0'),
              ('--reward-offset', abs(args.reward_offset) < float('inf'), 'a finite number'),
              ('--updates-per-step', args.updates_per_step >= 0, '0 or more'),
              ('--hidden', len(args.hidden) >= 1 and min(args.hidden) >= 1,
               'one or more sizes of at least 1'),
              ('--eval-every', args.eval_every >= 1, 'at least 1'),
              ('--eval-episodes', args.eval_episodes >= 1, 'at least 1'),
              ('--checkpoint-every', args.checkpoint_every >= 1, 'at least 1'),
              ('--memory-limit', args.memory_limit >= 1, 'at least 1'),
              ('--batch-size', args.batch_size is None or args.batch_size >= 1, 'at least 1'),
              ('--warmup', args.warmup is None or args.warmup >= 0, '0 or more')]
    for flag, ok, allowed in checks:
        if not ok:
            parser.error('argument %s: %s is not allowed: %s' % (
                flag, getattr(args, flag[2:].replace('-', '_')), allowed))
    from envs.symmetry import MIRRORS
    if args.mirror and args.env not in MIRRORS:
        parser.error('argument --mirror: %s has no mirror image defined (environments with '
                     'one: %s)' % (args.env, ', '.join(sorted(MIRRORS))))
    try:
        kwargs = json.loads(args.env_kwargs)
    except ValueError as e:
        parser.error('argument --env-kwargs: not JSON (%s)' % e)
    if not isinstance(kwargs, dict):
        parser.error('argument --env-kwargs: give a JSON object')
    args.env_kwargs = kwargs
    args.out = args.out or args.run_dir or os.path.join(ROOT, 'bench', 'out')
    return args


def check_run_dir(args):
    """Record the training flags in ``--run-dir``'s args.json, or check that they are those it
    was started with (errors.UserError in one line otherwise)."""
    if not args.run_dir:
        return
    os.makedirs(args.run_dir, exist_ok=True)
    path = os.path.join(args.run_dir, 'args.json')
    mine = dict((key, getattr(args, key)) for key in SAME_ON_RESUME)
    mine['hidden'] = list(mine['hidden'])
    if os.path.exists(path):
        with open(path) as f:
            theirs = json.load(f)
        for key in SAME_ON_RESUME:
            if key not in theirs and key in ADDED_LATER:  # started before the flag existed
                theirs[key] = ADDED_LATER[key]
            if key in theirs and theirs[key] != mine[key]:
                raise errors.UserError(
                    '--run-dir %s was started with %s %s; this command has %s: give the same '
                    'training flags to continue it, or another --run-dir' % (
                        args.run_dir, key, json.dumps(theirs[key]), json.dumps(mine[key])))
    _write_json(path, mine)


def main(argv=None):
    args = parse_args(argv)
    errors.install_excepthook(args.verbose, program='bench/learn.py')
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format='%(asctime)s %(name)s %(message)s', stream=sys.stderr)
    from run import config as runconfig
    runconfig.apply_sim(args)  # --sim and --frame-skip into env_kwargs, unless named there
    env_kwargs = args.env_kwargs
    frame_skip = int(env_kwargs.get('frame_skip', 1))
    check_run_dir(args)
    import agents.compat  # noqa: F401  (tf-keras before TensorFlow)
    if args.algo == 'ddpg':
        import agents.ddpg  # noqa: F401  (graph mode before any model is built)
    BACKEND['name'] = args.backend
    BACKEND['capacity'] = args.envs
    target = args.target if args.target is not None else TARGETS.get((args.algo, args.env))

    rows, seeds = [], []
    try:
        baseline = random_baseline(args, env_kwargs)
        measure_key = task_measure(baseline)[0]
        for seed in args.seeds:
            result, seed_rows = run_seed(args, seed, env_kwargs, frame_skip, measure_key)
            seeds.append(result)
            rows += seed_rows
    except KeyboardInterrupt:
        sys.stderr.write('bench/learn.py: interrupted%s\n' % (
            '; the same command continues from the checkpoint in %s' % args.run_dir
            if args.run_dir else ''))
        sys.exit(130)
    finally:
        for farmer in _FARMER:
            farmer.close()
    csv_path, png_path = write_curves(args, rows, target, baseline)
    result = {'algo': args.algo, 'env': args.env, 'env_kwargs': env_kwargs,
              'frame_skip': frame_skip, 'envs': args.envs, 'steps': args.steps,
              'normalize_obs': args.normalize_obs, 'reward_scale': args.reward_scale,
              'reward_offset': args.reward_offset, 'reward_root': args.reward_root,
              'updates_per_step': args.updates_per_step, 'mirror': args.mirror,
              'hidden': list(args.hidden), 'eval_episodes': args.eval_episodes,
              'eval_seed': EVAL_SEED, 'backend': BACKEND['name'], 'target': target,
              'seeds': seeds, 'csv': csv_path, 'png': png_path, 'command': ' '.join(sys.argv)}
    key, random_measure = task_measure(baseline)
    result['random_policy_mean_return'] = round(baseline['mean_return'], 3)
    result['random_policy_mean_length'] = round(baseline['mean_length'], 2)
    if key is not None:
        result['random_policy_' + key] = round(random_measure, 5)
    for name in ('mean_return', 'mean_length') + ((key,) if key else ()):
        finals = [s['final_' + name] for s in seeds if s.get('final_' + name) is not None]
        result['final_' + name] = round(float(np.mean(finals)), 5) if finals else None
    reached = [_reaches(args, s, target, baseline) for s in seeds]
    result['all_seeds_reach_target'] = (None if any(r is None for r in reached) or not reached
                                        else all(reached))
    print(json.dumps(result))


if __name__ == '__main__':
    main()
