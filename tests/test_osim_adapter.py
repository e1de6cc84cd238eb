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
