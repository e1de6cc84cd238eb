"""bench/learn.py end to end, in subprocesses (it imports TensorFlow), on tiny in-process runs:
its JSON keys, simulator and agent steps, the export that evaluate.py reads back to the same
figures, a run killed mid-way and started again with the same command (same step count, its
replay memory kept, its curve without gaps or repeats), and its mistakes in one line."""
import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT
from test_evaluate import TIMEOUT, run  # a script in a subprocess, its output kept

LEARN = os.path.join(ROOT, 'bench', 'learn.py')


@pytest.mark.slow
def test_a_tiny_run_reports_its_keys_and_its_export_evaluates_to_the_same_figures(tmp_path):
    policy = str(tmp_path / 'policy')
    out = json.loads(run([LEARN, '--algo', 'sac', '--env', 'Pendulum-v1', '--env-kwargs',
                          '{"max_episode_steps": 20}', '--envs', '2', '--steps', '400',
                          '--frame-skip', '2', '--eval-every', '200', '--eval-episodes', '3',
                          '--hidden', '16,16', '--warmup', '20', '--batch-size', '16',
                          '--reward-scale', '2', '--reward-offset', '1', '--reward-root', 'yes',
                          '--seeds', '0',
                          '--backend', 'inprocess', '--out', str(tmp_path / 'out'),
                          '--export', policy, '--json']).stdout)
    for key in ('final_mean_return', 'final_mean_length', 'random_policy_mean_return',
                'random_policy_mean_length', 'seeds', 'csv', 'png', 'eval_seed'):
        assert key in out, key
    assert 'random_policy_mean_distance' not in out  # Pendulum has no task measure
    assert out['env_kwargs'] == {'max_episode_steps': 20, 'frame_skip': 2}
    assert (out['normalize_obs'], out['reward_scale'], out['reward_offset'],
            out['reward_root']) == (True, 2.0, 1.0, True)
    seed = out['seeds'][0]
    assert (seed['agent_steps'], seed['sim_steps']) == (200, 400)  # frame skip 2
    assert seed['updates'] > 0 and seed['replay_size'] == 200
    assert [point[0] for point in seed['eval_curve']] == [200, 400]  # simulator steps
    # the time limit of 20 simulator steps: episodes of 10 agent steps (lengths are the agent's)
    assert seed['final_mean_length'] == out['random_policy_mean_length'] == 10
    assert out['final_mean_return'] == seed['final_mean_return']
    with open(out['csv']) as f:
        rows = list(csv.DictReader(f))
    assert [r['sim_steps'] for r in rows if r['kind'] == 'eval'] == ['200', '400']
    assert os.path.getsize(out['png']) > 0
    # the export: what evaluate.py needs, and the same episodes give the same figures
    assert sorted(os.listdir(policy)) == ['actor.h5', 'config.json', 'obs_norm.npz']
    checked = json.loads(run(['evaluate.py', policy, '--episodes', '3', '--seed',
                              str(out['eval_seed']), '--json']).stdout)
    assert checked['env_kwargs'] == out['env_kwargs']
    assert checked['mean_return'] == pytest.approx(seed['final_mean_return'], abs=1e-3)
    assert checked['mean_length'] == seed['final_mean_length']


SLOW = ['--algo', 'sac', '--env', 'SlowEnv', '--env-kwargs',
        '{"step_seconds": 0.004, "obs_size": 4, "act_size": 2, "episode_length": 25}',
        '--envs', '2', '--steps', '1000', '--checkpoint-every', '100', '--eval-every', '500',
        '--eval-episodes', '1', '--hidden', '16,16', '--warmup', '50', '--batch-size', '16',
        '--seeds', '0', '--backend', 'inprocess', '--stepping', 'lockstep', '--json']


@pytest.mark.slow
def test_a_run_killed_mid_way_continues_with_its_steps_memory_and_curve(tmp_path):
    run_dir = tmp_path / 'run'
    command = [sys.executable, LEARN] + SLOW + ['--run-dir', str(run_dir), '--out',
                                                  str(tmp_path / 'out')]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, universal_newlines=True)
    folder = run_dir / 'seed0' / 'checkpoints'
    deadline = time.time() + TIMEOUT
    try:
        while time.time() < deadline and proc.poll() is None:
            if folder.is_dir() and [e for e in os.listdir(str(folder)) if not e.startswith('.')]:
                break
            time.sleep(0.02)
        assert proc.poll() is None, 'the run ended before it could be killed: ' + proc.stderr.read()
        proc.send_signal(signal.SIGKILL)  # no chance to clean up: what a crash leaves
    finally:
        proc.kill()
        proc.communicate()
    out = json.loads(run(command[1:]).stdout)
    seed = out['seeds'][0]
    assert 100 <= seed['resumed_from_agent_steps'] < 1000
    assert seed['agent_steps'] == seed['sim_steps'] == 1000
    assert seed['replay_size'] == 1000  # the memory of the killed run came back with it
    assert seed['episodes'] == 1000 // 25
    with open(str(run_dir / 'seed0' / 'curve.csv')) as f:
        rows = list(csv.DictReader(f))
    trained = [int(r['agent_steps']) for r in rows if r['kind'] == 'train']
    assert len(trained) == 40 and trained == sorted(trained)  # every episode once
    assert [int(r['agent_steps']) for r in rows if r['kind'] == 'eval'] == [500, 1000]
    # each evaluated policy exported beside the curve, for evaluate.py after a stop
    policies = run_dir / 'seed0' / 'policies'
    assert sorted(os.listdir(str(policies))) == ['sim000000500', 'sim000001000']
    with open(str(policies / 'sim000001000' / 'config.json')) as f:
        assert json.load(f)['sim_steps'] == 1000
    # the same command again: nothing more to train; the same figures
    again = json.loads(run(command[1:]).stdout)
    assert again['seeds'][0]['agent_steps'] == 1000 and again['seeds'][0]['updates'] == \
        seed['updates']
    assert again['final_mean_return'] == pytest.approx(out['final_mean_return'], abs=1e-3)
    # flags that shape training cannot change under a run directory
    proc = run(command[1:] + ['--hidden', '8,8'], check=False)
    assert proc.returncode != 0 and 'Traceback' not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        'bench/learn.py: --run-dir %s was started with hidden [16, 16]; this command has [8, 8]: '
        'give the same training flags to continue it, or another --run-dir' % run_dir)


@pytest.mark.parametrize('flags, message', [
    (['--frame-skip', '0'], 'argument --frame-skip: 0 is not allowed: at least 1'),
    (['--reward-scale', '-1'], 'argument --reward-scale: -1.0 is not allowed: a finite number'),
    (['--reward-offset', 'inf'], 'argument --reward-offset: inf is not allowed'),
    (['--normalize-obs', 'maybe'], "argument --normalize-obs: invalid yes/no value: 'maybe'"),
    (['--hidden', '0'], 'argument --hidden: (0,) is not allowed'),
    (['--env-kwargs', '[1]'], 'argument --env-kwargs: give a JSON object'),
    (['--mirror', 'yes'], 'argument --mirror: Pendulum-v1 has no mirror image defined '
                          '(environments with one: L2M2019Env)'),
])
def test_a_bad_flag_is_one_line(flags, message):
    proc = run([LEARN, '--algo', 'sac'] + flags, check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr


HANG_TIMEOUT = 120  # seconds; the run itself takes a few


@pytest.mark.slow
def test_a_run_without_a_run_dir_passes_its_checkpoint_boundaries_and_ends(tmp_path):
    """Issue 23: without --run-dir the checkpoint schedule was never advanced, so the first
    --checkpoint-every boundary left every later training chunk at 0 steps, for ever (the
    README's command hung at 10,000 steps). Three boundaries (100, 200, 300) here; a hang is
    a failure after HANG_TIMEOUT seconds (the run itself takes a few)."""
    command = [sys.executable, LEARN, '--algo', 'sac', '--env', 'Pendulum-v1', '--env-kwargs',
               '{"max_episode_steps": 20}', '--envs', '2', '--steps', '300',
               '--checkpoint-every', '100', '--eval-every', '1000', '--eval-episodes', '1',
               '--hidden', '16,16', '--warmup', '20', '--batch-size', '16', '--seeds', '0',
               '--backend', 'inprocess', '--out', str(tmp_path / 'out'), '--json']
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
    try:
        proc = subprocess.run(command, cwd=ROOT, env=env, timeout=HANG_TIMEOUT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True)
    except subprocess.TimeoutExpired:
        pytest.fail('bench/learn.py without --run-dir still running after %d s: stuck at a '
                    'checkpoint boundary' % HANG_TIMEOUT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    out = json.loads(proc.stdout)
    seed = out['seeds'][0]
    assert seed['agent_steps'] == seed['sim_steps'] == 300
    assert [point[0] for point in seed['eval_curve']] == [300]  # the final evaluation
    assert seed['resumed_from_agent_steps'] is None
    assert sorted(os.listdir(str(tmp_path))) == ['out']  # no run directory, no checkpoints


def test_a_run_started_before_mirror_existed_continues_only_unmirrored(tmp_path):
    """args.json of a run from before --mirror lacks the key: it trained unmirrored, so
    continuing it with --mirror yes is refused, and without it goes on."""
    from bench import learn
    args = learn.parse_args(['--algo', 'sac', '--env', 'L2M2019Env', '--run-dir', str(tmp_path)])
    learn.check_run_dir(args)
    with open(str(tmp_path / 'args.json')) as f:
        recorded = json.load(f)
    del recorded['mirror']
    with open(str(tmp_path / 'args.json'), 'w') as f:
        json.dump(recorded, f)
    learn.check_run_dir(args)  # unmirrored, as it was
    mirrored = learn.parse_args(['--algo', 'sac', '--env', 'L2M2019Env', '--mirror', 'yes',
                                 '--run-dir', str(tmp_path)])
    with pytest.raises(Exception, match='was started with mirror false; this command has true'):
        learn.check_run_dir(mirrored)
