"""run/checkpoints.py, and Session.save / Session.load on top of it, with a fake agent that writes
what a keras-rl agent's ``save_weights`` writes (HDF5 weight files and a JSON state file), so no
TensorFlow is needed. The kill test runs saves in a real child process and kill -9's it at random
moments: the newest whole checkpoint must always load."""
import json
import logging
import os
import random
import subprocess
import sys
import time

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

from run import checkpoints  # noqa: E402
from run import runfiles  # noqa: E402
from run import session  # noqa: E402
from common.errors import UserError  # noqa: E402


class FakeAgent(object):
    """Counters, and weights that say which checkpoint they came from (every value is made of
    the counters): a checkpoint mixing files of two saves fails to load."""

    def __init__(self, size=100000):
        self.global_step = self.episodes = self.updates = 0
        self.size = size

    def counters(self):
        return {'global_step': self.global_step, 'episodes': self.episodes,
                'updates': self.updates}

    def save_weights(self, filepath, overwrite=False):
        import h5py
        stem = os.path.splitext(filepath)[0]
        for part in ('policy', 'critic'):
            with h5py.File('%s_%s.h5' % (stem, part), 'w') as f:
                f['w'] = np.full(self.size, self.episodes * 1000.0 + self.updates)
        with open(stem + '_state.json', 'w') as f:
            json.dump(self.counters(), f)

    def load_weights(self, filepath):
        import h5py
        stem = os.path.splitext(filepath)[0]
        with open(stem + '_state.json') as f:
            state = json.load(f)
        for part in ('policy', 'critic'):
            with h5py.File('%s_%s.h5' % (stem, part), 'r') as f:
                if not (f['w'][:] == state['episodes'] * 1000.0 + state['updates']).all():
                    raise ValueError('%s_%s.h5 is not of this checkpoint' % (stem, part))
        for name in ('global_step', 'episodes', 'updates'):
            setattr(self, name, state[name])


class Cfg(object):
    keep_checkpoints = 3
    env = 'Fake-v0'
    seed = 1


def stand_in(run_dir, agent):
    """A Session with only what save and load use (no farmer, no env)."""
    s = object.__new__(session.Session)
    s.cfg, s.algo, s.agent, s.run_dir, s._created = Cfg(), 'fake', agent, str(run_dir), False
    s.saved = s.saved_path = None
    s.files = runfiles.RunFiles(str(run_dir))
    os.makedirs(os.path.join(str(run_dir), 'checkpoints'), exist_ok=True)
    return s


def trained(s, episodes):
    s.agent.episodes, s.agent.global_step, s.agent.updates = episodes, 10 * episodes, 5 * episodes
    return s.save()


def save_loop(run_dir):
    """The child of the kill test: resume, then save for ever (every other episode count twice,
    as ``save()`` twice would), saying each completed episode count on stdout."""
    s = stand_in(run_dir, FakeAgent())
    try:
        session.Session.load(s, run_dir)
    except Exception:
        pass  # nothing saved yet
    print('ready', flush=True)
    while True:
        s.agent.episodes += 1
        s.agent.global_step += 10
        session.Session.save(s)
        if s.agent.episodes % 2 == 0:  # save() again: the same name, other weights
            s.agent.updates += 1
            session.Session.save(s)
        print(s.agent.episodes, flush=True)


# --- kill -9 while saving -------------------------------------------------------------------------
@pytest.mark.slow
def test_a_kill_at_any_moment_of_a_save_leaves_the_newest_whole_checkpoint_loadable(
        tmp_path, caplog):
    run_dir = tmp_path / 'run'
    rng = random.Random(8)
    loaded = 0
    for attempt in range(16):
        child = subprocess.Popen([sys.executable, __file__, str(run_dir)],
                                 stdout=subprocess.PIPE, universal_newlines=True)
        while child.stdout.readline().strip() != 'ready':  # after its own load's lines
            assert child.poll() is None, 'the saving child died'
        time.sleep(rng.uniform(0.02, 0.3))
        child.kill()
        child.wait()
        done = [int(line) for line in child.stdout.read().split('\n') if line.isdigit()]
        child.stdout.close()
        agent = FakeAgent()
        caplog.clear()
        newest_done = done[-1] if done else loaded
        with caplog.at_level(logging.WARNING):
            try:
                session.Session.load(stand_in(run_dir, agent), str(run_dir))
            except UserError:  # killed before its first save was whole: nothing to load yet
                assert newest_done == 0 and 'damaged' not in str(sys.exc_info()[1])
        # half-written ones are never candidates: nothing damaged to say
        assert not [r for r in caplog.records if r.name == 'checkpoints'], caplog.text
        # the newest whole one: the last save the child reported, or one it finished unreported
        assert newest_done <= agent.episodes <= newest_done + 1, (attempt, done, agent.episodes)
        loaded = agent.episodes
    assert loaded > 16  # the saves went on across the kills
    # Leftovers of killed saves go with the next save; keep_checkpoints are kept.
    s = stand_in(run_dir, FakeAgent())
    session.Session.load(s, str(run_dir))
    trained(s, loaded + 1)
    entries = os.listdir(str(run_dir / 'checkpoints'))
    assert not [e for e in entries if e.startswith('.')], entries
    assert len(entries) == Cfg.keep_checkpoints
    assert not [e for e in os.listdir(str(run_dir)) if '.tmp-' in e]


# --- damaged checkpoints -------------------------------------------------------------------------
def three_checkpoints(tmp_path):
    s = stand_in(tmp_path / 'run', FakeAgent())
    return s, [trained(s, episodes) for episodes in (1, 2, 3)]


def test_a_truncated_weight_file_falls_back_to_the_older_checkpoint_naming_the_file(
        tmp_path, caplog):
    s, paths = three_checkpoints(tmp_path)
    policy = os.path.join(paths[-1], 'ep0000003_policy.h5')
    with open(policy, 'r+b') as f:
        f.truncate(os.path.getsize(policy) // 2)
    agent = FakeAgent()
    with caplog.at_level(logging.WARNING):
        session.Session.load(stand_in(tmp_path / 'run', agent), str(tmp_path / 'run'))
    assert agent.episodes == 2
    lines = [r.getMessage() for r in caplog.records if 'damaged' in r.getMessage()]
    assert len(lines) == 1 and policy in lines[0] and 'ep0000002' in lines[0], lines


def test_garbage_pointer_and_state_files_are_named_and_skipped(tmp_path, caplog):
    s, paths = three_checkpoints(tmp_path)
    pointer = tmp_path / 'run' / 'checkpoint.json'
    pointer.write_text('{"latest": "ep00')  # cut short
    state = os.path.join(paths[-1], 'ep0000003_state.json')
    with open(state, 'w') as f:
        f.write('\0\0\0')
    agent = FakeAgent()
    with caplog.at_level(logging.WARNING):
        session.Session.load(stand_in(tmp_path / 'run', agent), str(tmp_path / 'run'))
    assert agent.episodes == 2
    text = caplog.text
    assert str(pointer) in text and state in text


def test_weight_files_of_two_saves_mixed_are_refused_by_the_agent_and_skipped(tmp_path, caplog):
    s, paths = three_checkpoints(tmp_path)
    os.replace(os.path.join(paths[0], 'ep0000001_critic.h5'),
               os.path.join(paths[-1], 'ep0000003_critic.h5'))
    agent = FakeAgent()
    with caplog.at_level(logging.WARNING):
        base = checkpoints.load(agent, str(tmp_path / 'run'))
    assert agent.episodes == 2 and os.path.dirname(base) == paths[1]
    assert 'cannot load checkpoint: %s: ' % paths[-1] in caplog.text
    assert 'not of this checkpoint' in caplog.text


def test_nothing_loadable_is_a_user_error_naming_the_directory(tmp_path):
    s, paths = three_checkpoints(tmp_path)
    for path in paths:
        for name in os.listdir(path):
            with open(os.path.join(path, name), 'w') as f:
                f.write('garbage')
    with pytest.raises(UserError) as e:
        session.Session.load(stand_in(tmp_path / 'run', FakeAgent()), str(tmp_path / 'run'))
    assert str(tmp_path / 'run') in str(e.value) and '3 damaged' in str(e.value)
    empty = tmp_path / 'empty'
    empty.mkdir()
    with pytest.raises(UserError, match='no loadable checkpoint'):
        checkpoints.find(str(empty))
    with pytest.raises(UserError, match='no such file'):
        checkpoints.find(str(tmp_path / 'missing'))


def test_an_explicit_checkpoint_loads_that_one_and_does_not_fall_back(tmp_path):
    s, paths = three_checkpoints(tmp_path)
    agent = FakeAgent()
    checkpoints.load(agent, paths[0])
    assert agent.episodes == 1
    checkpoints.load(agent, os.path.join(paths[1], 'ep0000002_policy.h5'))  # one of its files
    assert agent.episodes == 2
    os.remove(os.path.join(paths[0], 'ep0000001_state.json'))
    with pytest.raises(UserError):
        checkpoints.load(agent, paths[0])


# --- writing -------------------------------------------------------------------------------------
def test_a_save_under_a_taken_name_never_overwrites_and_the_newest_loads(tmp_path):
    s = stand_in(tmp_path / 'run', FakeAgent())
    first = trained(s, 4)
    s.agent.updates += 1  # same episode count, different weights
    second = s.save()
    assert os.path.basename(first) == 'ep0000004' and os.path.basename(second) == 'ep0000004-2'
    pointer = json.loads((tmp_path / 'run' / 'checkpoint.json').read_text())
    assert pointer['latest'] == 'ep0000004-2' and pointer['updates'] == 21
    agent = FakeAgent()
    checkpoints.load(agent, str(tmp_path / 'run'))
    assert agent.updates == 21
    checkpoints.load(agent, first)
    assert agent.updates == 20


def test_pruning_keeps_the_newest_and_removes_leftovers_of_dead_processes_only(tmp_path):
    s = stand_in(tmp_path / 'run', FakeAgent())
    folder = tmp_path / 'run' / 'checkpoints'
    dead = subprocess.Popen([sys.executable, '-c', 'pass'])
    dead.wait()
    (folder / ('.ep0000009.tmp-%d' % dead.pid)).mkdir()
    (folder / ('.ep0000001.trash-%d' % dead.pid)).mkdir()
    (tmp_path / 'run' / ('checkpoint.json.tmp-%d' % dead.pid)).write_text('{')
    alive = folder / ('.ep0000009.tmp-%d' % os.getppid())  # a live process may be writing it
    alive.mkdir()
    for episodes in range(1, 7):
        trained(s, episodes)
    assert sorted(os.listdir(str(folder))) == [alive.name, 'ep0000004', 'ep0000005', 'ep0000006']
    assert sorted(os.listdir(str(tmp_path / 'run'))) == ['checkpoint.json', 'checkpoints']


def test_checkpoints_of_the_flat_layout_of_earlier_versions_still_load(tmp_path):
    folder = tmp_path / 'run' / 'checkpoints'
    folder.mkdir(parents=True)
    agent = FakeAgent()
    agent.episodes = 7
    agent.save_weights(str(folder / 'ep0000007.h5'))
    (tmp_path / 'run' / 'checkpoint.json').write_text(json.dumps(
        dict(agent.counters(), latest='ep0000007.h5')))
    loaded = FakeAgent()
    session.Session.load(stand_in(tmp_path / 'run', loaded), str(tmp_path / 'run'))
    assert loaded.episodes == 7
    assert checkpoints.run_dir_of(str(folder / 'ep0000007_policy.h5')) == str(tmp_path / 'run')


def test_a_save_to_an_explicit_path_is_a_checkpoint_folder_there(tmp_path):
    s = stand_in(tmp_path / 'run', FakeAgent())
    s.agent.episodes = 3
    path = s.save(str(tmp_path / 'best.h5'))
    assert path == str(tmp_path / 'best')
    agent = FakeAgent()
    checkpoints.load(agent, path)
    assert agent.episodes == 3 and checkpoints.run_dir_of(path) is None


if __name__ == '__main__':
    save_loop(sys.argv[1])
