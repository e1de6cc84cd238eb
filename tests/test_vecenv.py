"""vecenv/contract.py: the vectorized-env contract in both stepping modes, why an episode ended
(end_reason), and --sim reaching the environments' kwargs.

The contract checks are ``check_*(make)`` functions: ``make(n_envs, **env_kwargs)`` returns a
vectorized env of ``CheapEnv`` built with those kwargs (obs ``[t, offset + t, ...]``, reward
``-(a - 0.5)^2``; see envs/toy.py). They run here on :class:`contract.InProcessVecEnv`, and
tests/test_farmer_async.py runs the same :data:`CONTRACT_CHECKS` on FarmVecEnv.
"""
from dataclasses import dataclass, field

import numpy as np
import pytest

from run import config
from vecenv import contract
from common.errors import NothingPendingError, PendingError
from vecenv.contract import END_REASONS, end_reason, env_ids_of

CHEAP = {'obs_size': 3, 'act_size': 1}


def _make(make, n_envs, **env_kwargs):
    kwargs = dict(CHEAP)
    kwargs.update(env_kwargs)
    return make(n_envs, **kwargs)


def _recv_all(vec, timeout=30.0):
    """Receive until nothing is in flight: ``{env_id: (obs, reward, term, trunc, info)}``, plus
    the env ids in order of arrival."""
    results, order = {}, []
    while vec.in_flight:
        result = vec.recv(timeout=timeout)
        env_ids = _check_received(vec, result)
        obs, rewards, terminated, truncated, infos = result
        for k, i in enumerate(env_ids.tolist()):
            assert i not in results, 'env %d came back twice' % i
            results[i] = (obs[k], rewards[k], terminated[k], truncated[k], infos[k])
            order.append(i)
    return results, order


def _check_received(vec, result):
    """A recv's result is EnvPool's shape: five fields, each info naming its env in 'env_id';
    returns those ids (env_ids_of)."""
    assert isinstance(result, tuple) and len(result) == 5
    infos = result[4]
    _check_shapes(vec, result, len(infos))
    assert all(type(info['env_id']) is int for info in infos)
    env_ids = env_ids_of(infos)
    assert env_ids.dtype == np.int64 and env_ids.tolist() == [info['env_id'] for info in infos]
    return env_ids


def _check_shapes(vec, result, n):
    obs, rewards, terminated, truncated, infos = result
    assert obs.dtype == np.float32 and obs.shape == (n,) + vec.observation_space.shape
    assert rewards.dtype == np.float64 and rewards.shape == (n,)
    assert terminated.dtype == bool and terminated.shape == (n,)
    assert truncated.dtype == bool and truncated.shape == (n,)
    assert isinstance(infos, list) and len(infos) == n
    assert all(isinstance(info, dict) for info in infos)


def _constant(n, value=0.5):
    return np.full((n, 1), value, dtype=np.float32)


def check_lockstep_auto_reset_and_episode(make):
    with _make(make, 2, episode_length=3) as vec:
        obs = vec.reset(seed=7)
        np.testing.assert_array_equal(obs[:, 1], [7, 8])
        for t in (1, 2, 3):
            result = vec.step(_constant(2, 0.0))
            _check_shapes(vec, result, 2)
            assert all('env_id' not in info for info in result[4])  # lockstep: row i is env i
        obs, rewards, terminated, truncated, infos = result
        assert terminated.all() and not truncated.any()
        np.testing.assert_array_equal(obs[:, 0], [0, 0])  # already the next episode's first
        for i, info in enumerate(infos):
            np.testing.assert_array_equal(info['terminal_observation'][:2], [3, 3 + 7 + i])
            assert info['episode'] == {'r': pytest.approx(-0.75), 'l': 3}
        assert all('terminal_observation' not in info for info in vec.step(_constant(2))[4])


def check_async_auto_reset_and_episode(make):
    with _make(make, 3, episode_length=3) as vec:
        vec.async_reset(seed=10)
        assert vec.in_flight == 3
        first, _ = _recv_all(vec)
        assert sorted(first) == [0, 1, 2]
        for i, (o, r, te, tr, info) in first.items():
            assert o[0] == 0 and o[1] == 10 + i and r == 0.0 and not te and not tr
            assert info == {'env_id': i}
        for t in (1, 2, 3):
            vec.send(_constant(3, 0.0), [2, 0, 1])
            results, _ = _recv_all(vec)
        for i, (o, r, te, tr, info) in results.items():
            assert te and not tr and o[0] == 0
            np.testing.assert_array_equal(info['terminal_observation'][:2], [3, 3 + 10 + i])
            assert info['episode'] == {'r': pytest.approx(-0.75), 'l': 3}


def check_terminated_vs_truncated(make):
    with _make(make, 2, episode_length=5, max_episode_steps=2) as vec:
        vec.reset(seed=0)
        vec.step(_constant(2))
        obs, rewards, terminated, truncated, infos = vec.step(_constant(2))
        assert truncated.all() and not terminated.any()
        assert all(info['episode']['l'] == 2 for info in infos)
        assert [end_reason(False, info) for info in infos] == ['time_limit'] * 2
        vec.async_reset(seed=0)
        _recv_all(vec)
        for _ in range(2):
            vec.send(_constant(2), [0, 1])
            results, _ = _recv_all(vec)
        assert all(tr and not te and info['episode']['l'] == 2 and
                   info['terminal_observation'][0] == 2
                   for o, r, te, tr, info in results.values())


def check_env_ids_name_the_environments_results(make):
    with _make(make, 4, episode_length=50) as vec:
        vec.async_reset(seed=100)
        _recv_all(vec)
        vec.send(_constant(2, 0.0), [3, 1])
        vec.send(_constant(1, 1.0), [2])
        results, order = _recv_all(vec)
        assert sorted(order) == [1, 2, 3]
        for i in (1, 2, 3):  # each row is its own environment's (offset 100 + i, one step on)
            o = results[i][0]
            assert o[0] == 1 and o[1] == 101 + i
        vec.send(_constant(4), [0, 1, 2, 3])
        results, _ = _recv_all(vec)
        assert [results[i][0][0] for i in range(4)] == [1, 2, 2, 2]


def check_batch_size_and_timeout(make):
    with _make(make, 4, episode_length=50) as vec:
        assert vec.batch_size == 1
        vec.async_reset(seed=0)
        _recv_all(vec)
        vec.send(_constant(4), [0, 1, 2, 3])
        got = _check_received(vec, vec.recv(batch_size=3))
        assert len(got) >= 3
        rest, _ = _recv_all(vec)
        assert sorted(got.tolist() + list(rest)) == [0, 1, 2, 3]
        # fewer in flight than batch_size: it returns with those, it does not wait for more
        vec.send(_constant(1), [2])
        got = _check_received(vec, vec.recv(batch_size=4, timeout=30.0))
        assert got.tolist() == [2] and vec.in_flight == 0
        # a timeout returns what is ready then (possibly nothing), shaped as ever
        vec.send(_constant(2), [0, 3])
        collected = []
        while vec.in_flight:
            collected += _check_received(vec, vec.recv(batch_size=2, timeout=0.01)).tolist()
        assert sorted(collected) == [0, 3]


def check_call_order_errors(make):
    with _make(make, 2) as vec:
        vec.reset(seed=0)
        with pytest.raises(NothingPendingError):
            vec.step_wait()
        vec.step_async(_constant(2))
        with pytest.raises(PendingError):
            vec.step_async(_constant(2))
        result = vec.step_wait()  # the first step's results are still there
        np.testing.assert_array_equal(result[0][:, 0], [1, 1])
        with pytest.raises(NothingPendingError):
            vec.step_wait()
        with pytest.raises(NothingPendingError):
            vec.recv()
        vec.async_reset(seed=0)
        _recv_all(vec)
        vec.send(_constant(1), [1])
        with pytest.raises(PendingError):
            vec.send(_constant(2), [0, 1])  # nothing of that call is sent
        assert vec.in_flight == 1
        with pytest.raises(PendingError):
            vec.async_reset()
        with pytest.raises(ValueError):
            vec.send(_constant(1), [2])  # no env 2
        with pytest.raises(ValueError):
            vec.send(_constant(2), [0, 0])
        with pytest.raises(ValueError):
            vec.send(_constant(2), [0])
        results, _ = _recv_all(vec)
        assert list(results) == [1] and results[1][0][0] == 1
        with pytest.raises(NothingPendingError):
            vec.recv()


def check_mixing_rules(make):
    with _make(make, 2, episode_length=50) as vec:
        vec.async_reset(seed=0)
        _recv_all(vec)
        vec.send(_constant(1), [0])
        for call in (lambda: vec.step_async(_constant(2)), lambda: vec.step(_constant(2)),
                     vec.step_wait):
            with pytest.raises(PendingError):
                call()
        _recv_all(vec)
        vec.step_async(_constant(2))
        with pytest.raises(PendingError):
            vec.send(_constant(1), [1])
        vec.step_wait()
        # reset collects and discards what is in flight, then resets every environment
        vec.send(_constant(2), [0, 1])
        obs = vec.reset(seed=20)
        assert vec.in_flight == 0
        np.testing.assert_array_equal(obs[:, :2], [[0, 20], [0, 21]])
        obs = vec.step(_constant(2))[0]
        np.testing.assert_array_equal(obs[:, :2], [[1, 21], [1, 22]])
        with pytest.raises(NothingPendingError):
            vec.recv()


def check_set_params_reaches_an_environment_in_flight(make):
    with _make(make, 2, episode_length=2) as vec:
        vec.async_reset(seed=0)
        _recv_all(vec)
        vec.send(_constant(2), [0, 1])
        vec.set_params({'offset': 50.0}, [1])  # env 1 is in flight: its next reset has it
        _recv_all(vec)
        vec.send(_constant(2), [0, 1])
        results, _ = _recv_all(vec)
        assert results[0][2] and results[1][2]  # both episodes ended: reset
        assert results[0][0][1] == 0 and results[1][0][1] == 50


def check_async_results_equal_lockstep_results(make):
    """The same seeds and actions give the same results in either mode, per environment,
    whatever the order of the sends."""
    n, steps = 3, 9
    actions = np.random.RandomState(0).uniform(0, 1, size=(steps, n, 1)).astype(np.float32)
    kwargs = dict(episode_length=4, max_episode_steps=3)
    with _make(make, n, **kwargs) as lock, _make(make, n, **kwargs) as asy:
        expected = [lock.reset(seed=3)]
        for t in range(steps):
            expected.append(lock.step(actions[t]))
        asy.async_reset(seed=3)
        first, _ = _recv_all(asy)
        np.testing.assert_array_equal(np.array([first[i][0] for i in range(n)]), expected[0])
        for t in range(steps):
            order = np.random.RandomState(t).permutation(n)
            asy.send(actions[t][order[:1]], order[:1])
            asy.send(actions[t][order[1:]], order[1:])
            got, _ = _recv_all(asy)
            obs, rewards, terminated, truncated, infos = expected[t + 1]
            for i in range(n):
                o, r, te, tr, info = got[i]
                np.testing.assert_array_equal(o, obs[i])
                assert (r, te, tr) == (rewards[i], terminated[i], truncated[i])
                assert info.pop('env_id') == i  # recv's label; the rest as lockstep's
                assert sorted(info) == sorted(infos[i])
                if 'terminal_observation' in info:
                    np.testing.assert_array_equal(info['terminal_observation'],
                                                  infos[i]['terminal_observation'])
                    assert info['episode'] == infos[i]['episode']


CONTRACT_CHECKS = [check_lockstep_auto_reset_and_episode, check_async_auto_reset_and_episode,
                   check_terminated_vs_truncated, check_env_ids_name_the_environments_results,
                   check_batch_size_and_timeout, check_call_order_errors, check_mixing_rules,
                   check_set_params_reaches_an_environment_in_flight,
                   check_async_results_equal_lockstep_results]


def _in_process(n_envs, **env_kwargs):
    return contract.InProcessVecEnv('CheapEnv', n_envs, env_kwargs)


@pytest.mark.parametrize('check', CONTRACT_CHECKS, ids=lambda check: check.__name__[6:])
def test_in_process_vec_env_meets_the_contract(check):
    check(_in_process)


def test_in_process_async_results_come_back_in_the_order_sent():
    with _in_process(3, **CHEAP) as vec:
        vec.async_reset()
        assert _recv_all(vec)[1] == [0, 1, 2]
        vec.send(_constant(3), [2, 0, 1])
        assert _recv_all(vec)[1] == [2, 0, 1]


def test_a_seed_among_the_env_kwargs_seeds_the_first_async_reset():
    with _in_process(2, seed=30, **CHEAP) as vec:
        vec.async_reset()
        results, _ = _recv_all(vec)
        assert [results[i][0][1] for i in (0, 1)] == [30, 31]


@pytest.mark.parametrize('terminated, info, reason', [
    (True, {}, 'terminated'),
    (True, {'lost': 'x', 'lost_cause': 'farm'}, 'terminated'),
    (False, {}, 'time_limit'),
    (False, {'lost': 'worker died'}, 'worker_lost'),
    (False, {'lost': 'farm down', 'lost_cause': 'farm'}, 'farm_lost'),
    (False, {'lost': 'no such lease', 'lost_cause': 'lease'}, 'lease_expired'),
    (False, {'moved': 'a -> b'}, 'moved'),
    (False, {'truncated_reason': 'diverged'}, 'diverged'),
    (False, {'truncated_reason': 'step budget'}, 'step_budget')])
def test_end_reason_names_every_way_an_episode_ends(terminated, info, reason):
    assert end_reason(terminated, info) == reason and reason in END_REASONS


@dataclass
class _Cfg:
    sim: str = 'default'
    env_kwargs: dict = field(default_factory=dict)


def test_sim_reaches_the_env_kwargs_unless_they_name_one():
    assert config.apply_sim(_Cfg()).env_kwargs == {}  # default: nothing for non-osim envs
    assert config.apply_sim(_Cfg('fast')).env_kwargs == {'sim': 'fast'}
    assert config.apply_sim(_Cfg('fast', {'sim': 'exact'})).env_kwargs == {'sim': 'exact'}
