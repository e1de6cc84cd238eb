"""agents/parallel.py: training on vecenv.InProcessVecEnv, counters, interruption. SAC, eager.

InProcessVecEnv has both stepping modes and returns every asynchronous result at once, so the
two modes take the same steps there: the tests that do not depend on the mode run in both.
FlakyVecEnv has the lockstep mode only. Interleaved asynchronous results: test_agents_async.py.
"""
import os
import signal
import threading

import agents_support
import numpy as np
import pytest

from agents.compat import tf
from agents.sac import SAC


@pytest.fixture(autouse=True)
def eager_mode():
    assert tf.executing_eagerly(), 'something imported rl.agents into the pytest process'


def _sac(vec, **kwargs):
    settings = dict(hidden=agents_support.SMALL, batch_size=32, nb_steps_warmup=50, seed=0)
    settings.update(kwargs)
    tf.random.set_seed(0)
    agent = SAC.from_spaces(vec.observation_space, vec.action_space, **settings)
    agent.compile()
    return agent


MODES = pytest.mark.parametrize('mode', ['async', 'lockstep'])


@MODES
@pytest.mark.slow
def test_counters_continue_across_calls_and_warm_up_happens_once(mode):
    with agents_support.cheap_vec(4) as vec:
        agent = _sac(vec)
        first = agent.train_vec(vec, nb_steps=40, mode=mode)
        assert first['mode'] == mode
        assert first['steps'] == 40 and agent.counters() == {'global_step': 40, 'episodes': 4,
                                                             'updates': 0}
        second = agent.train_vec(vec, nb_steps=40, mode=mode)
        # learning starts at the first vector step taken at global_step >= 50: 52, 56, ..., 76
        assert second['steps'] == 40 and agent.global_step == 80
        assert agent.updates == 7 * 4
        assert agent.episodes == 8 and second['episodes'] == 4 and first['episodes'] == 4
        assert isinstance(agent.global_step, int) and isinstance(agent.updates, int)


@MODES
@pytest.mark.slow
def test_updates_per_step_is_a_setting(mode):
    with agents_support.cheap_vec(4) as vec:
        agent = _sac(vec, nb_steps_warmup=0, updates_per_step=0.5)
        agent.train_vec(vec, nb_steps=80, mode=mode)
        # the memory holds a batch (32) from global_step 32 on: 12 vector steps of 4 * 0.5
        assert agent.updates == 12 * 2


@pytest.mark.slow
def test_train_vec_runs_n_more_episodes_continuing_episodes_in_flight():
    with agents_support.FlakyVecEnv(agents_support.cheap_vec(4)) as vec:
        agent = _sac(vec)
        agent.train_vec(vec, nb_steps=4 * 3)  # every env is at t=3 of its first episode
        events = []
        summary = agent.train_vec(vec, nb_episodes=4, callback=events.append)
        assert vec.resets == 1  # continued, not reset
        assert summary['steps'] == 4 * 7 and summary['episodes'] == 4
        assert [e['length'] for e in events] == [10] * 4
        assert [e['env'] for e in events] == [0, 1, 2, 3]
        summary = agent.train_vec(vec, nb_episodes=3)  # stops after the step that reaches 3
        assert summary['episodes'] == 4 and summary['steps'] == 40
        assert agent.episodes == 8 and agent.global_step == 12 + 28 + 40


@MODES
def test_episode_returns_match_the_vectorized_envs_own_accounting(mode):
    with agents_support.cheap_vec(3, episode_length=5) as vec:
        agent = _sac(vec)
        seen = []
        name = 'recv' if mode == 'async' else 'step_wait'
        original = getattr(vec, name)

        def wait(*args, **kwargs):
            result = original(*args, **kwargs)
            seen.extend(info['episode']['r'] for info in result[4] if 'episode' in info)
            return result
        setattr(vec, name, wait)
        summary = agent.train_vec(vec, nb_episodes=6, mode=mode)
        np.testing.assert_allclose(summary['returns'], seen)
        assert all(r < 0 for r in seen)


def test_the_default_mode_is_asynchronous_where_the_env_has_it():
    with agents_support.cheap_vec(2) as vec:
        agent = _sac(vec)
        assert agent.train_vec(vec, nb_steps=2)['mode'] == 'async'
        with agents_support.FlakyVecEnv(agents_support.cheap_vec(2)) as lockstep_only:
            assert agent.train_vec(lockstep_only, nb_steps=2)['mode'] == 'lockstep'
            with pytest.raises(ValueError, match='no asynchronous mode'):
                agent.train_vec(lockstep_only, nb_steps=2, mode='async')
        with pytest.raises(ValueError, match='mode must be'):
            agent.train_vec(vec, nb_steps=2, mode='ready-first')


@pytest.mark.slow
def test_the_two_modes_take_the_same_steps_on_an_env_that_returns_everything_at_once():
    """InProcessVecEnv hands every result over together: the same transitions, updates and
    actions in either mode (the asynchronous loop is lockstep's when nothing interleaves)."""
    memories = {}
    # the first agent of a process draws other weights (TensorFlow's first tracing): a
    # lockstep run first, for that
    for mode in ('lockstep', 'async', 'lockstep'):
        with agents_support.cheap_vec(3, episode_length=4) as vec:
            agent = _sac(vec, nb_steps_warmup=6, batch_size=4)
            agent.train_vec(vec, nb_steps=12, seed=3, mode=mode)
            agent.train_vec(vec, nb_episodes=4, mode=mode)
            n = len(agent.memory)
            memories[mode] = (agent.counters(), agent.memory.observations[:n].copy(),
                              agent.memory.actions[:n].copy(),
                              agent.memory.next_observations[:n].copy())
    assert memories['async'][0] == memories['lockstep'][0]
    for a, b in zip(memories['async'][1:], memories['lockstep'][1:]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_sac_learns_the_cheap_env_on_a_vectorized_env():
    # CheapEnv rewards -(a - 0.5)^2 with actions in [0, 1]: random actions average about -0.83
    # per 10-step episode, the best policy 0.
    with agents_support.cheap_vec(4) as vec, agents_support.cheap_vec(4) as eval_vec:
        agent = _sac(vec, nb_steps_warmup=200, batch_size=64)
        before = agent.evaluate_vec(eval_vec, nb_episodes=4)
        agent.train_vec(vec, nb_steps=2000)
        after = agent.evaluate_vec(eval_vec, nb_episodes=8)
    assert len(after['returns']) == 8 and after['lengths'] == [10] * 8
    assert after['mean_return'] > -0.2, (before, after)
    assert agent.counters()['global_step'] == 2000  # evaluation does not count


@MODES
def test_a_stop_event_ends_training_between_steps(mode):
    stop = threading.Event()
    with agents_support.cheap_vec(2) as vec:
        agent = _sac(vec)
        summary = agent.train_vec(vec, nb_episodes=100, callback=lambda e: stop.set(), stop=stop,
                                  mode=mode)
        assert summary['interrupted'] and summary['episodes'] == 2 and summary['steps'] == 20
        assert agent.global_step == 20 and len(agent.memory) == 20


def test_ctrl_c_finishes_the_step_in_flight_and_the_next_call_continues():
    with agents_support.FlakyVecEnv(agents_support.cheap_vec(2)) as vec:
        agent = _sac(vec)
        # one SIGINT per episode end: two in the same step, the second raises KeyboardInterrupt
        # inside the callback, after the step was recorded
        summary = agent.train_vec(
            vec, nb_steps=1000, seed=5, callback=lambda e: os.kill(os.getpid(), signal.SIGINT))
        assert summary['interrupted'] and not summary['abandoned_step']
        assert summary['steps'] == 20 and agent.global_step == 20 and agent.episodes == 2
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
        summary = agent.train_vec(vec, nb_steps=6)
        assert vec.resets == 1 and not summary['interrupted']
        agents_support.check_interleaved_replay(agent.memory, [5, 6], 10, terminated=True)


def test_keyboard_interrupt_inside_step_wait_abandons_that_step_and_the_next_call_resets():
    with agents_support.FlakyVecEnv(agents_support.cheap_vec(2)) as vec:
        agent = _sac(vec)
        vec.interrupt_on_wait = 4
        summary = agent.train_vec(vec, nb_steps=100)
        assert summary['interrupted'] and summary['abandoned_step']
        assert summary['steps'] == 6 and agent.global_step == 6 and len(agent.memory) == 6
        agent.train_vec(vec, nb_steps=4)
        assert vec.resets == 2 and agent.global_step == 10


@pytest.mark.slow
def test_keyboard_interrupt_while_learning_still_collects_the_step_in_flight():
    with agents_support.FlakyVecEnv(agents_support.cheap_vec(2)) as vec:
        agent = _sac(vec, nb_steps_warmup=0, batch_size=4)
        agents_support.interrupt_learning(agent, at_call=5)
        summary = agent.train_vec(vec, nb_steps=100)
        assert summary['interrupted'] and not summary['abandoned_step']
        # the step whose learning was interrupted was still collected
        assert summary['steps'] == agent.global_step == len(agent.memory) == vec.waits * 2
        agent.train_vec(vec, nb_steps=2)
        assert vec.resets == 1


class _LosesEnv1(agents_support.FlakyVecEnv):
    """On its 3rd step, reports env 1 lost the way the farmer does: truncated, reward 0, the
    last observation it had as terminal observation, and a fresh first observation."""

    def step_wait(self):
        obs, rewards, terminated, truncated, infos = super(_LosesEnv1, self).step_wait()
        if self.waits == 3:
            infos[1] = {'lost': 'worker died', 'lost_cause': 'worker',
                        'terminal_observation': self.last[1].copy()}
            rewards[1], terminated[1], truncated[1] = 0.0, False, True
        self.last = obs.copy()
        return obs, rewards, terminated, truncated, infos

    def reset(self, seed=None):
        self.last = super(_LosesEnv1, self).reset(seed)
        return self.last


@pytest.mark.slow
def test_a_lost_environment_stores_no_transition():
    """Regression (fault drill): a lost env's step never happened, yet (s, a, 0, s) was stored."""
    with _LosesEnv1(agents_support.cheap_vec(2)) as vec:
        agent = _sac(vec, nb_steps_warmup=1000)
        events = []
        agent.train_vec(vec, nb_steps=2 * 4, callback=events.append)
        n = len(agent.memory)
        assert n == 2 * 4 - 1  # every step of both envs but the lost one
        s, s2 = agent.memory.observations[:n], agent.memory.next_observations[:n]
        # CheapEnv's t (observation[0]) advances by one in every stored transition
        np.testing.assert_array_equal(s2[:, 0], s[:, 0] + 1)
        assert [e['end'] for e in events] == ['worker_lost']
