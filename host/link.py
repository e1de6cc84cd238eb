"""One farm as the learner sees it: :class:`FarmLink`, its calls and its state.

- Calls go through one Pyro4 proxy per calling thread (a proxy belongs to one thread):
  ``link.submit(method, *args)`` runs the call on the farm's own daemon thread and returns a
  Future; ``link.call(method, *args)`` runs it in the caller's thread. So a probe, a lease renewal
  or a close never queues behind a step stuck on a frozen farm. ``abandon()`` gives up on what
  the farm's thread holds: later calls get a fresh thread and connection.
- A proxy never retries a call (environments are not idempotent), and one that failed, or was
  interrupted, is dropped: its connection may be out of step.
- State: ``up``, ``info`` (the farm's last answer to ``info``: capacity, in use, versions, its
  step timeout, lease TTL), ``error`` and ``cause`` (see diagnosis.py), ``calls`` outstanding,
  ``last_answer``. ``probe``/``refresh``/``mark_down`` change it; the Farmer decides when.
- Calls time out ``settings.CALL_MARGIN`` after the farm's own step timeout; probes after
  ``settings.PROBE_TIMEOUT``.
- Process-wide, as Pyro4's configuration is: the msgpack serializer, set on import, and TLS
  (:func:`configure_tls`), after which every farm of this process must use TLS.

``FARM_DOWN`` is the exceptions that mean "this farm is gone", as opposed to an error the farm
reported. Python 3.6 compatible.
"""
import concurrent.futures
import os
import queue
import threading
import time
import weakref

import Pyro4
import Pyro4.errors

from common import protocol
from common.errors import ProtocolMismatchError, UserError
from host import settings
from host.diagnosis import classify, describe

Pyro4.config.SERIALIZER = 'msgpack'
Pyro4.config.SERIALIZERS_ACCEPTED = {'msgpack'}

# Errors that mean "this farm is gone", as opposed to an error the farm reported.
FARM_DOWN = (Pyro4.errors.CommunicationError, OSError)


def configure_tls(ca):
    """Pyro4 over TLS, verified against the CA certificate file ``ca`` (process-wide in Pyro4: every
    farm this process talks to must then use TLS). Nothing when ``ca`` is empty."""
    if not ca:
        return
    if not os.path.isfile(ca):
        raise UserError('%s: no such CA certificate file (set %s, or tls_ca, to the certificate '
                        'that signed the farms\' --tls-cert)' % (ca, settings.TLS_CA_ENV))
    Pyro4.config.SSL = True
    Pyro4.config.SSL_CACERTS = ca

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
        self.cause = None          # why it does not answer: see diagnosis.classify
        self.up = False
        self.retry_at = 0.0
        self.down_since = None
        self.last_answer = None    # time of the last answer to any call
        self.reported = 0.0        # last stall report
        self.stall_answers = True  # whether the farm answered the probe of that report
        self.mismatch = None  # the farm speaks another protocol: why it is not used (one line)
        self.rtt = None       # seconds: the fastest answer to a probe (info) so far
        self.calls = {}     # outstanding calls: token -> (method, started)
        self.reviving = threading.Lock()
        self._local = threading.local()
        # Every thread's proxy, so close() releases them all: by id, as proxies of one farm
        # compare equal; weak, so that the proxy of a thread that ended goes (and closes its
        # connection) with the thread.
        self._proxies = weakref.WeakValueDictionary()
        self._proxies_lock = threading.Lock()
        self._busy = set()     # ids of the proxies in a call now
        self._closed = False
        # Bumped when the farm is marked down: every thread's connection is then to a process
        # that is gone (or was frozen), and is replaced at that thread's next call; otherwise a
        # thread that made no call meanwhile (the learner's) would fail once on a restarted
        # farm and mark it down again.
        self._generation = 0
        self._worker = None
        self._worker_lock = threading.Lock()

    @property
    def name(self):
        return '%s:%d' % (self.host, self.port)

    def _proxy(self, timeout):
        proxy = getattr(self._local, 'proxy', None)
        if proxy is not None and self._local.generation != self._generation:
            self._drop_proxy()
            proxy = None
        if proxy is None:
            proxy = Pyro4.Proxy(protocol.uri(self.host, self.port))
            proxy._pyroMaxRetries = 0  # never replay a step: environments are not idempotent
            # (Pyro4 also learns these from the farm's metadata on connecting; stated here so
            # that a post never waits for an answer whatever the metadata says.)
            proxy._pyroOneway.update(protocol.ONEWAY)
            if self.key:
                proxy._pyroHmacKey = self.key.encode('utf-8')
            self._local.proxy = proxy
            self._local.generation = self._generation
        if id(proxy) not in self._proxies:  # new, or released by close() and used again
            with self._proxies_lock:
                self._proxies[id(proxy)] = proxy
        if proxy._pyroTimeout != timeout:  # setting it reconfigures the socket, even unchanged
            proxy._pyroTimeout = timeout
        return proxy

    def _drop_proxy(self):
        """Closes this thread's connection (a thread that ends, or a call that failed)."""
        proxy = getattr(self._local, 'proxy', None)
        if proxy is not None:
            self._local.proxy = None
            self._release(proxy)

    def release_connection(self):
        """Closes the calling thread's connection to this farm (a thread that is done with it:
        a receiver, a recovery thread); the thread's next call opens a new one."""
        self._drop_proxy()

    def _release(self, proxy):
        with self._proxies_lock:
            self._proxies.pop(id(proxy), None)
        try:
            proxy._pyroRelease()
        except Exception:  # already broken: nothing to release
            pass

    def connections(self):
        """How many connections to this farm this link holds (one per thread that called)."""
        with self._proxies_lock:
            return sum(1 for proxy in self._proxies.values()
                       if proxy._pyroConnection is not None)

    def _invoke(self, method, args, timeout):
        """``proxy.method(*args)`` from this thread, on this thread's own connection."""
        token = object()
        self.calls[token] = (method, time.time())
        proxy = None
        try:
            proxy = self._proxy(timeout)
            self._busy.add(id(proxy))
            result = getattr(proxy, method)(*args)
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
            if proxy is not None:
                self._busy.discard(id(proxy))
                if self._closed:  # close() left this one to us: it was in a call
                    self._drop_proxy()

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
        """The farm's info, or the exception of a farm that does not answer (recorded). A farm
        that speaks another protocol answers with a ProtocolMismatchError: it is not used."""
        started = time.time()
        try:
            info = self.call('info', timeout=timeout or settings.PROBE_TIMEOUT)
        except Exception as e:
            self.error, self.cause = describe(e), classify(e)
            return e
        self.mismatch = protocol.protocol_mismatch(info)
        if self.mismatch:
            if not isinstance(info.get('farm'), str):  # a farm that does not know its name
                self.mismatch = self.mismatch.replace('farm ? ', 'farm %s ' % self.name, 1)
            self.error, self.cause = self.mismatch, 'version'
            return ProtocolMismatchError(self.mismatch)
        self.error = self.cause = None
        took = time.time() - started
        self.rtt = took if self.rtt is None else min(self.rtt, took)
        self.call_timeout = float(info.get('step_timeout', 30.0)) + settings.CALL_MARGIN
        return info

    def probe(self):
        """Asks the farm for its info; records up/down and returns whether it answered."""
        info = self.ping()
        if isinstance(info, Exception):
            self.up = False
            self.retry_at = time.time() + settings.RETRY_EVERY
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
        self.up, self.error, self.cause = False, describe(error), classify(error)
        self.down_since = self.down_since or time.time()
        self.retry_at = time.time() + settings.RETRY_EVERY
        self._generation += 1
        self.abandon()

    def close(self):
        """Gives up on calls still out and closes every connection to this farm, whatever thread
        made it (Pyro4 4 proxies may be released from any thread), at once: a connection in
        the middle of a call (a frozen farm) is closed by its thread when the call ends, since
        releasing it here would wait for that call."""
        self._closed = True
        self.abandon()
        with self._proxies_lock:
            proxies = [proxy for key, proxy in list(self._proxies.items())
                       if key not in self._busy]
        for proxy in proxies:
            self._release(proxy)


