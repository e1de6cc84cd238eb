"""agents/ddpg.py. Importing it imports rl.agents (graph mode for the whole process), so every test
runs one ``case_*`` function of this file in a fresh interpreter (see agents_support.run_case)."""
import os
import sys

import pytest

import agents_support

THIS = os.path.abspath(__file__)


def _ddpg(vec_or_env, **kwargs):
    from agents.compat import tf
    from agents.ddpg import DDPG
    assert not tf.executing_eagerly()  # importing agents.ddpg imported rl.agents
    tf.random.set_seed(0)
    settings = dict(hidden=agents_support.SMALL, batch_size=32, nb_steps_warmup=50,
                    nb_steps_random=20, seed=0)
    settings.update(kwargs)
    agent = DDPG.from_spaces(vec_or_env.observation_space, vec_or_env.action_space, **settings)
    agent.compile()
    return agent


def case_fit_and_test_with_callbacks_continue_counters_and_bootstrap_time_limits():
    import gymnasium
    from agents.gym_adapter import OldGymAPI
    env = agents_support.NoRenderEnv(OldGymAPI(gymnasium.make('Pendulum-v1',
                                                               max_episode_steps=25), seed=0))
    agent = _ddpg(env, nb_steps_warmup=30)
    counter = agents_support.CountingCallback()
    history = agent.fit(env, nb_steps=100, callbacks=[counter], verbose=2)
    assert counter.calls['step_end'] == 100 and counter.calls['episode_end'] == 4
    assert len(history.history['episode_reward']) == 4
    # updates from the step where the memory first holds a batch (32): steps 33..100
    assert agent.counters() == {'global_step': 100, 'episodes': 4, 'updates': 68}
    assert isinstance(agent.step, int)  # keras-rl's np.int16 counter wrapped after 32,767
    assert len(agent.memory) == 100 and not agent.memory.terminals[:100].any()

    agent.fit(env, nb_steps=50, verbose=0)  # continues: warm-up does not repeat
    assert agent.counters() == {'global_step': 150, 'episodes': 6, 'updates': 118}

    tester = agents_support.CountingCallback()
    agent.test(env, nb_episodes=2, callbacks=[tester], verbose=0)  # would render by default
    assert [log['nb_steps'] for log in tester.episode_logs] == [25, 25]
    assert agent.counters()['global_step'] == 150


def case_parallel_training_interleaving_counters_and_per_env_noise():
    import numpy as np
    with agents_support.cheap_vec(3, episode_length=6) as vec:
        agent = _ddpg(vec)
        first = agent.train_vec(vec, nb_steps=3 * 9, seed=100)
        assert first['counters'] == {'global_step': 27, 'episodes': 3, 'updates': 0}
        agents_support.check_interleaved_replay(agent.memory, [100, 101, 102], 6,
                                                terminated=True)
        second = agent.train_vec(vec, nb_episodes=3)
        # continues the episodes in flight (t=3): 3 more steps end them; no update before 50
        assert second['steps'] == 9 and second['episodes'] == 3
        agent.train_vec(vec, nb_steps=30)
        # learning starts at the first vector step taken at global_step >= 50 (51, 54, ..., 63)
        assert agent.counters() == {'global_step': 66, 'episodes': 9, 'updates': 5 * 3}
    noise = agent.noise.sample(3)
    assert noise.shape == (3, 1) and len(set(np.round(noise[:, 0], 6))) == 3


def case_ddpg_learns_the_cheap_env():
    with agents_support.cheap_vec(4) as vec, agents_support.cheap_vec(4) as eval_vec:
        agent = _ddpg(vec, nb_steps_warmup=200, nb_steps_random=200, batch_size=64)
        agent.train_vec(vec, nb_steps=1500)
        result = agent.evaluate_vec(eval_vec, nb_episodes=4)
    assert result['mean_return'] > -0.2, result  # random actions: about -0.83


def case_save_and_load_round_trip_weights_and_counters():
    import tempfile
    import numpy as np
    with agents_support.cheap_vec(2) as vec:
        agent = _ddpg(vec)
        agent.train_vec(vec, nb_steps=80)
        other = _ddpg(vec)
    obs = np.random.RandomState(1).randn(4, 3).astype(np.float32)
    before = other.select_actions(obs, explore=False)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, 'ddpg.h5')
        agent.save_weights(path)
        assert sorted(os.listdir(tmp)) == ['ddpg_actor.h5', 'ddpg_critic.h5', 'ddpg_state.json',
                                           'ddpg_target_actor.h5', 'ddpg_target_critic.h5']
        other.load_weights(path)
        for a, b in zip(other.target_critic.get_weights(), agent.target_critic.get_weights()):
            np.testing.assert_array_equal(a, b)  # the targets it had, for an exact resume
        assert not np.allclose(agent.target_critic.get_weights()[0],
                               agent.critic.get_weights()[0])
        for name in ('target_actor', 'target_critic'):  # keras-rl's own files: no targets
            os.remove(os.path.join(tmp, 'ddpg_%s.h5' % name))
        other.load_weights(path)
    after = other.select_actions(obs, explore=False)
    assert not np.allclose(before, after)
    np.testing.assert_array_equal(after, agent.select_actions(obs, explore=False))
    for a, b in zip(other.target_critic.get_weights(), agent.critic.get_weights()):
        np.testing.assert_array_equal(a, b)  # keras-rl's load: targets = loaded networks
    assert other.counters() == agent.counters() == {'global_step': 80, 'episodes': 8,
                                                    'updates': 30}


@pytest.mark.slow
def test_fit_and_test_with_callbacks_continue_counters_and_bootstrap_time_limits():
    agents_support.run_case(THIS, 'case_fit_and_test_with_callbacks_continue_counters_and_'
                                  'bootstrap_time_limits')


def test_parallel_training_interleaving_counters_and_per_env_noise():
    agents_support.run_case(THIS, 'case_parallel_training_interleaving_counters_and_per_env_noise')


@pytest.mark.slow
def test_ddpg_learns_the_cheap_env():
    agents_support.run_case(THIS, 'case_ddpg_learns_the_cheap_env')


@pytest.mark.slow
def test_save_and_load_round_trip_weights_and_counters():
    agents_support.run_case(THIS, 'case_save_and_load_round_trip_weights_and_counters')


if __name__ == '__main__':
    agents_support.main(globals())
