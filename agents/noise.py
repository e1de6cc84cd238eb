"""Exploration noise with one independent process per environment (DDPG's exploration).

keras-rl's random processes hold one state, so N environments stepping in turn would share (and
correlate) one Ornstein-Uhlenbeck trajectory. :class:`VectorNoise` keeps ``(n_envs, act_dim)``
states; ``reset(indices)`` restarts the processes of the environments whose episode ended, and
``sample_for(env_ids)`` advances only the named environments' processes (asynchronous stepping).

Kinds: ``'gaussian'`` (independent N(0, sigma) each step; TD3 paper's choice for DDPG) and
``'ou'`` (``x += theta * (mu - x) * dt + sigma * sqrt(dt) * N(0, 1)``, the DDPG paper's).
"""
import numpy as np


class VectorNoise(object):
    def __init__(self, act_dim, kind='gaussian', sigma=0.1, theta=0.15, mu=0.0, dt=1e-2,
                 seed=None):
        if kind not in ('gaussian', 'ou'):
            raise ValueError("noise kind must be 'gaussian' or 'ou', got %r" % (kind,))
        self.act_dim = int(act_dim)
        self.kind = kind
        self.sigma = float(sigma)
        self.theta = float(theta)
        self.mu = float(mu)
        self.dt = float(dt)
        self.rng = np.random.RandomState(seed)
        self.state = np.full((0, self.act_dim), self.mu)

    def sample(self, n_envs):
        """Noise for ``n_envs`` environments, shape ``(n_envs, act_dim)``."""
        if self.state.shape[0] != n_envs:
            self.state = np.full((n_envs, self.act_dim), self.mu)
        if self.kind == 'gaussian':
            return self.rng.normal(0.0, self.sigma, size=self.state.shape)
        self.state = (self.state + self.theta * (self.mu - self.state) * self.dt
                      + self.sigma * np.sqrt(self.dt) * self.rng.normal(size=self.state.shape))
        return self.state.copy()

    def sample_for(self, env_ids):
        """Noise for the environments ``env_ids`` only, shape ``(len(env_ids), act_dim)``: their
        own processes advance, the others' stay where they are (asynchronous stepping, where
        only the environments in hand act). Processes not seen yet start at mu."""
        ids = np.asarray(env_ids, dtype=int).reshape(-1)
        if len(ids) and ids.max() >= len(self.state):
            grown = np.full((ids.max() + 1, self.act_dim), self.mu)
            grown[:len(self.state)] = self.state
            self.state = grown
        shape = (len(ids), self.act_dim)
        if self.kind == 'gaussian':
            return self.rng.normal(0.0, self.sigma, size=shape)
        x = self.state[ids]
        self.state[ids] = (x + self.theta * (self.mu - x) * self.dt
                           + self.sigma * np.sqrt(self.dt) * self.rng.normal(size=shape))
        return self.state[ids].copy()

    def reset(self, indices=None):
        """Restart the processes of these environments (all when ``indices`` is None)."""
        if indices is None:
            self.state[:] = self.mu
        else:
            indices = np.asarray(indices, dtype=int)
            # Environments not sampled yet have no state; they start at mu when they are.
            self.state[indices[indices < len(self.state)]] = self.mu
