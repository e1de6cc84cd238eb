"""farmside/ledger.py: :class:`Ledger`, the farm's one record of who holds what.

It owns the farm's leases (by token), its environment slots (by env id, one per environment a
lease holds) and the next env id, under one lock that is held for bookkeeping only, never while
waiting or talking to a worker. The farm's verbs ask it:

- ``lease(token)``: the lease a call names, renewed, with the call's connection remembered (a
  lease none of whose connections is open is released ``release_after`` seconds after the last
  one closed: :meth:`disconnected`, :meth:`due_for_release`);
- ``owned(held, env_ids)``: the slots of those environments, if the lease holds each once;
- ``reserve(n, capacity, token, borrow_to)`` then ``fill(held, slots)`` (or ``unreserve``): room
  for n environments is taken before their workers are built, so two learners never both get
  the last core. Above capacity (``borrow_to``: the overcommit factor's limit, asked for by a
  learner re-placing a lost farm's environments) only while no other lease waits: a lease
  refused capacity counts as waiting for ``WAITING_FOR`` seconds (its learner retries within
  that), so a borrower never takes the room another learner is asking for;
- ``take(env_ids)``: slots removed (their workers are then closed by the caller);
- ``swap_worker(slot, fresh)``: a replacement worker goes in only while the slot is still the
  farm's (a lease closed meanwhile has no use for it).

Python 2.7 and 3.6+.
"""
from __future__ import absolute_import

import threading
import time

import Pyro4

WAITING_FOR = 30.0  # seconds a lease refused capacity counts as waiting for it


class Ledger(object):
    """The farm's leases and slots (see the module docstring). ``label`` names the farm in
    error messages (host:port, known once the daemon has bound its port)."""

    def __init__(self, release_after):
        self.release_after = float(release_after)
        self.label = None
        self._leases = {}
        self._slots = {}
        self._next_id = 0
        self._waiting = {}  # token -> when it was last refused capacity
        self._lock = threading.Lock()

    # --- leases ----------------------------------------------------------------------------------
    def open(self, held):
        with self._lock:
            self._seen(held)
            self._leases[held.token] = held

    def lease(self, token):
        """The lease ``token`` names, renewed; LookupError if there is none."""
        with self._lock:
            try:
                held = self._leases.get(token)
            except TypeError:  # unhashable: certainly not a token
                held = None
            if held is None:
                raise LookupError('farm %s: no such lease (expired, closed, or never opened)'
                                  % self.label)
            held.expires = time.time() + held.ttl
            self._seen(held)
            return held

    def get(self, token):
        """The lease ``token`` names without renewing it, or None (for status and tests)."""
        with self._lock:
            return self._leases.get(token)

    def close(self, token):
        """The lease removed from the books, or None if there was none."""
        with self._lock:
            self._waiting.pop(token, None)
            return self._leases.pop(token, None)

    def _seen(self, held):
        """Remember the connection this call came on (every call of a learner comes here:
        one lock round, not two). Call with the lock held."""
        conn = getattr(Pyro4.current_context, 'client', None)
        if conn is not None:
            held.conns.add(conn)
            held.orphaned_at = None

    def disconnected(self, conn):
        """A client connection closed: the leases it was the last open connection of are
        orphaned now. Returns them (the farm logs each)."""
        now = time.time()
        orphaned = []
        with self._lock:
            for held in self._leases.values():
                if conn in held.conns:
                    held.conns.discard(conn)
                    if not held.conns:
                        held.orphaned_at = now
                        orphaned.append(held)
        return orphaned

    def due_for_release(self, now):
        """The leases whose time is up (expired, or orphaned for ``release_after``), removed."""
        with self._lock:
            ended = [l for l in self._leases.values() if l.frees_at(self.release_after) < now]
            for held in ended:
                del self._leases[held.token]
                self._waiting.pop(held.token, None)
        return ended

    def clear(self):
        """Every lease, removed (the farm is closing)."""
        with self._lock:
            leases = list(self._leases.values())
            self._leases.clear()
        return leases

    def status(self, now):
        """``(environments in use, leases, frees_in)`` (see :meth:`_frees_in`)."""
        with self._lock:
            return len(self._slots), len(self._leases), self._frees_in(now)

    def _frees_in(self, now, leases=None):
        """Seconds until the first lease holding environments is released if its learner never
        comes back (disconnect or TTL), or None. Call with the lock held."""
        held = [l for l in (self._leases.values() if leases is None else leases) if l.env_ids]
        if not held:
            return None
        return round(max(0.0, min(l.frees_at(self.release_after) for l in held) - now), 1)

    # --- environments ----------------------------------------------------------------------------
    def reserve(self, n, capacity, token=None, borrow_to=None):
        """``n`` new env ids, their room taken now (filled by :meth:`fill` once built);
        ValueError saying why not and when to retry if fewer than ``n`` are free under
        ``capacity``, or under ``borrow_to`` while no other lease waits (module docstring)."""
        with self._lock:
            now = time.time()
            for waiter, since in list(self._waiting.items()):
                if now - since > WAITING_FOR:
                    del self._waiting[waiter]
            others = [w for w in self._waiting if w != token]
            limit = borrow_to if borrow_to is not None and not others else capacity
            free = limit - len(self._slots)
            if n > free:
                if borrow_to is None and token is not None:
                    self._waiting[token] = now
                text = self._refusal(n, free, limit)
                if borrow_to is not None and others:
                    text += ('; nothing lent above capacity while %d other learner(s) wait for '
                             'it' % len(others))
                raise ValueError(text)
            self._waiting.pop(token, None)
            ids = list(range(self._next_id, self._next_id + n))
            self._next_id += n
            for env_id in ids:
                self._slots[env_id] = None
            return ids

    def _refusal(self, n, free, limit):
        """Why ``n`` more cannot be made, and when to retry, as one line (lock held)."""
        now = time.time()
        text = ('farm %s: cannot make %d environments, %d of %d free; %d held by %d leases'
                % (self.label, n, max(free, 0), limit, len(self._slots), len(self._leases)))
        gone = [l for l in self._leases.values() if l.env_ids and l.orphaned_at is not None]
        if gone:
            text += ('; %d of them by learners that disconnected, free in %.0f s'
                     % (sum(len(l.env_ids) for l in gone), self._frees_in(now, gone)))
        else:
            frees_in = self._frees_in(now)
            if frees_in is not None:
                text += ('; all by connected learners (if one is gone, its capacity frees within '
                         '%.0f s)' % frees_in)
        return text

    def fill(self, held, slots):
        """The reserved slots, built, now the lease's."""
        with self._lock:
            for slot in slots:
                self._slots[slot.env_id] = slot
            held.env_ids.extend(slot.env_id for slot in slots)

    def unreserve(self, ids):
        with self._lock:
            for env_id in ids:
                self._slots.pop(env_id, None)

    def owned(self, held, env_ids):
        """The slots of ``env_ids``, each held by ``held`` and named once; ValueError or
        LookupError naming what is wrong otherwise."""
        if not isinstance(env_ids, (list, tuple)):
            raise ValueError('farm %s: env_ids must be a list' % self.label)
        try:
            distinct = len(set(env_ids)) == len(env_ids)  # the per-step check: one set, O(n)
        except TypeError:  # an unhashable id: certainly not ours, refused below
            distinct = True
        twice = [] if distinct else sorted(set(i for i in env_ids if env_ids.count(i) > 1))
        if twice:
            # Two commands to one worker in one call would pair its answers with the wrong
            # requests; releasing an id twice would lose the slot for ever.
            raise ValueError('farm %s: env ids %s appear more than once in one call'
                             % (self.label, twice))
        with self._lock:
            slots = []
            for i in env_ids:
                if i not in held.env_ids:
                    raise LookupError('farm %s: env %r is not in this lease' % (self.label, i))
                slots.append(self._slots[i])
            return slots

    def release(self, held, env_ids):
        """``env_ids`` (owned, checked) no longer the lease's."""
        with self._lock:
            for i in env_ids:
                held.env_ids.remove(i)

    def take(self, env_ids):
        """The slots of ``env_ids`` removed from the books (None for one already gone)."""
        with self._lock:
            return [self._slots.pop(i, None) for i in env_ids]

    def slot(self, env_id):
        """The slot of ``env_id``, or None (for status and tests)."""
        with self._lock:
            return self._slots.get(env_id)

    def swap_worker(self, slot, fresh):
        """Puts ``fresh`` in ``slot`` (which then needs its hello) if the slot is still the
        farm's; False if it is not (its lease was closed, released or reaped meanwhile)."""
        with self._lock:
            current = self._slots.get(slot.env_id) is slot
            if current:
                slot.worker = fresh
            slot.needs_hello = True
        return current

    def worker_pids(self, held):
        with self._lock:
            return dict((str(i), self._slots[i].worker.pid) for i in held.env_ids)
