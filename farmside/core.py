"""farmside/core.py: :class:`Farm`, the verbs a learner calls, and the dispatching core.

The contract of every verb is farm.py's docstring (the farm's one description for its users);
this module keeps the books (farmside/books.py) and talks to the workers (farmside/envworker.py): lockstep
calls send every command first and collect the answers in the order they come
(``_call_all``); the asynchronous verbs are farmside/async_verbs.py's. What follows a worker's answer,
in both modes, is ``_settled`` (counting, recycling, failures) and ``_shaped`` (packed
observations). Runs unmodified on Python 2.7 and 3.6+.
"""
from __future__ import absolute_import

import logging
import multiprocessing
import numbers
import sys
import threading
import time
import uuid

import Pyro4

from common import wire
from farmside.envworker import EnvWorker, WorkerError, WorkerLost, replies
from farmside.async_verbs import AsyncStepping
from farmside.books import (BUILD_TIMEOUT, CALL, RECYCLE_RESETS, RECYCLE_STEPS,  # noqa: F401
                            STEP_TIMEOUT, STRINGS, Lease, Slot, is_number, packed_obs)
from common.protocol import LEASE_TTL, OVERCOMMIT, PROTOCOL, RELEASE_AFTER, is_error

log = logging.getLogger('farm')


def versions():
    found = {'python': '%d.%d.%d' % sys.version_info[:3], 'pyro4': Pyro4.__version__,
             'farm_protocol': PROTOCOL}
    try:
        import msgpack
        found['msgpack'] = '.'.join(str(v) for v in msgpack.version)
    except ImportError:
        pass
    try:
        import numpy
        found['numpy'] = numpy.__version__
    except ImportError:
        pass
    try:  # osim-rl does not carry a __version__; ask the installer's metadata
        from importlib.metadata import version  # novermin (falls back below)
        found['osim-rl'] = version('osim-rl')
    except Exception:
        try:
            import pkg_resources
            found['osim-rl'] = pkg_resources.get_distribution('osim-rl').version
        except Exception:
            found['osim-rl'] = None
    return found


@Pyro4.behavior(instance_mode='single')
class Farm(AsyncStepping):
    """The farm's verbs (farm.py's docstring). Only those marked ``@Pyro4.expose``
    can be called over the wire: ``close`` and ``disconnected`` are the daemon's."""

    def __init__(self, capacity=None, label=None, step_timeout=STEP_TIMEOUT,
                 recycle_steps=RECYCLE_STEPS, recycle_resets=RECYCLE_RESETS,
                 lease_ttl=LEASE_TTL, overcommit=OVERCOMMIT, release_after=RELEASE_AFTER):
        self.capacity = multiprocessing.cpu_count() if capacity is None else int(capacity)
        if self.capacity < 1:
            raise ValueError('capacity must be at least 1, got %r' % (capacity,))
        self.label = label  # host:port, filled in by serve() once the port is known
        self.step_timeout = float(step_timeout)
        self.recycle_steps = int(recycle_steps)
        self.recycle_resets = int(recycle_resets)
        self.lease_ttl = float(lease_ttl)
        self.overcommit = float(overcommit)
        if self.overcommit < 1:
            raise ValueError('overcommit must be at least 1, got %r' % (overcommit,))
        self.release_after = float(release_after)
        self._versions = versions()
        self._leases = {}
        self._slots = {}
        self._next_id = 0
        self._books = threading.Lock()  # guards _leases, _slots, _next_id; never held while waiting
        self._stop = threading.Event()
        self._reaper = threading.Thread(target=self._reap, name='lease-reaper')
        self._reaper.daemon = True
        self._reaper.start()

    # --- status ----------------------------------------------------------------------------------
    @Pyro4.expose
    def info(self):
        import envs
        with self._books:
            in_use = len(self._slots)
            leases = len(self._leases)
            frees_in = self._frees_in(time.time())
        return {'farm': self.label, 'capacity': self.capacity, 'in_use': in_use, 'leases': leases,
                'versions': self._versions, 'envs': envs.names(),
                'step_timeout': self.step_timeout, 'lease_ttl': self.lease_ttl,
                'overcommit': self.overcommit, 'release_after': self.release_after,
                'frees_in': frees_in}

    def _frees_in(self, now, leases=None):
        """Seconds until the first lease holding environments is released if its learner never
        comes back (disconnect or TTL), or None. Call with _books held."""
        held = [l for l in (self._leases.values() if leases is None else leases) if l.env_ids]
        if not held:
            return None
        return round(max(0.0, min(l.frees_at(self.release_after) for l in held) - now), 1)

    # --- leases ----------------------------------------------------------------------------------
    @Pyro4.expose
    def open_lease(self, ttl=None, packed=False):
        """A new lease; ``ttl`` at most the farm's ``lease_ttl`` (None: that maximum). With
        ``packed``, every observation it gets back is a wire.pack'ed float32 array."""
        if ttl is None:
            ttl = self.lease_ttl
        if not is_number(ttl) or not ttl > 0:
            raise ValueError('farm %s: lease ttl must be a number of seconds > 0, got %r'
                             % (self.label, ttl))
        ttl = float(ttl)
        if ttl > self.lease_ttl:
            log.info('lease asked for a ttl of %.0f s: capped at this farm\'s --lease-ttl %.0f s',
                     ttl, self.lease_ttl)
            ttl = self.lease_ttl
        lease = Lease(uuid.uuid4().hex, ttl, bool(packed))
        with self._books:
            self._seen(lease)
            self._leases[lease.token] = lease
        log.info('lease %s... opened (ttl %.0f s%s)', lease.token[:8], ttl,
                 ', packed arrays' if packed else '')
        return lease.token

    @Pyro4.expose
    def renew(self, lease):
        self._lease(lease)
        return True

    @Pyro4.expose
    def close_lease(self, lease):
        with self._books:
            held = self._leases.pop(lease, None)
        if held is None:
            return False
        self._end(held)
        log.info('lease %s... closed', lease[:8])
        return True

    @Pyro4.expose
    def worker_pids(self, lease):
        held = self._lease(lease)
        with self._books:
            return dict((str(i), self._slots[i].worker.pid) for i in held.env_ids)

    # --- environments ----------------------------------------------------------------------------
    @Pyro4.expose
    def make(self, lease, name, kwargs=None, n=1, overcommit=False):
        held = self._lease(lease)
        self._check_make(name, kwargs, n)
        limit = int(self.capacity * (self.overcommit if overcommit else 1))
        with self._books:
            free = limit - len(self._slots)
            if n > free:
                raise ValueError(self._refusal(n, free, limit))
            ids = list(range(self._next_id, self._next_id + n))
            self._next_id += n
            # Reserve the capacity now; the workers are filled in below.
            for env_id in ids:
                self._slots[env_id] = None
        slots = []
        try:
            workers = [EnvWorker(name, dict(kwargs or {}), packed=held.packed) for _ in ids]
            slots = [Slot(env_id, lease, w) for env_id, w in zip(ids, workers)]
            spec = None
            for slot in slots:
                spec = self._hello(slot, BUILD_TIMEOUT)
        except (WorkerError, WorkerLost) as e:
            self._unreserve(ids, slots)
            # Only builtin exceptions cross Pyro4's msgpack serializer with their message intact.
            raise ValueError('farm %s: cannot make %s: %s' % (self.label, name, e))
        except Exception:
            self._unreserve(ids, slots)
            raise
        with self._books:
            for slot in slots:
                self._slots[slot.env_id] = slot
            held.env_ids.extend(ids)
        log.info('lease %s...: %d x %s made (env ids %s)', lease[:8], n, name, ids)
        result = dict(spec)
        result['env_ids'] = ids
        return result

    def _check_make(self, name, kwargs, n):
        """TypeError / ValueError naming the argument that is wrong, before anything starts."""
        if not isinstance(name, STRINGS):
            raise TypeError('farm %s: make: name must be a string (a registered environment '
                            'name), got %r' % (self.label, name))
        if kwargs is not None and (not isinstance(kwargs, dict)
                                   or not all(isinstance(k, STRINGS) for k in kwargs)):
            raise TypeError('farm %s: make: kwargs must be a dict with string keys, got %r'
                            % (self.label, kwargs))
        if isinstance(n, bool) or not isinstance(n, numbers.Integral):
            raise TypeError('farm %s: make: n (how many environments) must be an int, got %r'
                            % (self.label, n))
        if n < 1:
            raise ValueError('farm %s: make: n (how many environments) must be at least 1, '
                             'got %d' % (self.label, n))

    def _refusal(self, n, free, limit):
        """Why ``make`` cannot have ``n`` more, and when to retry, as one line (_books held)."""
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

    def _unreserve(self, ids, slots):
        for slot in slots:
            slot.worker.kill()
        with self._books:
            for env_id in ids:
                self._slots.pop(env_id, None)

    @Pyro4.expose
    def release(self, lease, env_ids):
        held = self._lease(lease)
        self._owned(held, env_ids)
        with self._books:
            for i in env_ids:
                held.env_ids.remove(i)
        self._land(held, env_ids)
        self._drop(env_ids)
        return True

    @Pyro4.expose
    def reset(self, lease, env_ids, seeds=None):
        held = self._lease(lease)
        slots = self._owned(held, env_ids)
        seeds = self._seeds(slots, seeds)
        with held.lock:
            return self._call_all(held, slots, 'reset', seeds)

    def _seeds(self, slots, seeds):
        seeds = list(seeds) if seeds is not None else [None] * len(slots)
        if len(seeds) != len(slots):
            raise ValueError('farm %s: %d seeds for %d environments' % (self.label, len(seeds),
                                                                         len(slots)))
        return seeds

    @Pyro4.expose
    def step(self, lease, env_ids, actions, auto_reset=False):
        held = self._lease(lease)
        slots = self._owned(held, env_ids)
        actions = self._actions(slots, actions, 'step')
        auto_reset = bool(auto_reset)
        with held.lock:
            return self._call_all(held, slots, 'step', [(a, auto_reset) for a in actions])

    def _actions(self, slots, actions, verb):
        """One action per slot: from a list, or the rows of ONE wire.pack'ed float array of
        shape (len(slots), act_dim). ValueError for anything else."""
        if wire.is_packed(actions):
            try:
                array = wire.unpack(actions)
            except ValueError as e:
                raise ValueError('farm %s: %s: actions: %s' % (self.label, verb, e))
            if array.ndim != 2 or array.shape[0] != len(slots) or array.dtype.kind != 'f':
                raise ValueError('farm %s: %s needs packed actions of shape (%d, action size) '
                                 'and a float dtype, got shape %s, dtype %s'
                                 % (self.label, verb, len(slots), list(array.shape),
                                    array.dtype.name))
            return list(array)  # rows: read-only views, copied into each worker's block
        if not isinstance(actions, (list, tuple)) or len(actions) != len(slots):
            raise ValueError('farm %s: %s needs one action per environment (%d), got %r'
                             % (self.label, verb, len(slots), type(actions).__name__))
        return actions

    @Pyro4.expose
    def set_params(self, lease, env_ids, params):
        held = self._lease(lease)
        slots = self._owned(held, env_ids)
        self._check_params(params)
        params = dict((str(k), v) for k, v in params.items())
        with held.lock:
            # Recorded before sending: a worker lost meanwhile is replaced with them (_replace).
            before = [dict(slot.worker.params) for slot in slots]
            for slot in slots:
                slot.worker.params.update(params)
            results = self._call_all(held, slots, 'set_params', [params] * len(slots))
            for slot, result, old in zip(slots, results, before):
                if result is not None and result.get('kind') != 'lost':
                    slot.worker.params = old  # refused: a replacement must not be built with them
            return results

    def _check_params(self, params):
        """ValueError unless ``params`` is plain data: str keys, number/str/bool/list values."""
        def plain(value):
            if isinstance(value, (list, tuple)):
                return all(plain(v) for v in value)
            return isinstance(value, STRINGS + (bool,)) or is_number(value)
        if not isinstance(params, dict):
            raise ValueError('farm %s: set_params: params must be a dict of name -> value, got %r'
                             % (self.label, type(params).__name__))
        for key, value in params.items():
            if not isinstance(key, STRINGS) or not plain(value):
                raise ValueError('farm %s: set_params: parameter %r = %r is not a number, string, '
                                 'bool or list of those' % (self.label, key, value))

    # --- the dispatching core --------------------------------------------------------------------
    def _call_all(self, held, slots, command, args):
        """Lockstep: send every command first, then collect in the order they finish: the
        workers run concurrently. ``args`` are the commands' arguments (``(action, auto_reset)``
        to step). An environment in flight (send/send_reset) gets an 'input' error element."""
        results = self._claim(held, slots, CALL)
        claimed = [k for k, r in enumerate(results) if r is None]
        try:
            sent = []
            for k in claimed:
                slot, arg = slots[k], args[k]
                try:
                    if command == 'reset':
                        self._prepare_reset(slot)
                        slot.worker.send(command, arg)
                    elif command == 'set_params':
                        if slot.needs_hello:  # its hello comes before any other answer
                            self._hello(slot, BUILD_TIMEOUT)
                        slot.worker.send(command, arg)
                    elif slot.needs_hello:
                        raise WorkerError('input', 'environment was lost; reset it before stepping')
                    else:
                        slot.worker.send_step(*arg)
                    sent.append(k)
                except Exception as e:
                    results[k] = self._failure(slot, e)
            deadline = time.time() + self.step_timeout
            for j, outcome in replies([slots[k].worker for k in sent], deadline):
                k = sent[j]
                slot = slots[k]
                result, due = self._settled(slot, command, outcome)
                if due:
                    try:
                        result[0] = self._recycle(slot)
                    except Exception as e:
                        result = self._failure(slot, e)
                results[k] = self._shaped(held, command, result)
        finally:
            self._unclaim(held, [slots[k] for k in claimed])
        return results

    def _settled(self, slot, command, outcome):
        """What follows a worker's reply, in lockstep and asynchronous stepping alike: an error
        becomes the error element (a lost worker is replaced), steps and resets are counted.
        Returns ``(result, due)``: ``due`` when the step ended an episode (auto-reset) and the
        worker has served its quota; the caller then recycles it (lockstep: at once, blocking;
        recv: without holding up the other environments) and replaces ``result[0]``."""
        if isinstance(outcome, Exception):
            return self._failure(slot, outcome), False
        if command == 'step':
            slot.worker.steps += 1
            if 'terminal_observation' in outcome[4]:
                slot.worker.resets += 1
                return outcome, self._due(slot.worker)
        elif command == 'reset':
            slot.worker.resets += 1
        return outcome, False

    def _shaped(self, held, command, result):
        """A packed lease's observations as wire.pack'ed float32 arrays (the shared block's
        results are packed by the worker already; what came through the pipe is packed here)."""
        if not held.packed or command not in ('step', 'reset') or is_error(result):
            return result
        if command == 'reset':
            return packed_obs(result)
        result[0] = packed_obs(result[0])
        info = result[4]
        if isinstance(info, dict) and 'terminal_observation' in info:
            info['terminal_observation'] = packed_obs(info['terminal_observation'])
        return result

    def _claim(self, held, slots, what):
        """Marks each slot busy with ``what``; one not free gets its 'input' error element
        instead (None for those claimed)."""
        results = [None] * len(slots)
        with held.state:
            for k, slot in enumerate(slots):
                if slot.busy is None:
                    slot.busy = what
                else:
                    results[k] = {'error': 'farm %s: env %d %s' % (
                        self.label, slot.env_id,
                        'is in flight: recv its result first' if slot.busy is not CALL
                        else 'is busy with another call of this lease'), 'kind': 'input'}
        return results

    def _unclaim(self, held, slots):
        with held.state:
            for slot in slots:
                slot.busy = None

    def _land(self, held, env_ids):
        """Environments released or dropped with their lease: no longer in flight (a recv
        waiting on them wakes and leaves them)."""
        with held.state:
            for env_id in env_ids:
                flight = held.in_flight.pop(env_id, None)
                if flight is None:
                    continue
                # Slot and Flight refer to each other: left so, the slot's dead worker (and
                # the descriptors of its process) would wait for the cyclic garbage collector.
                flight.slot.busy = None
                if flight.fd is not None:
                    held.watch.remove(flight.fd)
            if held.watch is not None:
                held.watch.nudge()

    def _end(self, held):
        """The end of a lease (closed, expired, released for a gone learner)."""
        # Ended first, then landed: landing nudges every recv waiting on the lease, and each
        # must see the end when it wakes. The other order let a recv wake, find the lease not
        # ended yet, and sleep again with no nudge left to come (a test caught it, rarely).
        with held.state:
            held.ended = True
        self._land(held, list(held.env_ids))
        with held.state:
            if not held.receiving and held.watch is not None:
                held.watch.close()
                held.watch = None
        self._drop(held.env_ids)

    def _due(self, worker):
        return worker.steps >= self.recycle_steps or worker.resets >= self.recycle_resets

    def _replace(self, slot):
        """A fresh worker for ``slot`` (the old one closed or killed); it must say hello first."""
        old = slot.worker
        if old.alive():
            old.close()
        else:
            old.kill()  # reaps it and closes the pipe
        # builds while the caller goes on
        fresh = EnvWorker(old.name, old.kwargs, old.params, packed=old.packed)
        with self._books:
            current = self._slots.get(slot.env_id) is slot
            if current:
                slot.worker = fresh
            slot.needs_hello = True
        if not current:
            # The lease was closed, released or reaped while this slot's call was in flight, and
            # _drop has closed the old worker: a replacement would belong to nobody (it leaked
            # two workers in a drill where a frozen farm's step timed out as its lease closed).
            fresh.kill()

    def _recycle_if_due(self, slot):
        if not slot.needs_hello and self._due(slot.worker):
            log.info('env %d: recycling worker %s after %d steps, %d resets', slot.env_id,
                     slot.worker.pid, slot.worker.steps, slot.worker.resets)
            self._replace(slot)

    def _recycle(self, slot):
        """Replace a worker that has served its quota; returns the new one's first observation."""
        self._recycle_if_due(slot)
        self._hello(slot, BUILD_TIMEOUT)
        slot.worker.send('reset', None)
        obs = slot.worker.receive(time.time() + self.step_timeout)
        slot.worker.resets += 1
        return obs

    def _prepare_reset(self, slot):
        self._recycle_if_due(slot)
        if slot.needs_hello:
            self._hello(slot, BUILD_TIMEOUT)

    def _hello(self, slot, timeout):
        spec = slot.worker.hello(timeout)
        slot.needs_hello = False
        return spec

    def _failure(self, slot, error):
        # A worker that answered with an error is intact; anything else (died, timed out, or an
        # unexpected failure while talking to it) means it is replaced.
        kind = error.kind if isinstance(error, WorkerError) else 'lost'
        if kind == 'lost' or not slot.worker.alive():
            kind = 'lost'
            log.warning('env %d (%s) lost: %s', slot.env_id, slot.worker.name, error)
            slot.worker.kill()
            self._replace(slot)
        return {'error': 'farm %s, env %d (%s): %s' % (self.label, slot.env_id, slot.worker.name,
                                                       error), 'kind': kind}

    # --- bookkeeping -----------------------------------------------------------------------------
    def _lease(self, token):
        with self._books:
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

    def _seen(self, held):
        """Remember the connection this call came on (see disconnected). Call with _books
        held (every call of a learner comes here: one lock round, not two)."""
        conn = getattr(Pyro4.current_context, 'client', None)
        if conn is not None:
            held.conns.add(conn)
            held.orphaned_at = None

    def disconnected(self, conn):
        """Pyro4 (farm_daemon.FarmDaemon) says a client connection closed. A lease none of whose
        connections is open any more is released ``release_after`` seconds later (_reap) unless a
        call comes meanwhile: its learner died or closed without closing the lease."""
        now = time.time()
        with self._books:
            for held in self._leases.values():
                if conn in held.conns:
                    held.conns.discard(conn)
                    if not held.conns:
                        held.orphaned_at = now
                        log.info('lease %s...: its learner disconnected; its %d environments '
                                 'are released in %.0f s unless it calls again', held.token[:8],
                                 len(held.env_ids), self.release_after)

    def _owned(self, held, env_ids):
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
        with self._books:
            slots = []
            for i in env_ids:
                if i not in held.env_ids:
                    raise LookupError('farm %s: env %r is not in this lease' % (self.label, i))
                slots.append(self._slots[i])
            return slots

    def _drop(self, env_ids):
        with self._books:
            slots = [self._slots.pop(i, None) for i in env_ids]
        for slot in slots:
            if slot is not None:
                slot.worker.close()

    def _reap(self):
        while not self._stop.wait(1.0):
            now = time.time()
            with self._books:
                ended = [l for l in self._leases.values()
                         if l.frees_at(self.release_after) < now]
                for held in ended:
                    del self._leases[held.token]
            for held in ended:
                if held.expires < now:
                    log.warning('lease %s... expired: releasing %d environments', held.token[:8],
                                len(held.env_ids))
                else:
                    log.warning('lease %s...: its learner disconnected %.0f s ago and has not '
                                'come back: releasing %d environments', held.token[:8],
                                now - held.orphaned_at, len(held.env_ids))
                self._end(held)

    def close(self):
        """Kill every worker. The daemon is closed by whoever owns it."""
        self._stop.set()
        with self._books:
            leases = list(self._leases.values())
            self._leases.clear()
        for held in leases:
            self._end(held)
