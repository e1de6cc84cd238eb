"""Replay memory of explicit transitions, correct when several environments are interleaved.

keras-rl's ``SequentialMemory`` stores observations in one sequence and takes a transition's next
state from the *next appended* observation; with N environments appending in turn that pairs
states from different environments. Here every transition carries its own next state:

``append_batch(obs, actions, rewards, next_obs, terminals)`` stores N transitions
``(s, a, r, s', terminal)``. ``terminal`` means a true end (no bootstrapping from ``s'``); a time
limit or a lost environment is *not* terminal, and ``s'`` is then the episode's last observation
(``info['terminal_observation']`` from the vectorized env), never the next episode's first.

``sample(batch_size)`` returns ``(obs, actions, rewards, next_obs, terminals)`` as float32 arrays
drawn uniformly with replacement. A fixed-size ring buffer (``limit`` transitions); numpy only, no
Python work per transition.
"""
import numpy as np


class TransitionReplay(object):
    def __init__(self, limit, observation_shape, action_shape, seed=None):
        self.limit = int(limit)
        self.observation_shape = tuple(observation_shape)
        self.action_shape = tuple(action_shape)
        # np.zeros leaves untouched pages unallocated, so a large limit costs memory only as filled.
        self.observations = np.zeros((self.limit,) + self.observation_shape, dtype=np.float32)
        self.next_observations = np.zeros_like(self.observations)
        self.actions = np.zeros((self.limit,) + self.action_shape, dtype=np.float32)
        self.rewards = np.zeros(self.limit, dtype=np.float32)
        self.terminals = np.zeros(self.limit, dtype=np.float32)
        self.position = 0  # where the next transition goes
        self.size = 0
        self.rng = np.random.RandomState(seed)

    def __len__(self):
        return self.size

    @property
    def nb_entries(self):
        """keras-rl's name for the number of stored transitions."""
        return self.size

    def append(self, obs, action, reward, next_obs, terminal):
        """One transition."""
        self.append_batch(np.asarray(obs)[None], np.asarray(action)[None], [reward],
                          np.asarray(next_obs)[None], [terminal])

    def append_batch(self, obs, actions, rewards, next_obs, terminals):
        """N transitions, one per row; row i of every argument belongs to the same transition."""
        n = len(rewards)
        if n == 0:
            return
        if n > self.limit:  # only the newest fit
            keep = slice(n - self.limit, n)
            obs, actions, next_obs = obs[keep], actions[keep], next_obs[keep]
            rewards, terminals, n = rewards[keep], terminals[keep], self.limit
        idx = (self.position + np.arange(n)) % self.limit
        self.observations[idx] = obs
        self.actions[idx] = np.reshape(actions, (n,) + self.action_shape)
        self.rewards[idx] = rewards
        self.next_observations[idx] = next_obs
        self.terminals[idx] = np.asarray(terminals, dtype=np.float32)
        self.position = int((self.position + n) % self.limit)
        self.size = int(min(self.size + n, self.limit))

    def sample(self, batch_size):
        if self.size == 0:
            raise ValueError('cannot sample from an empty replay memory')
        idx = self.rng.randint(0, self.size, size=batch_size)
        return (self.observations[idx], self.actions[idx], self.rewards[idx],
                self.next_observations[idx], self.terminals[idx])

    def get_config(self):
        return {'limit': self.limit, 'observation_shape': list(self.observation_shape),
                'action_shape': list(self.action_shape)}
