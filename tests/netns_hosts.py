"""Hosts for the tests: network namespaces, each with its own address and a real sshd (Debian's
openssh-server), made and removed by the test. Namespaces share the file system, so every
"host" sees this checkout. Needs root, ``ip`` and ``sshd``; :func:`unavailable` says why not.
"""
import os
import shutil
import signal
import subprocess
import tempfile

from bench import netns
from conftest import wait_until

SSHD = '/usr/sbin/sshd'
SSHD_CONFIG = """Port 22
ListenAddress {address}
HostKey {dir}/host_key
AuthorizedKeysFile {dir}/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
PidFile {dir}/sshd-{name}.pid
"""


def unavailable():
    why = netns.unavailable()
    if why:
        return why
    for tool in ('ssh', 'ssh-keygen'):
        if not shutil.which(tool):
            return '%s is not installed' % tool
    if not os.path.exists(SSHD):
        return ('openssh-server is not installed (%s missing): ./setup.sh --test installs it as '
                'root' % SSHD)
    return None


def _run(*command):
    return subprocess.run(list(command), check=True, capture_output=True, text=True)


class SshHosts(object):
    """``count`` hosts ``10.213.K.2`` (K = 1..count; their host names in ``names``), each a
    namespace with sshd on port 22, reached from here through a veth pair; ``ssh`` is the client
    command that logs in to them (this test's key, no host key checks). ``close()`` removes
    everything."""

    def __init__(self, count=2):
        self.dir = tempfile.mkdtemp(prefix='ssh-hosts-')
        self.tag = '%04d' % (os.getpid() % 10000)
        self.hosts, self.addresses, self.pid_files, self.names = [], [], [], []
        try:
            _run('ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f',
                 os.path.join(self.dir, 'host_key'))
            _run('ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f',
                 os.path.join(self.dir, 'client_key'))
            shutil.copy(os.path.join(self.dir, 'client_key.pub'),
                        os.path.join(self.dir, 'authorized_keys'))
            os.makedirs('/run/sshd', exist_ok=True)
            for k in range(1, count + 1):
                self._add(k)
        except BaseException:
            self.close()
            raise
        # No LogLevel=ERROR: ssh warns on stderr at every login here (no known hosts file), as
        # it often does for users, and launch/stop must read their answers through that.
        self.ssh = ('ssh -i %s -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null'
                    % os.path.join(self.dir, 'client_key'))

    def _add(self, k):
        host = netns.Host('fh%s%d' % (self.tag, k), 213, k)
        self.hosts.append(host)
        config = os.path.join(self.dir, 'sshd-%s.conf' % host.name)
        with open(config, 'w') as f:
            f.write(SSHD_CONFIG.format(address=host.address, dir=self.dir, name=host.name))
        self.pid_files.append(os.path.join(self.dir, 'sshd-%s.pid' % host.name))
        # Each host its own name (a UTS namespace), as separate machines have: farms on a shared
        # checkout name their records and logs by host name and port.
        self.names.append('%s-host%d' % (self.tag, k))
        subprocess.run(host.inside(['unshare', '--uts', 'sh', '-c', 'hostname "$0" && exec "$@"',
                                    self.names[-1], SSHD, '-f', config]),
                       check=True, capture_output=True)
        if not wait_until(lambda: os.path.exists(self.pid_files[-1]), 10):
            raise RuntimeError('sshd did not start in %s' % host.name)
        self.addresses.append(host.address)

    def pids_in(self, k):
        """The processes running in host ``k`` (1-based)."""
        return self.hosts[k - 1].pids()

    def close(self):
        for path in self.pid_files:
            try:
                with open(path) as f:
                    os.kill(int(f.read().strip()), signal.SIGTERM)
            except (OSError, ValueError):
                pass
        for host in self.hosts:  # anything still running in a host goes with it
            host.close()
        self.hosts = []
        shutil.rmtree(self.dir, ignore_errors=True)
