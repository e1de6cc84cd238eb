"""evaluate.py end to end: the real script in subprocesses (it imports TensorFlow, which stays out
of the pytest process) on tiny run directories that train_sac.py and train_ddpg.py write (a few
Pendulum-v1 episodes through a local farm, 16x16 networks)."""
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, free_port

TIMEOUT = 240
KEYS = {'policy', 'checkpoint', 'env', 'env_kwargs', 'episodes', 'seed', 'deterministic',
        'return', 'length', 'returns', 'lengths', 'video', 'gif', 'frames'}


def run(args, check=True):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
    proc = subprocess.run([sys.executable] + args, cwd=ROOT, env=env, timeout=TIMEOUT,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True)
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc


@pytest.fixture(scope='module', params=['sac', 'ddpg'])
def trained(request, tmp_path_factory):
    """A run directory of two Pendulum-v1 episodes by train_<algo>.py."""
    run_dir = str(tmp_path_factory.mktemp(request.param) / 'run')
    flags = ['--env', 'Pendulum-v1', '--episodes', '2', '--n-envs', '1',
             '--farms', '127.0.0.1:1:%d' % free_port(), '--hidden', '16,16', '--batch-size',
             '16', '--warmup', '20', '--run-dir', run_dir, '--log-every', '0']
    if request.param == 'ddpg':
        flags += ['--random-steps', '20']
    run(['train_%s.py' % request.param] + flags)
    return request.param, run_dir


EVALUATE = ['--episodes', '2', '--seed', '3', '--json']


@pytest.fixture(scope='module')
def evaluated(trained):
    """evaluate.py's JSON for the run (each TensorFlow start costs seconds: shared by tests)."""
    return json.loads(run(['evaluate.py', trained[1]] + EVALUATE).stdout)  # nothing but JSON


def test_a_run_is_evaluated_from_its_config_and_newest_checkpoint(trained, evaluated):
    algo, run_dir = trained
    result = evaluated
    assert set(result) == KEYS
    assert result['policy'] == algo and result['env'] == 'Pendulum-v1'
    assert result['checkpoint'] == os.path.join(run_dir, 'checkpoints', 'ep0000002')
    assert result['lengths'] == [200, 200]  # Pendulum's time limit
    assert set(result['return']) == {'mean', 'std', 'min', 'max'}
    assert result['return']['min'] == min(result['returns'])
    assert result['frames'] == 0 and result['video'] is None


def test_the_video_shows_the_same_deterministic_episodes(trained, evaluated, tmp_path):
    imageio = pytest.importorskip('imageio.v2')
    mp4, gif = str(tmp_path / 'pendulum.mp4'), str(tmp_path / 'pendulum.gif')
    filmed = json.loads(run(['evaluate.py', trained[1]] + EVALUATE + ['--video', mp4, '--gif',
                                                                      gif]).stdout)
    assert filmed['returns'] == evaluated['returns']
    assert filmed['frames'] == 2 * 201  # every state, each episode's first and last included
    with imageio.get_reader(mp4) as reader:
        assert sum(1 for _ in reader.iter_data()) == 402
    assert os.path.getsize(gif) > 0


def test_weights_that_do_not_fit_the_environment_are_one_line(trained):
    proc = run(['evaluate.py', trained[1], '--episodes', '1', '--env',
                'MountainCarContinuous-v0'], check=False)  # 2 observations, not Pendulum's 3
    assert proc.returncode != 0 and 'Traceback' not in proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith('evaluate.py: %s: cannot load into a %s of hidden sizes 16,16 for '
                           'MountainCarContinuous-v0' % (
                               os.path.join(trained[1], 'checkpoints', 'ep0000002'),
                               trained[0].upper())), proc.stderr


def test_random_actions_need_no_checkpoint(tmp_path):
    out = run(['evaluate.py', '--random', '--env', 'Pendulum-v1', '--episodes', '1',
               '--env-kwargs', '{"max_episode_steps": 7}']).stdout
    assert out.startswith('random actions on Pendulum-v1, 1 episode (seeds 0-0): return ')
    assert 'length 7.0' in out


@pytest.mark.parametrize('args,message', [
    (['runs/no-such-run'], 'runs/no-such-run: no run directory with a config.json there'),
    (['--random'], '--random needs --env NAME'),
    ([], 'give a run directory or checkpoint'),
    (['--random', '--env', 'Pendulum-v1', '--env-kwargs', '[1]'], '--env-kwargs [1]: give a JSON'),
    (['--random', '--env', 'Pendulum-v1', '--video', 'x.avi'], 'must end in .mp4'),
    (['--random', '--env', 'CheapEnv', '--video', 'x.mp4'], 'CheapEnv cannot be pictured'),
    (['--random', '--env', 'NoSuchEnv-v0'], "unknown environment 'NoSuchEnv-v0'"),
    (['--random', '--env', 'Pendulum-v1', '--episodes', '0'], '--episodes 0: give at least 1'),
    (['--episodes', 'x'], "argument --episodes: invalid int value: 'x' (see --help)"),
])
def test_a_mistake_is_one_line(args, message, tmp_path):
    proc = run(['evaluate.py'] + args, check=False)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.startswith('evaluate.py: ')]
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert 'Traceback' not in proc.stderr


RECORD = """
import json
from agents.compat import tf
from agents.sac import SAC
import errors, evaluate, vecenv
env = vecenv.InProcessVecEnv('Pendulum-v1', 1)
agent = SAC.from_spaces(env.observation_space, env.action_space, hidden=(8, 8), memory_limit=1)
agent.compile()
try:
    evaluate.record(agent, 'Pendulum-v1', {}, 'x.avi')
except errors.UserError as e:
    print('refused:', e)
print(json.dumps(evaluate.record(agent, 'Pendulum-v1', {'max_episode_steps': 5}, %r,
                                 episodes=2, seed=4)))
"""


def test_record_films_the_agent_being_trained(tmp_path):
    """evaluate.record: what a ``video`` verb at the train scripts' prompt calls."""
    gif = str(tmp_path / 'now.gif')
    out = run(['-c', RECORD % gif]).stdout.splitlines()
    assert out[0] == "refused: video('x.avi'): the file name must end in .mp4 or .gif"
    result = json.loads(out[-1])
    assert result['lengths'] == [5, 5] and result['frames'] == 12 and result['gif'] == gif
    assert result['policy'] == 'sac' and result['deterministic']
    assert os.path.getsize(gif) > 0
