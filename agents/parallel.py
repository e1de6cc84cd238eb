"""The vector trainer: one agent trained and evaluated on N environments, batched forward passes.

:class:`VecTrainer` is the one owner of an agent's vector-stepping state: the
:class:`agents.recording.VecEpisodes` of the vectorized env it is continuing (``episodes``, None
when there is none). An :class:`agents.base.OffPolicyAgent` holds its own as ``agent.trainer``
and delegates ``train_vec``/``evaluate_vec`` to it; the trainer uses only the agent's public
interface (``select_actions``, ``state_batch``, ``learn``, ``memory``, the counters, ...).

- :meth:`VecTrainer.train` steps the environments in either mode of :mod:`agents.stepping`
  (``mode='async'`` or ``'lockstep'``; asynchronous by default where the vectorized env has
  ``send``/``recv``) and records transitions as :mod:`agents.recording` says.
- Continuation: given the same vectorized env as the previous call, :meth:`~VecTrainer.train`
  goes on where that call stopped (episodes in flight go on, nothing is reset; in asynchronous
  mode the environments still in flight stay in flight between calls). Given another, or after
  :meth:`~VecTrainer.forget` (the agent's ``fit`` and ``load_weights`` call it), or after a call
  that left the env's state unknown (the episodes' ``stale``), the next call resets the env.
  Counters are the agent's Python ints.
- :meth:`VecTrainer.evaluate` stays lockstep and resets the env (dropping the episodes when it
  is the one being continued); the agent acts deterministically and learns nothing, neither
  updates nor observation statistics.
- Update metrics: after every batch whose updates returned metrics, training adds them to
  ``agent.update_metrics`` (an :class:`agents.recording.UpdateMetrics`; its ``take()`` gives the
  means since the last ``take``).

:func:`train_vec` / :func:`evaluate_vec` are the functional forms, ``agent.train_vec(...)`` /
``agent.evaluate_vec(...)``.
"""
import logging
import time

import numpy as np

from agents import stepping
from agents.recording import env_actions, process_obs
from envs.measures import episode_measures, summary as measure_summary

log = logging.getLogger(__name__)


class VecTrainer(object):
    """Trains and evaluates ``agent`` on vectorized environments; keeps the episodes in flight
    on the one it trains on (``episodes``) from one :meth:`train` call to the next."""

    def __init__(self, agent):
        self.agent = agent
        self.episodes = None  # the VecEpisodes being continued, or None

    def forget(self):
        """The next :meth:`train` resets its vectorized env instead of continuing."""
        self.episodes = None

    def train(self, vec_env, nb_episodes=None, nb_steps=None, callback=None, stop=None,
              seed=None, log_interval=None, mode=None):
        """Train until ``nb_episodes`` more episodes end and/or ``nb_steps`` more env steps are
        done.

        Whichever limit is reached first ends the call, after the batch (a lockstep vector
        step, or an asynchronous ``recv``) that reached it. ``mode``: ``'async'`` or
        ``'lockstep'`` (see :mod:`agents.stepping`); by default asynchronous where the
        vectorized env has ``send``/``recv``. ``callback(event)`` is called for every episode
        that ends, with a plain dict (``env``, ``episode``, ``return``, ``length``,
        ``global_step``, ``terminated``, ``lost``, ``end``: one of vecenv.END_REASONS).
        ``stop``: a ``threading.Event`` or a callable, checked between batches. ``seed`` seeds
        the reset of a vectorized env that is not being continued. ``log_interval``: log
        progress every so many env steps. Returns a plain dict: ``steps``, ``episodes``,
        ``returns``, ``lengths`` (all of this call), ``interrupted``, ``abandoned_step``,
        ``seconds``, ``mode`` and ``counters`` (the agent's totals).
        """
        agent = self.agent
        if nb_episodes is None and nb_steps is None:
            raise ValueError('give nb_episodes and/or nb_steps')
        if not agent.compiled:
            raise RuntimeError('compile() the agent before training it')
        mode = stepping.choose_mode(vec_env, mode)
        agent.training = True
        summary = {'steps': 0, 'episodes': 0, 'returns': [], 'lengths': [],
                   'interrupted': False, 'abandoned_step': False, 'mode': mode}
        started = time.time()
        limits = (nb_episodes, nb_steps, log_interval)
        with stepping.SigintToStop() as sigint:
            episodes = self.episodes
            if episodes is None or episodes.env is not vec_env:
                episodes = self.episodes = stepping.start(agent, vec_env, mode, seed)
            try:
                stepping.run(agent, vec_env, episodes, mode, summary, limits, callback, stop,
                             sigint, started)
            finally:
                if episodes.stale:  # abandoned or failed where the env's state is unknown
                    self.forget()
        summary['seconds'] = time.time() - started
        summary['counters'] = agent.counters()
        if summary['interrupted']:
            log.info('training interrupted after %d env steps, %d episodes',
                     summary['steps'], summary['episodes'])
        return summary

    def evaluate(self, vec_env, nb_episodes=10, seed=None):
        """Run ``nb_episodes`` episodes with deterministic actions; no learning, counters
        unchanged.

        Episodes are spread evenly over the environments (each env contributes its first
        episodes only, so short episodes are not over-represented). Resets ``vec_env``. Returns
        a dict with ``mean_return``, ``std_return``, ``returns`` and ``lengths``, and where the
        environments report a task measure in ``info['task']`` (osim-rl's, envs/measures.py)
        its mean and per-episode figures (``mean_distance`` and ``distances``, ...).
        """
        if self.episodes is not None and self.episodes.env is vec_env:
            self.forget()  # we are about to reset the env training was continuing on
        return _evaluate(self.agent, vec_env, nb_episodes, seed)


def _evaluate(agent, vec_env, nb_episodes, seed):
    """:meth:`VecTrainer.evaluate`'s loop: lockstep, ``agent.training`` off meanwhile."""
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
        obs = process_obs(agent, vec_env.reset(seed=seed))
        while (done < wanted).any():
            actions = agent.select_actions(agent.state_batch(obs), explore=False)
            obs, rewards, terminated, truncated, infos = vec_env.step(
                env_actions(agent, actions))
            obs = process_obs(agent, obs)
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


def train_vec(agent, vec_env, **kwargs):
    """``agent.train_vec(vec_env, ...)``: see :meth:`VecTrainer.train`."""
    return agent.train_vec(vec_env, **kwargs)


def evaluate_vec(agent, vec_env, nb_episodes=10, seed=None):
    """``agent.evaluate_vec(vec_env, ...)``: see :meth:`VecTrainer.evaluate`."""
    return agent.evaluate_vec(vec_env, nb_episodes=nb_episodes, seed=seed)
