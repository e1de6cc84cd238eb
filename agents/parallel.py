"""The vector-stepping loop DDPG and SAC share: N environments, batched forward passes.

Against the contract in ``vecenv/contract.py``, in either of its stepping modes (``train_vec(mode=...)``;
asynchronous by default where the vectorized env has ``send``/``recv``).

Lockstep, each vector step:

1. one forward pass picks actions for all N environments (the agent's exploration: per-env noise
   for DDPG, sampling for SAC, uniform random actions during warm-up);
2. ``vec_env.step_async(actions)``; the learner then runs the gradient updates owed for these N
   env steps (``updates_per_step`` each) *while the environments step*; then ``step_wait()``;
3. N explicit transitions ``(s, a, r, s', terminated)`` go into the replay memory.

Asynchronous (ready-first), each round:

1. one forward pass picks actions for the environments in hand (those not in flight), DDPG's
   noise drawn from each one's own process (``select_actions(..., env_ids=...)``);
2. ``vec_env.send(actions, env_ids)``; the learner runs the updates owed for those env steps
   while they (and the others still in flight) simulate;
3. ``vec_env.recv()`` hands over the results of whichever environments are ready (at least the
   env's ``batch_size``); each one's transition pairs the state and action it was sent with and
   its own next state (rows are matched by env id, never by position in the batch).

Updates are owed per env step *sent* (lockstep: per step taken): over a run that equals one per
step received, and on a vectorized env that returns every result together (InProcessVecEnv) the
two modes take the same steps, updates and random draws, bit for bit.

In both modes, when an episode ended, ``s'`` is ``info['terminal_observation']`` (the vectorized
env already reset it), and only *terminated* stops bootstrapping: truncated (time limit, lost
environment) bootstraps. A lost environment contributes no transition: its step died with its
worker or farm, and the terminal observation a vectorized env reports for it is the state before
that step.

:func:`train_vec` continues where the previous call stopped when given the same vectorized env
(episodes in flight go on, nothing is reset; in asynchronous mode the environments still in
flight stay in flight between calls, their pending actions kept, and the next call receives them);
counters are the agent's Python ints. A call in lockstep after an asynchronous one first receives
and records what is in flight. :func:`evaluate_vec` stays lockstep: it resets the env anyway.

Observation statistics: every observation the loop receives (reset observations, next states,
terminal observations) goes to ``agent.observe`` (see agents/base.py: the agent's running
normalization learns from them); :func:`evaluate_vec` gives it none.

Update metrics: after every batch whose updates returned metrics (``agent.learn``: the last
update's values, named by ``agent.metrics_names``), :func:`train_vec` adds them to
``agent.update_metrics``, an :class:`UpdateMetrics` made on first use. Whoever reports them (the
session's TensorBoard log) calls its ``take()`` for the means since the last ``take``; the agents
know nothing of where they go.

Interruption: inside the main thread the first Ctrl-C only requests a stop, honoured between
batches, so the batch in hand is recorded (lockstep: the vector step in flight completes and is
recorded). A second Ctrl-C raises ``KeyboardInterrupt`` at once. Lockstep: if that happens while
the learner trains, the step in flight is still collected; if it happens inside ``step_wait``,
the step is abandoned (not counted) and the next call resets the vectorized env. Asynchronous:
while acting or learning nothing is lost (what is in flight stays there for the next call);
inside ``send`` or ``recv`` what was in flight is abandoned and the next call resets the env.
Either way ``train_vec`` returns normally with ``interrupted=True``.
"""
import logging
import signal
import threading
import time

import numpy as np

from envs.measures import episode_measures, summary as measure_summary
from vecenv.contract import end_reason, env_ids_of

log = logging.getLogger(__name__)


MODES = ('async', 'lockstep')


class _VecState(object):
    """Where the agent's episodes on one vectorized env stand between calls.

    ``obs[i]``: env i's current observation (processed), the state its next action is (or its
    pending action was) chosen for. In asynchronous mode ``actions[i]`` is env i's pending action
    while ``flying[i]``; ``resetting[i]`` marks an env whose in-flight request is the reset of
    ``async_reset`` (its result is a first observation, not a transition).
    """

    def __init__(self, env, mode, obs=None):
        n = env.num_envs
        self.env = env
        self.mode = mode
        self.obs = obs
        self.actions = None
        self.flying = np.zeros(n, dtype=bool)
        self.resetting = np.zeros(n, dtype=bool)
        self.returns = np.zeros(n)
        self.lengths = np.zeros(n, dtype=np.int64)
        self.first_observations_count = True  # see _first_observations_count


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


def _observe(agent, obs):
    """The observation statistics' hook (agents/base.py ``observe``); agents without it (a
    user's keras-rl-like agent) normalize nothing."""
    observe = getattr(agent, 'observe', None)
    if observe is not None:
        observe(obs)


def _first_observations_count(agent):
    """Whether a new vectorized env's reset observations go to the statistics: only at the start
    of a run (statistics empty). A run resumed on a new vectorized env gets there the episode
    starts that the run it continues already counted (the next states of its last steps);
    counting them twice would make it differ from a run never stopped."""
    norm = getattr(agent, 'obs_norm', None)
    return norm is None or norm.count == 0


def _env_actions(agent, actions):
    env_actions = agent.to_env_action(actions)
    if agent.processor is not None:
        env_actions = np.asarray([agent.processor.process_action(a) for a in env_actions])
    return env_actions


def _record(agent, state, actions, result, summary, env_ids=None):
    """Store one batch's transitions and advance counters and episode bookkeeping.

    ``result`` holds one row per env of ``env_ids`` (every env, in order, when None: a lockstep
    step), ``actions`` the actions they took. Only numpy work and counters, so that the agent's
    state is consistent again within microseconds; returns the events of the episodes that
    ended, for the callback.
    """
    next_obs, rewards, terminated, truncated, infos = result
    ids = np.arange(len(rewards)) if env_ids is None else np.asarray(env_ids, dtype=np.int64)
    rewards = np.asarray(rewards, dtype=np.float64)
    terminated = np.asarray(terminated, dtype=bool)
    ended = terminated | np.asarray(truncated, dtype=bool)
    next_obs = _process_obs(agent, next_obs)
    final_obs = next_obs.copy()
    valid = np.ones(len(rewards), dtype=bool)
    for k in np.flatnonzero(ended):
        last = infos[k].get('terminal_observation')
        if last is None or 'lost' in infos[k]:
            valid[k] = False
        else:
            final_obs[k] = _process_obs(agent, np.asarray(last)[None])[0]
    # the normalization statistics learn from every observation received: next states (reset
    # ones included) and the terminal observations of the episodes that ended
    _observe(agent, np.concatenate([next_obs, final_obs[ended & valid]]))
    stored_rewards = rewards
    if agent.processor is not None:
        stored_rewards = np.asarray([agent.processor.process_reward(r) for r in rewards])
    # each transition's s and s' are its own environment's: rows are matched by env id
    agent.memory.append_batch(state.obs[ids][valid], actions[valid], stored_rewards[valid],
                              final_obs[valid], terminated[valid])
    n = len(rewards)
    agent.global_step += n
    summary['steps'] += n
    state.returns[ids] += rewards
    state.lengths[ids] += 1
    state.obs[ids] = next_obs
    events = []
    for k in np.flatnonzero(ended):
        i = int(ids[k])
        agent.episodes += 1
        summary['episodes'] += 1
        event = {'env': i, 'episode': agent.episodes, 'return': float(state.returns[i]),
                 'length': int(state.lengths[i]), 'global_step': agent.global_step,
                 'terminated': bool(terminated[k]), 'lost': 'lost' in infos[k],
                 'end': end_reason(bool(terminated[k]), infos[k])}
        summary['returns'].append(event['return'])
        summary['lengths'].append(event['length'])
        state.returns[i] = 0.0
        state.lengths[i] = 0
        events.append(event)
    if ended.any():
        agent.reset_noise(ids[ended])
    return events


def _record_received(agent, state, received, summary):
    """Take in one ``recv`` batch: first observations of resets, transitions of steps."""
    obs, rewards, terminated, truncated, infos = received
    env_ids = env_ids_of(infos)
    if len(env_ids) == 0:
        return []
    first = state.resetting[env_ids]
    if first.any():
        ids = env_ids[first]
        fresh = _process_obs(agent, np.asarray(obs)[first])
        if state.obs is None:  # the first results of all: now the shape is known
            state.obs = np.zeros((state.env.num_envs,) + fresh.shape[1:], dtype=np.float32)
        state.obs[ids] = fresh
        if state.first_observations_count:
            _observe(agent, fresh)
        state.returns[ids] = 0.0
        state.lengths[ids] = 0
        state.resetting[ids] = False
    stepped = ~first
    events = []
    if stepped.any():
        ids = env_ids[stepped]
        rows = (np.asarray(obs)[stepped], np.asarray(rewards)[stepped],
                np.asarray(terminated)[stepped], np.asarray(truncated)[stepped],
                [info for info, s in zip(infos, stepped) if s])
        events = _record(agent, state, state.actions[ids], rows, summary, env_ids=ids)
    state.flying[env_ids] = False
    return events


def _notify(callback, events):
    if callback is not None:
        for event in events:
            callback(event)


def _choose_mode(vec_env, mode):
    has_async = hasattr(vec_env, 'send') and hasattr(vec_env, 'recv')
    if mode is None:
        return 'async' if has_async else 'lockstep'
    if mode not in MODES:
        raise ValueError('mode must be one of %s, got %r' % (', '.join(MODES), mode))
    if mode == 'async' and not has_async:
        raise ValueError('%s has no asynchronous mode (send/recv): use mode=\'lockstep\''
                         % type(vec_env).__name__)
    return mode


def train_vec(agent, vec_env, nb_episodes=None, nb_steps=None, callback=None, stop=None,
              seed=None, log_interval=None, mode=None):
    """Train until ``nb_episodes`` more episodes end and/or ``nb_steps`` more env steps are done.

    Whichever limit is reached first ends the call, after the batch (a lockstep vector step, or
    an asynchronous ``recv``) that reached it. ``mode``: ``'async'`` or ``'lockstep'`` (see the
    module docstring); by default asynchronous where the vectorized env has ``send``/``recv``.
    ``callback(event)`` is called for every episode that ends, with a plain dict (``env``,
    ``episode``, ``return``, ``length``, ``global_step``, ``terminated``, ``lost``, ``end``: one
    of vecenv.END_REASONS). ``stop``: a ``threading.Event`` or a callable, checked between
    batches. ``seed`` seeds the reset of a vectorized env that is not being continued. Returns
    a plain dict: ``steps``, ``episodes``, ``returns``, ``lengths`` (all of this call),
    ``interrupted``, ``abandoned_step``, ``seconds``, ``mode`` and ``counters`` (the agent's
    totals).
    """
    if nb_episodes is None and nb_steps is None:
        raise ValueError('give nb_episodes and/or nb_steps')
    if not agent.compiled:
        raise RuntimeError('compile() the agent before training it')
    mode = _choose_mode(vec_env, mode)
    agent.training = True
    summary = {'steps': 0, 'episodes': 0, 'returns': [], 'lengths': [], 'interrupted': False,
               'abandoned_step': False, 'mode': mode}
    started = time.time()
    limits = (nb_episodes, nb_steps, log_interval)
    with _SigintToStop() as sigint:
        state = agent._vec_state
        if state is not None and state.env is not vec_env:
            state = None
        if mode == 'lockstep':
            _lockstep(agent, vec_env, state, seed, summary, limits, callback, stop, sigint,
                      started)
        else:
            _asynchronous(agent, vec_env, state, seed, summary, limits, callback, stop, sigint,
                          started)
    summary['seconds'] = time.time() - started
    summary['counters'] = agent.counters()
    if summary['interrupted']:
        log.info('training interrupted after %d env steps, %d episodes',
                 summary['steps'], summary['episodes'])
    return summary


def _finished(summary, limits):
    nb_episodes, nb_steps, _ = limits
    return ((nb_episodes is not None and summary['episodes'] >= nb_episodes)
            or (nb_steps is not None and summary['steps'] >= nb_steps))


class _Logger(object):
    def __init__(self, log_interval, started):
        self.interval, self.next, self.started = log_interval, log_interval, started

    def __call__(self, agent, summary):
        if self.next is not None and summary['steps'] >= self.next:
            self.next += self.interval
            _log_progress(agent, summary, self.started)


def _lockstep(agent, vec_env, state, seed, summary, limits, callback, stop, sigint, started):
    """N environments, one step each per vector step (see the module docstring)."""
    if state is not None and state.mode == 'async':
        # continued from the asynchronous mode: take in what is in flight, then go on in lockstep
        if not _drain(agent, vec_env, state, summary, callback):
            return
        state.mode = 'lockstep'
    if state is None:
        state = _VecState(vec_env, 'lockstep', _process_obs(agent, vec_env.reset(seed=seed)))
        if _first_observations_count(agent):
            _observe(agent, state.obs)
        agent.reset_noise(None)
        agent._vec_state = state
    progress = _Logger(limits[2], started)
    phase = None  # None, 'learning' (actions sent) or 'waiting' (step_wait and recording)
    actions = None
    try:
        while not _finished(summary, limits):
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
            progress(agent, summary)
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
            _abandon(agent, summary, 'step_wait')
    except Exception:
        if phase is not None:  # the vectorized env's state is unknown now
            agent._vec_state = None
        raise


def _abandon(agent, summary, where):
    summary['abandoned_step'] = True
    agent._vec_state = None
    log.warning('interrupted inside %s: what was in flight is abandoned; the next call resets '
                'the vectorized env', where)


def _drain(agent, vec_env, state, summary, callback):
    """Receive and record every environment in flight (a switch to lockstep). False when a
    Ctrl-C abandoned it (the state is dropped then)."""
    try:
        while state.flying.any():
            _notify(callback, _record_received(agent, state, vec_env.recv(), summary))
    except KeyboardInterrupt:
        summary['interrupted'] = True
        _abandon(agent, summary, 'recv')
        return False
    except Exception:
        agent._vec_state = None
        raise
    return True


def _asynchronous(agent, vec_env, state, seed, summary, limits, callback, stop, sigint,
                  started):
    """Ready-first stepping (see the module docstring): act for the environments that are not
    in flight, send, learn while they simulate, receive whichever are ready."""
    if state is None:
        if vec_env.in_flight:
            # an abandoned call left environments in flight: reset() discards their results
            vec_env.reset()
        state = _VecState(vec_env, 'async')
        state.first_observations_count = _first_observations_count(agent)
        vec_env.async_reset(seed=seed)
        state.flying[:] = True
        state.resetting[:] = True
        agent.reset_noise(None)
        agent._vec_state = state
    state.mode = 'async'
    if state.actions is None:
        state.actions = np.zeros((vec_env.num_envs, agent.nb_actions), dtype=np.float32)
    progress = _Logger(limits[2], started)
    # phase: None, 'acting' (nothing sent yet), 'sending' (unknown which were sent), 'learning'
    # (the sent ones are in flight), 'waiting' (inside recv, and recording its results)
    phase = None
    try:
        while not _finished(summary, limits):
            if sigint.requested or _stop_requested(stop):
                summary['interrupted'] = True
                break
            idle = np.flatnonzero(~state.flying)
            if len(idle):
                phase = 'acting'
                # one forward pass for the environments in hand (their own noise, for DDPG)
                actions = agent.select_actions(agent.state_batch(state.obs[idle]), explore=True,
                                               env_ids=idle)
                phase = 'sending'
                vec_env.send(_env_actions(agent, actions), idle)
                state.actions[idle] = actions
                state.flying[idle] = True
                phase = 'learning'
                # the updates owed for the env steps just sent, while they simulate (as
                # lockstep does for its vector step; see the module docstring)
                _note_metrics(agent, agent.learn(len(idle)))
            phase = 'waiting'
            events = _record_received(agent, state, vec_env.recv(), summary)
            phase = None
            _notify(callback, events)  # after recording: the agent is consistent again
            progress(agent, summary)
    except KeyboardInterrupt:
        # A second Ctrl-C. Before the send and while learning, the state is whole: what is in
        # flight stays there for the next call to receive. Inside send or recv, results may be
        # gone with the interrupted call: abandon.
        summary['interrupted'] = True
        if phase in ('sending', 'waiting'):
            _abandon(agent, summary, 'send' if phase == 'sending' else 'recv')
    except Exception:
        if phase in ('sending', 'waiting'):  # the vectorized env's state is unknown now
            agent._vec_state = None
        raise


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
    ``mean_return``, ``std_return``, ``returns`` and ``lengths``, and where the environments
    report a task measure in ``info['task']`` (osim-rl's, envs/measures.py) its mean and
    per-episode figures (``mean_distance`` and ``distances``, ...).
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
    readings = [[] for _ in range(n)]
    measures = []
    was_training = agent.training
    agent.training = False
    try:
        obs = _process_obs(agent, vec_env.reset(seed=seed))
        while (done < wanted).any():
            actions = agent.select_actions(agent.state_batch(obs), explore=False)
            obs, rewards, terminated, truncated, infos = vec_env.step(
                _env_actions(agent, actions))
            obs = _process_obs(agent, obs)
            running += rewards
            lengths_running += 1
            for i in range(n):
                readings[i].append((infos[i] or {}).get('task'))
            for i in np.flatnonzero(np.asarray(terminated) | np.asarray(truncated)):
                if done[i] < wanted[i]:
                    returns.append(float(running[i]))
                    lengths.append(int(lengths_running[i]))
                    measures.append(episode_measures(readings[i]))
                    done[i] += 1
                running[i] = 0.0
                lengths_running[i] = 0
                readings[i] = []
    finally:
        agent.training = was_training
    out = {'mean_return': float(np.mean(returns)), 'std_return': float(np.std(returns)),
           'returns': returns, 'lengths': lengths}
    out.update(measure_summary(measures))
    return out
