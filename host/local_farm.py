"""The local farm: a ``farm.py`` the farmer starts on this machine when the farm list names only
this machine and no farm answers there.

- :func:`start` runs ``farm.py --host 127.0.0.1`` with the port and capacity of the farm list's
  first entry and ``--exit-with <this pid>`` (so the farm goes even if this process dies without
  closing it), and returns the process once the farm answers a probe. It raises
  :class:`errors.NoFarmError` (ending with ``nothing_answers()``) if the farm exits at once, or
  does not answer within 60 s (then it is stopped).
- :func:`stop` ends it: SIGTERM, then SIGKILL after 15 s. The farmer calls it on close (also at
  interpreter exit, after its leases are closed, not before).

Python 3.6 compatible.
"""
import logging
import os
import subprocess
import sys
import time

from common.errors import NoFarmError
from host import settings

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # where farm.py is

log = logging.getLogger('farmer')


def start(link, key, nothing_answers):
    """The farm process for ``link`` (a FarmLink on this machine), once it answers; ``key``: the
    farm's key (passed in its environment); ``nothing_answers()``: the end of an error message."""
    capacity = max(link.capacity, 1)
    command = [sys.executable, os.path.join(HERE, 'farm.py'), '--host', '127.0.0.1',
               '--port', str(link.port), '--capacity', str(capacity),
               '--exit-with', str(os.getpid())]  # even if we die without closing it
    env = dict(os.environ)
    if key:
        env[settings.KEY_ENV] = key
    log.info('no farm answered; starting a local one: %s', ' '.join(command))
    # The farm logs to stderr, but osim-rl prints to stdout from the workers; the learner's
    # stdout may be a result a program reads (bench/*.py --json), so keep it clean.
    process = subprocess.Popen(command, env=env, start_new_session=True,
                               stdout=sys.stderr.fileno())
    deadline = time.time() + 60
    while time.time() < deadline:
        if process.poll() is not None:
            raise NoFarmError('the local farm exited at once (code %s; its messages are '
                              'above); %s' % (process.returncode, nothing_answers()))
        if link.probe():
            log.info('local farm up at %s (pid %d)', link.name, process.pid)
            return process
        time.sleep(0.2)
    stop(process)
    raise NoFarmError('the local farm did not answer within 60 s; ' + nothing_answers())


def stop(process):
    """Ends the farm ``process`` (None: nothing to do) and waits for it."""
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
