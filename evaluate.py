#!/usr/bin/env python
"""evaluate.py: a trained policy's deterministic episodes, their returns, and a video of them.

    python evaluate.py runs/sac-Arm2DEnv-20261129-120000 --episodes 5 --seed 0
    python evaluate.py RUN --episodes 1 --video arm.mp4 --gif arm.gif     # no display needed
    python evaluate.py RUN --json                                         # one JSON object
    python evaluate.py RUN --env Arm2DEnv --env-kwargs '{"integrator_accuracy": 1e-3}'
    python evaluate.py --random --env L2M2019Env --video l2m.mp4          # a baseline: no policy

RUN is a run directory of train_sac.py / train_ddpg.py (its newest whole checkpoint), one
checkpoint inside it, or an exported policy (run/evaluation.py's ``export_policy``,
``bench/learn.py --export``:
a folder of ``config.json``, ``actor.h5`` and, where the agent normalized its observations,
``obs_norm.npz``; a few hundred KB, what acting needs and nothing more). The run's config.json
says the algorithm, the environment and its kwargs, and the networks' sizes; the agent is built as
the train script builds it, then the checkpoint's (or the exported policy's) weights are loaded
(not its replay memory nor optimizer states: acting needs neither), with the observation
statistics saved beside them when the agent normalized its observations. Episode k is reset
with seed S + k, and actions are deterministic (SAC: tanh of the policy's mean; DDPG: the actor,
no noise), so the same command gives the same numbers. ``--env-kwargs`` are merged over the
run's (a variant: another difficulty, a shorter episode); ``--env`` evaluates on another
environment (with none of the run's kwargs).

Besides returns and lengths, the environment's own task measure where it has one (osim-rl's state,
read by envs/osim.py after every step into ``info['task']``): Arm2DEnv's ``mean_distance``,
the hand's distance to its target in metres averaged over each episode's last half of steps, then
over episodes; the walkers' ``mean_forward_distance``, how far the pelvis moved forward by each
episode's end, averaged over episodes. ``--json`` prints one object with ``mean_return``,
``std_return``, ``min_return``, ``max_return``, the same four of ``_length``, those measures
(absent where the environment has none; per episode in ``distances`` / ``forward_distances``),
``episodes`` and ``seed``. ``--random`` runs the same code with uniform random actions: the
baseline the figures are read against.

The environment is built here, in this process, with ``envs.make`` (as contract.InProcessVecEnv
does), not on a farm: frames are large and the farm's wire is for steps (see run/render.py). Videos:
gym ids through their own ``rgb_array`` rendering, osim-rl models drawn from the simulation's
state (run/render.py), MP4 by imageio-ffmpeg's bundled ffmpeg, GIF by Pillow.
"""
import json
import os
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')  # plumbing: TensorFlow's C++ start-up chatter

from common import errors  # noqa: E402
from envs.measures import MEASURES  # noqa: E402
from run import checkpoints  # noqa: E402  (no TensorFlow: mistakes are found before it starts)
from run import config as runconfig  # noqa: E402
from run.evaluation import (ALGOS, POLICY_WEIGHTS, is_policy_dir, load_policy,  # noqa: E402
                            make_env, play, read_config, result)


def parse_args(argv=None):
    # runconfig's parser: a bad flag is one line, as in the train scripts
    parser = runconfig.Parser(prog='evaluate.py', description=__doc__.split('\n')[0])
    parser.add_argument('run', nargs='?', default='', metavar='RUN',
                        help="a run directory or a checkpoint in one (with --random: the run "
                             "whose environment to take)")
    parser.add_argument('--episodes', type=int, default=5, help='episodes to run (%(default)s)')
    parser.add_argument('--seed', type=int, default=0,
                        help='episode k is reset with seed + k (%(default)s)')
    parser.add_argument('--env', default='', help="the environment (default: the run's)")
    parser.add_argument('--env-kwargs', default='{}', metavar='JSON',
                        help="the environment's keyword arguments, merged over the run's")
    parser.add_argument('--video', default='', metavar='OUT.mp4', help='film the episodes')
    parser.add_argument('--gif', default='', metavar='OUT.gif',
                        help='film them as a GIF too (every 2nd frame, half size)')
    parser.add_argument('--fps', type=float, default=30.0,
                        help='frames per second of the films (%(default)s; one frame per step)')
    parser.add_argument('--random', action='store_true',
                        help='uniform random actions instead of a policy (a baseline)')
    parser.add_argument('--json', action='store_true', help='print one JSON object, nothing else')
    parser.add_argument('--verbose', action='store_true', help='debug logs and tracebacks')
    return parser.parse_args(argv)


# --- what to evaluate: checked before TensorFlow or any environment starts -----------------------
def plan(args):
    """``(algo, env, env_kwargs, hidden)`` from the run's config and the flags; UserError for
    every mistake, in one line."""
    if args.episodes < 1:
        raise errors.UserError('--episodes %d: give at least 1' % args.episodes)
    if args.seed < 0:
        raise errors.UserError('--seed %d: give a seed >= 0' % args.seed)
    if args.fps <= 0:
        raise errors.UserError('--fps %g: give a positive number' % args.fps)
    try:
        extra = json.loads(args.env_kwargs)
    except ValueError as e:
        raise errors.UserError('--env-kwargs %s: not JSON (%s)' % (args.env_kwargs, e))
    if not isinstance(extra, dict):
        raise errors.UserError('--env-kwargs %s: give a JSON object, e.g. \'{"difficulty": 2}\''
                               % args.env_kwargs)
    for flag, path, ext in (('--video', args.video, '.mp4'), ('--gif', args.gif, '.gif')):
        if path and not path.lower().endswith(ext):
            raise errors.UserError('%s %s: the file name must end in %s' % (flag, path, ext))
        if path and not os.access(os.path.dirname(os.path.abspath(path)), os.W_OK):
            raise errors.UserError('%s %s: cannot write in %s' % (
                flag, path, os.path.dirname(os.path.abspath(path))))
    config = read_config(args.run) if args.run else {}
    env = args.env or config.get('env')
    # The run's kwargs are its environment's: another --env starts from none of them.
    env_kwargs = dict(config.get('env_kwargs') or {}) if env == config.get('env') else {}
    env_kwargs.update(extra)
    if args.random:
        if not env:
            raise errors.UserError('--random needs --env NAME (or a run directory to take it from)')
        return 'random', env, env_kwargs, ()
    if not args.run:
        raise errors.UserError('give a run directory or checkpoint (or --random --env NAME)')
    if is_policy_dir(args.run):
        if not os.path.exists(os.path.join(args.run, POLICY_WEIGHTS)):
            raise errors.UserError('%s: an exported policy without its %s; export it again'
                                   % (args.run, POLICY_WEIGHTS))
    else:
        checkpoints.find(args.run)  # a run with nothing loadable is said now, in one line
    algo = config.get('algo')
    if algo not in ALGOS:
        raise errors.UserError('%s: config.json names algo %r; evaluate.py knows %s' % (
            args.run, algo, ', '.join(ALGOS)))
    return algo, env, env_kwargs, tuple(config.get('hidden') or (256, 256))  # scripts' default


def evaluate(args):
    """Everything the command does; returns the result printed (a dict)."""
    algo, env_name, env_kwargs, hidden = plan(args)
    env = make_env(env_name, env_kwargs, video=bool(args.video or args.gif))
    try:
        act, base = load_policy(algo, hidden, env, args.run, args.seed)
        returns, lengths, measures, frames = play(act, env, args.episodes, args.seed,
                                                  args.video, args.gif, args.fps, label=env_name)
    finally:
        env.close()
    return result(algo, base, env_name, env_kwargs, args.seed, returns, lengths, measures,
                  args.video, args.gif, frames)


def summary(outcome):
    r, n = outcome['return'], outcome['length']
    lines = ['%s on %s, %d episode%s (seeds %d-%d): return %.2f +- %.2f (min %.2f, max %.2f), '
             'length %.1f (min %d, max %d)' % (
                 outcome['checkpoint'] or 'random actions', outcome['env'], outcome['episodes'],
                 's' if outcome['episodes'] > 1 else '', outcome['seed'],
                 outcome['seed'] + outcome['episodes'] - 1, r['mean'], r['std'],
                 r['min'], r['max'], n['mean'], n['min'], n['max'])]
    words = {'mean_distance': 'distance to the target over the last half %.4f m',
             'mean_forward_distance': 'forward distance %.3f m'}
    measured = [words[key] % outcome[key] for key, _, _ in sorted(MEASURES.values())
                if key in outcome]
    if measured:
        lines[0] += ', ' + ', '.join(measured)
    for kind in ('video', 'gif'):
        if outcome[kind]:
            lines.append('%s: %s (%d frames)' % (kind, outcome[kind], outcome['frames']))
    return '\n'.join(lines)


def main(argv=None):
    args = parse_args(argv)
    errors.install_excepthook(args.verbose, program='evaluate.py')
    runconfig.setup_logging(args.verbose)  # the farm's and the train scripts' one format
    outcome = evaluate(args)
    print(json.dumps(outcome, sort_keys=True) if args.json else summary(outcome))
    return 0


if __name__ == '__main__':
    sys.exit(main())
