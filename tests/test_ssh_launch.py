"""``farmer.py launch`` / ``stop`` (host/launch.py) against real sshd in network namespaces, each
its own host with its own address (tests/netns_hosts.py): farms start on every host, answer,
serve a learner, and stop; the key never shows on a command line; an unreachable host and a
host without the checkout get one line each while the others start.

Needs root, iproute2 and Debian's openssh-server (``./setup.sh --test`` installs it as root);
skipped saying why elsewhere. ``pytest -k ssh`` runs these.
"""
import contextlib
import glob
import os
import subprocess
import sys

import numpy as np
import pytest

import farmer
from conftest import ROOT, command_lines, free_port, wait_until
from netns_hosts import SshHosts, unavailable

WHY = unavailable()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(WHY is not None, reason=str(WHY))]
KEY = 'launch-test-key-0123456789abcdef'


@pytest.fixture(scope='module')
def ssh_hosts():
    with contextlib.closing(SshHosts(2)) as hosts:
        yield hosts
    for name in hosts.names:  # the farms' logs, which launch writes in the (shared) checkout
        for log in glob.glob(os.path.join(ROOT, 'runs', 'farms', 'farm-%s-*.log' % name)):
            os.remove(log)


def run_farmer(hosts, *args, key=KEY):
    env = dict(os.environ, FARM_SSH=hosts.ssh)
    env.pop('FARM_KEY', None)
    if key:
        env['FARM_KEY'] = key
    return subprocess.run([sys.executable, os.path.join(ROOT, 'farmer.py')] + list(args),
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)


def farm_processes(hosts, k):
    """The farm.py processes running on host ``k``."""
    return [pid for pid, line in command_lines(hosts.pids_in(k)).items() if 'farm.py' in line]


def test_ssh_launch_starts_farms_that_serve_a_learner_and_stop_stops_them(ssh_hosts,
                                                                         monkeypatch):
    # One port for both, as workstations on the default port: with the checkout shared (these
    # hosts share this file system), each host must find its own record and log by its name.
    port = free_port()
    farms = [(address, 2, port) for address in ssh_hosts.addresses]
    listed = ','.join('%s:%d:%d' % f for f in farms)
    launched = run_farmer(ssh_hosts, 'launch', '--farms', listed)
    assert launched.returncode == 0, launched.stdout + launched.stderr
    table = launched.stdout.splitlines()
    for address, _, port in farms:
        assert any(line.startswith('%s:%d' % (address, port)) and ' yes ' in line
                   for line in table), launched.stdout
    for k in (1, 2):
        assert len(farm_processes(ssh_hosts, k)) == 1
        # the key is in no process's command line, there or here
        assert not [line for line in command_lines().values() if KEY in line]
    monkeypatch.setenv('FARM_KEY', KEY)
    with farmer.Farmer(farms=farms, start_local=False) as fm:
        env = fm.vec_env('CheapEnv', 4, {'episode_length': 5})
        assert {p.link.host for p in env.places} == set(ssh_hosts.addresses)
        env.reset(seed=0)
        assert env.step(np.full((4, 2), 0.5))[0][:, 0].tolist() == [1, 1, 1, 1]
    stopped = run_farmer(ssh_hosts, 'stop', '--farms', listed)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert stopped.stdout.splitlines() == ['%s:%d: stopped' % (a, p) for a, _, p in farms]
    for k in (1, 2):
        assert wait_until(lambda: not farm_processes(ssh_hosts, k), 10)
    farms_dir = os.path.join(ROOT, 'runs', 'farms')
    for name in ssh_hosts.names:  # each host's log is its own farm's
        with open(os.path.join(farms_dir, 'farm-%s-%d.log' % (name, port))) as f:
            assert 'farm-%s-%d.json' % (name, port) in f.read()


def test_ssh_an_unreachable_host_and_a_missing_checkout_are_one_line_each(ssh_hosts):
    good = (ssh_hosts.addresses[0], 1, free_port())
    listed = '10.213.99.2:1:20099,%s:%d:%d' % good
    launched = run_farmer(ssh_hosts, 'launch', '--farms', listed)
    assert launched.returncode == 1
    lines = launched.stdout.splitlines()
    assert lines[0].startswith('10.213.99.2: cannot be reached over ssh (')
    assert any(line.startswith('%s:%d' % (good[0], good[2])) and ' yes ' in line
               for line in lines), launched.stdout  # the others start
    assert run_farmer(ssh_hosts, 'stop', '--farms', '%s:%d:%d' % good).returncode == 0
    assert wait_until(lambda: not farm_processes(ssh_hosts, 1), 10)

    elsewhere = run_farmer(ssh_hosts, 'launch', '--farms', '%s:%d:%d' % good, '--root',
                           '/no/checkout/here')
    assert elsewhere.returncode == 1
    assert elsewhere.stdout == ('%s: no project checkout at /no/checkout/here (.venv/bin/python '
                                'missing; clone it and run ./setup.sh)\n' % good[0])
    assert not farm_processes(ssh_hosts, 1)


def test_ssh_launch_without_a_key_is_one_line_and_starts_nothing(ssh_hosts):
    listed = '%s:1:%d' % (ssh_hosts.addresses[1], free_port())
    launched = run_farmer(ssh_hosts, 'launch', '--farms', listed, key=None)
    assert launched.returncode == 1 and launched.stdout == ''
    assert launched.stderr == ('farmer.py launch: farms reached over the network need a shared '
                               "key: export FARM_KEY=SECRET (it is passed to each farm on ssh's "
                               'standard input)\n')
    assert not farm_processes(ssh_hosts, 2)
