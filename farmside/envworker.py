"""One environment in one OS process: the farm's unit of isolation.

OpenSim holds the GIL and leaks over long runs, and a simulator may crash or hang; so every
environment instance lives in its own process, and the farm talks to it through two channels:

- a pipe carrying commands and replies. The worker is a tiny command interpreter: it receives
  ``(command, argument)``, answers ``('ok', result)`` or ``('error', kind, message)``, and fails
  loudly on an unknown command. These messages are pickled, which is safe here and only here:
  both ends are this farm and its own children; nothing from the wire is ever unpickled. Both
  ends read and write the pipe's descriptor directly (:func:`write_message`,
  :func:`read_message`), framed as ``multiprocessing``'s Connection frames them (a 4-byte
  big-endian length, then the bytes): one system call each way, and less Python per step than
  the Connection's methods, which matters when 32 workers wake at once on a few cores.
- a shared block of float64 (:class:`Block`: a file in /dev/shm mapped by both and unlinked at
  once, so nothing is left behind) carrying a step's action in and its observation, reward, flags
  and terminal observation out. A step then costs a one-byte message each way and no
  serialisation; with 32 environments per farm that is most of the farm's own time per step.
  Environments whose spaces are not flat boxes step through the pipe alone.

Error kinds: ``'input'`` (the caller's fault, e.g. a bad action: the environment is intact) and
``'env'`` (the simulation raised: the episode cannot go on). A worker that dies or does not answer
in time is the third kind, ``'lost'``, decided here on the farm side, which kills it.

Results are converted to plain data on the farm side, once (:func:`plain`, :meth:`Block.result`):
the wire then carries only lists, floats, ints, bools, strings and string-keyed dicts.

Python 2.7 compatible.
"""
from __future__ import absolute_import

import errno
import logging
import math
import mmap
import multiprocessing
import os
import select
import signal
import struct
import sys
import tempfile
import time

import numpy as np

from common import wire
from envs import seeding

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

# One-byte messages of the shared-block step (anything else on the pipe is a pickle, which
# always starts with the protocol byte 0x80).
STEP, STEP_RESET, DONE = b's', b'S', b'k'
_HEADER = struct.Struct('!i')  # a message's length, as multiprocessing's Connection frames it
# The step path's messages, framed once.
_FRAMED = dict((m, _HEADER.pack(1) + m) for m in (STEP, STEP_RESET, DONE))
_CHUNK = 65536

SHM_DIR = '/dev/shm' if os.path.isdir('/dev/shm') and os.access('/dev/shm', os.W_OK) else None

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
    string_types = (str,)
    number_types = (float, int)
else:  # pragma: no cover - Python 2.7 farms
    _context = multiprocessing
    string_types = (basestring,)  # noqa: F821
    number_types = (float, int, long)  # noqa: F821  # novermin (Python 2 branch)


def plain(value):
    """The farm side's one conversion to wire-safe data (numpy arrays and scalars included)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, dict):
        return dict((str(k), plain(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if value is None or isinstance(value, string_types):
        return value
    return repr(value)


class Block(object):
    """The memory one worker and the farm share for a step: ``action`` (written by the farm),
    then ``obs``, ``terminal`` (the ended episode's last observation after an auto-reset) and
    ``scalars`` = reward, terminated, truncated, reset-done (written by the worker)."""

    def __init__(self, mapped, sizes):
        self.act_size, self.obs_size = sizes
        a, o = sizes
        values = np.frombuffer(mapped, dtype=np.float64)  # the views keep the mapping alive
        self.action = values[:a]
        self.obs = values[a:a + o]
        self.terminal = values[a + o:a + 2 * o]
        self.scalars = values[a + 2 * o:]

    @staticmethod
    def sizes(spec):
        """``(action size, observation size)`` for flat box spaces, else None (pipe only)."""
        spaces = spec['action_space'], spec['observation_space']
        if any(s.get('kind') != 'box' or len(s.get('shape', ())) != 1 for s in spaces):
            return None
        return int(spaces[0]['shape'][0]), int(spaces[1]['shape'][0])

    @staticmethod
    def nbytes(sizes):
        return 8 * (sizes[0] + 2 * sizes[1] + 4)

    @classmethod
    def create(cls, sizes):
        """A new block and the path the worker attaches by (the caller unlinks it after)."""
        fd, path = tempfile.mkstemp(prefix='osimfarm-', dir=SHM_DIR)
        try:
            os.ftruncate(fd, cls.nbytes(sizes))
            mapped = mmap.mmap(fd, cls.nbytes(sizes))
        except Exception:
            os.unlink(path)
            raise
        finally:
            os.close(fd)
        return cls(mapped, sizes), path

    @classmethod
    def attach(cls, path, sizes):
        fd = os.open(path, os.O_RDWR)
        try:
            return cls(mmap.mmap(fd, cls.nbytes(sizes)), sizes)
        finally:
            os.close(fd)

    # farm side
    def load_action(self, action):
        """Writes ``action`` into the block if it is a flat list of numbers of the right length
        (or a row of a packed float array, common/wire.py); False otherwise (it then goes through the
        pipe, and the worker explains what is wrong)."""
        if isinstance(action, np.ndarray):
            if action.shape != (self.act_size,) or action.dtype.kind != 'f':
                return False
            self.action[:] = action
            return True
        if not isinstance(action, (list, tuple)) or len(action) != self.act_size:
            return False
        for a in action:
            if type(a) not in number_types:  # not isinstance: bool is an int, and is refused
                return False
        self.action[:] = action
        return True

    def result(self, info, packed=False):
        """The step's result as plain data; with ``packed`` its observations are wire.pack'ed
        float32 arrays (one copy of the block's bytes, no list of floats)."""
        reward, terminated, truncated, reset = self.scalars.tolist()
        if reset:
            info['terminal_observation'] = _out(self.terminal, packed)
        return [_out(self.obs, packed), reward, bool(terminated), bool(truncated), info]

    # worker side
    def step(self, env, auto_reset):
        """Steps ``env`` with the block's action, leaves the outcome in the block; returns info.
        The environment gets its own copy of the action, a float64 array (envs.base.CheckedAction
        checks one in a single numpy call), never a view of the memory the farm writes."""
        obs, reward, terminated, truncated, info, ended = _step(env, self.action.copy(),
                                                                auto_reset)
        if ended is not None:
            self.terminal[:] = _flat(ended, self.terminal)
        self.obs[:] = _flat(obs, self.obs)
        # Element by element: numpy reading a tuple costs more than four plain stores.
        scalars = self.scalars
        scalars[0] = reward
        scalars[1] = terminated
        scalars[2] = truncated
        scalars[3] = ended is not None
        return plain(info) if info else None


def _flat(values, like):
    """``values`` as the block expects them: an array of ``like``'s shape is stored as it is."""
    if isinstance(values, np.ndarray) and values.shape == like.shape:
        return values
    return np.asarray(values, dtype=np.float64).ravel()


def _out(values, packed):
    return wire.pack(values.astype(np.float32)) if packed else values.tolist()


def _step(env, action, auto_reset):
    """``env.step(action)``, typed, plus ``ended``: with ``auto_reset``, the last observation of an
    episode that ended here (``obs`` is then the next episode's first), else None. Reset here
    rather than in another round trip: the learner needs that first observation anyway."""
    obs, reward, terminated, truncated, info = env.step(action)
    terminated, truncated = bool(terminated), bool(truncated)
    ended = None
    if auto_reset and (terminated or truncated):
        ended, obs = obs, env.reset(None)
    return obs, float(reward), terminated, truncated, info, ended


def write_message(fd, payload):
    """Writes one framed message to the pipe ``fd`` (a blocking write may come back short for
    a large message: the rest follows)."""
    data = _FRAMED.get(payload) or _HEADER.pack(len(payload)) + payload
    while data:
        data = data[_retrying(os.write, fd, data):]


def read_message(fd):
    """Reads one framed message from the pipe ``fd``; EOFError when the other end closed it.
    Each end waits for an answer before it sends again, so the pipe never holds more than one
    message: a read of whatever is there cannot take the start of the next."""
    data = b''
    size = None
    while size is None or len(data) < size:
        chunk = _retrying(os.read, fd, _CHUNK if size is None else max(_CHUNK, size - len(data)))
        if not chunk:
            raise EOFError('the pipe was closed')
        data += chunk
        if size is None and len(data) >= _HEADER.size:
            size = _HEADER.size + _HEADER.unpack(data[:_HEADER.size])[0]
    return data[_HEADER.size:]


def _retrying(call, *args):
    """``call(*args)``, again when a signal interrupted it (Python 3 retries by itself; 2.7
    raises EINTR)."""
    while True:
        try:
            return call(*args)
        except (IOError, OSError) as e:
            if e.errno != errno.EINTR:
                raise


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
                obs, reward, terminated, truncated, info, ended = _step(env, *arg)
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

    def _take(self):
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

    def _timed_out(self):
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
            yield i, workers[i]._take()
    for i in sorted(waiting.values()):
        yield i, workers[i]._timed_out()
