"""farmside/rendezvous.py: how a farm tells learners where it is, and how many cores it may use.

- :func:`usable_cpus`: the CPUs this farm may use: its affinity mask and, under SLURM, what the
  job step was given (``SLURM_CPUS_PER_TASK``, else ``SLURM_CPUS_ON_NODE``), never the whole
  machine's count when the scheduler gave less. The default capacity.
- :func:`reachable_address`: the address other hosts reach the farm at, for the address it
  listens on: that address itself, or for a wildcard bind (``0.0.0.0``) the machine's
  non-loopback address. Never a loopback address for a non-loopback bind: a host name that
  resolves to loopback (Debian's ``127.0.1.1``) is skipped and the reason returned as a note.
- :func:`announce` / :func:`withdraw`: one small JSON file per farm in a rendezvous directory
  (``farm-HOST-PORT.json``: address, port, capacity, protocol, pid, hostname, SLURM node), written whole
  (temporary file, then rename: a reader never sees half of one) and removed on a clean exit.
  The learner's side reads them (``host/rendezvous.py``).

Plain data only; runs unmodified on Python 2.7 and 3.6+.
"""
from __future__ import absolute_import

import errno
import json
import multiprocessing
import os
import socket
import stat
import subprocess

from common.protocol import RENDEZVOUS_PREFIX, RENDEZVOUS_SUFFIX

WILDCARDS = ('', '0.0.0.0', '::')


def usable_cpus(environ=None):
    """``(count, why)``: how many CPUs this process may use, and where that number comes from."""
    environ = os.environ if environ is None else environ
    affinity = getattr(os, 'sched_getaffinity', None)  # Python 3.3+ on Linux only
    if affinity is not None:
        count, why = len(affinity(0)), 'the CPUs in its affinity mask'
    else:  # Python 2.7: the machine's count
        count, why = multiprocessing.cpu_count(), 'the CPU count'
    for name in ('SLURM_CPUS_PER_TASK', 'SLURM_CPUS_ON_NODE'):
        value = environ.get(name, '')
        if value.isdigit() and int(value) > 0:
            if int(value) < count:
                count, why = int(value), '%s=%s' % (name, value)
            break
    return count, why


def is_loopback(address):
    return address.startswith('127.') or address == '::1'


def _resolved(name):
    try:
        return [info[4][0] for info in socket.getaddrinfo(name, None, socket.AF_INET)]
    except socket.error:
        return []


def _interface_addresses():
    """This machine's global IPv4 addresses from iproute2 (Linux), or [] where it is absent."""
    try:
        with open(os.devnull, 'w') as quiet:
            out = subprocess.check_output(['ip', '-o', '-4', 'addr', 'show', 'scope', 'global'],
                                          stderr=quiet)
    except (OSError, subprocess.CalledProcessError):
        return []
    found = []
    for line in out.decode('ascii', 'replace').splitlines():
        fields = line.split()
        if 'inet' in fields:
            found.append(fields[fields.index('inet') + 1].split('/')[0])
    return found


def reachable_address(host, hostname=None, interfaces=_interface_addresses):
    """``(address, note)`` for a farm listening on ``host``: the address learners should use,
    and a one-line note for the operator when the host name could not give it (else None)."""
    if host not in WILDCARDS:
        addresses = _resolved(host) or [host]
        return addresses[0], None
    hostname = hostname or socket.gethostname()
    named = _resolved(hostname)
    outward = [a for a in named if not is_loopback(a)]
    if outward:
        return outward[0], None
    others = [a for a in interfaces() if not is_loopback(a)]
    if named:
        note = ('host name %s resolves to loopback %s, which other machines cannot reach'
                % (hostname, named[0]))
    else:
        note = 'host name %s does not resolve' % hostname
    if others:
        return others[0], ('%s: announcing %s instead (to choose, pass --host ADDRESS, or fix '
                           '/etc/hosts)' % (note, others[0]))
    return (named or ['127.0.0.1'])[0], ('%s, and no other address was found: only this machine '
                                         'can reach the farm (pass --host ADDRESS)' % note)


def directory_problem(where):
    """Why a farm cannot announce itself in ``where`` (one line), or None."""
    try:
        is_dir = stat.S_ISDIR(os.stat(where).st_mode)
    except OSError as e:
        if e.errno == errno.ENOENT:
            return 'no such directory (create it, on a file system the learner sees too)'
        return 'cannot reach it (%s)' % e.strerror
    if not is_dir:
        return 'not a directory'
    if not os.access(where, os.W_OK | os.X_OK):
        return 'this user cannot write there'
    return None


def farm_record(address, port, capacity, protocol, tls):
    """The plain data a farm announces (see the module docstring)."""
    return {'address': address, 'port': port, 'capacity': capacity, 'protocol': protocol,
            'pid': os.getpid(), 'hostname': socket.gethostname(), 'tls': bool(tls),
            # under SLURM the node's name (several emulated nodes may share one host name)
            'node': os.environ.get('SLURMD_NODENAME') or socket.gethostname()}


def file_name(hostname, port):
    return '%s%s-%d%s' % (RENDEZVOUS_PREFIX, hostname.replace(os.sep, '_'), port,
                          RENDEZVOUS_SUFFIX)


def announce(directory, record):
    """Write ``record`` (plain data with ``hostname`` and ``port``) as this farm's file in
    ``directory``, whole; returns its path. Raises EnvironmentError if it cannot be written."""
    path = os.path.join(directory, file_name(record['hostname'], record['port']))
    temporary = '%s.%d.tmp' % (path, os.getpid())
    try:
        with open(temporary, 'w') as f:
            json.dump(record, f, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.rename(temporary, path)
    except EnvironmentError:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
    return path


def withdraw(path):
    """Remove this farm's file (nothing if it is already gone)."""
    try:
        os.remove(path)
    except OSError:
        pass
