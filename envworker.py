"""One environment in one OS process: the farm's unit of isolation.

OpenSim holds the GIL and leaks over long runs, and a simulator may crash or hang; so every
environment instance lives in its own process, and the farm only talks to it through a pipe.

The worker is a tiny command interpreter: it receives ``(command, argument)``, answers
``('ok', result)`` or ``('error', kind, message)``, and fails loudly on an unknown command. Kinds:
``'input'`` (the caller's fault, e.g. a bad action: the environment is intact) and ``'env'`` (the
simulation raised: the episode cannot go on). A worker that dies or does not answer in time is the
third kind, ``'lost'``, decided by :class:`EnvWorker`, which kills it.

Results are converted to plain data here, once, on the farm side (:func:`plain`): the pipe and the
wire then carry only lists, floats, ints, bools, strings and string-keyed dicts.

Python 2.7 compatible.
"""
from __future__ import absolute_import

import logging
import multiprocessing
import os
import signal
import sys
import time

import numpy as np

log = logging.getLogger('farm.worker')

SPIN_SECONDS = 0.0002

if sys.version_info[0] >= 3:
    # forkserver: workers are forked from a clean single-threaded server that has already imported
    # numpy and envs, so a replacement starts in milliseconds and never inherits the daemon's
    # threads or sockets. Python 2.7 has only fork, which is what it uses.
    _context = multiprocessing.get_context('forkserver')  # novermin (Python 3 branch)
    # The forkserver process does not inherit our sys.path (Python 3.11 hands it over but does
    # not apply it before the preload): started from another directory, it imported osim-rl's
    # top-level ``envs`` instead of ours. It does inherit the environment, so put the project
    # first on PYTHONPATH before it starts.
    _here = os.path.dirname(os.path.abspath(__file__))
    os.environ['PYTHONPATH'] = os.pathsep.join(
        [_here] + [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p])
    _context.set_forkserver_preload(['numpy', 'envs', 'envs.registry'])
    string_types = (str,)
else:  # pragma: no cover - Python 2.7 farms
    _context = multiprocessing
    string_types = (basestring,)  # noqa: F821


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


def _serve(conn, name, kwargs):
    """The worker process: build the environment, then answer commands until told to close."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the farm's to handle, not ours
    import envs
    try:
        env = envs.make(name, **kwargs)
    except Exception as e:
        conn.send(('error', 'input' if isinstance(e, envs.EnvError) else 'env',
                   '%s: %s' % (type(e).__name__, e)))
        return
    conn.send(('ok', {'observation_space': env.observation_space,
                      'action_space': env.action_space,
                      'max_episode_steps': env.max_episode_steps}))
    while True:
        try:
            command, arg = conn.recv()
        except (EOFError, IOError, OSError):  # the farm is gone: so are we
            return
        try:
            if command == 'step':
                action, auto_reset = arg
                obs, reward, terminated, truncated, info = env.step(action)
                info = plain(info)
                obs = plain(obs)
                if auto_reset and (terminated or truncated):
                    # Reset here rather than in another round trip: the learner needs the next
                    # episode's first observation to choose the next action anyway.
                    info['terminal_observation'] = obs
                    obs = plain(env.reset(None))
                reply = ('ok', [obs, float(reward), bool(terminated), bool(truncated), info])
            elif command == 'reset':
                reply = ('ok', plain(env.reset(arg)))
            elif command == 'close':
                env.close()
                conn.send(('ok', None))
                return
            else:
                reply = ('error', 'input', 'unknown worker command %r' % (command,))
        except envs.EnvError as e:
            reply = ('error', 'input', str(e))
        except Exception as e:
            reply = ('error', 'env', '%s: %s' % (type(e).__name__, e))
        conn.send(reply)


class WorkerLost(Exception):
    """The worker died or did not answer in time; it has been killed."""


class EnvWorker(object):
    """Owns one worker process. Not thread-safe: the farm serialises calls per environment."""

    def __init__(self, name, kwargs):
        self.name = name
        self.kwargs = kwargs
        self.steps = 0
        self.resets = 0
        self.conn, child = _context.Pipe()
        self.process = _context.Process(target=_serve, args=(child, name, kwargs),
                                        name='env-%s' % name)
        self.process.daemon = True
        self.process.start()
        child.close()
        self.spec = None

    @property
    def pid(self):
        return self.process.pid

    def hello(self, timeout):
        """Wait for the environment to be built; returns its spaces or raises."""
        self.spec = self.receive(time.time() + timeout)
        return self.spec

    def send(self, command, arg=None):
        try:
            self.conn.send((command, arg))
        except (IOError, OSError, ValueError) as e:
            self.kill()
            raise WorkerLost('worker %s died (%s)' % (self.pid, e))

    def receive(self, deadline):
        """The reply to the last command; ``RuntimeError``-style errors come back as raised."""
        try:
            ready = self._spin()
            if not ready:
                ready = self.conn.poll(max(0.0, deadline - time.time()))
            if not ready:
                self.kill()
                raise WorkerLost('no answer within the step timeout; worker %s killed and replaced'
                                 % self.pid)
            reply = self.conn.recv()
        except (EOFError, IOError, OSError):
            code = self.process.exitcode
            self.kill()
            raise WorkerLost('worker %s died (exit code %s)' % (self.pid, code))
        if reply[0] == 'ok':
            return reply[1]
        raise WorkerError(reply[1], reply[2])

    def _spin(self):
        # A fast environment answers within tens of microseconds; waiting for it without
        # sleeping saves the scheduler's wake-up latency, about a third of a farm round trip.
        # Bounded to SPIN_SECONDS, so a slow simulator costs one short spin per step.
        end = time.time() + SPIN_SECONDS
        poll = self.conn.poll
        while True:
            if poll(0):
                return True
            if time.time() >= end:
                return False

    def alive(self):
        return self.process.is_alive()

    def close(self, timeout=1.0):
        """Ask politely, then kill."""
        if self.alive():
            try:
                self.conn.send(('close', None))
                if self.conn.poll(timeout):
                    self.conn.recv()
            except (EOFError, IOError, OSError, ValueError):
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


class WorkerError(Exception):
    """The worker answered with an error: ``kind`` is ``'input'`` or ``'env'``."""

    def __init__(self, kind, message):
        Exception.__init__(self, message)
        self.kind = kind
