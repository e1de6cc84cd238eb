"""run/evaluation.py: the library behind evaluate.py: a policy loaded from a run, an exported policy
or an agent being trained, played for deterministic episodes on an environment built in this
process, with their returns, lengths, task measures and a video.

- :func:`read_config`, :func:`is_policy_dir`, :func:`load_policy`: what a run or an exported
  policy holds, and the agent built as the train script builds it with its weights loaded
  (acting needs no replay memory nor optimizer state);
- :func:`export_policy`: the few hundred KB acting needs (``config.json``, ``actor.h5``,
  ``obs_norm.npz``);
- :func:`make_env`, :func:`run_episodes`, :func:`play`: episodes (episode k reset with seed
  S + k, deterministic actions), filmed where asked (run/render.py);
- :func:`result`: what evaluate.py prints; :func:`record`: the train scripts' ``video`` verb.

The command's flags and output are evaluate.py's docstring. TensorFlow is imported only where an
agent is built (:func:`load_policy`), so a mistake in a command is found before it starts.
"""
import glob
import json
import logging
import os

import numpy as np

from common import errors
from envs.measures import MEASURES, episode_measures
from run import checkpoints

log = logging.getLogger('evaluate')
ALGOS = ('sac', 'ddpg')


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
