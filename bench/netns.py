"""Hosts on one machine for benchmarks and tests: network namespaces, each with its own address,
joined to this one by a veth pair (``10.N.K.1`` here, ``10.N.K.2`` there). Processes started in a
host see only its network; the file system is shared, so every host sees this checkout.

Needs root and iproute2 (:func:`unavailable` says why not). Every host is removed by ``close()``
(its processes killed, its namespace and link deleted), also when the caller is interrupted.
"""
import os
import shutil
import signal
import subprocess
import time


def unavailable():
    """Why hosts cannot be made here (one line), or None."""
    if os.geteuid() != 0:
        return 'needs root (ip netns, veth)'
    if not shutil.which('ip'):
        return 'needs the ip command (iproute2)'
    return None


class Host(object):
    """One namespace ``name`` with address ``address``, reached through ``link`` from here."""

    def __init__(self, name, net, k):
        self.name = name
        self.link, self.there = '%sh' % name, '%st' % name
        self.here_address = '10.%d.%d.1' % (net, k)
        self.address = '10.%d.%d.2' % (net, k)
        self.made = False
        commands = [['ip', 'netns', 'add', name],
                    ['ip', 'link', 'add', self.link, 'type', 'veth', 'peer', 'name', self.there],
                    ['ip', 'link', 'set', self.there, 'netns', name],
                    ['ip', 'addr', 'add', self.here_address + '/24', 'dev', self.link],
                    ['ip', 'link', 'set', self.link, 'up']]
        commands += [self.inside(c) for c in (['ip', 'addr', 'add', self.address + '/24', 'dev',
                                               self.there],
                                              ['ip', 'link', 'set', self.there, 'up'],
                                              ['ip', 'link', 'set', 'lo', 'up'])]
        try:
            for command in commands:
                subprocess.run(command, check=True, capture_output=True)
                self.made = True
        except BaseException:
            self.close()
            raise

    def inside(self, command):
        """``command`` as run inside this host."""
        return ['ip', 'netns', 'exec', self.name] + list(command)

    def set_link(self, up):
        subprocess.run(['ip', 'link', 'set', self.link, 'up' if up else 'down'], check=True)

    def pids(self):
        out = subprocess.run(['ip', 'netns', 'pids', self.name], capture_output=True,
                             text=True).stdout
        return [int(p) for p in out.split()]

    def close(self):
        if not self.made:
            return
        for pid in self.pids():  # what still runs there goes with it
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        deadline = time.time() + 5
        while self.pids() and time.time() < deadline:
            time.sleep(0.05)
        subprocess.run(['ip', 'link', 'del', self.link], capture_output=True)
        subprocess.run(['ip', 'netns', 'del', self.name], capture_output=True)
        self.made = False


def make_hosts(count, prefix, net):
    """``count`` hosts named ``prefix``1.. on ``10.net.K.0/24``; all removed if one fails."""
    hosts = []
    try:
        for k in range(1, count + 1):
            hosts.append(Host('%s%d' % (prefix, k), net, k))
    except BaseException:
        for host in hosts:
            host.close()
        raise
    return hosts
