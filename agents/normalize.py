"""Running observation statistics and the normalization the agents' networks see.

:class:`RunningNorm` keeps ``count``, ``mean`` and ``M2`` (the sum of squared deviations) of every
observation component, updated a batch at a time with the parallel-variance merge (Chan, Golub
and LeVeque 1979): merging a batch's own count, mean and M2 into the running ones gives the same
figures as one pass over all the data, to rounding, and never loses precision to a large mean as
``E[x^2] - E[x]^2`` would. ``normalize(batch)`` is ``clip((x - mean) / sqrt(var + eps), -clip,
clip)`` with the population variance ``M2 / count``; before any observation it is the identity
(mean 0, variance 1), clipped.

Why the agents normalize: osim-rl's observations mix positions in metres, velocities and muscle
states, of scales that differ by orders of magnitude; a network fed them raw learns slowly or not
at all (the NeurIPS 2018/2019 osim-rl solutions all normalize). How they use it (agents/base.py):
the replay memory stores raw observations and the networks take them through
``state_batch``, normalized with the *current* statistics, so states replayed and states acted
on are always normalized alike; the statistics are updated only from observations the training
loop receives, never while evaluating.

State is plain data (:meth:`state` / :meth:`set_state`: numpy arrays, float64), saved beside an
agent's weights (:meth:`save` / :meth:`load`, one ``.npz``) and in its training state.
"""
import numpy as np

EPS = 1e-8    # keeps a component that never varied from dividing by zero
CLIP = 10.0   # normalized values beyond +-10 standard deviations carry no more information


class RunningNorm(object):
    """Running mean and variance of ``shape``-d observations; see the module docstring."""

    def __init__(self, shape, eps=EPS, clip=CLIP):
        self.shape = tuple(int(s) for s in np.atleast_1d(shape))
        self.eps = float(eps)
        self.clip = float(clip)
        self.count = 0
        self.mean = np.zeros(self.shape, dtype=np.float64)
        self.m2 = np.zeros(self.shape, dtype=np.float64)

    @property
    def var(self):
        """The population variance (ones before any observation)."""
        if self.count == 0:
            return np.ones(self.shape, dtype=np.float64)
        return self.m2 / self.count

    def update(self, batch):
        """Add a batch of observations, ``(n,) + shape`` (or one observation, ``shape``)."""
        batch = np.asarray(batch, dtype=np.float64).reshape((-1,) + self.shape)
        n = len(batch)
        if n == 0:
            return
        batch_mean = batch.mean(axis=0)
        batch_m2 = ((batch - batch_mean) ** 2).sum(axis=0)
        total = self.count + n
        delta = batch_mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + batch_m2 + delta ** 2 * (self.count * n / total)
        self.count = total

    def normalize(self, batch):
        """``clip((x - mean) / sqrt(var + eps), -clip, clip)`` as float32."""
        x = np.asarray(batch, dtype=np.float64)
        z = (x - self.mean) / np.sqrt(self.var + self.eps)
        return np.clip(z, -self.clip, self.clip).astype(np.float32)

    # -- plain data --------------------------------------------------------------------------
    def state(self):
        """``{'count', 'mean', 'm2', 'eps', 'clip'}`` as numpy arrays (for ``np.savez``)."""
        return {'count': np.int64(self.count), 'mean': self.mean.copy(), 'm2': self.m2.copy(),
                'eps': np.float64(self.eps), 'clip': np.float64(self.clip)}

    def set_state(self, state):
        """What :meth:`state` returned (or an ``np.load`` of it); the shape must match."""
        mean = np.asarray(state['mean'], dtype=np.float64)
        if mean.shape != self.shape:
            raise ValueError('observation statistics of shape %s, the agent observes %s'
                             % (mean.shape, self.shape))
        self.count = int(state['count'])
        self.mean = mean.copy()
        self.m2 = np.asarray(state['m2'], dtype=np.float64).copy()
        if 'eps' in state:
            self.eps = float(state['eps'])
        if 'clip' in state:
            self.clip = float(state['clip'])

    def save(self, path):
        np.savez(path, **self.state())

    def load(self, path):
        with np.load(path) as data:
            self.set_state(dict((key, data[key]) for key in data.files))
