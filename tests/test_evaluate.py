"""evaluate.py end to end: the real script in subprocesses (it imports TensorFlow, which stays out
of the pytest process) on tiny run directories that train_sac.py and train_ddpg.py write (a few
Pendulum-v1 episodes through a local farm, 16x16 networks)."""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, free_port

TIMEOUT = 240
FLAT = {'%s_%s' % (stat, what) for stat in ('mean', 'std', 'min', 'max')
        for what in ('return', 'length')}  # mean_return ... max_length
KEYS = {'policy', 'checkpoint', 'env', 'env_kwargs', 'episodes', 'seed', 'deterministic',
        'return', 'length', 'returns', 'lengths', 'video', 'gif', 'frames'} | FLAT


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


@pytest.mark.slow
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


@pytest.mark.slow
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


EXPORT = """
import sys
import envs
from run import checkpoints, evaluation
from vecenv import contract
from agents.compat import tf
from agents.%s import %s as Agent
env = envs.make('Pendulum-v1')
agent = Agent.from_spaces(contract.make_space(env.observation_space),
                          contract.make_space(env.action_space), hidden=(16, 16), memory_limit=1)
agent.compile()
agent.load_weights(checkpoints.find(sys.argv[1]))
assert agent.normalize_obs  # the train scripts' default, switched on by the checkpoint's file
print(evaluation.export_policy(agent, sys.argv[2], %r, 'Pendulum-v1', {}, (16, 16), note='test'))
"""


@pytest.mark.slow
def test_an_exported_policy_evaluates_as_its_checkpoint_did(trained, evaluated, tmp_path):
    algo, run_dir = trained
    folder = str(tmp_path / 'policy')
    run(['-c', EXPORT % (algo, algo.upper(), algo), run_dir, folder])
    assert sorted(os.listdir(folder)) == ['actor.h5', 'config.json', 'obs_norm.npz']
    assert sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder)) < 10 ** 6
    result = json.loads(run(['evaluate.py', folder] + EVALUATE).stdout)
    assert result['policy'] == algo and result['checkpoint'] == folder
    assert result['returns'] == evaluated['returns']  # the same policy, the same statistics
    # without its statistics the same weights act otherwise: they were loaded, not ignored
    os.remove(os.path.join(folder, 'obs_norm.npz'))
    plain = json.loads(run(['evaluate.py', folder] + EVALUATE).stdout)
    assert plain['returns'] != evaluated['returns']
    os.remove(os.path.join(folder, 'actor.h5'))
    proc = run(['evaluate.py', folder] + EVALUATE, check=False)
    assert proc.returncode != 0 and 'Traceback' not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        'evaluate.py: %s: an exported policy without its actor.h5; export it again' % folder)


@pytest.mark.slow
def test_weights_that_do_not_fit_the_environment_are_one_line(trained):
    proc = run(['evaluate.py', trained[1], '--episodes', '1', '--env',
                'MountainCarContinuous-v0'], check=False)  # 2 observations, not Pendulum's 3
    assert proc.returncode != 0 and 'Traceback' not in proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith('evaluate.py: %s: cannot load into a %s of hidden sizes 16,16 for '
                           'MountainCarContinuous-v0' % (
                               os.path.join(trained[1], 'checkpoints', 'ep0000002'),
                               trained[0].upper())), proc.stderr


def test_a_random_baseline_json_has_the_flat_keys_and_no_task_measure():
    """Pendulum has no task measure of its own: mean_distance and the like are absent."""
    result = json.loads(run(['evaluate.py', '--random', '--env', 'Pendulum-v1', '--episodes', '3',
                             '--seed', '2', '--env-kwargs', '{"max_episode_steps": 9}',
                             '--json']).stdout)
    assert set(result) == KEYS
    assert result['episodes'] == 3 and result['seed'] == 2 and not result['deterministic']
    assert result['mean_return'] == pytest.approx(sum(result['returns']) / 3)
    assert result['min_return'] == min(result['returns'])
    assert result['max_return'] == max(result['returns'])
    assert result['std_return'] == result['return']['std']
    assert (result['mean_length'], result['min_length'], result['std_length']) == (9, 9, 0)


ARM = ['evaluate.py', '--random', '--env', 'Arm2DEnv', '--json']


def osim():
    pytest.importorskip('opensim')
    pytest.importorskip('osim.env')


@pytest.mark.slow
def test_the_arm_s_distance_to_its_target_is_measured_and_repeats_for_a_seed():
    osim()
    flags = ['--episodes', '2', '--seed', '7', '--env-kwargs', '{"max_episode_steps": 20}']
    first = json.loads(run(ARM + flags).stdout)
    assert set(first) == KEYS | {'mean_distance', 'distances'}
    assert len(first['distances']) == 2
    assert all(math.isfinite(d) and 0 <= d < 2 for d in first['distances'])  # metres; arm ~0.6
    assert first['mean_distance'] == pytest.approx(sum(first['distances']) / 2)
    again = json.loads(run(ARM + flags).stdout)
    assert again['distances'] == first['distances'] and again['returns'] == first['returns']
    other = json.loads(run(ARM + flags[:2] + ['--seed', '8'] + flags[4:]).stdout)
    assert other['distances'] != first['distances']
    out = run(ARM[:-1] + flags).stdout
    assert 'distance to the target over the last half %.4f m' % first['mean_distance'] in out


@pytest.mark.slow
def test_the_arm_s_distance_is_the_one_its_reward_is_made_of():
    """One-step episodes: the last half is that step, and Arm2DEnv's reward is 1 - distance^2,
    so the measure is read at the right place (the hand's marker, this episode's target)."""
    osim()
    result = json.loads(run(ARM + ['--episodes', '3', '--env-kwargs',
                                   '{"max_episode_steps": 1}']).stdout)
    for distance, reward in zip(result['distances'], result['returns']):
        assert distance ** 2 == pytest.approx(1 - reward, abs=1e-9)


@pytest.mark.slow
def test_a_walker_s_forward_distance_is_measured_and_repeats_for_a_seed():
    osim()
    flags = ['--random', '--env', 'L2M2019Env', '--episodes', '1', '--seed', '3',
             '--env-kwargs', '{"max_episode_steps": 10}', '--json']
    first = json.loads(run(['evaluate.py'] + flags).stdout)
    assert set(first) == KEYS | {'mean_forward_distance', 'forward_distances'}
    assert math.isfinite(first['mean_forward_distance'])
    assert abs(first['mean_forward_distance']) < 1  # metres in 10 steps of 0.01 s
    again = json.loads(run(['evaluate.py'] + flags).stdout)
    assert again['forward_distances'] == first['forward_distances']


def test_an_episode_s_measures_are_the_last_half_mean_and_the_end():
    from run import evaluation
    readings = [{'distance': d, 'forward_distance': f}
                for d, f in ((9.0, 0.1), (9.0, 0.2), (1.0, 0.3), (2.0, 0.4), (3.0, 0.5))]
    assert evaluation.episode_measures(readings) == {'distance': 2.0, 'forward_distance': 0.5}
    assert evaluation.episode_measures([{}, {}]) == {}
    assert evaluation.episode_measures([{'distance': 4.0}]) == {'distance': 4.0}


@pytest.mark.slow
def test_an_evaluation_through_a_vectorized_env_measures_the_arm_as_evaluate_py_does():
    """agents' evaluate_vec (test(), --eval-every, eval.csv) reads the task measure from each
    step's info['task'] (it may come through a farm): the same figure as evaluate.py's
    in-process reading, for the same policy, seed and episode."""
    osim()
    from run import evaluation
    from vecenv import contract
    from agents.sac import SAC
    kwargs = {'max_episode_steps': 12, 'integrator_accuracy': 1e-3}
    vec = contract.InProcessVecEnv('Arm2DEnv', 1, kwargs)
    try:
        agent = SAC.from_spaces(vec.observation_space, vec.action_space, hidden=(8, 8), seed=3)
        agent.compile()
        through_vec = agent.evaluate_vec(vec, nb_episodes=1, seed=21)
    finally:
        vec.close()
    env = evaluation.make_env('Arm2DEnv', kwargs, video=False)
    try:
        returns, lengths, measures = evaluation.run_episodes(evaluation.policy_of(agent), env, 1, 21)
    finally:
        env.close()
    assert through_vec['lengths'] == lengths == [12]
    assert through_vec['returns'][0] == pytest.approx(returns[0], abs=1e-9)
    assert through_vec['distances'] == [pytest.approx(measures[0]['distance'], abs=1e-12)]
    assert through_vec['mean_distance'] == pytest.approx(measures[0]['distance'], abs=1e-12)


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
from common import errors
from run import evaluation
from vecenv import contract
env = contract.InProcessVecEnv('Pendulum-v1', 1)
agent = SAC.from_spaces(env.observation_space, env.action_space, hidden=(8, 8), memory_limit=1)
agent.compile()
try:
    evaluation.record(agent, 'Pendulum-v1', {}, 'x.avi')
except errors.UserError as e:
    print('refused:', e)
print(json.dumps(evaluation.record(agent, 'Pendulum-v1', {'max_episode_steps': 5}, %r,
                                 episodes=2, seed=4)))
"""


@pytest.mark.slow
def test_record_films_the_agent_being_trained(tmp_path):
    """evaluation.record: what a ``video`` verb at the train scripts' prompt calls."""
    gif = str(tmp_path / 'now.gif')
    out = run(['-c', RECORD % gif]).stdout.splitlines()
    assert out[0] == "refused: video('x.avi'): the file name must end in .mp4 or .gif"
    result = json.loads(out[-1])
    assert result['lengths'] == [5, 5] and result['frames'] == 12 and result['gif'] == gif
    assert result['policy'] == 'sac' and result['deterministic']
    assert os.path.getsize(gif) > 0


COMMITTED = """
import glob, json
import numpy as np
from run import evaluation
out = {}
for folder in sorted(glob.glob('results/policies/*')):
    config = evaluation.read_config(folder)
    env = evaluation.make_env(config['env'], config['env_kwargs'], video=False)
    try:
        act, base = evaluation.load_policy(config['algo'], tuple(config['hidden']), env, folder)
        obs, actions = env.reset(5000000), []
        for _ in range(3):
            action = np.asarray(act(obs), dtype=float)
            actions.append(action.tolist())
            obs = env.step(action.tolist())[0]
        out[folder] = {'policy': evaluation.is_policy_dir(folder), 'loaded': base,
                       'actions': actions, 'low': env.action_space['low'],
                       'high': env.action_space['high']}
    finally:
        env.close()
print(json.dumps(out))
"""


@pytest.mark.slow
def test_every_committed_policy_loads_acts_and_is_in_the_readme():
    """The policies under results/policies/ are what the README's evaluate.py commands check:
    each still loads into today's agents for its environment (a changed network or config format
    would fail here, not in a reader's hands), acts within the action bounds, and is named in the
    README."""
    folders = sorted(os.path.join('results', 'policies', name)
                     for name in os.listdir(os.path.join(ROOT, 'results', 'policies')))
    assert len(folders) >= 8
    found = json.loads(run(['-c', COMMITTED]).stdout.splitlines()[-1])
    assert sorted(found) == folders
    with open(os.path.join(ROOT, 'README.md')) as f:
        readme = f.read()
    for folder, seen in found.items():
        assert seen['policy'] and seen['loaded'] == folder
        low, high = np.asarray(seen['low']), np.asarray(seen['high'])
        for action in seen['actions']:
            action = np.asarray(action)
            assert action.shape == low.shape and np.all(np.isfinite(action))
            assert np.all(action >= low) and np.all(action <= high), folder
        assert os.path.basename(folder) in readme, folder
