"""farmside/core.py: :class:`Farm`, the verbs a learner calls, each a short story over the farm's parts.

The contract of every verb is farm.py's docstring (the farm's one description for its users).
The Farm owns its parts and hands each what it needs; none reaches into another:

- :class:`farmside.ledger.Ledger`: who holds what (leases, slots, connections);
- :class:`farmside.lifecycle.WorkerLife`: the workers' life (start, hello, settle an answer,
  recycle, replace);
- :class:`farmside.dispatch.Dispatcher`: commands to a lease's workers, answers back
  (lockstep's ``call_all``, claims, packed observations);
- :class:`farmside.async_verbs.AsyncStepping`: send/recv, over the same three.

Following one lockstep step: ``Farm.step`` -> ``Ledger.lease``/``owned`` ->
``Dispatcher.call_all`` -> the workers (farmside/envworker.py) -> ``WorkerLife.settled`` ->
``Dispatcher.shaped``. Runs unmodified on Python 2.7 and 3.6+.
"""
from __future__ import absolute_import

import logging
import numbers
import sys
import threading
import time
import uuid

import Pyro4

from common.protocol import LEASE_TTL, OVERCOMMIT, PROTOCOL, RELEASE_AFTER
from farmside.async_verbs import AsyncStepping
from farmside.books import (BUILD_TIMEOUT, RECYCLE_RESETS, RECYCLE_STEPS, STEP_TIMEOUT,
                            STRINGS, Lease, Slot, is_number)
from farmside.dispatch import Dispatcher
from farmside.envworker import WorkerError, WorkerLost
from farmside.ledger import Ledger
from farmside.lifecycle import WorkerLife
from farmside import rendezvous

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
class Farm(object):
    """The farm's verbs (farm.py's docstring). Only those marked ``@Pyro4.expose``
    can be called over the wire: ``close`` and ``disconnected`` are the daemon's."""

    def __init__(self, capacity=None, label=None, step_timeout=STEP_TIMEOUT,
                 recycle_steps=RECYCLE_STEPS, recycle_resets=RECYCLE_RESETS,
                 lease_ttl=LEASE_TTL, overcommit=OVERCOMMIT, release_after=RELEASE_AFTER):
        self.capacity = rendezvous.usable_cpus()[0] if capacity is None else int(capacity)
        if self.capacity < 1:
            raise ValueError('capacity must be at least 1, got %r' % (capacity,))
        self.lease_ttl = float(lease_ttl)
        self.overcommit = float(overcommit)
        if self.overcommit < 1:
            raise ValueError('overcommit must be at least 1, got %r' % (overcommit,))
        self.ledger = Ledger(release_after)
        self.life = WorkerLife(self.ledger, step_timeout, recycle_steps, recycle_resets)
        self.dispatcher = Dispatcher(self.life)
        self.stepping = AsyncStepping(self.ledger, self.dispatcher)
        self.label = label  # host:port, filled in by serve() once the port is known
        self.versions = versions()
        self._stop = threading.Event()
        self._reaper = threading.Thread(target=self._reap, name='lease-reaper')
        self._reaper.daemon = True
        self._reaper.start()

    @property
    def label(self):
        """host:port, in every error message (the ledger keeps it for all the parts)."""
        return self.ledger.label

    @label.setter
    def label(self, value):
        self.ledger.label = value

    @property
    def step_timeout(self):
        return self.life.step_timeout

    @property
    def release_after(self):
        return self.ledger.release_after

    # --- status ----------------------------------------------------------------------------------
    @Pyro4.expose
    def info(self):
        import envs
        in_use, leases, frees_in = self.ledger.status(time.time())
        return {'farm': self.label, 'capacity': self.capacity, 'in_use': in_use, 'leases': leases,
                'versions': self.versions, 'envs': envs.names(),
                'step_timeout': self.step_timeout, 'lease_ttl': self.lease_ttl,
                'overcommit': self.overcommit, 'release_after': self.release_after,
                'frees_in': frees_in}

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
        self.ledger.open(lease)
        log.info('lease %s... opened (ttl %.0f s%s)', lease.token[:8], ttl,
                 ', packed arrays' if packed else '')
        return lease.token

    @Pyro4.expose
    def renew(self, lease):
        self.ledger.lease(lease)
        return True

    @Pyro4.expose
    def close_lease(self, lease):
        held = self.ledger.close(lease)
        if held is None:
            return False
        self._end(held)
        log.info('lease %s... closed', lease[:8])
        return True

    @Pyro4.expose
    def worker_pids(self, lease):
        return self.ledger.worker_pids(self.ledger.lease(lease))

    # --- environments ----------------------------------------------------------------------------
    @Pyro4.expose
    def make(self, lease, name, kwargs=None, n=1, overcommit=False):
        held = self.ledger.lease(lease)
        self._check_make(name, kwargs, n)
        ids = self.ledger.reserve(n, self.capacity, lease, int(self.capacity * self.overcommit)
                                  if overcommit else None)
        slots = []
        try:
            slots = [Slot(env_id, lease, self.life.start(name, kwargs, held.packed))
                     for env_id in ids]
            spec = None
            for slot in slots:
                spec = self.life.hello(slot, BUILD_TIMEOUT)
        except (WorkerError, WorkerLost) as e:
            self._unreserve(ids, slots)
            # Only builtin exceptions cross Pyro4's msgpack serializer with their message intact.
            raise ValueError('farm %s: cannot make %s: %s' % (self.label, name, e))
        except Exception:
            self._unreserve(ids, slots)
            raise
        self.ledger.fill(held, slots)
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

    def _unreserve(self, ids, slots):
        for slot in slots:
            slot.worker.kill()
        self.ledger.unreserve(ids)

    @Pyro4.expose
    def release(self, lease, env_ids):
        held = self.ledger.lease(lease)
        self.ledger.owned(held, env_ids)
        self.ledger.release(held, env_ids)
        self.dispatcher.land(held, env_ids)
        self._drop(env_ids)
        return True

    # --- lockstep stepping -----------------------------------------------------------------------
    @Pyro4.expose
    def reset(self, lease, env_ids, seeds=None):
        held = self.ledger.lease(lease)
        slots = self.ledger.owned(held, env_ids)
        seeds = self.dispatcher.seeds(slots, seeds)
        with held.lock:
            return self.dispatcher.call_all(held, slots, 'reset', seeds)

    @Pyro4.expose
    def step(self, lease, env_ids, actions, auto_reset=False):
        held = self.ledger.lease(lease)
        slots = self.ledger.owned(held, env_ids)
        actions = self.dispatcher.actions(slots, actions, 'step')
        auto_reset = bool(auto_reset)
        with held.lock:
            return self.dispatcher.call_all(held, slots, 'step',
                                            [(a, auto_reset) for a in actions])

    @Pyro4.expose
    def set_params(self, lease, env_ids, params):
        held = self.ledger.lease(lease)
        slots = self.ledger.owned(held, env_ids)
        self._check_params(params)
        params = dict((str(k), v) for k, v in params.items())
        with held.lock:
            # Recorded before sending: a worker lost meanwhile is replaced with them
            # (WorkerLife.replace).
            before = [dict(slot.worker.params) for slot in slots]
            for slot in slots:
                slot.worker.params.update(params)
            results = self.dispatcher.call_all(held, slots, 'set_params',
                                               [params] * len(slots))
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

    # --- asynchronous stepping (farmside/async_verbs.py) -----------------------------------------
    @Pyro4.expose
    def send(self, lease, env_ids, actions, auto_reset=True):
        """Hands each environment its action and returns at once (AsyncStepping.send)."""
        return self.stepping.send(self.ledger.lease(lease), env_ids, actions, auto_reset)

    @Pyro4.expose
    def send_reset(self, lease, env_ids, seeds=None):
        """Resets each environment without waiting (AsyncStepping.send_reset)."""
        return self.stepping.send_reset(self.ledger.lease(lease), env_ids, seeds)

    @Pyro4.expose
    @Pyro4.oneway
    def post(self, lease, env_ids, actions, auto_reset=True):
        """``send`` as a one-way call (AsyncStepping.post)."""
        self.stepping.post(self.ledger.lease(lease), env_ids, actions, auto_reset)

    @Pyro4.expose
    @Pyro4.oneway
    def post_reset(self, lease, env_ids, seeds=None):
        """``send_reset`` as a one-way call (AsyncStepping.post_reset)."""
        self.stepping.post_reset(self.ledger.lease(lease), env_ids, seeds)

    @Pyro4.expose
    def recv(self, lease, min_count=1, timeout=1.0, wait=False, linger=0.0):
        """Results of environments in flight, in the order they finished (AsyncStepping.recv)."""
        return self.stepping.recv(self.ledger.lease(lease), min_count, timeout, wait, linger)

    # --- the end of leases -----------------------------------------------------------------------
    def _end(self, held):
        """The end of a lease (closed, expired, released for a gone learner)."""
        # Ended first, then landed: landing nudges every recv waiting on the lease, and each
        # must see the end when it wakes. The other order let a recv wake, find the lease not
        # ended yet, and sleep again with no nudge left to come (a test caught it, rarely).
        with held.state:
            held.ended = True
        self.dispatcher.land(held, list(held.env_ids))
        with held.state:
            if not held.receiving and held.watch is not None:
                held.watch.close()
                held.watch = None
        self._drop(held.env_ids)

    def _drop(self, env_ids):
        for slot in self.ledger.take(env_ids):
            if slot is not None:
                slot.worker.close()

    def disconnected(self, conn):
        """Pyro4 (farmside/daemon.py's FarmDaemon) says a client connection closed. A lease none
        of whose connections is open any more is released ``release_after`` seconds later
        (_reap) unless a call comes meanwhile: its learner died or closed without closing it."""
        for held in self.ledger.disconnected(conn):
            log.info('lease %s...: its learner disconnected; its %d environments are released '
                     'in %.0f s unless it calls again', held.token[:8], len(held.env_ids),
                     self.release_after)

    def _reap(self):
        while not self._stop.wait(1.0):
            now = time.time()
            for held in self.ledger.due_for_release(now):
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
        for held in self.ledger.clear():
            self._end(held)
