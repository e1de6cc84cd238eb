"""The two ways of stepping N environments for one agent: lockstep and asynchronous (ready-first).

Against the contract in ``vecenv/contract.py``. :func:`choose_mode` picks the mode
(asynchronous by default where the vectorized env has ``send``/``recv``), :func:`start` begins
new :class:`agents.recording.VecEpisodes` on a vectorized env (resets it), :func:`run` advances
given ones until the call's limits; :class:`agents.parallel.VecTrainer` calls them and keeps the
episodes between calls. What a batch stores and counts is :mod:`agents.recording`'s.

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
two modes take the same steps, updates and random draws, bit for bit. In asynchronous mode the
environments still in flight when a call ends stay in flight, their pending actions kept in the
episodes, and the next call receives them; a lockstep call after an asynchronous one first
receives and records what is in flight (:func:`drain`).

Interruption (:class:`SigintToStop`): inside the main thread the first Ctrl-C only requests a
stop, honoured between batches, so the batch in hand is recorded (lockstep: the vector step in
flight completes and is recorded). A second Ctrl-C raises ``KeyboardInterrupt`` at once.
Lockstep: if that happens while the learner trains, the step in flight is still collected; if it
happens inside ``step_wait``, the step is abandoned (not counted) and the episodes are marked
``stale`` (the next call resets the vectorized env). Asynchronous: while acting or learning
nothing is lost (what is in flight stays there for the next call); inside ``send`` or ``recv``
what was in flight is abandoned and the episodes are marked ``stale``. Either way :func:`run`
returns normally with ``summary['interrupted']`` set. Any other exception raised where the
vectorized env's state becomes unknown marks the episodes ``stale`` too, and propagates.
"""
import logging
import signal
import threading
import time

import numpy as np

from agents.recording import (VecEpisodes, env_actions, first_observations_count, note_metrics,
                              observe, process_obs, record, record_received)

log = logging.getLogger(__name__)

MODES = ('async', 'lockstep')


class SigintToStop(object):
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


def choose_mode(vec_env, mode):
    """``mode`` checked against what ``vec_env`` can do; None: async where it can."""
    has_async = hasattr(vec_env, 'send') and hasattr(vec_env, 'recv')
    if mode is None:
        return 'async' if has_async else 'lockstep'
    if mode not in MODES:
        raise ValueError('mode must be one of %s, got %r' % (', '.join(MODES), mode))
    if mode == 'async' and not has_async:
        raise ValueError('%s has no asynchronous mode (send/recv): use mode=\'lockstep\''
                         % type(vec_env).__name__)
    return mode


def start(agent, vec_env, mode, seed):
    """New episodes on ``vec_env``: lockstep resets it (``seed``) and has the first observations
    at once; asynchronous sends ``async_reset`` and receives them with the first results."""
    if mode == 'lockstep':
        episodes = VecEpisodes(vec_env, 'lockstep', process_obs(agent, vec_env.reset(seed=seed)))
        if first_observations_count(agent):
            observe(agent, episodes.obs)
    else:
        if vec_env.in_flight:
            # an abandoned call left environments in flight: reset() discards their results
            vec_env.reset()
        episodes = VecEpisodes(vec_env, 'async')
        episodes.first_observations_count = first_observations_count(agent)
        vec_env.async_reset(seed=seed)
        episodes.flying[:] = True
        episodes.resetting[:] = True
    agent.reset_noise(None)
    return episodes


def run(agent, vec_env, episodes, mode, summary, limits, callback, stop, sigint, started):
    """Advance ``episodes`` in ``mode`` until ``limits`` (``(nb_episodes, nb_steps,
    log_interval)``, counted in ``summary``), a stop request or an interruption."""
    if mode == 'lockstep':
        _lockstep(agent, vec_env, episodes, summary, limits, callback, stop, sigint, started)
    else:
        _asynchronous(agent, vec_env, episodes, summary, limits, callback, stop, sigint,
                      started)


def _stop_requested(stop):
    if stop is None:
        return False
    if hasattr(stop, 'is_set'):
        return stop.is_set()
    return bool(stop())


def _notify(callback, events):
    if callback is not None:
        for event in events:
            callback(event)


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


def _log_progress(agent, summary, started):
    recent = summary['returns'][-20:]
    log.info('step %d (+%d), episodes %d, updates %d, mean return (last %d) %s, %.0f steps/s',
             agent.global_step, summary['steps'], agent.episodes, agent.updates, len(recent),
             '%.1f' % np.mean(recent) if recent else '-',
             summary['steps'] / max(time.time() - started, 1e-9))


def _lockstep(agent, vec_env, episodes, summary, limits, callback, stop, sigint, started):
    """N environments, one step each per vector step (see the module docstring)."""
    if episodes.mode == 'async':
        # continued from the asynchronous mode: take in what is in flight, then go on in lockstep
        if not drain(agent, vec_env, episodes, summary, callback):
            return
        episodes.mode = 'lockstep'
    progress = _Logger(limits[2], started)
    phase = None  # None, 'learning' (actions sent) or 'waiting' (step_wait and recording)
    actions = None
    try:
        while not _finished(summary, limits):
            if sigint.requested or _stop_requested(stop):
                summary['interrupted'] = True
                break
            actions = agent.select_actions(agent.state_batch(episodes.obs), explore=True)
            vec_env.step_async(env_actions(agent, actions))
            phase = 'learning'
            # the learner trains while the environments step
            note_metrics(agent, agent.learn(vec_env.num_envs))
            phase = 'waiting'
            events = record(agent, episodes, actions, vec_env.step_wait(), summary)
            phase = None
            _notify(callback, events)  # after record: the agent is consistent again
            progress(agent, summary)
    except KeyboardInterrupt:
        summary['interrupted'] = True
        if phase == 'learning':
            phase = 'waiting'
            try:  # the environments are stepping: collect that step so nothing is lost
                events = record(agent, episodes, actions, vec_env.step_wait(), summary)
                phase = None
                _notify(callback, events)
            except KeyboardInterrupt:
                pass
        if phase == 'waiting':  # interrupted inside step_wait (or recording its result)
            _abandon(episodes, summary, 'step_wait')
    except Exception:
        if phase is not None:  # the vectorized env's state is unknown now
            episodes.stale = True
        raise


def _abandon(episodes, summary, where):
    summary['abandoned_step'] = True
    episodes.stale = True
    log.warning('interrupted inside %s: what was in flight is abandoned; the next call resets '
                'the vectorized env', where)


def drain(agent, vec_env, episodes, summary, callback):
    """Receive and record every environment in flight (a switch to lockstep). False when a
    Ctrl-C abandoned it (the episodes are stale then)."""
    try:
        while episodes.flying.any():
            _notify(callback, record_received(agent, episodes, vec_env.recv(), summary))
    except KeyboardInterrupt:
        summary['interrupted'] = True
        _abandon(episodes, summary, 'recv')
        return False
    except Exception:
        episodes.stale = True
        raise
    return True


def _asynchronous(agent, vec_env, episodes, summary, limits, callback, stop, sigint, started):
    """Ready-first stepping (see the module docstring): act for the environments that are not
    in flight, send, learn while they simulate, receive whichever are ready."""
    episodes.mode = 'async'
    if episodes.actions is None:
        episodes.actions = np.zeros((vec_env.num_envs, agent.nb_actions), dtype=np.float32)
    progress = _Logger(limits[2], started)
    # phase: None, 'acting' (nothing sent yet), 'sending' (unknown which were sent), 'learning'
    # (the sent ones are in flight), 'waiting' (inside recv, and recording its results)
    phase = None
    try:
        while not _finished(summary, limits):
            if sigint.requested or _stop_requested(stop):
                summary['interrupted'] = True
                break
            idle = np.flatnonzero(~episodes.flying)
            if len(idle):
                phase = 'acting'
                # one forward pass for the environments in hand (their own noise, for DDPG)
                actions = agent.select_actions(agent.state_batch(episodes.obs[idle]),
                                               explore=True, env_ids=idle)
                phase = 'sending'
                vec_env.send(env_actions(agent, actions), idle)
                episodes.actions[idle] = actions
                episodes.flying[idle] = True
                phase = 'learning'
                # the updates owed for the env steps just sent, while they simulate (as
                # lockstep does for its vector step; see the module docstring)
                note_metrics(agent, agent.learn(len(idle)))
            phase = 'waiting'
            events = record_received(agent, episodes, vec_env.recv(), summary)
            phase = None
            _notify(callback, events)  # after recording: the agent is consistent again
            progress(agent, summary)
    except KeyboardInterrupt:
        # A second Ctrl-C. Before the send and while learning, the episodes are whole: what is
        # in flight stays there for the next call to receive. Inside send or recv, results may
        # be gone with the interrupted call: abandon.
        summary['interrupted'] = True
        if phase in ('sending', 'waiting'):
            _abandon(episodes, summary, 'send' if phase == 'sending' else 'recv')
    except Exception:
        if phase in ('sending', 'waiting'):  # the vectorized env's state is unknown now
            episodes.stale = True
        raise
