"""SB3VecEnv: a farm's environments as a stable-baselines3 ``VecEnv``.

    from farmer import Farmer
    from vecenv.sb3 import SB3VecEnv
    from stable_baselines3 import SAC

    with Farmer() as farmer:
        env = SB3VecEnv(farmer.vec_env('Pendulum-v1', 8))
        SAC('MlpPolicy', env, seed=0).learn(20000)

It wraps anything that meets vecenv/contract.py's contract (``Farmer.vec_env``'s FarmVecEnv, or
contract.InProcessVecEnv) and translates, nothing more:

- ``reset()`` -> obs; the seeds SB3 sets with ``seed(s)`` (env i: ``s + i``) are used at the next
  reset only, as SB3's own vector envs do. Farm resets take no options: ``set_options`` with
  anything but empty options makes the next ``reset`` raise ValueError.
- ``step_wait()`` -> ``(obs, rewards, dones, infos)``, ``dones = terminated | truncated``;
  ``infos[i]['terminal_observation']`` (from the farm's auto-reset, which happens in the same
  step, as SB3 expects) and ``infos[i]['TimeLimit.truncated'] = truncated and not terminated``
  (SB3's replay buffer bootstraps from the terminal observation there). Rewards are float32, as
  SB3's ``DummyVecEnv`` returns them.
- ``infos[i]['episode'] = {'r', 'l', 't'}`` at each episode's end, as SB3's ``Monitor`` writes it
  (``t``: seconds since this adapter was made), so SB3's logger shows whole-episode returns
  without a Monitor. No Monitor wraps the environments, and ``env_is_wrapped`` says so (False
  for every wrapper): ``evaluate_policy`` wants ``VecMonitor(SB3VecEnv(...))``, as for any
  VecEnv built without a Monitor per environment (EnvPool's, Procgen's), and VecMonitor then has
  no Monitor to warn about (it did while this answered True for Monitor, issue 22).
- Discrete observation spaces (FrozenLake, Taxi): int64 observations ``(num_envs,)``, as
  ``DummyVecEnv`` holds them (vecenv/contract.py carries them so).
- The environments live in other processes, and only plain data crosses the wire (never an
  attribute or a method by name: DESIGN.md), so ``get_attr`` knows ``render_mode`` (None),
  ``metadata`` and ``max_episode_steps`` only, ``set_attr`` raises NotImplementedError, and so
  does ``env_method`` for every method but ``set_params``, and ``render`` returns None (SB3's
  base class warns that no render mode was set). For videos of a policy see ``evaluate.py``.
- A curriculum: ``set_params(params, indices=None)``, or from an SB3 callback
  ``env_method('set_params', difficulty=2, indices=...)``, passes plain-data parameters to the
  wrapped env's ``set_params`` (vecenv/contract.py: applied at each environment's next reset; ValueError
  naming what the environment accepts when refused).
- A farm or worker lost mid-step (``infos[i]['lost']``) ends that episode truncated, with the
  step's observation as terminal observation and reward 0: SB3 stores that one transition (it
  cannot skip one environment of a step), as a time-limit end, so it bootstraps rather than
  learning a false terminal state. The project's own agents store no transition there.

stable-baselines3 is an optional dependency (requirements-bench.txt): importing this module
without it raises one ImportError line that says what to install.

Python 3.6 compatible syntax (stable-baselines3 itself needs Python 3.9+).
"""
import time

import numpy as np

from common.errors import UserError

_INSTALL = ('pip install -r requirements-bench.txt (torch==2.13.0, CPU build; '
            'stable-baselines3==2.9.2)')


class MissingDependencyError(UserError, ImportError):
    """An optional package is missing: one line (errors.install_excepthook), still an
    ImportError for ``except ImportError``."""


try:
    from stable_baselines3.common.vec_env import VecEnv as _SB3VecEnv
except ImportError as _error:  # the message says what to do; SB3's own trace adds nothing
    raise MissingDependencyError('vecenv/sb3.py needs stable-baselines3 (%s); install it '
                                 'with: %s' % (_error, _INSTALL)) from None

from vecenv import contract  # noqa: E402  (after the check: it imports gym(nasium) itself)


class SB3VecEnv(_SB3VecEnv):
    """A vecenv/contract.py vectorized env (a farm's, or in-process) as a stable-baselines3 VecEnv."""

    def __init__(self, venv):
        self.venv = venv  # before SB3's __init__, which asks get_attr('render_mode')
        self._started = time.time()
        super(SB3VecEnv, self).__init__(venv.num_envs, venv.observation_space, venv.action_space)

    # --- the contract ----------------------------------------------------------------------------
    def reset(self):
        """Resets every environment; returns the observations ``(num_envs, obs_dim)``."""
        seed = self._first_seed()
        if any(self._options):
            raise ValueError('farm environments take no reset options (got %r): their reset '
                             'is reset(seed) only' % (self._options,))
        obs = self.venv.reset(seed=seed)
        self.reset_infos = [{} for _ in range(self.num_envs)]
        self._reset_seeds()
        self._reset_options()
        return obs

    def _first_seed(self):
        """The one seed the wrapped env takes (env i gets ``seed + i``), from SB3's per-env
        seeds, which ``seed(s)`` sets to exactly that."""
        seeds = list(self._seeds)
        if all(s is None for s in seeds):
            return None
        if seeds != [seeds[0] + i for i in range(self.num_envs)]:
            raise ValueError('the farm seeds env i with seed + i; per-env seeds %r do not '
                             'follow that: use seed(s)' % (seeds,))
        return int(seeds[0])

    def step_async(self, actions):
        self.venv.step_async(actions)

    def step_wait(self):
        return self._translate(*self.venv.step_wait())

    def step(self, actions):
        # The wrapped env's own step() makes one farm's call in this thread (host/link.py):
        # one thread switch fewer per vector step than step_async + step_wait.
        return self._translate(*self.venv.step(actions))

    def _translate(self, obs, rewards, terminated, truncated, infos):
        dones = np.logical_or(terminated, truncated)
        elapsed = round(time.time() - self._started, 6)
        for i, info in enumerate(infos):
            info['TimeLimit.truncated'] = bool(truncated[i] and not terminated[i])
            if 'episode' in info:
                info['episode'] = dict(info['episode'], t=elapsed)
        return obs, np.asarray(rewards, dtype=np.float32), dones, infos

    def close(self):
        self.venv.close()

    # --- what SB3 may ask of the environments ----------------------------------------------------
    def get_attr(self, attr_name, indices=None):
        """``render_mode``, ``metadata`` and ``max_episode_steps``; AttributeError otherwise (so
        ``has_attr`` answers False)."""
        n = len(list(self._get_indices(indices)))
        if attr_name == 'render_mode':
            return [None] * n
        if attr_name == 'metadata':
            return [{'render_modes': []} for _ in range(n)]
        if attr_name == 'max_episode_steps':
            return [self._max_episode_steps()] * n
        raise AttributeError('%r: farm environments live in other processes, and only plain '
                             'data crosses the wire; known here: render_mode, metadata, '
                             'max_episode_steps' % (attr_name,))

    def _max_episode_steps(self):
        steps = getattr(self.venv, 'max_episode_steps', None)  # FarmVecEnv
        if steps is None and getattr(self.venv, 'envs', None):  # InProcessVecEnv
            steps = getattr(self.venv.envs[0], 'max_episode_steps', None)
        return steps

    def set_attr(self, attr_name, value, indices=None):
        raise NotImplementedError('set_attr(%r): farm environments live in other processes; '
                                  'pass settings as env kwargs to Farmer.vec_env' % (attr_name,))

    def set_params(self, params, indices=None):
        """The wrapped env's ``set_params`` for ``indices`` (SB3's: None, an int or a list)."""
        self.venv.set_params(params, None if indices is None else list(self._get_indices(indices)))

    def env_method(self, method_name, *method_args, **method_kwargs):
        """``set_params`` only (its params as keywords, or as one dict); returns None per
        environment, as a method without a result does in SB3's own vector envs."""
        indices = method_kwargs.pop('indices', None)
        self.set_params(contract.params_by_name('env_method', method_name, method_args,
                                              method_kwargs), indices)
        return [None] * len(list(self._get_indices(indices)))

    def env_is_wrapped(self, wrapper_class, indices=None):
        """False for every wrapper, SB3's ``Monitor`` included: none wraps the environments
        (the adapter writes ``info['episode']`` itself, but claiming a Monitor made VecMonitor
        warn of one that is not there; see the module docstring)."""
        return [False] * len(list(self._get_indices(indices)))

    def get_images(self):
        raise NotImplementedError('farm environments do not render to the learner; for videos '
                                  'of a policy see evaluate.py')
