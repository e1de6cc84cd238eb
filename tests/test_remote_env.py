"""RemoteEnv (``Farmer().env(name)``): the single remote environment gives exactly the episodes of
the same environment stepped locally with the same seed, over several episodes."""
import numpy as np
import pytest

import farmer

# osim-rl's target field (envs/target/v_tgt_field.py) uses deprecated scipy and numpy calls
pytestmark = pytest.mark.filterwarnings('ignore::DeprecationWarning:envs.target.v_tgt_field')


def run_episodes(env, episodes, seed, act):
    """(obs, reward, terminated, truncated) of every step of ``episodes`` episodes; the first
    reset seeded, the later ones not (the usual gym loop)."""
    trace = []
    obs, _ = env.reset(seed=seed)
    trace.append(('reset', np.asarray(obs).tolist()))
    for episode in range(episodes):
        if episode:
            obs, _ = env.reset()
            trace.append(('reset', np.asarray(obs).tolist()))
        while True:
            obs, reward, terminated, truncated, _ = env.step(act())
            trace.append((np.asarray(obs).tolist(), float(reward), bool(terminated),
                          bool(truncated)))
            if terminated or truncated:
                break
    return trace


def test_remote_pendulum_equals_local_pendulum_over_several_episodes(thread_farm):
    """Regression: RemoteEnv reset twice per episode (the farm auto-resets, then reset() again),
    so from episode 2 on it differed from the same env stepped locally with the same seed."""
    import gymnasium
    f = thread_farm(capacity=1)
    with farmer.Farmer(farms=[('127.0.0.1', 1, f.port)], start_local=False) as fm:
        remote = fm.env('Pendulum-v1')
        rng = np.random.RandomState(7)
        got = run_episodes(remote, 3, 123,
                           lambda: rng.uniform(-2, 2, (1,)).astype(np.float32))
    local = gymnasium.make('Pendulum-v1')
    rng = np.random.RandomState(7)
    want = run_episodes(local, 3, 123, lambda: rng.uniform(-2, 2, (1,)).astype(np.float32))
    local.close()
    assert len(got) == len(want) == 3 * 201
    assert got == want  # exact: observations, rewards and ends


@pytest.mark.parametrize('name', ['FrozenLake-v1', 'Taxi-v4'])
def test_remote_discrete_env_gives_ints_as_the_local_one(thread_farm, name):
    """Regression: a Discrete observation came back as a float32 (0.0), outside Discrete(n).
    Now an int, the local environment's own, over several episodes."""
    import gymnasium
    f = thread_farm(capacity=1)
    local = gymnasium.make(name, max_episode_steps=15)
    with farmer.Farmer(farms=[('127.0.0.1', 1, f.port)], start_local=False) as fm:
        remote = fm.env(name, {'max_episode_steps': 15})
        assert remote.observation_space == local.observation_space
        obs, _ = remote.reset(seed=3)
        assert type(obs) is int and remote.observation_space.contains(obs)
        obs, _, _, _, _ = remote.step(1)
        assert type(obs) is int and remote.observation_space.contains(obs)
        rng = np.random.RandomState(5)
        got = run_episodes(remote, 3, 21, lambda: int(rng.randint(local.action_space.n)))
    rng = np.random.RandomState(5)
    want = run_episodes(local, 3, 21, lambda: int(rng.randint(local.action_space.n)))
    local.close()
    assert got == want


def test_remote_env_resets_once_per_episode(thread_farm):
    """CheapEnv's observation offsets by the seed; an unseeded reset by 0. After an episode the
    farm already reset it; reset() returns that observation, so the farm counts no extra reset."""
    f = thread_farm(capacity=1)
    with farmer.Farmer(farms=[('127.0.0.1', 1, f.port)], start_local=False) as fm:
        env = fm.env('CheapEnv', {'episode_length': 2})
        obs, _ = env.reset(seed=5)
        assert obs.tolist() == [0, 5, 5]
        resets_before = _resets(f, env)
        for _ in range(3):
            env.step(np.full(2, 0.5))
            obs, reward, terminated, truncated, info = env.step(np.full(2, 0.5))
            assert terminated and 'terminal_observation' not in info
            obs, _ = env.reset()
            assert obs.tolist() == [0, 0, 0]
        assert _resets(f, env) - resets_before == 3  # one per episode (the farm's auto-reset)
        obs, _ = env.reset(seed=9)  # a seed still resets on the farm
        assert obs.tolist() == [0, 9, 9]
        env.step(np.full(2, 0.5))
        obs, _ = env.reset()  # mid-episode: a real reset
        assert obs.tolist() == [0, 0, 0]


def _resets(thread_farm, env):
    place = env.vec.places[0]
    return thread_farm.farm.ledger.slot(place.env_id).worker.resets


def _osim_available():
    try:
        import osim.env  # noqa: F401
        return True
    except Exception:
        return False


@pytest.mark.skipif(not _osim_available(), reason='osim-rl is not installed')
@pytest.mark.slow
def test_remote_l2m_equals_local_l2m_over_two_short_episodes(thread_farm):
    """The same for L2M2019Env (seeded through envs.seeding on both sides), 2 episodes cut at 15
    steps (truncated), so the test stays short."""
    import envs
    kwargs = {'max_episode_steps': 15}
    f = thread_farm(capacity=1)
    with farmer.Farmer(farms=[('127.0.0.1', 1, f.port)], start_local=False) as fm:
        remote = fm.env('L2M2019Env', kwargs)
        low, high = remote.action_space.low, remote.action_space.high
        rng = np.random.RandomState(3)
        got = run_episodes(remote, 2, 11, lambda: rng.uniform(low, high).astype(np.float32))
    local = LocalEnv(envs.make('L2M2019Env', **kwargs))
    rng = np.random.RandomState(3)
    want = run_episodes(local, 2, 11, lambda: rng.uniform(low, high).astype(np.float32))
    local.close()
    assert len(got) == len(want) == 2 * 16
    assert got == want


class LocalEnv(object):
    """An envs/ adapter in this process with the gym interface RemoteEnv has: the adapter's
    step returns plain data; observations become float32 as the farmer's do."""

    def __init__(self, adapter):
        self.adapter = adapter

    def reset(self, seed=None):
        return np.asarray(self.adapter.reset(seed), dtype=np.float32), {}

    def step(self, action):
        obs, reward, terminated, truncated, info = self.adapter.step(
            np.asarray(action, dtype=np.float64).tolist())
        return np.asarray(obs, dtype=np.float32), reward, terminated, truncated, info

    def close(self):
        self.adapter.close()
