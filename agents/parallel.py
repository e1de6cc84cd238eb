"""The vector-stepping loop DDPG and SAC share: N environments, one batched forward pass per step.

Against the contract in ``vecenv.py``. Each vector step:

1. one forward pass picks actions for all N environments (the agent's exploration: per-env noise
   for DDPG, sampling for SAC, uniform random actions during warm-up);
2. ``vec_env.step_async(actions)``; the learner then runs the gradient updates owed for these N
   env steps (``updates_per_step`` each) *while the environments step*; then ``step_wait()``;
3. N explicit transitions ``(s, a, r, s', terminated)`` go into the replay memory. When an episode
   ended, ``s'`` is ``info['terminal_observation']`` (the vectorized env already reset it), and
   only *terminated* stops bootstrapping: truncated (time limit, lost environment) bootstraps.
   A lost environment contributes no transition: its step died with its worker or farm, and the
   terminal observation a vectorized env reports for it is the state before that step.

:func:`train_vec` continues where the previous call stopped when given the same vectorized env
(episodes in flight go on, nothing is reset); counters are the agent's Python ints.

Update metrics: after every vector step whose updates returned metrics (``agent.learn``: the
last update's values, named by ``agent.metrics_names``), :func:`train_vec` adds them to
``agent.update_metrics``, an :class:`UpdateMetrics` made on first use. Whoever reports them (the
session's TensorBoard log) calls its ``take()`` for the means since the last ``take``; the agents
know nothing of where they go.

Interruption: inside the main thread the first Ctrl-C only requests a stop, honoured between vector
steps, so the step in flight completes and is recorded. A second Ctrl-C raises
``KeyboardInterrupt`` at once: if that happens while the learner trains, the step in flight is
still collected; if it happens inside ``step_wait``, the step is abandoned (not counted) and the
next call resets the vectorized env. Either way ``train_vec`` returns normally with
``interrupted=True``.
"""
import logging
import signal
import threading
import time

import numpy as np

from vecenv import end_reason

log = logging.getLogger(__name__)


class _VecState(object):
    """Where the agent's episodes on one vectorized env stand between calls."""

    def __init__(self, env, obs):
        self.env = env
        self.obs = obs
        self.returns = np.zeros(env.num_envs)
        self.lengths = np.zeros(env.num_envs, dtype=np.int64)


class _SigintToStop(object):
    """First Ctrl-C: ``requested = True``. Second: ``KeyboardInterrupt`` as usual."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        log.warning('Ctrl-C: stopping after the current vector step (again to stop at once)')

    def __enter__(self):
        # signal handlers can only be installed from the main thread; elsewhere Ctrl-C is not
        # delivered to us anyway.
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


class UpdateMetrics(object):
    """Running sums of the agent's update metrics, by name, until the next :meth:`take`."""

    def __init__(self):
        self._sums = {}
        self._counts = {}

    def add(self, names, values):
        for name, value in zip(names, values):
            value = float(value)
            if value == value:  # keras-rl reports NaN for "no update": not a value
                self._sums[name] = self._sums.get(name, 0.0) + value
                self._counts[name] = self._counts.get(name, 0) + 1

    def take(self):
        """``{name: mean since the last take}`` (empty when no update reported any), and start
        over."""
        means = dict((name, self._sums[name] / self._counts[name]) for name in self._sums)
        self._sums, self._counts = {}, {}
        return means


def _note_metrics(agent, metrics):
    if metrics is None:
        return
    collected = getattr(agent, 'update_metrics', None)
    if collected is None:
        collected = agent.update_metrics = UpdateMetrics()
    collected.add(agent.metrics_names, metrics)


def _stop_requested(stop):
    if stop is None:
        return False
    if hasattr(stop, 'is_set'):
        return stop.is_set()
    return bool(stop())


def _process_obs(agent, obs):
    obs = np.asarray(obs, dtype=np.float32)
    if agent.processor is None:
        return obs
    return np.asarray([agent.processor.process_observation(o) for o in obs], dtype=np.float32)


def _env_actions(agent, actions):
    env_actions = agent.to_env_action(actions)
    if agent.processor is not None:
        env_actions = np.asarray([agent.processor.process_action(a) for a in env_actions])
    return env_actions


def _record(agent, state, actions, result, summary):
    """Store one vector step's transitions and advance counters and episode bookkeeping.

    Only numpy work and counters, so that the agent's state is consistent again within
    microseconds; returns the events of the episodes that ended, for the callback.
    """
    next_obs, rewards, terminated, truncated, infos = result
    rewards = np.asarray(rewards, dtype=np.float64)
    terminated = np.asarray(terminated, dtype=bool)
    ended = terminated | np.asarray(truncated, dtype=bool)
    next_obs = _process_obs(agent, next_obs)
    final_obs = next_obs.copy()
    valid = np.ones(len(rewards), dtype=bool)
    for i in np.flatnonzero(ended):
        last = infos[i].get('terminal_observation')
        if last is None or 'lost' in infos[i]:
            valid[i] = False
        else:
            final_obs[i] = _process_obs(agent, np.asarray(last)[None])[0]
    stored_rewards = rewards
    if agent.processor is not None:
        stored_rewards = np.asarray([agent.processor.process_reward(r) for r in rewards])
    agent.memory.append_batch(state.obs[valid], actions[valid], stored_rewards[valid],
                              final_obs[valid], terminated[valid])
    n = len(rewards)
    agent.global_step += n
    summary['steps'] += n
    state.returns += rewards
    state.lengths += 1
    state.obs = next_obs
    events = []
    for i in np.flatnonzero(ended):
        agent.episodes += 1
        summary['episodes'] += 1
        event = {'env': int(i), 'episode': agent.episodes, 'return': float(state.returns[i]),
                 'length': int(state.lengths[i]), 'global_step': agent.global_step,
                 'terminated': bool(terminated[i]), 'lost': 'lost' in infos[i],
                 'end': end_reason(bool(terminated[i]), infos[i])}
        summary['returns'].append(event['return'])
        summary['lengths'].append(event['length'])
        state.returns[i] = 0.0
        state.lengths[i] = 0
        events.append(event)
    if ended.any():
        agent.reset_noise(np.flatnonzero(ended))
    return events


def _notify(callback, events):
    if callback is not None:
        for event in events:
            callback(event)


def train_vec(agent, vec_env, nb_episodes=None, nb_steps=None, callback=None, stop=None,
              seed=None, log_interval=None):
    """Train until ``nb_episodes`` more episodes end and/or ``nb_steps`` more env steps are done.

    Whichever limit is reached first ends the call, after the vector step that reached it.
    ``callback(event)`` is called for every episode that ends, with a plain dict (``env``,
    ``episode``, ``return``, ``length``, ``global_step``, ``terminated``, ``lost``, ``end``: one
    of vecenv.END_REASONS). ``stop``:
    a ``threading.Event`` or a callable, checked between vector steps. ``seed`` seeds the reset
    of a vectorized env that is not being continued. Returns a plain dict: ``steps``,
    ``episodes``, ``returns``, ``lengths`` (all of this call), ``interrupted``,
    ``abandoned_step``, ``seconds`` and ``counters`` (the agent's totals).
    """
    if nb_episodes is None and nb_steps is None:
        raise ValueError('give nb_episodes and/or nb_steps')
    if not agent.compiled:
        raise RuntimeError('compile() the agent before training it')
    state = agent._vec_state
    if state is None or state.env is not vec_env:
        state = _VecState(vec_env, _process_obs(agent, vec_env.reset(seed=seed)))
        agent.reset_noise(None)
        agent._vec_state = state
    agent.training = True
    summary = {'steps': 0, 'episodes': 0, 'returns': [], 'lengths': [], 'interrupted': False,
               'abandoned_step': False}
    started = time.time()
    next_log = log_interval

    def finished():
        return ((nb_episodes is not None and summary['episodes'] >= nb_episodes)
                or (nb_steps is not None and summary['steps'] >= nb_steps))

    phase = None  # None, 'learning' (actions sent) or 'waiting' (step_wait and recording)
    actions = None
    with _SigintToStop() as sigint:
        try:
            while not finished():
                if sigint.requested or _stop_requested(stop):
                    summary['interrupted'] = True
                    break
                actions = agent.select_actions(agent.state_batch(state.obs), explore=True)
                vec_env.step_async(_env_actions(agent, actions))
                phase = 'learning'
                # the learner trains while the environments step
                _note_metrics(agent, agent.learn(vec_env.num_envs))
                phase = 'waiting'
                events = _record(agent, state, actions, vec_env.step_wait(), summary)
                phase = None
                _notify(callback, events)  # after _record: the agent is consistent again
                if next_log is not None and summary['steps'] >= next_log:
                    next_log += log_interval
                    _log_progress(agent, summary, started)
        except KeyboardInterrupt:
            summary['interrupted'] = True
            if phase == 'learning':
                phase = 'waiting'
                try:  # the environments are stepping: collect that step so nothing is lost
                    events = _record(agent, state, actions, vec_env.step_wait(), summary)
                    phase = None
                    _notify(callback, events)
                except KeyboardInterrupt:
                    pass
            if phase == 'waiting':  # interrupted inside step_wait (or recording its result)
                summary['abandoned_step'] = True
                agent._vec_state = None
                log.warning('interrupted inside step_wait: that step is abandoned; the next '
                            'call resets the vectorized env')
        except Exception:
            if phase is not None:  # the vectorized env's state is unknown now
                agent._vec_state = None
            raise
    summary['seconds'] = time.time() - started
    summary['counters'] = agent.counters()
    if summary['interrupted']:
        log.info('training interrupted after %d env steps, %d episodes',
                 summary['steps'], summary['episodes'])
    return summary


def _log_progress(agent, summary, started):
    recent = summary['returns'][-20:]
    log.info('step %d (+%d), episodes %d, updates %d, mean return (last %d) %s, %.0f steps/s',
             agent.global_step, summary['steps'], agent.episodes, agent.updates, len(recent),
             '%.1f' % np.mean(recent) if recent else '-',
             summary['steps'] / max(time.time() - started, 1e-9))


def evaluate_vec(agent, vec_env, nb_episodes=10, seed=None):
    """Run ``nb_episodes`` episodes with deterministic actions; no learning, counters unchanged.

    Episodes are spread evenly over the environments (each env contributes its first episodes
    only, so short episodes are not over-represented). Resets ``vec_env``. Returns a dict with
    ``mean_return``, ``std_return``, ``returns`` and ``lengths``.
    """
    if agent._vec_state is not None and agent._vec_state.env is vec_env:
        agent._vec_state = None  # we are about to reset the env training was continuing on
    n = vec_env.num_envs
    base, extra = divmod(int(nb_episodes), n)
    wanted = np.array([base + (1 if i < extra else 0) for i in range(n)])
    done = np.zeros(n, dtype=int)
    running = np.zeros(n)
    lengths_running = np.zeros(n, dtype=int)
    returns, lengths = [], []
    was_training = agent.training
    agent.training = False
    try:
        obs = _process_obs(agent, vec_env.reset(seed=seed))
        while (done < wanted).any():
            actions = agent.select_actions(agent.state_batch(obs), explore=False)
            obs, rewards, terminated, truncated, _ = vec_env.step(_env_actions(agent, actions))
            obs = _process_obs(agent, obs)
            running += rewards
            lengths_running += 1
            for i in np.flatnonzero(np.asarray(terminated) | np.asarray(truncated)):
                if done[i] < wanted[i]:
                    returns.append(float(running[i]))
                    lengths.append(int(lengths_running[i]))
                    done[i] += 1
                running[i] = 0.0
                lengths_running[i] = 0
    finally:
        agent.training = was_training
    return {'mean_return': float(np.mean(returns)), 'std_return': float(np.std(returns)),
            'returns': returns, 'lengths': lengths}
