"""A farm started with Python 2.7 serves a Python 3.11 farmer (the design's legacy-OpenSim setup).

Needs a Python 2.7 interpreter with the farm's dependencies (setup.sh installs them into
.venv27/ when pyenv's 2.7 or a python2.7 exists); skipped with the reason otherwise.
"""
import os
import shutil
import subprocess

import numpy as np
import pytest

import errors
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
