"""farm.py's asynchronous stepping (send / send_reset / recv) and packed arrays, through a real
Pyro4 daemon (in a thread) with real worker processes. Behaviour, never timings: a slow
environment's step lasts seconds where a fast one's lasts microseconds, and only the order of
the results is asserted."""
import os
import select
import signal
import threading
import time
import types

import numpy as np
import pytest

import farm
from farmside import books
from common import protocol, wire
from conftest import alive

GOOD = [0.5, 0.5]


@pytest.fixture(params=['epoll', 'poll'])
def watch_mode(request, monkeypatch):
    """The recv's two ways of waiting (books.Watch): epoll, where a send adds its pipe to the set
    a waiting recv sleeps on, and poll (no epoll on this platform), where send wakes it."""
    if request.param == 'poll':
        without_epoll = types.SimpleNamespace(poll=select.poll, POLLIN=select.POLLIN,
                                              error=select.error)
        monkeypatch.setattr(books, 'select', without_epoll)
    return request.param


def make(proxy, lease, n=1, name='CheapEnv', **kwargs):
    return proxy.make(lease, name, kwargs, n)['env_ids']


def recv_all(proxy, lease, count, timeout=30):
    """Results of ``count`` environments, whatever the batches they come in."""
    got = []
    deadline = time.time() + timeout
    while len(got) < count and time.time() < deadline:
        got += proxy.recv(lease, count - len(got), 5.0)
    assert len(got) == count, got
    return got


def wait_until_receiving(f, lease):
    """Until a recv waits on ``lease`` of the in-process farm ``f`` (thread_farm)."""
    deadline = time.time() + 20
    while not f.farm.ledger.get(lease).receiving and time.time() < deadline:
        time.sleep(0.01)
    assert f.farm.ledger.get(lease).receiving


def test_protocol_3_is_in_info(thread_farm):
    info = thread_farm().proxy().info()
    assert info['versions']['farm_protocol'] == protocol.PROTOCOL == farm.PROTOCOL == 3
    assert protocol.protocol_mismatch(info) is None


def test_send_recv_gives_the_lockstep_results_for_the_same_seeds_and_actions(thread_farm):
    p = thread_farm(capacity=6).proxy()
    lock, asyn = p.open_lease(30), p.open_lease(30)
    lock_ids = make(p, lock, 3, episode_length=3, obs_size=4)
    async_ids = make(p, asyn, 3, episode_length=3, obs_size=4)
    seeds = [11, 12, 13]
    expected = [p.reset(lock, lock_ids, seeds)]
    assert p.send_reset(asyn, async_ids, seeds) == [None] * 3
    got = [dict(recv_all(p, asyn, 3))]
    actions = [[[0.1 * k, 0.2], [0.3, 0.4 * k], [0.5, 0.6]] for k in range(5)]
    for batch in actions:  # five steps: an episode ends (auto-reset) at the third
        expected.append(p.step(lock, lock_ids, batch, True))
        assert p.send(asyn, async_ids, batch) == [None] * 3
        got.append(dict(recv_all(p, asyn, 3)))
    for want, have in zip(expected, got):
        assert [have[i] for i in async_ids] == want
    assert 'terminal_observation' in expected[3][0][4]  # the comparison covered an episode end


@pytest.mark.slow
def test_results_come_back_as_they_finish_a_slow_env_does_not_hold_a_fast_one(thread_farm,
                                                                              watch_mode):
    p = thread_farm().proxy()
    lease = p.open_lease(30)
    slow = make(p, lease, 1, 'SlowEnv', step_seconds=3.0, obs_size=3, act_size=2)[0]
    fast = make(p, lease, 1, 'CheapEnv')[0]
    p.reset(lease, [slow, fast])
    assert p.send(lease, [slow, fast], [GOOD, GOOD]) == [None, None]
    order = []
    for _ in range(3):  # the fast one goes round three times while the slow one steps once
        (env_id, result), = p.recv(lease, 1, 30)
        order.append(env_id)
        assert env_id == fast and result[0][0] == len(order)
        assert p.send(lease, [fast], [GOOD]) == [None]
    rest = recv_all(p, lease, 2)
    assert sorted(env_id for env_id, _ in rest) == sorted([slow, fast])
    assert len(dict(rest)[slow]) == 5 and dict(rest)[slow][3] is False  # its step's result


@pytest.mark.slow
def test_min_count_and_timeout(thread_farm, watch_mode):
    p = thread_farm().proxy()
    lease = p.open_lease(30)
    assert p.recv(lease) == []  # nothing in flight: at once
    slow = make(p, lease, 1, 'SlowEnv', step_seconds=2.0, obs_size=3, act_size=2)[0]
    fast = make(p, lease, 2, 'CheapEnv')
    p.reset(lease, [slow] + fast)
    p.send(lease, [slow] + fast, [GOOD] * 3)
    # Both fast ones finish long before the slow one: min_count 2 returns them (and only them,
    # whatever their order); a timeout returns what is there, here nothing.
    first = p.recv(lease, 2, 30)
    assert sorted(i for i, _ in first) == sorted(fast)
    assert p.recv(lease, 1, 0.05) == []
    assert p.recv(lease, 0, 0) == []
    # min_count above the number in flight: returns when all of them are in.
    p.send(lease, fast, [GOOD] * 2)
    everything = p.recv(lease, 10, 30)
    assert sorted(i for i, _ in everything) == sorted([slow] + fast)
    assert p.recv(lease, 5, 10) == []  # nothing in flight again: at once
    with pytest.raises(ValueError, match='min_count'):
        p.recv(lease, -1)
    with pytest.raises(ValueError, match='timeout'):
        p.recv(lease, 1, 'soon')


@pytest.mark.slow
def test_an_env_in_flight_is_refused_by_every_other_call_and_its_neighbours_still_work(
        thread_farm):
    p = thread_farm().proxy()
    lease = p.open_lease(30)
    busy = make(p, lease, 1, 'SlowEnv', step_seconds=2.0, obs_size=3, act_size=2)[0]
    free = make(p, lease, 1, 'CheapEnv')[0]
    p.reset(lease, [busy, free])
    assert p.send(lease, [busy], [GOOD]) == [None]
    for answer in (p.step(lease, [busy, free], [GOOD, GOOD]),
                   p.reset(lease, [busy, free]),
                   p.set_params(lease, [busy, free], {}),
                   p.send(lease, [busy, free], [GOOD, GOOD]),  # free is in flight after this
                   p.send_reset(lease, [busy])):
        assert answer[0]['kind'] == 'input'
        assert 'env %d is in flight: recv its result first' % busy in answer[0]['error']
        assert answer[1:] in ([], [None], [[0.0, 0.0, 0.0]]) or len(answer[1]) == 5
    assert sorted(i for i, _ in recv_all(p, lease, 2)) == sorted([busy, free])
    assert len(p.step(lease, [busy], [GOOD])[0]) == 5  # after recv, busy is free again


def test_a_worker_killed_mid_step_comes_back_lost_and_send_reset_revives_it(thread_farm):
    p = thread_farm().proxy()
    lease = p.open_lease(30)
    env_id, other = make(p, lease, 2, 'SlowEnv', step_seconds=5.0, obs_size=3, act_size=2)
    p.reset(lease, [env_id, other])
    pid = int(p.worker_pids(lease)[str(env_id)])
    p.set_params(lease, [other], {'step_seconds': 0.0})
    p.reset(lease, [other])
    p.send(lease, [env_id, other], [GOOD, GOOD])
    os.kill(pid, signal.SIGKILL)
    got = dict(recv_all(p, lease, 2))
    assert got[env_id]['kind'] == 'lost' and 'died' in got[env_id]['error']
    assert len(got[other]) == 5
    assert int(p.worker_pids(lease)[str(env_id)]) != pid  # replaced
    refused = p.send(lease, [env_id], [GOOD])[0]  # must be reset before stepping
    assert refused['kind'] == 'input' and 'reset it' in refused['error']
    assert p.send_reset(lease, [env_id], [5]) == [None]  # the new worker builds, then resets
    (back, obs), = recv_all(p, lease, 1)
    assert back == env_id and len(obs) == 3
    p.set_params(lease, [env_id], {'step_seconds': 0.0})


def test_a_worker_that_dies_before_send_is_lost_at_once(thread_farm):
    p = thread_farm().proxy()
    lease = p.open_lease(30)
    env_id = make(p, lease)[0]
    p.reset(lease, [env_id])
    pid = int(p.worker_pids(lease)[str(env_id)])
    os.kill(pid, signal.SIGKILL)
    deadline = time.time() + 10
    while alive(pid) and time.time() < deadline:
        time.sleep(0.05)
    answer = p.send(lease, [env_id], [GOOD])[0]  # its pipe is closed: lost at once
    assert answer['kind'] == 'lost' and 'died' in answer['error']
    assert p.recv(lease, 1, 0) == []  # nothing in flight
    assert int(p.worker_pids(lease)[str(env_id)]) != pid  # replaced
    assert p.send_reset(lease, [env_id]) == [None]
    assert recv_all(p, lease, 1)[0][1] == [0.0, 0.0, 0.0]


@pytest.mark.slow
def test_a_step_past_the_step_timeout_is_lost_and_replaced_in_async_mode(thread_farm):
    p = thread_farm(step_timeout=1.0).proxy()
    lease = p.open_lease(30)
    hung = make(p, lease, 1, hang_after=0)[0]
    fine = make(p, lease, 1)[0]
    p.reset(lease, [hung, fine])
    pid = int(p.worker_pids(lease)[str(hung)])
    p.send(lease, [hung, fine], [GOOD, GOOD])
    got = dict(recv_all(p, lease, 2))
    assert len(got[fine]) == 5
    assert got[hung]['kind'] == 'lost' and 'step timeout' in got[hung]['error']
    assert not alive(pid)
    p.send_reset(lease, [hung])
    assert recv_all(p, lease, 1)[0] == [hung, [0.0, 0.0, 0.0]]


def test_workers_are_recycled_in_async_mode(thread_farm):
    p = thread_farm(recycle_resets=2).proxy()
    lease = p.open_lease(30)
    env_id = make(p, lease, 1, episode_length=1)[0]
    p.send_reset(lease, [env_id])
    assert recv_all(p, lease, 1)[0][1] == [0.0, 0.0, 0.0]
    pids = [int(p.worker_pids(lease)[str(env_id)])]
    for _ in range(4):  # every step ends an episode; a new worker every second reset
        p.send(lease, [env_id], [GOOD])
        (_, (obs, reward, terminated, truncated, info)), = recv_all(p, lease, 1)
        assert terminated and obs == [0.0, 0.0, 0.0]  # the next episode's first observation
        assert info['terminal_observation'] == [1.0, 1.0, 1.0]
        pids.append(int(p.worker_pids(lease)[str(env_id)]))
    assert len(set(pids)) >= 3  # recycled at least twice
    assert not any(alive(pid) for pid in pids[:-1])


@pytest.mark.slow
def test_send_on_one_connection_while_recv_waits_on_another(thread_farm, watch_mode):
    f = thread_farm()
    sender, receiver = f.proxy(), f.proxy()
    lease = sender.open_lease(30)
    slow = make(sender, lease, 1, 'SlowEnv', step_seconds=3.0, obs_size=3, act_size=2)[0]
    fast = make(sender, lease, 1)[0]
    sender.reset(lease, [slow, fast])
    sender.send(lease, [slow], [GOOD])
    got = []
    waiting = threading.Thread(target=lambda: got.append(receiver.recv(lease, 1, 30)))
    waiting.start()
    wait_until_receiving(f, lease)
    assert sender.recv(lease, 1, 0) == []  # another recv may overlap: nothing ready yet
    assert sender.send(lease, [fast], [GOOD]) == [None]  # wakes the waiting recv
    waiting.join(30)
    assert [env_id for env_id, _ in got[0]] == [fast]
    assert recv_all(receiver, lease, 1)[0][0] == slow


def test_a_recv_with_wait_asks_before_the_send_arrives(thread_farm, watch_mode):
    """recv(wait=True) with nothing in flight waits for what is sent meanwhile on another
    connection (a learner's receiver asks before its send has arrived: through a far link the
    round trip is then paid once); without wait it answers [] at once, as before."""
    f = thread_farm()
    sender, receiver = f.proxy(), f.proxy()
    lease = sender.open_lease(30)
    env_id = make(sender, lease, 1)[0]
    sender.reset(lease, [env_id])
    assert receiver.recv(lease, 1, 30) == []  # nothing in flight, no wait: at once
    assert receiver.recv(lease, 1, 0.2, True) == []  # waited, nothing came
    got = []
    waiting = threading.Thread(target=lambda: got.append(receiver.recv(lease, 1, 30, True)))
    waiting.start()
    wait_until_receiving(f, lease)
    assert sender.send(lease, [env_id], [GOOD]) == [None]
    waiting.join(30)
    assert [e for e, _ in got[0]] == [env_id] and got[0][0][1][0][0] == 1  # CheapEnv's t


@pytest.mark.slow
def test_post_is_one_way_and_its_results_and_refusals_come_from_recv(thread_farm, watch_mode):
    """post/post_reset: the caller gets no answer (Pyro4 one-way, learnt from the farm's
    metadata); results come from recv as send's do, and so do refusals, as [env_id, error]."""
    f = thread_farm()
    p = f.proxy()
    lease = p.open_lease(30)
    slow = make(p, lease, 1, 'SlowEnv', step_seconds=3.0, obs_size=3, act_size=2)[0]
    fast = make(p, lease, 1)[0]
    assert {'post', 'post_reset'} <= p._pyroOneway  # the farm's metadata says so
    assert p.post_reset(lease, [slow, fast], [1, 2]) is None
    assert sorted(e for e, _ in recv_all(p, lease, 2)) == sorted([slow, fast])
    p.post(lease, [slow], [GOOD])
    # The same connection, at once: it reaches the farm after the first post (one-way calls
    # run in order on the connection's thread), so the slow env is in flight and refused.
    p.post(lease, [slow, fast], [GOOD, GOOD])
    got = dict(recv_all(p, lease, 2))  # the refusal and the fast env's step
    assert got[slow]['kind'] == 'input' and 'in flight' in got[slow]['error']
    assert got[fast][0][0] == 1
    (env_id, result), = recv_all(p, lease, 1)  # then the slow env's own step
    assert env_id == slow and len(result) == 5


def test_a_refused_post_wakes_a_waiting_recv_and_a_malformed_one_is_raised_by_the_next_recv(
        thread_farm, watch_mode):
    f = thread_farm()
    sender, receiver = f.proxy(), f.proxy()
    lease = sender.open_lease(30)
    env_id = make(sender, lease, 1)[0]
    sender.reset(lease, [env_id])
    got = []
    waiting = threading.Thread(target=lambda: got.append(receiver.recv(lease, 1, 30, True)))
    waiting.start()
    wait_until_receiving(f, lease)
    sender.post(lease, [env_id], [[0.5, 0.5, 0.5]])  # a wrong action size: refused
    waiting.join(30)
    (refused_id, error), = got[0]
    assert refused_id == env_id and error['kind'] == 'input', error
    sender.post(lease, [env_id, env_id], [GOOD, GOOD])  # an id twice: the whole call is wrong
    with pytest.raises(ValueError, match='more than once'):
        recv_all(receiver, lease, 1)
    sender.post(lease, [env_id], [GOOD])  # the lease goes on
    assert recv_all(receiver, lease, 1)[0][0] == env_id


def waiting_recvs(f, lease, proxies):
    """A thread per proxy in recv(wait=True) on ``lease``, returned once the farm counts them all
    receiving."""
    threads = [threading.Thread(target=p.recv, args=(lease, 1, None, True), daemon=True)
               for p in proxies]
    for t in threads:
        t.start()
    deadline = time.time() + 20
    while f.farm.ledger.get(lease).receiving < len(proxies) and time.time() < deadline:
        time.sleep(0.01)
    return threads


def test_overlapping_recvs_each_get_different_results_and_all_of_them(thread_farm, watch_mode):
    """Two recvs waiting on one lease at once (a far learner keeps one waiting while the other's
    answer travels): every result is handed over exactly once, and an ended lease wakes both."""
    f = thread_farm(capacity=6)
    sender, first, second = f.proxy(), f.proxy(), f.proxy()
    lease = sender.open_lease(30)
    ids = make(sender, lease, 6, episode_length=100)
    sender.reset(lease, ids)
    got = {'first': [], 'second': []}
    stop = threading.Event()

    def receive(proxy, into):
        while not stop.is_set():
            into.extend(proxy.recv(lease, 1, 0.5, True))

    threads = [threading.Thread(target=receive, args=(first, got['first']), daemon=True),
               threading.Thread(target=receive, args=(second, got['second']), daemon=True)]
    for t in threads:
        t.start()
    try:
        for rounds in range(20):  # each env stepped 20 times, its next step sent on its result
            sender.post(lease, ids, [GOOD] * len(ids))
            deadline = time.time() + 30
            while len(got['first']) + len(got['second']) < 6 * (rounds + 1):
                assert time.time() < deadline, got
                time.sleep(0.001)
    finally:
        stop.set()
    for t in threads:
        t.join(30)
    results = got['first'] + got['second']
    assert len(results) == 120
    for env_id in ids:  # each env's steps, each exactly once: CheapEnv's t counts them
        ts = sorted(r[0][0] for e, r in results if e == env_id)
        assert ts == list(range(1, 21)), (env_id, ts)
    # An ended lease wakes every recv waiting on it.
    waiting = waiting_recvs(f, lease, (first, second))
    sender.close_lease(lease)
    for t in waiting:
        t.join(10)
        assert not t.is_alive()


def test_an_ended_lease_wakes_its_recvs_however_late_the_end_is_recorded(thread_farm, watch_mode,
                                                                        monkeypatch):
    """Every recv waiting on a lease returns when the lease ends, even when the waiters wake
    from the end's nudge before the farm's closing thread goes on: they must find the lease
    ended then, or sleep on with no nudge left to come (it used to record the end after the
    nudge; this widens that window to a certainty)."""
    nudge = books.Watch.nudge

    def nudge_then_pause(watch):
        nudge(watch)
        time.sleep(0.3)  # the woken recvs look at the lease meanwhile

    f = thread_farm(capacity=2)
    closer, first, second = f.proxy(), f.proxy(), f.proxy()
    lease = closer.open_lease(30)
    make(closer, lease, 2)
    waiting = waiting_recvs(f, lease, (first, second))
    time.sleep(0.1)  # both asleep in the wait itself, not on their way to it
    monkeypatch.setattr(books.Watch, 'nudge', nudge_then_pause)
    closer.close_lease(lease)
    for t in waiting:
        t.join(10)
        assert not t.is_alive()


@pytest.mark.slow
def test_a_recv_with_linger_waits_for_results_due_soon(thread_farm, watch_mode):
    """With its first result in hand, recv(linger=S) waits up to S for environments whose last
    step took about as long as theirs is taking (through a far link, a result that just misses
    an answer waits a whole round trip more); without linger it answers at once."""
    f = thread_farm()
    p = f.proxy()
    lease = p.open_lease(30)
    fast = make(p, lease, 1, 'SlowEnv', step_seconds=0.0, obs_size=3, act_size=2)[0]
    slow = make(p, lease, 1, 'SlowEnv', step_seconds=0.3, obs_size=3, act_size=2)[0]
    p.reset(lease, [fast, slow])
    for linger, expected in ((0.0, [[fast], [slow]]), (1.0, [[fast, slow]])):
        p.send(lease, [fast, slow], [GOOD, GOOD])  # (the first round teaches the step times)
        got = []
        while sum(len(g) for g in got) < 2:
            got.append([env_id for env_id, _ in p.recv(lease, 1, 30, False, linger)])
        assert got == expected, (linger, got)
    with pytest.raises(Exception, match='linger'):
        p.recv(lease, 1, 0, False, 5)


def test_packed_observations_and_actions_equal_the_list_ones(thread_farm):
    p = thread_farm(capacity=4).proxy()
    plain, packed = p.open_lease(30), p.open_lease(30, True)
    kwargs = dict(episode_length=2, obs_size=5, act_size=3)
    plain_ids, packed_ids = make(p, plain, 2, **kwargs), make(p, packed, 2, **kwargs)

    def obs(value):
        array = wire.unpack(value)
        assert array.dtype == np.float32 and array.ndim == 1
        return array.tolist()

    want = p.reset(plain, plain_ids, [3, 4])
    assert [obs(o) for o in p.reset(packed, packed_ids, [3, 4])] == want
    actions = np.array([[0.1, 0.2, 0.3], [0.7, 0.8, 0.9]])
    for step in range(3):
        want = p.step(plain, plain_ids, actions.tolist(), True)
        if step % 2:  # lockstep, packed actions of another float dtype
            have = p.step(packed, packed_ids, wire.pack(actions.astype(np.float32)), True)
        else:
            p.send(packed, packed_ids, wire.pack(actions))
            have = [r for _, r in sorted(recv_all(p, packed, 2))]
        for w, h in zip(want, have):
            assert obs(h[0]) == w[0] and h[1:4] == pytest.approx(w[1:4], rel=1e-6)
            if 'terminal_observation' in w[4]:
                assert obs(h[4]['terminal_observation']) == w[4]['terminal_observation']
    # send_reset on a packed lease: packed too; a list of actions still works there.
    p.send_reset(packed, packed_ids[:1], [9])
    assert obs(recv_all(p, packed, 1)[0][1]) == [0.0] + [9.0] * 4
    assert len(p.step(packed, packed_ids[:1], [[0.5, 0.5, 0.5]])[0]) == 5
    # Malformed packed actions: refused as a whole, naming what is wrong.
    with pytest.raises(ValueError, match=r'packed actions of shape \(2, action size\)'):
        p.send(packed, packed_ids, wire.pack(np.zeros((3, 3))))
    with pytest.raises(ValueError, match='float dtype'):
        p.step(packed, packed_ids, wire.pack(np.zeros((2, 3), np.int64)))
    bad = wire.pack(np.zeros((2, 3)))
    bad['data'] = bad['data'][:-1]
    with pytest.raises(ValueError, match='needs 48 bytes'):
        p.send(packed, packed_ids, bad)


@pytest.mark.slow
def test_release_and_close_lease_with_envs_in_flight_leave_no_process(thread_farm):
    p = thread_farm().proxy()
    lease = p.open_lease(30)
    ids = make(p, lease, 3, 'SlowEnv', step_seconds=5.0, obs_size=3, act_size=2)
    p.reset(lease, ids)
    pids = [int(pid) for pid in p.worker_pids(lease).values()]
    p.send(lease, ids, [GOOD] * 3)
    # Release one while it is in flight, then close the lease with the rest in flight.
    assert p.release(lease, ids[:1])
    deadline = time.time() + 10
    while alive(pids[0]) and time.time() < deadline:
        time.sleep(0.05)
    assert not alive(pids[0])
    assert p.close_lease(lease)
    deadline = time.time() + 10
    while any(alive(pid) for pid in pids) and time.time() < deadline:
        time.sleep(0.05)
    assert not any(alive(pid) for pid in pids)
    assert p.info()['in_use'] == 0
    with pytest.raises(LookupError, match='no such lease'):
        p.recv(lease)


@pytest.mark.slow
def test_closing_a_lease_wakes_its_waiting_recv(thread_farm, watch_mode):
    f = thread_farm()
    p, receiver = f.proxy(), f.proxy()
    lease = p.open_lease(30)
    ids = make(p, lease, 2, 'SlowEnv', step_seconds=5.0, obs_size=3, act_size=2)
    p.reset(lease, ids)
    pids = [int(pid) for pid in p.worker_pids(lease).values()]
    p.send(lease, ids, [GOOD] * 2)
    got = []
    waiting = threading.Thread(target=lambda: got.append(receiver.recv(lease, 2, 60)))
    waiting.start()
    wait_until_receiving(f, lease)
    assert p.close_lease(lease)
    waiting.join(30)
    assert not waiting.is_alive() and got == [[]]  # woke with nothing: they were dropped
    deadline = time.time() + 10
    while any(alive(pid) for pid in pids) and time.time() < deadline:
        time.sleep(0.05)
    assert not any(alive(pid) for pid in pids)


def test_recv_hands_over_every_result_already_there_in_one_answer(thread_farm, watch_mode):
    f = thread_farm()
    p = f.proxy()
    lease = p.open_lease(30)
    ids = make(p, lease, 3)
    p.reset(lease, ids)
    p.send(lease, ids, [GOOD] * 3)
    pipes = [f.farm.ledger.slot(i).worker.conn for i in ids]
    deadline = time.time() + 20
    while time.time() < deadline and not all(pipe.poll(0) for pipe in pipes):
        time.sleep(0.05)  # until every answer waits in its pipe (polling does not take it)
    got = p.recv(lease, 1, 10)
    assert sorted(i for i, _ in got) == sorted(ids)


@pytest.mark.slow
def test_lockstep_calls_on_other_envs_of_the_lease_go_on_beside_async_ones(thread_farm):
    f = thread_farm()
    p, q = f.proxy(), f.proxy()
    lease = p.open_lease(30)
    slow = make(p, lease, 1, 'SlowEnv', step_seconds=3.0, obs_size=3, act_size=2)[0]
    fast = make(p, lease, 1)[0]
    p.reset(lease, [slow, fast])
    stepped = []
    lockstep = threading.Thread(target=lambda: stepped.append(q.step(lease, [slow], [GOOD])))
    lockstep.start()  # a lockstep step of 3 s on one connection...
    deadline = time.time() + 20
    while f.farm.ledger.slot(slow).busy is None and time.time() < deadline:
        time.sleep(0.01)
    for k in range(3):  # ...while the other environment goes round on another
        assert p.send(lease, [fast], [GOOD]) == [None]
        assert recv_all(p, lease, 1)[0][0] == fast
        assert lockstep.is_alive()
    # The env the lockstep call holds is refused meanwhile, as an env in flight is.
    refused = p.send(lease, [slow], [GOOD])[0]
    assert refused['kind'] == 'input' and 'busy with another call' in refused['error']
    lockstep.join(30)
    assert len(stepped[0][0]) == 5


@pytest.mark.slow
def test_leases_that_stepped_asynchronously_leave_no_file_descriptor_behind(thread_farm):
    """Each lease's Watch holds a pipe and an epoll descriptor: closed with the lease, also when
    a recv was waiting as it closed."""
    f = thread_farm()
    p, receiver = f.proxy(), f.proxy()
    p.info()
    receiver.info()  # both connections open before counting

    def open_fds():
        return len(os.listdir('/proc/self/fd'))

    def one_lease(close_while_waiting):
        lease = p.open_lease(30)
        ids = make(p, lease, 2)
        p.reset(lease, ids)
        p.send(lease, ids, [GOOD] * 2)
        recv_all(p, lease, 2)
        if close_while_waiting:
            slow = make(p, lease, 1, 'SlowEnv', step_seconds=5.0, obs_size=3, act_size=2)
            p.reset(lease, slow)
            p.send(lease, slow, [GOOD])
            waiting = threading.Thread(target=lambda: receiver.recv(lease, 1, 30))
            waiting.start()
            wait_until_receiving(f, lease)
            p.close_lease(lease)
            waiting.join(30)
        else:
            p.close_lease(lease)

    one_lease(False)  # (the first workers start the forkserver: its descriptors stay)
    before = open_fds()
    for close_while_waiting in (False, True, False, True):
        one_lease(close_while_waiting)
    assert open_fds() == before


@pytest.mark.slow
def test_a_farm_stopped_with_envs_in_flight_and_a_recv_waiting_leaves_no_process(process_farm):
    import Pyro4
    from conftest import descendants_alive
    f = process_farm(capacity=3)
    sender, receiver = (Pyro4.Proxy(protocol.uri('127.0.0.1', f.port)) for _ in range(2))
    for proxy in (sender, receiver):
        proxy._pyroSerializer = 'msgpack'
    lease = sender.open_lease(30, True)
    ids = make(sender, lease, 3, 'SlowEnv', step_seconds=30.0, obs_size=3, act_size=2)
    sender.reset(lease, ids)
    assert sender.send(lease, ids, wire.pack(np.full((3, 2), 0.5))) == [None] * 3
    receiver._pyroBind()  # connected (and its metadata fetched) before the thread calls
    waiting = threading.Thread(target=_quietly, args=(lambda: receiver.recv(lease, 3, 60),))
    waiting.start()
    time.sleep(0.5)  # (most likely waiting by now; what is asserted holds either way)
    assert len(descendants_alive(f.process.pid)) >= 4  # the farm, its workers (+forkserver)
    log = f.stop()
    waiting.join(30)
    assert f.process.returncode == 0, log
    deadline = time.time() + 10
    while descendants_alive(f.process.pid) and time.time() < deadline:
        time.sleep(0.1)
    assert descendants_alive(f.process.pid) == [], log
    assert 'stopped; all workers killed' in log


def _quietly(call):
    try:
        return call()
    except Exception:  # the farm went away under it: what this test does
        return None
