"""Full resume: training N env steps equals training N/2, checkpointing (checkpoints.save),
loading in a fresh process (checkpoints.load) and training N/2 more; for SAC in eager and in
graph mode and for DDPG (keras-rl2's, graph mode), on CheapEnv through vecenv.InProcessVecEnv.

Each run is a case of tests/resume_cases.py in its own interpreter: process one trains the
uninterrupted run and the first half (two agents built alike) and saves; process two loads and
trains the second half.
Both write what they end with (every model's weights, every optimizer's state, the replay
memory, counters, RNG states) to a ``.npz`` that the test compares. The halfway point is an
episode boundary of every environment (CheapEnv's episodes are 10 steps; 3 environments step
together): episodes in flight are not continued across a restart (see agents/base.py).
"""
import logging
import os
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CASES = os.path.join(HERE, 'resume_cases.py')

from resume_cases import HALF, N_ENVS, _build  # noqa: E402


def _run(python, *args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', PYTHONPATH=ROOT)
    proc = subprocess.run([python, CASES] + list(args), cwd=ROOT, env=env, timeout=300,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True)
    assert proc.returncode == 0, '%s failed:\n%s' % (args, proc.stdout[-6000:])
    return proc.stdout


def _python(version):
    if version == '3.6':  # the learner of tests/test_py36_host.py: TensorFlow 2.6
        from test_py36_host import PROBLEM, PY36
        if PROBLEM:
            pytest.skip(PROBLEM)
        return PY36
    return sys.executable


@pytest.mark.parametrize('python', ['this', '3.6'])
@pytest.mark.parametrize('algo,mode,options', [
    ('sac', 'eager', 'plain'), ('sac', 'graph', 'plain'), ('ddpg', 'graph', 'plain'),
    ('sac', 'eager', 'norm'), ('ddpg', 'graph', 'norm')])
@pytest.mark.slow
def test_a_run_stopped_and_resumed_in_a_fresh_process_continues_as_if_never_stopped(
        algo, mode, options, python, tmp_path):
    """``options`` 'norm': observation normalization on (its statistics continue exactly, and
    with them every normalized state) and the rewards scaled."""
    python = _python(python)
    _run(python, 'case_first', algo, mode, str(tmp_path), options)
    _run(python, 'case_second', algo, mode, str(tmp_path), options)
    with np.load(str(tmp_path / 'uninterrupted.npz')) as a, \
            np.load(str(tmp_path / 'resumed.npz')) as b:
        assert sorted(a.files) == sorted(b.files)
        assert any(k.startswith('optimizer.') for k in a.files)
        if options == 'norm':
            assert int(a['obs_norm.count']) == N_ENVS + 2 * HALF + 2 * HALF // 10
        for key in sorted(a.files):
            np.testing.assert_allclose(b[key], a[key], rtol=1e-6, atol=1e-7, err_msg=key)
        # the second half trained: updates ran, with warm-up not repeated
        episodes, global_step, updates = a['counters'].tolist()
        assert (episodes, global_step) == (2 * HALF // 10, 2 * HALF)
        assert updates > 100


# --- in this process, eager SAC: what a checkpoint holds, and what starts fresh -----------------
@pytest.fixture
def trained_sac():
    agent, vec = _build('sac')
    agent.train_vec(vec, nb_steps=HALF, seed=100)
    vec.close()
    return agent


def _fresh_sac():
    agent, vec = _build('sac')
    vec.close()
    return agent


@pytest.mark.slow
def test_a_checkpoint_holds_the_memory_and_says_its_size(trained_sac, tmp_path, caplog):
    from run import checkpoints
    with caplog.at_level(logging.INFO, logger='checkpoints'):
        path = checkpoints.save(trained_sac, str(tmp_path), 'half')
    assert sorted(os.listdir(path)) == sorted('half_%s' % part for part in (
        'policy.h5', 'critic1.h5', 'critic2.h5', 'target_critic1.h5', 'target_critic2.h5',
        'state.json', 'training.npz', 'memory.npz'))
    said = [r.getMessage() for r in caplog.records if 'checkpoint %s' % path in r.getMessage()]
    assert len(said) == 1 and 'replay memory of %d transitions' % HALF in said[0], said
    other = _fresh_sac()
    with caplog.at_level(logging.WARNING):
        caplog.clear()
        checkpoints.load(other, path)
    assert not caplog.records  # nothing starts fresh
    assert len(other.memory) == len(trained_sac.memory) == HALF
    np.testing.assert_array_equal(other.memory.observations[:HALF],
                                  trained_sac.memory.observations[:HALF])
    for mine, theirs in zip(other.critic_optimizer.get_weights(),
                            trained_sac.critic_optimizer.get_weights()):
        np.testing.assert_array_equal(mine, theirs)


@pytest.mark.slow
def test_without_the_memory_it_starts_empty_and_the_rest_loads(trained_sac, tmp_path, caplog):
    from run import checkpoints
    trained_sac.save_memory = False  # what --no-save-memory sets
    path = checkpoints.save(trained_sac, str(tmp_path), 'half')
    assert not os.path.exists(os.path.join(path, 'half_memory.npz'))
    other = _fresh_sac()
    other.memory.append(np.ones(3), [0.5], 1.0, np.ones(3), False)  # not the checkpoint's
    with caplog.at_level(logging.WARNING):
        checkpoints.load(other, path)
    notes = [r.getMessage() for r in caplog.records]
    assert len(notes) == 1 and 'without its replay memory' in notes[0], notes
    assert len(other.memory) == 0 and other.counters() == trained_sac.counters()
    assert other.policy_optimizer.iterations.numpy() == trained_sac.updates > 0


@pytest.mark.slow
def test_a_checkpoint_of_an_earlier_version_loads_weights_and_counters_with_one_note(
        trained_sac, tmp_path, caplog):
    from run import checkpoints
    folder = tmp_path / 'checkpoints' / 'ep0000015'
    folder.mkdir(parents=True)
    trained_sac.save_weights(str(folder / 'ep0000015.h5'))  # all an earlier save wrote
    other = _fresh_sac()
    with caplog.at_level(logging.WARNING):
        base = checkpoints.load(other, str(tmp_path))
    assert base == str(folder / 'ep0000015.h5')
    notes = [r.getMessage() for r in caplog.records]
    assert len(notes) == 1 and 'replay memory and optimizer states start fresh' in notes[0]
    assert other.counters() == trained_sac.counters() and len(other.memory) == 0
    np.testing.assert_array_equal(other.policy.get_weights()[0],
                                  trained_sac.policy.get_weights()[0])
    # An agent that had trained before loading gets fresh optimizers, as the note says.
    trained_sac.load_weights(str(folder / 'ep0000015.h5'))
    assert trained_sac.load_training_state(str(folder / 'ep0000015.h5'))
    assert all(not np.any(w) for w in trained_sac.critic_optimizer.get_weights())


@pytest.mark.slow
def test_only_the_newest_checkpoint_keeps_its_replay_memory(trained_sac, tmp_path, caplog):
    from run import checkpoints
    folder = str(tmp_path / 'checkpoints')
    paths = []
    for episodes in (15, 16, 17):
        trained_sac.episodes = episodes
        paths.append(checkpoints.save(trained_sac, folder, 'ep%07d' % episodes, keep=2))
    assert not os.path.exists(paths[0])  # pruned: 2 kept
    assert not os.path.exists(os.path.join(paths[1], 'ep0000016_memory.npz'))
    assert os.path.exists(os.path.join(paths[2], 'ep0000017_memory.npz'))
    assert os.path.exists(os.path.join(paths[1], 'ep0000016_training.npz'))
    other = _fresh_sac()
    with caplog.at_level(logging.WARNING):
        checkpoints.load(other, paths[1])  # an older one still loads, with a fresh memory
    assert other.episodes == 16 and len(other.memory) == 0
    assert 'without its replay memory' in caplog.text


def test_a_truncated_memory_file_is_named_and_the_older_checkpoint_loads(trained_sac, tmp_path,
                                                                          caplog):
    from run import checkpoints
    folder = str(tmp_path / 'checkpoints')
    older = checkpoints.save(trained_sac, folder, 'ep0000015')
    trained_sac.episodes += 1
    newer = checkpoints.save(trained_sac, folder, 'ep0000016')
    os.utime(older, (1, 1))
    memory_file = os.path.join(newer, 'ep0000016_memory.npz')
    with open(memory_file, 'r+b') as f:
        f.truncate(os.path.getsize(memory_file) // 2)
    other = _fresh_sac()
    with caplog.at_level(logging.WARNING):
        base = checkpoints.load(other, folder)
    assert os.path.dirname(base) == older and other.episodes == 15
    assert any(memory_file in r.getMessage() for r in caplog.records)
