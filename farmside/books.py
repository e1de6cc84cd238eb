"""farmside/books.py: the farm's books of who holds what, and its policy defaults.

- :class:`Lease`: one learner's claim (token, TTL, its environments, the connections it called
  on, what it has in flight); :class:`Slot`: one leased environment and its worker;
  :class:`Flight`: an environment sent off by ``send``/``send_reset`` until ``recv`` hands its
  result over; :class:`Watch`: the pipes of a lease's environments in flight, which its recv
  waits on.
- The defaults of the farm's policies (timeouts, recycling, lease TTL, overcommit), which
  farm.py's flags override.
- Small helpers the farm's modules share (plain-data checks, packed observations).

Data only: the verbs that change these books are farmside/core.py's and farmside/async_verbs.py's.
Runs unmodified on Python 2.7 and 3.6+.
"""
from __future__ import absolute_import

import errno
import fcntl
import math
import numbers
import os
import select
import threading
import time

import numpy

from common import wire

# --- configuration -------------------------------------------------------------------------------
STEP_TIMEOUT = 30.0          # seconds one step or reset may take before the worker is replaced
BUILD_TIMEOUT = 120.0        # seconds to build an environment (OpenSim: 0.1-0.4 s, but cold imports)
RECYCLE_STEPS = 100000       # a worker is replaced at the next reset after this many steps...
RECYCLE_RESETS = 500         # ...or this many resets (osim-rl issues #58, #176: leaks, slowdowns)
# LEASE_TTL, RELEASE_AFTER, KEEPALIVE_EVERY and OVERCOMMIT, which the learner's behaviour depends
# on too, are common/protocol.py's.


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
        self.receiving = 0            # recvs running now (they may overlap)
        self.watch = None             # the Watch of in-flight pipes (made at the first send)
        self.ended = False            # closed, released whole or reaped
        self.posted = []              # [env_id, error] of one-way sends, for the next recv
        self.post_error = None        # a malformed one-way send's error, for the next recv

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
    recv when environments are released or the lease ends. Overlapping recvs (``waiters`` > 1)
    share it: a nudge then writes one byte per waiter and each wake-up takes one, so that every
    waiter sees a nudge (epoll wakes one waiter per event, and a waiter that drained the pipe
    would hide it from the others). All methods but ``wait`` are called with the lease's
    ``state`` held.
    """

    def __init__(self):
        self.fds = {}  # fd -> Flight
        self.waiters = 0  # recvs waiting on this watch (the lease's ``receiving``)
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
            os.write(self.wake_w, b'.' * max(1, self.waiters))
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
                drain(fd, None if self.waiters <= 1 else 1)
            else:
                ready.append(fd)
        return ready

    def close(self):
        if self.epoll is not None:
            self.epoll.close()
        os.close(self.wake_r)
        os.close(self.wake_w)


STRINGS = (str, type(u''))  # msgpack gives Python 2.7 unicode for a Python 3 peer's str


def is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def packed_obs(obs):
    """A list observation as a packed float32 array (already packed, or not numeric: as is)."""
    if not isinstance(obs, list):
        return obs
    try:
        array = numpy.asarray(obs, dtype=numpy.float32)
    except (TypeError, ValueError):
        return obs
    return wire.pack(array)


yield_cpu = getattr(os, 'sched_yield', lambda: None)  # Python 2.7 has none: a plain spin


def readable(fd):
    """Whether ``fd`` has something to read now (a zero-timeout poll)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    try:
        return bool(poller.poll(0))
    except select.error:  # EINTR: say no; the next wait reports it again
        return False


def drain(fd, most=None):
    """Reads what ``fd`` holds (at most ``most`` bytes) without blocking."""
    try:
        if most is not None:
            os.read(fd, most)
            return
        while os.read(fd, 4096):
            pass
    except OSError as e:
        if e.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
            raise
