"""GymVectorEnv: a farm's environments as a gymnasium ``VectorEnv`` (gymnasium 1.x API).

    from farmer import Farmer
    from vecenv.gym_vector import GymVectorEnv

    with Farmer() as farmer:
        envs = GymVectorEnv(farmer.vec_env('Pendulum-v1', 8))
        obs, infos = envs.reset(seed=0)
        obs, rewards, terminations, truncations, infos = envs.step(envs.action_space.sample())

It wraps anything that meets vecenv/contract.py's contract (``Farmer.vec_env``'s FarmVecEnv, or
contract.InProcessVecEnv) and translates, nothing more:

- Autoreset: the farm resets an environment in the same step that ends its episode, which is
  gymnasium's SAME_STEP mode (``metadata['autoreset_mode']``): ``obs[i]`` is then the next
  episode's first observation, ``infos['final_obs'][i]`` the ended episode's last one and
  ``infos['final_info']`` that step's info, with the masks ``infos['_final_obs']`` and
  ``infos['_final_info']``, as ``SyncVectorEnv(..., autoreset_mode='SameStep')`` gives them.
  Wrappers that need NEXT_STEP (gymnasium's ``VectorObservationWrapper``) refuse it;
  ``RecordEpisodeStatistics`` supports it and gives the episode returns and lengths.
- ``reset(seed=s)`` resets env i with ``s + i`` (a list of seeds must be that sequence: the farm
  takes one seed); farm resets take no options (``options`` must be None or empty; no
  ``reset_mask``). The reset's infos are ``{}``: the farm does not send a reset's info.
- ``np_random_seed`` is one seed per environment, a tuple, as ``SyncVectorEnv``'s: env i's
  ``s + i`` since ``reset(seed=s)``, and -1 (gymnasium's "unknown") for each before any seeded
  reset, since an unseeded environment on a farm picks its own.
- Actions as ``SyncVectorEnv`` takes them: one row per environment; a scalar is a TypeError (it
  cannot be iterated over, gymnasium's own check), a wrong number of rows a ValueError.
- Discrete observation spaces (FrozenLake, Taxi): int64 observations, inside the batched
  ``MultiDiscrete`` space (vecenv/contract.py carries them so).
- Why the farm ended an episode itself goes with the ended step's info: ``final_info['lost']``
  and ``final_info['lost_cause']`` (a worker or farm lost mid-step: the episode is truncated,
  reward 0, its last known observation as ``final_obs``), or ``final_info['moved']``.
- A curriculum: ``set_params(params, indices=None)``, or ``call('set_params', **params)`` as
  gymnasium's own vector envs call a method of every environment, passes plain-data parameters
  to the wrapped env's ``set_params`` (vecenv/contract.py: applied at each environment's next reset;
  ValueError naming what the environment accepts when refused). ``call`` knows no other name.
- ``render()`` raises NotImplementedError: environments on a farm do not render to the learner;
  for videos of a policy see ``evaluate.py``.

Python 3.6 compatible syntax (gymnasium 1.x itself needs Python 3.10+).
"""
import numpy as np

try:
    from gymnasium.vector import AutoresetMode, VectorEnv
    from gymnasium.vector.utils import batch_space, iterate
except ImportError as _error:  # gymnasium < 1.0, or none (a Python 3.6 host has gym 0.26)
    from common.errors import UserError

    class MissingDependencyError(UserError, ImportError):
        """One line (errors.install_excepthook), still an ImportError."""

    raise MissingDependencyError('vecenv/gym_vector.py needs gymnasium 1.x (%s); install it '
                                 'with: pip install "gymnasium>=1.0"' % (_error,)) from None

from vecenv import contract  # noqa: E402  (after the check: it imports gym(nasium) itself)

# Keys of the wrapped env's infos that are the farm's, not the environment's.
_TERMINAL = 'terminal_observation'
_EPISODE = 'episode'  # the farm's episode statistics: gymnasium's RecordEpisodeStatistics' job


class GymVectorEnv(VectorEnv):
    """A vecenv/contract.py vectorized env (a farm's, or in-process) as a gymnasium 1.x VectorEnv."""

    metadata = {'autoreset_mode': AutoresetMode.SAME_STEP, 'render_modes': []}
    render_mode = None

    def __init__(self, venv):
        self.venv = venv
        self.num_envs = venv.num_envs
        self.single_observation_space = venv.observation_space
        self.single_action_space = venv.action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.metadata = dict(GymVectorEnv.metadata)
        self._env_seeds = (-1,) * self.num_envs  # each env's np_random_seed: none known yet

    def reset(self, *, seed=None, options=None):
        """Resets every environment (env i with ``seed + i``); returns ``(obs, {})``."""
        seed = self._one_seed(seed)
        if options:
            raise ValueError('farm environments take no reset options (got %r): their reset '
                             'is reset(seed) for all of them together' % (options,))
        super(GymVectorEnv, self).reset(seed=seed)  # seeds np_random, as the contract expects
        obs = self.venv.reset(seed=seed)
        if seed is not None:
            self._env_seeds = tuple(seed + i for i in range(self.num_envs))
        return obs, {}

    @property
    def np_random_seed(self):
        """Each environment's seed, a tuple as SyncVectorEnv's: ``seed + i`` since the last
        seeded reset (an unseeded one goes on from it), -1 (unknown) before any."""
        return self._env_seeds

    def _one_seed(self, seed):
        if seed is None or isinstance(seed, (int, np.integer)):
            return None if seed is None else int(seed)
        seeds = list(seed)
        if len(seeds) != self.num_envs:
            raise ValueError('%d seeds for %d environments' % (len(seeds), self.num_envs))
        if all(s is None for s in seeds):
            return None
        if None in seeds or seeds != [seeds[0] + i for i in range(self.num_envs)]:
            raise ValueError('the farm seeds env i with seed + i; seeds %r do not follow that: '
                             'pass one int' % (seeds,))
        return int(seeds[0])

    def step(self, actions):
        """Steps every environment; returns ``(obs, rewards, terminations, truncations,
        infos)``, infos as one dict of arrays with ``_key`` masks (SAME_STEP autoreset)."""
        iterate(self.action_space, actions)  # gymnasium's check: TypeError for a scalar
        obs, rewards, terminated, truncated, env_infos = self.venv.step(np.asarray(actions))
        infos = {}
        for i, info in enumerate(env_infos):
            info = dict((k, v) for k, v in info.items() if k != _EPISODE)
            if _TERMINAL in info:
                final_obs = info.pop(_TERMINAL)
                infos = self._add_info(infos, {'final_obs': final_obs, 'final_info': info}, i)
            else:
                infos = self._add_info(infos, info, i)
        return obs, rewards, terminated, truncated, infos

    def set_params(self, params, indices=None):
        """The wrapped env's ``set_params`` (``indices``: a list of env indices, None for all)."""
        self.venv.set_params(params, indices)

    def call(self, name, *args, **kwargs):
        """``call('set_params', **params)`` (or one dict) on every environment; returns a
        tuple with None per environment, as SyncVectorEnv.call does for such a method."""
        self.set_params(contract.params_by_name('call', name, args, kwargs))
        return (None,) * self.num_envs

    def render(self):
        raise NotImplementedError('farm environments do not render to the learner; for videos '
                                  'of a policy see evaluate.py')

    def close_extras(self, **kwargs):
        self.venv.close()
