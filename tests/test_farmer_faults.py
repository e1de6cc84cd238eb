"""The learner under faults: farms that freeze (SIGSTOP) shorter and longer than the call timeout,
Ctrl-C during a stall, give_up_after, environments moving back after a revival, leases closed on
every exit path, leases the farm forgot, capacity held by others, refusals that are the user's.
Real farm.py processes where the behaviour is about processes."""
import logging
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import Pyro4

from common import errors
import farm
import farmer
from conftest import ROOT, ThreadFarm
from host import settings


@pytest.fixture
def quick(monkeypatch):
    """Seconds-scale constants so outages fit in a test."""
    monkeypatch.setattr(settings, 'STALL_AFTER', 1.0)
    monkeypatch.setattr(settings, 'REPORT_EVERY', 1.0)
    monkeypatch.setattr(settings, 'PROBE_TIMEOUT', 0.5)
    monkeypatch.setattr(settings, 'RETRY_EVERY', 0.5)
    monkeypatch.setattr(settings, 'MONITOR_EVERY', 0.2)
    monkeypatch.setattr(settings, 'KEEPALIVE_EVERY', 0.5)


def freeze(process_farm, seconds):
    """SIGSTOP the farm and its workers (a frozen machine); SIGCONT after ``seconds``."""
    os.killpg(process_farm.process.pid, signal.SIGSTOP)
    timer = threading.Timer(seconds, os.killpg, (process_farm.process.pid, signal.SIGCONT))
    timer.start()
    return timer


def in_use(port):
    link = farmer.FarmLink('127.0.0.1', 1, port)
    try:
        return link.call('info', timeout=5)['in_use']
    finally:
        link._drop_proxy()


def messages(caplog, level=logging.WARNING):
    return [r.getMessage() for r in caplog.records if r.levelno >= level]


@pytest.mark.slow
def test_a_stall_is_reported_every_few_seconds_and_the_step_completes(process_farm, quick,
                                                                       caplog):
    """Regression: during an outage nothing was said until the learner died. A stall shorter
    than the call timeout now says which farm, for how long and why, and loses nothing."""
    f = process_farm(capacity=2)
    with farmer.Farmer(farms=[('127.0.0.1', 2, f.port)], start_local=False) as fm:
        env = fm.vec_env('CheapEnv', 2, {'episode_length': 100})
        env.reset()
        env.step(np.full((2, 2), 0.5))
        caplog.set_level(logging.WARNING, logger='farmer')
        timer = freeze(f, 4.0)
        obs, rewards, terminated, truncated, infos = env.step(np.full((2, 2), 0.5))
        timer.join()
        assert not truncated.any() and not terminated.any()
        assert obs[:, 0].tolist() == [2, 2]  # nothing lost, nothing rebuilt
        said = [m for m in messages(caplog) if 'no answer to step' in m]
        assert len(said) >= 2, messages(caplog)
        assert '127.0.0.1:%d' % f.port in said[0] and 'nor to a probe' in said[0]


@pytest.mark.slow
def test_a_single_farm_frozen_past_the_call_timeout_the_learner_waits_and_goes_on(
        process_farm, quick, monkeypatch, caplog):
    """Regression: a learner with one farm died 60 s into any outage ('every farm is lost ...
    Start one with python farm.py', the farm running). Now it waits, says so, and goes on when
    the farm answers: environments rebuilt, episodes truncated (lost_cause 'farm'), and the lease
    it held there before is closed, so the farm is not left at twice its load."""
    monkeypatch.setattr(settings, 'CALL_MARGIN', 2.0)  # call timeout: 2 s + 2 s
    f = process_farm(capacity=2, extra=['--step-timeout', '2'])
    with farmer.Farmer(farms=[('127.0.0.1', 2, f.port)], start_local=False) as fm:
        env = fm.vec_env('CheapEnv', 2, {'episode_length': 100})
        env.reset()
        before = env.step(np.full((2, 2), 0.5))[0]
        caplog.set_level(logging.WARNING, logger='farmer')
        timer = freeze(f, 8.0)
        obs, rewards, terminated, truncated, infos = env.step(np.full((2, 2), 0.5))
        timer.join()
        assert truncated.all() and not terminated.any()
        for i in range(2):
            assert infos[i]['lost_cause'] == 'farm' and str(f.port) in infos[i]['lost']
            assert infos[i]['terminal_observation'].tolist() == before[i].tolist()
        assert obs[:, 0].tolist() == [0, 0]  # rebuilt: first observations
        said = messages(caplog)
        assert any('no farm answers (for' in m and '127.0.0.1:%d' % f.port in m
                   for m in said), said
        assert in_use(f.port) == 2  # the stale lease was closed, not left holding 2 more
        for step in range(1, 4):
            obs, rewards, terminated, truncated, infos = env.step(np.full((2, 2), 0.5))
            assert not truncated.any() and obs[:, 0].tolist() == [step, step]


@pytest.mark.slow
def test_give_up_after_ends_with_farms_lost(process_farm, quick):
    f = process_farm(capacity=1)
    with farmer.Farmer(farms=[('127.0.0.1', 1, f.port)], start_local=False,
                       give_up_after=2.0) as fm:
        env = fm.vec_env('CheapEnv', 1, {'episode_length': 100})
        env.reset()
        os.killpg(f.process.pid, signal.SIGSTOP)
        try:
            with pytest.raises(errors.FarmsLostError, match='no farm has answered for'):
                env.step(np.full((1, 2), 0.5))
        finally:
            os.killpg(f.process.pid, signal.SIGCONT)


@pytest.mark.slow
def test_ctrl_c_during_a_stall_interrupts_and_close_returns(process_farm):
    """Regression: Ctrl-C during a stall, then closing, hung until the stuck call timed out
    (call timeout here: 30 + 30 s); now both return at once whatever the farm does."""
    f = process_farm(capacity=2)
    code = ('import sys, time\n'
            'import numpy as np, farmer\n'
            'fm = farmer.Farmer(farms=[("127.0.0.1", 2, %d)], start_local=False)\n'
            'env = fm.vec_env("CheapEnv", 2, {"episode_length": 100})\n'
            'env.reset()\n'
            'print("ready", flush=True)\n'
            'sys.stdin.readline()  # the farm is frozen now\n'
            'try:\n'
            '    env.step_async(np.full((2, 2), 0.5))\n'
            '    env.step_wait()\n'
            '    print("not stalled", flush=True)\n'
            'except KeyboardInterrupt:\n'
            '    print("interrupted", flush=True)\n'
            'fm.close()\n'
            'print("closed", flush=True)\n' % f.port)
    proc = subprocess.Popen([sys.executable, '-c', code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        assert proc.stdout.readline().decode().strip() == 'ready'
        os.killpg(f.process.pid, signal.SIGSTOP)
        proc.stdin.write(b'go\n')
        proc.stdin.flush()
        time.sleep(1.5)
        proc.send_signal(signal.SIGINT)
        out = proc.communicate(timeout=25)[0].decode()  # well before the 60 s call timeout
    finally:
        if proc.poll() is None:
            proc.kill()
        os.killpg(f.process.pid, signal.SIGCONT)
    assert proc.returncode == 0, out
    assert 'interrupted' in out and 'closed' in out, out


@pytest.mark.slow
def test_environments_move_back_after_a_farm_froze_past_the_call_timeout(process_farm, quick,
                                                                         monkeypatch):
    """Regression: after a farm froze longer than the call timeout and came back, its stale
    lease still held its capacity when the move back was tried, once: one farm then ran at 2x
    capacity and the other idled for the rest of the run, while utilization() said 100%."""
    monkeypatch.setattr(settings, 'CALL_MARGIN', 2.0)
    a = process_farm(capacity=2, extra=['--step-timeout', '2'])
    b = process_farm(capacity=2, extra=['--step-timeout', '2'])
    with farmer.Farmer(farms=[('127.0.0.1', 2, a.port), ('127.0.0.1', 2, b.port)],
                       start_local=False) as fm:
        env = fm.vec_env('CheapEnv', 4, {'episode_length': 1000})
        env.reset()
        env.step(np.full((4, 2), 0.5))
        on_b = [i for i, p in enumerate(env.places) if p.link.port == b.port]
        assert len(on_b) == 2
        link_a, link_b = fm.links
        os.killpg(b.process.pid, signal.SIGSTOP)
        infos = env.step(np.full((4, 2), 0.5))[4]
        assert [infos[i].get('lost_cause') for i in on_b] == ['farm', 'farm']
        assert in_use(a.port) == 4 and {p.link.port for p in env.places} == {a.port}
        link_a.refresh()
        assert fm.overcommit() == {link_a.name: 2.0}
        os.killpg(b.process.pid, signal.SIGCONT)
        deadline = time.time() + 30
        while not link_b.up and time.time() < deadline:  # the keep-alive thread probes it
            time.sleep(0.1)
        assert link_b.up
        assert in_use(b.port) == 0  # our lease from before the freeze was closed at once
        link_a.refresh()
        # b answers and idles while a runs 4: half of the answering capacity does full work
        assert fm.utilization() == 0.5
        moved = []
        while len(moved) < 2 and time.time() < deadline:
            infos = env.step(np.full((4, 2), 0.5))[4]
            moved += [i for i in range(4) if 'moved' in infos[i]]
            time.sleep(0.1)
        assert sorted(moved) == on_b
        assert sorted(p.link.port for p in env.places) == sorted([a.port] * 2 + [b.port] * 2)
        assert in_use(a.port) == 2 and in_use(b.port) == 2
        link_a.refresh()
        link_b.refresh()
        assert fm.utilization() == 1.0 and fm.overcommit() == {}


@Pyro4.expose
class RefusingFarm(farm.Farm):
    """A farm that cannot build anything (a missing simulator, say) the first ``refusals``
    times it is asked (for ever by default)."""
    refusals = float('inf')

    def make(self, lease, name, kwargs=None, n=1, overcommit=False):
        if self.refusals <= 0:
            return super(RefusingFarm, self).make(lease, name, kwargs, n, overcommit)
        self.refusals -= 1
        self.renew(lease)  # an unknown lease is still refused as such
        raise ValueError('farm %s: cannot make %s: broken on purpose' % (self.label, name))


def test_a_build_that_fails_part_way_releases_what_was_made(thread_farm, monkeypatch):
    """Regression: the first farm's environments stayed leased (renewed for ever) when the
    second farm could not build; a retry then failed with 'only 2 free'."""
    good = thread_farm(capacity=3)
    with monkeypatch.context() as m:
        m.setattr(farm, 'Farm', RefusingFarm)
        bad = ThreadFarm(capacity=2)
    try:
        with farmer.Farmer(farms=[('127.0.0.1', 3, good.port), ('127.0.0.1', 2, bad.port)],
                           start_local=False) as fm:
            with pytest.raises(errors.UserError, match='broken on purpose'):
                fm.vec_env('CheapEnv', 5)
            info = good.proxy().info()
            assert info['in_use'] == 0 and info['leases'] == 0
            assert fm.leases() == []
    finally:
        bad.close()


def test_a_build_that_failed_part_way_can_be_retried_at_full_size(thread_farm, monkeypatch):
    """The second farm cannot build the environment once (its simulator was being installed,
    say): the first farm's environments are released, and a retry gets all 5 (it failed with
    'only 2 free' when the first attempt's environments stayed leased)."""
    good = thread_farm(capacity=3)
    with monkeypatch.context() as m:
        m.setattr(farm, 'Farm', RefusingFarm)
        bad = ThreadFarm(capacity=2)
    bad.farm.refusals = 1
    try:
        with farmer.Farmer(farms=[('127.0.0.1', 3, good.port), ('127.0.0.1', 2, bad.port)],
                           start_local=False) as fm:
            with pytest.raises(errors.UserError, match='broken on purpose'):
                fm.vec_env('CheapEnv', 5)
            env = fm.vec_env('CheapEnv', 5)
            assert sorted(p.link.port for p in env.places) == sorted(
                [good.port] * 3 + [bad.port] * 2)
            assert env.reset().shape == (5, 3)
            assert [good.proxy().info()['in_use'], bad.proxy().info()['in_use']] == [3, 2]
            # one lease per farm: the vector env's allocation
            assert sorted(link.port for link, _ in env.placement.allocation.leases()) == sorted(
                [good.port, bad.port])
            env.close()
            assert [good.proxy().info()['leases'], bad.proxy().info()['leases']] == [0, 0]
    finally:
        bad.close()


@pytest.mark.parametrize('ending', ['dies during start-up', 'closes at interpreter exit'])
def test_a_learner_process_that_ends_frees_its_leases_at_once(thread_farm, ending):
    """Regression: a learner that died after make (e.g. SAC refusing a Discrete env) kept its
    environments reserved until the lease TTL. And at atexit concurrent.futures refuses new
    work; the leases must be closed all the same, so the capacity is free at once."""
    f = thread_farm(capacity=2)
    code = ('import sys, atexit\n'
            'import farmer\n'
            'fm = farmer.Farmer(farms=[("127.0.0.1", 2, %d)], start_local=False)\n'
            'env = fm.vec_env("CheapEnv", 2, {})\n' % f.port)
    code += ('raise SystemExit("the agent refuses this environment")\n'
             if ending == 'dies during start-up' else 'atexit.register(fm.close)\n')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, timeout=60)
    if ending == 'dies during start-up':
        assert b'refuses' in result.stderr
    else:
        assert result.returncode == 0, result.stderr.decode()
    info = f.proxy().info()
    assert info['in_use'] == 0 and info['leases'] == 0


@pytest.mark.slow
def test_a_lease_the_farm_forgot_is_rebuilt_and_training_goes_on(thread_farm, caplog):
    """Regression: a learner paused past the lease TTL (laptop asleep, debugger) got LookupError
    on every step for ever."""
    f = thread_farm(capacity=2, lease_ttl=3.0)
    with farmer.Farmer(farms=[('127.0.0.1', 2, f.port)], start_local=False) as fm:
        fm.keepalive.renew_all = lambda: None  # as if this process were paused: nothing renews
        env = fm.vec_env('CheapEnv', 2, {'episode_length': 100})
        env.reset()
        before = env.step(np.full((2, 2), 0.5))[0]
        caplog.set_level(logging.WARNING, logger='farmer')
        deadline = time.time() + 10
        while f.proxy().info()['leases'] and time.time() < deadline:
            time.sleep(0.2)
        obs, rewards, terminated, truncated, infos = env.step(np.full((2, 2), 0.5))
        assert truncated.all() and not terminated.any()
        assert [info['lost_cause'] for info in infos] == ['lease', 'lease']
        assert infos[0]['terminal_observation'].tolist() == before[0].tolist()
        assert obs[:, 0].tolist() == [0, 0]
        assert any('no longer knows our lease' in m for m in messages(caplog))
        del fm.keepalive.renew_all  # awake again
        # Rebuilt within capacity: not moved again (episodes cut twice) at the next rounds.
        until = time.time() + 2.5
        t = 0
        while time.time() < until:
            obs, rewards, terminated, truncated, infos = env.step(np.full((2, 2), 0.5))
            t += 1
            assert not truncated.any() and obs[:, 0].tolist() == [t, t], infos
            time.sleep(0.05)
        assert f.proxy().info()['in_use'] == 2


def other_learner(port, n):
    """Another learner's lease holding ``n`` environments (its proxy stays connected)."""
    link = farmer.FarmLink('127.0.0.1', n, port)
    token = link.call('open_lease', 60.0, timeout=5)
    link.call('make', token, 'CheapEnv', {}, n, False, timeout=60)
    return link, token


def test_capacity_held_by_another_learner_is_one_line_saying_so(process_farm):
    f = process_farm(capacity=2)
    link, token = other_learner(f.port, 2)
    try:
        with farmer.Farmer(farms=[('127.0.0.1', 2, f.port)], start_local=False) as fm:
            with pytest.raises(errors.NoCapacityError) as e:
                fm.vec_env('CheapEnv', 2)
    finally:
        link._drop_proxy()
    message = str(e.value)
    assert '\n' not in message
    assert '2 x CheapEnv requested, but the farms that answer have only 0 free' in message
    assert '127.0.0.1:%d: 2 of 2 in use (2 by other learners; the first frees in' % f.port \
        in message


@pytest.mark.slow
def test_capacity_of_a_departed_learner_is_waited_for(process_farm, caplog):
    """A restart right after a learner died is not refused: its capacity frees within seconds
    (the farm's --release-after), and the new learner says so and waits for it."""
    f = process_farm(capacity=2, extra=['--release-after', '2'])
    link, token = other_learner(f.port, 2)
    link._drop_proxy()  # that learner is gone: its connection closed
    caplog.set_level(logging.WARNING, logger='farmer')
    with farmer.Farmer(farms=[('127.0.0.1', 2, f.port)], start_local=False) as fm:
        env = fm.vec_env('CheapEnv', 2)
        assert env.reset().shape == (2, 3)
    assert any('waiting for it' in m for m in messages(caplog)), messages(caplog)


@pytest.mark.parametrize('name, kwargs, says', [
    ('NoSuchEnv-v0', {}, "unknown environment 'NoSuchEnv-v0'"),
    ('CheapEnv', {'no_such_argument': 1}, 'no_such_argument'),
])
def test_a_refusal_that_is_the_users_fault_is_a_user_error(thread_farm, name, kwargs, says):
    f = thread_farm(capacity=2)
    with farmer.Farmer(farms=[('127.0.0.1', 2, f.port)], start_local=False) as fm:
        with pytest.raises(errors.UserError, match=says) as e:
            fm.vec_env(name, 1, kwargs)
        assert '\n' not in str(e.value)
    assert f.proxy().info()['leases'] == 0


def make_certificates(directory):
    """A CA, and a farm certificate it signs for 127.0.0.1 (PEM files), made with openssl."""
    def run(*args):
        subprocess.run(['openssl'] + list(args), cwd=str(directory), check=True,
                       capture_output=True)
    run('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=test CA',
        '-keyout', 'ca.key', '-out', 'ca.pem')
    run('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=127.0.0.1', '-keyout', 'farm.key',
        '-out', 'farm.csr')
    (directory / 'san.cnf').write_text('subjectAltName = IP:127.0.0.1\n')
    run('x509', '-req', '-in', 'farm.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key',
        '-CAcreateserial', '-days', '2', '-extfile', 'san.cnf', '-out', 'farm.pem')
    return [str(directory / name) for name in ('ca.pem', 'farm.pem', 'farm.key')]


def learner(port, tls_ca_env):
    """A learner process (Pyro4's SSL settings are process-wide) stepping a farm once."""
    code = ('import sys\n'
            'import numpy as np, farmer\nfrom common import errors\n'
            'try:\n'
            '    fm = farmer.Farmer(farms=[("127.0.0.1", 1, %d)], start_local=False)\n'
            'except errors.NoFarmError as e:\n'
            '    print("NoFarmError:", e); sys.exit(3)\n'
            'env = fm.vec_env("CheapEnv", 1, {})\n'
            'env.reset(); print("stepped", env.step(np.zeros((1, 2)))[0][:, 0].tolist())\n'
            'fm.close()\n' % port)
    env = dict(os.environ)
    env.pop(farmer.TLS_CA_ENV, None)
    env.update(tls_ca_env)
    return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          timeout=60, env=env, cwd=ROOT)


@pytest.mark.skipif(not any(os.access(os.path.join(d, 'openssl'), os.X_OK)
                            for d in os.environ.get('PATH', '').split(os.pathsep)),
                    reason='needs the openssl command to make a test certificate')
@pytest.mark.slow
def test_a_learner_with_the_ca_talks_to_a_tls_farm(process_farm, tmp_path):
    ca, cert, key = make_certificates(tmp_path)
    f = process_farm(capacity=1, extra=['--tls-cert', cert, '--tls-key', key])
    ok = learner(f.port, {farmer.TLS_CA_ENV: ca})
    assert ok.returncode == 0 and 'stepped [1.0]' in ok.stdout, ok.stdout + ok.stderr
    plain = learner(f.port, {})
    assert plain.returncode == 3 and 'set FARM_TLS_CA' in plain.stdout, plain.stdout
    (tmp_path / 'other').mkdir()
    other_ca = make_certificates(tmp_path / 'other')[0]  # a CA that did not sign the farm's
    wrong = learner(f.port, {farmer.TLS_CA_ENV: other_ca})
    assert wrong.returncode == 3 and 'TLS failed' in wrong.stdout, wrong.stdout
