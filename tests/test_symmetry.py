"""envs/symmetry.py: the mirror image of L2M2019Env's observations and actions, checked on its
layout and against the simulator itself; agents/replay.py stores the mirrored copies."""
import numpy as np
import pytest

import envs
from agents.replay import TransitionReplay
from envs.symmetry import mirror_for


def test_only_registered_symmetric_bodies_have_a_mirror():
    assert mirror_for('Pendulum-v1') is None and mirror_for('Arm2DEnv') is None
    assert mirror_for('L2M2019Env') is not None


def test_the_l2m_mirror_swaps_legs_reverses_the_lateral_field_and_negates_lateral_values():
    mirror = mirror_for('L2M2019Env')
    obs = np.random.RandomState(0).normal(size=(5, 339)).astype(np.float32)
    act = np.random.RandomState(1).uniform(size=(5, 22)).astype(np.float32)
    m = mirror.observations(obs)
    field, mirrored_field = obs[:, :242].reshape(5, 2, 11, 11), m[:, :242].reshape(5, 2, 11, 11)
    assert np.array_equal(mirrored_field[:, 0], field[:, 0, :, ::-1])     # forward component
    assert np.array_equal(mirrored_field[:, 1], -field[:, 1, :, ::-1])    # lateral component
    signs = np.array([1, 1, -1, 1, -1, 1, 1, -1, -1])  # roll, lateral speed, roll and yaw rates
    assert np.array_equal(m[:, 242:251], obs[:, 242:251] * signs)
    assert np.array_equal(m[:, 251:295], obs[:, 295:339])
    assert np.array_equal(m[:, 295:339], obs[:, 251:295])
    assert np.array_equal(mirror.actions(act), np.concatenate([act[:, 11:], act[:, :11]], 1))
    assert np.array_equal(mirror.observations(m), obs)  # twice: the identity
    assert np.array_equal(mirror.actions(mirror.actions(act)), act)


@pytest.mark.slow
def test_the_simulator_agrees_a_mirrored_action_gives_the_mirrored_body():
    """From osim-rl's symmetric initial pose, one walker given actions and another given their
    mirror images move as mirror images: every body value (pelvis and legs) of the second is the
    mirror of the first's. This checks the signs and the leg swap against the physics, not
    against the layout written above."""
    mirror = mirror_for('L2M2019Env')
    left = envs.make('L2M2019Env', seed=3, difficulty=0)
    right = envs.make('L2M2019Env', seed=3, difficulty=0)
    rng = np.random.RandomState(2)
    try:
        left.reset(seed=3)
        right.reset(seed=3)
        moved = 0.0
        for _ in range(30):
            action = rng.uniform(0, 1, size=(1, 22))
            obs_a = left.step(action[0])[0]
            obs_b = right.step(mirror.actions(action)[0])[0]
            body_a, body_b = np.asarray(obs_a)[242:], np.asarray(obs_b)[242:]
            expected = mirror.observations(np.asarray(obs_a)[None])[0][242:]
            assert np.allclose(body_b, expected, atol=1e-3 * (1 + np.abs(expected).max())), (
                np.flatnonzero(~np.isclose(body_b, expected, atol=1e-3)) + 242)
            moved = max(moved, np.abs(body_a - body_b).max())
        assert moved > 0.05  # the two walkers did differ: the check compared something
    finally:
        left.close()
        right.close()


def test_a_mirrored_replay_stores_each_transition_and_its_mirror_image():
    mirror = mirror_for('L2M2019Env')
    memory = TransitionReplay(10, (339,), (22,), seed=0, mirror=mirror)
    rng = np.random.RandomState(0)
    obs, next_obs = rng.normal(size=(2, 339)), rng.normal(size=(2, 339))
    act = rng.uniform(-1, 1, size=(2, 22))
    memory.append_batch(obs, act, np.array([1.0, 2.0]), next_obs, np.array([False, True]))
    assert len(memory) == 4
    assert np.allclose(memory.observations[:4], np.concatenate([obs, mirror.observations(obs)]))
    assert np.allclose(memory.next_observations[2:4], mirror.observations(next_obs))
    assert np.allclose(memory.actions[2:4], mirror.actions(act))
    assert list(memory.rewards[:4]) == [1, 2, 1, 2] and list(memory.terminals[:4]) == [0, 1, 0, 1]
    assert memory.get_config()['mirrored'] is True


def test_a_loaded_mirrored_replay_is_not_mirrored_again(tmp_path):
    mirror = mirror_for('L2M2019Env')
    memory = TransitionReplay(10, (339,), (22,), mirror=mirror)
    rng = np.random.RandomState(0)
    memory.append_batch(rng.normal(size=(3, 339)), rng.uniform(size=(3, 22)), np.ones(3),
                        rng.normal(size=(3, 339)), np.zeros(3))
    memory.save(str(tmp_path / 'memory.npz'))
    for limit in (10, 5):  # the same layout, and one that keeps the newest
        again = TransitionReplay(limit, (339,), (22,), mirror=mirror)
        assert again.load(str(tmp_path / 'memory.npz')) == 6
        assert len(again) == min(6, limit)
