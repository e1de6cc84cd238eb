"""Curriculum through the farm: set_params changes environment parameters without rebuilding the
environments, at their next reset; refused names are named; replaced workers keep the params."""
import numpy as np
import pytest

import envs
import farmer
from vecenv.contract import InProcessVecEnv

GOOD = [0.5, 0.5]


def episode_lengths(env, steps):
    """Lengths of the episodes that end within ``steps`` steps of a vector env."""
    lengths = []
    for _ in range(steps):
        infos = env.step(np.full((env.num_envs, 2), 0.5))[4]
        lengths += [info['episode']['l'] for info in infos if 'episode' in info]
    return lengths


@pytest.fixture(params=['in-process', 'farm'])
def make_vec(request, thread_farm):
    made = []

    def make(n, **kwargs):
        if request.param == 'in-process':
            env = InProcessVecEnv('CheapEnv', n, kwargs)
        else:
            f = thread_farm(capacity=n)
            link = farmer.Farmer(farms=[('127.0.0.1', n, f.port)], start_local=False)
            made.append(link)
            env = link.vec_env('CheapEnv', n, kwargs)
        made.append(env)
        return env

    yield make
    for thing in reversed(made):
        thing.close()


# --- the adapter ---------------------------------------------------------------------------------
def test_adapter_params_apply_at_the_next_reset_not_mid_episode():
    env = envs.make('CheapEnv', episode_length=5)
    env.reset()
    env.step(GOOD)
    env.set_params(episode_length=2, offset=100)
    for _ in range(3):
        assert env.step(GOOD)[2] is False  # the running episode keeps its length of 5
    assert env.step(GOOD)[2] is True
    assert list(env.reset()) == [0.0, 100.0, 100.0]
    env.step(GOOD)
    assert env.step(GOOD)[2] is True


def test_adapter_refuses_unknown_names_and_bad_values():
    env = envs.make('CheapEnv')
    with pytest.raises(envs.EnvError, match='CheapEnv: unknown parameter speed; accepted: '
                                            'episode_length, offset'):
        env.set_params(speed=1.0)
    with pytest.raises(envs.EnvError, match='episode_length must be a number >= 0'):
        env.set_params(episode_length=True)
    with pytest.raises(envs.EnvError, match='accepts none'):
        envs.make('DrillEnv').set_params(episode_length=3)
    # Nothing from the wire becomes an attribute unless declared.
    with pytest.raises(envs.EnvError):
        env.set_params(close=1)
    slow = envs.make('SlowEnv', step_seconds=0.5)
    slow.set_params(step_seconds=0)
    slow.reset()
    assert slow.inner.inner.inner.step_seconds == 0.0


# --- the vectorized envs -------------------------------------------------------------------------
def test_episode_length_changes_after_set_params_and_reset(make_vec):
    env = make_vec(2, episode_length=3)
    env.reset()
    assert episode_lengths(env, 3) == [3, 3]
    env.set_params({'episode_length': 2})
    # The episodes the auto-reset started keep their length; the ones after are 2 long.
    assert episode_lengths(env, 3) == [3, 3]
    assert episode_lengths(env, 4) == [2, 2, 2, 2]
    env.set_params({'episode_length': 5, 'offset': 50}, indices=[1])
    obs = env.reset()
    assert obs[:, 1].tolist() == [0.0, 50.0]
    assert episode_lengths(env, 5) == [2, 2, 5]


def test_unknown_param_is_refused_with_the_accepted_names(make_vec):
    env = make_vec(2)
    env.reset()
    with pytest.raises(ValueError, match='unknown parameter target_speed; accepted: '
                                         'episode_length, offset'):
        env.set_params({'target_speed': 1.25})
    # The environments are intact and unchanged.
    assert episode_lengths(env, 10) == [10, 10]


# --- the farm verb -------------------------------------------------------------------------------
def test_farm_refuses_params_that_are_not_plain_data(thread_farm):
    f = thread_farm()
    p = f.proxy()
    lease = p.open_lease()
    ids = p.make(lease, 'CheapEnv', {}, 1)['env_ids']
    with pytest.raises(ValueError, match='params must be a dict'):
        p.set_params(lease, ids, [1, 2])
    with pytest.raises(ValueError, match="'offset' = .* is not a number, string, bool or list"):
        p.set_params(lease, ids, {'offset': {'nested': 1}})
    assert p.set_params(lease, ids, {'offset': 3}) == [None]
    assert p.reset(lease, ids)[0] == [0.0, 3.0, 3.0]
    result = p.set_params(lease, ids, {'nope': 3})[0]
    assert result['kind'] == 'input' and 'unknown parameter nope' in result['error']
    # What a replacement worker is built with: the accepted params only.
    assert f.farm.ledger.slot(ids[0]).worker.params == {'offset': 3}


def test_a_recycled_worker_keeps_the_params(thread_farm):
    p = thread_farm(recycle_resets=2).proxy()
    lease = p.open_lease()
    ids = p.make(lease, 'CheapEnv', {'episode_length': 1}, 1)['env_ids']
    p.reset(lease, ids)
    assert p.set_params(lease, ids, {'offset': 7}) == [None]
    pids = set()
    firsts = []
    for _ in range(6):
        result = p.step(lease, ids, [GOOD], True)[0]
        assert result[2] is True
        firsts.append(result[0])  # the next episode's first observation
        pids.add(p.worker_pids(lease)[str(ids[0])])
    assert len(pids) >= 2, 'the worker was never recycled'
    assert firsts == [[0.0, 7.0, 7.0]] * 6


def test_a_lost_worker_keeps_the_params(thread_farm):
    p = thread_farm().proxy()
    lease = p.open_lease()
    ids = p.make(lease, 'CheapEnv', {'crash_after': 2}, 1)['env_ids']
    p.reset(lease, ids)
    assert p.set_params(lease, ids, {'offset': 4}) == [None]
    p.step(lease, ids, [GOOD], False)
    p.step(lease, ids, [GOOD], False)
    assert p.step(lease, ids, [GOOD], False)[0]['kind'] == 'lost'
    assert p.reset(lease, ids)[0] == [0.0, 4.0, 4.0]  # the replacement has them


def test_a_python27_farm_takes_params(process_farm):
    from test_py27 import PY27, PY27_ENV
    if PY27 is None:
        pytest.skip(str(PY27_ENV))
    f = process_farm(capacity=2, python=PY27, env=PY27_ENV)
    with farmer.Farmer(farms=[('127.0.0.1', 2, f.port)], start_local=False) as fm:
        env = fm.vec_env('CheapEnv', 2, {'episode_length': 4})
        env.reset()
        env.set_params({u'episode_length': 2, 'offset': 1.5})
        assert env.reset()[:, 1].tolist() == [1.5, 1.5]
        assert episode_lengths(env, 2) == [2, 2]
        with pytest.raises(ValueError, match='unknown parameter x; accepted'):
            env.set_params({'x': [1, 2]})


@pytest.mark.slow
def test_environments_rebuilt_after_a_lost_farm_keep_the_params(process_farm):
    first, second = process_farm(capacity=1), process_farm(capacity=1)
    with farmer.Farmer(farms=[('127.0.0.1', 1, first.port), ('127.0.0.1', 1, second.port)],
                       start_local=False) as fm:
        env = fm.vec_env('CheapEnv', 2, {'episode_length': 50})
        env.reset()
        env.set_params({'offset': 9, 'episode_length': 3})
        obs = env.reset()
        assert obs[:, 1].tolist() == [9.0, 9.0]
        lost = [i for i, place in enumerate(env.places) if place.link.port == first.port]
        first.stop()
        infos = env.step(np.full((2, 2), 0.5))[4]
        assert [i for i, info in enumerate(infos) if 'lost' in info] == lost
        obs = env.step(np.full((2, 2), 0.5))[0]
        # The rebuilt environment (on the surviving farm, above its capacity) has the params:
        assert obs[lost[0], 1] == 9.0 + 1
        assert 3 in episode_lengths(env, 3)


# --- the schedule (run/curriculum.py) ----------------------------------------------------------------
def test_schedule_applies_stages_in_order_through_a_vec_env(tmp_path):
    import json
    from run.curriculum import Curriculum
    path = tmp_path / 'c.json'
    path.write_text(json.dumps([
        {'episodes': 0, 'params': {'episode_length': 2}},
        {'episodes': 4, 'params': {'offset': 10}},
        {'steps': 30, 'params': {'episode_length': 3}}]))
    schedule = Curriculum.load(str(path))
    env = InProcessVecEnv('CheapEnv', 2, {'episode_length': 5})
    assert schedule.update(env, 0, 0) == {'episode_length': 2}
    assert schedule.update(env, 0, 0) is None
    env.reset()
    episodes, steps = 0, 0
    seen = []
    for _ in range(20):
        obs, _, terminated, truncated, infos = env.step(np.full((2, 2), 0.5))
        steps += 2
        ended = [info['episode']['l'] for info in infos if 'episode' in info]
        episodes += len(ended)
        seen += ended
        schedule.update(env, episodes, steps)
    assert schedule.current == 2
    assert seen[:4] == [2, 2, 2, 2] and seen[-2:] == [3, 3]
    assert obs[0, 1] >= 10  # the offset stage stayed in force after the steps stage


def test_schedule_mistakes_are_one_line_user_errors(tmp_path):
    from common import errors
    from run.curriculum import Curriculum
    bad = tmp_path / 'bad.json'
    for text, message in [
            ('{"episodes": 0}', 'must be a JSON list'),
            ('[', 'not valid JSON'),
            ('[{"episodes": 0, "steps": 1, "params": {"a": 1}}]', 'exactly one of'),
            ('[{"episodes": -1, "params": {"a": 1}}]', 'integer >= 0'),
            ('[{"episodes": 0, "params": {"a": {"b": 1}}}]', 'is not a number'),
            ('[]', 'no stages')]:
        bad.write_text(text)
        with pytest.raises(errors.UserError, match=message):
            Curriculum.load(str(bad))
    with pytest.raises(errors.UserError, match='cannot read it'):
        Curriculum.load(str(tmp_path / 'missing.json'))
    bad.write_text('[{"episodes": 0, "params": {"speed": 1}}]')
    env = InProcessVecEnv('CheapEnv', 1)
    with pytest.raises(errors.UserError, match='bad.json: stage 1: CheapEnv: unknown parameter '
                                               'speed; accepted: episode_length, offset'):
        Curriculum.load(str(bad)).update(env, 0, 0)


def test_l2m_difficulty_is_a_curriculum_knob():
    pytest.importorskip('opensim')
    pytest.importorskip('osim.env')
    env = envs.make('L2M2019Env', difficulty=2)
    adapter = env.inner.inner.inner
    env.set_params(difficulty=1)
    assert adapter.env.difficulty == 2  # until the next reset
    env.reset(seed=1)
    assert adapter.env.difficulty == 1
    with pytest.raises(envs.EnvError, match='another time limit'):
        env.set_params(difficulty=3)
    with pytest.raises(envs.EnvError, match='difficulty must be 0, 1, 2 or 3'):
        env.set_params(difficulty=True)
    with pytest.raises(envs.EnvError, match='Arm2DEnv: unknown parameter difficulty; it '
                                            'accepts none'):
        envs.make('Arm2DEnv').set_params(difficulty=1)
    env.close()
