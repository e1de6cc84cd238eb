"""The simulator's speed knobs (envs.SIM_PRESETS, sim=, integrator_accuracy, frame_skip) and the
guard every served env gets (envs/guard.py): a diverging step or one past its step budget ends
the episode as truncated, and nothing non-finite is handed on; in-process and through a farm."""
import math

import numpy as np
import pytest

import envs
import farmer
from envs import guard, registry
from envs.base import EnvAdapter, EnvError, box, unbounded_box
from vecenv.contract import InProcessVecEnv


class BlowUpEnv(EnvAdapter):
    """Steps ``1, 2, ...``; at step ``at`` the observation (``what='obs'``) or the reward
    (``what='reward'``) becomes ``value``; ``reset_value`` puts a non-finite value into the
    first observation. Counts the steps it was asked to take."""
    name = 'BlowUpEnv'

    def __init__(self, at=3, what='obs', value=float('nan'), reset_value=None):
        self.observation_space = unbounded_box(2)
        self.action_space = box([0.0], [1.0])
        self.at, self.what, self.value, self.reset_value = at, what, value, reset_value
        self.t = 0
        self.stepped = 0

    def reset(self, seed=None):
        self.t = 0
        obs = np.zeros(2)
        if self.reset_value is not None:
            obs[1] = self.reset_value
        return obs

    def step(self, action):
        self.t += 1
        self.stepped += 1
        obs, reward = np.array([self.t, -self.t], dtype=float), 1.0
        if self.t >= self.at:
            if self.what == 'obs':
                obs[1] = self.value
            else:
                reward = self.value
        return obs, reward, False, False, {'t': self.t}


@pytest.fixture
def blow_up(monkeypatch):
    monkeypatch.setitem(registry._OWN, 'BlowUpEnv', BlowUpEnv)


def innermost(env):
    while hasattr(env, 'inner'):
        env = env.inner
    return env


# --- presets ---------------------------------------------------------------------------------

def test_presets_name_the_accuracy_and_the_frame_skip():
    assert sorted(envs.SIM_PRESETS) == ['default', 'exact', 'fast']
    assert envs.SIM_PRESETS['exact']['integrator_accuracy'] < 5e-5  # tighter than osim-rl's
    assert envs.SIM_PRESETS['default']['integrator_accuracy'] is None  # osim-rl's own
    assert envs.SIM_PRESETS['fast']['integrator_accuracy'] == 1e-3
    assert all(p['frame_skip'] == 1 for p in envs.SIM_PRESETS.values())


def test_sim_expands_to_the_preset_and_explicit_knobs_win(monkeypatch):
    seen = []

    class FakeOsim(EnvAdapter):
        def __init__(self, name, seed=None, **kwargs):
            seen.append(kwargs)
            self.name = name
            self.observation_space = unbounded_box(1)
            self.action_space = box([0.0], [1.0])

    monkeypatch.setattr(registry.osim, 'OsimAdapter', FakeOsim)
    env = envs.make('Arm2DEnv', sim='fast')
    assert seen[-1] == {'integrator_accuracy': 1e-3} and not isinstance(env, registry.FrameSkip)
    envs.make('Arm2DEnv', sim='exact')
    assert seen[-1] == {'integrator_accuracy': 1e-5}
    envs.make('Arm2DEnv', sim='default')
    assert seen[-1] == {}
    envs.make('Arm2DEnv', sim='fast', integrator_accuracy=2e-4)
    assert seen[-1] == {'integrator_accuracy': 2e-4}
    env = envs.make('Arm2DEnv', sim='fast', frame_skip=3)
    assert isinstance(env, registry.FrameSkip) and env.skip == 3
    monkeypatch.setitem(envs.SIM_PRESETS, 'fast', {'integrator_accuracy': 1e-3, 'frame_skip': 2})
    assert envs.make('Arm2DEnv', sim='fast').skip == 2
    assert not isinstance(envs.make('Arm2DEnv', sim='fast', frame_skip=1), registry.FrameSkip)


def test_sim_default_is_accepted_by_every_env_and_the_others_only_by_osim_rl():
    env = envs.make('CheapEnv', sim='default')
    assert env.reset() is not None
    with pytest.raises(EnvError, match=r"CheapEnv: sim='fast' sets an OpenSim integrator"):
        envs.make('CheapEnv', sim='fast')
    with pytest.raises(EnvError, match=r"CheapEnv: unknown sim preset 'quick'; known: default, "
                                       r"exact, fast"):
        envs.make('CheapEnv', sim='quick')
    with pytest.raises(EnvError, match='unknown environment'):
        envs.make('NoSuchEnv', sim='fast')


@pytest.mark.parametrize('budget', [0, -1, 'soon', True, float('inf'), float('nan')])
def test_a_bad_step_budget_is_refused_naming_the_env(budget):
    with pytest.raises(EnvError, match='CheapEnv: step_budget must be a number of seconds > 0'):
        envs.make('CheapEnv', step_budget=budget)


def test_osim_integrator_accuracy_reaches_osim_rl():
    pytest.importorskip('opensim')
    pytest.importorskip('osim.env')
    env = envs.make('Arm2DEnv', sim='fast')
    try:
        assert innermost(env).env.integrator_accuracy == 1e-3
        assert np.isfinite(env.reset(seed=1)).all()
    finally:
        env.close()


# --- divergence ------------------------------------------------------------------------------

@pytest.mark.parametrize('what,value', [('obs', float('nan')), ('obs', float('inf')),
                                        ('reward', float('nan')), ('reward', -float('inf'))])
def test_a_diverging_step_truncates_with_the_last_finite_observation(blow_up, what, value):
    env = envs.make('BlowUpEnv', at=3, what=what, value=value)
    env.reset()
    for t in (1, 2):
        obs, reward, terminated, truncated, info = env.step([0.5])
        assert list(obs) == [t, -t] and reward == 1.0 and not truncated
    obs, reward, terminated, truncated, info = env.step([0.5])
    assert truncated and not terminated and reward == 0.0
    assert info['truncated_reason'] == 'diverged' and info['t'] == 3
    assert np.isfinite(obs).all()
    assert list(obs) == ([2, -2] if what == 'obs' else [3, -3])
    # stepped again without a reset: still truncated, and the diverged simulator is left alone
    stepped = innermost(env).stepped
    obs, reward, _, truncated, info = env.step([0.5])
    assert truncated and reward == 0.0 and np.isfinite(obs).all()
    assert info['truncated_reason'] == 'diverged' and innermost(env).stepped == stepped
    # a reset starts afresh
    assert list(env.reset()) == [0, 0]
    assert env.step([0.5])[3] is False


def test_a_non_finite_reset_hands_on_zeros_and_the_first_step_ends_the_episode(blow_up):
    env = envs.make('BlowUpEnv', at=99, reset_value=float('nan'))
    obs = env.reset()
    assert list(obs) == [0.0, 0.0]
    obs, reward, terminated, truncated, info = env.step([0.5])
    assert list(obs) == [0.0, 0.0] and reward == 0.0 and truncated and not terminated
    assert info == {'truncated_reason': 'diverged'} and innermost(env).stepped == 0


def test_frame_skip_stops_at_the_diverging_step(blow_up):
    env = envs.make('BlowUpEnv', at=2, frame_skip=4)
    env.reset()
    obs, reward, terminated, truncated, info = env.step([0.5])
    assert truncated and list(obs) == [1, -1] and reward == 1.0  # step 1's, then 0
    assert innermost(env).stepped == 2 and info['truncated_reason'] == 'diverged'


def test_in_process_vec_env_never_sees_a_nan():
    env = InProcessVecEnv('CheapEnv', 2, {'diverge_after': 2, 'episode_length': 50})
    try:
        env.reset()
        ended = []
        for step in range(1, 8):
            obs, rewards, terminated, truncated, infos = env.step(np.full((2, 2), 0.5))
            assert np.isfinite(obs).all() and np.isfinite(rewards).all()
            for info in infos:
                if 'terminal_observation' in info:
                    assert np.isfinite(info['terminal_observation']).all()
                    assert info['truncated_reason'] == 'diverged'
            if truncated.all():
                ended.append(step)
            assert not terminated.any()
        assert ended == [3, 6]  # NaN from each episode's third step on: truncated there
    finally:
        env.close()


# --- step budget -----------------------------------------------------------------------------

class FakeClock(object):
    """Each call moves the time on by the next of ``steps`` (seconds)."""

    def __init__(self, steps):
        self.steps = list(steps)
        self.now = 0.0

    def __call__(self):
        self.now += self.steps.pop(0) if self.steps else 0.0
        return self.now


def test_a_step_past_its_budget_truncates_the_episode(monkeypatch):
    env = envs.make('CheapEnv', step_budget=0.5, episode_length=50)
    env.reset()
    # clock() before and after each step: the first step takes 0.1 s, the second 2 s
    monkeypatch.setattr(guard, 'clock', FakeClock([0, 0.1, 0, 2.0]))
    obs, reward, terminated, truncated, info = env.step([0.5, 0.5])
    assert not truncated and 'truncated_reason' not in info
    obs, reward, terminated, truncated, info = env.step([0.5, 0.5])
    assert truncated and not terminated and info['truncated_reason'] == 'step budget'
    assert info['step_seconds'] == 2.0 and list(obs) == [2, 2, 2] and reward == 0.0


def test_no_budget_no_truncation(monkeypatch):
    env = envs.make('CheapEnv', episode_length=50)
    env.reset()
    monkeypatch.setattr(guard, 'clock', FakeClock([0, 1e6]))
    assert env.step([0.5, 0.5])[3] is False


def test_an_episode_that_ends_anyway_keeps_its_own_ending(monkeypatch):
    env = envs.make('CheapEnv', step_budget=0.5, episode_length=1)
    env.reset()
    monkeypatch.setattr(guard, 'clock', FakeClock([0, 2.0]))
    obs, reward, terminated, truncated, info = env.step([0.5, 0.5])
    assert terminated and not truncated and 'truncated_reason' not in info


# --- through a farm --------------------------------------------------------------------------

def farm_vec(thread_farm, name, n, kwargs):
    f = thread_farm(capacity=n)
    fm = farmer.Farmer(farms=[('127.0.0.1', n, f.port)], start_local=False)
    return fm, fm.vec_env(name, n, kwargs)


def test_through_a_farm_a_diverging_env_is_truncated_with_finite_observations(thread_farm):
    fm, env = farm_vec(thread_farm, 'CheapEnv', 2, {'diverge_after': 2, 'episode_length': 50})
    try:
        env.reset(seed=0)
        for _ in range(3):
            obs, rewards, terminated, truncated, infos = env.step(np.full((2, 2), 0.5))
            assert np.isfinite(obs).all() and np.isfinite(rewards).all()
        assert truncated.tolist() == [True, True] and not terminated.any()
        assert rewards.tolist() == [0.0, 0.0]
        for i, info in enumerate(infos):
            assert info['truncated_reason'] == 'diverged'
            assert list(info['terminal_observation']) == [2, 2 + i, 2 + i]  # the last finite one
        assert obs[:, 0].tolist() == [0, 0]  # auto-reset: the next episode's first
    finally:
        env.close()
        fm.close()


def test_through_a_farm_a_step_past_its_budget_is_truncated(thread_farm):
    # SlowEnv sleeps 0.5 s per step against a budget of 0.05 s: ten times over
    fm, env = farm_vec(thread_farm, 'SlowEnv', 1, {'step_seconds': 0.5, 'obs_size': 3,
                                                   'act_size': 1, 'step_budget': 0.05})
    try:
        env.reset(seed=0)
        obs, rewards, terminated, truncated, infos = env.step(np.full((1, 1), 0.5))
        assert truncated.tolist() == [True] and infos[0]['truncated_reason'] == 'step budget'
        assert infos[0]['step_seconds'] > 0.05 and math.isfinite(infos[0]['step_seconds'])
    finally:
        env.close()
        fm.close()
