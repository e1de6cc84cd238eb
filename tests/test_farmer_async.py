"""FarmVecEnv's asynchronous mode (send/recv): vecenv/contract.py's contract checks (tests/test_vecenv.py)
on one and on two farms, a slow environment that holds no other, lost workers, a farm killed
mid-flight, a lease the farm forgot, close with environments in flight, and the protocol check.
Orders and ids are asserted, never timings."""
import os
import signal
import time

import numpy as np
import pytest

from common import errors
import farm
from farmside import core
import farmer
from common import protocol
from conftest import ThreadFarm
from host import settings
from test_vecenv import CONTRACT_CHECKS, _recv_all
from vecenv.contract import env_ids_of


def make_farmer(farms, **kwargs):
    return farmer.Farmer(farms=[('127.0.0.1', capacity, f.port) for f, capacity in farms],
                         start_local=False, **kwargs)


class Owned(object):
    """A vector env that closes its farmer with it (the contract checks only close the env)."""

    def __init__(self, fm, env):
        self.fm, self.env = fm, env

    def __getattr__(self, name):
        return getattr(self.env, name)

    def close(self):
        self.env.close()
        self.fm.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@pytest.fixture(params=['one farm', 'two farms'])
def make_farm_vec(request, thread_farm):
    def make(n_envs, **env_kwargs):
        if request.param == 'one farm':
            farms = [(thread_farm(capacity=n_envs), n_envs)]
        else:  # the environments spread over both: results come from two receivers
            half = (n_envs + 1) // 2
            farms = [(thread_farm(capacity=half), half), (thread_farm(capacity=half), half)]
        fm = make_farmer(farms)
        return Owned(fm, fm.vec_env('CheapEnv', n_envs, env_kwargs))
    return make


@pytest.mark.parametrize('check', CONTRACT_CHECKS, ids=lambda check: check.__name__[6:])
@pytest.mark.slow
def test_farm_vec_env_meets_the_contract(check, make_farm_vec):
    check(make_farm_vec)


def test_two_farms_serve_one_vector_env(thread_farm):
    a, b = thread_farm(capacity=2), thread_farm(capacity=2)
    with make_farmer([(a, 2), (b, 2)]) as fm:
        env = fm.vec_env('CheapEnv', 4, {'episode_length': 100})
        assert sorted(p.link.port for p in env.places) == sorted([a.port] * 2 + [b.port] * 2)
        env.async_reset(seed=0)
        results, _ = _recv_all(env)
        assert sorted(results) == [0, 1, 2, 3]
        for t in range(1, 4):
            env.send(np.full((4, 2), 0.5), [3, 1, 0, 2])
            results, _ = _recv_all(env)
            assert [results[i][0][:2].tolist() for i in range(4)] == [[t, i + t] for i in range(4)]


@pytest.mark.slow
def test_a_slow_environment_holds_no_other(thread_farm):
    """Env 0 steps for 60 s; the other three step again and again meanwhile. Then close() with
    env 0 still in flight gives everything back."""
    f = thread_farm(capacity=4)
    fm = make_farmer([(f, 4)])
    env = fm.vec_env('SlowEnv', 4, {'step_seconds': 0.0, 'obs_size': 5, 'act_size': 2})
    env.set_params({'step_seconds': 60.0}, [0])  # at its next reset
    env.async_reset(seed=1)
    _recv_all(env)
    env.send(np.full((4, 2), 0.5), [0, 1, 2, 3])
    got = []
    for _ in range(5):
        while len(got) < 3:
            got += env_ids_of(env.recv(timeout=30)[4]).tolist()
        assert sorted(got) == [1, 2, 3]
        assert env.in_flight == 1
        env.send(np.full((3, 2), 0.5), [1, 2, 3])
        got = []
    assert env.in_flight == 4
    env.close()
    info = f.proxy().info()
    assert info['in_use'] == 0 and info['leases'] == 0
    fm.close()


def _pid_of(f, env, i):
    place = env.places[i]
    return int(f.proxy().worker_pids(place.lease)[str(place.env_id)])


def test_a_lost_worker_comes_back_lost_and_reset_and_the_others_flow(thread_farm):
    f = thread_farm(capacity=3)
    with make_farmer([(f, 3)]) as fm:
        env = fm.vec_env('CheapEnv', 3, {'episode_length': 100})
        env.async_reset(seed=0)
        _recv_all(env)
        env.send(np.full((3, 2), 0.5), [0, 1, 2])
        _recv_all(env)
        last = env.last_obs[1].copy()
        place = env.places[1]
        os.kill(_pid_of(f, env, 1), signal.SIGKILL)
        time.sleep(0.2)
        env.send(np.full((3, 2), 0.5), [0, 1, 2])
        results, _ = _recv_all(env)
        obs, reward, terminated, truncated, info = results[1]
        assert truncated and not terminated and reward == 0.0
        assert info['lost_cause'] == 'worker' and 'env %d' % place.env_id in info['lost']
        assert info['terminal_observation'].tolist() == last.tolist()
        assert info['episode'] == {'r': 0.0, 'l': 2}  # the lost step counts, as in lockstep
        assert obs[0] == 0  # the new episode's first observation
        assert [results[i][0][0] for i in (0, 2)] == [2, 2] and 'lost' not in results[0][4]
        env.send(np.full((3, 2), 0.5), [0, 1, 2])
        results, _ = _recv_all(env)
        assert [results[i][0][0] for i in range(3)] == [3, 1, 3]


@pytest.mark.slow
def test_a_farm_killed_mid_flight_its_envs_come_back_lost_and_rebuilt(process_farm):
    a, b = process_farm(capacity=2), process_farm(capacity=2)
    with farmer.Farmer(farms=[('127.0.0.1', 2, a.port), ('127.0.0.1', 2, b.port)],
                       start_local=False) as fm:
        env = fm.vec_env('SlowEnv', 4, {'step_seconds': 0.0, 'obs_size': 5, 'act_size': 2})
        on_b = [i for i, p in enumerate(env.places) if p.link.port == b.port]
        on_a = [i for i in range(4) if i not in on_b]
        assert len(on_b) == 2
        # b's are still stepping when it dies (and step so, rebuilt on a, in the last round)
        env.set_params({'step_seconds': 5.0}, on_b)
        env.async_reset(seed=0)
        _recv_all(env)
        last = env.last_obs.copy()
        env.send(np.full((4, 2), 0.5), [0, 1, 2, 3])
        got = []
        while len(got) < 2:
            got += env_ids_of(env.recv(timeout=30)[4]).tolist()
        assert sorted(got) == on_a  # a's come back; b's are in flight
        os.killpg(b.process.pid, signal.SIGKILL)
        b.process.wait()
        env.send(np.full((2, 2), 0.5), on_a)  # a's keep flowing meanwhile
        results, _ = _recv_all(env)
        assert sorted(results) == [0, 1, 2, 3]
        for i in on_b:
            obs, reward, terminated, truncated, info = results[i]
            assert truncated and not terminated and info['lost_cause'] == 'farm'
            assert str(b.port) in info['lost']
            assert info['terminal_observation'].tolist() == last[i].tolist()
        for i in on_a:
            assert 'lost' not in results[i][4]
        assert {p.link.port for p in env.places} == {a.port}
        env.send(np.full((4, 2), 0.5), [0, 1, 2, 3])
        results, _ = _recv_all(env)
        assert sorted(results) == [0, 1, 2, 3] and not any(
            'lost' in results[i][4] for i in range(4))


@pytest.mark.slow
def test_a_lease_the_farm_forgot_in_flight_or_between_steps(thread_farm):
    f = thread_farm(capacity=4)
    with make_farmer([(f, 4)]) as fm:
        env = fm.vec_env('SlowEnv', 2, {'step_seconds': 0.0, 'obs_size': 5, 'act_size': 2})
        env.set_params({'step_seconds': 60.0}, [1])
        env.async_reset(seed=0)
        _recv_all(env)
        env.send(np.full((2, 2), 0.5), [0, 1])
        assert env_ids_of(env.recv(timeout=30)[4]).tolist() == [0]
        f.farm.close_lease(env.places[1].lease)  # as if expired while this learner slept
        results, _ = _recv_all(env)
        assert results[1][4]['lost_cause'] == 'lease' and results[1][3]
        assert f.proxy().info()['leases'] == 1  # the new lease only
        # env 0 was between steps in that lease: it is lost at its next send
        env.send(np.full((1, 2), 0.5), [0])
        results, _ = _recv_all(env)
        assert results[0][4]['lost_cause'] == 'lease' and results[0][3]
        env.send(np.full((1, 2), 0.5), [0])
        results, _ = _recv_all(env)
        assert 'lost' not in results[0][4] and not results[0][3]
        assert f.proxy().info()['leases'] == 1 and f.proxy().info()['in_use'] == 2


def test_reset_collects_what_is_in_flight_and_close_leaves_no_lease(thread_farm):
    f = thread_farm(capacity=2)
    with make_farmer([(f, 2)]) as fm:
        env = fm.vec_env('CheapEnv', 2, {'episode_length': 100})
        env.async_reset(seed=0)  # nothing received yet: both in flight
        assert env.in_flight == 2
        obs = env.reset(seed=5)
        assert env.in_flight == 0 and obs[:, 1].tolist() == [5, 6]
        env.async_reset(seed=0)
        _recv_all(env)
        env.send(np.full((2, 2), 0.5), [0, 1])
        env.close()
        info = f.proxy().info()
        assert info['in_use'] == 0 and info['leases'] == 0


@pytest.fixture
def old_farm(monkeypatch):
    """A farm that speaks the previous farm protocol."""
    with monkeypatch.context() as m:
        m.setattr(core, 'PROTOCOL', protocol.PROTOCOL - 1)
        f = ThreadFarm(capacity=2)
    yield f
    f.close()


def test_a_farm_of_another_protocol_is_one_clear_line(old_farm):
    with pytest.raises(errors.ProtocolMismatchError) as caught:
        make_farmer([(old_farm, 2)])
    text = str(caught.value)
    assert 'farm protocol %d, this learner %d' % (protocol.PROTOCOL - 1, protocol.PROTOCOL) in text and '\n' not in text
    assert '127.0.0.1:%d' % old_farm.port in text


def test_a_farm_of_another_protocol_beside_good_ones_is_marked_unusable(old_farm, thread_farm,
                                                                       capsys):
    good = thread_farm(capacity=2)
    with make_farmer([(old_farm, 2), (good, 2)]) as fm:
        status = fm.status()
        assert not status[0]['up'] and 'farm protocol %d' % (protocol.PROTOCOL - 1) in status[0]['error']
        assert status[1]['up']
        env = fm.vec_env('CheapEnv', 2, {})
        assert {p.link.port for p in env.places} == {good.port}
        farmer.print_status(status)
    assert 'farm protocol %d, this learner %d' % (protocol.PROTOCOL - 1, protocol.PROTOCOL) in capsys.readouterr().out


def test_settings_take_the_shared_names_from_wire():
    from common import wire
    assert (settings.DEFAULT_PORT, settings.KEY_ENV, settings.TLS_CA_ENV) == (
        protocol.DEFAULT_PORT, protocol.KEY_ENV, protocol.TLS_CA_ENV)


@pytest.mark.slow
def test_envs_displaced_by_a_lost_farm_move_back_when_it_answers_again(process_farm,
                                                                       monkeypatch):
    """As in lockstep: after b comes back, the environments that took over its work (above a's
    capacity) move there, between their step's result and its delivery: that step's outcome
    stands, then the episode is cut (truncated, info['moved'])."""
    monkeypatch.setattr(settings, 'RETRY_EVERY', 0.5)
    monkeypatch.setattr(settings, 'KEEPALIVE_EVERY', 0.3)
    a, b = process_farm(capacity=2), process_farm(capacity=2)
    with farmer.Farmer(farms=[('127.0.0.1', 2, a.port), ('127.0.0.1', 2, b.port)],
                       start_local=False) as fm:
        env = fm.vec_env('CheapEnv', 4, {'episode_length': 1000})
        on_b = [i for i, p in enumerate(env.places) if p.link.port == b.port]
        env.async_reset(seed=0)
        _recv_all(env)
        os.killpg(b.process.pid, signal.SIGKILL)
        b.process.wait()
        env.send(np.full((4, 2), 0.5), [0, 1, 2, 3])
        results, _ = _recv_all(env)
        assert sorted(i for i in results if 'lost' in results[i][4]) == on_b
        assert {p.link.port for p in env.places} == {a.port}
        b2 = process_farm(capacity=2, port=b.port)
        link_b = [link for link in fm.links if link.port == b.port][0]
        deadline = time.time() + 30
        while not link_b.up and time.time() < deadline:
            time.sleep(0.1)
        assert link_b.up
        moved = {}
        while len(moved) < 2 and time.time() < deadline:
            before = env.last_obs.copy()
            env.send(np.full((4, 2), 0.5), [0, 1, 2, 3])
            results, _ = _recv_all(env)
            for i, (obs, reward, terminated, truncated, info) in results.items():
                if 'moved' in info:
                    assert truncated and not terminated and reward == -0.0
                    assert str(b.port) in info['moved'] and obs[0] == 0
                    assert info['terminal_observation'][0] == before[i, 0] + 1
                    moved[i] = info
            time.sleep(0.1)
        assert sorted(moved) == on_b
        assert sorted(p.link.port for p in env.places) == sorted([a.port] * 2 + [b.port] * 2)
        assert [link.call('info')['in_use'] for link in fm.links] == [2, 2]
        env.send(np.full((4, 2), 0.5), [0, 1, 2, 3])
        results, _ = _recv_all(env)
        assert not any(results[i][3] for i in range(4))
        b2.stop()


@pytest.mark.slow
def test_with_every_farm_lost_recv_gives_up_after_give_up_after(process_farm, monkeypatch):
    monkeypatch.setattr(settings, 'RETRY_EVERY', 0.5)
    monkeypatch.setattr(settings, 'REPORT_EVERY', 0.5)
    a = process_farm(capacity=2)
    with farmer.Farmer(farms=[('127.0.0.1', 2, a.port)], start_local=False,
                       give_up_after=2.0) as fm:
        env = fm.vec_env('CheapEnv', 2, {'episode_length': 100})
        env.async_reset(seed=0)
        _recv_all(env)
        os.killpg(a.process.pid, signal.SIGKILL)
        a.process.wait()
        env.send(np.full((2, 2), 0.5), [0, 1])
        with pytest.raises(errors.FarmsLostError, match='give up after 2 s'):
            while env.in_flight:
                env.recv(timeout=30)


def test_ctrl_c_in_recv_loses_nothing(thread_farm, monkeypatch):
    """An interrupted recv (Ctrl-C while the learner waits) leaves the results where they were:
    the next recv hands every one over."""
    f = thread_farm(capacity=2)
    with make_farmer([(f, 2)]) as fm:
        env = fm.vec_env('CheapEnv', 2, {'episode_length': 100})
        env.async_reset(seed=0)
        _recv_all(env)
        env.send(np.full((2, 2), 0.5), [0, 1])
        real_get = env.async_mode.events.get
        calls = []

        def interrupted(*args, **kwargs):
            if not calls:
                calls.append(1)
                raise KeyboardInterrupt
            return real_get(*args, **kwargs)
        monkeypatch.setattr(env.async_mode.events, 'get', interrupted)
        with pytest.raises(KeyboardInterrupt):
            env.recv(batch_size=2)
        results, _ = _recv_all(env)
        assert sorted(results) == [0, 1] and [results[i][0][0] for i in (0, 1)] == [1, 1]


def test_an_unexpected_receiver_failure_is_raised_once_and_nothing_is_lost(thread_farm,
                                                                           monkeypatch):
    f = thread_farm(capacity=2)
    with make_farmer([(f, 2)]) as fm:
        env = fm.vec_env('CheapEnv', 2, {'episode_length': 100})
        env.async_reset(seed=0)
        _recv_all(env)
        link = fm.links[0]
        real_call = link.call
        failures = []

        def call(method, *args, **kwargs):
            if method == 'recv' and not failures:
                failures.append(method)
                raise ValueError('a bug of ours')
            return real_call(method, *args, **kwargs)
        monkeypatch.setattr(link, 'call', call)
        env.send(np.full((2, 2), 0.5), [0, 1])
        with pytest.raises(ValueError, match='a bug of ours'):
            _recv_all(env)
        results, _ = _recv_all(env)  # a new receiver took over what was in flight
        assert sorted(results) == [0, 1] and [results[i][0][0] for i in (0, 1)] == [1, 1]


@pytest.mark.slow
def test_a_worker_stuck_in_flight_comes_back_lost_after_the_step_timeout(thread_farm):
    """The farm's recv answers 'lost' for a step past its step timeout (worker replaced); the
    learner resets it through send_reset and hands over the lost result with the first
    observation of the next episode."""
    f = thread_farm(capacity=2, step_timeout=1.0)
    with make_farmer([(f, 2)]) as fm:
        env = fm.vec_env('CheapEnv', 2, {'episode_length': 100, 'hang_after': 2})
        env.async_reset(seed=0)
        _recv_all(env)
        for t in (1, 2):
            env.send(np.full((2, 2), 0.5), [0, 1])
            results, _ = _recv_all(env)
            assert [results[i][0][0] for i in (0, 1)] == [t, t]
        env.send(np.full((2, 2), 0.5), [0, 1])  # the third step hangs
        results, _ = _recv_all(env)
        for i in (0, 1):
            obs, reward, terminated, truncated, info = results[i]
            assert truncated and not terminated and info['lost_cause'] == 'worker'
            assert info['terminal_observation'][0] == 2 and obs[0] == 0
            assert info['episode']['l'] == 3
        env.send(np.full((2, 2), 0.5), [0, 1])  # the replacements step (and hang later)
        results, _ = _recv_all(env)
        assert [results[i][0][0] for i in (0, 1)] == [1, 1]


def test_send_does_not_wait_for_the_farms_answer(process_farm):
    """send hands the call to the farm's call thread and returns: through a far link the round
    trip overlaps the learner's work (it used to wait for the farm's answer in the learner's
    thread, halving env steps/s through a 20 ms link). Shown with a frozen farm: send returns
    while the farm cannot answer, and the step's result comes once it thaws."""
    f = process_farm(capacity=2)
    with farmer.Farmer(farms=[('127.0.0.1', 2, f.port)], start_local=False) as fm:
        env = fm.vec_env('CheapEnv', 2, {'episode_length': 100})
        env.async_reset(seed=0)
        _recv_all(env)
        os.kill(f.process.pid, signal.SIGSTOP)
        try:
            started = time.time()
            env.send(np.full((2, 2), 0.5), [0, 1])
            returned_after = time.time() - started
        finally:
            os.kill(f.process.pid, signal.SIGCONT)
        assert returned_after < 5.0  # the farm's answer would have taken until it thawed
        assert env.in_flight == 2
        results, _ = _recv_all(env)
        assert sorted(results) == [0, 1]
        assert all(results[i][0][0] == 1 and 'lost' not in results[i][4] for i in results)
