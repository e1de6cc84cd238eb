"""farmer.py: the vectorized env over farms (checked against the in-process reference), the wire,
lost farms, the embedded local farm, and the errors a user sees."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from common import errors
import farmer
from conftest import ROOT, descendants_alive, free_port, made_then_finished, wait_until
from host import settings
from vecenv.contract import InProcessVecEnv


def farm_vec(farms, name, n, kwargs):
    f = farmer.Farmer(farms=farms, start_local=False)
    env = f.vec_env(name, n, kwargs)
    original_close = env.close

    def close():
        original_close()
        f.close()
    env.close = close
    return env


@pytest.fixture(params=['in-process', 'farm'])
def make_vec(request, thread_farm):
    """The same contract checks run against both implementations (as SB3 does for its vec envs)."""
    def make(name, n, **kwargs):
        if request.param == 'in-process':
            return InProcessVecEnv(name, n, kwargs)
        f = thread_farm(capacity=n)
        return farm_vec([('127.0.0.1', n, f.port)], name, n, kwargs)
    yield from made_then_finished(make, lambda env: env.close())


def test_vec_env_contract_terminal_episodes(make_vec):
    env = make_vec('CheapEnv', 3, episode_length=2)
    assert env.num_envs == 3 and env.observation_space.shape == (3,)
    assert env.action_space.shape == (2,)
    obs = env.reset(seed=10)
    assert obs.dtype == np.float32 and obs.tolist() == [[0, 10, 10], [0, 11, 11], [0, 12, 12]]
    obs, rewards, terminated, truncated, infos = env.step(np.full((3, 2), 0.5))
    assert obs[:, 0].tolist() == [1, 1, 1] and not terminated.any() and not truncated.any()
    env.step_async(np.zeros((3, 2)))
    obs, rewards, terminated, truncated, infos = env.step_wait()
    assert terminated.all() and not truncated.any()
    assert np.allclose(rewards, -0.5)
    assert obs[:, 0].tolist() == [0, 0, 0]  # already the next episode
    for i, info in enumerate(infos):
        assert info['terminal_observation'].tolist() == [2, 2 + 10 + i, 2 + 10 + i]
        assert info['episode'] == {'r': -0.5, 'l': 2}


def test_vec_env_contract_a_kwargs_seed_seeds_the_first_reset_env_by_env(make_vec):
    """Regression: a seed among the kwargs went to every environment alike, so all N ran the
    same episodes. It is the first reset's seed: env i gets seed + i, as reset(seed) gives."""
    env = make_vec('CheapEnv', 3, episode_length=2, seed=10)
    assert env.reset().tolist() == [[0, 10, 10], [0, 11, 11], [0, 12, 12]]
    assert env.reset().tolist() == [[0, 0, 0]] * 3  # once: later resets continue unseeded


def test_vec_env_contract_time_limit_is_truncated_not_terminal(make_vec):
    env = make_vec('CheapEnv', 2, episode_length=10, max_episode_steps=1)
    env.reset()
    obs, rewards, terminated, truncated, infos = env.step(np.full((2, 2), 0.5))
    assert truncated.all() and not terminated.any()
    assert infos[0]['terminal_observation'][0] == 1


def test_wire_round_trip_is_exact(thread_farm):
    """Every value crosses as plain data and comes back bit-exact (float64 seeds, inf bounds)."""
    f = thread_farm(capacity=1)
    seed = 123456789
    local = InProcessVecEnv('CheapEnv', 1, {'obs_size': 5})
    remote = farm_vec([('127.0.0.1', 1, f.port)], 'CheapEnv', 1, {'obs_size': 5})
    try:
        assert remote.reset(seed=seed).tolist() == local.reset(seed=seed).tolist()
        assert remote.observation_space == local.observation_space
        assert np.isinf(remote.observation_space.high).all()
        action = np.array([[0.1234567890123, 0.987654321]])
        r1, r2 = remote.step(action), local.step(action)
        assert r1[0].tolist() == r2[0].tolist()
        assert r1[1][0] == r2[1][0]  # float64 reward, exact
        assert r1[4][0] == {'t': 1} == r2[4][0]
        p = f.proxy()
        lease = p.open_lease(10)
        assert isinstance(lease, str)
        info = p.info()
        assert all(isinstance(k, str) for k in info) and isinstance(info['capacity'], int)
    finally:
        remote.close()
        local.close()


def test_bad_actions_are_refused_before_anything_is_sent(thread_farm):
    f = thread_farm(capacity=2)
    env = farm_vec([('127.0.0.1', 2, f.port)], 'CheapEnv', 2, {})
    try:
        env.reset()
        with pytest.raises(ValueError, match=r'non-finite action for vector index \[1\]'):
            env.step(np.array([[0.5, 0.5], [np.nan, 0.5]]))
        with pytest.raises(ValueError, match='expected 2 actions of 2 values'):
            env.step(np.zeros((2, 3)))
        obs = env.step(np.full((2, 2), 0.5))[0]  # nothing was lost: still the first step
        assert obs[:, 0].tolist() == [1, 1]
    finally:
        env.close()


def test_killed_worker_truncates_its_episode_and_training_goes_on(thread_farm):
    f = thread_farm(capacity=2)
    env = farm_vec([('127.0.0.1', 2, f.port)], 'CheapEnv', 2, {})
    try:
        env.reset()
        env.step(np.full((2, 2), 0.5))
        place = env.places[1]
        pids = _pids_of(f, env)
        os.kill(pids[1], signal.SIGKILL)
        time.sleep(0.2)
        obs, rewards, terminated, truncated, infos = env.step(np.full((2, 2), 0.5))
        assert truncated.tolist() == [False, True] and not terminated.any()
        assert 'lost' in infos[1] and 'env %d' % place.env_id in infos[1]['lost']
        assert infos[1]['lost_cause'] == 'worker'
        assert infos[1]['terminal_observation'][0] == 1
        assert obs[:, 0].tolist() == [2, 0]
        obs = env.step(np.full((2, 2), 0.5))[0]
        assert obs[:, 0].tolist() == [3, 1]
    finally:
        env.close()


def _pids_of(f, env):
    pids = []
    p = f.proxy()
    for place in env.places:
        pids.append(int(p.worker_pids(place.lease)[str(place.env_id)]))
    return pids


@pytest.mark.slow
def test_lost_farm_moves_its_envs_to_the_others_and_is_retried(process_farm, monkeypatch):
    monkeypatch.setattr(settings, 'RETRY_EVERY', 0.5)
    monkeypatch.setattr(settings, 'KEEPALIVE_EVERY', 0.3)
    a, b = process_farm(capacity=2), process_farm(capacity=2)
    with farmer.Farmer(farms=[('127.0.0.1', 2, a.port), ('127.0.0.1', 2, b.port)],
                       start_local=False) as f:
        env = f.vec_env('CheapEnv', 4, {'episode_length': 100})
        assert {p.link.port for p in env.places} == {a.port, b.port}
        env.reset()
        env.step(np.full((4, 2), 0.5))
        on_b = [i for i, p in enumerate(env.places) if p.link.port == b.port]
        os.killpg(b.process.pid, signal.SIGKILL)
        b.process.wait()
        obs, rewards, terminated, truncated, infos = env.step(np.full((4, 2), 0.5))
        assert sorted(np.flatnonzero(truncated).tolist()) == on_b
        assert not terminated.any()
        for i in on_b:
            assert 'lost' in infos[i] and str(b.port) in infos[i]['lost']
            assert infos[i]['lost_cause'] == 'farm'
            assert obs[i, 0] == 0
        assert {p.link.port for p in env.places} == {a.port}
        for _ in range(3):
            obs = env.step(np.full((4, 2), 0.5))[0]
        assert obs.shape == (4, 3)
        # The lost farm comes back on the same port and answers the farmer's probes again.
        b2 = process_farm(capacity=2, port=b.port)
        deadline = time.time() + 10
        link_b = [link for link in f.links if link.port == b.port][0]
        while not link_b.up and time.time() < deadline:
            time.sleep(0.2)
        assert link_b.up
        link_a = [link for link in f.links if link.port == a.port][0]
        assert link_a.call('info')['in_use'] == 4  # above its capacity of 2 while b was gone
        # At the next step the environments that took over b's work move back to free capacity:
        # that step's outcome stands, then their episodes are cut (truncated, not terminal).
        before = env.last_obs.copy()
        obs, rewards, terminated, truncated, infos = env.step(np.full((4, 2), 0.5))
        assert sorted(i for i in range(4) if 'moved' in infos[i]) == on_b
        for i in on_b:
            assert truncated[i] and not terminated[i] and rewards[i] == -0.0
            assert str(b.port) in infos[i]['moved'] and obs[i, 0] == 0
            assert infos[i]['terminal_observation'][0] == before[i, 0] + 1
        assert sorted(p.link.port for p in env.places) == sorted([a.port] * 2 + [b.port] * 2)
        assert link_a.call('info')['in_use'] == 2 and link_b.call('info')['in_use'] == 2
        for _ in range(3):
            obs, rewards, terminated, truncated, infos = env.step(np.full((4, 2), 0.5))
        assert not truncated.any()
        assert [obs[i, 0] for i in on_b] == [3.0] * len(on_b)  # fresh episodes, 3 steps in
        b2.stop()


@pytest.mark.slow
def test_embedded_farm_is_started_and_stopped_with_no_process_left():
    port = free_port()
    code = ('import sys\n'
            'import numpy as np, farmer\n'
            'f = farmer.Farmer(farms=[("127.0.0.1", 2, %d)])\n'
            'env = f.vec_env("CheapEnv", 2, {})\n'
            'env.reset(); print("stepped", env.step(np.zeros((2, 2)))[0][:, 0].tolist())\n'
            'print("farm pid", f.local_farm.pid)\n'
            'f.close()\n' % port)
    proc = subprocess.Popen([sys.executable, '-c', code], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT)
    out = proc.communicate(timeout=120)[0].decode()
    assert proc.returncode == 0, out
    assert 'stepped [1.0, 1.0]' in out
    farm_pid = int(out.split('farm pid')[1].split()[0])
    assert wait_until(lambda: descendants_alive(farm_pid) == [])


def test_no_farm_reachable_is_one_clear_error():
    port = free_port()
    with pytest.raises(errors.NoFarmError) as e:
        farmer.Farmer(farms=[('127.0.0.2', 4, port)], start_local=False)
    message = str(e.value)
    assert 'no farm answered' in message and '127.0.0.2:%d' % port in message
    assert 'python farm.py' in message


def test_farmer_needs_the_farms_key(thread_farm):
    f = thread_farm(key='s3cret')
    with pytest.raises(errors.NoFarmError, match='wrong or missing key'):
        farmer.Farmer(farms=[('127.0.0.1', 1, f.port)], key='', start_local=False)
    with farmer.Farmer(farms=[('127.0.0.1', 1, f.port)], key='s3cret') as ok:
        assert ok.status()[0]['up']


def test_status_table_names_every_farm(thread_farm, capsys):
    f = thread_farm(capacity=3)
    down = free_port()
    with farmer.Farmer(farms=[('127.0.0.1', 3, f.port), ('127.0.0.1', 2, down)]) as fm:
        farmer.print_status(fm.status())
    out = capsys.readouterr().out
    assert '127.0.0.1:%d' % f.port in out and '127.0.0.1:%d' % down in out
    assert 'NO' in out and 'yes' in out and '3.11' in out


def test_remote_env_passes_gymnasiums_env_checker(thread_farm):
    from gymnasium.utils.env_checker import check_env
    f = thread_farm(capacity=1)
    with farmer.Farmer(farms=[('127.0.0.1', 1, f.port)], start_local=False) as fm:
        env = fm.env('Pendulum-v1')
        check_env(env, skip_render_check=True)
        obs, info = env.reset(seed=0)
        for _ in range(200):
            obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert truncated and not terminated and obs.shape == (3,)


@pytest.mark.slow
def test_embedded_farm_stops_when_its_learner_is_killed():
    """A learner killed by SIGKILL runs no atexit handler; its local farm must still go."""
    port = free_port()
    code = ('import sys, time\n'
            'import farmer\n'
            'f = farmer.Farmer(farms=[("127.0.0.1", 1, %d)])\n'
            'print("farm pid", f.local_farm.pid, flush=True)\n'
            'time.sleep(600)\n' % port)
    proc = subprocess.Popen([sys.executable, '-c', code], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, cwd=ROOT)
    line = proc.stdout.readline().decode()
    farm_pid = int(line.split('farm pid')[1])
    assert descendants_alive(farm_pid)
    proc.kill()
    proc.wait()
    deadline = time.time() + 15
    while descendants_alive(farm_pid) and time.time() < deadline:
        time.sleep(0.2)
    assert descendants_alive(farm_pid) == []


def connections_to(port):
    """This machine's established TCP connections to ``port`` (the learner's ends)."""
    count = 0
    for table in ('/proc/net/tcp', '/proc/net/tcp6'):
        if not os.path.exists(table):
            continue
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[3] == '01' and int(fields[2].rsplit(':', 1)[1], 16) == port:
                    count += 1
    return count


@pytest.mark.parametrize('far', [False, True])
def test_every_connection_to_a_farm_is_closed_with_the_farmer(thread_farm, monkeypatch, far):
    """Regression: a synchronous step made its call on a connection of the caller's thread, a
    second one per farm, which close() never released. Now one connection per farm per thread
    that uses it (the caller's, the farm's call thread, the asynchronous receiver's threads), all
    closed. A far farm gets settings.RECV_THREADS receiver threads (their recvs overlap), a
    near one one."""
    if far:  # every farm is far
        monkeypatch.setattr(settings, 'FAR_RTT', 0.0)
    f = thread_farm(capacity=2)
    fm = farmer.Farmer(farms=[('127.0.0.1', 2, f.port)], start_local=False)
    env = fm.vec_env('CheapEnv', 2, {'episode_length': 100})
    env.reset()
    env.step(np.full((2, 2), 0.5))          # the caller's thread
    env.step_async(np.full((2, 2), 0.5))    # the farm's call thread
    env.step_wait()
    env.async_reset()                       # the receiver's threads
    while env.in_flight:
        env.recv(timeout=10)
    expected = 2 + (settings.RECV_THREADS if far else 1)
    assert settings.RECV_THREADS > 1
    deadline = time.time() + 10  # (a receiver thread connects at its first recv)
    while connections_to(f.port) < expected and time.time() < deadline:
        time.sleep(0.05)
    assert connections_to(f.port) == expected
    fm.close()
    deadline = time.time() + 10  # threads that end close theirs as they go
    while connections_to(f.port) and time.time() < deadline:
        time.sleep(0.05)
    assert connections_to(f.port) == 0


def test_utilization_leaves_out_idle_evaluation_environments(thread_farm):
    """Regression: test()'s own environment, idle while r trains, counted as used (0.67 -> 1.0)."""
    f = thread_farm(capacity=3)
    with farmer.Farmer(farms=[('127.0.0.1', 3, f.port)], start_local=False) as fm:
        fm.vec_env('CheapEnv', 2, {})
        evaluation = fm.vec_env('CheapEnv', 1, {})
        assert fm.utilization() == 1.0
        assert abs(fm.utilization(idle=[evaluation]) - 2 / 3.0) < 1e-9
