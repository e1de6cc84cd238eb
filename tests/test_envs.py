"""envs/: names, adapters, plain-data spaces, frame skip, bad input; osim-rl's own `envs` package
still importable next to ours."""
import os

import numpy as np
import pytest

import envs
from envs.base import FrameSkip, all_finite


def test_unknown_name_lists_what_is_known():
    with pytest.raises(envs.EnvError, match="unknown environment 'nope'.*CheapEnv.*L2M2019Env"):
        envs.make('nope')
    with pytest.raises(envs.EnvError, match='must be a string'):
        envs.make(['CheapEnv'])


def test_cheap_env_is_deterministic_and_terminates():
    env = envs.make('CheapEnv', episode_length=2)
    assert env.reset(seed=5).tolist() == [0, 5, 5]
    assert env.step([0.5, 0.5])[2] is False
    obs, reward, terminated, truncated, info = env.step([0.0, 1.0])
    assert terminated and not truncated and reward == -0.5 and obs.tolist() == [2, 7, 7]


def test_slow_env_has_the_requested_observation_and_cost():
    env = envs.make('SlowEnv', step_seconds=0.02, obs_size=339)
    assert env.observation_space['shape'] == [339] and env.action_space['shape'] == [22]
    assert len(env.reset()) == 339
    import time
    started = time.time()
    env.step([0.0] * 22)
    assert time.time() - started >= 0.02


def test_frame_skip_repeats_on_the_farm_side_and_sums_rewards():
    env = envs.make('CheapEnv', frame_skip=3, episode_length=7)
    assert isinstance(env, FrameSkip)
    env.reset()
    obs, reward, terminated, _, _ = env.step([0.0, 0.0])
    assert obs[0] == 3 and reward == pytest.approx(-1.5)
    env.step([0.5, 0.5])
    obs, _, terminated, _, _ = env.step([0.5, 0.5])
    assert obs[0] == 7 and terminated  # stops at the episode's end, not after 9


def test_bad_actions_name_the_problem():
    env = envs.make('CheapEnv')
    env.reset()
    for action, message in (([1.0], 'length 1, expected 2'), ([np.nan, 0], 'must be finite'),
                            ([np.inf, 0], 'must be finite'), ('ab', 'must be a list')):
        with pytest.raises(envs.EnvError, match=message):
            env.step(action)


def test_float_array_actions_are_checked_in_one_call_and_named_when_bad():
    env = envs.make('CheapEnv')
    env.reset()
    assert env.step(np.array([0.5, 0.5]))[1] == 0.0
    for action, message in ((np.array([0.5, np.nan]), r'action\[1\] is nan'),
                            (np.array([-np.inf, 0.5], dtype=np.float32), r'action\[0\] is -inf'),
                            (np.array([0.5]), 'length 1, expected 2'),
                            (np.zeros((1, 2)), 'length 1, expected 2')):  # the general path
        with pytest.raises(envs.EnvError, match=message):
            env.step(action)


def test_all_finite_agrees_with_numpy_where_the_shortcut_overflows():
    for values in ([0.5, -2.0], [1e200, -1e200], [np.nan], [1.0, np.inf], [-np.inf, np.inf],
                   [3e38, 3e38], [], [[1.0, np.nan]], [[1e200, 2.0]]):
        for dtype in (np.float64, np.float32):
            with np.errstate(over='ignore'):
                array = np.array(values, dtype=dtype)
            assert all_finite(array) == bool(np.isfinite(array).all()), (values, dtype)


def test_gym_ids_are_built_by_name():
    env = envs.make('Pendulum-v1')
    assert env.observation_space['shape'] == [3] and env.max_episode_steps == 200
    assert len(env.reset(seed=0)) == 3
    assert len(env.step([0.0])) == 5


def test_osim_rl_own_envs_package_still_resolves():
    import envs.target  # osim-rl's, found through our package's extended __path__
    assert hasattr(envs.target, 'VTgtField')


@pytest.mark.parametrize('name,obs_size,act_size,limit', [('L2M2019Env', 339, 22, 1000),
                                                          ('Arm2DEnv', 16, 6, 200)])
def test_osim_envs_are_headless_flat_vectors(name, obs_size, act_size, limit):
    kwargs = {'difficulty': 2, 'seed': 3} if name == 'L2M2019Env' else {}
    env = envs.make(name, integrator_accuracy=1e-3, **kwargs)
    assert env.observation_space['shape'] == [obs_size]
    assert env.action_space['shape'] == [act_size] and env.max_episode_steps == limit
    obs = env.reset()
    assert np.asarray(obs).shape == (obs_size,)
    obs, reward, terminated, truncated, info = env.step([0.1] * act_size)
    assert np.asarray(obs).shape == (obs_size,) and np.isfinite(obs).all()
    assert isinstance(reward, float)
    with pytest.raises(envs.EnvError, match="Arm2DEnv: .*unexpected keyword argument 'difficulty'"):
        envs.make('Arm2DEnv', difficulty=1)


@pytest.mark.slow
def test_arm2d_targets_follow_the_seed_at_reset_and_at_make():
    """osim-rl draws Arm2DEnv's target (the first two values of the observation after the first
    step; osim-rl observes before drawing it: envs/osim.py reads the observation again) from Python's global ``random``: the
    seed must reach it, and ``make(seed=...)`` must not be refused."""
    def target(reset_seed, **make_kwargs):
        env = envs.make('Arm2DEnv', integrator_accuracy=1e-3, **make_kwargs)
        try:
            env.reset(seed=reset_seed)
            return np.asarray(env.step([0.5] * 6)[0])[:2].tolist()
        finally:
            env.close()

    assert target(5) == target(5)
    assert target(5) != target(6)
    assert target(None, seed=5) == target(5)


def test_osim_rl_prints_go_to_the_debug_log_not_stdout(capsys, caplog):
    import logging
    caplog.set_level(logging.DEBUG, logger='envs.osim')
    env = envs.make('L2M2019Env', difficulty=3)  # osim-rl prints "difficulty 3 for Round 2"
    env.reset(seed=1)
    arm = envs.make('Arm2DEnv')
    arm.reset(seed=1)  # osim-rl prints each new target
    assert capsys.readouterr().out == ''
    assert 'difficulty 3 for Round 2' in caplog.text and 'target: [' in caplog.text


def _python_says(code, python=None, env=None):
    """Runs ``code`` in a fresh interpreter with the project importable; its stdout, stderr."""
    import subprocess
    import sys
    from conftest import ROOT
    full_env = dict(env or {}, PATH='/usr/bin:/bin')
    full_env['PYTHONPATH'] = os.pathsep.join(
        [ROOT] + [p for p in full_env.get('PYTHONPATH', '').split(os.pathsep) if p])
    done = subprocess.run([python or sys.executable, '-c', code], env=full_env,
                          capture_output=True, timeout=120)
    return done.stdout.decode(), done.stderr.decode()


MISSING = '''
import sys
for name in {modules!r}:
    sys.modules[name] = None  # as if not installed on this farm
import envs
for name in {names!r}:
    try:
        envs.make(name)
    except envs.EnvError as e:
        print(e)
'''


def test_a_farm_without_gym_says_what_is_missing_and_how_to_install_it():
    out, err = _python_says(MISSING.format(modules=['gymnasium', 'gym'],
                                           names=['Pendulum-v1', 'Nope']))
    gym_id, unknown = out.splitlines()
    assert gym_id.startswith("'Pendulum-v1' looks like a gym id, but this farm's Python 3.")
    assert 'has neither gymnasium nor gym: install it with: ' in gym_id
    assert gym_id.endswith('-m pip install gymnasium')
    # Names are sorted: BusyEnv (bench) comes first, CheapEnv after it.
    assert unknown.startswith("unknown environment 'Nope'; known: BusyEnv, CheapEnv")
    assert 'neither gymnasium nor gym' in unknown


@pytest.mark.slow
def test_a_farm_without_opensim_or_osim_rl_says_which_and_how_to_install_it():
    for module, package in (('opensim', 'opensim'), ('osim.env', 'osim-rl')):
        out, err = _python_says(MISSING.format(modules=[module], names=['Arm2DEnv']))
        assert out.startswith('Arm2DEnv needs opensim and osim-rl, but this farm\'s Python 3.'), err
        assert 'cannot import %s (' % package in out
        assert 'install them with: pip install opensim==4.6 osim-rl==3.0.11' in out


def test_a_python27_farm_says_what_it_lacks():
    from test_py27 import PY27, PY27_ENV
    if PY27 is None:
        pytest.skip(PY27_ENV)
    out, err = _python_says(MISSING.format(modules=[], names=['Pendulum-v1', 'Arm2DEnv']),
                            python=PY27, env=PY27_ENV)
    gym_id, osim_name = out.splitlines()
    assert "this farm's Python 2.7" in gym_id and 'serve gym ids from a Python 3 farm' in gym_id
    assert "this farm's Python 2.7" in osim_name and 'cannot import opensim' in osim_name
    assert 'conda env create -f environment-py27.yml' in osim_name


def test_unknown_names_do_not_print_gym_banner():
    out, err = _python_says("import envs\ntry:\n    envs.make('Nope-v0')\n"
                            "except envs.EnvError as e:\n    print(e)")
    assert out.startswith("unknown environment 'Nope-v0'")
    assert 'Gym has been unmaintained' not in err and err == '', err
