"""SAC after ``import rl.agents`` has switched TensorFlow to graph mode, each case in a fresh
interpreter (see agents_support.run_case); the same behaviours are tested in eager mode in
test_agents_sac.py and test_agents_parallel.py."""
import os

import pytest

import agents_support

THIS = os.path.abspath(__file__)


def _graph_mode():
    import rl.agents  # noqa: F401  (disables eager execution process-wide)
    from agents.compat import tf
    assert not tf.executing_eagerly()


def case_sac_fit_test_and_save_load_in_graph_mode():
    _graph_mode()
    import tempfile
    import gymnasium
    import numpy as np
    from agents.gym_adapter import OldGymAPI
    from agents.sac import SAC
    env = agents_support.NoRenderEnv(OldGymAPI(gymnasium.make('Pendulum-v1',
                                                               max_episode_steps=20), seed=0))
    agent = SAC.from_spaces(env.observation_space, env.action_space, hidden=agents_support.SMALL,
                            batch_size=16, nb_steps_warmup=30, seed=0)
    agent.compile()
    counter = agents_support.CountingCallback()
    history = agent.fit(env, nb_steps=100, callbacks=[counter], verbose=2)
    assert counter.calls['step_end'] == 100 and len(history.history['episode_reward']) == 5
    assert agent.counters() == {'global_step': 100, 'episodes': 5, 'updates': 71}
    tester = agents_support.CountingCallback()
    agent.test(env, nb_episodes=2, callbacks=[tester], verbose=0)
    assert [log['nb_steps'] for log in tester.episode_logs] == [20, 20]

    other = SAC.from_spaces(env.observation_space, env.action_space,
                            hidden=agents_support.SMALL)
    other.compile()
    obs = np.random.RandomState(1).randn(4, 3).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        agent.save_weights(os.path.join(tmp, 'sac.h5'))
        other.load_weights(os.path.join(tmp, 'sac.h5'))
    np.testing.assert_array_equal(other.select_actions(obs, False), agent.select_actions(obs, False))
    assert other.counters() == agent.counters() and other.alpha == agent.alpha != 1.0


def case_sac_learns_on_a_vectorized_env_in_graph_mode():
    _graph_mode()
    from agents.sac import SAC
    with agents_support.cheap_vec(4) as vec, agents_support.cheap_vec(4) as eval_vec:
        agent = SAC.from_spaces(vec.observation_space, vec.action_space,
                                hidden=agents_support.SMALL, batch_size=64, nb_steps_warmup=200,
                                seed=0)
        agent.compile()
        agent.train_vec(vec, nb_steps=1000, seed=100)
        agents_support.check_interleaved_replay(agent.memory, [100, 101, 102, 103], 10,
                                                terminated=True)
        agent.train_vec(vec, nb_steps=1000)
        result = agent.evaluate_vec(eval_vec, nb_episodes=4)
    assert result['mean_return'] > -0.2, result  # random actions: about -0.83
    assert agent.counters() == {'global_step': 2000, 'episodes': 200, 'updates': 1800}


def case_a_mode_switch_after_compile_is_reported_clearly():
    import numpy as np
    import pytest
    from agents.compat import tf
    from agents.sac import SAC
    assert tf.executing_eagerly()
    with agents_support.cheap_vec(1) as vec:
        agent = SAC.from_spaces(vec.observation_space, vec.action_space,
                                hidden=agents_support.SMALL)
        agent.compile()
        agent.select_actions(np.zeros((1, 3), np.float32), explore=False)
        _graph_mode()
        with pytest.raises(RuntimeError, match='rl.agents'):
            agent.select_actions(np.zeros((1, 3), np.float32), explore=False)


@pytest.mark.slow
def test_sac_fit_test_and_save_load_in_graph_mode():
    agents_support.run_case(THIS, 'case_sac_fit_test_and_save_load_in_graph_mode')


@pytest.mark.slow
def test_sac_learns_on_a_vectorized_env_in_graph_mode():
    agents_support.run_case(THIS, 'case_sac_learns_on_a_vectorized_env_in_graph_mode')


def test_a_mode_switch_after_compile_is_reported_clearly():
    agents_support.run_case(THIS, 'case_a_mode_switch_after_compile_is_reported_clearly')


if __name__ == '__main__':
    agents_support.main(globals())
