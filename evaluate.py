#!/usr/bin/env python
"""evaluate.py: a trained policy's deterministic episodes, their returns, and a video of them.

    python evaluate.py runs/sac-Arm2DEnv-20261129-120000 --episodes 5 --seed 0
    python evaluate.py RUN --episodes 1 --video arm.mp4 --gif arm.gif     # no display needed
    python evaluate.py RUN --json                                         # one JSON object
    python evaluate.py RUN --env Arm2DEnv --env-kwargs '{"integrator_accuracy": 1e-3}'
    python evaluate.py --random --env L2M2019Env --video l2m.mp4          # a baseline: no policy

RUN is a run directory of train_sac.py / train_ddpg.py (its newest whole checkpoint), one
checkpoint inside it, or an exported policy (:func:`export_policy`, ``bench/learn.py --export``:
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
import glob
import json
import logging
import os
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')  # plumbing: TensorFlow's C++ start-up chatter

import numpy as np  # noqa: E402

from run import checkpoints  # noqa: E402  (no TensorFlow: mistakes are found before it starts)
from common import errors  # noqa: E402
from run import config as runconfig  # noqa: E402
from envs.measures import MEASURES, episode_measures  # noqa: E402,F401  (bench/learn.py's too)

log = logging.getLogger('evaluate')
ALGOS = ('sac', 'ddpg')


def parse_args(argv=None):
    # runconfig's parser: a bad flag is one line, as in the train scripts
    parser = runconfig._Parser(prog='evaluate.py', description=__doc__.split('\n')[0])
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


def read_config(path):
    """The newest config*.json of the run ``path`` belongs to (a resumed run writes one per
    session; the newest matches its newest checkpoint)."""
    run_dir = checkpoints.run_dir_of(path) if os.path.exists(path) else None
    if run_dir is None and os.path.isdir(path) and os.path.exists(os.path.join(path,
                                                                               'config.json')):
        run_dir = path
    found = glob.glob(os.path.join(glob.escape(run_dir), 'config*.json')) if run_dir else []
    if not found:
        raise errors.UserError('%s: no run directory with a config.json there; give a run '
                               'directory of train_sac.py or train_ddpg.py' % path)
    newest = max(found, key=os.path.getmtime)
    try:
        with open(newest) as f:
            config = json.load(f)
        if not isinstance(config, dict) or 'env' not in config:
            raise ValueError('no "env" entry')
    except (ValueError, OSError) as e:
        raise errors.UserError('%s: unreadable (%s); give another run' % (newest, e))
    return config


# --- exported policies ---------------------------------------------------------------------------
POLICY_WEIGHTS = 'actor.h5'  # agents.base.OffPolicyAgent.POLICY_FILE


def is_policy_dir(path):
    """Whether ``path`` is a folder written by :func:`export_policy` (its config says so)."""
    config = os.path.join(path, 'config.json')
    if not (os.path.isdir(path) and os.path.exists(config)):
        return False
    try:
        with open(config) as f:
            return json.load(f).get('format') == 'policy'
    except (ValueError, OSError, AttributeError):
        return False


def export_policy(agent, folder, algo, env, env_kwargs, hidden, **extra):
    """Write ``agent``'s policy to ``folder``: the acting network's weights, the observation
    statistics when it normalizes (agents.base ``save_policy``) and ``config.json`` (``format``
    'policy', ``algo``, ``env``, ``env_kwargs``, ``hidden``, the agent's ``normalize_obs``,
    ``reward_scale``, ``reward_offset``, ``reward_root``, and ``extra``: how it was trained, for
    people). Returns the files written."""
    written = agent.save_policy(folder)
    config = dict(extra, format='policy', algo=algo, env=env, env_kwargs=dict(env_kwargs),
                  hidden=list(hidden), normalize_obs=bool(agent.normalize_obs),
                  reward_scale=agent.reward_scale, reward_offset=agent.reward_offset,
                  reward_root=agent.reward_root, counters=agent.counters())
    path = os.path.join(folder, 'config.json')
    with open(path, 'w') as f:
        json.dump(config, f, indent=1, sort_keys=True)
    return written + [path]


# --- the policy and the environment --------------------------------------------------------------
def make_env(name, kwargs, video):
    """One environment, in this process; with ``video``, built so that it can be pictured."""
    import envs
    from run import render
    if video:
        kwargs = render.video_kwargs(name, kwargs)
    try:
        return envs.make(name, **kwargs)
    except envs.EnvError as e:
        raise errors.UserError('--env %s: %s' % (name, e))


def load_policy(algo, hidden, env, path, seed=0):
    """``act(obs) -> action`` (the environment's bounds) and the checkpoint loaded, or None."""
    from vecenv import contract
    observation_space = contract.make_space(env.observation_space)
    action_space = contract.make_space(env.action_space)
    if algo == 'random':
        rng = np.random.RandomState(seed)  # its own stream: the env's seeding swaps the globals
        return (lambda obs: rng.uniform(action_space.low, action_space.high)), None
    from agents.compat import tf  # plumbing: before any other TensorFlow import
    if algo == 'sac':
        from agents.sac import SAC as Agent
    else:
        from agents.ddpg import DDPG as Agent
    tf.random.set_seed(seed)
    # memory_limit=1: evaluation stores no transition (the default reserves a million)
    agent = Agent.from_spaces(observation_space, action_space, hidden=hidden, memory_limit=1)
    agent.compile()
    # The weights are all acting needs: not checkpoints.load, which also restores the optimizers
    # and the replay memory (gigabytes, for a long run).
    exported = is_policy_dir(path)
    base = path if exported else checkpoints.find(path)
    try:
        if exported:
            agent.load_policy(path)
        else:
            agent.load_weights(base)
    except Exception as e:  # weights of other sizes: --env with other spaces, another run
        raise errors.UserError('%s: cannot load into a %s of hidden sizes %s for %s (%s)' % (
            _where(base), algo.upper(), ','.join(str(h) for h in hidden),
            env.name, ' '.join(str(e).split())[:200]))
    return policy_of(agent), base


def _where(base):
    """What a loaded policy is called: an exported policy's folder, a checkpoint's location."""
    return base if is_policy_dir(base) else checkpoints.location(base)


def policy_of(agent):
    """``act(obs) -> action``: a built agent's deterministic action, in the environment's
    bounds (SAC: tanh of the policy's mean; DDPG: the actor without noise)."""
    def act(obs):
        normalized = agent.select_actions(agent.state_batch(np.asarray(obs)[None]), explore=False)
        return agent.to_env_action(normalized)[0]
    return act


def run_episodes(act, env, episodes, seed, writer=None, renderer=None, label=''):
    """``episodes`` episodes of ``act`` on ``env``, episode k reset with ``seed + k``; every
    state (the first included) appended to ``writer`` as a frame when one is given. Returns
    ``(returns, lengths, measures)``, ``measures`` one dict per episode (:func:`episode_measures`;
    empty for environments without a task measure)."""
    returns, lengths, measures = [], [], []
    for k in range(episodes):
        obs, total, steps, done = env.reset(seed + k), 0.0, 0, False
        readings = []
        while True:
            if writer is not None:
                writer.append(renderer.frame('%s episode %d/%d  step %d  return %.1f' % (
                    label, k + 1, episodes, steps, total)))
            if done:
                break
            obs, reward, terminated, truncated, info = env.step(
                [float(a) for a in np.asarray(act(obs)).ravel()])
            total += reward
            steps += 1
            done = terminated or truncated
            readings.append((info or {}).get('task'))
        returns.append(total)
        lengths.append(steps)
        measures.append(episode_measures(readings))
        log.info('episode %d: return %.2f, %d steps%s', k + 1, total, steps, ''.join(
            ', %s %.4f' % item for item in sorted(measures[-1].items())))
    return returns, lengths, measures


def stats(values):
    values = np.asarray(values, dtype=float)
    return {'mean': float(values.mean()), 'std': float(values.std()),
            'min': float(values.min()), 'max': float(values.max())}


def play(act, env, episodes, seed, mp4=None, gif=None, fps=30.0, label=''):
    """:func:`run_episodes`, filmed to ``mp4`` and/or ``gif`` when given; returns ``(returns,
    lengths, measures, frames)``."""
    writer = renderer = None
    if mp4 or gif:
        from run import render
        try:
            renderer = render.Renderer(env)
        except render.RenderError as e:
            raise errors.UserError('no video: %s' % e)
        writer = render.VideoWriter(mp4 or None, gif or None, fps=fps)
    try:
        returns, lengths, measures = run_episodes(act, env, episodes, seed, writer, renderer,
                                                  label)
    finally:
        if writer is not None:
            writer.close()
    return returns, lengths, measures, writer.frames if writer is not None else 0


def result(policy, base, env_name, env_kwargs, seed, returns, lengths, measures, mp4, gif,
           frames):
    """What the command prints (with ``--json``, as it is): the statistics both nested
    (``return``, ``length``) and flat (``mean_return`` ... ``max_length``), the task measures'
    means and per-episode values where the environment has them."""
    out = {'policy': policy, 'checkpoint': base and _where(base),
           'env': env_name, 'env_kwargs': env_kwargs, 'episodes': len(returns), 'seed': seed,
           'deterministic': policy != 'random', 'return': stats(returns),
           'length': stats(lengths), 'returns': returns, 'lengths': lengths,
           'video': mp4 or None, 'gif': gif or None, 'frames': frames}
    for what in ('return', 'length'):
        for stat, value in out[what].items():
            out['%s_%s' % (stat, what)] = value
    for name, (mean_key, list_key, _) in MEASURES.items():
        values = [m.get(name) for m in measures]
        if any(v is not None for v in values):
            known = [v for v in values if v is not None]
            out[mean_key] = float(np.mean(known))
            out[list_key] = values  # None for an episode that gave no reading (it diverged)
    return out


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


def record(agent, env_name, env_kwargs, path, episodes=1, seed=0, fps=30.0):
    """For a ``video`` verb at the train scripts' prompt: ``episodes`` deterministic episodes of
    the agent being trained, on an environment of its own in this process (the farms' are left
    alone), filmed to ``path`` (``.mp4`` or ``.gif``). Returns what :func:`evaluate` does."""
    if not str(path).lower().endswith(('.mp4', '.gif')):
        raise errors.UserError('video(%r): the file name must end in .mp4 or .gif' % (path,))
    mp4, gif = (path, None) if str(path).lower().endswith('.mp4') else (None, path)
    env = make_env(env_name, env_kwargs, video=True)
    try:
        returns, lengths, measures, frames = play(policy_of(agent), env, episodes, seed, mp4,
                                                  gif, fps, label=env_name)
    finally:
        env.close()
    return result(type(agent).__name__.lower(), None, env_name, env_kwargs, seed, returns,
                  lengths, measures, mp4, gif, frames)


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
