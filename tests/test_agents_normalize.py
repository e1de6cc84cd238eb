"""Observation normalization (agents/normalize.py) and reward scaling, as the agents use them
(agents/base.py): statistics against numpy, learned only while training, raw replay, normalized
and scaled where the networks and the updates take them, saved with the weights and with the
training state. SAC in eager mode here; DDPG through tests/test_resume.py's cases (graph mode)
and the case below.
"""
import os
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))

import agents_support  # noqa: E402
from agents.normalize import RunningNorm  # noqa: E402

N_ENVS = 3  # CheapEnv: 10-step episodes, observation [t, offset + t, offset + t]


def _sac(**kwargs):
    from agents.sac import SAC
    vec = agents_support.cheap_vec(N_ENVS)
    options = dict(hidden=agents_support.SMALL, batch_size=8, nb_steps_warmup=15, seed=2,
                   normalize_obs=True)
    options.update(kwargs)
    agent = SAC.from_spaces(vec.observation_space, vec.action_space, **options)
    agent.compile()
    return agent, vec


# --- the statistics ------------------------------------------------------------------------------
def test_batch_updates_give_numpy_s_mean_and_variance_of_all_the_data():
    rng = np.random.RandomState(0)
    data = rng.normal(1000.0, [0.01, 1.0, 50.0], size=(257, 3))  # a large mean, small spreads
    norm = RunningNorm(3)
    start = 0
    for size in (1, 2, 7, 0, 100, 1, 145):
        norm.update(data[start:start + size])
        start += size
    norm.update(data[start])  # one observation, without a batch axis
    assert norm.count == len(data) == start + 1
    np.testing.assert_allclose(norm.mean, data.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(norm.var, data.var(axis=0), rtol=1e-9)
    x = data[:5]
    np.testing.assert_allclose(norm.normalize(x), np.clip(
        (x - data.mean(0)) / np.sqrt(data.var(0) + norm.eps), -10, 10), rtol=1e-5, atol=1e-6)
    assert norm.normalize(x).dtype == np.float32


def test_before_any_observation_it_is_the_identity_and_far_values_are_clipped():
    norm = RunningNorm(2)
    np.testing.assert_allclose(norm.normalize([[0.5, -3.0]]), [[0.5, -3.0]], rtol=1e-6)
    norm.update([[0.0, 0.0], [2.0, 2.0]])  # mean 1, std 1
    np.testing.assert_allclose(norm.normalize([[1e6, -1e6]]), [[10.0, -10.0]])


def test_its_state_is_plain_data_and_round_trips(tmp_path):
    norm = RunningNorm(3)
    norm.update(np.arange(12.0).reshape(4, 3))
    norm.save(str(tmp_path / 'n.npz'))
    other = RunningNorm(3)
    other.load(str(tmp_path / 'n.npz'))
    assert other.count == 4
    np.testing.assert_array_equal(other.mean, norm.mean)
    np.testing.assert_array_equal(other.m2, norm.m2)
    with pytest.raises(ValueError, match='shape'):
        RunningNorm(2).set_state(norm.state())


# --- in the agents -------------------------------------------------------------------------------
@pytest.mark.parametrize('mode', ['lockstep', 'async'])
@pytest.mark.slow
def test_training_learns_from_every_observation_received_and_the_replay_stays_raw(mode):
    agent, vec = _sac()
    agent.train_vec(vec, nb_steps=60, seed=0, mode=mode)
    # 3 reset observations, 60 next states, 6 terminal observations (episodes of 10 steps)
    assert agent.obs_norm.count == N_ENVS + 60 + 6
    # the statistics are numpy's over exactly those: CheapEnv's t runs 0..10 in every episode
    t = np.array([0] * N_ENVS + list(range(1, 10)) * N_ENVS * 2 + [0] * 6 + [10] * 6,
                 dtype=float)
    np.testing.assert_allclose(agent.obs_norm.mean[0], t.mean())
    np.testing.assert_allclose(agent.obs_norm.var[0], t.var())
    stored = agent.memory.observations[:len(agent.memory), 0]
    assert set(stored) == set(float(s) for s in range(10))  # raw, not normalized
    vec.close()


def test_keras_rl_s_single_env_protocol_learns_while_training_and_acts_normalized():
    agent, vec = _sac(nb_steps_warmup=0)
    agent.obs_norm.update([[0.0, 0.0, 0.0], [2.0, 4.0, 6.0]])
    x = np.array([1.0, 2.0, 3.0])
    agent.training = False  # keras-rl's test(): statistics left alone
    acted = agent.forward(x)
    assert agent.obs_norm.count == 2
    expected = agent.to_env_action(agent.select_actions(
        agent.obs_norm.normalize(x[None]), explore=False))[0]
    np.testing.assert_array_equal(acted, expected)
    agent.training = True  # keras-rl's fit()
    agent.forward(x)
    agent.backward(0.0)
    agent.forward(x + 1)
    assert agent.obs_norm.count == 4
    vec.close()


@pytest.mark.slow
def test_evaluation_does_not_move_the_statistics():
    agent, vec = _sac()
    agent.train_vec(vec, nb_steps=30, seed=0)
    before = agent.obs_norm.state()
    agent.evaluate_vec(vec, nb_episodes=3, seed=5)
    from run import evaluation
    act = evaluation.policy_of(agent)
    act(np.array([1.0, 2.0, 3.0]))
    after = agent.obs_norm.state()
    for key in before:
        np.testing.assert_array_equal(after[key], before[key])
    vec.close()


@pytest.mark.slow
def test_acting_and_every_update_see_observations_normalized_with_the_current_statistics():
    agent, vec = _sac(reward_scale=10.0, reward_offset=-1.0)
    seen = []
    sample, update = agent.memory.sample, agent._update_fn

    def recording_sample(n):
        batch = sample(n)
        seen.append({'sampled': batch})
        return batch

    def recording_update(obs, actions, rewards, next_obs, *rest):
        seen[-1]['update'] = (obs, rewards, next_obs)
        seen[-1]['normalized'] = (agent.obs_norm.normalize(seen[-1]['sampled'][0]),
                                  agent.obs_norm.normalize(seen[-1]['sampled'][3]))
        return update(obs, actions, rewards, next_obs, *rest)

    agent.memory.sample, agent._update_fn = recording_sample, recording_update
    agent.train_vec(vec, nb_steps=45, seed=0, mode='lockstep')
    assert len(seen) >= 10
    for record in seen:
        obs, rewards, next_obs = record['update']
        np.testing.assert_array_equal(obs, record['normalized'][0])
        np.testing.assert_array_equal(next_obs, record['normalized'][1])
        assert np.abs(obs).max() <= 10.0
        raw_rewards = record['sampled'][2]
        np.testing.assert_allclose(rewards, 10.0 * (raw_rewards - 1.0), rtol=1e-6)
    x = np.array([[4.0, 5.0, 6.0]], dtype=np.float32)
    np.testing.assert_array_equal(agent.state_batch(x), agent.obs_norm.normalize(x))
    vec.close()


def test_scaled_rewards_are_learnt_from_but_returns_and_the_replay_stay_the_env_s():
    runs = []
    for scale, offset in ((1.0, 0.0), (10.0, -2.0)):
        agent, vec = _sac(reward_scale=scale, reward_offset=offset, nb_steps_warmup=1000)
        summary = agent.train_vec(vec, nb_steps=60, seed=0)
        runs.append((summary['returns'], agent.memory.rewards[:len(agent.memory)].copy()))
        vec.close()
    assert runs[0][0] == runs[1][0]  # the same random warm-up actions: the same env returns
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    assert all(r <= 0 for r in runs[1][1])  # CheapEnv's own: -sum((a - 0.5)^2)


def test_the_root_turns_a_squared_penalty_into_a_linear_one_and_is_kept_in_the_config():
    agent, vec = _sac(reward_scale=3.0, reward_offset=-2.0, reward_root=True)
    vec.close()
    # Arm2DEnv with frame skip 2: r = 2 - sum(d^2); the root learns from -3 * sqrt(sum(d^2))
    raw = np.array([2.0, 1.96, 1.5, 2.1], dtype=np.float32)
    np.testing.assert_allclose(agent.learning_rewards(raw),
                               [0.0, -3.0 * 0.2, -3.0 * np.sqrt(0.5), 0.0], rtol=1e-5, atol=1e-6)
    assert agent.get_config()['reward_root'] is True
    plain, vec = _sac(reward_scale=3.0, reward_offset=-2.0)
    vec.close()
    np.testing.assert_allclose(plain.learning_rewards(raw), 3.0 * (raw - 2.0), rtol=1e-6)


@pytest.mark.slow
def test_the_statistics_are_saved_beside_the_weights_and_loading_switches_them_on(tmp_path):
    agent, vec = _sac()
    agent.train_vec(vec, nb_steps=30, seed=0)
    path = str(tmp_path / 'w.h5')
    agent.save_weights(path)
    assert os.path.exists(str(tmp_path / 'w_obsnorm.npz'))
    plain, _ = _sac(normalize_obs=False)
    plain.load_weights(path)
    assert plain.normalize_obs and plain.obs_norm.count == agent.obs_norm.count
    np.testing.assert_array_equal(plain.obs_norm.m2, agent.obs_norm.m2)
    x = np.array([[3.0, 4.0, 5.0]], dtype=np.float32)
    np.testing.assert_array_equal(plain.select_actions(plain.state_batch(x), explore=False),
                                  agent.select_actions(agent.state_batch(x), explore=False))
    # the policy alone (bench/learn.py --export): actor and statistics
    agent.save_policy(str(tmp_path / 'policy'))
    alone, _ = _sac(normalize_obs=False)
    alone.load_policy(str(tmp_path / 'policy'))
    np.testing.assert_array_equal(alone.select_actions(alone.state_batch(x), explore=False),
                                  agent.select_actions(agent.state_batch(x), explore=False))
    vec.close()


@pytest.mark.slow
def test_the_training_state_holds_the_statistics(tmp_path):
    from run import checkpoints
    agent, vec = _sac()
    agent.train_vec(vec, nb_steps=30, seed=0)
    checkpoints.save(agent, str(tmp_path / 'checkpoints'), 'c')
    other, _ = _sac()
    checkpoints.load(other, str(tmp_path / 'checkpoints'))
    os.remove(str(tmp_path / 'checkpoints' / 'c' / 'c_obsnorm.npz'))
    third, _ = _sac()
    third.load_weights(str(tmp_path / 'checkpoints' / 'c' / 'c.h5'))  # statistics start afresh
    assert third.obs_norm.count == 0
    third.load_training_state(str(tmp_path / 'checkpoints' / 'c' / 'c.h5'))
    for loaded in (other, third):
        assert loaded.normalize_obs and loaded.obs_norm.count == agent.obs_norm.count
        np.testing.assert_array_equal(loaded.obs_norm.mean, agent.obs_norm.mean)
    vec.close()


@pytest.mark.slow
def test_without_normalization_nothing_is_learnt_or_written(tmp_path):
    agent, vec = _sac(normalize_obs=False)
    agent.train_vec(vec, nb_steps=30, seed=0)
    assert agent.obs_norm.count == 0
    agent.save_weights(str(tmp_path / 'w.h5'))
    assert not os.path.exists(str(tmp_path / 'w_obsnorm.npz'))
    x = np.array([[3.0, 4.0, 5.0]], dtype=np.float32)
    np.testing.assert_array_equal(agent.state_batch(x), x)
    vec.close()


def case_ddpg_normalizes_and_scales():
    """DDPG (graph mode: its own interpreter): statistics learnt, updates fed normalized states
    and scaled rewards, the replay raw."""
    from agents.ddpg import DDPG
    vec = agents_support.cheap_vec(N_ENVS)
    agent = DDPG.from_spaces(vec.observation_space, vec.action_space, hidden=agents_support.SMALL,
                             batch_size=8, nb_steps_warmup=15, nb_steps_random=15, seed=2,
                             normalize_obs=True, reward_scale=5.0, reward_offset=1.0)
    agent.compile()
    seen = []
    critic_train = agent.critic.train_on_batch
    sample = agent.memory.sample

    def recording_sample(n):
        batch = sample(n)
        seen.append([batch])
        return batch

    def recording_train(inputs, targets):
        seen[-1].append((inputs[0], agent.obs_norm.normalize(seen[-1][0][0])))
        return critic_train(inputs, targets)

    agent.memory.sample, agent.critic.train_on_batch = recording_sample, recording_train
    rewards = []
    learning = agent.learning_rewards

    def recording_rewards(r):
        rewards.append((np.array(r), learning(r)))
        return rewards[-1][1]

    agent.learning_rewards = recording_rewards
    agent.train_vec(vec, nb_steps=45, seed=0, mode='lockstep')
    assert agent.obs_norm.count == N_ENVS + 45 + 3
    assert len(seen) >= 10
    for _, (fed, normalized) in seen:
        np.testing.assert_array_equal(fed, normalized)
    for raw, scaled in rewards:
        np.testing.assert_allclose(scaled, 5.0 * (raw + 1.0), rtol=1e-6)
    stored = agent.memory.observations[:len(agent.memory), 0]
    assert set(stored) <= set(float(s) for s in range(10))


@pytest.mark.slow
def test_ddpg_normalizes_and_scales():
    agents_support.run_case(__file__, 'case_ddpg_normalizes_and_scales')


if __name__ == '__main__':
    agents_support.main(globals())
