"""farmside/async_verbs.py: :class:`AsyncStepping`, the farm's asynchronous stepping: ``send``,
``send_reset``, ``post``, ``post_reset`` and ``recv``.

An environment is *in flight* from ``send``/``send_reset`` until ``recv`` hands its result over,
and its lease's :class:`farmside.books.Watch` holds its worker's pipe meanwhile. The Farm
(farmside/core.py) exposes these verbs over the wire and hands this object the lease each call
names; it is handed the farm's :class:`farmside.ledger.Ledger` (which slots a lease owns) and its
:class:`farmside.dispatch.Dispatcher` (claims, shaped results, argument checks, and through it
the :class:`farmside.lifecycle.WorkerLife` that settles answers and replaces workers), and uses
only their public verbs. What the verbs promise is farm.py's docstring. Runs unmodified on
Python 2.7 and 3.6+.
"""
from __future__ import absolute_import

import numbers
import time

from farmside.books import BUILD_TIMEOUT, CALL, Flight, Watch, is_number, readable, yield_cpu
from farmside.envworker import SPIN_SECONDS, WorkerError, WorkerLost


class AsyncStepping(object):
    """A farm's asynchronous verbs (see the module docstring), each called with the lease
    (:class:`farmside.books.Lease`) that the farm looked up for the call."""

    def __init__(self, ledger, dispatcher):
        self.ledger = ledger
        self.dispatcher = dispatcher
        self.life = dispatcher.life

    @property
    def label(self):
        return self.ledger.label

    def send(self, held, env_ids, actions, auto_reset=True):
        """Hands each environment its action and returns at once: one element per environment,
        None (stepping now; its result comes from recv) or the error dict. A worker found dead
        is replaced and its element is the 'lost' error at once."""
        slots = self.ledger.owned(held, env_ids)
        actions = self.dispatcher.actions(slots, actions, 'send')
        auto_reset = bool(auto_reset)

        def start(k, slot):
            if slot.needs_hello:
                raise WorkerError('input', 'environment was lost; reset it before stepping')
            slot.worker.send_step(actions[k], auto_reset)
            return Flight(slot, 'step', 'reply', time.time() + self.life.step_timeout)
        return self._dispatch(held, slots, start)

    def send_reset(self, held, env_ids, seeds=None):
        """Resets each environment without waiting; its first observation comes from recv.
        A worker due for recycling, or replaced after a loss, is rebuilt first (also without
        waiting: recv sends the reset once the new worker is up)."""
        slots = self.ledger.owned(held, env_ids)
        seeds = self.dispatcher.seeds(slots, seeds)

        def start(k, slot):
            self.life.recycle_if_due(slot)
            now = time.time()
            if slot.needs_hello:
                return Flight(slot, 'reset', 'hello', now + BUILD_TIMEOUT, seeds[k])
            slot.worker.send('reset', seeds[k])
            return Flight(slot, 'reset', 'reply', now + self.life.step_timeout)
        return self._dispatch(held, slots, start)

    def post(self, held, env_ids, actions, auto_reset=True):
        """``send`` as a one-way call: the learner does not wait for an answer, so a far farm's
        round trip is not paid per send. Each environment's error element comes from recv as
        ``[env_id, error]``; an error of the call as a whole (a malformed call) is raised by
        the lease's next recv. Order with the connection's other calls is kept: farm.py runs
        one-way calls on the connection's own thread (Pyro4's ONEWAY_THREADED off)."""
        self._post(held, self.send, env_ids, actions, auto_reset)

    def post_reset(self, held, env_ids, seeds=None):
        """``send_reset`` as a one-way call, answered through recv as ``post`` is."""
        self._post(held, self.send_reset, env_ids, seeds)

    def _post(self, held, start, env_ids, *args):
        try:
            results = start(held, env_ids, *args)
            refused = [[env_ids[k], result] for k, result in enumerate(results)
                       if result is not None]
            error = None
        except Exception as e:
            refused, error = [], e
        if not (refused or error):
            return
        with held.state:
            held.posted.extend(refused)
            if error is not None and held.post_error is None:
                held.post_error = error
            if held.watch is not None:
                held.watch.nudge()  # a recv waiting wakes to hand them over

    def _dispatch(self, held, slots, start):
        """Claims ``slots`` and sets each off with ``start(k, slot)`` -> its Flight; one element
        per environment: None (in flight now), or the error dict (refused, or its worker lost:
        replaced)."""
        results = self.dispatcher.claim(held, slots, CALL)
        flights = []
        for k, slot in enumerate(slots):
            if results[k] is not None:
                continue
            try:
                flights.append(start(k, slot))
            except Exception as e:
                self.dispatcher.unclaim(held, [slot])
                results[k] = self.life.failure(slot, e)
        self._launch(held, flights)
        return results

    def _launch(self, held, flights):
        if not flights:
            return
        with held.state:
            if held.ended:  # closed meanwhile: its workers are gone, nothing is in flight
                return
            if held.watch is None:
                held.watch = Watch()
            for flight in flights:
                flight.slot.busy = flight
                held.in_flight[flight.slot.env_id] = flight
                self._watch(held, flight)

    def _watch(self, held, flight):
        """Watch ``flight``'s worker pipe (``state`` held); a closed one: its deadline is now."""
        try:
            flight.fd = flight.worker.conn.fileno()
        except (IOError, OSError, ValueError):  # killed meanwhile: recv finds it late
            flight.fd, flight.deadline = None, 0.0
            held.watch.nudge()
            return
        held.watch.add(flight.fd, flight, held.receiving)

    def recv(self, held, min_count=1, timeout=1.0, wait=False, linger=0.0):
        """``[[env_id, result], ...]`` of environments in flight, in the order they finished:
        as soon as ``min(min_count, number in flight)`` are ready, with every other one ready by
        then; at ``timeout`` seconds (None: no limit) with whatever is ready. A result is a
        step's ``[obs, reward, terminated, truncated, info]``, a reset's ``obs``, or the error
        dict (``'lost'`` past the step timeout: the worker is replaced; reset it).
        ``wait``: with nothing in flight, wait (up to ``timeout``) for what is sent meanwhile
        instead of returning [] at once: a learner's receiver asks before its send, made on
        another connection, has arrived, so that a far link's round trip is paid once.
        ``linger``: with ``min_count`` results in hand, wait up to that many seconds more for
        environments due by then (their last step took about as long): through a far link a
        result that just misses an answer costs the learner a whole round trip.
        The refusals of ``post``/``post_reset`` come first; a malformed post's error is
        raised here."""
        if isinstance(min_count, bool) or not isinstance(min_count, numbers.Integral) \
                or min_count < 0:
            raise ValueError('farm %s: recv: min_count must be an int >= 0, got %r'
                             % (self.label, min_count))
        if not is_number(linger) or not 0 <= linger <= 1:
            raise ValueError('farm %s: recv: linger must be seconds between 0 and 1, got %r'
                             % (self.label, linger))
        if timeout is not None and (not is_number(timeout) or not timeout >= 0):
            raise ValueError('farm %s: recv: timeout must be a number of seconds >= 0 or None, '
                             'got %r' % (self.label, timeout))
        with held.state:
            error, held.post_error = held.post_error, None
            if error is not None:
                raise error
            if held.ended or not (held.in_flight or held.posted or wait):
                return []
            if held.watch is None:
                held.watch = Watch()
            held.receiving += 1
            held.watch.waiters = held.receiving
        try:
            return self._receive(held, min_count, timeout, bool(wait), float(linger))
        finally:
            with held.state:
                held.receiving -= 1
                if held.watch is not None:
                    held.watch.waiters = held.receiving
                if held.ended and not held.receiving and held.watch is not None:
                    held.watch.close()
                    held.watch = None

    def _receive(self, held, min_count, timeout, wait, linger):
        end = None if timeout is None else time.time() + timeout
        linger_end = None  # set once min_count results are in hand
        out = []
        watch = held.watch
        while True:
            now = time.time()
            with held.state:
                if held.posted:
                    out.extend(held.posted)
                    held.posted = []
                flights = list(held.in_flight.values())
                if not flights and (out or not wait or held.ended):
                    return out
                late = [f for f in flights if f.deadline <= now]
                for flight in late:
                    if flight.fd is not None:
                        watch.remove(flight.fd)
                snapshot = None if watch.epoll is not None else list(watch.fds)
            if late:
                self._hand_over(held, late, out, True)
                continue
            # Enough: take every other result already there (a zero wait), then return.
            sweep = len(out) >= min_count
            deadlines = [f.deadline for f in flights] + ([] if end is None else [end])
            soonest = min(deadlines) if deadlines else None  # None: nothing flies, no limit
            if sweep:
                fds = watch.wait(0, snapshot)
                if not fds and linger:
                    if linger_end is None:
                        linger_end = now + linger
                    fds = self._linger(watch, flights, linger_end, snapshot)
            else:
                fds = self._spin(watch, flights, now, snapshot)
                if not fds:
                    fds = watch.wait(None if soonest is None
                                     else max(0.0, soonest - time.time()), snapshot)
            ready = []
            with held.state:
                for fd in fds:
                    flight = watch.fds.get(fd)
                    if flight is None:
                        if not held.receiving > 1:  # not ours any more: never report it again
                            watch.forget(fd)
                        continue  # (or another recv took it, and unwatched it)
                    if held.receiving > 1 and not readable(fd):
                        # Another recv took this pipe's answer after the wait reported it, and
                        # the environment is in flight again: its answer is not there yet.
                        continue
                    watch.remove(fd)  # its answer is taken now
                    ready.append(flight)
            if ready:
                self._hand_over(held, ready, out, False)
            elif sweep or end is not None and time.time() >= end:
                return out

    def _spin(self, watch, flights, now, snapshot):
        """Ready fds caught by a brief spin when an answer is due within SPIN_SECONDS (the
        environments' last steps were that fast): an idle CPU's wake-up costs more than the
        wait. Yields the CPU at every turn; never spins for slow environments."""
        due = [f.sent + f.worker.last_seconds for f in flights
               if f.stage == 'reply' and f.worker.last_seconds is not None]
        if not due or min(due) > now + SPIN_SECONDS:
            return []
        until = min(min(due) + SPIN_SECONDS, now + 2 * SPIN_SECONDS)
        while True:
            fds = watch.wait(0, snapshot)
            if fds or time.time() >= until:
                return fds
            yield_cpu()

    def _linger(self, watch, flights, until, snapshot):
        """Ready fds, waited for until ``until`` at most while a flight is due before then (its
        environment's last step took about as long as this one has so far); [] when none is.
        Not just until the due time: a step may run a little longer than the last one did."""
        now = time.time()
        due = [f.sent + f.worker.last_seconds for f in flights
               if f.stage == 'reply' and f.worker.last_seconds is not None]
        if now >= until or not any(d <= until for d in due):
            return []
        return watch.wait(until - now, snapshot)

    def _hand_over(self, held, flights, out, late):
        """Advance each flight (its worker answered, or ``late``); finished ones go to ``out``."""
        for flight in flights:
            env_id = flight.slot.env_id
            with held.state:
                if held.in_flight.get(env_id) is not flight:
                    continue  # released meanwhile
            result = self._advance(held, flight, late)
            with held.state:
                if held.in_flight.get(env_id) is not flight:
                    continue
                if result is None:  # on to its next stage: a new worker being built
                    self._watch(held, flight)
                    continue
                del held.in_flight[env_id]
                flight.slot.busy = None
                out.append([env_id, result])

    def _advance(self, held, flight, late):
        """An in-flight environment's worker spoke (or ``late``: its deadline passed). Returns
        its result, or None while it goes on to another stage."""
        slot = flight.slot
        if flight.stage == 'hello':
            try:
                if late:
                    slot.worker.kill()
                    raise WorkerLost('worker %s not built within %g s' % (slot.worker.pid,
                                                                          BUILD_TIMEOUT))
                self.life.hello(slot, max(0.0, flight.deadline - time.time()))
                slot.worker.send('reset', flight.seed)
            except Exception as e:
                return self.life.failure(slot, e)
            flight.stage, flight.worker = 'reply', slot.worker
            flight.sent = time.time()
            flight.deadline = flight.sent + self.life.step_timeout
            return None
        outcome = flight.worker.timed_out() if late else flight.worker.take()
        if flight.outcome is not None:  # the reset after recycling: the episode's first obs
            if isinstance(outcome, Exception):
                return self.life.failure(slot, outcome)
            slot.worker.resets += 1
            result, flight.outcome = flight.outcome, None
            result[0] = outcome
            return self.dispatcher.shaped(held, 'step', result)
        if flight.command == 'step' and not late:
            flight.worker.last_seconds = time.time() - flight.sent
        result, due = self.life.settled(slot, flight.command, outcome)
        if not due:
            return self.dispatcher.shaped(held, flight.command, result)
        try:
            self.life.recycle_if_due(slot)  # its successor builds while the others step
        except Exception as e:
            return self.life.failure(slot, e)
        flight.stage, flight.seed, flight.outcome, flight.worker = 'hello', None, result, \
            slot.worker
        flight.deadline = time.time() + BUILD_TIMEOUT
        return None
