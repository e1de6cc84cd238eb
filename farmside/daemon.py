"""farmside/daemon.py: the farm's Pyro4 daemon, which lets learners in and keeps everyone else out
without costing them a thread.

Why not a plain ``Pyro4.Daemon``: its thread-pool server hands every accepted connection to a
pool thread that waits, with no time limit, for the client's handshake; and when the pool is
full it refuses the next connection by waiting for *that* client's handshake in the accepting
thread. About 70 idle sockets that never sent a byte made a farm deaf to its own learners.

Here (:class:`FarmDaemon`, with :class:`GuardedServer` as its transport):

- a new connection waits in a selector, costing no thread, until its first bytes arrive; one that
  sends nothing within the handshake timeout is closed. At most ``MAX_WAITING`` wait (the oldest
  is closed first), so a flood cannot exhaust file descriptors.
- once bytes arrive it gets a pool thread, and the whole handshake (TLS when the farm has a
  certificate, then Pyro4's, which checks the shared key) must end before the same deadline; the
  accepting thread shuts down a connection that is still shaking hands after it (a client that
  drips one byte at a time included). After a good handshake the connection has no time limit:
  a learner at its prompt for hours keeps it.
- a full pool closes the newcomer at once instead of stalling the accepting thread.
- refused callers (wrong or missing key, not a Pyro4 client, silent, failed TLS) are logged at
  WARNING with their address: at most one line per peer host every ``LOG_EVERY`` seconds, with
  how many more were refused meanwhile.
- a client that disconnects is reported to the served object's ``disconnected(conn)`` (the farm
  releases the leases of a learner that is gone, see farm.py).

Runs unmodified on Python 2.7 and 3.6+.
"""
from __future__ import absolute_import

import collections
import itertools
import logging
import socket
import threading
import time

import Pyro4
from Pyro4 import errors, message, socketutil
from Pyro4.socketserver.multiplexserver import selectors
from Pyro4.socketserver.threadpool import NoFreeWorkersError, PoolError
from Pyro4.socketserver.threadpoolserver import ClientConnectionJob, SocketServer_Threadpool

from common import protocol

HANDSHAKE_TIMEOUT = 5.0  # seconds from connect to a finished handshake (a learner needs ms)
MAX_WAITING = 1024       # connections waiting for their first byte; beyond, the oldest is closed
LOG_EVERY = 10.0         # seconds between two refusal lines about the same peer host
# A handshake is a small dict; Pyro4 would allocate whatever size a header claims before
# checking the key, so a stranger could claim gigabytes per connection.
MAX_HANDSHAKE_BYTES = 65536

log = logging.getLogger('farm.door')


class Refusals(object):
    """Rate-limited WARNING lines about refused callers, one per peer host per ``every`` s."""

    def __init__(self, every=LOG_EVERY):
        self.every = every
        self._hosts = {}  # host -> [time of last line, refused since, last reason, last address]
        self._lock = threading.Lock()

    def note(self, address, reason):
        host = address[0] if isinstance(address, tuple) else str(address)
        now = time.time()
        with self._lock:
            if len(self._hosts) > 4096:  # many hosts: forget the quiet ones rather than grow
                self._flush_locked(now, force=True)
                self._hosts.clear()
            entry = self._hosts.setdefault(host, [0.0, 0, None, None])
            entry[1] += 1
            entry[2], entry[3] = reason, address
            if now - entry[0] >= self.every:
                self._line(host, entry, now)

    def flush(self, force=False):
        """Say how many were refused since the last line, for hosts that have gone quiet (all
        of them with ``force``, when the farm stops)."""
        with self._lock:
            self._flush_locked(time.time(), force)

    def _flush_locked(self, now, force=False):
        for host, entry in list(self._hosts.items()):
            if entry[1] and (force or now - entry[0] >= self.every):
                self._line(host, entry, now)

    def _line(self, host, entry, now):
        count, reason, address = entry[1], entry[2], entry[3]
        where = '%s:%s' % address[:2] if isinstance(address, tuple) else str(address)
        if count == 1:
            log.warning('refused a caller from %s: %s', where, reason)
        else:
            log.warning('refused %d callers from %s in the last %.0f s (last %s: %s)', count, host,
                        now - entry[0] if entry[0] else self.every, where, reason)
        entry[0], entry[1] = now, 0


class _Recorder(object):
    """A connection whose received bytes are kept, so a handshake read once can be read again."""

    def __init__(self, conn):
        self.conn = conn
        self.data = b''

    def recv(self, size):
        chunk = self.conn.recv(size)
        self.data += chunk
        return chunk


class _Replay(object):
    """A connection that first gives back bytes already read from it (see _Recorder)."""

    def __init__(self, conn, data):
        self._conn = conn
        self._data = data

    def recv(self, size):
        if not self._data:
            return self._conn.recv(size)
        chunk, self._data = self._data[:size], self._data[size:]
        if len(chunk) < size:
            chunk += self._conn.recv(size - len(chunk))
        return chunk

    def __getattr__(self, name):
        return getattr(self._conn, name)


class GuardedServer(SocketServer_Threadpool):
    """Pyro4's thread-pool transport, but connections get a thread only once they speak, and
    only until the handshake deadline unless they pass it (see the module docstring)."""

    def guard(self, handshake_timeout):
        """Set up after Pyro4's ``init`` (which binds, and builds the pool and the selector)."""
        if self._selector is None:
            raise RuntimeError('the farm needs the selectors module (selectors34 on Python 2.7)')
        self.handshake_timeout = float(handshake_timeout)
        self.refusals = Refusals()
        self._waiting = collections.OrderedDict()  # socket -> (deadline, address), oldest first
        self._shaking = {}                          # socket -> (deadline, address), in a thread
        self._shaking_lock = threading.Lock()
        # On a TLS farm the listening socket is an SSLSocket whose accept() would run the TLS
        # handshake in this, the accepting, thread: a silent client would stall it. We accept
        # plain sockets and run TLS in the pool thread, under the handshake deadline.
        self._tls = getattr(self.sock, 'context', None) if Pyro4.config.SSL else None
        # select() may call a connection ready that is reset before accept(): never block there.
        self.sock.setblocking(False)

    def events(self, eventsockets):
        # Sleep until a socket is ready or the next deadline (the first waiting socket is the
        # oldest: deadlines are accept time + a constant).
        with self._shaking_lock:
            deadlines = [d for d, _ in self._shaking.values()]
        deadlines += [d for d, _ in itertools.islice(self._waiting.values(), 1)]
        wait = Pyro4.config.POLLTIMEOUT
        if deadlines:
            wait = max(0.0, min(wait, min(deadlines) - time.time()))
        for key, _ in self._selector.select(wait):
            if key.fileobj is self.sock:
                self._accept()
            else:
                deadline, address = self._waiting.pop(key.fileobj)
                self._selector.unregister(key.fileobj)
                self._start(key.fileobj, address, deadline)
        self._expire()
        self.refusals.flush()

    def _accept(self):
        try:
            # socket.socket.accept, not the SSLSocket's: see guard()
            raw, address = socket.socket.accept(self.sock)
        except (socket.timeout, socket.error) as e:  # gone already, or out of descriptors
            log.debug('accept failed: %s', e)
            return
        if self.shutting_down:
            raw.close()
            return
        socketutil.setNoInherit(raw)  # a worker forked meanwhile must not hold it open
        socketutil.setNoDelay(raw)
        if len(self._waiting) >= MAX_WAITING:
            oldest = next(iter(self._waiting))
            self._drop_waiting(oldest, 'too many connections waiting to speak')
        self._waiting[raw] = (time.time() + self.handshake_timeout, address)
        self._selector.register(raw, selectors.EVENT_READ, None)

    def _drop_waiting(self, raw, reason):
        _, address = self._waiting.pop(raw)
        self._selector.unregister(raw)
        self.refusals.note(address, reason)
        _close(raw)

    def _start(self, raw, address, deadline):
        with self._shaking_lock:
            self._shaking[raw] = (deadline, address)
        try:
            self.pool.process(lambda: self._serve(raw, address, deadline))
        except NoFreeWorkersError:
            with self._shaking_lock:
                self._shaking.pop(raw, None)
            self.refusals.note(address, 'no free connection thread (%d connections served); '
                                        'raise THREADPOOL_SIZE' % Pyro4.config.THREADPOOL_SIZE)
            _close(raw)
        except PoolError:  # the pool is closed: the daemon is stopping
            with self._shaking_lock:
                self._shaking.pop(raw, None)
            _close(raw)

    def _serve(self, raw, address, deadline):
        """In a pool thread: TLS if any, then Pyro4's handshake and requests (ClientConnectionJob,
        which calls the daemon's _handshake and, at the end, its clientDisconnect)."""
        sock = raw
        try:
            raw.settimeout(max(0.01, deadline - time.time()))
            if not raw.recv(1, socket.MSG_PEEK):
                # Connected and closed without a word: a port probe or a health check, not a
                # caller that was refused.
                log.debug('%s connected and closed without a word', address)
                self.handshake_over(raw)
                _close(raw)
                return
            if self._tls is not None:
                sock = self._tls.wrap_socket(raw, server_side=True,
                                             do_handshake_on_connect=False)
                with self._shaking_lock:  # wrapping detached ``raw``: shut down the new one
                    if self._shaking.pop(raw, None) is None:
                        raise socket.timeout('handshake deadline passed')
                    self._shaking[sock] = (deadline, address)
                sock.do_handshake()
        except (socket.error, ValueError) as e:  # ssl.SSLError is a socket.error
            self.handshake_over(sock)
            if sock is raw:
                why = 'connection failed before its handshake (%s)' % _reason(e)
            else:
                why = ('TLS handshake failed (%s); this farm needs TLS: give the learner its CA '
                       '(%s)' % (_reason(e), protocol.TLS_CA_ENV))
            self.refusals.note(address, why)
            _close(sock)
            return
        ClientConnectionJob(sock, address, self.daemon)()

    def handshake_over(self, sock):
        """True if ``sock`` finished its handshake in time (it then has no time limit)."""
        with self._shaking_lock:
            if self._shaking.pop(sock, None) is None:
                return False
        sock.settimeout(None)
        return True

    def _expire(self):
        now = time.time()
        for raw, (deadline, _) in list(self._waiting.items()):
            if deadline > now:
                break  # oldest first: the rest are later
            self._drop_waiting(raw, 'sent nothing within %g s' % self.handshake_timeout)
        with self._shaking_lock:
            late = [s for s, (deadline, _) in self._shaking.items() if deadline <= now]
            for sock in late:
                del self._shaking[sock]
        for sock in late:
            try:  # the pool thread's blocked recv returns at once; it then closes the socket
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except (socket.error, OSError, ValueError):
                pass

    def close(self):
        for raw in list(self._waiting):
            self._selector.unregister(raw)
            _close(raw)
        self._waiting.clear()
        self.refusals.flush(force=True)
        SocketServer_Threadpool.close(self)


class FarmDaemon(Pyro4.Daemon):
    """A ``Pyro4.Daemon`` with the guarded transport, refusal logging, and disconnect reports.

    ``served`` is told ``served.disconnected(conn)`` when a client connection ends (a ``conn``
    is what ``Pyro4.current_context.client`` was during that client's calls).
    """

    def __init__(self, host, port, served=None, handshake_timeout=HANDSHAKE_TIMEOUT):
        Pyro4.Daemon.__init__(self, host=host, port=port)
        if not isinstance(self.transportServer, SocketServer_Threadpool):
            raise RuntimeError('FarmDaemon needs Pyro4.config.SERVERTYPE = "thread"')
        # Pyro4 builds its transport from config.SERVERTYPE, with no hook for another class;
        # GuardedServer only adds methods and state to the bound thread-pool server.
        self.transportServer.__class__ = GuardedServer
        self.transportServer.guard(handshake_timeout)
        self.served = served

    @property
    def refusals(self):
        return self.transportServer.refusals

    # The project's one override of a private Pyro4 method. Pyro4's documented hook,
    # validateHandshake(conn, data), runs only after Pyro4 has decoded the first message, so a
    # caller with a wrong key, a client that is not Pyro4 or an oversized or unfinished
    # handshake would be refused with no reason we could log, and an unfinished one would hold
    # a pool thread. Pyro4 4.82 is frozen upstream; tests/test_farm_security.py checks the
    # signature this relies on, so a Pyro4 that changes it fails a test instead of the farm.
    def _handshake(self, conn, denied_reason=None):
        """Pyro4's handshake, once we know why a caller fails it (for the log). The first
        message is read here, classified, then handed to Pyro4's own handshake again."""
        if denied_reason:
            return Pyro4.Daemon._handshake(self, conn, denied_reason)
        address = _peer(conn)
        recorder = _Recorder(conn)
        reason = None
        try:
            header = recorder.recv(message.Message.header_size)
            claimed = message.Message.from_header(header)  # ProtocolError if not Pyro4
            size = claimed.data_size + claimed.annotations_size
            if size > MAX_HANDSHAKE_BYTES:
                self.transportServer.handshake_over(conn.sock)
                self.refusals.note(address, 'a handshake of %d bytes (at most %d)'
                                   % (size, MAX_HANDSHAKE_BYTES))
                return False
            message.Message.recv(_Replay(recorder, header), [message.MSG_CONNECT],
                                 hmac_key=self._pyroHmacKey)
        except (errors.TimeoutError, errors.ConnectionClosedError, socket.error) as e:
            finished = self.transportServer.handshake_over(conn.sock)
            if finished and not isinstance(e, errors.TimeoutError):
                why = 'closed in the middle of its handshake (%s)' % _reason(e)
            else:  # the accepting thread shut it down: the deadline passed
                why = 'no handshake within %g s' % self.transportServer.handshake_timeout
            self.refusals.note(address, why)
            return False  # nothing useful to answer: it did not finish speaking
        except errors.SecurityError:
            reason = ('wrong or missing key (%s must be the same on farm and learner)'
                      % protocol.KEY_ENV)
        except errors.ProtocolError:
            reason = 'not a Pyro4 client (garbage instead of a handshake)'
        except Exception as e:  # anything else Pyro4 refuses, e.g. a message too large
            reason = _reason(e)
        ok = Pyro4.Daemon._handshake(self, _Replay(conn, recorder.data), None)
        ok = self.transportServer.handshake_over(conn.sock) and ok
        if not ok:
            self.refusals.note(address, reason or 'handshake refused (a serializer other than '
                                                  'msgpack, or the deadline passed)')
        return ok

    def clientDisconnect(self, conn):
        if self.served is not None:
            self.served.disconnected(conn)


def _peer(conn):
    try:
        return conn.sock.getpeername()
    except (socket.error, OSError):
        return ('?', 0)


def _reason(error):
    return str(error) or type(error).__name__


def _close(sock):
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except (socket.error, OSError, ValueError):
        pass
    try:
        sock.close()
    except (socket.error, OSError):
        pass
