"""The vectorized-environment contract every learner sees, and an in-process implementation of it.

Host side; Python 3.6 compatible. Agents depend on this contract only, never on farms:

- ``num_envs``: int; ``observation_space`` / ``action_space``: gym(nasium) spaces of ONE env.
- ``reset(seed=None)`` -> ``obs``, float32 array ``(num_envs, obs_dim)``. With a seed, env i is
  reset with ``seed + i``. A ``seed`` among the env kwargs is the first reset's seed when that
  reset is given none (so env i gets ``seed + i`` there too, never all the same seed).
- ``step_async(actions)`` sends ``(num_envs, act_dim)`` actions and returns at once;
  ``step_wait()`` -> ``(obs, rewards, terminated, truncated, infos)``: float32 ``(num_envs, obs_dim)``,
  float64 ``(num_envs,)``, bool ``(num_envs,)``, bool ``(num_envs,)``, list of dicts.
  ``step(actions)`` is both.
- Auto-reset: when env i's episode ends (``terminated[i] or truncated[i]``), ``obs[i]`` is already
  the first observation of its next episode; ``infos[i]['terminal_observation']`` holds the last
  observation of the ended one and ``infos[i]['episode'] = {'r': return, 'l': length}``.
- *terminated* is a true end (bootstrap with 0); *truncated* is a time limit or an environment lost
  to a crashed worker or farm (bootstrap from the terminal observation). A lost environment also
  has ``infos[i]['lost']`` with the reason; one moved to another farm (off a farm above its
  capacity) has ``infos[i]['moved']``. Why an episode ended is :func:`end_reason`.
- ``close()``; usable as a context manager.
"""
import numpy as np

try:  # gymnasium where it exists (3.8+); gym 0.26 on a Python 3.6 host
    import gymnasium as gym_spaces_lib
except ImportError:  # pragma: no cover - exercised on the Python 3.6 host only
    import gym as gym_spaces_lib


def make_space(plain):
    """The one conversion of a plain-data space (see envs/base.py) into a gym space."""
    if plain['kind'] == 'discrete':
        return gym_spaces_lib.spaces.Discrete(int(plain['n']))
    if plain['kind'] == 'box':
        return gym_spaces_lib.spaces.Box(np.array(plain['low'], dtype=np.float32),
                                         np.array(plain['high'], dtype=np.float32),
                                         dtype=np.float32)
    raise ValueError('unknown space kind %r' % (plain.get('kind'),))


# Why an episode ended, as recorded in episodes.csv. A lost environment's info carries
# ``lost_cause``: 'worker' (its process died or hung), 'farm' (the farm stopped answering) or
# 'lease' (the farm dropped the learner's lease: paused past its TTL, or the farm restarted).
# An environment may also truncate itself with ``info['truncated_reason']``: 'diverged' (NaN or
# inf in the simulation) or 'step budget' (a step slower than its env's step_budget), see
# envs/guard.py.
END_REASONS = ('terminated', 'time_limit', 'worker_lost', 'farm_lost', 'lease_expired', 'moved',
               'diverged', 'step_budget')


def end_reason(terminated, info):
    """One of :data:`END_REASONS` for an episode that ended with ``terminated`` and ``info``."""
    if terminated:
        return 'terminated'
    if 'moved' in info:
        return 'moved'
    if 'lost' in info:
        cause = info.get('lost_cause', 'worker')
        return 'lease_expired' if cause == 'lease' else '%s_lost' % cause
    reason = info.get('truncated_reason')
    if reason == 'diverged':
        return 'diverged'
    if reason == 'step budget':
        return 'step_budget'
    return 'time_limit'


class VecEnv(object):
    """Base class: subclasses implement reset, step_async, step_wait, close."""

    num_envs = 0
    observation_space = None
    action_space = None

    def reset(self, seed=None):
        raise NotImplementedError

    def step_async(self, actions):
        raise NotImplementedError

    def step_wait(self):
        raise NotImplementedError

    def step(self, actions):
        self.step_async(actions)
        return self.step_wait()

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class EpisodeTracker(object):
    """Per-env running return and length; fills ``info['episode']`` when an episode ends."""

    def __init__(self, num_envs):
        self.returns = np.zeros(num_envs)
        self.lengths = np.zeros(num_envs, dtype=np.int64)

    def record(self, rewards, ended, infos):
        self.returns += rewards
        self.lengths += 1
        for i in np.flatnonzero(ended):
            infos[i]['episode'] = {'r': float(self.returns[i]), 'l': int(self.lengths[i])}
            self.returns[i] = 0.0
            self.lengths[i] = 0

    def restart(self, i):
        self.returns[i] = 0.0
        self.lengths[i] = 0


class InProcessVecEnv(VecEnv):
    """N environments from ``envs/`` stepped one after another in this process.

    The reference the farm-backed vectorized env is tested against, and a cheap stand-in for
    agent tests. Imports ``envs`` (the farm side) lazily: only this class does so on the host.
    """

    def __init__(self, env_name, n_envs, env_kwargs=None):
        import envs
        env_kwargs = dict(env_kwargs or {})
        self._first_seed = env_kwargs.pop('seed', None)  # as FarmVecEnv: env i gets seed + i
        self.envs = [envs.make(env_name, **env_kwargs) for _ in range(n_envs)]
        self.num_envs = n_envs
        self.observation_space = make_space(self.envs[0].observation_space)
        self.action_space = make_space(self.envs[0].action_space)
        self.tracker = EpisodeTracker(n_envs)
        self._actions = None

    def reset(self, seed=None):
        if seed is None:
            seed, self._first_seed = self._first_seed, None
        obs = [env.reset(None if seed is None else seed + i) for i, env in enumerate(self.envs)]
        for i in range(self.num_envs):
            self.tracker.restart(i)
        return np.asarray(obs, dtype=np.float32)

    def set_params(self, params, indices=None):
        """As FarmVecEnv.set_params: applied at each env's next reset; ValueError if refused."""
        for i in range(self.num_envs) if indices is None else indices:
            self.envs[i].set_params(**params)  # envs.EnvError is a ValueError

    def step_async(self, actions):
        self._actions = np.asarray(actions)

    def step_wait(self):
        n = self.num_envs
        obs = np.zeros((n,) + self.observation_space.shape, dtype=np.float32)
        rewards = np.zeros(n)
        terminated = np.zeros(n, dtype=bool)
        truncated = np.zeros(n, dtype=bool)
        infos = []
        for i, env in enumerate(self.envs):
            action = self._actions[i].tolist()
            o, r, te, tr, info = env.step(action)
            info = dict(info)
            if te or tr:
                info['terminal_observation'] = np.asarray(o, dtype=np.float32)
                o = env.reset()
            obs[i], rewards[i], terminated[i], truncated[i] = o, r, te, tr
            infos.append(info)
        self.tracker.record(rewards, terminated | truncated, infos)
        return obs, rewards, terminated, truncated, infos

    def close(self):
        for env in self.envs:
            env.close()
