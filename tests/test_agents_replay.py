"""agents/replay.py, alone and fed by the vector-stepping loop with interleaved environments."""
import agents_support
import numpy as np
import pytest

from agents.replay import TransitionReplay
from agents.sac import SAC


def test_append_batch_keeps_rows_together_and_wraps_around():
    memory = TransitionReplay(5, (2,), (1,), seed=0)
    for k in range(3):  # 9 transitions into 5 slots: the oldest 4 are overwritten
        rows = np.arange(3) + 3 * k
        memory.append_batch(np.stack([rows, rows], 1), rows[:, None], rows, np.stack([rows, rows], 1) + 100,
                            rows % 2)
    assert len(memory) == memory.nb_entries == 5
    kept = sorted(memory.rewards.tolist())
    assert kept == [4, 5, 6, 7, 8]
    obs, actions, rewards, next_obs, terminals = memory.sample(64)
    np.testing.assert_array_equal(obs[:, 0], rewards)
    np.testing.assert_array_equal(actions[:, 0], rewards)
    np.testing.assert_array_equal(next_obs[:, 0], rewards + 100)
    np.testing.assert_array_equal(terminals, rewards % 2)
    assert obs.dtype == np.float32 and set(rewards.tolist()) <= set(kept)


def test_a_batch_larger_than_the_memory_keeps_the_newest():
    memory = TransitionReplay(3, (1,), (1,))
    rows = np.arange(7, dtype=float)
    memory.append_batch(rows[:, None], rows[:, None], rows, rows[:, None], np.zeros(7))
    assert sorted(memory.rewards.tolist()) == [4, 5, 6]


def test_sampling_an_empty_memory_says_so():
    with pytest.raises(ValueError, match='empty'):
        TransitionReplay(3, (1,), (1,)).sample(2)


def _collect(vec, nb_steps, seed):
    agent = SAC.from_spaces(vec.observation_space, vec.action_space, hidden=agents_support.SMALL,
                            nb_steps_warmup=10 ** 6, seed=0)  # warm-up: no updates, random actions
    agent.compile()
    agent.train_vec(vec, nb_steps=nb_steps, seed=seed)
    return agent


@pytest.mark.parametrize('terminated', [True, False])
def test_interleaved_environments_each_transition_pairs_states_of_its_own_env(terminated):
    # 3 envs step in turn; env i is reset with seed 100 + i, which CheapEnv puts in its
    # observation. Terminated: episodes end at t=6. Truncated: a time limit at t=6 of 50.
    kwargs = {'episode_length': 6} if terminated else {'episode_length': 50,
                                                       'max_episode_steps': 6}
    with agents_support.cheap_vec(3, **kwargs) as vec:
        agent = _collect(vec, nb_steps=3 * 9, seed=100)
    assert len(agent.memory) == 27
    agents_support.check_interleaved_replay(agent.memory, offsets=[100, 101, 102],
                                            episode_length=6, terminated=terminated)


def test_the_interleaving_check_catches_keras_rl_style_next_states():
    # The same data, with next states taken from the next appended row (what SequentialMemory
    # does): the check must fail, so the test above can fail.
    with agents_support.cheap_vec(3, episode_length=6) as vec:
        agent = _collect(vec, nb_steps=3 * 9, seed=100)
    memory = agent.memory
    n = len(memory)
    memory.next_observations[:n - 1] = memory.observations[1:n]
    memory.size = n - 1
    with pytest.raises(AssertionError):
        agents_support.check_interleaved_replay(memory, [100, 101, 102], 6, terminated=True)


def _filled(limit, n, seed=0):
    memory = TransitionReplay(limit, (2,), (1,), seed=seed)
    for row in np.arange(n, dtype=np.float32):  # one at a time: the ring wraps
        memory.append([row, row], [row], row, [row + 1, row + 1], row % 3 == 0)
    return memory


def test_a_saved_memory_loads_with_the_same_layout_and_samples_the_same(tmp_path):
    memory = _filled(5, 7)  # wrapped: position 2
    memory.save(str(tmp_path / 'memory.npz'))
    other = TransitionReplay(5, (2,), (1,), seed=0)
    assert other.load(str(tmp_path / 'memory.npz')) == 5
    assert (other.position, other.size) == (memory.position, memory.size) == (2, 5)
    for mine, theirs in zip(other.sample(32), memory.sample(32)):
        np.testing.assert_array_equal(mine, theirs)


def test_a_memory_of_another_limit_keeps_the_newest_in_order(tmp_path):
    _filled(5, 7).save(str(tmp_path / 'memory.npz'))  # holds 2..6, oldest at position 2
    smaller = TransitionReplay(3, (2,), (1,))
    smaller.load(str(tmp_path / 'memory.npz'))
    assert sorted(smaller.rewards.tolist()) == [4, 5, 6]
    larger = TransitionReplay(8, (2,), (1,))
    larger.load(str(tmp_path / 'memory.npz'))
    assert larger.rewards[:5].tolist() == [2, 3, 4, 5, 6] and larger.position == 5
    np.testing.assert_array_equal(larger.next_observations[:5, 0], larger.rewards[:5] + 1)


def test_a_memory_of_other_shapes_is_refused(tmp_path):
    _filled(5, 3).save(str(tmp_path / 'memory.npz'))
    with pytest.raises(ValueError, match='observations'):
        TransitionReplay(5, (3,), (1,)).load(str(tmp_path / 'memory.npz'))


def test_next_states_that_are_later_states_are_stored_once(tmp_path):
    """Two environments interleaved, episodes of 5: only each episode's last next state (not the
    state of any transition) is stored whole; everything loads back bit for bit."""
    rng = np.random.RandomState(0)
    memory = TransitionReplay(100, (3,), (1,))
    for episode in range(4):
        states = rng.randn(2, 3).astype(np.float32)
        for t in range(5):
            next_states = rng.randn(2, 3).astype(np.float32)
            memory.append_batch(states, rng.randn(2, 1), rng.randn(2), next_states, [t == 4] * 2)
            states = next_states
    memory.save(str(tmp_path / 'memory.npz'))
    with np.load(str(tmp_path / 'memory.npz')) as data:
        assert len(data['next_rest']) == 8 and (data['next_refs'] >= 0).sum() == 32
    other = TransitionReplay(100, (3,), (1,))
    other.load(str(tmp_path / 'memory.npz'))
    for field in ('observations', 'next_observations', 'actions', 'rewards', 'terminals'):
        np.testing.assert_array_equal(getattr(other, field), getattr(memory, field))


def test_a_memory_whose_next_states_match_no_state_saves_and_loads(tmp_path):
    """Every next state stored whole (no reference): saving once failed on the empty match."""
    rng = np.random.RandomState(0)
    memory = TransitionReplay(10, (3,), (1,))
    obs, next_obs = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    memory.append_batch(obs, rng.normal(size=(4, 1)), np.ones(4), next_obs, np.zeros(4))
    memory.save(str(tmp_path / 'm.npz'))
    again = TransitionReplay(10, (3,), (1,))
    assert again.load(str(tmp_path / 'm.npz')) == 4
    assert np.allclose(again.next_observations[:4], next_obs)
