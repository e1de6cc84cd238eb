"""The old 4-tuple gym API that keras-rl's ``fit``/``test`` drive, over a gymnasium environment.

keras-rl calls ``reset() -> obs``, ``step(a) -> (obs, reward, done, info)`` and
``render(mode='human')``; gymnasium (and gym >= 0.26) return ``(obs, info)`` from ``reset`` and
``(obs, reward, terminated, truncated, info)`` from ``step``. ``done`` is ``terminated or
truncated``; a time limit is reported as ``info['TimeLimit.truncated'] = True`` (old gym's
convention), which the agents read to bootstrap truncated episodes.

Also wraps an ``envs`` adapter (plain-data ``reset(seed)`` returning the observation alone).
"""
import numpy as np


class OldGymAPI(object):
    def __init__(self, env, seed=None):
        self.env = env
        self.observation_space = env.observation_space
        self.action_space = env.action_space
        self.reward_range = getattr(env, 'reward_range', (-np.inf, np.inf))
        self._seed = seed

    def reset(self):
        seed, self._seed = self._seed, None  # seed the first episode only, as gymnasium intends
        out = self.env.reset(seed=seed)
        if isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], dict):
            out = out[0]
        return np.asarray(out, dtype=np.float32)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        info = dict(info)
        if truncated and not terminated:
            info['TimeLimit.truncated'] = True
        return (np.asarray(obs, dtype=np.float32), float(reward), bool(terminated or truncated),
                info)

    def render(self, mode='human', **kwargs):
        # gymnasium fixes the render mode at construction; keras-rl passes it on every call.
        return None

    def close(self):
        self.env.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
