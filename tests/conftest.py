"""Shared fixtures: a farm daemon in a thread (unit tests) and real farm.py processes
(integration tests), both on loopback only."""
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

# Keras 2 for keras-rl2, decided when TensorFlow is first imported: stable-baselines3 imports it
# too (through tensorboard) when tests/test_adapters.py is collected, before agents.compat, which
# sets this for the learner, is imported.
os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import farm  # noqa: E402

# A suite started in the background of a non-interactive shell (``cmd &``, nohup) inherits
# SIGINT ignored, and so would every process it starts: the Ctrl-C tests need what a terminal
# gives. (A Python handler is reset to the default at exec, so children get Python's own.)
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _terminated(signum, frame):
    raise KeyboardInterrupt('SIGTERM')


# SIGTERM (``timeout``, a CI runner stopping the job, ``kill``) as Ctrl-C: pytest then runs the
# fixtures' teardown, which removes the namespace hosts, the Slurm daemons and the farms the
# tests made; by default SIGTERM ends the process at once and leaves them behind.
if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
    signal.signal(signal.SIGTERM, _terminated)


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


class ThreadFarm(object):
    """A real Farm and Pyro4 daemon, served from a thread of the test process."""

    def __init__(self, key=None, handshake_timeout=farm.farm_daemon.HANDSHAKE_TIMEOUT,
                 **farm_kwargs):
        import Pyro4
        self.farm = farm.Farm(**farm_kwargs)
        self.key = key
        self.handshake_timeout = handshake_timeout
        ready = threading.Event()
        self.uri = None

        def on_ready(uri):
            self.uri = uri
            ready.set()

        self.thread = threading.Thread(target=self._serve, args=(on_ready,), daemon=True)
        self.thread.start()
        assert ready.wait(10), 'farm daemon did not start'
        self.port = self.uri.port
        self._pyro = Pyro4

    def _serve(self, on_ready):
        # The farm's own daemon (farm_daemon.FarmDaemon), as farm.py serves it.
        self.farm.label = None
        self.daemon, uri = farm.make_daemon(self.farm, '127.0.0.1', 0, self.key,
                                            self.handshake_timeout)
        self.farm.label = '127.0.0.1:%d' % uri.port
        on_ready(uri)
        self.daemon.requestLoop()
        self.daemon.close()

    def proxy(self, key=None):
        proxy = self._pyro.Proxy(self.uri)
        proxy._pyroMaxRetries = 0
        if key or self.key:
            proxy._pyroHmacKey = (key or self.key).encode()
        return proxy

    def close(self):
        self.farm.close()
        self.daemon.shutdown()
        self.thread.join(10)


@pytest.fixture
def thread_farm():
    def start(**kwargs):
        kwargs.setdefault('capacity', 4)
        return ThreadFarm(**kwargs)
    yield from made_then_finished(start, ThreadFarm.close)


def made_then_finished(make, finish):
    """A factory fixture's body (``yield from`` it): the test gets ``make``, and every thing it
    made gets ``finish`` after the test, whatever the test's outcome."""
    made = []

    def making(*args, **kwargs):
        made.append(make(*args, **kwargs))
        return made[-1]

    yield making
    for thing in made:
        finish(thing)


class ProcessFarm(object):
    """``python farm.py`` in its own process (its own session, so it can be killed whole)."""

    def __init__(self, capacity=2, port=None, python=None, extra=(), env=None, cwd=None):
        self.port = port or free_port()
        self.command = [python or sys.executable, os.path.join(ROOT, 'farm.py'), '--host',
                        '127.0.0.1', '--port', str(self.port), '--capacity', str(capacity)]
        self.command += list(extra)
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.process = subprocess.Popen(self.command, env=full_env, start_new_session=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=cwd)
        self.wait_ready()

    def wait_ready(self, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError('farm.py exited: %s' % self.process.stdout.read().decode())
            with socket.socket() as s:
                if s.connect_ex(('127.0.0.1', self.port)) == 0:
                    return
            time.sleep(0.1)
        raise RuntimeError('farm.py did not listen within %d s' % timeout)

    def stop(self, sig=None):
        if self.process.poll() is None:
            self.process.send_signal(sig or signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return self.process.stdout.read().decode()


@pytest.fixture
def restore_signals():
    """The SIGINT and SIGTERM handlers put back after a test that installs its own."""
    saved = dict((s, signal.getsignal(s)) for s in (signal.SIGINT, signal.SIGTERM))
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)


@pytest.fixture
def process_farm():
    yield from made_then_finished(ProcessFarm, ProcessFarm.stop)


def alive(pid):
    """Whether process ``pid`` runs (a zombie does not)."""
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:
        with open('/proc/%d/stat' % pid) as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except OSError:  # it went between the two looks (seen in CI)
        return False


def wait_until(condition, seconds=10.0, every=0.05):
    """Polls ``condition`` until it holds or ``seconds`` pass; returns its last value (the test
    asserts it): a test waits for what it needs, never a fixed time."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(every)
    return condition()


def descendants_alive(session_id):
    """PIDs of live processes in a session (a farm and everything it started)."""
    alive = []
    for pid in os.listdir('/proc'):
        if not pid.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % pid) as f:
                fields = f.read().rsplit(')', 1)[1].split()
        except (IOError, OSError):
            continue
        state, sid = fields[0], int(fields[3])
        if sid == session_id and state != 'Z':
            alive.append(int(pid))
    return alive


def command_lines(pids=None):
    """``{pid: command line}`` of live processes (of ``pids`` only, if given)."""
    found = {}
    for pid in (pids if pids is not None else [int(p) for p in os.listdir('/proc')
                                               if p.isdigit()]):
        try:
            with open('/proc/%d/cmdline' % pid, 'rb') as f:
                line = f.read().replace(b'\0', b' ').decode('utf-8', 'replace').strip()
        except OSError:
            continue
        if line:  # a zombie has none
            found[pid] = line
    return found


def terminated_when(process, ready, seconds=120):
    """Wait until ``ready()``, then SIGTERM ``process`` (a Popen with pipes); its ``(stdout,
    stderr)``. It is killed if anything fails on the way (a test never leaves it running)."""
    try:
        assert wait_until(ready, seconds, every=0.5), 'never ready'
        process.send_signal(signal.SIGTERM)
        return process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
