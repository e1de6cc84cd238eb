"""The asynchronous mode of :class:`host.farm_vec_env.FarmVecEnv`: who sends, who receives, and
what happens to an environment between its ``send`` and the ``recv`` that hands its result over.
:class:`AsyncState` is handed what it works with: the Farmer (its farm links, its give-up
check), the vector env's :class:`host.placement.Placements` (shared: where each environment
lives, rebuilding and relocating), the observation form, the episode tracker, the last
observations (one array, updated in place by both modes) and the env's ``apply_params``.

- Sending: one farm ``post`` (or ``post_reset``) per farm touched: the farm's one-way send,
  handed to that farm's call thread (host/link.py), which writes it and goes on: no answer is
  waited for, so through a far link sends do not queue behind round trips. Refusals and lost
  workers come back through the farm's ``recv`` like results; a post that could not be written
  (a lost farm) comes back as an event the learner's thread handles in ``recv``.
- Receiving: one :class:`host.receiver.Receiver` per farm (per lease of this vector env there, which is one):
  daemon threads (:func:`receiver_threads`: one for a near farm, more for a far one), each with
  a connection of its own, that wait in the farm's ``recv`` while that farm has environments of
  ours in flight (their recvs overlap, so one is at the farm while another's answer travels),
  and put what comes back on one queue.
  :meth:`AsyncState.recv` (the learner's thread) drains that queue: all bookkeeping happens
  there, so the receivers share nothing with it but the queue and a count.
- An environment in flight is the machinery's until its result is handed over: nothing else
  touches its placement, which is what lets a recovery thread rebuild it off the learner's
  thread.
- A lost worker (a ``'lost'`` or ``'env'`` element): the farm has replaced it; it is reset with
  ``post_reset`` at once and its result, delivered when the reset's comes back, is the lost one:
  truncated, ``info['lost']``/``['lost_cause']``, ``terminal_observation`` its last observation,
  ``obs`` the new episode's first. Other environments never wait for it.
- A lost farm (the sender's or receiver's call raises ``FARM_DOWN``) or a lease the farm forgot:
  the environments in flight there are rebuilt elsewhere by a recovery thread (one ``make`` per
  farm), then reset; their results are lost ones as above. An environment that was between
  steps on such a farm is lost at its next ``send``. Environments on other farms keep flowing.

Python 3.6 compatible.
"""
import concurrent.futures
import functools
import logging
import queue
import time

from common import wire
from common.errors import NothingPendingError, PendingError
from common.protocol import is_error
from host.diagnosis import describe, no_such_lease
from host.link import FARM_DOWN
from host.observations import as_obs, as_obs_rows
from host.receiver import Receiver
from host.recovery import Recovery
from vecenv.contract import stack_results

log = logging.getLogger('farmer')

STEP, RESET, REBUILDING = 'step', 'reset', 'rebuilding'  # what an environment in flight awaits
MAX_RESET_TRIES = 3  # resets of a replaced worker that may fail in a row before we give up


class AsyncState(object):
    """What :class:`FarmVecEnv`'s asynchronous mode holds: environments in flight, results
    ready, lost ones awaiting their reset, receivers, recovery threads."""

    def __init__(self, farmer, placement, obs_form, tracker, last_obs, apply_params):
        self.farmer = farmer
        self.placement = placement
        self.obs_form = obs_form
        self.tracker = tracker
        self.last_obs = last_obs          # the vector env's array: written in place on delivery
        self.apply_params = apply_params  # the vector env's: set_params on the farms now
        self.events = queue.Queue()
        self.receivers = {}  # (link, lease) -> Receiver
        self.flight = {}     # vector index -> STEP | RESET | REBUILDING
        self.lost = {}       # index -> (reason, cause): its next reset result is delivered lost
        self.tries = {}      # index -> resets of a replaced worker tried in a row
        self.deferred = {}   # index -> params set while it was in flight: sent before it is
        self.ready = []      # rows handed over by the next recv, in order of arrival
        self.gone = {}       # (link, lease) -> (reason, cause): lost, with what they held
        self.to_move = set()  # displaced indices to move to free capacity after their next step
        self.moving = {}     # index -> (its step's row, why it moved): delivered with the reset
        self.recovery = Recovery(farmer, placement, self.events)

    @property
    def in_flight(self):
        return len(self.flight) + len(self.ready)

    def no_results_out(self, call):
        if self.in_flight:
            raise PendingError('%s while %d environments are in flight (asynchronous mode): '
                               'recv their results first (or reset())' % (call, self.in_flight))

    # --- the learner's calls ------------------------------------------------------------------
    def reset_all(self, seed):
        self.no_results_out('async_reset')
        indices = list(range(self.placement.num_envs))
        self._apply_deferred(indices)  # (a worker lost meanwhile is reset below anyway)
        for i in indices:
            self.tracker.restart(i)
            self.lost.pop(i, None)
        self.dispatch(RESET, indices, seeds=None if seed is None else [seed + i for i in indices])

    def send(self, actions, ids):
        ids = ids.tolist()
        busy = sorted(set(ids).intersection(set(self.flight) | set(r[0] for r in self.ready)))
        if busy:
            raise PendingError('environments %s are in flight: recv their results first'
                               % (busy,))
        placement = self.placement
        if placement.rebalance_due:  # a keep-alive round: try moving displaced ones back
            placement.rebalance_due = False
            self.to_move.update(frozenset(placement.displaced))
        lost = set(self._apply_deferred(ids))
        if lost:  # replaced meanwhile (set_params found its worker gone): reset, not stepped
            keep = [k for k, i in enumerate(ids) if i not in lost]
            for i in sorted(lost):
                self.flight[i] = STEP
                self._worker_lost(i, 'farm replaced the worker of env %d' % i)
            ids, actions = [ids[k] for k in keep], actions[keep]
        if ids:
            self.dispatch(STEP, ids, actions=actions)

    def defer_params(self, params, indices):
        """Records ``params`` for the environments of ``indices`` in flight on a farm (sent
        before their next send); returns those indices."""
        flying = set(i for i in indices if i in self.flight)
        for i in flying:
            self.deferred.setdefault(i, {}).update(params)
        return flying

    def recv(self, batch_size, timeout):
        if not self.in_flight:
            raise NothingPendingError('recv with no environment in flight: send (or '
                                      'async_reset) first')
        want = min(batch_size, self.in_flight)
        deadline = None if timeout is None else time.time() + timeout
        while len(self.ready) < want:
            wait = 1.0 if deadline is None else min(1.0, deadline - time.time())
            if wait <= 0:
                break
            try:
                event = self.events.get(timeout=wait)
            except queue.Empty:
                self.farmer.check_give_up()
                continue
            self._handle(event)
        while True:  # and whatever else is ready, without waiting
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                break
            self._handle(event)
        return self._deliver()

    def discard_in_flight(self):
        """Collects whatever is in flight and forgets it (reset() does this first); parameters
        set meanwhile go to their environments now."""
        while self.flight:
            self.ready = []
            self.recv(len(self.flight), 1.0)
        self.ready = []
        self._apply_deferred(list(self.deferred))

    def stop(self):
        for receiver in self.receivers.values():
            receiver.stop()

    def join(self, timeout):
        deadline = time.time() + timeout
        for receiver in list(self.receivers.values()):
            for thread in receiver.threads:
                thread.join(max(0.0, deadline - time.time()))

    # --- sending ----------------------------------------------------------------------------------
    def dispatch(self, kind, indices, actions=None, seeds=None):
        """One farm ``post`` (kind STEP, with ``actions`` row k for ``indices[k]``) or
        ``post_reset`` (RESET, with ``seeds``) per farm for ``indices``; marks them in flight.
        Returns without waiting for the farms: each call goes out one-way on its farm's call
        thread (in order, after that farm's earlier calls), so a far farm's round trip never
        delays the learner. A refusal comes back through the farm's recv: an 'input' one is
        then a ValueError from the next recv."""
        placement = self.placement
        for (link, lease), (ks, ids) in placement.groups_of(indices).items():
            idx = [indices[k] for k in ks]
            lost = not link.up or placement.allocation.lease(link, open_new=False) != lease
            receiver = None if lost else self._receiver(link, lease)  # (before these fly)
            for i in idx:
                self.flight[i] = kind
            if lost:  # lost while these were between steps: they are lost now
                self._lose(idx, *self.gone.get((link, lease), (
                    'farm %s lost: %s' % (link.name, link.error), 'farm')))
                continue
            if kind == STEP:
                future = link.submit('post', lease, ids, wire.pack(actions[ks]), True,
                                     timeout=placement.call_timeout(link))
            else:
                future = link.submit('post_reset', lease, ids,
                                     None if seeds is None else [seeds[k] for k in ks],
                                     timeout=placement.call_timeout(link))
            # Counted now, so that the receiver asks at once: the farm's recv waits for what
            # has not reached it yet (wait=True). Refusals come back through recv too.
            receiver.expect(len(idx))
            future.add_done_callback(functools.partial(self._sent, receiver, idx))

    def _sent(self, receiver, idx, future):
        """A post went out (on its farm's call thread) or failed to: a failure goes to the
        learner's thread as an event."""
        try:
            future.result()
        except BaseException as e:  # (a cancelled call too: its farm was abandoned)
            self.events.put(('send failed', receiver, idx, e))

    def _send_failed(self, receiver, idx, error):
        receiver.expect(-len(idx))  # none of them reached the farm
        if isinstance(error, FARM_DOWN) or no_such_lease(error):
            self._failed(receiver, error)
        elif isinstance(error, concurrent.futures.CancelledError):
            # Abandoned with its farm (marked down, or a stall given up on): as a lost farm.
            self._lose([i for i in idx if self.flight.get(i) not in (None, REBUILDING)],
                       'farm %s lost: %s' % (receiver.link.name, receiver.link.error), 'farm')
        else:
            for i in idx:
                self.flight.pop(i, None)
            raise error

    def _receiver(self, link, lease):
        """The receiver of ``lease`` on ``link``; a new one expects what is in flight there
        already (after an unexpected failure of its predecessor)."""
        receiver = self.receivers.get((link, lease))
        if receiver is None:
            receiver = self.receivers[(link, lease)] = Receiver(link, lease, self.events,
                                                                self.placement.call_timeout)
            receiver.expect(len(self._flying_on(link, lease)))
        return receiver

    def _flying_on(self, link, lease):
        places = self.placement.places
        return [i for i, kind in self.flight.items() if kind != REBUILDING
                and places[i].link is link and places[i].lease == lease]

    def _apply_deferred(self, indices):
        """Sends the parameters set while ``indices`` were in flight; returns the indices
        whose worker the farm found lost (replaced, with the parameters: reset them)."""
        groups = {}
        for i in indices:
            params = self.deferred.pop(i, None)
            if params:
                groups.setdefault(repr(sorted(params.items())), (params, []))[1].append(i)
        lost = []
        for params, idx in groups.values():
            lost += self.apply_params(params, idx)
        return lost

    # --- receiving: the learner's thread ---------------------------------------------------------
    def _handle(self, event):
        kind = event[0]
        if kind == 'results':
            self._results(event[1], event[2])
        elif kind == 'failed':
            self._failed(event[1], event[2])
        elif kind == 'send failed':
            self._send_failed(event[1], event[2], event[3])
        elif kind == 'rebuilt':
            idx = [i for i in event[1] if self.flight.get(i) == REBUILDING]
            if idx and not self.placement.closed:
                self.dispatch(RESET, idx)
        elif kind == 'relocated':
            self._relocated(event[1], event[2])
        elif kind == 'fatal':
            raise event[1]

    def _results(self, receiver, results):
        placement = self.placement
        refused, moving = [], []
        entries = []  # in the farm's order: (i, step result) or (None, a reset's row)
        for env_id, result in results:
            i = placement.index_of(receiver.link, env_id)
            kind = self.flight.get(i)
            if kind is None or kind == REBUILDING or placement.places[i].lease != receiver.lease:
                continue  # not ours any more (a lost lease's straggler)
            if is_error(result):
                if result.get('kind') == 'input':
                    del self.flight[i]
                    refused.append(result['error'])
                else:
                    self._worker_lost(i, result['error'])
                continue
            self.tries.pop(i, None)
            if kind == STEP and i in self.to_move:  # its step stands; then it moves
                self.to_move.discard(i)
                self.moving[i] = (self._step_row(i, result), None)
                self.flight[i] = REBUILDING
                moving.append(i)
                continue
            del self.flight[i]
            entries.append((i, result) if kind == STEP
                           else (None, self._reset_row(i, as_obs(result, self.obs_form))))
        # the steps' observations in one numpy call (one per row cost the most, issue 24)
        steps = [result[0] for i, result in entries if i is not None]
        block = iter(as_obs_rows(steps, self.obs_form) if steps else ())
        self.ready += [entry if i is None else self._step_row(i, entry, next(block))
                       for i, entry in entries]
        if moving:
            self.recovery.relocate(moving)
        if refused:
            raise ValueError(refused[0])

    def _step_row(self, i, result, obs=None):  # obs: the observation, if converted already
        raw, reward, terminated, truncated, info = result
        form = self.obs_form
        if 'terminal_observation' in info:
            info['terminal_observation'] = as_obs(info['terminal_observation'], form)
        return (i, as_obs(raw, form) if obs is None else obs, float(reward), bool(terminated),
                bool(truncated), info, True)

    def _reset_row(self, i, obs):
        if i in self.moving:  # moved after its step: that step's outcome, then the cut
            (_, last, reward, terminated, truncated, info, _), reason = self.moving.pop(i)
            if not (terminated or truncated):  # (one that ended on its own keeps its reason)
                truncated = True
                info = dict(info, terminal_observation=last, moved=reason)
            return (i, obs, reward, terminated, truncated, info, True)
        if i not in self.lost:  # async_reset's first observation: not a step
            return (i, obs, 0.0, False, False, {}, False)
        reason, cause = self.lost.pop(i)
        # Not terminal: the machinery cut the episode short, so a learner bootstraps.
        last = self.obs_form.item(self.last_obs[i])
        return (i, obs, 0.0, False, True, {'lost': reason, 'lost_cause': cause,
                                           'terminal_observation': last}, True)

    def _deliver(self):
        rows, self.ready = self.ready, []
        counted = [row for row in rows if row[6]]  # (tracked in one call: hundreds a batch)
        for i in [row[0] for row in rows if not row[6]]:  # first observations: no step
            self.tracker.restart(i)
        self.tracker.record([r[2] for r in counted], [r[3] or r[4] for r in counted],
                            [r[5] for r in counted], [r[0] for r in counted])
        result = stack_results([row[:6] for row in rows], self.obs_form.shape, self.obs_form.dtype)
        self.last_obs[[row[0] for row in rows]] = result[0]
        return result

    # --- losses -----------------------------------------------------------------------------------
    def _worker_lost(self, i, text):
        """The farm replaced env ``i``'s worker: reset it now; the reset's result is its lost
        result (after a step; after a reset of ours, simply the first observation)."""
        log.warning('%s', text)
        if self.flight.get(i) == STEP:
            self.lost.setdefault(i, (text, 'worker'))
        self.tries[i] = self.tries.get(i, 0) + 1
        if self.tries[i] > MAX_RESET_TRIES:
            self.flight.pop(i, None)
            self.lost.pop(i, None)
            raise RuntimeError('could not reset a replaced environment: %s' % text)
        self.dispatch(RESET, [i])

    def _failed(self, receiver, error):
        """A farm call for ``receiver``'s lease failed: a lost farm, a forgotten lease, or a
        failure that is ours to raise."""
        link, lease = receiver.link, receiver.lease
        if self.receivers.get((link, lease)) is receiver:
            del self.receivers[(link, lease)]
            receiver.stop()
        if isinstance(error, FARM_DOWN):
            if link.up:
                self.placement.farm_lost(link, error)
            reason, cause = 'farm %s lost: %s' % (link.name, describe(error)), 'farm'
        elif no_such_lease(error):
            self.placement.allocation.drop(link, lease)
            log.warning('farm %s no longer knows our lease (it expired while this process was '
                        'paused, or the farm restarted); rebuilding its environments, their '
                        'episodes truncated', link.name)
            reason, cause = str(error), 'lease'
        else:  # not the farm's loss: ours to raise; a new receiver takes over what flies there
            if self._flying_on(link, lease):
                self._receiver(link, lease)
            raise error
        self.gone[(link, lease)] = (reason, cause)
        self._lose(self._flying_on(link, lease), reason, cause)

    def _lose(self, indices, reason, cause):
        """Environments ``indices`` (in flight) lost with their farm or lease: rebuilt elsewhere
        by a recovery thread, then reset; their results are lost ones."""
        if not indices:
            return
        old = {}
        for i in indices:
            if self.flight.get(i) == STEP or i in self.lost:
                self.lost.setdefault(i, (reason, cause))
            self.flight[i] = REBUILDING
            old[i] = self.placement.places[i]
        self.recovery.rebuild(old)

    def _relocated(self, indices, moved):
        """The learner's thread: the moved ones are reset where they are now (their step's
        result comes with that reset's); the others' step results are delivered as they are."""
        for i in indices:
            if self.flight.get(i) != REBUILDING or i not in self.moving:
                continue
            if i in moved:
                self.moving[i] = (self.moving[i][0], moved[i])
            else:
                del self.flight[i]
                self.ready.append(self.moving.pop(i)[0])
        if moved and not self.placement.closed:
            self.dispatch(RESET, sorted(i for i in moved if i in self.moving))
