"""A Python 3.6 learner (TensorFlow 2.6, keras 2.6, keras-rl2) against a Python 3.11 farm: the host
side (farmer.py, vecenv/contract.py, agents/, run/session.py, run/config.py, train_*.py) keeps Python 3.6 syntax
and runs there.

Uses ``.venv36/`` (``setup.sh`` builds it where a 3.6 interpreter exists); skipped with the reason
where it is missing or cannot import TensorFlow and keras-rl2."""
import glob
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT

PY36 = os.path.join(ROOT, '.venv36', 'bin', 'python')
HOST_SIDE = ['farmer.py', 'farmlist.py', 'vecenv/contract.py', 'common/errors.py', 'run/checkpoints.py', 'run/checkpoint_layout.py', 'run/checkpoint_writing.py', 'run/session.py', 'run/progress.py',
             'run/config.py', 'run/runfiles.py', 'train_sac.py', 'train_ddpg.py'] + sorted(os.path.relpath(p, ROOT)
                                       for p in glob.glob(os.path.join(ROOT, 'agents', '*.py'))
                                       + glob.glob(os.path.join(ROOT, 'host', '*.py')))
VERMIN = os.path.join(os.path.dirname(sys.executable), 'vermin')


def _py36_problem():
    if not os.path.exists(PY36):
        return 'no Python 3.6 learner environment at %s (setup.sh builds it where python3.6 ' \
               'exists)' % PY36
    probe = subprocess.run([PY36, '-c', 'import tensorflow, rl.agents, Pyro4, matplotlib'],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           universal_newlines=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3'))
    if probe.returncode:
        return '%s cannot import tensorflow / rl (keras-rl2) / Pyro4 / matplotlib: %s' % (
            PY36, probe.stdout.strip().splitlines()[-1:])
    return None


PROBLEM = _py36_problem()
needs_py36 = pytest.mark.skipif(PROBLEM is not None, reason=str(PROBLEM))


def test_host_side_is_python36_syntax_by_vermin():
    files = [f for f in HOST_SIDE if os.path.exists(os.path.join(ROOT, f))]
    result = subprocess.run([VERMIN, '-t=3.6-', '--no-tips', '--violations', '--eval-annotations']
                            + files, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            universal_newlines=True)
    assert result.returncode == 0, result.stdout


@needs_py36
def test_host_side_compiles_under_python36():
    files = [f for f in HOST_SIDE if os.path.exists(os.path.join(ROOT, f))]
    code = ('import sys\nfor f in sys.argv[1:]:\n'
            '    compile(open(f).read(), f, "exec")\n')
    result = subprocess.run([PY36, '-c', code] + files, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, universal_newlines=True)
    assert result.returncode == 0, result.stdout


@needs_py36
@pytest.mark.parametrize('script', ['train_sac.py', 'train_ddpg.py'])
@pytest.mark.slow
def test_a_python36_learner_trains_on_a_python311_farm(script, process_farm, tmp_path):
    farm = process_farm(capacity=2, env={'PYTHONPATH': ROOT})  # sys.executable: Python 3.11
    run_dir = tmp_path / 'run'
    command = [PY36, script, '--env', 'Pendulum-v1', '--env-kwargs', '{"max_episode_steps": 100}',
               '--episodes', '4', '--n-envs', '2', '--farms', '127.0.0.1:2:%d' % farm.port,
               '--hidden', '16,16', '--batch-size', '32', '--warmup', '100',
               '--run-dir', str(run_dir), '--log-every', '0']
    if script == 'train_ddpg.py':
        command += ['--random-steps', '100']
    proc = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=240,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'))
    assert proc.returncode == 0, proc.stdout[-6000:]
    config = json.loads((run_dir / 'config.json').read_text())
    assert config['python'].startswith('3.6.')
    saved = json.loads((run_dir / 'checkpoint.json').read_text())
    # 4 episodes of 100 steps; stepping asynchronously (the default), the other environment
    # may be part-way into its next episode when the 4th ends
    assert saved['episodes'] == 4 and 400 <= saved['global_step'] < 500
    assert saved['updates'] > 0
    assert len((run_dir / 'episodes.csv').read_text().strip().splitlines()) == 5
    assert (run_dir / 'curve.png').exists()
    assert '(python %d.%d' % sys.version_info[:2] in farm.stop()  # the farm's own version
