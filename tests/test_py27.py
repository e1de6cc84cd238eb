"""A farm started with Python 2.7 serves a Python 3.11 farmer (the design's legacy-OpenSim setup).

Needs a Python 2.7 interpreter with the farm's dependencies (setup.sh installs them into
.venv27/ when pyenv's 2.7 or a python2.7 exists); skipped with the reason otherwise.
"""
import os
import shutil
import subprocess

import numpy as np
import pytest

from common import errors
import farmer
from conftest import ROOT


def _python27():
    site = os.path.join(ROOT, '.venv27')
    candidates = [os.environ.get('FARM_PY27'),
                  os.path.expanduser('~/.pyenv/versions/2.7.18/bin/python'),
                  shutil.which('python2.7')]
    problems = []
    for python in candidates:
        if python and os.path.exists(python):
            env = {'PYTHONPATH': site, 'PATH': os.environ.get('PATH', '')}
            probe = subprocess.run([python, '-c', 'import Pyro4, msgpack, numpy'], env=env,
                                   capture_output=True)
            if probe.returncode == 0:
                return python, env
            problems.append('%s cannot import the farm dependencies from %s (run ./setup.sh): %s'
                            % (python, site, probe.stderr.decode().strip().splitlines()[-1:]))
    return None, '; '.join(problems) or ('no Python 2.7 interpreter on this machine '
                                         '(pyenv 2.7.18, python2.7, or FARM_PY27)')


PY27, PY27_ENV = _python27()
pytestmark = pytest.mark.skipif(PY27 is None, reason=str(PY27_ENV))


def test_python27_farm_serves_a_python3_farmer(process_farm):
    f = process_farm(capacity=4, python=PY27, env=PY27_ENV)
    with farmer.Farmer(farms=[('127.0.0.1', 4, f.port)], start_local=False) as fm:
        status = fm.status()[0]
        assert status['versions']['python'].startswith('2.7')
        env = fm.vec_env('CheapEnv', 2, {'episode_length': 2, 'obs_size': 4})
        assert env.reset(seed=7).tolist() == [[0, 7, 7, 7], [0, 8, 8, 8]]
        obs, rewards, terminated, truncated, infos = env.step(np.full((2, 2), 0.25))
        assert rewards.tolist() == [-0.125, -0.125] and infos[0] == {'t': 1}
        obs, rewards, terminated, truncated, infos = env.step(np.full((2, 2), 0.25))
        assert terminated.all() and infos[1]['terminal_observation'].tolist() == [2, 10, 10, 10]
        slow = fm.vec_env('SlowEnv', 1, {'step_seconds': 0.0, 'obs_size': 339})
        assert slow.reset().shape == (1, 339)
        assert slow.step(np.zeros((1, 22)))[0].shape == (1, 339)
        with pytest.raises(errors.UserError, match="unknown environment 'Nope'"):
            fm.vec_env('Nope', 1, {})
    log = f.stop()
    assert 'python 2.7' in log


def test_python27_farm_refuses_a_wrong_key_and_pickle(process_farm):
    import Pyro4
    import Pyro4.errors
    f = process_farm(capacity=1, python=PY27, env=PY27_ENV, extra=['--key', 'k27'])
    with pytest.raises(errors.NoFarmError, match='wrong or missing key'):
        farmer.Farmer(farms=[('127.0.0.1', 1, f.port)], key='nope', start_local=False)
    proxy = Pyro4.Proxy('PYRO:farm@127.0.0.1:%d' % f.port)
    proxy._pyroHmacKey = b'k27'
    proxy._pyroSerializer = 'pickle'
    with pytest.raises(Pyro4.errors.CommunicationError, match='serializer'):
        proxy.info()


def test_python27_farm_steps_asynchronously_with_packed_arrays(process_farm):
    """send/send_reset/post/recv and packed observations and actions between a Python 2.7 farm and
    this Python 3 learner: raw bytes cross as msgpack bin both ways (farm_compat, wire.Bin)."""
    import Pyro4
    from common import protocol, wire
    f = process_farm(capacity=5, python=PY27, env=PY27_ENV)
    p = Pyro4.Proxy(protocol.uri('127.0.0.1', f.port))
    p._pyroSerializer = 'msgpack'
    assert p.info()['versions']['farm_protocol'] == protocol.PROTOCOL
    plain, packed = p.open_lease(30), p.open_lease(30, True)
    kwargs = {'episode_length': 2, 'obs_size': 4, 'act_size': 2}
    plain_ids = p.make(plain, 'CheapEnv', kwargs, 2)['env_ids']
    packed_ids = p.make(packed, 'CheapEnv', kwargs, 2)['env_ids']
    want = p.reset(plain, plain_ids, [7, 8])
    assert p.send_reset(packed, packed_ids, [7, 8]) == [None, None]
    got = dict(p.recv(packed, 2, 30))
    assert [wire.unpack(got[i]).tolist() for i in packed_ids] == want
    actions = np.array([[0.25, 0.5], [0.75, 1.0]])
    for _ in range(2):  # the second step ends the episodes: terminal observations, packed too
        want = p.step(plain, plain_ids, actions.tolist(), True)
        assert p.send(packed, packed_ids, wire.pack(actions.astype(np.float32))) == [None, None]
        got = dict(p.recv(packed, 2, 30))
        for i, w in zip(packed_ids, want):
            obs, reward, terminated, truncated, info = got[i]
            assert wire.unpack(obs).dtype == np.float32
            assert wire.unpack(obs).tolist() == w[0] and [reward, terminated, truncated] == w[1:4]
            if 'terminal_observation' in w[4]:
                assert wire.unpack(info['terminal_observation']).tolist() == \
                    w[4]['terminal_observation']
    assert 'terminal_observation' in want[0][4]
    # A 339-float observation (L2M2019Env's size) through the shared block, packed.
    slow = p.make(packed, 'SlowEnv', {'step_seconds': 0.0}, 1)['env_ids']
    p.send_reset(packed, slow, [3])
    first = wire.unpack(p.recv(packed, 1, 30)[0][1])
    p.send(packed, slow, wire.pack(np.zeros((1, 22))))
    (env_id, (obs, _, _, _, _)), = p.recv(packed, 1, 30)
    assert env_id == slow[0] and wire.unpack(obs).shape == first.shape == (339,)
    # One-way posts (what the learner sends with): no answer; results and refusals via recv.
    assert {'post', 'post_reset'} <= p._pyroOneway
    assert p.post(packed, slow, wire.pack(np.zeros((1, 22)))) is None
    p.post(packed, slow, wire.pack(np.zeros((1, 22))))  # in flight still: refused, in order
    got = p.recv(packed, 2, 30)
    got += p.recv(packed, 2 - len(got), 30) if len(got) < 2 else []
    assert [env_id for env_id, _ in got] == slow * 2
    assert got[0][1]['kind'] == 'input' and len(got[1][1]) == 5
    p.close_lease(plain)
    p.close_lease(packed)
    p._pyroRelease()
    f.stop()


def test_python27_farm_on_a_free_port_announces_itself_and_withdraws(tmp_path):
    """farm.py --port 0 --rendezvous DIR under 2.7: the record a 3.11 learner reads, the farm
    it names serves, and SIGTERM removes it."""
    import signal
    from host import rendezvous
    from conftest import wait_until
    command = [PY27, os.path.join(ROOT, 'farm.py'), '--port', '0', '--capacity', '2',
               '--rendezvous', str(tmp_path)]
    env = dict(PY27_ENV, PYTHONPATH=os.pathsep.join([ROOT, PY27_ENV['PYTHONPATH']]))
    farm = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        assert wait_until(lambda: rendezvous.announced(str(tmp_path)) or farm.poll() is not None,
                          60)
        assert farm.poll() is None, farm.stdout.read()
        [record] = rendezvous.announced(str(tmp_path))
        assert record['pid'] == farm.pid and record['capacity'] == 2 and record['port'] > 0
        with farmer.Farmer(farms=rendezvous.farms_in(str(tmp_path)), start_local=False) as fm:
            assert fm.status()[0]['versions']['python'].startswith('2.7')
            assert fm.vec_env('CheapEnv', 2, {}).reset(seed=1).shape == (2, 3)
        farm.send_signal(signal.SIGTERM)
        assert farm.wait(10) == 0 and os.listdir(str(tmp_path)) == []
    finally:
        if farm.poll() is None:
            os.killpg(farm.pid, signal.SIGKILL)
            farm.wait()
