"""farm.py: leases and capacity, per-environment failures, security. A real Farm behind a real
Pyro4 daemon (in a thread) with real worker processes running the numpy test environments."""
import os
import signal
import time

import Pyro4
import Pyro4.errors
import pytest

import farm
from farmside import core, lifecycle
from conftest import alive, wait_until

GOOD = [0.5, 0.5]


def lease_with(proxy, n=1, name='CheapEnv', **kwargs):
    lease = proxy.open_lease(30)
    spec = proxy.make(lease, name, kwargs, n)
    return lease, spec['env_ids']


def test_info_reports_capacity_versions_and_names(thread_farm):
    info = thread_farm(capacity=3).proxy().info()
    assert info['capacity'] == 3 and info['in_use'] == 0
    assert info['versions']['pyro4'] == Pyro4.__version__
    assert info['versions']['farm_protocol'] == farm.PROTOCOL
    assert 'L2M2019Env' in info['envs'] and 'CheapEnv' in info['envs']


def test_capacity_is_enforced_and_freed_by_closing_a_lease(thread_farm):
    f = thread_farm(capacity=2)
    p = f.proxy()
    lease, ids = lease_with(p, 2)
    other = p.open_lease(30)
    with pytest.raises(ValueError, match='cannot make 1 environments, 0 of 2 free'):
        p.make(other, 'CheapEnv', {}, 1)
    assert p.info()['in_use'] == 2
    assert p.close_lease(lease)
    assert p.info()['in_use'] == 0
    assert len(p.make(other, 'CheapEnv', {}, 2)['env_ids']) == 2


def test_one_learner_can_neither_step_nor_release_anothers_envs(thread_farm):
    f = thread_farm()
    p = f.proxy()
    mine, my_ids = lease_with(p)
    theirs, their_ids = lease_with(p)
    p.reset(mine, my_ids)
    with pytest.raises(LookupError, match='not in this lease'):
        p.step(theirs, my_ids, [GOOD])
    with pytest.raises(LookupError, match='not in this lease'):
        p.release(theirs, my_ids)
    with pytest.raises(LookupError, match='no such lease'):
        p.step('0' * 32, my_ids, [GOOD])
    with pytest.raises(LookupError):
        p.worker_pids(['not', 'a', 'token'])
    assert set(p.worker_pids(theirs)) == {str(i) for i in their_ids}
    # ...and my environment still works.
    assert p.step(mine, my_ids, [GOOD])[0][0] == [1.0, 1.0, 1.0]


@pytest.mark.slow
def test_expired_lease_frees_capacity_and_kills_workers(thread_farm):
    f = thread_farm(capacity=1)
    p = f.proxy()
    lease = p.open_lease(1.0)
    ids = p.make(lease, 'CheapEnv', {}, 1)['env_ids']
    pid = int(p.worker_pids(lease)[str(ids[0])])
    deadline = time.time() + 10
    while p.info()['in_use'] and time.time() < deadline:
        time.sleep(0.2)
    assert p.info()['in_use'] == 0
    with pytest.raises(LookupError, match='no such lease'):
        p.step(lease, ids, [GOOD])
    assert not alive(pid)


def test_a_worker_lost_while_its_lease_closes_is_not_replaced(thread_farm, monkeypatch):
    """Regression (fault drill, farm frozen as its lease closed): a step timing out while the lease
    was being closed replaced the worker of a slot that no longer existed, and the new worker
    lived on with no lease. The interleaving is forced here: the slot is dropped, then the
    timed-out call's failure handling runs."""
    f = thread_farm(capacity=1)
    p = f.proxy()
    lease = p.open_lease()
    env_id = p.make(lease, 'CheapEnv', {}, 1)['env_ids'][0]
    slot = f.farm.ledger.slot(env_id)
    assert p.close_lease(lease)  # _drop: the slot leaves the books, its worker is closed
    started = []
    real_worker = lifecycle.EnvWorker
    monkeypatch.setattr(lifecycle, 'EnvWorker',
                        lambda *a, **k: started.append(real_worker(*a, **k)) or started[-1])
    f.farm.life.failure(slot, farm.WorkerLost('step timed out'))
    assert started, 'the failure handling started no worker: the test proves nothing'
    deadline = time.time() + 10
    while any(w.alive() for w in started) and time.time() < deadline:
        time.sleep(0.1)
    assert not any(w.alive() for w in started)
    assert p.info()['in_use'] == 0


@pytest.mark.slow
def test_calls_renew_the_lease(thread_farm):
    p = thread_farm().proxy()
    lease = p.open_lease(1.5)
    ids = p.make(lease, 'CheapEnv', {}, 1)['env_ids']
    p.reset(lease, ids)
    for _ in range(6):  # 3 s of activity, twice the ttl
        time.sleep(0.5)
        p.step(lease, ids, [GOOD])
    assert p.renew(lease)


def test_killed_worker_is_replaced_and_only_its_env_fails(thread_farm):
    p = thread_farm().proxy()
    lease, ids = lease_with(p, 2)
    p.reset(lease, ids)
    victim = int(p.worker_pids(lease)[str(ids[0])])
    os.kill(victim, signal.SIGKILL)
    assert wait_until(lambda: not alive(victim))  # dead (the farm finds out at the step)
    results = p.step(lease, ids, [GOOD, GOOD])
    assert results[0]['kind'] == 'lost' and 'env %d' % ids[0] in results[0]['error']
    assert results[1][0] == [1.0, 1.0, 1.0]
    # Stepping a lost env before resetting it is refused, not silently wrong.
    assert p.step(lease, ids[:1], [GOOD])[0]['kind'] == 'input'
    assert p.reset(lease, ids[:1]) == [[0.0, 0.0, 0.0]]
    assert int(p.worker_pids(lease)[str(ids[0])]) != victim
    assert p.step(lease, ids, [GOOD, GOOD])[0][0] == [1.0, 1.0, 1.0]


def test_crashing_env_is_lost_others_go_on(thread_farm):
    p = thread_farm().proxy()
    lease = p.open_lease(30)
    crash = p.make(lease, 'CheapEnv', {'crash_after': 1}, 1)['env_ids']
    fine = p.make(lease, 'CheapEnv', {}, 1)['env_ids']
    p.reset(lease, crash + fine)
    p.step(lease, crash + fine, [GOOD, GOOD])
    results = p.step(lease, crash + fine, [GOOD, GOOD])
    assert results[0]['kind'] == 'lost' and 'died' in results[0]['error']
    assert results[1][0] == [2.0, 2.0, 2.0]


@pytest.mark.slow
def test_hung_worker_times_out_is_killed_and_others_are_served(thread_farm):
    f = thread_farm(step_timeout=1.0)
    p = f.proxy()
    lease = p.open_lease(30)
    hang = p.make(lease, 'CheapEnv', {'hang_after': 0}, 1)['env_ids']
    fine = p.make(lease, 'CheapEnv', {}, 1)['env_ids']
    p.reset(lease, hang + fine)
    hung_pid = int(p.worker_pids(lease)[str(hang[0])])
    other = f.proxy()  # another learner, served while the hang is in progress
    other_lease, other_ids = lease_with(other)
    started = time.time()
    results = p.step(lease, hang + fine, [GOOD, GOOD])
    assert time.time() - started < 10
    assert results[0]['kind'] == 'lost' and 'timeout' in results[0]['error']
    assert results[1][0] == [1.0, 1.0, 1.0]
    assert not alive(hung_pid)
    assert other.reset(other_lease, other_ids) == [[0.0, 0.0, 0.0]]


def test_bad_actions_are_refused_with_the_reason_and_the_env_survives(thread_farm):
    p = thread_farm().proxy()
    lease, ids = lease_with(p)
    p.reset(lease, ids)
    cases = [([0.5], 'length 1, expected 2'), ([0.5, float('nan')], 'must be finite'),
             ([0.5, 'x'], 'not a number'), (0.5, 'must be a list')]
    for action, reason in cases:
        result = p.step(lease, ids, [action])[0]
        assert result['kind'] == 'input' and reason in result['error']
        assert 'env %d (CheapEnv)' % ids[0] in result['error']
    assert p.step(lease, ids, [GOOD])[0][0] == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match='one action per environment'):
        p.step(lease, ids, [GOOD, GOOD])


def test_unknown_environment_name_is_refused_clearly(thread_farm):
    p = thread_farm().proxy()
    lease = p.open_lease(30)
    with pytest.raises(ValueError, match="unknown environment 'os.system'"):
        p.make(lease, 'os.system', {}, 1)
    with pytest.raises(ValueError, match='unexpected keyword'):
        p.make(lease, 'CheapEnv', {'no_such_option': 1}, 1)
    assert p.info()['in_use'] == 0


def test_workers_are_recycled_after_a_number_of_resets(thread_farm):
    p = thread_farm(recycle_resets=2).proxy()
    lease, ids = lease_with(p, 1, episode_length=1)
    p.reset(lease, ids)
    pids = set()
    for _ in range(6):
        result = p.step(lease, ids, [GOOD], True)[0]
        assert result[2] is True and 'terminal_observation' in result[4]
        assert result[0] == [0.0, 0.0, 0.0]  # first observation of the next episode
        pids.add(p.worker_pids(lease)[str(ids[0])])
    assert len(pids) >= 2


def test_wrong_or_missing_key_is_refused(thread_farm):
    f = thread_farm(key='right key')
    assert f.proxy().info()['capacity'] == 4
    wrong = f.proxy(key='wrong key')
    with pytest.raises(Pyro4.errors.CommunicationError, match='hmac'):
        wrong.info()
    missing = Pyro4.Proxy(f.uri)
    with pytest.raises(Pyro4.errors.CommunicationError, match='hmac'):
        missing.info()


def test_pickle_is_refused(thread_farm):
    f = thread_farm()
    proxy = Pyro4.Proxy(f.uri)
    proxy._pyroSerializer = 'pickle'
    with pytest.raises(Pyro4.errors.CommunicationError, match='serializer that is not accepted'):
        proxy.info()


def test_listening_beyond_loopback_requires_a_key():
    with pytest.raises(farm.SettingError, match='needs a shared key'):
        farm.serve(farm.Farm(capacity=1), host='0.0.0.0', port=0)


# --- issue 8: duplicate ids, the operator's policies, make's arguments ---------------------------

def test_duplicate_ids_are_refused_naming_them_and_nothing_leaks(thread_farm):
    """Regression: release(lease, [i, i]) lost the slot for ever; step/reset with [i, i] sent two
    commands to one worker and paired its answers with the wrong requests."""
    f = thread_farm(capacity=2)
    p = f.proxy()
    lease, ids = lease_with(p, 2)
    i, j = ids
    with pytest.raises(ValueError, match=r'env ids \[%d\] appear more than once' % i):
        p.reset(lease, [i, j, i])
    assert p.reset(lease, ids) == [[0.0, 0.0, 0.0]] * 2
    with pytest.raises(ValueError, match=r'env ids \[%d\] appear more than once' % i):
        p.step(lease, [i, i], [GOOD, GOOD])
    # Each worker is still in step with its caller: one step each, answers in order.
    assert [r[0] for r in p.step(lease, [j, i], [GOOD, [1.0, 1.0]])] == [[1.0] * 3, [1.0] * 3]
    with pytest.raises(ValueError, match=r'env ids \[%d\] appear more than once' % i):
        p.release(lease, [i, i])
    assert p.info()['in_use'] == 2
    assert p.release(lease, [i])
    assert p.info()['in_use'] == 1
    assert p.close_lease(lease)
    assert p.info()['in_use'] == 0  # nothing held for ever
    assert len(p.make(p.open_lease(30), 'CheapEnv', {}, 2)['env_ids']) == 2


def test_overcommit_is_the_farms_policy_not_the_callers(thread_farm):
    """Regression: any client passing overcommit=True got twice the capacity, whatever the
    operator wanted."""
    never = thread_farm(capacity=2, overcommit=1).proxy()
    assert never.info()['overcommit'] == 1
    lease = never.open_lease(30)
    never.make(lease, 'CheapEnv', {}, 2)
    with pytest.raises(ValueError, match='cannot make 1 environments, 0 of 2 free'):
        never.make(lease, 'CheapEnv', {}, 1, True)
    half = thread_farm(capacity=2, overcommit=1.5).proxy()
    lease = half.open_lease(30)
    with pytest.raises(ValueError, match='cannot make 3 environments, 2 of 2 free'):
        half.make(lease, 'CheapEnv', {}, 3)  # without overcommit: capacity
    assert len(half.make(lease, 'CheapEnv', {}, 3, True)['env_ids']) == 3
    with pytest.raises(ValueError, match='cannot make 1 environments, 0 of 3 free'):
        half.make(lease, 'CheapEnv', {}, 1, True)
    assert farm.OVERCOMMIT == 2 and thread_farm(capacity=1).proxy().info()['overcommit'] == 2


def test_nothing_is_lent_above_capacity_while_another_learner_waits_for_it(thread_farm):
    """The overcommit policy: room above capacity (asked for to re-place a lost farm's
    environments) is lent only while no other lease waits for the farm's capacity; a lease
    refused capacity counts as waiting until it gets some, closes, or stops asking."""
    p = thread_farm(capacity=2, overcommit=2).proxy()
    a, b = p.open_lease(30), p.open_lease(30)
    p.make(a, 'CheapEnv', {}, 2)
    with pytest.raises(ValueError, match='cannot make 1 environments, 0 of 2 free'):
        p.make(b, 'CheapEnv', {}, 1)  # b now waits
    with pytest.raises(ValueError, match=r'0 of 2 free.*nothing lent above capacity while 1 '
                                         r'other learner\(s\) wait for it'):
        p.make(a, 'CheapEnv', {}, 1, True)
    with pytest.raises(ValueError, match='0 of 2 free'):  # b may not borrow past itself either
        p.make(b, 'CheapEnv', {}, 1)
    p.close_lease(b)  # b gave up: a may borrow again
    assert len(p.make(a, 'CheapEnv', {}, 2, True)['env_ids']) == 2
    c = p.open_lease(30)
    with pytest.raises(ValueError, match='0 of 2 free'):
        p.make(c, 'CheapEnv', {}, 1)
    p.close_lease(a)  # the borrower's environments freed: c gets capacity, and stops waiting
    assert len(p.make(c, 'CheapEnv', {}, 2)['env_ids']) == 2
    assert len(p.make(c, 'CheapEnv', {}, 1, True)['env_ids']) == 1


@pytest.mark.slow
def test_lease_ttl_is_capped_at_the_farms_lease_ttl(thread_farm):
    """Regression: a client could hold capacity for 86,400 s whatever --lease-ttl said."""
    p = thread_farm(capacity=1, lease_ttl=1.0).proxy()
    assert p.info()['lease_ttl'] == 1.0
    lease = p.open_lease(86400)
    p.make(lease, 'CheapEnv', {}, 1)
    deadline = time.time() + 15
    while p.info()['in_use'] and time.time() < deadline:
        time.sleep(0.2)
    assert p.info()['in_use'] == 0
    with pytest.raises(LookupError, match='no such lease'):
        p.renew(lease)
    for bad in (-1, 0, 'x', True, [5]):
        with pytest.raises(ValueError, match='lease ttl must be a number of seconds > 0'):
            p.open_lease(bad)


@pytest.mark.parametrize('name,kwargs,n,kind,named', [
    ('CheapEnv', {}, 1.7, TypeError, 'n (how many environments) must be an int'),
    ('CheapEnv', {}, True, TypeError, 'n (how many environments) must be an int'),
    ('CheapEnv', {}, 'x', TypeError, 'n (how many environments) must be an int'),
    ('CheapEnv', {}, 0, ValueError, 'n (how many environments) must be at least 1'),
    ('CheapEnv', [], 1, TypeError, 'kwargs must be a dict with string keys'),
    (5, {}, 1, TypeError, 'name must be a string'),
    (['CheapEnv'], {}, 1, TypeError, 'name must be a string'),
])
def test_make_names_the_argument_that_is_wrong(thread_farm, name, kwargs, n, kind, named):
    """Regression: make took n=1.7, n=True and kwargs=[]; n='x' gave an error naming nothing."""
    f = thread_farm(capacity=2)
    p = f.proxy()
    lease = p.open_lease(30)
    with pytest.raises(kind) as raised:
        p.make(lease, name, kwargs, n)
    assert named in str(raised.value) and f.farm.label in str(raised.value)
    assert p.info()['in_use'] == 0


def test_make_refuses_kwargs_with_keys_that_are_not_strings(thread_farm):
    # msgpack already refuses them on the wire; a Farm called in-process checks them too.
    f = thread_farm(capacity=1)
    with pytest.raises(TypeError, match='kwargs must be a dict with string keys'):
        f.farm.make(f.farm.open_lease(30), 'CheapEnv', {1: 2}, 1)


def test_a_refusal_for_capacity_says_what_is_held_and_when_it_frees(thread_farm):
    p = thread_farm(capacity=2, lease_ttl=30).proxy()
    assert p.info()['frees_in'] is None  # nothing held
    lease_with(p, 2)
    frees_in = p.info()['frees_in']
    assert 0 < frees_in <= 30
    with pytest.raises(ValueError) as refused:
        p.make(p.open_lease(30), 'CheapEnv', {}, 1)
    message = str(refused.value)
    assert 'cannot make 1 environments, 0 of 2 free; 2 held by 2 leases' in message
    assert 'frees within' in message and '\n' not in message


def test_a_learner_that_stops_asking_stops_waiting(thread_farm, monkeypatch):
    from farmside import ledger
    monkeypatch.setattr(ledger, 'WAITING_FOR', 0.3)
    p = thread_farm(capacity=1, overcommit=2).proxy()
    a, b = p.open_lease(30), p.open_lease(30)
    p.make(a, 'CheapEnv', {}, 1)
    with pytest.raises(ValueError, match='0 of 1 free'):
        p.make(b, 'CheapEnv', {}, 1)

    def borrowed():
        try:
            return len(p.make(a, 'CheapEnv', {}, 1, True)['env_ids']) == 1
        except ValueError as e:
            assert 'wait for it' in str(e)
            return False
    assert not borrowed()
    assert wait_until(borrowed, 5)
