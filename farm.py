#!/usr/bin/env python
"""farm.py: serve a pool of environments to learners on other machines (or this one) over Pyro4.

    python farm.py [--host H] [--port P] [--capacity N] [--key K] [--tls-cert F --tls-key F]
                   [--lease-ttl S] [--release-after S] [--overcommit X] ...

One OS process per environment (envworker.py); this daemon only dispatches, times out, replaces
and recycles workers, and keeps the books of who holds what.

The verbs, all taking and returning plain data (msgpack; pickle is never accepted):

- ``info()``: capacity, what is in use, versions, known environment names, the farm's policies
  (``lease_ttl``, ``overcommit``, ``release_after``), and ``frees_in``: seconds until the next held
  capacity is released if its learner never comes back (None when nothing is held).
- ``open_lease(ttl, packed=False)`` -> lease token. A learner's environments belong to its
  lease; every call renews it; a lease not renewed for ``ttl`` seconds expires and its
  environments are killed, so a crashed learner never locks capacity. ``ttl`` is capped at the
  farm's ``--lease-ttl`` (the operator's policy, not the caller's). Tokens are random: nobody
  can name another's lease. A lease whose learner has disconnected (every connection that used
  it closed: Pyro4 tells the daemon) and has not called again for ``--release-after`` seconds is
  released too, long before its TTL: a killed learner's capacity comes back in seconds. With
  ``packed``, every observation the lease gets back (reset results, step results' obs and
  ``terminal_observation``) is a wire.pack'ed float32 array (raw bytes as msgpack bin) instead
  of a list of floats.
- ``make(lease, name, kwargs, n, overcommit)`` -> ``{'env_ids', 'observation_space',
  'action_space', 'max_episode_steps'}``: n workers of environment ``name`` (a registered name,
  never a module). ``overcommit``: the learner is taking over a lost farm's environments and may
  go above capacity, as far as the farm's ``--overcommit`` factor allows.
- ``reset(lease, env_ids, seeds)`` / ``step(lease, env_ids, actions, auto_reset)``: one call for
  all of a learner's environments on this farm, stepped concurrently. With ``auto_reset`` an
  environment whose episode ended is reset at once: its ``obs`` is the next episode's first and
  ``info['terminal_observation']`` the ended one's last. Each element of the answer is either the
  result (``obs`` for reset, ``[obs, reward, terminated, truncated, info]`` for step) or
  ``{'error': message, 'kind': 'input' | 'env' | 'lost'}``: one environment's failure never fails
  the others. ``'lost'``: its worker died or exceeded the step timeout and has been replaced; reset
  it. ``'env'``: the simulation raised; reset it. ``'input'``: the caller's action was bad.
  An env id named twice in one call is refused (ValueError): its worker would get two commands.
  Actions (here and in ``send``) are a list of lists, or ONE wire.pack'ed float array of shape
  (number of env ids, action size).
- Asynchronous stepping: ``send(lease, env_ids, actions, auto_reset=True)`` and
  ``send_reset(lease, env_ids, seeds)`` hand the environments their commands and return at once
  (one element per environment: None, or the error dict; a worker found dead is 'lost' at once);
  ``recv(lease, min_count=1, timeout=1.0)`` -> ``[[env_id, result], ...]`` in the order they
  finished (results as from step and reset, auto-reset included), as soon as ``min(min_count,
  number in flight)`` are ready, with every other one ready by then; at ``timeout`` with what is
  there; ``[]`` at once when nothing is in flight. A step or reset past the step timeout comes
  back 'lost' (worker replaced). An environment is in flight from send/send_reset until recv
  hands its result over; any other call naming it gets an 'input' error element, release and
  close_lease drop it anyway. send and recv may run at the same time on different connections
  (recv wakes for what is sent while it waits); one recv per lease at a time.
- ``set_params(lease, env_ids, params)``: environment parameters changed without rebuilding the
  environments (a curriculum: a target speed, a difficulty). ``params`` is a dict of str -> number,
  str, bool or list of those; each environment's adapter declares the names it accepts (others are
  refused with the accepted ones named). They take effect at each environment's next reset, and
  a worker replaced after a loss or recycled keeps them. One element per environment: None, or
  the error dict as for reset.
- ``release(lease, env_ids)``, ``close_lease(lease)``, ``renew(lease)``, ``worker_pids(lease)``.

Security: without a key the farm listens on loopback only; beyond loopback a shared key (Pyro4's
HMAC) is required, and callers without it are refused (and logged, see farm_daemon.py). The key
authenticates callers and protects every message against tampering; it does not hide the data.
Beyond a trusted LAN, add TLS (``--tls-cert``/``--tls-key``; the learner trusts the CA file in
``FARM_TLS_CA``). Connections that never finish their handshake cost no thread and are closed
after ``--handshake-timeout`` (farm_daemon.py).

Runs unmodified on Python 2.7 and 3.6+.
"""
from __future__ import absolute_import, print_function

import argparse
import errno
import fcntl
import logging
import math
import multiprocessing
import numbers
import os
import select
import signal
import socket
import sys
import threading
import time
import uuid

import numpy
import Pyro4

import farm_compat
import farm_daemon
import logformat
import wire
from envworker import SPIN_SECONDS, EnvWorker, WorkerError, WorkerLost, replies
# What the learner must agree on lives in wire.py; these names stay importable from here.
from wire import DEFAULT_PORT, KEY_ENV, OBJECT_ID, PROTOCOL  # noqa: F401

# --- configuration -------------------------------------------------------------------------------
STEP_TIMEOUT = 30.0          # seconds one step or reset may take before the worker is replaced
BUILD_TIMEOUT = 120.0        # seconds to build an environment (OpenSim: 0.1-0.4 s, but cold imports)
LEASE_TTL = 60.0             # seconds a lease lives without any call; also the most a caller gets
RECYCLE_STEPS = 100000       # a worker is replaced at the next reset after this many steps...
RECYCLE_RESETS = 500         # ...or this many resets (osim-rl issues #58, #176: leaks, slowdowns)
# How far above capacity a learner may go when it takes over a lost farm's environments
# (make(..., overcommit=True)). 2: a learner spread evenly over two farms that loses one keeps
# all its environments on the other (at half speed each, two processes per core) until the lost
# farm answers again and they move back; with more farms a loss needs less (n/(n-1)). 1 refuses
# it: that learner then stops when either farm dies. More than 2 only slows everything down.
OVERCOMMIT = 2.0
# Seconds after a lease's last connection closed before its environments are released. More
# than the farmer's keep-alive (10 s): a farmer whose connection broke reconnects at its next call.
RELEASE_AFTER = 15.0
KEEPALIVE_EVERY = 10.0       # the farmer's longest renewal interval (farmer.py): see RELEASE_AFTER

log = logging.getLogger('farm')


def configure_pyro():
    """msgpack only: pickle (and serpent's eval-like paths) are refused at the protocol level."""
    farm_compat.apply()
    Pyro4.config.SERIALIZER = 'msgpack'
    Pyro4.config.SERIALIZERS_ACCEPTED = set(['msgpack'])
    Pyro4.config.SERVERTYPE = 'thread'
    # One thread per connected learner (a farmer holds one or two per farm); connections still
    # shaking hands hold one for at most the handshake timeout (farm_daemon.py).
    Pyro4.config.THREADPOOL_SIZE = 128
    Pyro4.config.THREADPOOL_SIZE_MIN = 8
    Pyro4.config.DETAILED_TRACEBACK = False


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


class Slot(object):
    """One leased environment: its worker, whether it needs a reset before stepping, and what
    it is busy with (``busy``: None, ``CALL`` during a lockstep call, or its :class:`Flight`
    from send/send_reset until recv hands the result over; changed under its lease's ``state``)."""

    def __init__(self, env_id, lease, worker):
        self.env_id = env_id
        self.lease = lease
        self.worker = worker
        self.needs_hello = True
        self.busy = None


CALL = 'call'  # Slot.busy during a lockstep call (reset, step, set_params)


class Flight(object):
    """An environment sent off by send/send_reset, until recv hands its result over.

    ``stage``: ``'reply'`` (waiting for the worker's answer to ``command``) or ``'hello'``
    (waiting for a fresh worker to be built, then reset with ``seed``: a replaced or recycled
    worker). ``outcome``: a step's result held back while its worker is recycled (the reset's
    observation replaces its obs). ``worker``: whose pipe to watch; ``deadline``: when it is lost.
    """
    __slots__ = ('slot', 'command', 'stage', 'seed', 'outcome', 'worker', 'deadline', 'sent',
                 'fd')

    def __init__(self, slot, command, stage, deadline, seed=None):
        self.slot = slot
        self.command = command
        self.stage = stage
        self.seed = seed
        self.outcome = None
        self.worker = slot.worker
        self.deadline = deadline
        self.sent = time.time()
        self.fd = None  # the pipe watched for its answer (Watch)


class Lease(object):
    def __init__(self, token, ttl, packed=False):
        self.token = token
        self.ttl = ttl
        self.packed = packed          # observations go back as wire.pack'ed float32 arrays
        self.expires = time.time() + ttl
        self.env_ids = []
        self.lock = threading.Lock()  # one lockstep call at a time per learner
        self.conns = set()            # the Pyro4 connections that called with this lease, open
        self.orphaned_at = None       # when the last of them closed (None: one is open, or none
                                      # was ever seen, as for a Farm called in-process)
        # Asynchronous stepping. ``state`` guards the rest and every Slot.busy of the lease; it
        # is held for bookkeeping only, never while waiting or talking to a worker.
        self.state = threading.Lock()
        self.in_flight = {}           # env id -> Flight
        self.receiving = False        # a recv is running (one at a time)
        self.watch = None             # the Watch of in-flight pipes (made at the first send)
        self.ended = False            # closed, released whole or reaped

    def frees_at(self, release_after):
        """When this lease is released if its learner never calls again."""
        if self.orphaned_at is None:
            return self.expires
        return min(self.expires, self.orphaned_at + release_after)


class Watch(object):
    """The pipes of a lease's environments in flight, which its recv waits on.

    With epoll (Linux), send adds a worker's pipe to the very set a waiting recv sleeps on:
    the recv is not woken for it (a wake-up per send saved), and one wake-up reports every pipe
    that became readable meanwhile. Without epoll, the recv waits in poll() on a copy of the set,
    and send wakes it through the self-pipe to take the new pipe in. The self-pipe also wakes a
    recv when environments are released or the lease ends. All methods but ``wait`` are called
    with the lease's ``state`` held.
    """

    def __init__(self):
        self.fds = {}  # fd -> Flight
        self.wake_r, self.wake_w = os.pipe()
        for fd in (self.wake_r, self.wake_w):
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
        self.epoll = None
        if hasattr(select, 'epoll'):
            self.epoll = select.epoll()
            self.epoll.register(self.wake_r, select.EPOLLIN)

    def add(self, fd, flight, receiving):
        self.fds[fd] = flight
        if self.epoll is not None:
            try:
                self.epoll.register(fd, select.EPOLLIN)
            except (IOError, OSError) as e:
                if e.errno != errno.EEXIST:
                    raise
                self.epoll.modify(fd, select.EPOLLIN)
        elif receiving:
            self.nudge()

    def remove(self, fd):
        self.fds.pop(fd, None)
        self.forget(fd)

    def forget(self, fd):
        if self.epoll is not None:
            try:
                self.epoll.unregister(fd)
            except (IOError, OSError, ValueError):  # closed already: the kernel dropped it
                pass

    def nudge(self):
        try:
            os.write(self.wake_w, b'.')
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):  # full: it will wake anyway
                raise

    def wait(self, timeout, fds=None):
        """The readable fds among those watched (``fds``: their snapshot, for poll), or []
        after ``timeout`` seconds (None: no limit). The self-pipe is drained, not returned."""
        if self.epoll is not None:
            try:
                events = self.epoll.poll(-1 if timeout is None else timeout)
            except (IOError, OSError) as e:  # EINTR (Python 2.7 does not retry)
                if e.errno != errno.EINTR:
                    raise
                return []
        else:
            poller = select.poll()
            poller.register(self.wake_r, select.POLLIN)
            for fd in fds:
                poller.register(fd, select.POLLIN)
            try:
                events = poller.poll(None if timeout is None
                                     else int(math.ceil(timeout * 1000.0)))
            except select.error as e:
                if e.args[0] != errno.EINTR:
                    raise
                return []
        ready = []
        for fd, _ in events:
            if fd == self.wake_r:
                _drain(fd)
            else:
                ready.append(fd)
        return ready

    def close(self):
        if self.epoll is not None:
            self.epoll.close()
        os.close(self.wake_r)
        os.close(self.wake_w)


@Pyro4.expose
@Pyro4.behavior(instance_mode='single')
class Farm(object):
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
    def open_lease(self, ttl=None, packed=False):
        """A new lease; ``ttl`` at most the farm's ``lease_ttl`` (None: that maximum). With
        ``packed``, every observation it gets back is a wire.pack'ed float32 array."""
        if ttl is None:
            ttl = self.lease_ttl
        if not _is_number(ttl) or not ttl > 0:
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

    def renew(self, lease):
        self._lease(lease)
        return True

    def close_lease(self, lease):
        with self._books:
            held = self._leases.pop(lease, None)
        if held is None:
            return False
        self._end(held)
        log.info('lease %s... closed', lease[:8])
        return True

    def worker_pids(self, lease):
        held = self._lease(lease)
        with self._books:
            return dict((str(i), self._slots[i].worker.pid) for i in held.env_ids)

    # --- environments ----------------------------------------------------------------------------
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
        if not isinstance(name, _STRINGS):
            raise TypeError('farm %s: make: name must be a string (a registered environment '
                            'name), got %r' % (self.label, name))
        if kwargs is not None and (not isinstance(kwargs, dict)
                                   or not all(isinstance(k, _STRINGS) for k in kwargs)):
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

    def release(self, lease, env_ids):
        held = self._lease(lease)
        self._owned(held, env_ids)
        with self._books:
            for i in env_ids:
                held.env_ids.remove(i)
        self._land(held, env_ids)
        self._drop(env_ids)
        return True

    def reset(self, lease, env_ids, seeds=None):
        held = self._lease(lease)
        slots = self._owned(held, env_ids)
        seeds = list(seeds) if seeds is not None else [None] * len(slots)
        if len(seeds) != len(slots):
            raise ValueError('farm %s: %d seeds for %d environments' % (self.label, len(seeds),
                                                                         len(slots)))
        with held.lock:
            return self._call_all(held, slots, 'reset', seeds)

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
            return isinstance(value, _STRINGS + (bool,)) or _is_number(value)
        if not isinstance(params, dict):
            raise ValueError('farm %s: set_params: params must be a dict of name -> value, got %r'
                             % (self.label, type(params).__name__))
        for key, value in params.items():
            if not isinstance(key, _STRINGS) or not plain(value):
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
        if not held.packed or command not in ('step', 'reset') or _is_error(result):
            return result
        if command == 'reset':
            return _packed_obs(result)
        result[0] = _packed_obs(result[0])
        info = result[4]
        if isinstance(info, dict) and 'terminal_observation' in info:
            info['terminal_observation'] = _packed_obs(info['terminal_observation'])
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

    # --- asynchronous stepping -------------------------------------------------------------------
    def send(self, lease, env_ids, actions, auto_reset=True):
        """Hands each environment its action and returns at once: one element per environment,
        None (stepping now; its result comes from recv) or the error dict. A worker found dead
        is replaced and its element is the 'lost' error at once."""
        held = self._lease(lease)
        slots = self._owned(held, env_ids)
        actions = self._actions(slots, actions, 'send')
        auto_reset = bool(auto_reset)
        results = self._claim(held, slots, CALL)
        flights = []
        for k, slot in enumerate(slots):
            if results[k] is not None:
                continue
            try:
                if slot.needs_hello:
                    raise WorkerError('input', 'environment was lost; reset it before stepping')
                slot.worker.send_step(actions[k], auto_reset)
                flights.append(Flight(slot, 'step', 'reply', time.time() + self.step_timeout))
            except Exception as e:
                self._unclaim(held, [slot])
                results[k] = self._failure(slot, e)
        self._launch(held, flights)
        return results

    def send_reset(self, lease, env_ids, seeds=None):
        """Resets each environment without waiting; its first observation comes from recv.
        A worker due for recycling, or replaced after a loss, is rebuilt first (also without
        waiting: recv sends the reset once the new worker is up)."""
        held = self._lease(lease)
        slots = self._owned(held, env_ids)
        seeds = list(seeds) if seeds is not None else [None] * len(slots)
        if len(seeds) != len(slots):
            raise ValueError('farm %s: %d seeds for %d environments' % (self.label, len(seeds),
                                                                         len(slots)))
        results = self._claim(held, slots, CALL)
        flights = []
        for k, slot in enumerate(slots):
            if results[k] is not None:
                continue
            try:
                self._recycle_if_due(slot)
                now = time.time()
                if slot.needs_hello:
                    flights.append(Flight(slot, 'reset', 'hello', now + BUILD_TIMEOUT, seeds[k]))
                else:
                    slot.worker.send('reset', seeds[k])
                    flights.append(Flight(slot, 'reset', 'reply', now + self.step_timeout))
            except Exception as e:
                self._unclaim(held, [slot])
                results[k] = self._failure(slot, e)
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

    def recv(self, lease, min_count=1, timeout=1.0):
        """``[[env_id, result], ...]`` of environments in flight, in the order they finished:
        as soon as ``min(min_count, number in flight)`` are ready, with every other one ready by
        then; at ``timeout`` seconds (None: no limit) with whatever is ready. A result is a
        step's ``[obs, reward, terminated, truncated, info]``, a reset's ``obs``, or the error
        dict (``'lost'`` past the step timeout: the worker is replaced; reset it)."""
        held = self._lease(lease)
        if isinstance(min_count, bool) or not isinstance(min_count, numbers.Integral) \
                or min_count < 0:
            raise ValueError('farm %s: recv: min_count must be an int >= 0, got %r'
                             % (self.label, min_count))
        if timeout is not None and (not _is_number(timeout) or not timeout >= 0):
            raise ValueError('farm %s: recv: timeout must be a number of seconds >= 0 or None, '
                             'got %r' % (self.label, timeout))
        with held.state:
            if held.receiving:
                raise ValueError('farm %s: recv: another recv is running on this lease (one at '
                                 'a time)' % self.label)
            if not held.in_flight:
                return []
            held.receiving = True
        try:
            return self._receive(held, min_count, timeout)
        finally:
            with held.state:
                held.receiving = False
                if held.ended and held.watch is not None:
                    held.watch.close()
                    held.watch = None

    def _receive(self, held, min_count, timeout):
        end = None if timeout is None else time.time() + timeout
        out = []
        watch = held.watch
        while True:
            now = time.time()
            with held.state:
                flights = list(held.in_flight.values())
                if not flights:
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
            soonest = min(f.deadline for f in flights)
            if end is not None:
                soonest = min(soonest, end)
            if sweep:
                fds = watch.wait(0, snapshot)
            else:
                fds = self._spin(watch, flights, now, snapshot)
                if not fds:
                    fds = watch.wait(max(0.0, soonest - time.time()), snapshot)
            ready = []
            with held.state:
                for fd in fds:
                    flight = watch.fds.get(fd)
                    if flight is None:  # not ours any more: never report it again
                        watch.forget(fd)
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
            _yield_cpu()

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
                self._hello(slot, max(0.0, flight.deadline - time.time()))
                slot.worker.send('reset', flight.seed)
            except Exception as e:
                return self._failure(slot, e)
            flight.stage, flight.worker = 'reply', slot.worker
            flight.sent = time.time()
            flight.deadline = flight.sent + self.step_timeout
            return None
        outcome = flight.worker._timed_out() if late else flight.worker._take()
        if flight.outcome is not None:  # the reset after recycling: the episode's first obs
            if isinstance(outcome, Exception):
                return self._failure(slot, outcome)
            slot.worker.resets += 1
            result, flight.outcome = flight.outcome, None
            result[0] = outcome
            return self._shaped(held, 'step', result)
        if flight.command == 'step' and not late:
            flight.worker.last_seconds = time.time() - flight.sent
        result, due = self._settled(slot, flight.command, outcome)
        if not due:
            return self._shaped(held, flight.command, result)
        try:
            self._recycle_if_due(slot)  # its successor builds while the others step
        except Exception as e:
            return self._failure(slot, e)
        flight.stage, flight.seed, flight.outcome, flight.worker = 'hello', None, result, \
            slot.worker
        flight.deadline = time.time() + BUILD_TIMEOUT
        return None

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
        self._land(held, list(held.env_ids))
        with held.state:
            held.ended = True
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


_STRINGS = (str, type(u''))  # msgpack gives Python 2.7 unicode for a Python 3 peer's str


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_error(result):
    return isinstance(result, dict) and 'error' in result and 'kind' in result and len(result) == 2


def _packed_obs(obs):
    """A list observation as a packed float32 array (already packed, or not numeric: as is)."""
    if not isinstance(obs, list):
        return obs
    try:
        array = numpy.asarray(obs, dtype=numpy.float32)
    except (TypeError, ValueError):
        return obs
    return wire.pack(array)


_yield_cpu = getattr(os, 'sched_yield', lambda: None)  # Python 2.7 has none: a plain spin


def _drain(fd):
    try:
        while os.read(fd, 4096):
            pass
    except OSError as e:
        if e.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
            raise


# --- serving -------------------------------------------------------------------------------------
def is_loopback(host):
    try:
        return socket.gethostbyname(host).startswith('127.')
    except socket.error:
        return False


def _watch_parent(pid, daemon):
    """Stop the daemon when process ``pid`` is gone (a learner that started this farm and died
    without closing it, e.g. killed by SIGTERM or SIGKILL, whose atexit handlers never ran)."""
    while True:
        time.sleep(1.0)
        try:
            os.kill(pid, 0)
        except OSError:
            log.warning('parent process %d is gone: stopping', pid)
            daemon.shutdown()
            return


class SettingError(ValueError):
    """A flag value the farm cannot run with; farm.py shows it as one line and exits 2."""


def use_tls(cert, key):
    """Serve with TLS (Pyro4's SSL support) with this certificate and private key (PEM files).
    Process-wide: Pyro4's SSL settings are global. Raises SettingError if they cannot be used."""
    import ssl
    for flag, path in (('--tls-cert', cert), ('--tls-key', key)):
        try:
            with open(path, 'rb'):
                pass
        except (IOError, OSError) as e:
            raise SettingError('%s %s: cannot read it (%s)' % (flag, path, e.strerror or e))
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (ssl.SSLError, ValueError) as e:
        raise SettingError('--tls-cert %s --tls-key %s: not a PEM certificate and its private '
                           'key (%s)' % (cert, key, e))
    Pyro4.config.SSL = True
    Pyro4.config.SSL_SERVERCERT = cert
    Pyro4.config.SSL_SERVERKEY = key
    Pyro4.config.SSL_REQUIRECLIENTCERT = False  # callers prove themselves with the shared key


def make_daemon(farm, host='127.0.0.1', port=DEFAULT_PORT, key=None,
                handshake_timeout=farm_daemon.HANDSHAKE_TIMEOUT):
    """A listening daemon with ``farm`` registered (not yet serving): the farm's own
    (farm_daemon.FarmDaemon), which also tells the farm when a learner disconnects.
    Raises SettingError if it cannot listen there."""
    configure_pyro()
    if not key and not is_loopback(host):
        raise SettingError('listening on %s (beyond loopback) needs a shared key: --key SECRET '
                           'or %s=SECRET, and the same on the learner' % (host, KEY_ENV))
    try:
        daemon = farm_daemon.FarmDaemon(host, port, served=farm,
                                        handshake_timeout=handshake_timeout)
    except socket.gaierror as e:
        raise SettingError('--host %s: not an address of this machine (%s)' % (host, e))
    except socket.error as e:
        raise SettingError('cannot listen on %s:%s: %s; is another farm running there? choose '
                           'another --port' % (host, port, e.strerror or e))
    if key:
        daemon._pyroHmacKey = key.encode('utf-8') if not isinstance(key, bytes) else key
    uri = daemon.register(farm, OBJECT_ID)
    if farm.label is None:
        farm.label = '%s:%d' % (socket.gethostname(), uri.port)
    return daemon, uri


def serve(farm, host='127.0.0.1', port=DEFAULT_PORT, key=None, ready=None, parent=None,
          handshake_timeout=farm_daemon.HANDSHAKE_TIMEOUT, daemon=None):
    """Run a daemon for ``farm`` until interrupted (``daemon``: one from make_daemon, else one
    is made here). ``ready(uri)`` is called once it listens; with ``parent`` (a pid) the farm also
    stops when that process ends."""
    if daemon is None:
        daemon, uri = make_daemon(farm, host, port, key, handshake_timeout)
    else:
        uri = daemon.uriFor(OBJECT_ID)
    try:
        log.info('farm %s serving %d environments at %s%s (python %s; lease ttl at most %.0f s, '
                 'released %.0f s after its learner disconnects; overcommit %gx)', farm.label,
                 farm.capacity, uri.location, ' with TLS' if Pyro4.config.SSL else '',
                 farm._versions['python'], farm.lease_ttl, farm.release_after, farm.overcommit)
        if not key:
            log.info('loopback only; to serve other machines: python farm.py --host 0.0.0.0 '
                     '--key SECRET, and export %s=SECRET on the learner', KEY_ENV)
        if ready is not None:
            ready(uri)
        if parent:
            watcher = threading.Thread(target=_watch_parent, args=(parent, daemon),
                                       name='parent-watch')
            watcher.daemon = True
            watcher.start()
        daemon.requestLoop()
    finally:
        farm.close()
        daemon.close()
        log.info('farm %s stopped; all workers killed', farm.label)


def _allow_many_files():
    """Each worker holds about 4 of the daemon's file descriptors (its pipe, its process sentinel,
    its shared block...): a large machine with overcommit passes the common soft limit of 1024."""
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = 65536 if hard == resource.RLIM_INFINITY else hard
        if soft != resource.RLIM_INFINITY and soft < wanted:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    except (ImportError, ValueError, OSError) as e:  # not on this platform, or not allowed
        log.debug('file descriptor limit unchanged: %s', e)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt('signal %d' % signum)


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        """One line, not argparse's usage block: the same shape as every other bad value."""
        _bad(message + ' (see farm.py --help)')


def _bad(message):
    sys.stderr.write('farm.py: %s\n' % message)
    sys.exit(2)


def check_args(args):
    """Every flag value the farm cannot run with, as SettingError, before anything starts."""
    if not 1 <= args.port <= 65535:
        raise SettingError('--port %d: a port is 1-65535 (default %d)' % (args.port, DEFAULT_PORT))
    if args.capacity is not None and args.capacity < 1:
        raise SettingError('--capacity %d: a farm serves at least 1 environment (default: the '
                           'CPU count, %d)' % (args.capacity, multiprocessing.cpu_count()))
    for flag in ('step_timeout', 'lease_ttl', 'release_after', 'handshake_timeout'):
        value = getattr(args, flag)
        if not value > 0:  # also refuses nan
            raise SettingError('--%s %s: must be a number of seconds > 0'
                               % (flag.replace('_', '-'), value))
    for flag in ('recycle_steps', 'recycle_resets'):
        if getattr(args, flag) < 1:
            raise SettingError('--%s %d: must be at least 1' % (flag.replace('_', '-'),
                                                               getattr(args, flag)))
    if not args.overcommit >= 1:
        raise SettingError('--overcommit %s: a factor of capacity, at least 1 (1: never above '
                           'capacity; default %g)' % (args.overcommit, OVERCOMMIT))
    if bool(args.tls_cert) != bool(args.tls_key):
        raise SettingError('TLS needs both --tls-cert FILE and --tls-key FILE')
    if args.exit_with is not None and args.exit_with < 1:
        raise SettingError('--exit-with %d: not a process id' % args.exit_with)
    if not isinstance(logging.getLevelName(args.log_level.upper()), int):
        raise SettingError('--log-level %s: one of DEBUG, INFO, WARNING, ERROR' % args.log_level)


def main(argv=None):
    parser = _Parser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--host', default='127.0.0.1',
                        help='address to listen on (default loopback; others need --key)')
    parser.add_argument('--port', type=int, default=DEFAULT_PORT,
                        help='port (default %d)' % DEFAULT_PORT)
    parser.add_argument('--capacity', type=int, default=None, metavar='N',
                        help='environments served at once (default: CPU count)')
    parser.add_argument('--key', default=os.environ.get(KEY_ENV),
                        help='shared key (default: $%s); required beyond loopback. It '
                        'authenticates callers and protects messages against tampering; it does '
                        'not hide them (use --tls-cert/--tls-key for that)' % KEY_ENV)
    parser.add_argument('--tls-cert', metavar='FILE',
                        help='serve with TLS: this PEM certificate (learners trust its CA through '
                        '%s)' % wire.TLS_CA_ENV)
    parser.add_argument('--tls-key', metavar='FILE', help="the certificate's PEM private key")
    parser.add_argument('--step-timeout', type=float, default=STEP_TIMEOUT, metavar='SECONDS',
                        help='seconds a step or reset may take before the worker is replaced '
                        '(default %g)' % STEP_TIMEOUT)
    parser.add_argument('--recycle-steps', type=int, default=RECYCLE_STEPS, metavar='N',
                        help='replace a worker at its next reset after N steps (default %d)'
                        % RECYCLE_STEPS)
    parser.add_argument('--recycle-resets', type=int, default=RECYCLE_RESETS, metavar='N',
                        help='...or after N resets (default %d)' % RECYCLE_RESETS)
    parser.add_argument('--lease-ttl', type=float, default=LEASE_TTL, metavar='SECONDS',
                        help='seconds a lease lives without a call: the default and the most a '
                        'learner may ask for (default %g)' % LEASE_TTL)
    parser.add_argument('--release-after', type=float, default=RELEASE_AFTER, metavar='SECONDS',
                        help="seconds after a learner's last connection closed before its "
                        'environments are released (default %g; keep it above the farmer\'s '
                        'keep-alive, %g s)' % (RELEASE_AFTER, KEEPALIVE_EVERY))
    parser.add_argument('--overcommit', type=float, default=OVERCOMMIT, metavar='FACTOR',
                        help="how far above capacity a learner taking over a lost farm's "
                        'environments may go (default %g; 1: never)' % OVERCOMMIT)
    parser.add_argument('--handshake-timeout', type=float, metavar='SECONDS',
                        default=farm_daemon.HANDSHAKE_TIMEOUT,
                        help='seconds a new connection has to finish its handshake (default %g)'
                        % farm_daemon.HANDSHAKE_TIMEOUT)
    parser.add_argument('--exit-with', type=int, default=None, metavar='PID',
                        help='stop when process PID ends (used by a learner that starts a '
                        'local farm for itself)')
    parser.add_argument('--log-level', default=os.environ.get(logformat.LEVEL_ENV, 'INFO'),
                        metavar='LEVEL', help='DEBUG, INFO (default; $%s if set), WARNING or '
                        'ERROR' % logformat.LEVEL_ENV)
    args = parser.parse_args(argv)
    try:
        check_args(args)
        if args.tls_cert:
            use_tls(args.tls_cert, args.tls_key)
    except SettingError as e:
        _bad(str(e))
    logformat.setup(args.log_level.upper())  # the learner's format: they share a terminal
    if args.release_after <= KEEPALIVE_EVERY:
        log.warning('--release-after %g is not above the farmer\'s keep-alive (%g s): a learner '
                    'whose connection broke may lose its environments before it reconnects',
                    args.release_after, KEEPALIVE_EVERY)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    _allow_many_files()
    farm = Farm(capacity=args.capacity, step_timeout=args.step_timeout,
                recycle_steps=args.recycle_steps, recycle_resets=args.recycle_resets,
                lease_ttl=args.lease_ttl, overcommit=args.overcommit,
                release_after=args.release_after)
    try:
        daemon, _ = make_daemon(farm, args.host, args.port, args.key, args.handshake_timeout)
    except SettingError as e:
        farm.close()
        _bad(str(e))
    try:
        serve(farm, args.host, args.port, args.key, parent=args.exit_with, daemon=daemon)
    except KeyboardInterrupt:  # Pyro4's loop usually swallows it; serve() has cleaned up either way
        pass
    return 0


if __name__ == '__main__':
    sys.exit(main())
