"""The farm for stable-baselines3 and gymnasium users: vecenv/sb3.py and
vecenv/gym_vector.py, each over the in-process reference and a real farm (thread_farm: a Pyro4
daemon in this process, one worker process per environment).

- SB3: SAC fills the same replay buffer (obs, actions, rewards, next obs, dones, timeouts)
  through the adapter as through SB3's own DummyVecEnv, for the same seeds; SAC trains through
  it; SB3's evaluate_policy and VecCheckNan take it and see the same episodes.
- gymnasium: a seeded random-action rollout, autoresets included, equals SyncVectorEnv's in
  SAME_STEP mode, infos and RecordEpisodeStatistics included.
- Either: a worker killed mid-episode shows as a truncated episode with the reason; importing
  an adapter without its library is one line that says what to install; a gym id with a
  ``Discrete`` observation space (FrozenLake, Taxi, CliffWalking) gives int observations inside
  it, as the peers' own vector envs do.
- The peers' small print: gymnasium's per-env ``np_random_seed`` and its TypeError for a scalar
  action; SB3's VecMonitor over the adapter finds no Monitor to warn about.

The SB3 tests skip where stable-baselines3 (and torch) are not installed: they are optional
(requirements-bench.txt; ``./setup.sh --bench``).
"""
import os
import signal
import subprocess
import sys
import time
import warnings

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import data_equivalence
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from conftest import ROOT, alive
from vecenv.gym_vector import GymVectorEnv
from test_farmer import farm_vec, make_vec  # noqa: F401  (make_vec: in-process and farm)

try:
    import stable_baselines3  # noqa: F401
    import torch
    HAVE_SB3 = True
except ImportError:
    HAVE_SB3 = False
needs_sb3 = pytest.mark.skipif(
    not HAVE_SB3, reason='stable-baselines3 and torch are optional: '
    '.venv/bin/python -m pip install -r requirements-bench.txt (or ./setup.sh --bench)')

EPISODE = 20  # Pendulum-v1 episodes cut short, so a few hundred steps hold several autoresets


def pendulum(max_episode_steps=EPISODE):
    return gymnasium.make('Pendulum-v1', max_episode_steps=max_episode_steps)


def farm_pendulums(thread_farm, n=2):
    """A real farm (a thread of this process, a worker process per env) and ``n`` Pendulums
    on it as one vecenv/contract.py vector env."""
    f = thread_farm(capacity=n)
    return f, farm_vec([('127.0.0.1', n, f.port)], 'Pendulum-v1', n,
                       {'max_episode_steps': EPISODE})


# --- stable-baselines3 ----------------------------------------------------------------------------
def sb3_adapter(make_vec, n, **kwargs):
    from vecenv.sb3 import SB3VecEnv
    return SB3VecEnv(make_vec('Pendulum-v1', n, max_episode_steps=EPISODE, **kwargs))


def dummy(n, monitor=False):
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv
    return DummyVecEnv([(lambda: Monitor(pendulum())) if monitor else pendulum
                        for _ in range(n)])


def sac(env, learning_starts, seed=0, **kwargs):
    from stable_baselines3 import SAC
    torch.set_num_threads(1)  # 2 cores, shared with the other tests
    return SAC('MlpPolicy', env, learning_starts=learning_starts, seed=seed, device='cpu',
               policy_kwargs={'net_arch': [16]}, batch_size=32, **kwargs)


def transitions(env, steps, seed):
    """What SAC stores in its replay buffer over ``steps`` env steps of random actions
    (learning_starts beyond the steps: the actions are SB3's seeded random samples)."""
    model = sac(env, learning_starts=10 * steps, seed=seed, buffer_size=2 * steps)
    model.learn(steps)
    buffer = model.replay_buffer
    assert not buffer.full
    return dict((name, getattr(buffer, name)[:buffer.pos].copy()) for name in
                ('observations', 'actions', 'rewards', 'next_observations', 'dones', 'timeouts'))


@needs_sb3
@pytest.mark.slow
def test_sb3_sac_stores_the_same_transitions_as_through_dummy_vec_env(make_vec):
    env = sb3_adapter(make_vec, 2)
    theirs = dummy(2)
    try:
        ours, reference = transitions(env, 120, seed=3), transitions(theirs, 120, seed=3)
    finally:
        theirs.close()
    assert ours['observations'].shape == (60, 2, 3)
    assert ours['timeouts'].sum() == 2 * (60 // EPISODE)  # episode ends: time limits
    assert ours['dones'].sum() == ours['timeouts'].sum()
    for name, value in reference.items():
        assert ours[name].dtype == value.dtype, name
        np.testing.assert_array_equal(ours[name], value, err_msg=name)


@needs_sb3
def test_sb3_seeds_apply_to_the_next_reset_only(make_vec):
    env = sb3_adapter(make_vec, 2)
    theirs = dummy(2)
    try:
        assert env.seed(11) == theirs.seed(11) == [11, 12]
        first = env.reset()
        np.testing.assert_array_equal(first, theirs.reset())
        assert not np.array_equal(env.reset(), first)  # unseeded: the episodes go on differing
        env.seed(11)
        np.testing.assert_array_equal(env.reset(), first)
    finally:
        theirs.close()


@needs_sb3
@pytest.mark.slow
def test_sb3_sac_trains_through_a_farm(thread_farm):
    from vecenv.sb3 import SB3VecEnv
    env = SB3VecEnv(farm_pendulums(thread_farm)[1])
    try:
        model = sac(env, learning_starts=64)
        before = [p.detach().clone() for p in model.policy.actor.parameters()]
        model.learn(200)
        assert model.num_timesteps == 200 and model._n_updates > 0
        after = list(model.policy.actor.parameters())
        assert any(not torch.equal(a, b) for a, b in zip(before, after))
        # SB3's logger reads whole episodes from info['episode'], as a Monitor writes it
        episodes = list(model.ep_info_buffer)
        assert len(episodes) == 2 * (100 // EPISODE)
        assert all(e['l'] == EPISODE and set(e) == {'r', 'l', 't'} for e in episodes)
    finally:
        env.close()


def said(caught, *words):
    """The messages of recorded warnings that name any of ``words``."""
    return [str(w.message) for w in caught if any(word in str(w.message) for word in words)]


@needs_sb3
def test_sb3_evaluate_policy_and_vec_check_nan_see_the_episodes_a_monitor_sees(make_vec):
    """Through VecMonitor, as SB3 evaluates any VecEnv without a Monitor per env (EnvPool's,
    Procgen's): no warning, and the episodes DummyVecEnv of Monitors gives."""
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.vec_env import VecCheckNan, VecMonitor
    model = sac(dummy(2), learning_starts=100)

    def episodes(env):
        env.seed(5)
        checked = VecCheckNan(env, raise_exception=True)
        try:
            return evaluate_policy(model, checked, n_eval_episodes=4, deterministic=True,
                                   return_episode_rewards=True, warn=True)
        finally:
            checked.close()

    # (recorded, not raised: the filter is process-wide, and the farm's daemon thread warns)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        returns, lengths = episodes(VecMonitor(sb3_adapter(make_vec, 2)))
    assert not said(caught, 'Monitor', 'render_mode'), said(caught, '')
    their_returns, their_lengths = episodes(dummy(2, monitor=True))
    assert lengths == their_lengths == [EPISODE] * 4
    # (VecMonitor sums rewards in float32, Monitor in float64 rounded to 6 places)
    np.testing.assert_allclose(returns, their_returns, rtol=1e-5)


@needs_sb3
def test_sb3_vec_monitor_finds_no_monitor_to_warn_about(make_vec):
    """Regression: the adapter answered env_is_wrapped(Monitor) True (it writes
    info['episode'] as a Monitor would), so VecMonitor warned that a Monitor was there."""
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import VecMonitor
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        theirs = VecMonitor(dummy(2))
        ours = VecMonitor(sb3_adapter(make_vec, 2))
    assert not said(caught, 'Monitor'), said(caught, 'Monitor')
    assert ours.env_is_wrapped(Monitor) == theirs.env_is_wrapped(Monitor) == [False, False]
    # and the episodes it records are the adapter's (the same as DummyVecEnv's)
    ours.seed(3)
    ours.reset()
    for _ in range(EPISODE):
        _, _, dones, infos = ours.step(np.zeros((2, 1), dtype=np.float32))
    assert dones.all() and [info['episode']['l'] for info in infos] == [EPISODE] * 2
    theirs.close()
    ours.close()


@needs_sb3
def test_sb3_what_a_farm_can_and_cannot_answer(make_vec):
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import VecNormalize
    env = sb3_adapter(make_vec, 2)
    assert env.get_attr('render_mode') == [None, None] and env.render_mode is None
    assert env.get_attr('max_episode_steps', indices=1) == [EPISODE]
    assert not env.has_attr('np_random')
    assert env.env_is_wrapped(Monitor) == [False, False]  # (VecMonitor is SB3's way)
    assert env.env_is_wrapped(gymnasium.wrappers.TimeAwareObservation) == [False, False]
    with pytest.raises(NotImplementedError, match='other processes'):
        env.set_attr('difficulty', 2)
    with pytest.raises(NotImplementedError, match='other processes'):
        env.env_method('compute_reward')
    env.set_options({'difficulty': 2})
    with pytest.raises(ValueError, match='no reset options'):
        env.reset()
    env.set_options(None)
    normalized = VecNormalize(env)  # an SB3 wrapper over the adapter
    assert normalized.reset().shape == (2, 3)
    with pytest.warns(UserWarning, match='render_mode'):
        assert env.render() is None


@needs_sb3
def test_sb3_set_params_reaches_the_environments_at_their_next_reset(make_vec):
    from vecenv.sb3 import SB3VecEnv
    env = SB3VecEnv(make_vec('CheapEnv', 2, episode_length=3))
    env.reset()
    # from an SB3 callback: env_method with SB3's indices; or the adapter's own call
    assert env.env_method('set_params', offset=50, indices=1) == [None]
    env.set_params({'episode_length': 2})
    obs = env.reset()
    assert obs[:, 1].tolist() == [0.0, 50.0]
    dones = [env.step(np.full((2, 2), 0.5))[2].tolist() for _ in range(2)]
    assert dones == [[False, False], [True, True]]
    with pytest.raises(ValueError, match='unknown parameter speed; accepted: episode_length'):
        env.env_method('set_params', speed=1.0)
    with pytest.raises(TypeError, match='keywords or as one dict'):
        env.env_method('set_params', {'offset': 1}, offset=2)


@needs_sb3
def test_sb3_a_killed_worker_ends_its_episode_as_a_time_limit(thread_farm):
    from vecenv.sb3 import SB3VecEnv
    f, vec = farm_pendulums(thread_farm)
    env = SB3VecEnv(vec)
    try:
        obs = env.reset()
        kill_worker(f, env.venv, 1)
        obs2, rewards, dones, infos = env.step(np.zeros((2, 1), dtype=np.float32))
        assert dones.tolist() == [False, True]
        assert infos[1]['TimeLimit.truncated'] and infos[1]['lost_cause'] == 'worker'
        np.testing.assert_array_equal(infos[1]['terminal_observation'], obs[1])
        assert rewards[1] == 0.0 and infos[1]['episode']['l'] == 1
    finally:
        env.close()


def kill_worker(farm, vec, i):
    """SIGKILL the worker process of vector index ``i``; returns once it is gone."""
    place = vec.places[i]
    pid = int(farm.proxy().worker_pids(place.lease)[str(place.env_id)])
    os.kill(pid, signal.SIGKILL)
    deadline = time.time() + 10
    while alive(pid) and time.time() < deadline:
        time.sleep(0.05)


# --- gymnasium -------------------------------------------------------------------------------------
def reference(n):
    return SyncVectorEnv([pendulum for _ in range(n)], autoreset_mode=AutoresetMode.SAME_STEP)


def assert_same(ours, theirs):
    """Equal step or reset results; RecordEpisodeStatistics' episode times aside."""
    ours, theirs = list(ours), list(theirs)
    info, their_info = ours.pop(), theirs.pop()
    assert data_equivalence(ours, theirs, exact=True), (ours, theirs)
    episode, their_episode = info.pop('episode', None), their_info.pop('episode', None)
    assert data_equivalence(info, their_info, exact=True), (info, their_info)
    if their_episode is None:
        assert episode is None
    else:
        for key in ('r', 'l'):
            np.testing.assert_array_equal(episode[key], their_episode[key])


def test_gym_rollout_equals_sync_vector_env_same_step(make_vec):
    """Several episodes per env, autoresets, a reseeded reset: every result and info equal."""
    from gymnasium.wrappers.vector import RecordEpisodeStatistics
    ours = RecordEpisodeStatistics(GymVectorEnv(make_vec('Pendulum-v1', 3,
                                                         max_episode_steps=EPISODE)))
    theirs = RecordEpisodeStatistics(reference(3))
    try:
        assert ours.metadata['autoreset_mode'] == theirs.metadata['autoreset_mode']
        assert ours.single_observation_space == theirs.single_observation_space
        assert ours.action_space == theirs.action_space
        assert ours.observation_space == theirs.observation_space
        theirs.action_space.seed(0)
        ends = 0
        for seed, steps in ((42, 3 * EPISODE + 5), (7, EPISODE + 2)):
            assert_same(ours.reset(seed=seed), theirs.reset(seed=seed))
            for _ in range(steps):
                actions = theirs.action_space.sample()
                result = ours.step(actions)
                assert_same(result, theirs.step(actions))
                ends += int(result[3].sum())
        assert ends == 3 * 4 and len(ours.return_queue) == 3 * 4
        assert list(ours.length_queue) == [EPISODE] * 12
    finally:
        ours.close()
        theirs.close()


def test_gym_final_obs_is_the_last_observation_and_obs_the_next_first(make_vec):
    envs = GymVectorEnv(make_vec('CheapEnv', 2, episode_length=2))
    obs, infos = envs.reset(seed=[10, 11])
    assert obs.tolist() == [[0, 10, 10], [0, 11, 11]] and infos == {}
    envs.step(np.full((2, 2), 0.5))
    obs, rewards, terminations, truncations, infos = envs.step(np.zeros((2, 2)))
    assert terminations.all() and not truncations.any()
    assert obs[:, 0].tolist() == [0, 0]  # SAME_STEP: already the next episode
    assert infos['_final_obs'].tolist() == [True, True]
    assert [o.tolist() for o in infos['final_obs']] == [[2, 12, 12], [2, 13, 13]]
    assert 'episode' not in infos  # RecordEpisodeStatistics' job, which supports SAME_STEP
    envs.close()
    assert envs.closed


def test_gym_refuses_what_the_farm_cannot_do(make_vec):
    envs = GymVectorEnv(make_vec('CheapEnv', 2, episode_length=2))
    with pytest.raises(ValueError, match='no reset options'):
        envs.reset(options={'reset_mask': np.array([True, False])})
    with pytest.raises(ValueError, match='seed \\+ i'):
        envs.reset(seed=[3, 3])
    with pytest.raises(ValueError, match='3 seeds for 2'):
        envs.reset(seed=[1, 2, 3])
    with pytest.raises(NotImplementedError, match='evaluate.py'):
        envs.render()
    # gymnasium's own check: observation wrappers need NEXT_STEP, and say so
    with pytest.raises(ValueError, match='NEXT_STEP'):
        gymnasium.wrappers.vector.TransformObservation(envs, lambda obs: obs)


def test_gym_np_random_seed_is_one_per_environment(make_vec):
    """Regression: it was the adapter's one seed; SyncVectorEnv's is a tuple, env i's own."""
    ours = GymVectorEnv(make_vec('Pendulum-v1', 2, max_episode_steps=EPISODE))
    theirs = reference(2)
    try:
        unknown = ours.np_random_seed  # no seeded reset yet: gymnasium's -1, "unknown"
        assert unknown == (-1, -1)
        assert isinstance(theirs.np_random_seed, tuple) and len(theirs.np_random_seed) == 2
        ours.reset(seed=5)
        theirs.reset(seed=5)
        assert ours.np_random_seed == theirs.np_random_seed == (5, 6)
        ours.reset()  # an unseeded reset goes on from the seeded one
        theirs.reset()
        assert ours.np_random_seed == theirs.np_random_seed == (5, 6)
        ours.reset(seed=[8, 9])
        theirs.reset(seed=[8, 9])
        assert ours.np_random_seed == theirs.np_random_seed == (8, 9)
    finally:
        ours.close()
        theirs.close()


def test_gym_a_scalar_action_is_a_type_error_as_in_gymnasium(make_vec):
    """Regression: a scalar action was a ValueError here; gymnasium raises TypeError (it cannot
    iterate over it); a wrong number of rows is a ValueError in both."""
    ours = GymVectorEnv(make_vec('Pendulum-v1', 2, max_episode_steps=EPISODE))
    theirs = reference(2)
    try:
        ours.reset(seed=0)
        theirs.reset(seed=0)
        for action in (0.5, np.float32(0.5), np.array(0.5)):
            for envs in (theirs, ours):
                with pytest.raises(TypeError):
                    envs.step(action)
        for envs in (theirs, ours):
            with pytest.raises(ValueError):
                envs.step(np.zeros((3, 1), dtype=np.float32))
        # the refused steps left nothing pending (SyncVectorEnv stepped its first envs before
        # its ValueError, so the two differ from here on)
        assert ours.step(np.zeros((2, 1), dtype=np.float32))[0].shape == (2, 3)
    finally:
        ours.close()
        theirs.close()


def test_gym_set_params_reaches_the_environments_at_their_next_reset(make_vec):
    envs = GymVectorEnv(make_vec('CheapEnv', 2, episode_length=3))
    envs.reset()
    assert envs.call('set_params', episode_length=2) == (None, None)
    envs.set_params({'offset': 50}, indices=[1])
    obs, _ = envs.reset()
    assert obs[:, 1].tolist() == [0.0, 50.0]
    ended = [envs.step(np.full((2, 2), 0.5))[2].tolist() for _ in range(2)]
    assert ended == [[False, False], [True, True]]
    with pytest.raises(ValueError, match='unknown parameter speed; accepted: episode_length'):
        envs.call('set_params', {'speed': 1.0})
    with pytest.raises(NotImplementedError, match='set_params calls only'):
        envs.call('get_wrapper_attr', 'np_random')


def test_gym_a_killed_worker_ends_its_episode_truncated_with_the_reason(thread_farm):
    f, vec = farm_pendulums(thread_farm)
    envs = GymVectorEnv(vec)
    try:
        obs, _ = envs.reset(seed=1)
        kill_worker(f, envs.venv, 0)
        _, rewards, terminations, truncations, infos = envs.step(np.zeros((2, 1)))
        assert truncations.tolist() == [True, False] and not terminations.any()
        assert infos['_final_info'].tolist() == [True, False]
        assert infos['final_info']['lost_cause'][0] == 'worker'
        assert 'env' in infos['final_info']['lost'][0]
        np.testing.assert_array_equal(infos['final_obs'][0], obs[0])
    finally:
        envs.close()


# --- Discrete observation spaces --------------------------------------------------------------------
DISCRETE = ['FrozenLake-v1', 'Taxi-v4', 'CliffWalking-v1']


@pytest.mark.parametrize('name', DISCRETE)
def test_discrete_observations_are_ints_inside_the_space_in_both_modes(make_vec, name):
    """Regression: FarmVecEnv.reset failed with a bare numpy broadcast error and the in-process
    env returned float rows [[k]], outside Discrete(n)."""
    vec = make_vec(name, 2)
    space = vec.observation_space
    assert isinstance(space, gymnasium.spaces.Discrete)
    local = gymnasium.make(name)
    want = [local.reset(seed=4 + i)[0] for i in range(2)]

    def check(obs):
        assert obs.dtype == np.int64 and obs.shape == (len(obs),)
        assert all(space.contains(o) for o in obs), obs

    obs = vec.reset(seed=4)
    check(obs)
    assert obs.tolist() == want
    for _ in range(3):
        obs, _, _, _, infos = vec.step(np.array([1, 0]))
        check(obs)
    vec.async_reset(seed=4)
    obs, _, _, _, infos = vec.recv(batch_size=2, timeout=30)
    check(obs)
    assert dict(zip([info['env_id'] for info in infos], obs.tolist())) == {0: want[0], 1: want[1]}
    vec.send(np.array([[2], [3]]), [1, 0])
    while vec.in_flight:
        check(vec.recv(timeout=30)[0])
    local.close()


def test_discrete_gym_rollout_equals_sync_vector_env_same_step(make_vec):
    """FrozenLake (slippery: the seeds matter) through the gymnasium adapter: observations,
    rewards, ends and final observations as SyncVectorEnv's. (Its infos differ on purpose: a
    farm sends no reset info, SyncVectorEnv merges the autoreset's into the step's.)"""
    ours = GymVectorEnv(make_vec('FrozenLake-v1', 3))
    theirs = SyncVectorEnv([lambda: gymnasium.make('FrozenLake-v1') for _ in range(3)],
                           autoreset_mode=AutoresetMode.SAME_STEP)
    try:
        assert ours.single_observation_space == theirs.single_observation_space
        assert ours.observation_space == theirs.observation_space  # MultiDiscrete([16 16 16])
        obs, _ = ours.reset(seed=11)
        their_obs, _ = theirs.reset(seed=11)
        assert data_equivalence(obs, their_obs, exact=True) and obs in ours.observation_space
        theirs.action_space.seed(0)
        ends = 0
        for _ in range(60):
            actions = theirs.action_space.sample()
            got, want = ours.step(actions), theirs.step(actions)
            assert data_equivalence(got[:4], want[:4], exact=True), (got, want)
            assert got[0] in ours.observation_space
            if want[2].any() or want[3].any():
                for key in ('final_obs', '_final_obs'):
                    assert data_equivalence(got[4][key], want[4][key], exact=True), key
            ends += int((want[2] | want[3]).sum())
        assert ends >= 3  # autoresets happened
    finally:
        ours.close()
        theirs.close()


@needs_sb3
def test_discrete_sb3_steps_equal_dummy_vec_env_and_ppo_learns_through_it(make_vec):
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv
    from vecenv.sb3 import SB3VecEnv
    ours = SB3VecEnv(make_vec('FrozenLake-v1', 2))
    theirs = DummyVecEnv([lambda: gymnasium.make('FrozenLake-v1') for _ in range(2)])
    try:
        assert ours.seed(7) == theirs.seed(7)
        obs, their_obs = ours.reset(), theirs.reset()
        assert obs.dtype == their_obs.dtype == np.int64 and obs.tolist() == their_obs.tolist()
        rng = np.random.RandomState(0)
        for _ in range(40):
            actions = rng.randint(4, size=2)
            (obs, rewards, dones, infos), want = ours.step(actions), theirs.step(actions)
            assert obs.dtype == want[0].dtype and obs.tolist() == want[0].tolist()
            assert rewards.tolist() == want[1].tolist() and dones.tolist() == want[2].tolist()
            for info, their_info in zip(infos, want[3]):
                if 'terminal_observation' in their_info:
                    assert info['terminal_observation'] == their_info['terminal_observation']
        torch.set_num_threads(1)
        model = PPO('MlpPolicy', ours, n_steps=16, batch_size=16, n_epochs=1, seed=0,
                    device='cpu', policy_kwargs={'net_arch': [8]})
        model.learn(32)
        assert model.num_timesteps == 32
    finally:
        ours.close()
        theirs.close()


# --- without the optional libraries ----------------------------------------------------------------
@pytest.mark.parametrize('module, missing, says', [
    ('vecenv.sb3', 'stable_baselines3', 'pip install -r requirements-bench.txt'),
    ('vecenv.gym_vector', 'gymnasium', 'pip install "gymnasium>=1.0"'),
])
def test_importing_an_adapter_without_its_library_is_one_line(module, missing, says):
    script = ('import sys; sys.modules[%r] = None\n'  # as if not installed
              'from common import errors; errors.install_excepthook(program="learner")\n'
              'try:\n'
              '    import %s\n'
              'except ImportError as e:\n'
              '    print("an ImportError")\n'
              'import %s\n' % (missing, module, module))
    proc = subprocess.run([sys.executable, '-c', script], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode != 0 and proc.stdout == 'an ImportError\n'
    lines = proc.stderr.splitlines()
    path = module.replace('.', '/') + '.py'
    assert len(lines) == 1 and lines[0].startswith('learner: %s needs' % path), proc.stderr
    assert says in lines[0]
