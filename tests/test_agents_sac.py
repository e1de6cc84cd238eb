"""agents/sac.py in eager mode (this process): learning rules, weights, the keras-rl contract.

Graph mode (after ``import rl.agents``) is covered by test_agents_graph_mode.py, in subprocesses.
"""
import agents_support
import gymnasium
import numpy as np
import pytest

from agents.compat import tf
from agents.gym_adapter import OldGymAPI
from agents.sac import SAC


@pytest.fixture(autouse=True)
def eager_mode():
    assert tf.executing_eagerly(), 'something imported rl.agents into the pytest process'


def _agent(obs_dim=3, act_dim=1, **kwargs):
    spaces = gymnasium.spaces
    obs_space = spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
    act_space = spaces.Box(-2.0, 2.0, (act_dim,), np.float32)
    settings = dict(hidden=agents_support.SMALL, batch_size=64, nb_steps_warmup=0, seed=0)
    settings.update(kwargs)
    agent = SAC.from_spaces(obs_space, act_space, **settings)
    return agent


def _fill(agent, n=512, reward=1.0, terminal=0.0, seed=0):
    rng = np.random.RandomState(seed)
    agent.memory.append_batch(rng.randn(n, agent.obs_dim), rng.uniform(-1, 1, (n, agent.nb_actions)),
                              np.full(n, reward), rng.randn(n, agent.obs_dim), np.full(n, terminal))


@pytest.mark.parametrize('target_entropy,direction', [(5.0, 1), (-50.0, -1)])
@pytest.mark.slow
def test_temperature_rises_below_the_target_entropy_and_falls_above(target_entropy, direction):
    from agents.compat import adam
    agent = _agent(target_entropy=target_entropy, initial_alpha=0.5)
    agent.compile([adam(3e-4), adam(3e-4), adam(1e-2)])  # a fast temperature, to see it move
    _fill(agent)
    for _ in range(20):
        agent.train_once()
    assert (agent.alpha - 0.5) * direction > 0.05


def test_default_target_entropy_is_minus_the_action_dimension():
    assert _agent(act_dim=3).target_entropy == -3.0


@pytest.mark.parametrize('terminal,expected_q', [(1.0, 1.0), (0.0, 2.0)])
@pytest.mark.slow
def test_critics_learn_the_bootstrapped_value_unless_terminal(terminal, expected_q):
    # reward 1 everywhere, gamma 0.5, alpha ~ 0: Q = 1 when terminal, 1 / (1 - 0.5) = 2 otherwise.
    from agents.compat import adam
    agent = _agent(gamma=0.5, tau=0.2, initial_alpha=1e-8, learn_alpha=False)
    agent.compile([adam(1e-3), adam(3e-3), adam(1e-3)])
    _fill(agent, reward=1.0, terminal=terminal)
    for _ in range(400):
        metrics = agent.train_once()
    mean_q = metrics[agent.metrics_names.index('mean_q')]
    assert abs(mean_q - expected_q) < 0.15, mean_q


@pytest.mark.slow
def test_save_and_load_round_trip_weights_temperature_and_counters(tmp_path):
    with agents_support.cheap_vec(2) as vec:
        agent = SAC.from_spaces(vec.observation_space, vec.action_space,
                                hidden=agents_support.SMALL, batch_size=32, nb_steps_warmup=40,
                                seed=0)
        agent.compile()
        agent.train_vec(vec, nb_steps=100)
    path = str(tmp_path / 'sac.h5')
    agent.save_weights(path)
    with pytest.raises(FileExistsError):
        agent.save_weights(path)

    other = SAC.from_spaces(vec.observation_space, vec.action_space, hidden=agents_support.SMALL)
    other.compile()
    obs = np.random.RandomState(1).randn(5, 3).astype(np.float32)
    assert not np.allclose(other.select_actions(obs, explore=False),
                           agent.select_actions(obs, explore=False))
    other.load_weights(path)
    np.testing.assert_array_equal(other.select_actions(obs, explore=False),
                                  agent.select_actions(obs, explore=False))
    for mine, theirs in [(agent.critic1, other.critic1), (agent.critic2, other.critic2),
                         (agent.target_critic1, other.target_critic1),
                         (agent.target_critic2, other.target_critic2)]:
        for a, b in zip(mine.get_weights(), theirs.get_weights()):
            np.testing.assert_array_equal(a, b)
    assert other.alpha == pytest.approx(agent.alpha) and agent.alpha != 1.0
    assert other.counters() == agent.counters() == {'global_step': 100, 'episodes': 10,
                                                    'updates': 60}


@pytest.mark.slow
def test_fit_and_test_honour_keras_rl_callbacks_processors_and_counters():
    env = agents_support.NoRenderEnv(OldGymAPI(gymnasium.make('Pendulum-v1',
                                                               max_episode_steps=20), seed=0))
    processor = agents_support.ScalingProcessor()
    agent = SAC.from_spaces(env.observation_space, env.action_space,
                            hidden=agents_support.SMALL, batch_size=16, nb_steps_warmup=30,
                            processor=processor, seed=0)
    agent.compile()
    counter = agents_support.CountingCallback()
    history = agent.fit(env, nb_steps=100, callbacks=[counter], verbose=2)
    assert counter.calls['step_end'] == 100 and counter.calls['episode_end'] == 5
    assert counter.calls['train_begin'] == counter.calls['train_end'] == 1
    assert len(history.history['episode_reward']) == 5
    assert agent.counters() == {'global_step': 100, 'episodes': 5, 'updates': 71}
    assert isinstance(agent.step, int)  # keras-rl counts in np.int16, which wraps
    # every step is one stored transition; time-limit ends are bootstrapped (not terminal)
    assert len(agent.memory) == 100 and not agent.memory.terminals[:100].any()
    assert processor.calls['observation'] > 100 and processor.calls['state_batch'] > 70

    agent.fit(env, nb_steps=40, verbose=0)  # a second call continues: no second warm-up
    assert agent.counters() == {'global_step': 140, 'episodes': 7, 'updates': 111}

    tester = agents_support.CountingCallback()
    history = agent.test(env, nb_episodes=2, callbacks=[tester], verbose=0)
    assert [log['nb_steps'] for log in tester.episode_logs] == [20, 20]
    assert len(history.history['episode_reward']) == 2
    assert agent.counters()['global_step'] == 140 and len(agent.memory) == 140  # test learns nothing


@pytest.mark.slow
def test_test_is_deterministic():
    agent = _agent()
    agent.compile()
    obs = np.random.RandomState(0).randn(3, 3).astype(np.float32)
    np.testing.assert_array_equal(agent.select_actions(obs, False), agent.select_actions(obs, False))
    assert not np.array_equal(agent.select_actions(obs, True), agent.select_actions(obs, True))


@pytest.mark.slow
def test_contract_members():
    agent = _agent()
    agent.compile()
    assert len(agent.layers) == (len(agent.policy.layers) + len(agent.critic1.layers)
                                 + len(agent.critic2.layers))
    _fill(agent)
    assert len(agent.train_once()) == len(agent.metrics_names)
    with pytest.raises(ValueError):
        _agent().compile(metrics=['mae'])


def test_misuse_is_reported_clearly(tmp_path):
    with pytest.raises(RuntimeError, match='compile'):
        _agent().load_weights(str(tmp_path / 'nothing.h5'))
    spaces = gymnasium.spaces
    with pytest.raises(ValueError, match='finite bounds'):
        SAC.from_spaces(spaces.Box(-1, 1, (3,), np.float32),
                        spaces.Box(-np.inf, np.inf, (1,), np.float32), hidden=agents_support.SMALL)
    with agents_support.cheap_vec(1) as vec:
        with pytest.raises(RuntimeError, match='compile'):
            _agent().train_vec(vec, nb_steps=1)
