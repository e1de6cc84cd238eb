"""The benchmarks' own parts: TraceEnv replays a recorded trace (durations, episode ends, where
each environment starts), BusyEnv burns CPU, the committed traces are usable, and each bench's
--quick --json runs and prints its keys. No timing is asserted: the sleeps are recorded through a
fake (envs.toy._sleep), and the benches' figures are only checked to be there and positive."""
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

import envs
from envs import toy
from conftest import ROOT

# A small trace: three episodes (terminated, truncated, cut short by the end of the recording).
TRACE = {
    'env': 'Fake', 'obs_size': 5, 'act_size': 2, 'max_episode_steps': 3,
    'episodes': [
        {'reset_ms': 10.0, 'steps_ms': [1.0, 2.0], 'end': 'terminated'},
        {'reset_ms': 20.0, 'steps_ms': [3.0, 4.0, 5.0], 'end': 'truncated'},
        {'reset_ms': 30.0, 'steps_ms': [6.0], 'end': 'cut'},
    ],
}


@pytest.fixture
def fake_trace(tmp_path, monkeypatch):
    """TRACE as bench/traces/fake.json, and every sleep recorded (seconds) instead of slept."""
    (tmp_path / 'fake.json').write_text(json.dumps(TRACE))
    monkeypatch.setattr(toy, 'TRACE_DIR', str(tmp_path))
    monkeypatch.setattr(toy, '_traces', {})
    slept = []
    monkeypatch.setattr(toy, '_sleep', slept.append)
    return slept


def _episode(env, act=(0.5, 0.5)):
    """Steps to the end of the episode: [(terminated, truncated, trace_step)] per step."""
    out = []
    while True:
        _, _, terminated, truncated, info = env.step(list(act))
        out.append((terminated, truncated, info['trace_step']))
        if terminated or truncated:
            return out


def _ms(slept):
    return [round(s * 1000.0, 6) for s in slept]


def test_trace_env_replays_durations_and_episode_ends_in_order(fake_trace):
    env = envs.make('TraceEnv', trace='fake')
    assert env.observation_space['shape'] == [5] and env.action_space['shape'] == [2]
    assert env.max_episode_steps == 3
    inner = env.inner.inner.inner  # CheckedAction(Guard(Seeding(TraceEnv)))
    # Seed 0 picks the trace's time point 0: the first episode's reset, then its first step.
    assert inner.position(0) == (0, 0, None)
    env.reset(seed=0)
    assert _episode(env) == [(False, False, 0), (True, False, 1)]
    env.reset()  # unseeded: the next episode
    assert _episode(env) == [(False, False, 2), (False, False, 3), (False, True, 4)]
    env.reset()
    assert _episode(env) == [(False, True, 5)]  # 'cut': ends there, truncated
    env.reset()  # after the last episode: the first again
    assert _episode(env) == [(False, False, 0), (True, False, 1)]
    assert _ms(fake_trace) == [10.0, 1.0, 2.0, 20.0, 3.0, 4.0, 5.0, 30.0, 6.0, 10.0, 1.0, 2.0]


def test_trace_env_time_scale_scales_every_sleep(fake_trace):
    env = toy.TraceEnv(trace='fake', time_scale=0.5)
    env.reset(seed=0)
    env.step([0.5, 0.5])
    assert _ms(fake_trace) == [5.0, 0.5]
    fake_trace[:] = []
    stopped = toy.TraceEnv(trace='fake', time_scale=0)
    stopped.reset(seed=0)
    stopped.step([0.5, 0.5])
    assert fake_trace == []  # nothing to sleep


# The fake trace's events on its time line (ms): reset0 0-10, steps 10-11, 11-13; reset1 13-33,
# steps 33-36, 36-40, 40-45; reset2 45-75, step 75-81.
EVENTS = [(0.0, (0, 0), None), (10.0, (0, 0), 11.0), (11.0, (0, 1), 13.0), (13.0, (1, 0), None),
          (33.0, (1, 0), 36.0), (36.0, (1, 1), 40.0), (40.0, (1, 2), 45.0),
          (45.0, (2, 0), None), (75.0, (2, 0), 81.0)]


def test_a_seed_picks_a_point_of_the_traces_time_and_the_first_step_sleeps_what_is_left(
        fake_trace):
    env = toy.TraceEnv(trace='fake')
    for seed in range(40):
        point = (seed * toy._SPREAD) % 1.0 * 81.0
        start, where, end = [e for e in EVENTS if e[0] <= point][-1]
        episode, step, left = env.position(seed)
        assert (episode, step) == where, seed
        if end is None:  # inside a reset: it sleeps whole, and the first step too
            assert left is None, seed
        else:
            assert abs(left - (end - point)) < 1e-9, seed
    # Seed 4: frac(2.472) * 81 = 38.24 ms, inside episode 1's second step (36-40 ms): the
    # reset sleeps whole, that step only its last 1.76 ms, the next step whole.
    assert env.position(4)[:2] == (1, 1) and abs(env.position(4)[2] - 1.757) < 1e-3
    env.reset(seed=4)
    assert _episode(env) == [(False, False, 3), (False, True, 4)]
    reset, first, second = _ms(fake_trace)
    assert reset == 20.0 and abs(first - 1.757) < 1e-3 and second == 5.0


def test_start_step_picks_a_step_by_its_index_and_replays_it_whole(fake_trace):
    env = toy.TraceEnv(trace='fake', start='step')
    flat = [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2), (2, 0)]
    for seed in range(40):
        index = int((seed * toy._SPREAD) % 1.0 * 6)
        assert env.position(seed) == flat[index] + (None,), seed
    with pytest.raises(envs.EnvError, match="start must be one of time, step, got 'x'"):
        toy.TraceEnv(trace='fake', start='x')


def _stall_trace(tmp_path, monkeypatch):
    # One stall of 900 ms among 100 steps of 1 ms: 90% of the time is spent in it.
    trace = {'obs_size': 1, 'act_size': 1, 'max_episode_steps': None, 'episodes': [
        {'reset_ms': 0.0, 'steps_ms': [1.0] * 50 + [900.0] + [1.0] * 49, 'end': 'cut'}]}
    (tmp_path / 'stall.json').write_text(json.dumps(trace))
    monkeypatch.setattr(toy, 'TRACE_DIR', str(tmp_path))
    monkeypatch.setattr(toy, '_traces', {})


def test_environments_start_in_a_long_step_as_often_as_the_simulator_is_in_it(tmp_path,
                                                                              monkeypatch):
    _stall_trace(tmp_path, monkeypatch)
    by_time = toy.TraceEnv(trace='stall')
    in_stall = sum(by_time.position(seed)[:2] == (0, 50) for seed in range(100))
    assert 85 <= in_stall <= 95  # about 90% of consecutive seeds
    assert len(set(by_time.position(seed) for seed in range(100))) > 5  # starts differ
    by_step = toy.TraceEnv(trace='stall', start='step')
    assert sum(by_step.position(seed)[:2] == (0, 50) for seed in range(100)) <= 2  # 1 in 100


def test_a_seed_given_to_make_places_the_first_reset(fake_trace):
    env = envs.make('TraceEnv', trace='fake', seed=3)
    env.reset()
    assert _episode(env) == [(False, True, 5)]


def test_trace_env_refuses_a_path_or_an_unknown_trace_naming_the_known_ones(fake_trace):
    with pytest.raises(envs.EnvError, match=r"trace must be a name .* got '\.\./etc/passwd'"):
        envs.make('TraceEnv', trace='../etc/passwd')
    with pytest.raises(envs.EnvError, match=r"cannot read trace 'nope' .*; known: fake"):
        envs.make('TraceEnv', trace='nope')
    env = toy.TraceEnv(trace='fake')
    with pytest.raises(envs.EnvError, match='before the first reset'):
        env.step([0.5, 0.5])


@pytest.mark.parametrize('name, obs_size, act_size, limit', [
    ('l2m', 339, 22, 2500), ('arm2d', 16, 6, 200)])  # L2M2019Env: difficulty 3's limit
def test_the_committed_traces_have_the_real_envs_sizes_and_whole_episodes(name, obs_size,
                                                                          act_size, limit):
    with open(os.path.join(ROOT, 'bench', 'traces', name + '.json')) as f:
        trace = json.load(f)
    assert (trace['obs_size'], trace['act_size'], trace['max_episode_steps']) == (
        obs_size, act_size, limit)
    steps = [ms for e in trace['episodes'] for ms in e['steps_ms']]
    assert len(steps) >= 2000 and len(trace['episodes']) >= 3
    assert all(ms > 0 for ms in steps) and all(e['reset_ms'] > 0 for e in trace['episodes'])
    assert all(e['end'] in ('terminated', 'truncated') for e in trace['episodes'][:-1])
    for key in ('machine', 'date', 'command', 'loadavg_before', 'loadavg_after', 'stats'):
        assert key in trace
    # replayable as it is
    env = envs.make('TraceEnv', trace=name, time_scale=0, seed=1)
    assert len(env.reset()) == obs_size
    assert len(env.step([0.5] * act_size)[0]) == obs_size


def test_busy_env_burns_its_step_in_cpu_time():
    env = envs.make('BusyEnv', step_seconds=0.01, obs_size=4, act_size=2, episode_length=3)
    assert len(env.reset()) == 4
    inner = env.inner.inner.inner
    cpu = time.process_time()
    results = [env.step([0.5, 0.5]) for _ in range(3)]
    assert time.process_time() - cpu >= 0.03  # by construction: it loops until its CPU clock has
    assert inner.spins >= 1
    assert [r[3] for r in results] == [False, False, True]  # truncated at episode_length
    env.set_params(step_seconds=0)
    env.reset()
    env.step([0.5, 0.5])
    assert inner.step_seconds == 0 and inner.spins >= 1  # a zero-length step still does a round
    with pytest.raises(envs.EnvError, match='step_seconds must be a number >= 0'):
        envs.make('BusyEnv', step_seconds=-1)


@pytest.mark.slow
def test_trace_env_through_a_real_farm_steps_and_ends_episodes(tmp_path):
    # The farm's workers read the committed trace: a vector env of 2 steps past an episode end.
    import farmer
    from conftest import free_port
    port = free_port()
    with farmer.Farmer(farms=[('127.0.0.1', 2, port)]) as fm:
        with fm.vec_env('TraceEnv', 2, {'trace': 'arm2d', 'time_scale': 0, 'seed': 5}) as vec:
            assert vec.observation_space.shape == (16,) and vec.action_space.shape == (6,)
            vec.reset()
            ends = 0
            for _ in range(210):  # Arm2DEnv's episodes are 200 steps
                _, _, terminated, truncated, _ = vec.step(np.full((2, 6), 0.5))
                ends += int(np.count_nonzero(terminated | truncated))
            assert ends >= 2


def _run_quick(script, *extra, timeout=300):
    done = subprocess.run([sys.executable, os.path.join(ROOT, 'bench', script), '--quick',
                           '--json'] + list(extra), capture_output=True, timeout=timeout,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    lines = done.stdout.decode().splitlines()
    assert len(lines) == 1, done.stdout.decode()[-2000:]  # the JSON alone on stdout
    return json.loads(lines[0]), done.stderr.decode()


@pytest.mark.slow
def test_farm_bench_quick_measures_the_trace_and_osim_async_rows():
    result, _ = _run_quick('farm_bench.py', '--only', 'trace', '--only', 'osim_async',
                           '--trace-seconds', '1.5')
    for key in ('lockstep_l2m_trace_32', 'async_l2m_trace_32', 'lockstep_arm_trace_16',
                'async_arm_trace_16', 'osim_async_2', 'l2m_trace_32_ideal_steps_per_s',
                'osim_arm_async_2_steps_per_s', 'osim_arm_lockstep_2_steps_per_s'):
        assert result[key] > 0, key
    assert result['targets']['async_l2m_trace_32'] == '>= 0.9'
    assert result['leftover_farm_processes'] == []


@pytest.mark.slow
def test_farm_bench_slow32_reports_the_bare_ceiling_beside_the_farm():
    result, _ = _run_quick('farm_bench.py', '--only', 'slow32')
    for key in ('efficiency_slow_32', 'slow_32_farm_alone_efficiency', 'slow_32_bare_efficiency'):
        assert 0 < result[key] <= 1.0, (key, result[key])
    # Sleeping 30 ms per command, a vector step cannot be shorter than the sleep.
    assert result['slow_32_bare_vec_step_ms_median'] >= 30.0
    assert result['leftover_farm_processes'] == []


@pytest.mark.slow
def test_scale_bench_quick_prints_a_row_per_runner_and_n_and_the_table():
    result, stderr = _run_quick('scale_bench.py', '--max-n', '2', '--step-ms', '5')
    assert result['ns'] == [1, 2]
    seen = set((r['env'], r['n'], r['runner']) for r in result['rows'])
    assert seen == set((e, n, r) for e in ('busy', 'sleep') for n in (1, 2)
                       for r in ('farm_lockstep', 'farm_async', 'gym_async', 'bare'))
    assert all(r['steps_per_s'] > 0 for r in result['rows'])
    assert all(r['farm_async_vs_gym'] > 0 for r in result['ratios'])
    assert 'lock/gym' in stderr and result['leftover_farm_processes'] == []


@pytest.mark.slow
def test_latency_bench_quick_measures_both_links_and_modes():
    result, _ = _run_quick('latency_bench.py', '--steps', '16')
    for link in ('loopback', 'proxy'):
        for mode in ('lockstep', 'async'):
            assert result['%s_%s_steps_per_s' % (link, mode)] > 0
    for key in ('proxy_vs_loopback_lockstep', 'proxy_vs_loopback_async',
                'async_vs_lockstep_proxy'):
        assert result[key] > 0
    assert result['leftover_farm_processes'] == []


@pytest.mark.slow
def test_arm_reach_quick_scores_holds_for_the_evaluation_targets():
    pytest.importorskip('opensim')
    policy = os.path.join('results', 'policies', 'sac_Arm2DEnv_root_seed0')
    result, _ = _run_quick('arm_reach.py', '--policy', policy)
    assert result['holds_tried'] == 8 and 1 <= result['holds'] <= 8
    assert len(result['targets']) == 2
    for row in result['targets']:  # osim-rl's distribution: 0.3-0.65 m from (0, 0.8)
        assert 0.3 - 1e-3 <= row['radius_m'] <= 0.65 + 1e-3 and 0 <= row['angle_deg'] <= 120.1
        assert row['best_hold_distance_m'] >= 0 and len(row['activation']) == 6
    assert result['mean_best_hold_distance_m'] == pytest.approx(
        np.mean([r['best_hold_distance_m'] for r in result['targets']]), abs=1e-4)
    # the committed policy, scored by evaluate.py's code on the same two targets
    scored = [row['policy_distance_m'][policy] for row in result['targets']]
    assert all(0 <= d < 1 for d in scored)
    assert result['policies'][policy]['mean_distance_m'] == pytest.approx(np.mean(scored),
                                                                          abs=1e-4)


def test_a_hold_does_not_depend_on_the_reset_seed():
    """arm_reach shares holds between targets: where a hold puts the hand must not depend on the
    reset seed (it does by some hundredths of a millimetre: the integrator's, not the target's)."""
    pytest.importorskip('opensim')
    from bench import arm_reach
    env = envs.make('Arm2DEnv', sim='fast')
    try:
        holds = arm_reach.Holds(env, steps=10)
        holds.add([0.3, 0.7, 0.2, 0.9, 0.1, 0.5])
        holds.add([0.3, 0.7, 0.2, 0.9, 0.1, 0.5])  # reset with another seed (another target)
        np.testing.assert_allclose(holds.tails[0], holds.tails[1], atol=1e-3)
        scores = holds.scores([0.2, 0.5])
        assert scores[0] == pytest.approx(scores[1], abs=1e-3) and scores[0] > 0
    finally:
        env.close()


@pytest.mark.slow
def test_arm_statics_quick_orders_the_floors_for_the_evaluation_targets():
    pytest.importorskip('opensim')
    policy = os.path.join('results', 'policies', 'sac_Arm2DEnv_root_seed0')
    result, _ = _run_quick('arm_statics.py', '--policy', policy)
    assert len(result['targets']) == 2 and 0 < result['postures_at_rest'] < result['postures']
    for row in result['targets']:
        assert 0.3 - 1e-3 <= row['radius_m'] <= 0.65 + 1e-3 and 0 <= row['angle_deg'] <= 120.1
        # nearest posture at all <= nearest posture at rest
        assert 0 <= row['geometric_floor_m'] <= row['static_floor_m'] < 1
        assert (row['nearer_postures'] == 0) == (row['nearer_max_lift_nm'] is None)
    assert result['mean_static_floor_m'] == pytest.approx(
        np.mean([r['static_floor_m'] for r in result['targets']]), abs=1e-4)
    assert 0 < result['return_bound_at_rest'] <= 200
    scored = [row['policy_distance_m'][policy] for row in result['targets']]
    mine = result['policies'][policy]
    assert mine['mean_distance_m'] == pytest.approx(np.mean(scored), abs=1e-4)
    assert mine['mean_beyond_static_floor_m'] == pytest.approx(np.mean(
        [d - r['static_floor_m'] for d, r in zip(scored, result['targets'])]), abs=1e-4)


def test_arm_statics_finds_rest_low_and_none_for_the_arm_held_out_straight():
    """A real Arm2DEnv: the arm rests with the upper arm low (the muscles balance gravity), not
    held out straight forward, where even every muscle that helps leaves a net downward torque;
    and the lift, computed from each muscle's response alone, is what the model gives with those
    muscles on together (it is linear in the muscle forces)."""
    pytest.importorskip('opensim')
    from bench import arm_statics
    env = envs.make('Arm2DEnv', sim='fast')
    try:
        env.reset(seed=0)
        arm = arm_statics.ArmStatics(env)
        arm.pose((0.3, 0.6))
        base, response = arm.response()
        residual, activation = arm.rest(base, response)
        assert residual < 0.1
        assert np.abs(arm.accel(activation)).max() < 0.1  # the model itself, at that activation
        assert np.abs(base).max() > 1  # ... and not because nothing moves anyway
        hand = arm.pose((1.57, 0.0))  # straight out forward, at shoulder height
        assert hand[0] > 0.45 and abs(hand[1] - 0.8) < 0.05
        mass = arm.mass()
        assert mass[0, 0] > mass[1, 1] > 0 and mass[0, 1] == pytest.approx(mass[1, 0])
        base, response = arm.response()
        residual, _ = arm.rest(base, response)
        assert residual > 1
        lift = arm_statics.lift(mass, base, response)
        assert lift < 0
        helps = (mass[0].dot(response) > 0).astype(float)
        arm.pose((1.57, 0.0))
        assert mass[0].dot(arm.accel(helps)) == pytest.approx(lift, rel=0.02, abs=0.05)
    finally:
        env.close()


def test_arm_trajectory_correction_holds_each_knot_over_its_span_and_clips():
    from bench import arm_trajectory
    base = np.full((10, 2), 0.5)
    x = [0.1, -0.1, 0.2, -0.2, 0.7, -0.7]  # 3 knots x 2 muscles
    out = arm_trajectory.corrected(base, x, 3)
    assert out.shape == (10, 2)
    # steps 0-3 take knot 0, 4-6 knot 1, 7-9 knot 2 (step * knots // steps)
    np.testing.assert_allclose(out[:4], [[0.6, 0.4]] * 4)
    np.testing.assert_allclose(out[4:7], [[0.7, 0.3]] * 3)
    np.testing.assert_allclose(out[7:], [[1.0, 0.0]] * 3)  # clipped to the muscles' range
    np.testing.assert_allclose(arm_trajectory.corrected(base, np.zeros(6), 3), base)


@pytest.mark.slow
def test_arm_trajectory_quick_starts_from_the_policy_and_its_plan_replays():
    """The zero correction replays the policy's own episode, so the plan found is never worse;
    and the plan printed, replayed on a fresh environment, scores what the JSON says."""
    pytest.importorskip('opensim')
    policy = os.path.join('results', 'policies', 'sac_Arm2DEnv_root_seed2_200k')
    result, _ = _run_quick('arm_trajectory.py', '--policy', policy)
    assert result['searched_targets'] == [0] and result['env_kwargs']['frame_skip'] == 2
    (row,) = result['targets']
    assert row['episodes'] >= 6 and row['policy_length'] == row['planned_length'] == 100
    # the committed policy's distance on this target, as arm_statics.py scored it
    with open(os.path.join(ROOT, 'results', 'arm2d_statics_fine.json')) as f:
        statics = json.load(f)['targets'][0]
    assert row['policy_distance_m'] == pytest.approx(
        statics['policy_distance_m'][policy], abs=2e-3)
    assert 0 <= row['planned_distance_m'] <= row['policy_distance_m']
    from bench import arm_trajectory
    plan = np.asarray(row['planned_actions'])
    ret, dist, length = arm_trajectory.replay('Arm2DEnv', result['env_kwargs'],
                                              result['eval_seed'], plan)
    assert length == 100 and dist == pytest.approx(row['planned_distance_m'], abs=2e-3)
    assert ret == pytest.approx(row['planned_return'], abs=0.1)


@pytest.mark.parametrize('script', ['arm_reach.py', 'arm_statics.py', 'arm_trajectory.py'])
@pytest.mark.parametrize('policy, says', [
    (os.path.join('results', 'policies', 'no_such_policy'), 'no run directory'),
    (os.path.join('results', 'policies', 'sac_L2M2019Env'), 'not Arm2DEnv')])
@pytest.mark.slow
def test_arm_benches_refuse_a_wrong_policy_in_one_line_before_searching(script, policy, says):
    done = subprocess.run([sys.executable, os.path.join(ROOT, 'bench', script), '--quick',
                           '--policy', policy], capture_output=True, timeout=120, cwd=ROOT)
    err = done.stderr.decode().strip()
    assert done.returncode != 0 and done.stdout == b''
    assert 'Traceback' not in err and says in err.splitlines()[-1] and policy in err
