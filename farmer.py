#!/usr/bin/env python
"""farmer.py: every farm in farmlist.py as one vectorized environment (the only host module that
speaks Pyro4).

    python farmer.py                       # probe the farms in farmlist.py, print their status
    python farmer.py --random-steps 200    # and step a random policy on L2M2019Env through them

- :class:`Farmer` reads the farm list, probes every farm, starts a local farm when the list names
  only this machine and none answers, and builds environments on the farms:
  ``farmer.vec_env(name, n_envs, env_kwargs)`` (see vecenv.py for the contract) and
  ``farmer.env(name, env_kwargs)`` (one remote environment with the gym interface).
- A vector step sends one call to every farm at once (each farm's calls go through a thread of
  its own: a Pyro4 proxy belongs to one thread), so it costs the slowest farm plus a round trip.
- Outages. The learner never gives up on its farms by itself. A call outstanding longer than
  ``STALL_AFTER`` is reported at WARNING every few seconds (which farm, for how long, and whether
  the farm still answers a probe). A call that fails or times out marks its farm down: its
  environments' episodes are truncated (``info['lost']``, ``lost_cause`` 'farm') and they are
  rebuilt on the farms that answer, above their capacity if need be; while none answers, the
  learner waits, probing and saying so every few seconds, and goes on when one answers
  (``Farmer(give_up_after=s)`` raises :class:`errors.FarmsLostError` instead after ``s`` seconds
  with no farm answering). A farm that answers again first has the leases we held there before
  it went down closed, then environments running above a farm's capacity move to free capacity
  (``info['moved']``), retried every keep-alive round until none is displaced or none fits.
- Leases are renewed by a keep-alive thread, so a learner may sit at the prompt for hours. They
  are closed on every exit path: ``close()``, a ``vec_env`` whose build fails part-way, and
  interpreter exit (atexit). A farm that no longer knows a lease (the learner was paused past its
  TTL, or the farm restarted) has that lease's environments rebuilt (``lost_cause`` 'lease').
- TLS: with ``FARM_TLS_CA`` (or ``Farmer(tls_ca=...)``) naming the CA certificate of farms started
  with ``--tls-cert/--tls-key``, every call of this process goes over TLS. Pyro4's SSL settings
  are process-wide, so then every farm of this learner must use TLS.

Python 3.6 compatible.
"""
import atexit
import concurrent.futures
import importlib
import logging
import os
import queue
import select
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import Pyro4
import Pyro4.errors

from errors import (FarmListError, FarmsLostError, NoCapacityError, NoFarmError, UserError,
                    install_excepthook)
from vecenv import EpisodeTracker, VecEnv, gym_spaces_lib, make_space

DEFAULT_PORT = 20099
KEY_ENV = 'FARM_KEY'
TLS_CA_ENV = 'FARM_TLS_CA'
LEASE_TTL = 60.0
MONITOR_EVERY = 1.0       # the keep-alive thread's tick: stall reports, probes of lost farms
KEEPALIVE_EVERY = 10.0    # renew leases, refresh every farm's numbers, retry moving back
RETRY_EVERY = 10.0        # probe a farm that stopped answering
STALL_AFTER = 5.0         # a call outstanding this long is reported...
REPORT_EVERY = 5.0        # ...every this many seconds while the farm does not answer a probe
SLOW_REPORT_EVERY = 30.0  # ...or this often while it does (a slow environment step)
PROBE_TIMEOUT = 3.0
CALL_MARGIN = 30.0        # a call times out this long after the farm's own step timeout
CLOSE_TIMEOUT = 3.0       # close() returns within about this long, whatever the farms do
WAIT_FOR_CAPACITY = 30.0  # capacity a departed learner still holds is waited for this long
BUILD_SECONDS = 120.0     # a farm's time to build environments (its BUILD_TIMEOUT)
OVERCOMMIT = 2            # a farm taking over a lost farm's environments runs up to this x capacity
LOCAL_HOSTS = ('127.0.0.1', 'localhost', '::1')
HERE = os.path.dirname(os.path.abspath(__file__))

log = logging.getLogger('farmer')

Pyro4.config.SERIALIZER = 'msgpack'
Pyro4.config.SERIALIZERS_ACCEPTED = {'msgpack'}

# A farm that answers within a few hundred microseconds (fast environments) is better waited for
# by polling its socket, yielding the CPU at every turn, than by sleeping: on the 2-vCPU VM we
# measure on, waking an idle vCPU cost tens of microseconds, several times per round trip. Only
# while this farm's recent answers came that fast: an osim step (30 ms) is slept on.
EAGER_SECONDS = 0.0005
CAN_WAIT_EAGERLY = hasattr(select, 'poll') and hasattr(os, 'sched_yield')  # not on Windows

# Errors that mean "this farm is gone", as opposed to an error the farm reported.
FARM_DOWN = (Pyro4.errors.CommunicationError, OSError)


# --- the farm list -------------------------------------------------------------------------------
EXAMPLE_ENTRY = "('192.168.1.33', 8) or ('192.168.1.33', 8, 20100)"


def _whole(value):
    """``value`` as an int if it is a whole number (an int, or digits in a string), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip('-').isdigit():
        return int(value.strip())
    return None


def parse_farms(entries, where='farmlist.py'):
    """``[(host, capacity, port)]`` from ``(host, capacity[, port])`` entries, checked; a bad list
    raises :class:`errors.FarmListError` naming ``where``, the entry (from 1) and what to write."""
    if isinstance(entries, (str, bytes)) or not isinstance(entries, (list, tuple)):
        raise FarmListError('%s: farmlist_base must be a list of (host, capacity[, port]) '
                            'entries, e.g. [%s]; got %r' % (where, EXAMPLE_ENTRY, entries))
    if not entries:
        raise FarmListError("%s lists no farm: add one, e.g. farmlist_base = [('127.0.0.1', 4)] "
                            "for a local farm of 4 environments" % where)
    farms, seen = [], {}
    for k, entry in enumerate(entries, 1):
        def bad(what):
            return FarmListError('%s, entry %d %r: %s; write (host, capacity[, port]), e.g. %s'
                                 % (where, k, entry, what, EXAMPLE_ENTRY))
        if not isinstance(entry, (tuple, list)) or len(entry) not in (2, 3):
            raise bad('expected 2 or 3 values')
        host = entry[0]
        if not isinstance(host, str) or not host.strip() or ' ' in host.strip():
            raise bad('the host must be a machine name or address, in quotes')
        host = host.strip()
        capacity = _whole(entry[1])
        if capacity is None or capacity < 1:
            raise bad('the capacity must be a whole number of environments, 1 or more')
        port = _whole(entry[2]) if len(entry) == 3 else DEFAULT_PORT
        if port is None or not 1 <= port <= 65535:
            raise bad('the port must be a whole number from 1 to 65535')
        same = ('127.0.0.1' if host.lower() in LOCAL_HOSTS else host.lower(), port)
        if same in seen:
            raise FarmListError('%s, entry %d %r: the same farm (%s:%d) as entry %d; list each '
                                'farm once, with the number of environments to take from it'
                                % (where, k, entry, host, port, seen[same]))
        seen[same] = k
        farms.append((host, capacity, port))
    return farms


def read_farmlist(module='farmlist'):
    """The farms of ``<module>.farmlist_base`` (see :func:`parse_farms`)."""
    try:
        loaded = importlib.import_module(module)
    except SyntaxError as e:
        raise FarmListError('%s line %s: %s; fix the farm list (entries are (host, capacity'
                            '[, port]))' % (e.filename or module + '.py', e.lineno, e.msg))
    except ImportError as e:
        raise FarmListError('cannot read the farm list %s.py: %s (it sits next to farmer.py)'
                            % (module, e))
    except Exception as e:  # the file is Python: anything may go wrong in it
        raise FarmListError('%s.py fails when read: %s: %s' % (module, type(e).__name__, e))
    where = getattr(loaded, '__file__', None) or module + '.py'
    if not hasattr(loaded, 'farmlist_base'):
        raise FarmListError('%s defines no farmlist_base; add e.g. farmlist_base = [%s]'
                            % (where, EXAMPLE_ENTRY.split(' or ')[0]))
    return parse_farms(loaded.farmlist_base, where)


def configure_tls(ca):
    """Pyro4 over TLS, verified against the CA certificate file ``ca`` (process-wide in Pyro4: every
    farm this process talks to must then use TLS). Nothing when ``ca`` is empty."""
    if not ca:
        return
    if not os.path.isfile(ca):
        raise UserError('%s: no such CA certificate file (set %s, or tls_ca, to the certificate '
                        'that signed the farms\' --tls-cert)' % (ca, TLS_CA_ENV))
    Pyro4.config.SSL = True
    Pyro4.config.SSL_CACERTS = ca


# --- one farm ------------------------------------------------------------------------------------
class _CallThread(object):
    """One daemon thread making one farm's calls in order. A daemon, unlike concurrent.futures'
    workers (which interpreter exit joins), so a call stuck on an unreachable farm never holds up
    Ctrl-C or exit, and can be abandoned (:meth:`retire`) while it still waits."""

    def __init__(self, name, on_exit):
        self._queue = queue.Queue()
        self._on_exit = on_exit
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn, *args):
        future = concurrent.futures.Future()
        self._queue.put((future, fn, args))
        return future

    def retire(self):
        """Cancel what is queued; the thread ends after the call it is in (if any)."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                item[0].cancel()
        self._queue.put(None)

    def _run(self):
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    return
                future, fn, args = item
                if not future.set_running_or_notify_cancel():
                    continue
                try:
                    result = fn(*args)
                except BaseException as e:
                    future.set_exception(e)
                else:
                    future.set_result(result)
        finally:
            self._on_exit()


class FarmLink(object):
    """One farm: its address, planned capacity, state, and the calls made to it.

    Calls go through a proxy per calling thread (Pyro4 proxies belong to one thread): ``submit``
    runs a call on this farm's own thread, ``call`` in the caller's. So a probe, a lease renewal
    or a close never queues behind a step stuck on a frozen farm.
    """

    def __init__(self, host, capacity, port, key=None, call_timeout=60.0):
        self.host, self.capacity, self.port = host, capacity, port
        self.key = key
        self.call_timeout = call_timeout
        self.info = None
        self.error = None
        self.cause = None          # why it does not answer: see _classify
        self.up = False
        self.retry_at = 0.0
        self.down_since = None
        self.last_answer = None    # time of the last answer to any call
        self.reported = 0.0        # last stall report
        self.stall_answers = True  # whether the farm answered the probe of that report
        self.latency = 0.0  # running mean of this farm's call times, for _wait_eagerly
        self.calls = {}     # outstanding calls: token -> (method, started)
        self.reviving = threading.Lock()
        self._local = threading.local()
        self._worker = None
        self._worker_lock = threading.Lock()

    @property
    def name(self):
        return '%s:%d' % (self.host, self.port)

    def _proxy(self, timeout):
        proxy = getattr(self._local, 'proxy', None)
        if proxy is None:
            proxy = Pyro4.Proxy('PYRO:farm@%s:%d' % (self.host, self.port))
            proxy._pyroMaxRetries = 0  # never replay a step: environments are not idempotent
            if self.key:
                proxy._pyroHmacKey = self.key.encode('utf-8')
            self._local.proxy = proxy
        proxy._pyroTimeout = timeout
        connection = proxy._pyroConnection  # None until the first call connects
        if CAN_WAIT_EAGERLY and connection is not None and not getattr(connection, 'eager', False):
            _wait_eagerly(connection, self)
        return proxy

    def _drop_proxy(self):
        proxy = getattr(self._local, 'proxy', None)
        if proxy is not None:
            self._local.proxy = None
            try:
                proxy._pyroRelease()
            except Exception:  # already broken: nothing to release
                pass

    def _invoke(self, method, args, timeout, eager=False):
        """``proxy.method(*args)`` from this thread; ``eager``: the caller has nothing else to do
        meanwhile, so a fast answer may be polled for (see _wait_eagerly)."""
        self._local.eager = eager
        token = object()
        self.calls[token] = (method, time.time())
        try:
            started = time.perf_counter()
            result = getattr(self._proxy(timeout), method)(*args)
            self.latency += 0.2 * (time.perf_counter() - started - self.latency)
            self.last_answer = time.time()
            return result
        except BaseException as e:
            if not isinstance(e, FARM_DOWN) and not isinstance(e, (KeyboardInterrupt,
                                                                   SystemExit)):
                self.last_answer = time.time()  # the farm answered, with an error
            # A lost farm, or Ctrl-C in the middle of a call: the connection may hold half a
            # message (or an unread reply) now, so the next call on it would be out of step.
            self._drop_proxy()
            raise
        finally:
            del self.calls[token]

    def submit(self, method, *args, timeout=None):
        """Run ``proxy.method(*args)`` on this farm's thread; returns a Future."""
        with self._worker_lock:
            if self._worker is None:
                self._worker = _CallThread('farm-%s' % self.name, self._drop_proxy)
            return self._worker.submit(self._invoke, method, args, timeout or self.call_timeout)

    def call(self, method, *args, timeout=None):
        """``proxy.method(*args)`` in the calling thread."""
        return self._invoke(method, args, timeout or self.call_timeout)

    def abandon(self):
        """Give up on the calls queued or running on this farm's thread (a stall, Ctrl-C, close):
        later calls get a fresh thread and connection instead of waiting behind them."""
        with self._worker_lock:
            worker, self._worker = self._worker, None
        if worker is not None:
            worker.retire()

    def oldest_call(self):
        calls = list(self.calls.values())
        return min(calls, key=lambda c: c[1]) if calls else None

    def status(self):
        """This farm as one plain dict (last probe): name, up, capacity, in use, versions, error."""
        info = (self.info or {}) if self.up else {}
        return {'farm': self.name, 'up': self.up, 'capacity': info.get('capacity'),
                'planned': self.capacity, 'in_use': info.get('in_use'),
                'versions': info.get('versions', {}), 'error': self.error}

    def ping(self, timeout=None):
        """The farm's info, or the exception of a farm that does not answer (recorded)."""
        try:
            info = self.call('info', timeout=timeout or PROBE_TIMEOUT)
        except Exception as e:
            self.error, self.cause = _describe(e), _classify(e)
            return e
        self.error = self.cause = None
        self.call_timeout = float(info.get('step_timeout', 30.0)) + CALL_MARGIN
        return info

    def probe(self):
        """Asks the farm for its info; records up/down and returns whether it answered."""
        info = self.ping()
        if isinstance(info, Exception):
            self.up = False
            self.retry_at = time.time() + RETRY_EVERY
            return False
        self.info, self.up, self.down_since = info, True, None
        return True

    def refresh(self):
        """Fresh numbers (in use, capacity) from a farm that is up; False if it did not answer
        (it is not marked down for that: a failed step does that)."""
        info = self.ping()
        if isinstance(info, Exception):
            return False
        self.info = info
        return True

    def mark_down(self, error):
        self.up, self.error, self.cause = False, _describe(error), _classify(error)
        self.down_since = self.down_since or time.time()
        self.retry_at = time.time() + RETRY_EVERY
        self.abandon()

    def close(self):
        self.abandon()


def _wait_eagerly(connection, link):
    """Makes a Pyro4 connection poll for the farm's answer for up to EAGER_SECONDS before it
    blocks, in calls made with ``eager`` (a synchronous ``step``: with ``step_async`` the learner
    trains meanwhile, and polling would take CPU from it), while ``link``'s recent calls came
    back within that time."""
    receive = connection.recv
    poller = select.poll()
    poller.register(connection.sock.fileno(), select.POLLIN)

    def eager_receive(size):
        if getattr(link._local, 'eager', False) and link.latency < EAGER_SECONDS:
            give_up = time.perf_counter() + EAGER_SECONDS
            while not poller.poll(0) and time.perf_counter() < give_up:
                os.sched_yield()
        return receive(size)

    connection.recv = eager_receive
    connection.eager = True


def _classify(error):
    """Why a farm does not answer: 'dns', 'refused', 'timeout', 'key', 'tls', 'protocol',
    'closed' or 'other' (each has its own advice in :func:`_advice`)."""
    text = str(error).lower()
    cause = getattr(error, '__cause__', None)
    if isinstance(cause, socket.gaierror) or 'name or service not known' in text \
            or 'nodename nor servname' in text or 'name resolution' in text:
        return 'dns'
    if isinstance(cause, ConnectionRefusedError) or 'connection refused' in text:
        return 'refused'
    if 'hmac' in text:
        return 'key'
    if 'ssl' in text or 'certificate' in text or 'tls' in text:
        return 'tls'
    if isinstance(error, Pyro4.errors.TimeoutError) or 'timeout' in text or 'timed out' in text:
        return 'timeout'
    if isinstance(error, Pyro4.errors.ProtocolError):
        return 'protocol'
    if isinstance(error, Pyro4.errors.ConnectionClosedError) or 'not enough data' in text:
        return 'closed'
    return 'other'


def _describe(error):
    text = str(error) or type(error).__name__
    if _classify(error) == 'key':
        text += ' (wrong or missing key: export %s with the farm\'s key)' % KEY_ENV
    return text


def _advice(link):
    """One sentence for a farm that did not answer: what is wrong and what to do."""
    cause, host, port = link.cause, link.host, link.port
    if cause == 'dns':
        return ('%s: the name %s does not resolve; check it in the farm list (or use the '
                'machine\'s IP address)' % (link.name, host))
    if cause == 'refused':
        return ('%s: nothing listens there; start `python farm.py --port %d` on %s (with --host '
                '0.0.0.0 --key SECRET for other machines), or fix the port in the farm list'
                % (link.name, port, host))
    if cause == 'timeout':
        return ('%s: no answer (timed out); the machine is down or a firewall drops port %d'
                % (link.name, port))
    if cause == 'key':
        return ('%s: wrong or missing key; export %s=<the key the farm was started with>'
                % (link.name, KEY_ENV))
    if cause == 'tls':
        return ('%s: TLS failed (%s); start the farm with --tls-cert/--tls-key and set %s to '
                'the CA that signed its certificate' % (link.name, link.error, TLS_CA_ENV))
    if cause == 'protocol':
        return ('%s: something answers that does not speak our protocol (%s): another program '
                'on that port, or a farm using TLS (set %s) or not when we do'
                % (link.name, link.error, TLS_CA_ENV))
    if cause == 'closed':
        return ('%s: the farm closed the connection at once (%s): it may use TLS (set %s to '
                'its CA certificate), or it refused us (see its log)'
                % (link.name, link.error, TLS_CA_ENV))
    return '%s: %s' % (link.name, link.error)


_OPEN = set()  # Farmers not closed yet: closed at interpreter exit


@atexit.register
def _close_open_farmers():
    """A learner that dies (an exception during start-up, sys.exit) frees its leases at once
    instead of leaving them to expire on the farms."""
    for farmer in list(_OPEN):
        try:
            farmer.close()
        except Exception as e:  # at exit: say it, do not stop the others
            log.warning('closing the farmer at exit: %s', e)


class Farmer(object):
    """All farms of the farm list; builds environments on them. Close it (or use ``with``); it
    is also closed at interpreter exit.

    ``give_up_after``: seconds with no farm answering after which a vector step raises
    :class:`errors.FarmsLostError` (None or 0: wait for a farm for ever, saying so every few
    seconds).
    ``tls_ca``: CA certificate of TLS farms (default ``$FARM_TLS_CA``; see :func:`configure_tls`).
    ``where``: how the farm list is named in errors (default: farmlist.py, or Farmer(farms=...)).
    """

    def __init__(self, farms=None, key=None, start_local=True, lease_ttl=LEASE_TTL,
                 give_up_after=None, tls_ca=None, where=None):
        farms = read_farmlist() if farms is None else parse_farms(
            farms, where or 'Farmer(farms=...)')
        configure_tls(tls_ca if tls_ca is not None else os.environ.get(TLS_CA_ENV))
        self.key = key if key is not None else os.environ.get(KEY_ENV)
        self.lease_ttl = lease_ttl
        self.give_up_after = give_up_after or None  # 0: never, as None
        self.links = [FarmLink(h, c, p, self.key) for h, c, p in farms]
        self.local_farm = None
        self._leases = []          # (link, token) to renew and to close
        self._stale = []           # (link, token) held on a farm when it went down: closed when
        #                            it answers again, so they do not hold its capacity
        self.revivals = 0          # how many times a lost farm answered again
        self._vec_envs = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._probe_all()
        if not any(link.up for link in self.links):
            if start_local and all(link.host in LOCAL_HOSTS for link in self.links):
                self._start_local_farm()
            else:
                raise NoFarmError(self._nothing_answers())
        _OPEN.add(self)
        self._keepalive = threading.Thread(target=self._keep_alive, name='farmer-keepalive',
                                           daemon=True)
        self._keepalive.start()

    # --- farms -----------------------------------------------------------------------------------
    def _probe_all(self):
        with concurrent.futures.ThreadPoolExecutor(max(1, len(self.links))) as pool:
            list(pool.map(lambda link: link.probe(), self.links))
        some = any(link.up for link in self.links)
        for link in self.links:
            if link.up:
                log.info('farm %s answers: capacity %s, python %s', link.name,
                         link.info['capacity'], link.info['versions'].get('python'))
            elif some:  # going on without it: say why, and that it is probed again
                log.warning('%s; going on without it (probed every %g s)', _advice(link),
                            RETRY_EVERY)
            else:
                log.info('farm %s does not answer: %s', link.name, link.error)

    def _nothing_answers(self):
        return ('no farm answered: %s' % '; '.join(_advice(link) for link in self.links)
                + ('. Or list only this machine in farmlist.py to have a local farm started'
                   if not all(link.host in LOCAL_HOSTS for link in self.links) else ''))

    def _start_local_farm(self):
        link = self.links[0]
        capacity = max(link.capacity, 1)
        command = [sys.executable, os.path.join(HERE, 'farm.py'), '--host', '127.0.0.1',
                   '--port', str(link.port), '--capacity', str(capacity),
                   '--exit-with', str(os.getpid())]  # even if we die without closing it
        env = dict(os.environ)
        if self.key:
            env[KEY_ENV] = self.key
        log.info('no farm answered; starting a local one: %s', ' '.join(command))
        # The farm logs to stderr, but osim-rl prints to stdout from the workers; the learner's
        # stdout may be a result a program reads (bench/*.py --json), so keep it clean.
        # Stopped by close(), also at interpreter exit (_close_open_farmers: after our leases
        # are closed, not before), and by the farm itself if we die (--exit-with).
        self.local_farm = subprocess.Popen(command, env=env, start_new_session=True,
                                           stdout=sys.stderr.fileno())
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.local_farm.poll() is not None:
                raise NoFarmError('the local farm exited at once (code %s; its messages are '
                                  'above); %s' % (self.local_farm.returncode,
                                                  self._nothing_answers()))
            if link.probe():
                log.info('local farm up at %s (pid %d)', link.name, self.local_farm.pid)
                return
            time.sleep(0.2)
        self._stop_local_farm()
        raise NoFarmError('the local farm did not answer within 60 s; ' + self._nothing_answers())

    def _stop_local_farm(self):
        if self.local_farm is not None and self.local_farm.poll() is None:
            self.local_farm.terminate()
            try:
                self.local_farm.wait(15)
            except subprocess.TimeoutExpired:
                self.local_farm.kill()
                self.local_farm.wait()
        self.local_farm = None

    def status(self):
        """One plain dict per farm: name, up, capacity, in use, versions, error (fresh probes;
        a lost farm that answers again is taken back)."""
        for link in self.links:
            if link.up:
                link.refresh()
            else:
                self.try_revive(link)
        return [link.status() for link in self.links]

    def mark_down(self, link, error):
        """``link`` failed a call: it is down; our leases there are kept to close later."""
        with self._lock:
            mine = [(l, t) for l, t in self._leases if l is link]
            self._leases = [(l, t) for l, t in self._leases if l is not link]
            self._stale.extend(mine)
        was_up = link.up
        link.mark_down(error)
        if was_up:
            log.warning('farm %s stopped answering (%s); probing it every %g s',
                        link.name, link.error, RETRY_EVERY)

    def try_revive(self, link):
        """Probe a farm that is down; when it answers, close the leases we held there before it
        went down (their capacity would be held for nothing), then take it back. Returns whether
        it is up. Safe from any thread; a probe already under way elsewhere is not repeated."""
        if link.up:
            return True
        if not link.reviving.acquire(False):
            return False
        try:
            info = link.ping()
            if isinstance(info, Exception):
                link.retry_at = time.time() + RETRY_EVERY
                return False
            with self._lock:
                stale = [(l, t) for l, t in self._stale if l is link]
            closed = 0
            for pair in stale:
                try:
                    closed += bool(link.call('close_lease', pair[1], timeout=CLOSE_TIMEOUT))
                except FARM_DOWN:
                    link.retry_at = time.time() + RETRY_EVERY
                    return False
                except Exception:  # the farm refused it: nothing of ours is held there
                    pass
                with self._lock:
                    self._stale.remove(pair)
            if stale:
                link.refresh()
                info = link.info
            down_for = time.time() - (link.down_since or time.time())
            link.info, link.up, link.down_since = info, True, None
            self.revivals += 1
            log.warning('farm %s answers again%s%s', link.name,
                        ' after %.0f s' % down_for if down_for >= 1 else '',
                        '; closed the %d leases it still held for us from before' % closed
                        if closed else '')
            return True
        finally:
            link.reviving.release()

    def silent_for(self):
        """Seconds since any farm last answered any call."""
        answers = [link.last_answer for link in self.links if link.last_answer is not None]
        return time.time() - max(answers) if answers else float('inf')

    def check_give_up(self):
        if self.give_up_after is not None and not any(link.up for link in self.links) \
                and self.silent_for() >= self.give_up_after:
            raise FarmsLostError('no farm has answered for %.0f s (give up after %.0f s): %s'
                                 % (self.silent_for(), self.give_up_after,
                                    '; '.join(_advice(link) for link in self.links)))

    def wait_for_a_farm(self):
        """Blocks while no farm answers: probes them, says so every REPORT_EVERY seconds, and
        returns once one answers (raises FarmsLostError past ``give_up_after``)."""
        started = time.time()
        next_report = started
        while not any(link.up for link in self.links):
            probed_at = time.time()
            for link in self.links:
                self.try_revive(link)
            if any(link.up for link in self.links):
                break
            self.check_give_up()
            if time.time() >= next_report:
                next_report = probed_at + REPORT_EVERY
                log.warning('no farm answers (for %.0f s): %s. Waiting for one; the run goes on '
                            'when one answers%s', self.silent_for(),
                            '; '.join('%s: %s' % (link.name, link.error) for link in self.links),
                            '' if self.give_up_after is None else
                            ' (giving up after %.0f s)' % self.give_up_after)
            self._stop.wait(1.0)
            if self._stop.is_set():
                raise FarmsLostError('the farmer was closed while no farm answered')
        log.warning('farm %s answers; going on after %.0f s without a farm',
                    ', '.join(link.name for link in self.links if link.up), time.time() - started)

    def _renew_every(self):
        """A third of the shortest lease TTL we get (a farm caps ours at its --lease-ttl)."""
        ttls = [self.lease_ttl] + [float(link.info.get('lease_ttl') or self.lease_ttl)
                                   for link in self.links if link.up and link.info]
        return min([KEEPALIVE_EVERY] + [ttl / 3.0 for ttl in ttls])

    def _keep_alive(self):
        next_round = time.time() + self._renew_every()
        while not self._stop.wait(min(MONITOR_EVERY, self._renew_every())):
            try:
                now = time.time()
                self._report_stalls(now)
                if now >= next_round:
                    next_round = now + self._renew_every()
                    self._renew_all()
                    for env in list(self._vec_envs):
                        env.rebalance_due = True
                for link in self.links:
                    if not link.up and time.time() >= link.retry_at:
                        self.try_revive(link)
            except Exception as e:  # never let the keep-alive thread die
                log.warning('keep-alive: %s', _describe(e))

    def _renew_all(self):
        with self._lock:
            leases = list(self._leases)
        for link, token in leases:
            if not link.up or (link.reported and not link.stall_answers):
                continue  # (a stalled farm that answers no probe would only time out again)
            try:
                link.call('renew', token, timeout=PROBE_TIMEOUT)
            except LookupError:
                # The farm forgot it: the next step rebuilds its environments (lost_cause
                # 'lease'); stop renewing it.
                self.forget_lease(link, token)
            except Exception as e:
                log.warning('renewing lease on %s failed: %s', link.name, _describe(e))
        for link in self.links:
            if link.up and not link.calls:
                link.refresh()

    def _report_stalls(self, now):
        """Says which farm has not answered a call for how long, and what a probe of it says."""
        for link in self.links:
            oldest = link.oldest_call()
            if oldest is None or now - oldest[1] < STALL_AFTER or not link.up:
                # (a farm that is down has its calls abandoned; wait_for_a_farm reports it)
                link.reported, link.stall_answers = 0.0, True
                continue
            if now - link.reported < (SLOW_REPORT_EVERY if link.reported and link.stall_answers
                                      else REPORT_EVERY):
                continue
            method, started = oldest
            link.reported = now  # (before the probe, which may take PROBE_TIMEOUT)
            link.stall_answers = not isinstance(link.ping(), Exception)
            now = time.time()
            if link.stall_answers:
                log.warning('farm %s: no answer to %s for %.0f s, but it answers a probe: an '
                            'environment is slow (the farm replaces one stuck past its step '
                            'timeout)', link.name, method, now - started)
            else:
                log.warning('farm %s: no answer to %s for %.0f s, nor to a probe (%s): the farm '
                            'is frozen, or its machine or the link is down. Waiting; the call '
                            'times out in %.0f s, then its environments are rebuilt where a farm '
                            'answers', link.name, method, now - started, link.error,
                            max(0.0, started + link.call_timeout - now))

    # --- leases and placement --------------------------------------------------------------------
    def open_lease(self, link):
        token = link.call('open_lease', self.lease_ttl, timeout=PROBE_TIMEOUT + 5)
        with self._lock:
            self._leases.append((link, token))
        return token

    def forget_lease(self, link, token):
        with self._lock:
            if (link, token) in self._leases:
                self._leases.remove((link, token))

    def close_leases(self, pairs, timeout=CLOSE_TIMEOUT):
        """Close leases on their farms, all at once, within about ``timeout`` seconds whatever
        the farms do (a lease not closed is released by its farm later)."""
        pairs = list(pairs)
        for link, token in pairs:
            self.forget_lease(link, token)

        def close(link, token):
            try:
                link.call('close_lease', token, timeout=timeout)
            except Exception as e:
                log.warning('closing a lease on %s: %s', link.name, _describe(e))

        threads = [threading.Thread(target=close, args=pair, daemon=True,
                                    name='close-lease-%s' % pair[0].name)
                   for pair in pairs if pair[0].up]
        for thread in threads:
            thread.start()
        deadline = time.time() + timeout + 0.5
        for thread in threads:
            thread.join(max(0.0, deadline - time.time()))

    def place(self, n, exclude=(), replacing=()):
        """How many of ``n`` environments go to each answering farm: by free capacity, at most
        the farm list's capacity per farm (counting what this learner holds there, except the
        placements it is ``replacing``). Returns ``(plan, how many did not fit)``."""
        links = [link for link in self.links if link.up and link not in exclude]
        free = {}
        for link in links:
            if link.refresh():  # fresh numbers: other learners may have taken capacity since
                mine = self._held_on(link, replacing)
                free[link] = max(0, min(link.capacity - mine,
                                        link.info['capacity'] - link.info['in_use']))
        plan = {}
        left = n
        while left > 0:
            candidates = [link for link in free if free[link] - plan.get(link, 0) > 0]
            if not candidates:
                break
            best = max(candidates, key=lambda l: free[l] - plan.get(l, 0))
            plan[best] = plan.get(best, 0) + 1
            left -= 1
        return plan, left

    def place_or_wait(self, n, what):
        """:meth:`place` for a new vector env: all ``n`` must fit. Capacity that a departed
        learner still holds is waited for when its farm frees it within WAIT_FOR_CAPACITY;
        otherwise :class:`errors.NoCapacityError` says who holds it and when it frees."""
        deadline = time.time() + WAIT_FOR_CAPACITY
        said = False
        while True:
            plan, missing = self.place(n)
            if not missing:
                return plan
            frees = [(link.info.get('frees_in'), link) for link in self.links
                     if link.up and link.info and link.info.get('frees_in') is not None]
            soonest = min(frees, key=lambda f: f[0]) if frees else None
            if soonest is None or time.time() + soonest[0] > deadline:
                raise NoCapacityError(self._no_capacity(n, what, n - missing))
            if not said:
                said = True
                log.warning('%d x %s: %d do not fit now; capacity another learner holds on %s '
                            'frees in %.0f s if that learner has gone: waiting for it', n, what,
                            missing, soonest[1].name, soonest[0])
            self._stop.wait(min(max(soonest[0], 0.2) + 0.3, 5.0))
            if self._stop.is_set():
                raise NoCapacityError(self._no_capacity(n, what, n - missing))

    def _no_capacity(self, n, what, have):
        parts = []
        for link in self.links:
            info = link.info or {}
            if not link.up:
                parts.append('%s does not answer (%s)' % (link.name, link.error))
                continue
            mine = self._held_on(link)
            others = info.get('in_use', 0) - mine
            text = '%s: %d of %d in use' % (link.name, info.get('in_use', 0),
                                           info.get('capacity', 0))
            if others > 0:
                text += ' (%d by other learners%s)' % (others, (
                    '; the first frees in %.0f s unless its learner calls again'
                    % info['frees_in']) if info.get('frees_in') is not None else '')
            if mine:
                text += ' (%d by this learner)' % mine
            if link.capacity < info.get('capacity', 0):
                text += ', farm list takes at most %d' % link.capacity
            parts.append(text)
        return ('%d x %s requested, but the farms that answer have only %d free: %s. Stop the '
                'other learners, ask for fewer environments, or add farms to the farm list'
                % (n, what, have, '; '.join(parts)))

    def _held_on(self, link, replacing=()):
        skip = set(id(place) for place in replacing)
        return sum(1 for env in self._vec_envs if not env.closed
                   for place in env.places
                   if place is not None and place.link is link and id(place) not in skip)

    def vec_env(self, env_name, n_envs, env_kwargs=None):
        """``n_envs`` environments spread over the farms, as one vectorized env (vecenv.py)."""
        env = FarmVecEnv(self, env_name, int(n_envs), dict(env_kwargs or {}))
        self._vec_envs.append(env)
        return env

    def env(self, env_name, env_kwargs=None):
        """One remote environment with the gym interface."""
        return RemoteEnv(self.vec_env(env_name, 1, env_kwargs))

    def utilization(self):
        """The share of the answering farms' capacity that runs this learner's environments at
        full speed: for each farm that answers, this learner's environments there up to its
        capacity (the smaller of the farm list's and the farm's), summed, over those capacities
        summed. Environments above a farm's capacity share its cores and do not count, so a
        learner crowding one farm while another idles shows below 1.0 (see :meth:`overcommit`).
        From the last keep-alive round: no call is made."""
        capacity = held = 0
        for link in self.links:
            if link.up and link.info:
                cap = min(link.capacity, link.info['capacity'])
                capacity += cap
                held += min(self._held_on(link), cap)
        return held / float(capacity) if capacity else 0.0

    def overcommit(self):
        """``{farm: environments in use / capacity}`` for the answering farms above capacity
        (from the last keep-alive round; every learner's environments count)."""
        return dict((link.name, link.info['in_use'] / float(link.info['capacity']))
                    for link in self.links if link.up and link.info
                    and link.info['in_use'] > link.info['capacity'] > 0)

    def close(self):
        """Close every environment and lease (within a few seconds, whatever the farms do)."""
        if self._stop.is_set():
            return
        self._stop.set()
        _OPEN.discard(self)
        for env in list(self._vec_envs):
            env.close()
        with self._lock:
            left, self._leases = self._leases, []
        self.close_leases(left)
        for link in self.links:
            link.close()
        self._stop_local_farm()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Placement(object):
    """Where vector index ``i`` lives: its farm link, lease and env id there."""
    __slots__ = ('link', 'lease', 'env_id')

    def __init__(self, link, lease, env_id):
        self.link, self.lease, self.env_id = link, lease, env_id


def _no_such_lease(error):
    return isinstance(error, LookupError) and 'no such lease' in str(error)


class FarmVecEnv(VecEnv):
    """N remote environments over the farms; the contract is vecenv.py's."""

    def __init__(self, farmer, env_name, n_envs, env_kwargs):
        if n_envs < 1:
            raise UserError('%s: the number of environments must be 1 or more, got %d'
                            % (env_name, n_envs))
        self.farmer = farmer
        self.env_name = env_name
        self.env_kwargs = env_kwargs
        self.num_envs = n_envs
        self.closed = False
        self.places = [None] * n_envs
        self.spec = None
        self._groups = {}
        self._displaced = set()  # indices moved off a lost farm, maybe running above capacity
        self.rebalance_due = False  # set every keep-alive round: try moving displaced ones back
        try:
            self._build(list(range(n_envs)), mode='start')
        except BaseException:
            # A build that fails part-way (the second farm cannot make the env, Ctrl-C) must
            # not leave the first farm's environments leased and renewed for ever.
            self.farmer.close_leases(self._groups)
            self.closed = True
            raise
        self.observation_space = make_space(self.spec['observation_space'])
        self.action_space = make_space(self.spec['action_space'])
        self.max_episode_steps = self.spec.get('max_episode_steps')
        self._obs_shape = self.observation_space.shape
        self.last_obs = np.zeros((n_envs,) + self._obs_shape, dtype=np.float32)
        self.tracker = EpisodeTracker(n_envs)
        self._pending = None
        self.wait_seconds = 0.0   # time spent blocked in step_wait: how long the learner waited

    # --- placement -------------------------------------------------------------------------------
    def _build(self, indices, mode):
        """(Re)builds environments ``indices`` on the farms. ``mode``: 'start' (all must fit;
        waits for capacity a departed learner frees soon; user errors as UserError), 'move'
        (only to free capacity) or 'recover' (after a loss: above capacity if need be)."""
        if mode == 'start':
            plan = self.farmer.place_or_wait(len(indices), self.env_name)
        else:
            plan, missing = self.farmer.place(len(indices), replacing=[
                self.places[i] for i in indices if self.places[i] is not None])
            if missing and mode == 'move':
                raise RuntimeError('only %d free' % (len(indices) - missing))
            if missing:  # taking over a lost farm's envs: let the survivors run above capacity
                self._overcommit(plan, missing)
        todo = list(indices)
        try:
            for link, count in plan.items():
                mine, todo = todo[:count], todo[count:]
                token = None
                try:
                    token = self.farmer.open_lease(link)
                    spec = link.call('make', token, self.env_name, self.env_kwargs, count,
                                     mode == 'recover',
                                     timeout=link.call_timeout + BUILD_SECONDS)
                except BaseException as e:
                    if token is not None:
                        self.farmer.close_leases([(link, token)])  # it holds nothing
                    if mode != 'start' and isinstance(e, FARM_DOWN):
                        self.farmer.mark_down(link, e)
                    if mode == 'start' and isinstance(e, (ValueError, TypeError)):
                        raise self._refusal(link, e)
                    raise
                if self.spec is None:
                    self.spec = spec
                for i, env_id in zip(mine, spec['env_ids']):
                    self.places[i] = Placement(link, token, env_id)
        finally:
            self._groups = self._group()

    def _overcommit(self, plan, missing):
        """Adds ``missing`` environments to ``plan`` above the answering farms' capacity, one at
        a time to the farm with the most room left under its overcommit factor."""
        room = {}
        for link in self.farmer.links:
            if link.up and link.info:
                info = link.info
                room[link] = int(info['capacity'] * info.get('overcommit', OVERCOMMIT)) \
                    - info['in_use'] - plan.get(link, 0)
        for _ in range(missing):
            if not room:
                raise RuntimeError('no farm answers')
            best = max(room, key=lambda l: room[l])  # past every farm's room: the farm refuses
            plan[best] = plan.get(best, 0) + 1
            room[best] -= 1

    def _refusal(self, link, error):
        """A farm's refusal of ``make`` as the user's error: capacity, or the name or kwargs."""
        text = str(error)
        if 'free' in text or 'capacity' in text:  # another learner took it since we looked
            link.refresh()
            return NoCapacityError('%s; %s' % (text, self.farmer._no_capacity(
                self.num_envs, self.env_name, 0)))
        return UserError(text)

    def _group(self):
        """Per (link, lease): the vector indices and env ids, in vector order."""
        groups = {}
        for i, place in enumerate(self.places):
            if place is None:
                continue
            groups.setdefault((place.link, place.lease), ([], []))
            groups[(place.link, place.lease)][0].append(i)
            groups[(place.link, place.lease)][1].append(place.env_id)
        return groups

    # --- the contract ----------------------------------------------------------------------------
    def reset(self, seed=None):
        futures = {}
        for (link, lease), (indices, ids) in self._groups.items():
            seeds = None if seed is None else [seed + i for i in indices]
            futures[(link, lease)] = link.submit('reset', lease, ids, seeds)
        obs = np.zeros((self.num_envs,) + self._obs_shape, dtype=np.float32)
        lost = self._collect(futures, lambda indices, results: obs.__setitem__(indices, results))
        if lost:
            obs[sorted(lost)] = self._reset_many(sorted(lost), seed)
        for i in range(self.num_envs):
            self.tracker.restart(i)
        self.last_obs = obs.copy()
        return obs

    def step_async(self, actions):
        wire = self._check(actions)
        self._pending = self._send_steps(wire, in_caller=None)

    def _check(self, actions):
        """Validates the actions; returns them as plain lists (the host's one conversion out)."""
        actions = np.asarray(actions, dtype=np.float64)
        per_env = int(np.prod(self.action_space.shape)) if self.action_space.shape else 1
        if actions.shape[:1] != (self.num_envs,) or actions.size != self.num_envs * per_env:
            raise ValueError('%s: expected %d actions of %d values each, got an array of shape %s'
                             % (self.env_name, self.num_envs, per_env, actions.shape))
        actions = actions.reshape(self.num_envs, -1)
        if not np.all(np.isfinite(actions)):
            bad = sorted(set(np.argwhere(~np.isfinite(actions))[:, 0].tolist()))
            raise ValueError('%s: non-finite action for vector index %s (%s)' % (
                self.env_name, bad, ', '.join('farm %s env %d' % (self.places[i].link.name,
                                                                  self.places[i].env_id)
                                              for i in bad)))
        return actions.tolist()

    def step(self, actions):
        """step_async + step_wait, with one farm's call made in the calling thread.

        When nothing overlaps the wait, handing the last farm's call to its thread only adds a
        thread switch to every vector step; the other farms are still called concurrently.
        """
        wire = self._check(actions)
        self._pending = self._send_steps(wire, in_caller=list(self._groups)[-1])
        return self.step_wait()

    def _call_timeout(self, link):
        # With give_up_after, a stuck call must not outlast it: the wait for a farm checks it.
        give_up = self.farmer.give_up_after
        return link.call_timeout if give_up is None else min(link.call_timeout, give_up)

    def _send_steps(self, wire, in_caller):
        pending = {}
        try:
            for key, (indices, ids) in self._groups.items():
                link, lease = key
                if key != in_caller:
                    pending[key] = link.submit('step', lease, ids, [wire[i] for i in indices],
                                               True, timeout=self._call_timeout(link))
            if in_caller is not None:
                link, lease = in_caller
                indices, ids = self._groups[in_caller]
                done = concurrent.futures.Future()
                try:
                    done.set_result(link._invoke('step', (lease, ids, [wire[i] for i in indices],
                                                          True), self._call_timeout(link),
                                                 eager=True))
                except Exception as e:
                    done.set_exception(e)
                pending[in_caller] = done
        except BaseException:  # Ctrl-C in the caller's call: the other farms' are abandoned
            self._abandon(pending)
            raise
        return pending

    def _abandon(self, futures):
        for (link, lease), future in futures.items():
            if not future.done():
                link.abandon()

    def step_wait(self):
        if self._pending is None:
            raise RuntimeError('step_wait() without step_async()')
        started = time.time()
        n = self.num_envs
        obs = np.zeros((n,) + self._obs_shape, dtype=np.float32)
        rewards = np.zeros(n)
        terminated = np.zeros(n, dtype=bool)
        truncated = np.zeros(n, dtype=bool)
        infos = [None] * n

        def store(indices, results):
            # The host's one conversion in: a whole farm's answer per numpy call, not per env.
            obs[indices] = np.array([res[0] for res in results], dtype=np.float32)
            rewards[indices] = [res[1] for res in results]
            terminated[indices] = [res[2] for res in results]
            truncated[indices] = [res[3] for res in results]
            for i, res in zip(indices, results):
                info = res[4]
                if 'terminal_observation' in info:
                    info['terminal_observation'] = np.asarray(info['terminal_observation'],
                                                              dtype=np.float32)
                infos[i] = info

        futures, self._pending = self._pending, None
        lost = self._collect(futures, store)
        for i, (reason, cause) in lost.items():
            # Not terminal: the episode was cut short by the machinery, so a learner bootstraps.
            truncated[i], terminated[i], rewards[i] = True, False, 0.0
            infos[i] = {'lost': reason, 'lost_cause': cause,
                        'terminal_observation': self.last_obs[i].copy()}
        if lost:
            obs[sorted(lost)] = self._reset_many(sorted(lost))
        if self._displaced and self.rebalance_due:
            self.rebalance_due = False
            for i, (first_obs, reason) in self._move_back().items():
                if not (terminated[i] or truncated[i]):  # this step's outcome stands; then cut
                    truncated[i] = True
                    infos[i] = dict(infos[i], terminal_observation=obs[i].copy(), moved=reason)
                # (an episode that ended on its own in this step keeps its own end reason)
                obs[i] = first_obs
        self.tracker.record(rewards, terminated | truncated, infos)
        self.last_obs = obs.copy()
        self.wait_seconds += time.time() - started
        return obs, rewards, terminated, truncated, infos

    def _await(self, futures):
        """Waits for every future; Ctrl-C abandons the calls still out (their farms' threads are
        replaced), so nothing later queues behind a stuck call."""
        try:
            waiting = set(f for f in futures.values() if not f.done())  # usually none: a step
            while waiting:
                waiting = concurrent.futures.wait(waiting, timeout=1.0)[1]
                if waiting:
                    self.farmer.check_give_up()
        except BaseException:
            self._abandon(futures)
            raise

    def _collect(self, futures, store):
        """Waits for every farm; ``store(indices, results)`` takes each farm's good results;
        returns ``{index: (reason, lost_cause)}`` of the lost environments, rebuilt by then."""
        self._await(futures)
        lost = {}
        down = {}
        expired = []
        for (link, lease), future in futures.items():
            indices = self._groups[(link, lease)][0]
            try:
                results = future.result()
            except FARM_DOWN as e:
                down[link] = e
                for i in indices:
                    lost[i] = ('farm %s lost: %s' % (link.name, _describe(e)), 'farm')
                continue
            except LookupError as e:
                if not _no_such_lease(e):
                    raise
                expired.append((link, lease))
                for i in indices:
                    lost[i] = (str(e), 'lease')
                continue
            good = []
            for i, result in zip(indices, results):
                if isinstance(result, dict):
                    if result.get('kind') == 'input':
                        raise ValueError(result['error'])
                    log.warning('%s', result['error'])
                    lost[i] = (result['error'], 'worker')
                else:
                    good.append(i)
            if len(good) < len(indices):
                results = [r for r in results if not isinstance(r, dict)]
            if good:
                store(good, results)
        if down or expired:
            self._recover(down, expired)
        return lost

    def _recover(self, down, expired):
        """Rebuilds the environments of lost farms and forgotten leases where farms answer
        (waiting for one while none does); their episodes are reported lost by the caller."""
        for link, error in down.items():
            self.farmer.mark_down(link, error)
        for link, lease in expired:
            self.farmer.forget_lease(link, lease)
        gone = set(expired)
        old = dict((i, p) for i, p in enumerate(self.places)
                   if p.link in down or (p.link, p.lease) in gone)
        if expired:
            log.warning('farm %s no longer knows our lease (it expired while this process was '
                        'paused, or the farm restarted); rebuilding its environments, their '
                        'episodes truncated', ', '.join(sorted(set(l.name for l, _ in expired))))
        while True:
            if not any(link.up for link in self.farmer.links):
                self.farmer.wait_for_a_farm()
            todo = [i for i in sorted(old)
                    if self.places[i] is old[i] or not self.places[i].link.up]
            if not todo:
                break
            try:
                self._build(todo, mode='recover')
            except FARM_DOWN:  # that farm is marked down: try the others (or wait for one)
                continue
            except (ValueError, RuntimeError) as e:  # refused: capacity, the overcommit policy
                log.warning('could not rebuild %d environments yet: %s; retrying in %.0f s',
                            len(todo), e, REPORT_EVERY)
                self.farmer._stop.wait(REPORT_EVERY)
                if self.farmer._stop.is_set():
                    raise FarmsLostError('the farmer was closed while environments were lost')
        self._displaced.update(old)
        log.warning('%d environments rebuilt on %s', len(old), ', '.join(sorted(set(
            self.places[i].link.name for i in old))))

    def _move_back(self):
        """Environments that took over a lost farm's work may run on farms above capacity (at
        half speed); while a farm has free capacity, those move there. Returns
        ``{index: (first observation, reason)}`` of the moved ones; their episodes are cut."""
        excess = []
        for link in set(self.places[i].link for i in self._displaced):
            mine = sorted(i for i in self._displaced if self.places[i].link is link)
            if link.up and link.refresh():
                over = max(0, link.info['in_use'] - link.info['capacity'])
            else:
                over = len(mine)  # on a farm that is down again: move them when there is room
            excess.extend(mine[:over])
            self._displaced.difference_update(mine[over:])  # within capacity: they stay
        if not excess:
            return {}
        fits = len(excess) - self.farmer.place(
            len(excess), replacing=[self.places[i] for i in excess])[1]
        if not fits:
            return {}
        old = dict((i, self.places[i]) for i in excess[:fits])
        try:
            self._build(list(old), mode='move')
        except Exception as e:  # capacity taken meanwhile, or a farm failed: retried next round
            log.warning('could not move %d environments back yet: %s', len(old), _describe(e))
        moved = dict((i, place) for i, place in old.items() if self.places[i] is not place)
        released = {}
        for i, place in moved.items():
            released.setdefault((place.link, place.lease), []).append(place.env_id)
            self._displaced.discard(i)
        for (link, lease), ids in released.items():
            try:
                if (link, lease) in self._groups:
                    link.call('release', lease, ids, timeout=PROBE_TIMEOUT + 5)
                else:  # nothing of ours left in that lease
                    self.farmer.close_leases([(link, lease)])
            except Exception as e:  # the farm's reaper frees them when the lease expires
                log.warning('releasing %s on %s failed: %s', ids, link.name, _describe(e))
        if not moved:
            return {}
        first = self._reset_many(sorted(moved))
        result = {}
        for k, i in enumerate(sorted(moved)):
            result[i] = (first[k], 'farm %s -> farm %s' % (moved[i].link.name,
                                                           self.places[i].link.name))
        log.warning('%d environments moved to free capacity: %s', len(result),
                    ', '.join(sorted(set(reason for _, reason in result.values()))))
        return result

    def _reset_many(self, indices, seed=None):
        """First observations of environments ``indices`` (replaced or moved ones), one call
        per farm; environments lost again meanwhile are rebuilt first."""
        wanted = set(indices)
        for attempt in range(10):
            futures = {}
            for key, (group_indices, ids) in self._groups.items():
                mine = [(i, env_id) for i, env_id in zip(group_indices, ids) if i in wanted]
                if mine:
                    seeds = None if seed is None else [seed + i for i, _ in mine]
                    futures[key] = (mine, key[0].submit('reset', key[1], [e for _, e in mine],
                                                        seeds))
            self._await(dict((key, f) for key, (_, f) in futures.items()))
            obs = {}
            down, expired = {}, []
            for (link, lease), (mine, future) in futures.items():
                try:
                    results = future.result()
                except FARM_DOWN as e:
                    down[link] = e
                    continue
                except LookupError as e:
                    if not _no_such_lease(e):
                        raise
                    expired.append((link, lease))
                    continue
                for (i, _), result in zip(mine, results):
                    if isinstance(result, dict):
                        raise RuntimeError('could not reset a replaced environment: %s'
                                           % result['error'])
                    obs[i] = np.asarray(result, dtype=np.float32)
            if not down and not expired:
                return np.array([obs[i] for i in indices], dtype=np.float32)
            self._recover(down, expired)
        raise RuntimeError('could not reset replaced environments: farms keep failing')

    def close(self):
        """Release this vector env's environments on every farm, within a few seconds whatever
        the farms do (calls still out are abandoned, not waited for)."""
        if self.closed:
            return
        self.closed = True
        pending, self._pending = self._pending, None
        if pending:
            self._abandon(pending)
        self.farmer.close_leases(list(self._groups))


class RemoteEnv(gym_spaces_lib.Env):
    """One remote environment with the gym interface (reset -> (obs, info); 5-tuple step).

    After ``terminated`` or ``truncated``, call ``reset`` as usual. The farm has already reset the
    environment by then (auto-reset), so ``reset()`` without a seed returns that first
    observation without a second reset: episodes are those of a local env stepped the same way,
    and an osim-rl reset (85 ms) is not paid twice.
    """

    metadata = {'render_modes': []}

    def __init__(self, vec_env):
        self.vec = vec_env
        self.observation_space = vec_env.observation_space
        self.action_space = vec_env.action_space
        self._next_obs = None  # the next episode's first observation, once an episode ended

    def reset(self, seed=None, options=None):
        super(RemoteEnv, self).reset(seed=seed)  # seeds np_random, as gym's contract expects
        if seed is None and self._next_obs is not None:
            obs = self._next_obs
        else:
            obs = self.vec.reset(seed=seed)[0]
        self._next_obs = None
        return obs, {}

    def step(self, action):
        obs, rewards, terminated, truncated, infos = self.vec.step(
            np.asarray(action, dtype=np.float64).reshape(1, -1))
        info = infos[0]
        obs = obs[0]
        if 'terminal_observation' in info:
            self._next_obs = obs
            obs = info.pop('terminal_observation')
            info.pop('episode', None)
        else:
            self._next_obs = None
        return obs, float(rewards[0]), bool(terminated[0]), bool(truncated[0]), info

    def close(self):
        self.vec.close()


def print_status(farmer_status):
    header = '%-24s %-5s %-8s %-7s %-8s %-7s %-8s %s' % (
        'farm', 'up', 'capacity', 'in use', 'python', 'pyro4', 'osim-rl', 'error')
    print(header)
    print('-' * len(header))
    for s in farmer_status:
        v = s['versions']
        print('%-24s %-5s %-8s %-7s %-8s %-7s %-8s %s' % (
            s['farm'], 'yes' if s['up'] else 'NO', s['capacity'] if s['up'] else '-',
            s['in_use'] if s['up'] else '-', v.get('python', '-'), v.get('pyro4', '-'),
            v.get('osim-rl') or '-', s['error'] or ''))


def random_policy(env_name, n_envs, steps):
    """Step a random policy through the farms (a smoke run of the whole path); returns steps/s."""
    with Farmer() as farmer:
        print_status(farmer.status())
        env = farmer.vec_env(env_name, n_envs)
        rng = np.random.RandomState(0)
        low, high = env.action_space.low, env.action_space.high
        env.reset(seed=0)
        started, returns = time.time(), []
        for step in range(1, steps + 1):
            infos = env.step(rng.uniform(low, high, (n_envs,) + env.action_space.shape))[4]
            returns += [info['episode']['r'] for info in infos if 'episode' in info]
            if step % 50 == 0 or step == steps:
                rate = step * n_envs / (time.time() - started)
                print('%d vector steps, %.1f env steps/s, %d episodes, mean return %s'
                      % (step, rate, len(returns),
                         '%.2f' % np.mean(returns) if returns else '-'))
        return steps * n_envs / (time.time() - started)


def main(argv=None):
    import argparse
    parser = argparse.ArgumentParser(description='Probe the farms in farmlist.py; optionally '
                                     'step a random policy through them.')
    parser.add_argument('--random-steps', type=int, default=0,
                        help='vector steps of a random policy (0: only print the status table)')
    parser.add_argument('--env', default='L2M2019Env')
    parser.add_argument('--envs', type=int, default=os.cpu_count() or 1)
    parser.add_argument('--verbose', action='store_true', help='tracebacks for user errors too')
    args = parser.parse_args(argv)
    install_excepthook(args.verbose, 'farmer.py')
    logging.basicConfig(level=logging.INFO if args.random_steps else logging.WARNING,
                        format='%(asctime)s %(name)s %(message)s')
    if args.random_steps:
        random_policy(args.env, args.envs, args.random_steps)
        return 0
    farms = read_farmlist()
    configure_tls(os.environ.get(TLS_CA_ENV))
    links = [FarmLink(h, c, p, os.environ.get(KEY_ENV)) for h, c, p in farms]
    for link in links:
        link.probe()
    print_status([link.status() for link in links])
    for link in links:
        link.close()
    if not any(link.up for link in links):
        raise NoFarmError('no farm answered: %s' % '; '.join(_advice(link) for link in links))
    return 0


if __name__ == '__main__':
    sys.exit(main())
