"""envs/osim.py's corrections of osim-rl (real osim-rl environments)."""
import numpy as np
import pytest

import envs

pytest.importorskip('osim')


def test_arm2d_first_observation_shows_the_new_target():
    """osim-rl's Arm2DEnv.reset observes before it draws the episode's target; the adapter's
    first observation must already hold the target the episode is scored against (the one the
    next observations show)."""
    env = envs.make('Arm2DEnv', integrator_accuracy=1e-3)
    try:
        for seed in (1, 2, 3):
            first = np.asarray(env.reset(seed=seed))
            after = np.asarray(env.step([0.5] * 6)[0])
            assert first[:2].tolist() == after[:2].tolist()
            assert first[:2].tolist() != [0.0, 0.0]
    finally:
        env.close()


def test_each_step_reports_the_task_measure_in_its_info():
    """info['task'] (what an evaluation through a farm reads): Arm2DEnv's distance, the one
    its reward (1 - d^2) is made of."""
    env = envs.make('Arm2DEnv', integrator_accuracy=1e-3)
    try:
        env.reset(seed=4)
        for _ in range(3):
            _, reward, _, _, info = env.step([0.3] * 6)
            assert set(info['task']) == {'distance'}
            assert info['task']['distance'] ** 2 == pytest.approx(1 - reward, abs=1e-9)
    finally:
        env.close()


def test_forward_reward_pays_the_pelvis_progress_on_top_of_osim_rls_reward():
    """L2M2019Env with forward_reward=W: each step's reward is osim-rl's plus W times the metres
    the pelvis moved forward in it (the same seed and actions give the same motion)."""
    plain = envs.make('L2M2019Env', seed=3)
    shaped = envs.make('L2M2019Env', seed=3, forward_reward=10.0)
    try:
        plain.reset(seed=3)
        shaped.reset(seed=3)
        before = 0.0
        for _ in range(8):
            _, r_plain, _, _, info = plain.step([0.2] * 22)
            _, r_shaped, _, _, info_shaped = shaped.step([0.2] * 22)
            moved = info['task']['forward_distance'] - before
            before = info['task']['forward_distance']
            assert info_shaped['task'] == info['task']
            assert r_shaped == pytest.approx(r_plain + 10.0 * moved, abs=1e-9)
        assert before != 0.0  # the pelvis moved: the check above compared something
    finally:
        plain.close()
        shaped.close()


@pytest.mark.parametrize('name, value, words', [
    ('L2M2019Env', 'fast', 'forward_reward must be a number'),
    ('L2M2019Env', float('nan'), 'forward_reward must be finite'),
    ('Arm2DEnv', 1.0, 'forward_reward is for walkers'),
])
def test_a_bad_forward_reward_is_one_line_naming_it(name, value, words):
    with pytest.raises(envs.EnvError, match=words):
        envs.make(name, forward_reward=value)
