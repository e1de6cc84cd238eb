"""farmside/envworker.py: one environment in one OS process, the farm's unit of isolation.

OpenSim holds the GIL and leaks over long runs, and a simulator may crash or hang; so every
environment instance lives in its own process. This module is both ends of that process:
:func:`_serve`, the worker itself, a tiny command interpreter that receives ``(command,
argument)``, answers ``('ok', result)`` or ``('error', kind, message)``, and fails loudly on an
unknown command; and :class:`EnvWorker`, the farm's handle on it (start, hello, send, take the
answer, close, kill), with :func:`replies` to collect many workers' answers as they come. The
channels between the two (the framed pipe and the shared block) are farmside/channel.py's; when
a worker is recycled or replaced is farmside/lifecycle.py's.

Error kinds: ``'input'`` (the caller's fault, e.g. a bad action: the environment is intact) and
``'env'`` (the simulation raised: the episode cannot go on). A worker that dies or does not answer
in time is the third kind, ``'lost'``, decided here on the farm side, which kills it.

Python 2.7 compatible.
"""
from __future__ import absolute_import

import logging
import math
import multiprocessing
import os
import select
import signal
import sys
import time

from envs import seeding
from farmside.channel import (DONE, STEP, STEP_RESET, Block, plain, read_message, step_env,
                              write_message)

try:  # Python 2.7: the C pickler
    import cPickle as pickle  # novermin (Python 2 branch)
except ImportError:
    import pickle

log = logging.getLogger('farm.worker')

# A fast environment answers within tens of microseconds; waiting for it without sleeping saves
# the scheduler's wake-up latency. Bounded, so a slow simulator costs one short spin per step.
# The spin yields the CPU at every turn: on two cores the worker it waits for may need this one.
SPIN_SECONDS = 0.0002
_yield_cpu = getattr(os, 'sched_yield', lambda: None)  # Python 2.7 has none: a plain spin

if sys.version_info[0] >= 3:
    # forkserver: workers are forked from a clean single-threaded server that has already imported
    # numpy and envs, so a replacement starts in milliseconds and never inherits the daemon's
    # threads or sockets. Python 2.7 has only fork, which is what it uses.
    _context = multiprocessing.get_context('forkserver')  # novermin (Python 3 branch)
    # The forkserver process does not inherit our sys.path (Python 3.11 hands it over but does
    # not apply it before the preload): started from another directory, it imported osim-rl's
    # top-level ``envs`` instead of ours. It does inherit the environment, so put the project
    # first on PYTHONPATH before it starts.
    _here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the checkout
    os.environ['PYTHONPATH'] = os.pathsep.join(
        [_here] + [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p])
    _context.set_forkserver_preload(['numpy', 'envs', 'envs.registry'])
else:  # pragma: no cover - Python 2.7 farms
    _context = multiprocessing


def _batch_scheduling():
    """Marks this worker SCHED_BATCH: the same CPU share, but a worker woken by its command no
    longer preempts the farm while it is still handing out the other environments' commands
    (measured: dispatching to 32 workers took 3x as long). Python 2.7 has no call for it."""
    if hasattr(os, 'sched_setscheduler'):
        try:
            os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))  # novermin
        except OSError:  # not permitted here: the default policy works, a little slower
            pass


def _serve(conn, name, kwargs, params=None):
    """The worker process: build the environment, then answer commands until told to close.
    ``params``: what ``set_params`` gave the worker this one replaces, applied before the first
    reset, so that a curriculum survives recycling and lost workers."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the farm's to handle, not ours
    _batch_scheduling()
    import envs

    fd = conn.fileno()

    def send(reply):
        write_message(fd, pickle.dumps(reply, 2))

    try:
        env = envs.make(name, **kwargs)
        if params:
            env.set_params(**params)
    except Exception as e:
        send(('error', 'input' if isinstance(e, envs.EnvError) else 'env',
              '%s: %s' % (type(e).__name__, e)))
        return
    send(('ok', {'observation_space': env.observation_space,
                 'action_space': env.action_space,
                 'max_episode_steps': env.max_episode_steps}))
    block = None
    while True:
        try:
            message = read_message(fd)
        except (EOFError, IOError, OSError):  # the farm is gone: so are we
            return
        try:
            kind = message[:1]
            if block is not None and kind in (STEP, STEP_RESET):
                info = block.step(env, kind == STEP_RESET)
                write_message(fd, DONE + pickle.dumps(info, 2) if info else DONE)
                continue
            command, arg = pickle.loads(message)
            if command == 'step':
                obs, reward, terminated, truncated, info, ended = step_env(env, *arg)
                info = plain(info)
                if ended is not None:
                    info['terminal_observation'] = plain(ended)
                reply = ('ok', [plain(obs), reward, terminated, truncated, info])
            elif command == 'reset':
                reply = ('ok', plain(env.reset(arg)))
            elif command == 'set_params':  # checked now, applied by the env's next reset
                env.set_params(**dict((str(k), v) for k, v in arg.items()))
                reply = ('ok', None)
            elif command == 'attach':
                block = Block.attach(*arg)
                reply = ('ok', None)
            elif command == 'close':
                env.close()
                send(('ok', None))
                return
            else:
                reply = ('error', 'input', 'unknown worker command %r' % (command,))
        except envs.EnvError as e:
            reply = ('error', 'input', str(e))
        except Exception as e:
            reply = ('error', 'env', '%s: %s' % (type(e).__name__, e))
        send(reply)


class WorkerLost(Exception):
    """The worker died or did not answer in time; it has been killed."""


class WorkerError(Exception):
    """The worker answered with an error: ``kind`` is ``'input'`` or ``'env'``."""

    def __init__(self, kind, message):
        Exception.__init__(self, message)
        self.kind = kind


class EnvWorker(object):
    """Owns one worker process. Not thread-safe: the farm serialises calls per environment."""

    def __init__(self, name, kwargs, params=None, packed=False):
        self.name = name
        self.packed = packed  # step results' observations as wire.pack'ed arrays (Block.result)
        self.steps = 0
        self.resets = 0
        self.conn, child = _context.Pipe()
        self.process = _context.Process(target=_serve,
                                        args=(child, name, dict(kwargs), dict(params or {})),
                                        name='env-%s' % name)
        self.process.daemon = True
        self.process.start()
        child.close()
        # What a replacement of this worker is built with (the farm passes it on): the seed moves
        # on to the successor of the last one given, so a recycled or lost worker's successor
        # neither replays the seeded episodes nor starts unseeded (envs.seeding).
        self.kwargs = dict(kwargs)
        self._seeded(self.kwargs.get('seed'))
        # The parameters set_params has given this worker (the farm records them once the env
        # accepted them): a replacement is built with them.
        self.params = dict(params or {})
        self.spec = None
        self.block = None
        # How long its last step took, command to answer (the farm's recv spins briefly for
        # an answer due that soon rather than sleep; None: not known yet).
        self.last_seconds = None

    @property
    def pid(self):
        return self.process.pid

    def hello(self, timeout):
        """Wait for the environment to be built and share a block with it; returns its spaces
        or raises."""
        deadline = time.time() + timeout
        self.spec = self.receive(deadline)
        sizes = Block.sizes(self.spec)
        if sizes is None:
            return self.spec
        try:
            block, path = Block.create(sizes)
        except (IOError, OSError) as e:  # e.g. /dev/shm full: slower, but it works
            log.warning('worker %s: no shared block (%s); stepping through the pipe', self.pid, e)
            return self.spec
        try:
            self.send('attach', (path, sizes))
            self.receive(deadline)
            self.block = block
        except WorkerError as e:
            log.warning('worker %s could not map the shared block (%s); stepping through the pipe',
                        self.pid, e)
        finally:
            os.unlink(path)  # both have it mapped: the memory lives on, the name does not
        return self.spec

    def _seeded(self, seed):
        if seed is not None and seeding.valid(seed):
            self.kwargs['seed'] = seeding.successor(seed)

    def send(self, command, arg=None):
        if command == 'reset':
            self._seeded(arg)
        self._send(pickle.dumps((command, arg), 2))

    def send_step(self, action, auto_reset):
        if self.block is not None and self.block.load_action(action):
            self._send(STEP_RESET if auto_reset else STEP)
        else:
            self.send('step', (action, auto_reset))

    def _send(self, message):
        try:
            write_message(self.conn.fileno(), message)
        except (IOError, OSError, ValueError) as e:
            self.kill()
            raise WorkerLost('worker %s died (%s)' % (self.pid, e))

    def receive(self, deadline):
        """The reply to the last command; errors come back raised."""
        for _, outcome in replies([self], deadline):
            if isinstance(outcome, Exception):
                raise outcome
            return outcome

    def take(self):
        """The reply waiting on the pipe, or the exception that stands for it."""
        try:
            message = read_message(self.conn.fileno())  # closed (killed): OSError
        except (EOFError, IOError, OSError):
            code = self.process.exitcode
            self.kill()
            return WorkerLost('worker %s died (exit code %s)' % (self.pid, code))
        if message[:1] == DONE:
            return self.block.result(pickle.loads(message[1:]) if len(message) > 1 else {},
                                     self.packed)
        reply = pickle.loads(message)
        if reply[0] == 'ok':
            return reply[1]
        return WorkerError(reply[1], reply[2])

    def timed_out(self):
        """The worker did not answer by its deadline: killed; the WorkerLost that stands for
        its answer."""
        self.kill()
        return WorkerLost('no answer within the step timeout; worker %s killed and replaced'
                          % self.pid)

    def alive(self):
        return self.process.is_alive()

    def close(self, timeout=1.0):
        """Ask politely, then kill."""
        if self.alive():
            try:
                self.send('close')
                if self.conn.poll(timeout):
                    read_message(self.conn.fileno())
            except (EOFError, IOError, OSError, ValueError, WorkerLost):
                pass
        self.kill()

    def kill(self):
        if self.process.is_alive():
            try:
                os.kill(self.process.pid, signal.SIGKILL)
            except OSError:
                pass
        self.process.join(5)
        self.conn.close()
        self.block = None  # unmapped once the last view of it is gone


def replies(workers, deadline):
    """Yields ``(index, outcome)`` for each of ``workers`` as its reply arrives, fastest first:
    the result, or the exception that stands for it (:class:`WorkerError`, :class:`WorkerLost`).
    Those that have not answered by ``deadline`` are killed."""
    waiting = {}
    poller = select.poll()
    for i, worker in enumerate(workers):
        try:
            fd = worker.conn.fileno()
        except (IOError, OSError):  # closed: the worker was already killed
            yield i, WorkerLost('worker %s is gone' % worker.pid)
            continue
        waiting[fd] = i
        poller.register(fd, select.POLLIN)
    spin_until = time.time() + SPIN_SECONDS
    while waiting:
        now = time.time()
        if now >= deadline:
            break
        wait_ms = 0 if now < spin_until else int(math.ceil((deadline - now) * 1000.0))
        ready = poller.poll(wait_ms)
        if not ready and not wait_ms:
            _yield_cpu()
        for fd, _ in ready:
            poller.unregister(fd)
            i = waiting.pop(fd)
            yield i, workers[i].take()
    for i in sorted(waiting.values()):
        yield i, workers[i].timed_out()
