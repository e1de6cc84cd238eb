#!/usr/bin/env python
"""farm.py: serve a pool of environments to learners on other machines (or this one) over Pyro4.

    python farm.py [--host H] [--port P] [--capacity N] [--key K] [--tls-cert F --tls-key F]
                   [--lease-ttl S] [--release-after S] [--overcommit X] ...

One OS process per environment (farmside/envworker.py); this daemon only dispatches, times out, replaces
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
  (recv wakes for what is sent while it waits). recvs on one lease may overlap (on different
  connections): each result is handed to exactly one of them, so a far learner can keep a recv
  waiting at the farm while the answer of another travels back.
  ``post`` and ``post_reset`` (same arguments) are send and send_reset as Pyro4 one-way calls:
  no answer, so a far learner pays no round trip per send; their error elements come from
  the lease's next recv as ``[env_id, error]``, and a malformed call's error is raised by it.
  The learner uses these.
- ``set_params(lease, env_ids, params)``: environment parameters changed without rebuilding the
  environments (a curriculum: a target speed, a difficulty). ``params`` is a dict of str -> number,
  str, bool or list of those; each environment's adapter declares the names it accepts (others are
  refused with the accepted ones named). They take effect at each environment's next reset, and
  a worker replaced after a loss or recycled keeps them. One element per environment: None, or
  the error dict as for reset.
- ``release(lease, env_ids)``, ``close_lease(lease)``, ``renew(lease)``, ``worker_pids(lease)``.

Security: without a key the farm listens on loopback only; beyond loopback a shared key (Pyro4's
HMAC) is required, and callers without it are refused (and logged, see farmside/daemon.py). The key
authenticates callers and protects every message against tampering; it does not hide the data.
Beyond a trusted LAN, add TLS (``--tls-cert``/``--tls-key``; the learner trusts the CA file in
``FARM_TLS_CA``). Connections that never finish their handshake cost no thread and are closed
after ``--handshake-timeout`` (farmside/daemon.py).

Runs unmodified on Python 2.7 and 3.6+.
"""
from __future__ import absolute_import, print_function

import argparse
import logging
import os
import signal
import socket
import sys
import threading
import time

import Pyro4

from farmside import compat
from farmside import daemon as farm_daemon
from farmside import rendezvous
from common import logformat
from common import protocol
# The farm's parts (farmside/); these names stay importable from here, where users and tests
# have always found them, as do common/protocol.py's shared facts.
from farmside.envworker import WorkerError, WorkerLost  # noqa: F401
from farmside.books import (BUILD_TIMEOUT, RECYCLE_RESETS, RECYCLE_STEPS,  # noqa: F401
                            STEP_TIMEOUT, Lease, Slot, Watch)
from farmside.core import Farm, versions  # noqa: F401
from common.protocol import (DEFAULT_PORT, KEEPALIVE_EVERY, KEY_ENV, LEASE_TTL,  # noqa: F401
                             OBJECT_ID, OVERCOMMIT, PROTOCOL, RELEASE_AFTER)

log = logging.getLogger('farm')


def configure_pyro():
    """msgpack only: pickle (and serpent's eval-like paths) are refused at the protocol level."""
    compat.apply()
    Pyro4.config.SERIALIZER = 'msgpack'
    Pyro4.config.SERIALIZERS_ACCEPTED = set(['msgpack'])
    Pyro4.config.SERVERTYPE = 'thread'
    # One thread per connected learner (a farmer holds one or two per farm); connections still
    # shaking hands hold one for at most the handshake timeout (farmside/daemon.py).
    Pyro4.config.THREADPOOL_SIZE = 128
    Pyro4.config.THREADPOOL_SIZE_MIN = 8
    Pyro4.config.DETAILED_TRACEBACK = False
    # One-way calls (post, post_reset) run on their connection's thread, in order with that
    # connection's other calls, instead of on a new thread each (Pyro4's default): a post
    # must reach its environments before the next post for them, and a thread per step costs.
    Pyro4.config.ONEWAY_THREADED = False


# --- serving -------------------------------------------------------------------------------------
def is_loopback(host):
    try:
        return rendezvous.is_loopback(socket.gethostbyname(host))
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
                 farm.versions['python'], farm.lease_ttl, farm.release_after, farm.overcommit)
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
    if not 0 <= args.port <= 65535:
        raise SettingError('--port %d: a port is 1-65535, or 0 for a free one (default %d)'
                           % (args.port, DEFAULT_PORT))
    if args.capacity is not None and args.capacity < 1:
        raise SettingError('--capacity %d: a farm serves at least 1 environment (default: %d, %s)'
                           % ((args.capacity,) + rendezvous.usable_cpus()))
    if args.rendezvous is not None:
        problem = rendezvous.directory_problem(args.rendezvous)
        if problem:
            raise SettingError('--rendezvous %s: %s' % (args.rendezvous, problem))
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
                        help='port (default %d; 0: a free one, announced with --rendezvous)'
                        % DEFAULT_PORT)
    parser.add_argument('--capacity', type=int, default=None, metavar='N',
                        help='environments served at once (default: the CPUs this process may '
                        'use: its affinity mask, or what SLURM gave the job step)')
    parser.add_argument('--rendezvous', metavar='DIR', default=None,
                        help='announce this farm in DIR (one JSON file: the address other '
                        'machines reach it at, port, capacity, protocol, pid), removed when it '
                        'stops; learners find farms there (farmlist.py)')
    parser.add_argument('--key', default=os.environ.get(KEY_ENV),
                        help='shared key (default: $%s); required beyond loopback. It '
                        'authenticates callers and protects messages against tampering; it does '
                        'not hide them (use --tls-cert/--tls-key for that)' % KEY_ENV)
    parser.add_argument('--tls-cert', metavar='FILE',
                        help='serve with TLS: this PEM certificate (learners trust its CA through '
                        '%s)' % protocol.TLS_CA_ENV)
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
    announced = []

    def ready(uri):
        if args.rendezvous is not None:
            announced.append(announce(args.rendezvous, farm, args.host, uri.port))

    try:
        serve(farm, args.host, args.port, args.key, ready=ready, parent=args.exit_with,
              daemon=daemon)
    except KeyboardInterrupt:  # Pyro4's loop usually swallows it; serve() has cleaned up either way
        pass
    except EnvironmentError as e:  # the rendezvous file could not be written
        _bad('--rendezvous %s: cannot write there (%s)' % (args.rendezvous, e.strerror or e))
    finally:
        for path in announced:
            rendezvous.withdraw(path)
    return 0


def announce(directory, farm, host, port):
    """Write ``farm``'s rendezvous file for a daemon on ``host``:``port``; returns its path."""
    address, note = rendezvous.reachable_address(host)
    if note:
        log.warning('%s', note)
    path = rendezvous.announce(directory, rendezvous.farm_record(
        address, port, farm.capacity, PROTOCOL, Pyro4.config.SSL))
    log.info('announced as %s:%d in %s', address, port, path)
    return path


if __name__ == '__main__':
    sys.exit(main())
