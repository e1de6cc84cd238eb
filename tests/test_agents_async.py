"""agents/parallel.py's asynchronous mode on environments whose results really interleave.

agents_support.ScriptedAsyncVecEnv holds InProcessVecEnv's results back on a virtual clock (env i
steps slower than env i - 1, and each one's step time varies), so batches come back in an order
that is neither the order sent nor round-robin. SAC in eager mode in this process; DDPG (graph
mode) in a fresh interpreter (agents_support.run_case).
"""
import os
import signal
import sys

import agents_support
import numpy as np
import pytest

from agents.compat import tf
from agents.noise import VectorNoise
from vecenv import contract

THIS = os.path.abspath(__file__)
LENGTH = 6  # CheapEnv episode length in these tests


def _sac(vec, **kwargs):
    from agents.sac import SAC
    settings = dict(hidden=agents_support.SMALL, batch_size=16, nb_steps_warmup=20, seed=0)
    settings.update(kwargs)
    tf.random.set_seed(0)
    agent = SAC.from_spaces(vec.observation_space, vec.action_space, **settings)
    agent.compile()
    return agent


def _interleaved(vec):
    """The recv batches were not simply the envs in turn."""
    flat = [i for batch in vec.received for i in batch]
    return flat != sorted(flat) and any(flat[k:k + vec.num_envs] != list(range(vec.num_envs))
                                        for k in range(0, len(flat), vec.num_envs))


@pytest.mark.parametrize('batch_size', [1, 2])
@pytest.mark.slow
def test_each_transition_pairs_states_of_its_own_environment(batch_size):
    with agents_support.scripted_cheap(4, LENGTH, batch_size=batch_size) as vec:
        agent = _sac(vec)
        learned = []
        original = agent.learn

        def learn(n):
            learned.append(n)
            return original(n)
        agent.learn = learn
        summary = agent.train_vec(vec, nb_steps=120)
        assert summary['mode'] == 'async' and _interleaved(vec)
        n = len(agent.memory)
        assert n == agent.global_step == summary['steps'] >= 120
        assert n == sum(len(b) for b in vec.received) - 4  # every step received (not resets)
        # the slow env took fewer steps than the quick one
        assert (vec.steps[0] > vec.steps[3] + 10)
        agents_support.check_chains(agent.memory, LENGTH)
        agents_support.check_interleaved_replay(agent.memory, [100, 200, 300, 400], LENGTH,
                                                terminated=True)
        # one forward pass per send, for the envs in hand; updates owed per env step sent
        assert learned == [len(ids) for ids in vec.sends]
        assert sum(learned) == vec.steps.sum() and agent.updates > 0


def test_negative_control_a_wrong_pairing_is_caught():
    """Each batch's rows paired with its env ids in ascending order (as if results came back in
    env order): the checks above must fail, or they prove nothing."""
    with agents_support.scripted_cheap(4, LENGTH, batch_size=2) as vec:
        vec.sorted_labels = True
        agent = _sac(vec, nb_steps_warmup=10 ** 6)
        agent.train_vec(vec, nb_steps=120)
        assert vec.mislabeled > 0
        with pytest.raises(AssertionError):
            agents_support.check_chains(agent.memory, LENGTH)
        with pytest.raises(AssertionError):
            agents_support.check_interleaved_replay(agent.memory, [100, 200, 300, 400], LENGTH,
                                                    terminated=True)


@pytest.mark.slow
def test_calls_continue_with_the_environments_in_flight():
    with agents_support.scripted_cheap(4, LENGTH) as vec:
        agent = _sac(vec)
        events = []
        first = agent.train_vec(vec, nb_steps=30, callback=events.append)
        assert vec.in_flight > 0  # they go on simulating between calls
        in_flight = vec.in_flight
        second = agent.train_vec(vec, nb_episodes=5, callback=events.append)
        assert vec.async_resets == 1 and vec.resets == 0  # continued, not reset
        assert first['steps'] >= 30 and second['episodes'] >= 5
        assert len(vec.received[len(vec.received) - 1]) >= 1
        assert agent.global_step == first['steps'] + second['steps'] == len(agent.memory)
        assert agent.episodes == first['episodes'] + second['episodes'] == len(events)
        assert [e['episode'] for e in events] == list(range(1, agent.episodes + 1))
        assert all(e['length'] == LENGTH and e['end'] == 'terminated' for e in events)
        agents_support.check_chains(agent.memory, LENGTH)  # nothing lost or stored twice
        assert in_flight >= 1


def test_the_first_ctrl_c_stops_after_the_batch_in_hand():
    with agents_support.scripted_cheap(4, LENGTH) as vec:
        agent = _sac(vec)
        summary = agent.train_vec(vec, nb_steps=1000,
                                  callback=lambda e: os.kill(os.getpid(), signal.SIGINT))
        assert summary['interrupted'] and not summary['abandoned_step']
        assert summary['episodes'] == 1 and agent.global_step == len(agent.memory)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
        summary = agent.train_vec(vec, nb_steps=40)
        assert not summary['interrupted'] and vec.async_resets == 1 and vec.resets == 0
        agents_support.check_chains(agent.memory, LENGTH)


@pytest.mark.slow
def test_a_second_ctrl_c_inside_recv_abandons_what_is_in_flight_and_the_next_call_resets():
    with agents_support.scripted_cheap(4, LENGTH) as vec:
        agent = _sac(vec)
        vec.interrupt_on_recv = 8
        summary = agent.train_vec(vec, nb_steps=1000)
        assert summary['interrupted'] and summary['abandoned_step']
        stored = len(agent.memory)
        assert stored == agent.global_step == summary['steps'] > 0
        agent.train_vec(vec, nb_steps=20)
        assert vec.resets == 1 and vec.async_resets == 2  # in flight discarded, then reset
        assert len(agent.memory) == agent.global_step
        agents_support.check_chains(agent.memory, LENGTH, restarts=True)


@pytest.mark.slow
def test_a_second_ctrl_c_while_learning_loses_nothing():
    with agents_support.scripted_cheap(4, LENGTH) as vec:
        agent = _sac(vec, nb_steps_warmup=0, batch_size=4)
        agents_support.interrupt_learning(agent, at_call=5)
        summary = agent.train_vec(vec, nb_steps=1000)
        assert summary['interrupted'] and not summary['abandoned_step']
        assert vec.in_flight > 0  # what was sent stays in flight for the next call
        agent.train_vec(vec, nb_steps=40)
        assert vec.resets == 0 and vec.async_resets == 1
        assert len(agent.memory) == agent.global_step
        agents_support.check_chains(agent.memory, LENGTH)


def test_a_lost_environment_stores_no_transition():
    with agents_support.scripted_cheap(3, LENGTH) as vec:
        vec.lose = {(1, 2)}
        agent = _sac(vec, nb_steps_warmup=10 ** 6)
        events = []
        agent.train_vec(vec, nb_steps=30, callback=events.append)
        assert len(agent.memory) == agent.global_step - 1
        assert [e['end'] for e in events if e['env'] == 1][0] == 'worker_lost'
        agents_support.check_chains(agent.memory, LENGTH, restarts=True)


@pytest.mark.slow
def test_evaluating_on_the_training_env_discards_what_is_in_flight_and_training_starts_over():
    """evaluate_vec stays lockstep: its reset() collects and discards the environments in
    flight (test() on the training environments, --eval-envs 0)."""
    with agents_support.scripted_cheap(3, LENGTH) as vec:
        agent = _sac(vec)
        agent.train_vec(vec, nb_steps=20)
        assert vec.in_flight > 0
        result = agent.evaluate_vec(vec, nb_episodes=3)
        assert result['lengths'] == [LENGTH] * 3 and vec.in_flight == 0
        steps = agent.global_step
        agent.train_vec(vec, nb_steps=20)
        assert vec.resets == 1 and vec.async_resets == 2
        assert len(agent.memory) == agent.global_step >= steps + 20
        agents_support.check_chains(agent.memory, LENGTH, restarts=True)


@pytest.mark.slow
def test_switching_modes_on_the_same_env_continues_its_episodes():
    with agents_support.scripted_cheap(3, LENGTH) as vec:
        agent = _sac(vec)
        agent.train_vec(vec, nb_steps=20)
        assert vec.in_flight > 0
        summary = agent.train_vec(vec, nb_steps=9, mode='lockstep')  # takes in what is in flight
        assert summary['mode'] == 'lockstep' and vec.in_flight == 0 and vec.resets == 0
        agent.train_vec(vec, nb_steps=20, mode='async')
        assert vec.resets == 0 and vec.async_resets == 1
        assert len(agent.memory) == agent.global_step
        agents_support.check_chains(agent.memory, LENGTH)


@pytest.mark.slow
def test_sac_on_a_real_farm_vec_env_pairs_each_transition_with_its_own_environment(
        thread_farm):
    """The same checks on FarmVecEnv's asynchronous mode (worker processes behind a farm in a
    thread): the order results come back in is the farm's, not scripted."""
    import farmer as farmer_module
    f = thread_farm(capacity=4)
    farmer = farmer_module.Farmer(farms=[('127.0.0.1', 4, f.port)], start_local=False)
    try:
        vec = farmer.vec_env('CheapEnv', 4, {'obs_size': 3, 'act_size': 1,
                                             'episode_length': LENGTH})
        for i in range(4):
            vec.set_params({'offset': 100.0 * (i + 1)}, [i])
        received = []
        recv = vec.recv

        def spy(*args, **kwargs):
            result = recv(*args, **kwargs)
            received.append(contract.env_ids_of(result[4]).tolist())
            return result
        vec.recv = spy
        agent = _sac(vec, nb_steps_warmup=30)
        events = []
        first = agent.train_vec(vec, nb_steps=60, callback=events.append)
        second = agent.train_vec(vec, nb_episodes=8, callback=events.append)
        assert first['mode'] == second['mode'] == 'async'
        assert len(agent.memory) == agent.global_step == first['steps'] + second['steps']
        assert len(events) == agent.episodes and all(e['length'] == LENGTH for e in events)
        agents_support.check_chains(agent.memory, LENGTH)
        agents_support.check_interleaved_replay(agent.memory, [100, 200, 300, 400], LENGTH,
                                                terminated=True)
        assert agent.updates > 0
        vec.close()
    finally:
        farmer.close()


def test_vector_noise_advances_only_the_environments_that_act():
    noise = VectorNoise(2, 'ou', sigma=0.3, seed=0)
    noise.sample(3)
    before = noise.state.copy()
    sampled = noise.sample_for([2, 0])
    assert sampled.shape == (2, 2)
    np.testing.assert_array_equal(noise.state[1], before[1])
    np.testing.assert_array_equal(noise.state[[2, 0]], sampled)
    assert not np.array_equal(noise.state[0], before[0])
    noise.sample_for([4])  # an env not seen yet: a process of its own, from mu
    assert noise.state.shape == (5, 2) and (noise.state[3] == 0).all()
    np.testing.assert_array_equal(noise.state[1], before[1])
    assert VectorNoise(3, 'gaussian', seed=0).sample_for([1, 0]).shape == (2, 3)


def case_ddpg_noise_follows_its_environment():
    from agents.ddpg import DDPG
    with agents_support.scripted_cheap(4, LENGTH) as vec:
        agent = DDPG.from_spaces(vec.observation_space, vec.action_space,
                                 hidden=agents_support.SMALL, batch_size=16, nb_steps_warmup=20,
                                 nb_steps_random=0, noise=VectorNoise(1, 'ou', sigma=0.3, seed=0),
                                 seed=0)
        agent.compile()
        sampled, resets, ended = [], [], []
        sample_for, reset = agent.noise.sample_for, agent.noise.reset

        def spy_sample_for(env_ids):
            sampled.append(list(env_ids))
            return sample_for(env_ids)

        def spy_reset(indices=None):
            resets.append(None if indices is None else sorted(int(i) for i in indices))
            # the processes of the envs whose episodes end start over, the others go on
            if indices is not None:
                others = [i for i in range(len(agent.noise.state)) if i not in resets[-1]]
                kept = agent.noise.state[others].copy()
                reset(indices)
                np.testing.assert_array_equal(agent.noise.state[others], kept)
                assert (agent.noise.state[resets[-1]] == 0).all()
                return None
            return reset(indices)
        agent.noise.sample_for, agent.noise.reset = spy_sample_for, spy_reset
        agent.train_vec(vec, nb_steps=80, callback=lambda e: ended.append(e['env']))
        assert _interleaved(vec)
        assert sampled == vec.sends  # each row's noise drawn for the env it was sent to
        assert resets[0] is None  # the first call starts every process afresh
        assert sorted(i for r in resets[1:] for i in r) == sorted(ended)
        agents_support.check_chains(agent.memory, LENGTH)


@pytest.mark.slow
def test_ddpg_noise_follows_its_environment():
    agents_support.run_case(THIS, 'case_ddpg_noise_follows_its_environment')


if __name__ == '__main__':
    agents_support.main(globals())
