"""envworker: one environment per process, its two channels (pipe and shared block), and how
replies are collected. Real worker processes throughout."""
import glob
import mmap
import os
import time

import numpy as np
import pytest

import envs
from farmside import channel, envworker
from common import wire
from farmside.envworker import EnvWorker, WorkerError, WorkerLost, replies

CHEAP = {'obs_size': 3, 'act_size': 2, 'episode_length': 3}


def shm_files():
    return set(glob.glob(os.path.join(channel.SHM_DIR or '/tmp', 'osimfarm-*')))


@pytest.fixture
def worker():
    made = []

    def make(name='CheapEnv', kwargs=CHEAP, shared=True):
        w = EnvWorker(name, dict(kwargs))
        made.append(w)
        w.hello(60)
        if not shared:
            w.block = None  # the pipe-only path every non-box environment takes
        return w

    yield make
    for w in made:
        w.close()


def no_new_shm_files(before):
    """Whether every shared block made since ``before`` is gone. Others' farms (tests running
    beside these) make and unlink blocks too: theirs vanish within moments, a leaked one stays."""
    deadline = time.time() + 5
    while shm_files() - set(before) and time.time() < deadline:
        time.sleep(0.05)
    return not shm_files() - set(before)


def run(w, actions, auto_reset=True):
    out = []
    for a in actions:
        w.send_step(a, auto_reset)
        out.append(w.receive(time.time() + 10))
    return out


def test_box_envs_step_through_the_shared_block_and_leave_no_file(worker):
    before = shm_files()
    w = worker()
    assert w.block is not None and (w.block.act_size, w.block.obs_size) == (2, 3)
    assert no_new_shm_files(before)  # unlinked as soon as both sides had it mapped
    w.send('reset', 7)
    assert w.receive(time.time() + 10) == [0.0, 7.0, 7.0]
    w.send_step([0.5, 0.5], True)
    # The one-byte step message reached the worker: its answer came back through the block.
    assert w.receive(time.time() + 10) == [[1.0, 8.0, 8.0], 0.0, False, False, {'t': 1}]
    w.kill()
    assert no_new_shm_files(before)


def test_shared_block_and_pipe_give_the_same_answers(worker):
    actions = [[0.1, 0.9], [0.5, 0.5], [1.0, 0.0], [0.3, 0.3], [0.2, 0.7], [0.5, 0.5]]
    answers = []
    for shared in (True, False):
        w = worker(shared=shared)
        w.send('reset', 2)
        w.receive(time.time() + 10)
        answers.append(run(w, actions))
    assert answers[0] == answers[1]
    # Episodes of 3 steps, auto-reset: the terminal observation arrives in info, exactly.
    ended = [r for r in answers[0] if 'terminal_observation' in r[4]]
    assert len(ended) == 2 and ended[0][2] is True and ended[0][0] == [0.0, 0.0, 0.0]
    assert ended[0][4]['terminal_observation'] == [3.0, 5.0, 5.0]  # seed 2 offsets by 2
    reward = -((0.1 - 0.5) ** 2 + (0.9 - 0.5) ** 2)
    assert answers[0][0][1] == reward and isinstance(answers[0][0][1], float)


def test_bad_actions_through_either_channel_are_named_and_the_worker_survives(worker):
    w = worker()
    w.send('reset', None)
    w.receive(time.time() + 10)
    cases = [([0.5, float('nan')], 'action[1] is nan'),   # fits the block; the worker checks it
             ([0.5], 'length 1, expected 2'),              # the rest take the pipe
             ([0.5, True], 'action[1] is True'),
             ([0.5, '0.5'], "action[1] is '0.5'")]
    for action, reason in cases:
        w.send_step(action, True)
        with pytest.raises(WorkerError, match=reason.replace('[', r'\[').replace(']', r'\]')) as e:
            w.receive(time.time() + 10)
        assert e.value.kind == 'input'
    assert run(w, [[0.5, 0.5]])[0][0] == [1.0, 1.0, 1.0]


def test_discrete_actions_take_the_pipe(worker):
    w = worker('CartPole-v1', {})
    assert w.block is None
    w.send('reset', 0)
    assert len(w.receive(time.time() + 10)) == 4
    obs, reward, terminated, truncated, info = run(w, [1])[0]
    assert len(obs) == 4 and reward == 1.0


def test_workers_run_as_batch_jobs(worker):
    # A woken worker must not preempt the farm while it hands out the other commands.
    w = worker()
    assert os.sched_getscheduler(w.pid) == os.SCHED_BATCH


@pytest.mark.slow
def test_replies_arrive_fastest_first_and_a_silent_worker_is_killed(worker):
    slow = worker('SlowEnv', {'step_seconds': 0.3, 'obs_size': 5, 'act_size': 2})
    fast = worker('SlowEnv', {'step_seconds': 0.0, 'obs_size': 5, 'act_size': 2})
    hung = worker('CheapEnv', dict(CHEAP, hang_after=0))
    for w in (slow, fast, hung):
        w.send('reset', None)
        w.receive(time.time() + 10)
        w.send_step([0.5, 0.5], False)
    started = time.time()
    order = list(replies([slow, fast, hung], time.time() + 1.0))
    assert [i for i, _ in order] == [1, 0, 2]
    assert len(order[0][1][0]) == 5 and len(order[1][1][0]) == 5
    assert isinstance(order[2][1], WorkerLost) and 'step timeout' in str(order[2][1])
    assert 0.9 < time.time() - started < 5
    assert not hung.alive()
    assert slow.alive() and fast.alive()  # the others are untouched


def test_a_dead_worker_is_lost_not_waited_for(worker):
    w = worker('CheapEnv', dict(CHEAP, crash_after=0))
    w.send('reset', None)
    w.receive(time.time() + 10)
    w.send_step([0.5, 0.5], True)
    started = time.time()
    with pytest.raises(WorkerLost, match='died'):
        w.receive(time.time() + 30)
    assert time.time() - started < 5


def test_block_layout_round_trips_exactly():
    sizes = (3, 4)
    block = channel.Block(mmap.mmap(-1, channel.Block.nbytes(sizes)), sizes)
    assert block.load_action([0.25, 1, 2 ** 40])
    assert block.action.tolist() == [0.25, 1.0, float(2 ** 40)]
    assert not block.load_action([0.25, 1])          # wrong length
    assert not block.load_action((0.1, None, 0.2))    # not numbers
    assert not block.load_action(np.zeros(4))         # a packed row of the wrong size...
    assert not block.load_action(np.zeros(3, int))    # ...or not floats: the pipe names it
    assert block.load_action(np.array([0.5, 0.25, 1], np.float32))  # a packed action's row
    assert block.action.tolist() == [0.5, 0.25, 1.0]
    env = envs.make('CheapEnv', obs_size=4, act_size=3, episode_length=1)
    env.reset(None)
    info = block.step(env, auto_reset=True)
    assert info == {'t': 1}
    assert block.result(info) == [[0.0, 0.0, 0.0, 0.0], -float(np.sum((block.action - 0.5) ** 2)),
                                  True, False, {'t': 1, 'terminal_observation': [1.0, 1.0, 1.0, 1.0]}]
    packed = block.result({}, packed=True)  # a packed lease's: float32 arrays, same values
    assert wire.unpack(packed[0]).dtype == np.float32
    assert wire.unpack(packed[0]).tolist() == [0.0] * 4
    assert wire.unpack(packed[4]['terminal_observation']).tolist() == [1.0] * 4


def test_without_shared_memory_the_pipe_carries_the_steps(worker, monkeypatch):
    def no_space(sizes):
        raise OSError(28, 'No space left on device')
    monkeypatch.setattr(channel.Block, 'create', staticmethod(no_space))
    w = worker()
    assert w.block is None
    w.send('reset', None)
    w.receive(time.time() + 10)
    assert run(w, [[0.5, 0.5]])[0] == [[1.0, 1.0, 1.0], 0.0, False, False, {'t': 1}]


def test_a_replacement_is_built_with_the_successor_of_the_last_seed(worker):
    """The farm builds a recycled or lost worker's replacement from ``worker.kwargs``: that seed
    moves on with every seed given, so the replacement neither replays the seeded episodes nor
    starts unseeded."""
    from envs.seeding import successor
    slow = {'step_seconds': 0.0, 'obs_size': 4, 'act_size': 2}
    w = worker('SlowEnv', dict(slow, seed=3))
    assert w.kwargs == dict(slow, seed=successor(3))
    w.send('reset', 9)
    seeded = w.receive(time.time() + 10)
    assert w.kwargs == dict(slow, seed=successor(9))
    replacement = worker('SlowEnv', w.kwargs)
    replacement.send('reset', None)
    first = replacement.receive(time.time() + 10)
    assert first != seeded
    assert first == envs.make('SlowEnv', **dict(slow, seed=successor(9))).reset().tolist()
