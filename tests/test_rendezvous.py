"""Farms that announce themselves: farmside/rendezvous.py (the farm's file, its address, its CPUs),
host/rendezvous.py (reading and waiting), ``farm.py --port 0 --rendezvous DIR``, ``farmer.py wait``
and ``--farms rendezvous:DIR``, with real farm processes."""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest

import farmer
from common.errors import FarmListError
from common.protocol import PROTOCOL
from conftest import ROOT, wait_until
from farmside import rendezvous as announcing
from host import rendezvous
from host.farmlist_reader import farms_of_flag


def test_capacity_follows_what_slurm_gave_never_more_than_the_affinity_mask():
    mine, _ = announcing.usable_cpus({})
    assert mine == len(os.sched_getaffinity(0))
    assert announcing.usable_cpus({'SLURM_CPUS_ON_NODE': '1'}) == (1, 'SLURM_CPUS_ON_NODE=1')
    # per task wins over per node; a count above what this process may use does not raise it
    assert announcing.usable_cpus({'SLURM_CPUS_PER_TASK': '1', 'SLURM_CPUS_ON_NODE': '64'})[0] == 1
    assert announcing.usable_cpus({'SLURM_CPUS_ON_NODE': '100000'})[0] == mine
    assert announcing.usable_cpus({'SLURM_CPUS_ON_NODE': 'x'})[0] == mine


def test_the_announced_address_is_never_loopback_for_a_wildcard_bind():
    assert announcing.reachable_address('127.0.0.1') == ('127.0.0.1', None)
    assert announcing.reachable_address('10.1.2.3') == ('10.1.2.3', None)
    # a host name that resolves to loopback (Debian's 127.0.1.1): another address, and why
    address, note = announcing.reachable_address('0.0.0.0', hostname='localhost',
                                                 interfaces=lambda: ['127.0.0.1', '10.9.8.7'])
    assert address == '10.9.8.7'
    assert 'resolves to loopback' in note and '--host ADDRESS' in note and '\n' not in note
    address, note = announcing.reachable_address('0.0.0.0', hostname='localhost',
                                                 interfaces=lambda: [])
    assert address.startswith('127.') and 'only this machine can reach' in note


def test_records_are_written_whole_read_back_and_removed(tmp_path, caplog):
    record = {'address': '10.0.0.5', 'port': 4321, 'capacity': 8, 'protocol': 3, 'pid': 99,
              'hostname': 'node7'}
    path = announcing.announce(str(tmp_path), record)
    assert os.path.basename(path) == 'farm-node7-4321.json'
    assert os.listdir(str(tmp_path)) == ['farm-node7-4321.json']  # no temporary file left
    (tmp_path / 'farm-broken-1.json').write_text('{"address": ')
    (tmp_path / 'farm-x-2.json.123.tmp').write_text('{}')  # a farm writing: not read
    found = rendezvous.announced(str(tmp_path))
    assert [r['hostname'] for r in found] == ['node7']
    assert 'farm-broken-1.json: not a farm record' in caplog.text
    assert rendezvous.farms_in(str(tmp_path)) == [('10.0.0.5', 8, 4321)]
    assert farms_of_flag('rendezvous:%s' % tmp_path) == [('10.0.0.5', 8, 4321)]
    announcing.withdraw(path)
    announcing.withdraw(path)  # already gone: nothing
    with pytest.raises(FarmListError, match='no farm has announced itself there yet'):
        rendezvous.farms_in(str(tmp_path))
    with pytest.raises(FarmListError, match='no-such-dir: no such directory'):
        rendezvous.farms_in(str(tmp_path / 'no-such-dir'))


def _farm(directory, capacity, python=None, env=None):
    command = list(python or [sys.executable]) + [os.path.join(ROOT, 'farm.py'), '--port', '0',
               '--capacity', str(capacity), '--rendezvous', str(directory)]
    return subprocess.Popen(command, cwd=ROOT, start_new_session=True, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            universal_newlines=True)


def kill_all(farms):
    for f in farms:
        if f.poll() is None:
            os.killpg(f.pid, signal.SIGKILL)
            f.wait()


def _farmer(*args, timeout=60):
    return subprocess.run([sys.executable, os.path.join(ROOT, 'farmer.py')] + list(args),
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_farms_on_free_ports_announce_themselves_serve_and_withdraw_on_sigterm(tmp_path):
    farms = [_farm(tmp_path, 2), _farm(tmp_path, 1)]
    try:
        waited = _farmer('wait', str(tmp_path), '--count', '2', '--timeout', '60')
        assert waited.returncode == 0, waited.stderr
        lines = waited.stdout.splitlines()
        assert len(lines) == 2 and all(line.startswith('farm 127.0.0.1:') for line in lines)
        records = rendezvous.announced(str(tmp_path))
        assert sorted(r['pid'] for r in records) == sorted(f.pid for f in farms)
        assert sorted(r['capacity'] for r in records) == [1, 2]
        assert all(r['port'] > 0 and r['protocol'] == PROTOCOL for r in records)
        with farmer.Farmer(farms=rendezvous.farms_in(str(tmp_path)), start_local=False) as fm:
            env = fm.vec_env('CheapEnv', 3, {'episode_length': 5})
            env.reset(seed=0)
            obs = env.step(np.full((3, 2), 0.5))[0]
            assert obs[:, 0].tolist() == [1, 1, 1]
            assert {p.link.port for p in env.places} == {r['port'] for r in records}
        started = time.time()
        for f in farms:
            f.send_signal(signal.SIGTERM)
        for f in farms:
            assert f.wait(10) == 0
        assert time.time() - started < 10
        assert os.listdir(str(tmp_path)) == []
    finally:
        kill_all(farms)


def test_wait_names_what_is_missing_and_bad_input_is_one_line(tmp_path):
    late = _farmer('wait', str(tmp_path), '--count', '1', '--timeout', '0.5', '--hosts',
                   'node1,node2')
    assert late.returncode == 1 and late.stdout == ''
    assert late.stderr == ('farmer.py wait: 0 of 1 farms announced themselves in %s within '
                           '0.5 s; none from node1, node2\n' % tmp_path)
    for args, says in ((['--count', '0'], '--count 0: wait for at least 1 farm'),
                       ([], 'the following arguments are required: --count'),
                       (['--count', 'x'], "argument --count: invalid int value: 'x'")):
        bad = _farmer('wait', str(tmp_path), *args)
        assert bad.returncode == 1 and says in bad.stderr and len(bad.stderr.splitlines()) == 1
    missing = _farmer('wait', str(tmp_path / 'nope'), '--count', '1')
    assert missing.stderr.count('\n') == 1 and 'nope: no such directory' in missing.stderr


def test_a_rendezvous_the_farm_cannot_write_is_one_line(tmp_path):
    python = None
    if os.geteuid() == 0:  # root writes anywhere: run the farm as nobody
        if not shutil.which('setpriv'):
            pytest.skip('running as root without setpriv (util-linux) to drop privileges')
        python = [shutil.which('setpriv'), '--reuid=65534', '--regid=65534', '--clear-groups',
                  sys.executable]
    hidden = tmp_path / 'hidden'
    hidden.mkdir(mode=0o700)
    (hidden / 'inside').mkdir()
    locked = tempfile.mkdtemp()  # 0700, root's: nobody may not write (nor enter) it
    try:
        os.chmod(locked, 0o555)
        for where, says in ((locked, 'this user cannot write there'),
                            (str(hidden / 'inside'), 'cannot reach it (Permission denied)')):
            if python is None and 'reach' in says:
                continue  # its owner reaches it
            farm = _farm(where, 1, python=python)
            out, _ = farm.communicate(timeout=60)
            assert farm.returncode == 2 and out == 'farm.py: --rendezvous %s: %s\n' % (where,
                                                                                      says)
    finally:
        os.rmdir(locked)


def test_farm_refuses_a_rendezvous_that_is_not_there_in_one_line(tmp_path):
    farm = _farm(tmp_path / 'nope', 1)
    out, _ = farm.communicate(timeout=60)
    assert farm.returncode == 2
    assert out == ('farm.py: --rendezvous %s: no such directory (create it, on a file system the '
                   'learner sees too)\n' % (tmp_path / 'nope'))


def test_a_killed_farm_leaves_its_record_and_the_learner_uses_the_farms_that_answer(tmp_path):
    """kill -9 leaves the file behind (nothing can remove it): its farm does not answer, and the
    farmer builds on the farms that do, as for any farm of a list that is down."""
    farms = [_farm(tmp_path, 1), _farm(tmp_path, 2)]
    try:
        assert wait_until(lambda: len(rendezvous.announced(str(tmp_path))) == 2, 60)
        os.killpg(farms[0].pid, signal.SIGKILL)
        farms[0].wait()
        assert len(rendezvous.announced(str(tmp_path))) == 2
        with farmer.Farmer(farms=rendezvous.farms_in(str(tmp_path)), start_local=False) as fm:
            assert sorted(s['up'] for s in fm.status()) == [False, True]
            env = fm.vec_env('CheapEnv', 2, {'episode_length': 5})
            assert env.reset(seed=0).shape == (2, 3)
    finally:
        kill_all(farms)


def test_wait_says_in_its_line_when_a_farm_speaks_another_protocol(tmp_path):
    record = {'address': '10.0.0.9', 'port': 4000, 'capacity': 2, 'protocol': PROTOCOL + 1,
              'pid': 1, 'hostname': 'old', 'node': 'old'}
    announcing.announce(str(tmp_path), record)
    waited = _farmer('wait', str(tmp_path), '--count', '1', '--timeout', '5')
    assert waited.returncode == 0
    assert waited.stdout == ('farm 10.0.0.9:4000 on old (pid 1): 2 environment(s), farm protocol '
                             '%d where this learner speaks %d: it will not be used\n'
                             % (PROTOCOL + 1, PROTOCOL))
