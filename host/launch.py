"""Farms on workstations started and stopped over ssh: ``python farmer.py launch`` / ``stop``.

For every farm of the farm list (``farmlist.py``, or ``--farms host:capacity[:port],...``) on
another machine, :func:`launch` runs, over ssh, in the project's checkout there (``--root``,
default: this checkout's path, as with a shared file system or the same clone everywhere)::

    .venv/bin/python farm.py --host 0.0.0.0 --port P --capacity C --rendezvous runs/farms

in the background (its log ``runs/farms/farm-HOSTNAME-P.log``), then waits until each answers.
The shared key goes to the remote shell on its standard input, never on a command line that
``ps`` shows.
A host that ssh cannot reach, or that has no checkout there, gets one line saying which and why;
the others start. :func:`stop` sends SIGTERM to the farm that announced itself on each host's
port (its rendezvous record names its pid) and waits until it no longer answers. Records and logs
are named by the host's name as well as the port: with the checkout on a shared file system
every workstation writes to the same ``runs/farms``, mostly on the same default port, and a host
must find its own farm there, never another machine's pid (stop also checks that the pid is a
``farm.py`` before signalling it: a record left by a killed farm may name a reused pid). Farms
listed as this machine (127.0.0.1, localhost) are left to the learner, which starts its own.

Python 3.6 compatible.
"""
import logging
import os
import shlex
import subprocess
import time

from common import protocol
from common.errors import UserError
from host import settings
from host.link import FarmLink

log = logging.getLogger('farmer')

RENDEZVOUS = 'runs/farms'    # inside the remote checkout
NO_CHECKOUT = 3              # the remote script's exit code when the checkout is not there
# ``bash -s`` reads its script from standard input a line at a time, so ``read`` takes the next
# line of the same stream: the key, which is thus never on a command line.
READ_KEY = 'IFS= read -r FARM_KEY; export FARM_KEY\n{key}\n'

START = r'''cd {root} 2>/dev/null && test -x .venv/bin/python || {{
  echo "no project checkout at {root} (.venv/bin/python missing; clone it and run ./setup.sh)";
  exit {no_checkout}; }}
{read_key}mkdir -p {rendezvous}
nohup .venv/bin/python farm.py --host 0.0.0.0 --port {port} --capacity {capacity} \
  --rendezvous {rendezvous} > {rendezvous}/farm-"$(hostname)"-{port}.log 2>&1 < /dev/null &
echo "started pid $!"
'''

STOP = r'''cd {root} 2>/dev/null || {{ echo "no project checkout at {root}"; exit {no_checkout}; }}
record={rendezvous}/{prefix}"$(hostname)"-{port}{suffix}
test -f "$record" || exit 0
pid=$(sed -n 's/.*"pid": *\([0-9]*\).*/\1/p' "$record")
test -n "$pid" && ps -p "$pid" -o args= | grep -q 'farm\.py' && kill -TERM "$pid" 2>/dev/null \
  && echo "stopped pid $pid"
'''


def remote_hosts(farms):
    """The farms on other machines, and the local ones (left to the learner)."""
    local = [f for f in farms if f[0].lower() in settings.LOCAL_HOSTS]
    return [f for f in farms if f not in local], local


def _ssh(ssh, host, script, timeout):
    """Run ``script`` (fed to ``bash -s`` on its standard input) on ``host``: ``(exit code,
    last line said)``; 255 is ssh's own failure."""
    command = shlex.split(ssh) + ['-o', 'BatchMode=yes', '-o', 'ConnectTimeout=%d' % timeout,
                                  host, 'bash -s']
    try:
        done = subprocess.run(command, input=script, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, universal_newlines=True,
                              timeout=timeout + 30)  # (3.6: no capture_output, no text)
    except FileNotFoundError:
        raise UserError('--ssh %r: no such command' % ssh)
    except subprocess.TimeoutExpired:
        return 255, 'no answer within %d s' % (timeout + 30)
    # ssh's own warnings ("Permanently added ... to the list of known hosts") go to stderr: the
    # script's answer is its standard output's last line; stderr's says why ssh itself failed.
    said = done.stdout.strip().splitlines()
    if done.returncode == 255 or not said:
        said = (done.stdout + done.stderr).strip().splitlines()
    return done.returncode, said[-1] if said else ''


def launch(farms, key, root, ssh='ssh', timeout=60.0, connect_timeout=10, say=print):
    """Start a farm on every remote host of ``farms`` and wait until each answers; returns the
    links of those started (probed: ``link.status()``). One line per host that could not."""
    if not key:
        raise UserError('farms reached over the network need a shared key: export %s=SECRET '
                        '(it is passed to each farm on ssh\'s standard input)' % settings.KEY_ENV)
    remote, local = remote_hosts(farms)
    for host, _, port in local:
        say('%s:%d: this machine: the learner starts its farm itself' % (host, port))
    started = []
    for host, capacity, port in remote:
        script = START.format(root=shlex.quote(root), port=int(port), capacity=int(capacity),
                              rendezvous=RENDEZVOUS, no_checkout=NO_CHECKOUT,
                              read_key=READ_KEY.format(key=key))
        code, said = _ssh(ssh, host, script, connect_timeout)
        if code == 0:
            started.append(FarmLink(host, capacity, port, key))
        else:
            say('%s: %s' % (host, _why(code, said)))
    deadline = time.time() + timeout
    waiting = list(started)
    while waiting and time.time() < deadline:
        for link in list(waiting):
            link.probe()
            if link.up:
                waiting.remove(link)
        if waiting:
            time.sleep(0.5)
    for link in waiting:
        say('%s: started, but does not answer after %g s (see %s/%s/farm-*-%d.log there): %s'
            % (link.name, timeout, root, RENDEZVOUS, link.port, link.error))
    return started


def stop(farms, root, ssh='ssh', timeout=30.0, connect_timeout=10, say=print):
    """SIGTERM to the farm on each remote host's port; waits until it stops answering. Returns
    the number stopped."""
    remote, _ = remote_hosts(farms)
    stopped = 0
    for host, capacity, port in remote:
        # the record's name as farmside/rendezvous.py's file_name writes it
        code, said = _ssh(ssh, host, STOP.format(root=shlex.quote(root), port=int(port),
                                                 rendezvous=RENDEZVOUS,
                                                 prefix=protocol.RENDEZVOUS_PREFIX,
                                                 suffix=protocol.RENDEZVOUS_SUFFIX,
                                                 no_checkout=NO_CHECKOUT), connect_timeout)
        if code != 0:
            say('%s: %s' % (host, _why(code, said)))
            continue
        if not said.startswith('stopped'):
            say('%s:%d: no farm of ours announced there' % (host, port))
            continue
        link = FarmLink(host, capacity, port, os.environ.get(settings.KEY_ENV))
        deadline = time.time() + timeout
        while time.time() < deadline:
            link.probe()
            if not link.up:
                break
            time.sleep(0.3)
        link.close()
        if link.up:
            say('%s:%d: still answers %g s after SIGTERM' % (host, port, timeout))
        else:
            say('%s:%d: stopped' % (host, port))
            stopped += 1
    return stopped


def _why(code, said):
    if code == 255:
        return 'cannot be reached over ssh (%s)' % (said or 'no reason given')
    if code == NO_CHECKOUT:
        return said
    return 'the remote command failed (exit %d): %s' % (code, said)
