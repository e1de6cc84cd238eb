"""What the vector-stepping loops record: where the episodes stand, transitions, update metrics.

- :class:`VecEpisodes`: where an agent's episodes on one vectorized env stand between calls
  (current observations, pending actions, what is in flight, returns and lengths so far). The
  agent's :class:`agents.parallel.VecTrainer` holds the one it continues; the loops of
  :mod:`agents.stepping` advance it.
- :func:`record` / :func:`record_received`: one batch of results (a lockstep vector step, or an
  asynchronous ``recv``) into the replay memory, the agent's counters and the episodes'
  bookkeeping; they return the events of the episodes that ended (plain dicts, for the callback).
- :func:`process_obs`, :func:`env_actions`, :func:`observe`, :func:`first_observations_count`:
  the agent's keras-rl processor and observation statistics, applied to batches.
- :class:`UpdateMetrics` and :func:`note_metrics`: the update metrics a run reports.

Transitions: rows are matched to environments by env id, never by position in the batch. When an
episode ended, ``s'`` is ``info['terminal_observation']`` (the vectorized env already reset it),
and only *terminated* stops bootstrapping: truncated (time limit, lost environment) bootstraps. A
lost environment contributes no transition: its step died with its worker or farm, and the
terminal observation a vectorized env reports for it is the state before that step.

Observation statistics: every observation the loops receive (reset observations, next states,
terminal observations) goes to ``agent.observe`` (agents/base.py: the agent's running
normalization learns from them); evaluation gives it none.

Only the agent's public interface is used (``processor``, ``memory``, ``global_step``,
``episodes``, ``reset_noise``, ``to_env_action``, ``observe``, ``obs_norm``, ``metrics_names``,
``update_metrics``). Imports numpy and ``vecenv.contract`` only.
"""
import numpy as np

from vecenv.contract import end_reason, env_ids_of


class VecEpisodes(object):
    """Where an agent's episodes on one vectorized env stand between calls.

    ``env``: the vectorized env; ``mode``: the stepping mode that last advanced them. ``obs[i]``:
    env i's current observation (processed), the state its next action is (or its pending
    action was) chosen for. In asynchronous mode ``actions[i]`` is env i's pending action while
    ``flying[i]``; ``resetting[i]`` marks an env whose in-flight request is the reset of
    ``async_reset`` (its result is a first observation, not a transition). ``returns`` and
    ``lengths``: each env's episode so far. ``stale``: set when the env's own state is no longer
    known (a call abandoned or failed inside ``step_wait``, ``send`` or ``recv``): these episodes
    cannot be continued, and the trainer drops them (the next call resets the env).
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
        self.first_observations_count = True  # see first_observations_count
        self.stale = False


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


def note_metrics(agent, metrics):
    """Add one batch's update metrics (``agent.learn``'s, or None) to ``agent.update_metrics``,
    an :class:`UpdateMetrics` made on first use. Whoever reports them (the session's TensorBoard
    log) calls its ``take()``; the agents know nothing of where they go."""
    if metrics is None:
        return
    collected = getattr(agent, 'update_metrics', None)
    if collected is None:
        collected = agent.update_metrics = UpdateMetrics()
    collected.add(agent.metrics_names, metrics)


def process_obs(agent, obs):
    """A batch of observations through the agent's keras-rl processor, as float32."""
    obs = np.asarray(obs, dtype=np.float32)
    if agent.processor is None:
        return obs
    return np.asarray([agent.processor.process_observation(o) for o in obs], dtype=np.float32)


def observe(agent, obs):
    """The observation statistics' hook (agents/base.py ``observe``); agents without it (a
    user's keras-rl-like agent) normalize nothing."""
    hook = getattr(agent, 'observe', None)
    if hook is not None:
        hook(obs)


def first_observations_count(agent):
    """Whether a new vectorized env's reset observations go to the statistics: only at the start
    of a run (statistics empty). A run resumed on a new vectorized env gets there the episode
    starts that the run it continues already counted (the next states of its last steps);
    counting them twice would make it differ from a run never stopped."""
    norm = getattr(agent, 'obs_norm', None)
    return norm is None or norm.count == 0


def env_actions(agent, actions):
    """The agent's ``[-1, 1]`` actions as the environments take them (bounds, processor)."""
    actions = agent.to_env_action(actions)
    if agent.processor is not None:
        actions = np.asarray([agent.processor.process_action(a) for a in actions])
    return actions


def record(agent, episodes, actions, result, summary, env_ids=None):
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
    next_obs = process_obs(agent, next_obs)
    # Copies only where something ended (most batches: nothing did): at hundreds of
    # environments a call, each whole-batch copy is microseconds per env step (issue 24).
    final_obs = next_obs
    valid = np.ones(len(rewards), dtype=bool)
    for k in np.flatnonzero(ended):
        last = infos[k].get('terminal_observation')
        if last is None or 'lost' in infos[k]:
            valid[k] = False
        else:
            if final_obs is next_obs:
                final_obs = next_obs.copy()
            final_obs[k] = process_obs(agent, np.asarray(last)[None])[0]
    # the normalization statistics learn from every observation received: next states (reset
    # ones included) and the terminal observations of the episodes that ended
    finals = ended & valid
    observe(agent, np.concatenate([next_obs, final_obs[finals]]) if finals.any() else next_obs)
    stored_rewards = rewards
    if agent.processor is not None:
        stored_rewards = np.asarray([agent.processor.process_reward(r) for r in rewards])
    # each transition's s and s' are its own environment's: rows are matched by env id
    if valid.all():
        agent.memory.append_batch(episodes.obs[ids], actions, stored_rewards, final_obs,
                                  terminated)
    else:
        agent.memory.append_batch(episodes.obs[ids][valid], actions[valid],
                                  stored_rewards[valid], final_obs[valid], terminated[valid])
    n = len(rewards)
    agent.global_step += n
    summary['steps'] += n
    episodes.returns[ids] += rewards
    episodes.lengths[ids] += 1
    episodes.obs[ids] = next_obs
    events = []
    for k in np.flatnonzero(ended):
        i = int(ids[k])
        agent.episodes += 1
        summary['episodes'] += 1
        event = {'env': i, 'episode': agent.episodes, 'return': float(episodes.returns[i]),
                 'length': int(episodes.lengths[i]), 'global_step': agent.global_step,
                 'terminated': bool(terminated[k]), 'lost': 'lost' in infos[k],
                 'end': end_reason(bool(terminated[k]), infos[k])}
        summary['returns'].append(event['return'])
        summary['lengths'].append(event['length'])
        episodes.returns[i] = 0.0
        episodes.lengths[i] = 0
        events.append(event)
    if ended.any():
        agent.reset_noise(ids[ended])
    return events


def record_received(agent, episodes, received, summary):
    """Take in one ``recv`` batch: first observations of resets, transitions of steps."""
    obs, rewards, terminated, truncated, infos = received
    env_ids = env_ids_of(infos)
    if len(env_ids) == 0:
        return []
    first = episodes.resetting[env_ids]
    if first.any():
        ids = env_ids[first]
        fresh = process_obs(agent, np.asarray(obs)[first])
        if episodes.obs is None:  # the first results of all: now the shape is known
            episodes.obs = np.zeros((episodes.env.num_envs,) + fresh.shape[1:],
                                    dtype=np.float32)
        episodes.obs[ids] = fresh
        if episodes.first_observations_count:
            observe(agent, fresh)
        episodes.returns[ids] = 0.0
        episodes.lengths[ids] = 0
        episodes.resetting[ids] = False
    stepped = ~first
    events = []
    if stepped.all():  # (the usual batch: no masking copies)
        events = record(agent, episodes, episodes.actions[env_ids], received, summary,
                        env_ids=env_ids)
    elif stepped.any():
        ids = env_ids[stepped]
        rows = (np.asarray(obs)[stepped], np.asarray(rewards)[stepped],
                np.asarray(terminated)[stepped], np.asarray(truncated)[stepped],
                [info for info, s in zip(infos, stepped) if s])
        events = record(agent, episodes, episodes.actions[ids], rows, summary, env_ids=ids)
    episodes.flying[env_ids] = False
    return events
