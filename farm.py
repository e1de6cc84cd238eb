#!/usr/bin/env python
"""farm.py: serve a pool of environments to learners on other machines (or this one) over Pyro4.

    python farm.py [--host H] [--port P] [--capacity N] [--key K]

One OS process per environment (envworker.py); this daemon only dispatches, times out, replaces
and recycles workers, and keeps the books of who holds what.

The verbs, all taking and returning plain data (msgpack; pickle is never accepted):

- ``info()``: capacity, what is in use, versions, known environment names.
- ``open_lease(ttl)`` -> lease token. A learner's environments belong to its lease; every call
  renews it; a lease not renewed for ``ttl`` seconds expires and its environments are killed, so a
  crashed learner never locks capacity. Tokens are random: nobody can name another's lease.
- ``make(lease, name, kwargs, n)`` -> ``{'env_ids', 'observation_space', 'action_space',
  'max_episode_steps'}``: n workers of environment ``name`` (a registered name, never a module).
- ``reset(lease, env_ids, seeds)`` / ``step(lease, env_ids, actions, auto_reset)``: one call for
  all of a learner's environments on this farm, stepped concurrently. With ``auto_reset`` an
  environment whose episode ended is reset at once: its ``obs`` is the next episode's first and
  ``info['terminal_observation']`` the ended one's last. Each element of the answer is either the
  result (``obs`` for reset, ``[obs, reward, terminated, truncated, info]`` for step) or
  ``{'error': message, 'kind': 'input' | 'env' | 'lost'}``: one environment's failure never fails
  the others. ``'lost'``: its worker died or exceeded the step timeout and has been replaced; reset
  it. ``'env'``: the simulation raised; reset it. ``'input'``: the caller's action was bad.
- ``release(lease, env_ids)``, ``close_lease(lease)``, ``renew(lease)``, ``worker_pids(lease)``.

Security: without a key the farm listens on loopback only; beyond loopback a shared key (Pyro4's
HMAC) is required, and callers without it are refused.

Runs unmodified on Python 2.7 and 3.6+.
"""
from __future__ import absolute_import, print_function

import argparse
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
import uuid

import Pyro4

import farm_compat
from envworker import EnvWorker, WorkerError, WorkerLost, replies

# --- configuration -------------------------------------------------------------------------------
DEFAULT_PORT = 20099
OBJECT_ID = 'farm'
PROTOCOL = 1                 # bump when a verb changes shape
STEP_TIMEOUT = 30.0          # seconds one step or reset may take before the worker is replaced
BUILD_TIMEOUT = 120.0        # seconds to build an environment (OpenSim: 0.1-0.4 s, but cold imports)
LEASE_TTL = 60.0             # seconds a lease lives without any call
RECYCLE_STEPS = 100000       # a worker is replaced at the next reset after this many steps...
RECYCLE_RESETS = 500         # ...or this many resets (osim-rl issues #58, #176: leaks, slowdowns)
OVERCOMMIT = 2               # a farm taking over a lost farm's envs may run up to this x capacity
KEY_ENV = 'FARM_KEY'

log = logging.getLogger('farm')


def configure_pyro():
    """msgpack only: pickle (and serpent's eval-like paths) are refused at the protocol level."""
    farm_compat.apply()
    Pyro4.config.SERIALIZER = 'msgpack'
    Pyro4.config.SERIALIZERS_ACCEPTED = set(['msgpack'])
    Pyro4.config.SERVERTYPE = 'thread'
    Pyro4.config.THREADPOOL_SIZE = 64
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
    """One leased environment: its worker, and whether it needs a reset before stepping."""

    def __init__(self, env_id, lease, worker):
        self.env_id = env_id
        self.lease = lease
        self.worker = worker
        self.needs_hello = True


class Lease(object):
    def __init__(self, token, ttl):
        self.token = token
        self.ttl = ttl
        self.expires = time.time() + ttl
        self.env_ids = []
        self.lock = threading.Lock()  # one call at a time per learner


@Pyro4.expose
@Pyro4.behavior(instance_mode='single')
class Farm(object):
    def __init__(self, capacity=None, label=None, step_timeout=STEP_TIMEOUT,
                 recycle_steps=RECYCLE_STEPS, recycle_resets=RECYCLE_RESETS,
                 lease_ttl=LEASE_TTL):
        self.capacity = int(capacity or multiprocessing.cpu_count())
        self.label = label  # host:port, filled in by serve() once the port is known
        self.step_timeout = float(step_timeout)
        self.recycle_steps = int(recycle_steps)
        self.recycle_resets = int(recycle_resets)
        self.lease_ttl = float(lease_ttl)
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
        return {'farm': self.label, 'capacity': self.capacity, 'in_use': in_use, 'leases': leases,
                'versions': self._versions, 'envs': envs.names(),
                'step_timeout': self.step_timeout, 'lease_ttl': self.lease_ttl}

    # --- leases ----------------------------------------------------------------------------------
    def open_lease(self, ttl=None):
        ttl = float(ttl or self.lease_ttl)
        if not 0 < ttl <= 24 * 3600:
            raise ValueError('lease ttl must be in (0, 86400] seconds, got %r' % (ttl,))
        lease = Lease(uuid.uuid4().hex, ttl)
        with self._books:
            self._leases[lease.token] = lease
        log.info('lease %s... opened (ttl %.0f s)', lease.token[:8], ttl)
        return lease.token

    def renew(self, lease):
        self._lease(lease)
        return True

    def close_lease(self, lease):
        with self._books:
            held = self._leases.pop(lease, None)
        if held is None:
            return False
        self._drop(held.env_ids)
        log.info('lease %s... closed', lease[:8])
        return True

    def worker_pids(self, lease):
        held = self._lease(lease)
        with self._books:
            return dict((str(i), self._slots[i].worker.pid) for i in held.env_ids)

    # --- environments ----------------------------------------------------------------------------
    def make(self, lease, name, kwargs=None, n=1, overcommit=False):
        held = self._lease(lease)
        if not isinstance(kwargs or {}, dict):
            raise ValueError('%s: kwargs must be a dict, got %r' % (self.label, kwargs))
        n = int(n)
        limit = self.capacity * (OVERCOMMIT if overcommit else 1)
        with self._books:
            free = limit - len(self._slots)
            if n < 1 or n > free:
                raise ValueError('farm %s: cannot make %d environments, %d of %d free'
                                 % (self.label, n, max(free, 0), limit))
            ids = list(range(self._next_id, self._next_id + n))
            self._next_id += n
            # Reserve the capacity now; the workers are filled in below.
            for env_id in ids:
                self._slots[env_id] = None
        slots = []
        try:
            workers = [EnvWorker(name, dict(kwargs or {})) for _ in ids]
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

    def _unreserve(self, ids, slots):
        for slot in slots:
            slot.worker.kill()
        with self._books:
            for env_id in ids:
                self._slots.pop(env_id, None)

    def release(self, lease, env_ids):
        held = self._lease(lease)
        env_ids = [int(i) for i in env_ids]
        self._owned(held, env_ids)
        with self._books:
            for i in env_ids:
                held.env_ids.remove(i)
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
            return self._call_all(slots, 'reset', seeds)

    def step(self, lease, env_ids, actions, auto_reset=False):
        held = self._lease(lease)
        slots = self._owned(held, env_ids)
        if not isinstance(actions, (list, tuple)) or len(actions) != len(slots):
            raise ValueError('farm %s: step needs one action per environment (%d), got %r'
                             % (self.label, len(slots), type(actions).__name__))
        auto_reset = bool(auto_reset)
        with held.lock:
            return self._call_all(slots, 'step', [(a, auto_reset) for a in actions])

    # --- the dispatching core --------------------------------------------------------------------
    def _call_all(self, slots, command, args):
        """Send every command first, then collect in the order they finish: the workers run
        concurrently. ``args`` are the commands' arguments (``(action, auto_reset)`` to step)."""
        results = [None] * len(slots)
        sent = []
        for k, (slot, arg) in enumerate(zip(slots, args)):
            try:
                if command == 'reset':
                    self._prepare_reset(slot)
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
            try:
                if isinstance(outcome, Exception):
                    raise outcome
                results[k] = outcome
                if command == 'step':
                    slot.worker.steps += 1
                    if 'terminal_observation' in outcome[4]:
                        slot.worker.resets += 1
                        if self._due(slot.worker):
                            outcome[0] = self._recycle(slot)
                else:
                    slot.worker.resets += 1
            except Exception as e:
                results[k] = self._failure(slot, e)
        return results

    def _due(self, worker):
        return worker.steps >= self.recycle_steps or worker.resets >= self.recycle_resets

    def _replace(self, slot):
        """A fresh worker for ``slot`` (the old one closed or killed); it must say hello first."""
        old = slot.worker
        if old.alive():
            old.close()
        else:
            old.kill()  # reaps it and closes the pipe
        slot.worker = EnvWorker(old.name, old.kwargs)  # builds while the caller goes on
        slot.needs_hello = True

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
            return held

    def _owned(self, held, env_ids):
        if not isinstance(env_ids, (list, tuple)):
            raise ValueError('farm %s: env_ids must be a list' % self.label)
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
                expired = [l for l in self._leases.values() if l.expires < now]
                for held in expired:
                    del self._leases[held.token]
            for held in expired:
                log.warning('lease %s... expired: releasing %d environments', held.token[:8],
                            len(held.env_ids))
                self._drop(held.env_ids)

    def close(self):
        """Kill every worker. The daemon is closed by whoever owns it."""
        self._stop.set()
        with self._books:
            leases = list(self._leases.values())
            self._leases.clear()
        for held in leases:
            self._drop(held.env_ids)


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


def serve(farm, host='127.0.0.1', port=DEFAULT_PORT, key=None, ready=None, parent=None):
    """Run a daemon for ``farm`` until interrupted. ``ready(uri)`` is called once it listens;
    with ``parent`` (a pid) the farm also stops when that process ends."""
    configure_pyro()
    if not key and not is_loopback(host):
        raise SystemExit('farm.py: listening on %s (beyond loopback) needs a shared key: '
                         '--key SECRET or %s=SECRET, and the same on the learner' % (host, KEY_ENV))
    daemon = Pyro4.Daemon(host=host, port=port)
    try:
        if key:
            daemon._pyroHmacKey = key.encode('utf-8') if not isinstance(key, bytes) else key
        uri = daemon.register(farm, OBJECT_ID)
        if farm.label is None:
            farm.label = '%s:%d' % (socket.gethostname(), uri.port)
        log.info('farm %s serving %d environments at %s (python %s)', farm.label, farm.capacity,
                 uri.location, farm._versions['python'])
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--host', default='127.0.0.1',
                        help='address to listen on (default loopback; others need --key)')
    parser.add_argument('--port', type=int, default=DEFAULT_PORT, help='port (default 20099)')
    parser.add_argument('--capacity', type=int, default=multiprocessing.cpu_count(),
                        help='environments served at once (default: CPU count)')
    parser.add_argument('--key', default=os.environ.get(KEY_ENV),
                        help='shared key (default: $%s); required beyond loopback' % KEY_ENV)
    parser.add_argument('--step-timeout', type=float, default=STEP_TIMEOUT)
    parser.add_argument('--recycle-steps', type=int, default=RECYCLE_STEPS)
    parser.add_argument('--recycle-resets', type=int, default=RECYCLE_RESETS)
    parser.add_argument('--lease-ttl', type=float, default=LEASE_TTL)
    parser.add_argument('--exit-with', type=int, default=None, metavar='PID',
                        help='stop when process PID ends (used by a learner that starts a '
                        'local farm for itself)')
    parser.add_argument('--log-level', default='INFO')
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format='%(asctime)s %(name)s %(levelname)s %(message)s')
    signal.signal(signal.SIGTERM, _raise_interrupt)
    _allow_many_files()
    farm = Farm(capacity=args.capacity, step_timeout=args.step_timeout, recycle_steps=args.recycle_steps,
                recycle_resets=args.recycle_resets, lease_ttl=args.lease_ttl)
    try:
        serve(farm, args.host, args.port, args.key, parent=args.exit_with)
    except KeyboardInterrupt:  # Pyro4's loop usually swallows it; serve() has cleaned up either way
        pass
    return 0


if __name__ == '__main__':
    sys.exit(main())
