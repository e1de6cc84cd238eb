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

``save(path)`` / ``load(path)``: the stored transitions and the ring's position in one ``.npz``,
for checkpoints (the sampling RNG is the agent's to save, with its other RNG states). A memory
loaded into one of the same ``limit`` is laid out exactly as it was, so sampling continues
identically; into another ``limit`` the newest transitions that fit are kept, oldest first.

The file is compressed by what the data allows: almost every next state is also the state of a
later transition of the same environment, so those are stored as that transition's index and
only the others (an episode's last, the newest) whole, which halves the file (L2M: 1.33 kB a
transition against 2.8 kB in memory; a million transitions 1.3 GB). zlib is not used: it shrank
L2M's float32 states by 9% only, at 13 MB/s (a million transitions: minutes per checkpoint),
where writing them plain takes seconds.

``mirror`` (an :class:`envs.symmetry.Mirror`, or None): every appended transition is stored
twice, as it came and mirrored left-right; ``limit`` counts both. Saved and loaded memories hold
both already (loading mirrors nothing again).
"""
import numpy as np


class TransitionReplay(object):
    def __init__(self, limit, observation_shape, action_shape, seed=None, mirror=None):
        self.limit = int(limit)
        self.mirror = mirror
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
        self._store(obs, actions, rewards, next_obs, terminals)
        if self.mirror is not None and len(rewards):
            self._store(self.mirror.observations(obs), self.mirror.actions(actions), rewards,
                        self.mirror.observations(next_obs), terminals)

    def _store(self, obs, actions, rewards, next_obs, terminals):
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

    def clear(self):
        """Forget every transition (the arrays stay allocated)."""
        self.position = 0
        self.size = 0

    def save(self, path):
        """The stored transitions to ``path`` (a ``.npz``; next states by reference, see above)."""
        n = self.size
        obs, next_obs = self.observations[:n], self.next_observations[:n]
        refs = _equal_rows(next_obs, obs)
        np.savez(path, observations=obs, actions=self.actions[:n], rewards=self.rewards[:n],
                 terminals=self.terminals[:n], next_refs=refs, next_rest=next_obs[refs < 0],
                 position=np.int64(self.position), limit=np.int64(self.limit))

    def load(self, path):
        """Replace the contents with what :meth:`save` wrote; returns the number of transitions.
        Raises ``ValueError`` when the file's shapes are not this memory's."""
        with np.load(path) as data:
            obs, refs = data['observations'], data['next_refs']
            next_obs = np.empty_like(obs)
            next_obs[refs >= 0] = obs[refs[refs >= 0]]
            next_obs[refs < 0] = data['next_rest']
            actions, rewards, terminals = data['actions'], data['rewards'], data['terminals']
            position, limit = int(data['position']), int(data['limit'])
        if obs.shape[1:] != self.observation_shape or actions.shape[1:] != self.action_shape:
            raise ValueError('the replay memory in %s holds observations %s and actions %s; this '
                             'agent\'s are %s and %s' % (path, obs.shape[1:], actions.shape[1:],
                                                         self.observation_shape,
                                                         self.action_shape))
        n = len(rewards)
        self.clear()
        if limit == self.limit:  # the same layout: sampling continues as if never saved
            self.observations[:n], self.next_observations[:n] = obs, next_obs
            self.actions[:n], self.rewards[:n], self.terminals[:n] = actions, rewards, terminals
            self.position, self.size = position % self.limit, n
        else:  # oldest first, so that the newest are the ones kept when it is smaller
            order = np.arange(n)
            if n == limit:
                order = np.roll(order, -position)
            self._store(obs[order], actions[order], rewards[order], next_obs[order],
                        terminals[order])
        return n

    def sample(self, batch_size):
        if self.size == 0:
            raise ValueError('cannot sample from an empty replay memory')
        idx = self.rng.randint(0, self.size, size=batch_size)
        return (self.observations[idx], self.actions[idx], self.rewards[idx],
                self.next_observations[idx], self.terminals[idx])

    def get_config(self):
        return {'limit': self.limit, 'observation_shape': list(self.observation_shape),
                'action_shape': list(self.action_shape), 'mirrored': self.mirror is not None}


def _equal_rows(rows, among, chunk=8192):
    """For each row of ``rows``, the index of a bitwise-equal row of ``among``, else -1.

    Rows are matched by a 64-bit hash (sorted, then binary search), then compared whole, so a
    hash collision costs a miss, never a wrong state. Vectorized and in chunks: a million L2M
    rows take seconds and little memory beyond the hashes.
    """
    refs = np.full(len(rows), -1, dtype=np.int64)
    if not len(rows) or not len(among):
        return refs
    hashes = _row_hashes(among, chunk)
    order = np.argsort(hashes, kind='stable')
    sorted_hashes = hashes[order]
    for start in range(0, len(rows), chunk):
        block = rows[start:start + chunk]
        wanted = _row_hashes(block, chunk)
        at = np.minimum(np.searchsorted(sorted_hashes, wanted), len(order) - 1)
        candidates = order[at]
        same = sorted_hashes[at] == wanted
        same[same] = np.all(_bits(among[candidates[same]]) == _bits(block[same]), axis=1)
        refs[start + np.flatnonzero(same)] = candidates[same]
    return refs


def _bits(rows):
    """Rows as unsigned integers of their bits (float32: one uint32 per value)."""
    rows = np.ascontiguousarray(rows)
    rows = rows.reshape(len(rows), int(np.prod(rows.shape[1:])))  # (-1 fails on no rows)
    return rows.view(np.uint32 if rows.dtype.itemsize == 4 else np.uint8)


def _row_hashes(rows, chunk):
    out = np.empty(len(rows), dtype=np.uint64)
    width = _bits(rows[:1]).shape[1]
    weights = np.random.RandomState(12345).randint(0, 2 ** 62, size=width, dtype=np.int64)
    weights = (weights.astype(np.uint64) << np.uint64(1)) | np.uint64(1)  # odd: a bijection
    with np.errstate(over='ignore'):  # arithmetic modulo 2**64 is the point
        for start in range(0, len(rows), chunk):
            block = _bits(rows[start:start + chunk]).astype(np.uint64)
            out[start:start + len(block)] = (block * weights).sum(axis=1)
    return out
