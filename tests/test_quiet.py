"""A quiet, consistent start: what a user sees when training starts is the project's own log lines,
in one format, and nothing a user has to read past (TensorFlow's native start-up lines, absl's
notice, CUDA probing on a CPU machine, osim-rl's prints, deprecation warnings).

The end-to-end tests run the real train_sac.py in a subprocess, as a user would (no
TF_CPP_MIN_LOG_LEVEL in its environment), through a local farm it starts itself, so the farm's and
its workers' lines are on the same stderr. Each pattern check has a negative control: it must catch
a planted line, or it proves nothing.
"""
import json
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT, free_port

TIMEOUT = 300

# What a user must not have to read past. Case-insensitive, searched anywhere in a line.
NOISE = re.compile('|'.join([
    r'onednn', r'cuda', r'absl', r'TF-TRT', r'difficulty', r'DeprecationWarning',
    r'WARNING: All log messages', r'cpu_feature_guard', r'UserWarning', r'FutureWarning',
]), re.IGNORECASE)

# One log line: logformat.FORMAT with logformat.DATEFMT ("2026-11-29 12:34:13 farm INFO ...").
LOG_LINE = re.compile(r'^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (?P<name>[\w.]+) '
                      r'(?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL) \S')

# Lines TensorFlow 2.21 really printed on this project's machine at start-up (before the filter).
TF_START_LINES = [
    'WARNING: All log messages before absl::InitializeLog() is called are written to STDERR',
    'I0000 00:00:1795955646.336857   20437 port.cc:153] oneDNN custom operations are on. You may '
    'see slightly different numerical results due to floating-point round-off errors from '
    'different computation orders. To turn them off, set the environment variable '
    '`TF_ENABLE_ONEDNN_OPTS=0`.',
    'I0000 00:00:1795955646.337195   20437 cudart_stub.cc:31] Could not find cuda drivers on your '
    'machine, GPU will not be used.',
    'E0000 00:00:1795955654.201704   20437 cuda_platform.cc:52] failed call to cuInit: INTERNAL: '
    'CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)',
]


def noise_lines(text):
    return [line for line in text.splitlines() if NOISE.search(line)]


def user_env():
    """The environment a user's shell gives: none of the quieting variables the tests use."""
    env = dict(os.environ)
    for name in ('TF_CPP_MIN_LOG_LEVEL', 'PYTHONWARNINGS', 'TF_ENABLE_ONEDNN_OPTS'):
        env.pop(name, None)
    return env


def train(tmp_path, env_name, env_kwargs=None, script='train_sac.py'):
    port = free_port()
    extra = ['--random-steps', '10'] if script == 'train_ddpg.py' else []
    args = [sys.executable, script, '--env', env_name, '--episodes', '1',
            '--n-envs', '1', '--farms', '127.0.0.1:1:%d' % port, '--hidden', '8,8',
            '--warmup', '10', '--batch-size', '8', '--run-dir', str(tmp_path / 'run'),
            '--log-every', '0'] + extra
    if env_kwargs:
        args += ['--env-kwargs', json.dumps(env_kwargs)]
    proc = subprocess.run(args, cwd=ROOT, env=user_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-6000:]
    return proc.stdout, proc.stderr


# --- the checks can fail -------------------------------------------------------------------------
def test_the_noise_check_catches_planted_lines():
    planted = TF_START_LINES + [
        'difficulty 3 for Round 2',  # osim-rl's print from every L2M2019Env worker
        '/x/rl/callbacks.py:9: DeprecationWarning: the imp module is deprecated',
        '2026-11-29 12:00:00.000000: I tensorflow/compiler/tf2tensorrt/utils/py_utils.cc:38] '
        'TF-TRT Warning: Could not find TensorRT']
    text = '\n'.join(['2026-11-29 12:34:13 farmer INFO local farm up'] + planted)
    assert noise_lines(text) == planted


def test_the_format_check_catches_another_format():
    assert LOG_LINE.match('2026-11-29 12:34:13 farm INFO farm vm:1 serving 1 environments')
    assert LOG_LINE.match('2026-11-29 12:34:13 farm.worker WARNING worker 3 replaced')
    for other in ('12:34:12 farmer: no farm answered',  # the learner's format before
                  '2026-11-29 12:34:13,435 farm INFO farm vm:1 serving',  # the farm's before
                  'difficulty 3 for Round 2'):
        assert not LOG_LINE.match(other), other


# --- TensorFlow's native start-up lines ----------------------------------------------------------
IMPORT_COMPAT = '''
import logging, os, sys
from common import logformat
if sys.argv[1] == 'verbose':
    logformat.setup(logging.DEBUG)
else:
    logformat.setup(logging.INFO)
from agents import compat
compat.tf.constant(1.0)  # a first op: nothing more arrives after the import either
os.write(2, ('after the import; TF_CPP_MIN_LOG_LEVEL=%s\\n'
             % os.environ['TF_CPP_MIN_LOG_LEVEL']).encode())
'''


def run_python(code, *args):
    proc = subprocess.run([sys.executable, '-c', code] + list(args), cwd=ROOT, env=user_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-6000:]
    return proc.stderr


@pytest.mark.slow
def test_tensorflow_starts_without_its_native_noise():
    stderr = run_python(IMPORT_COMPAT, 'quiet')
    assert noise_lines(stderr) == [], stderr
    # TensorFlow's C++ warnings are below the level too (keras-rl2's graph mode trips c_api.cc's
    # "Operation ... was changed ... after it was run by a session" during training)
    assert stderr.splitlines() == ['after the import; TF_CPP_MIN_LOG_LEVEL=2'], stderr


@pytest.mark.slow
def test_verbose_shows_tensorflow_start_up_lines():
    """--verbose (DEBUG logging) drops nothing: the lines the quiet start drops are TensorFlow's,
    not gone by chance (a negative control for the test above)."""
    stderr = run_python(IMPORT_COMPAT, 'verbose')
    assert 'WARNING: All log messages before absl::InitializeLog()' in stderr, stderr
    assert 'after the import; TF_CPP_MIN_LOG_LEVEL=0' in stderr


FILTER = '''
import os, sys
from agents import compat
with compat.native_stderr_filtered():
    os.write(2, (sys.argv[1] + '\\n').encode())
    sys.stderr.write('from Python, kept\\n')
    os.write(2, b'from C, kept\\n')
'''


@pytest.mark.parametrize('line', TF_START_LINES[:3])
@pytest.mark.slow
def test_native_filter_drops_known_lines_and_keeps_the_rest_in_order(line):
    stderr = run_python(FILTER, line)
    assert stderr.splitlines() == ['from Python, kept', 'from C, kept'], stderr


CUINIT = '''
import json, sys
from agents import compat
alone = sys.argv[1] + '\\n'
print(json.dumps([compat.drop_native_noise(alone) == alone,
                  compat.drop_native_noise(sys.argv[2] + '\\n' + alone) == '']))
'''


@pytest.mark.slow
def test_cuinit_failure_is_news_where_a_driver_exists():
    """cuInit failing is dropped only beside "Could not find cuda drivers" (no driver at all);
    on a machine with a driver it is a real problem and stays."""
    proc = subprocess.run([sys.executable, '-c', CUINIT, TF_START_LINES[3], TF_START_LINES[2]],
                          cwd=ROOT, env=user_env(), stdout=subprocess.PIPE,
                          universal_newlines=True, timeout=TIMEOUT)
    assert json.loads(proc.stdout) == [True, True]


# --- end to end ----------------------------------------------------------------------------------
def assert_quiet_and_one_format(stdout, stderr):
    assert noise_lines(stdout + stderr) == [], stderr[-6000:]
    names = set()
    for line in stderr.splitlines():
        match = LOG_LINE.match(line)
        assert match, 'not a log line in the shared format: %r\n%s' % (line, stderr[-6000:])
        names.add(match.group('name'))
    # the local farm (a process of its own) and the learner's farmer logged, in the same format
    assert {'farm', 'farmer'} <= names, stderr


@pytest.mark.parametrize('script', ['train_sac.py', 'train_ddpg.py'])
@pytest.mark.slow
def test_training_starts_quietly_in_one_log_format(tmp_path, script):
    """Regression: TensorFlow's native lines (absl, oneDNN, CUDA) came before the first log line,
    the farm and the farmer logged in two formats, and train_ddpg.py printed tf-keras's
    "`Model.state_updates` will be removed" UserWarning."""
    stdout, stderr = train(tmp_path, 'Pendulum-v1', script=script)
    assert_quiet_and_one_format(stdout, stderr)
    assert '1 episodes' in stdout


@pytest.mark.slow
def test_osim_workers_are_quiet(tmp_path):
    """L2M2019Env's workers: osim-rl prints "difficulty ..." as it builds; OpenSim and the
    velocity field warn. None of it reaches the user's terminal."""
    stdout, stderr = train(tmp_path, 'L2M2019Env', {'max_episode_steps': 3, 'difficulty': 3})
    assert_quiet_and_one_format(stdout, stderr)


def test_a_learners_verbose_reaches_the_farm_it_starts():
    """runconfig.setup_logging(verbose=True) hands DEBUG to the local farm through the
    environment: farm.py's --log-level defaults to $FARM_LOG_LEVEL (here a bad one, refused in
    its one line, which shows it was read)."""
    from common import logformat
    env = dict(user_env(), **{logformat.LEVEL_ENV: 'LOUD'})
    proc = subprocess.run([sys.executable, 'farm.py', '--port', str(free_port())], cwd=ROOT,
                          env=env, stderr=subprocess.PIPE, universal_newlines=True,
                          timeout=TIMEOUT)
    assert proc.returncode == 2 and '--log-level LOUD' in proc.stderr, proc.stderr
    code = ('import os; from run import config as runconfig; from common import logformat; runconfig.setup_logging(True); '
            'print(os.environ[logformat.LEVEL_ENV])')
    proc = subprocess.run([sys.executable, '-c', code], cwd=ROOT, env=user_env(),
                          stdout=subprocess.PIPE, universal_newlines=True, timeout=TIMEOUT)
    assert proc.stdout.strip() == 'DEBUG'
