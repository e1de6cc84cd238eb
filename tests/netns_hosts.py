"""Hosts for the tests: network namespaces, each with its own address and a real sshd (Debian's
openssh-server), made and removed by the test. Namespaces share the file system, so every
"host" sees this checkout. Needs root, ``ip`` and ``sshd``; :func:`unavailable` says why not.
"""
import os
import shutil
import signal
import subprocess
import tempfile
import time

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
    if os.geteuid() != 0:
        return 'network namespaces and sshd need root'
    for tool in ('ip', 'ssh', 'ssh-keygen'):
        if not shutil.which(tool):
            return '%s is not installed' % tool
    if not os.path.exists(SSHD):
        return ('openssh-server is not installed (%s missing): ./setup.sh --test installs it as '
                'root' % SSHD)
    return None


def _run(*command):
    return subprocess.run(list(command), check=True, capture_output=True, text=True)


class SshHosts(object):
    """``count`` hosts ``10.213.K.2`` (K = 1..count), each a namespace with sshd on port 22,
    reached from here through a veth pair; ``ssh`` is the client command that logs in to them
    (this test's key, no host key checks). ``close()`` removes everything."""

    def __init__(self, count=2):
        self.dir = tempfile.mkdtemp(prefix='ssh-hosts-')
        self.tag = '%04d' % (os.getpid() % 10000)
        self.namespaces, self.addresses, self.pid_files = [], [], []
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
        self.ssh = ('ssh -i %s -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null '
                    '-o LogLevel=ERROR' % os.path.join(self.dir, 'client_key'))

    def _add(self, k):
        name = 'fh%s%d' % (self.tag, k)
        outside, inside = 'fv%s%da' % (self.tag, k), 'fv%s%db' % (self.tag, k)
        address = '10.213.%d.2' % k
        _run('ip', 'netns', 'add', name)
        self.namespaces.append(name)
        _run('ip', 'link', 'add', outside, 'type', 'veth', 'peer', 'name', inside)
        _run('ip', 'link', 'set', inside, 'netns', name)
        _run('ip', 'addr', 'add', '10.213.%d.1/24' % k, 'dev', outside)
        _run('ip', 'link', 'set', outside, 'up')
        for command in (['ip', 'addr', 'add', address + '/24', 'dev', inside],
                        ['ip', 'link', 'set', inside, 'up'], ['ip', 'link', 'set', 'lo', 'up']):
            _run('ip', 'netns', 'exec', name, *command)
        config = os.path.join(self.dir, 'sshd-%s.conf' % name)
        with open(config, 'w') as f:
            f.write(SSHD_CONFIG.format(address=address, dir=self.dir, name=name))
        self.pid_files.append(os.path.join(self.dir, 'sshd-%s.pid' % name))
        _run('ip', 'netns', 'exec', name, SSHD, '-f', config)
        if not wait_until(lambda: os.path.exists(self.pid_files[-1]), 10):
            raise RuntimeError('sshd did not start in %s' % name)
        self.addresses.append(address)

    def pids_in(self, k):
        """The processes running in host ``k``'s namespace (1-based)."""
        out = subprocess.run(['ip', 'netns', 'pids', self.namespaces[k - 1]],
                             capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def close(self):
        for path in self.pid_files:
            try:
                with open(path) as f:
                    os.kill(int(f.read().strip()), signal.SIGTERM)
            except (OSError, ValueError):
                pass
        for name in self.namespaces:  # anything still running in a host goes with it
            out = subprocess.run(['ip', 'netns', 'pids', name], capture_output=True,
                                 text=True).stdout
            for pid in out.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except OSError:
                    pass
        time.sleep(0.2)
        for name in self.namespaces:
            subprocess.run(['ip', 'netns', 'delete', name], capture_output=True)
        self.namespaces = []
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
