"""Seeding (envs/seeding.py): the same seed gives the same episodes for every served environment,
osim-rl's included, in-process and through a farm (real worker processes), bit for bit; a different
seed gives different ones. Episodes after the first are auto-resets without a seed."""
import numpy as np
import pytest

import envs

# name, make kwargs (short episodes: at least 2 episodes within STEPS), steps
CASES = [
    ('CheapEnv', {'episode_length': 4}, 10),
    ('SlowEnv', {'step_seconds': 0.0, 'obs_size': 6, 'act_size': 2, 'episode_length': 4}, 10),
    ('Pendulum-v1', {'max_episode_steps': 5}, 12),
    ('Arm2DEnv', {'max_episode_steps': 6, 'integrator_accuracy': 1e-3}, 14),
    ('L2M2019Env', {'max_episode_steps': 6, 'difficulty': 2, 'integrator_accuracy': 1e-3}, 14),
]
IDS = [case[0] for case in CASES]


def actions(space, steps):
    """The same random actions every time (a seeded numpy rng of the test's own)."""
    rng = np.random.RandomState(1234)
    if space['kind'] == 'discrete':
        return [[int(rng.randint(space['n']))] for _ in range(steps)]
    low, high = np.asarray(space['low']), np.asarray(space['high'])
    return [rng.uniform(low, high).tolist() for _ in range(steps)]


def trace_of(env, seed, steps, reset_seed=True):
    """What a farm's worker does: reset (with ``seed``), then steps, resetting without a seed
    where an episode ends. Returns the observations, rewards and flags, as plain lists."""
    out = [np.asarray(env.reset(seed if reset_seed else None), dtype=float).tolist()]
    episodes = 1
    for action in actions(env.action_space, steps):
        obs, reward, terminated, truncated, _ = env.step(action)
        out.append([np.asarray(obs, dtype=float).tolist(), float(reward), terminated, truncated])
        if terminated or truncated:
            out.append(np.asarray(env.reset(None), dtype=float).tolist())
            episodes += 1
    assert episodes >= 3, 'the case must cover at least 2 whole episodes'
    return out


def local_trace(name, kwargs, seed, steps):
    env = envs.make(name, **kwargs)
    try:
        return trace_of(env, seed, steps)
    finally:
        env.close()


def farm_trace(proxy, name, kwargs, seed, steps, reset_seed=True):
    """The same through a farm: ``reset(lease, ids, seeds)``, then ``step`` with auto-reset (the
    next episode's first observation comes back with the step that ended one)."""
    lease = proxy.open_lease(60)
    spec = proxy.make(lease, name, kwargs, 1)
    ids = spec['env_ids']
    try:
        out = [proxy.reset(lease, ids, [seed] if reset_seed else None)[0]]
        for action in actions(spec['action_space'], steps):
            result = proxy.step(lease, ids, [action], True)[0]
            assert 'error' not in result, result
            obs, reward, terminated, truncated, info = result
            if terminated or truncated:
                out.append([info['terminal_observation'], reward, terminated, truncated])
                out.append(obs)
            else:
                out.append([obs, reward, terminated, truncated])
        return out
    finally:
        proxy.close_lease(lease)


@pytest.mark.parametrize('name,kwargs,steps', CASES, ids=IDS)
@pytest.mark.slow
def test_same_seed_same_episodes_different_seed_different_ones(name, kwargs, steps):
    first = local_trace(name, kwargs, 7, steps)
    assert local_trace(name, kwargs, 7, steps) == first
    assert local_trace(name, kwargs, 8, steps) != first


@pytest.mark.parametrize('name,kwargs,steps', CASES, ids=IDS)
@pytest.mark.slow
def test_a_seed_at_make_seeds_the_first_reset(name, kwargs, steps):
    seeded_reset = local_trace(name, kwargs, 11, steps)
    env = envs.make(name, seed=11, **kwargs)  # refused for Arm2DEnv before
    try:
        assert trace_of(env, None, steps) == seeded_reset
    finally:
        env.close()


@pytest.mark.parametrize('name,kwargs,steps', CASES, ids=IDS)
@pytest.mark.slow
def test_through_a_farm_equals_in_process_bit_for_bit(thread_farm, name, kwargs, steps):
    proxy = thread_farm(capacity=2).proxy()
    local = local_trace(name, kwargs, 21, steps)
    assert farm_trace(proxy, name, kwargs, 21, steps) == local
    assert farm_trace(proxy, name, dict(kwargs, seed=21), None, steps, reset_seed=False) == local
    assert farm_trace(proxy, name, kwargs, 22, steps) != local


@pytest.mark.slow
def test_seeded_envs_in_one_process_keep_their_own_streams():
    """Arm2DEnv draws its targets from Python's global ``random``: two of them interleaved in one
    process (an in-process vectorized env) give each one's episodes as if it ran alone."""
    kwargs = {'max_episode_steps': 3, 'integrator_accuracy': 1e-3}
    alone = [local_trace('Arm2DEnv', kwargs, seed, 9) for seed in (3, 4)]
    pair = [envs.make('Arm2DEnv', **kwargs) for _ in range(2)]
    try:
        traces = [[np.asarray(env.reset(seed), dtype=float).tolist()]
                  for env, seed in zip(pair, (3, 4))]
        plan = actions(pair[0].action_space, 9)
        for action in plan:
            for env, trace in zip(pair, traces):
                obs, reward, terminated, truncated, _ = env.step(action)
                trace.append([np.asarray(obs, dtype=float).tolist(), float(reward), terminated,
                              truncated])
                if terminated or truncated:
                    trace.append(np.asarray(env.reset(None), dtype=float).tolist())
    finally:
        for env in pair:
            env.close()
    assert traces == alone


def test_seeds_are_checked_and_derived_apart():
    from envs import seeding
    for bad in (-1, 1.5, '3', True):
        with pytest.raises(envs.EnvError, match='seed must be a non-negative integer'):
            envs.make('CheapEnv', seed=bad)
        with pytest.raises(envs.EnvError, match='seed must be a non-negative integer'):
            envs.make('CheapEnv').reset(bad)
    # numpy takes 32 bits: seeds that agree in their low 32 bits still give different streams
    big = 2 ** 40 + 5
    assert local_trace('SlowEnv', CASES[1][1], big, 10) != local_trace('SlowEnv', CASES[1][1], 5, 10)
    assert seeding.derive(5, 'numpy') != seeding.derive(big, 'numpy')
    assert seeding.derive(5, 'numpy') != seeding.derive(5, 'random')
    assert seeding.derive(5, 'numpy') == seeding.derive(5, 'numpy') < 2 ** 32


def test_a_recycled_worker_continues_from_the_successor_seed(thread_farm):
    """A worker recycled after 2 resets is replaced by one built with the successor of its last
    seed: the episodes neither replay the seeded ones nor become unrepeatable."""
    kwargs = {'step_seconds': 0.0, 'obs_size': 4, 'act_size': 2, 'episode_length': 2}

    def firsts(proxy):
        lease = proxy.open_lease(60)
        ids = proxy.make(lease, 'SlowEnv', kwargs, 1)['env_ids']
        starts = [proxy.reset(lease, ids, [5])[0]]
        pids = set()
        for _ in range(12):
            obs, _, _, truncated, _ = proxy.step(lease, ids, [[0.5, 0.5]], True)[0]
            if truncated:
                starts.append(obs)
            pids.add(proxy.worker_pids(lease)[str(ids[0])])
        proxy.close_lease(lease)
        assert len(pids) >= 3  # recycled at least twice
        return starts

    proxy = thread_farm(capacity=1, recycle_resets=2).proxy()
    starts = firsts(proxy)
    assert len(starts) == 7
    assert len(set(tuple(s) for s in starts)) == 7  # no episode replayed
    assert firsts(proxy) == starts  # and the same again
