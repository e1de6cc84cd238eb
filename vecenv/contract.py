"""The vectorized-environment contract every learner sees, and an in-process implementation of it.

Host side; Python 3.6 compatible. Agents depend on this contract only, never on farms. A
vectorized env holds N environments and steps them in one of two modes: *lockstep* (every
environment takes one step per call, the call lasts as long as the slowest) and *asynchronous*
(actions go to some environments, results come back from whichever finish first, so no core
waits for the slowest environment). The same environments serve both modes, one at a time.

Common to both modes
--------------------
- ``num_envs``: int; ``observation_space`` / ``action_space``: gym(nasium) spaces of ONE env.
- A result row of environment i is ``(obs, reward, terminated, truncated, info)``: obs, float64,
  bool, bool, dict. Rows are stacked into arrays of the same dtypes.
- Observations (:class:`ObsForm`): a ``Box`` space's are float32 ``(obs_dim,)``; a ``Discrete``
  space's (FrozenLake, Taxi) are ints: rows int64 ``(n,)`` (``obs_dim`` is then nothing), a
  terminal observation an int, as in SB3's ``DummyVecEnv`` and gymnasium's ``SyncVectorEnv``.
- Auto-reset: when env i's episode ends (``terminated or truncated``), ``obs`` is already the
  first observation of its next episode; ``info['terminal_observation']`` holds the last
  observation of the ended one and ``info['episode'] = {'r': return, 'l': length}``.
- *terminated* is a true end (bootstrap with 0); *truncated* is a time limit or an environment lost
  to a crashed worker or farm (bootstrap from the terminal observation). A lost environment also
  has ``info['lost']`` with the reason and ``info['lost_cause']``; one moved to another farm (off
  a farm above its capacity) has ``info['moved']``. Why an episode ended is :func:`end_reason`.
- Seeds: with a seed, env i is reset with ``seed + i``. A ``seed`` among the env kwargs is the
  first reset's seed when that reset is given none (so env i gets ``seed + i`` there too, never
  all the same seed).
- ``set_params(params, indices=None)``: applied at each environment's next reset; for one in
  flight, at the latest from the first reset after its result has been received (an auto-reset
  inside the step in flight may still have the old ones); ``ValueError`` if refused.
- ``close()``; usable as a context manager.

Lockstep mode
-------------
- ``reset(seed=None)`` -> ``obs``, ``(num_envs, obs_dim)``.
- ``step_async(actions)`` hands ``(num_envs, act_dim)`` actions over and returns at once;
  ``step_wait()`` -> ``(obs, rewards, terminated, truncated, infos)``: ``(num_envs, obs_dim)``,
  ``(num_envs,)`` x 3, a list of ``num_envs`` dicts. ``step(actions)`` is both.
- Call order: ``step_async`` while a step is pending raises :class:`errors.PendingError` (the
  first step's results would be lost); ``step_wait`` with no step pending raises
  :class:`errors.NothingPendingError`.

Asynchronous mode (EnvPool's ``send``/``recv``)
-----------------------------------------------
An implementation has ``async_reset``, ``send``, ``recv``, ``in_flight`` and ``batch_size``; a
learner tells the modes apart by ``hasattr(vec_env, 'send')``.

- ``async_reset(seed=None)``: resets every environment without waiting for them (seeds as for
  ``reset``). Each one's first observation comes back through ``recv`` as a result with reward
  0.0, terminated False, truncated False and info ``{'env_id': i}``. Raises ``PendingError``
  while any environment is in flight (or a lockstep step is pending).
- ``send(actions, env_ids)``: ``actions`` of shape ``(len(env_ids), act_dim)``, row k for
  environment ``env_ids[k]``; returns at once. An environment is *in flight* from ``send`` (or
  ``async_reset``) until ``recv`` hands its result over; sending to one in flight raises
  ``PendingError`` (nothing of that call is sent). Bad ids or shapes: ``ValueError``.
- ``recv(batch_size=None, timeout=None)`` -> ``(obs, rewards, terminated, truncated, infos)``:
  the results of at least ``min(batch_size, in_flight)`` environments, and of every other one
  already finished, in order of arrival, as ``step_wait``'s with one row per result; row k is
  environment ``infos[k]['env_id']`` (an int), and :func:`env_ids_of` gives them as one int64
  array, ready for ``send``.
  ``batch_size`` defaults to the env's ``batch_size`` attribute (1 unless set). With
  ``timeout`` (seconds) it returns whatever is ready then, possibly 0 rows. With nothing in
  flight it raises ``NothingPendingError``.
- Why that shape (issue 22; the ids were a sixth element before): EnvPool's ``recv`` returns
  five fields with the ids in ``info['env_id']``, so a loop written for it unpacks ours. Its
  info is a dict of arrays, ours the list of per-env dicts of every other call here (and SB3's),
  so the id goes in each dict and ``env_ids_of(infos)`` stands for ``info['env_id']``. Lockstep
  infos carry none: there row i is environment i.
- Everything said above about episode ends, auto-reset, ``terminal_observation``,
  terminated/truncated, ``info['episode']``, lost and moved environments holds per environment,
  exactly as in lockstep: the same seeds and actions give the same results in either mode
  (``'env_id'`` aside).
- ``in_flight``: the number of environments sent and not yet received.

Mixing the modes
----------------
- ``step_async``/``step``/``step_wait`` while any environment is in flight raise
  ``PendingError``; ``send``/``async_reset`` while a lockstep step is pending too.
- ``reset()`` first collects and discards whatever is in flight (and a pending lockstep step),
  then resets every environment: a learner's evaluation can reuse an env it trained on
  asynchronously, and the next asynchronous use starts with ``async_reset``.
"""
import collections

import numpy as np

from common.errors import NothingPendingError, PendingError

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
    """Base class: subclasses implement reset, step_async, step_wait, close (lockstep), and may
    add the asynchronous mode (async_reset, send, recv, in_flight, batch_size)."""

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

    def record(self, rewards, ended, infos, env_ids=None):
        """One result per env of ``env_ids`` (all envs, in order, when None)."""
        if env_ids is None:
            env_ids = np.arange(len(self.returns))
        for k, i in enumerate(env_ids):
            self.returns[i] += rewards[k]
            self.lengths[i] += 1
            if ended[k]:
                infos[k]['episode'] = {'r': float(self.returns[i]), 'l': int(self.lengths[i])}
                self.returns[i] = 0.0
                self.lengths[i] = 0

    def restart(self, i):
        self.returns[i] = 0.0
        self.lengths[i] = 0


def check_env_ids(env_ids, num_envs, n_actions=None):
    """``env_ids`` as an int64 array; ValueError unless they are distinct indices below
    ``num_envs`` (and as many as ``n_actions`` rows of actions, when given)."""
    ids = np.asarray(env_ids).reshape(-1)
    if ids.size and not np.issubdtype(ids.dtype, np.integer):
        raise ValueError('env_ids must be integers, got %r' % (env_ids,))
    ids = ids.astype(np.int64)
    if ((ids < 0) | (ids >= num_envs)).any():
        raise ValueError('env_ids %s out of range: this vectorized env has %d environments'
                         % (ids[(ids < 0) | (ids >= num_envs)].tolist(), num_envs))
    if len(set(ids.tolist())) != len(ids):
        raise ValueError('env_ids %s name an environment twice' % (ids.tolist(),))
    if n_actions is not None and n_actions != len(ids):
        raise ValueError('%d rows of actions for %d env_ids' % (n_actions, len(ids)))
    return ids


def stack_results(rows, obs_shape, obs_dtype=np.float32, label=True):
    """``[(env_id, obs, reward, terminated, truncated, info), ...]`` -> recv's five fields, each
    info labelled with its row's ``'env_id'`` (``label=False`` for a lockstep step: there row i
    is env i, and its infos carry no label)."""
    n = len(rows)
    obs = np.zeros((n,) + tuple(obs_shape), dtype=obs_dtype)
    if n:  # one numpy call per field, not one per row (hundreds of rows a call, issue 24)
        obs[...] = [row[1] for row in rows]
    rewards = np.fromiter((row[2] for row in rows), dtype=np.float64, count=n)
    terminated = np.fromiter((row[3] for row in rows), dtype=bool, count=n)
    truncated = np.fromiter((row[4] for row in rows), dtype=bool, count=n)
    infos = [row[5] for row in rows]
    if label:
        for row in rows:
            row[5]['env_id'] = int(row[0])
    return obs, rewards, terminated, truncated, infos


def env_ids_of(infos):
    """The vector indices of a ``recv``'s rows, ``infos[k]['env_id']``, as one int64 array:
    EnvPool's ``info['env_id']`` (see the module docstring), ready for ``send``."""
    return np.fromiter((info['env_id'] for info in infos), dtype=np.int64, count=len(infos))


class ObsForm(object):
    """How one environment's observations are held on the host, from its observation space.

    Environments send every observation as a flat vector of floats (envs/base.py: a Discrete
    one as one value); this is the one place that turns it into what a learner gets: float32 of
    the Box's shape, or an int for ``Discrete(n)``, stacked as ``(n_rows,) + shape``."""

    def __init__(self, space):
        self.discrete = isinstance(space, gym_spaces_lib.spaces.Discrete)
        self.shape = () if self.discrete else tuple(space.shape)
        self.dtype = np.int64 if self.discrete else np.float32

    def zeros(self, n):
        """Room for ``n`` observations, one per row."""
        return np.zeros((n,) + self.shape, dtype=self.dtype)

    def one(self, values):
        """One observation from its flat vector: a fresh float32 array, or an int."""
        if self.discrete:
            return int(np.asarray(values, dtype=np.float64).reshape(()))
        return np.array(values, dtype=np.float32)

    def item(self, row):
        """A row of stacked observations as one observation of its own (a copy)."""
        return int(row) if self.discrete else row.copy()

    def rows(self, array):
        """Observations from a ``(n_rows, size)`` array of flat vectors (float32 ones come back
        as they are: read-only when the wire's)."""
        if self.discrete:
            return array.reshape(len(array)).astype(np.int64)
        return array.astype(np.float32, copy=False)


def params_by_name(verb, name, args, kwargs):
    """The params of a library's call of an environment method by name (SB3's ``env_method``,
    gymnasium's ``call``): only ``set_params`` reaches environments on a farm, its params given
    as keywords or as one dict. NotImplementedError for another name, TypeError for both forms."""
    if name != 'set_params':
        raise NotImplementedError('%s(%r): farm environments live in other processes and take '
                                  'reset, step and set_params calls only' % (verb, name))
    if len(args) > 1 or (args and kwargs):
        raise TypeError("%s('set_params', ...): pass the params as keywords or as one dict"
                        % verb)
    return args[0] if args else kwargs


class InProcessVecEnv(VecEnv):
    """N environments from ``envs/`` stepped one after another in this process.

    The reference the farm-backed vectorized env is tested against, and a cheap stand-in for
    agent tests. Imports ``envs`` (the farm side) lazily: only this class does so on the host.

    Its asynchronous mode steps the environments of a ``send`` at once, in order, and queues
    their results; ``recv`` hands over everything queued. It never interleaves: results come
    back in the order they were sent (tests that need another order fake it).
    """

    def __init__(self, env_name, n_envs, env_kwargs=None, batch_size=1):
        import envs
        env_kwargs = dict(env_kwargs or {})
        self._first_seed = env_kwargs.pop('seed', None)  # as FarmVecEnv: env i gets seed + i
        self.envs = [envs.make(env_name, **env_kwargs) for _ in range(n_envs)]
        self.num_envs = n_envs
        self.batch_size = int(batch_size)
        self.observation_space = make_space(self.envs[0].observation_space)
        self.action_space = make_space(self.envs[0].action_space)
        self.obs_form = ObsForm(self.observation_space)
        self.tracker = EpisodeTracker(n_envs)
        self._actions = None  # the pending lockstep step's actions
        self._ready = collections.deque()  # asynchronous results, in order of arrival
        self._flying = set()

    @property
    def in_flight(self):
        return len(self._flying)

    def _reset_seeds(self, seed):
        if seed is None:
            seed, self._first_seed = self._first_seed, None
        return [None if seed is None else seed + i for i in range(self.num_envs)]

    def reset(self, seed=None):
        # collect and discard what is in flight: evaluation may reuse an env trained on
        self._ready.clear()
        self._flying.clear()
        self._actions = None
        obs = self.obs_form.zeros(self.num_envs)
        for i, (env, s) in enumerate(zip(self.envs, self._reset_seeds(seed))):
            obs[i] = self.obs_form.one(env.reset(s))
            self.tracker.restart(i)
        return obs

    def set_params(self, params, indices=None):
        """As FarmVecEnv.set_params: applied at each env's next reset; ValueError if refused."""
        for i in range(self.num_envs) if indices is None else indices:
            self.envs[i].set_params(**params)  # envs.EnvError is a ValueError

    # -- lockstep ------------------------------------------------------------------------------
    def step_async(self, actions):
        if self._actions is not None:
            raise PendingError('step_async called twice: step_wait for the pending step first')
        self._no_async_pending('step_async')
        actions = np.asarray(actions)
        if len(actions) != self.num_envs:
            raise ValueError('%d rows of actions for %d environments'
                             % (len(actions), self.num_envs))
        self._actions = actions

    def step_wait(self):
        self._no_async_pending('step_wait')
        if self._actions is None:
            raise NothingPendingError('step_wait with no step pending: call step_async first')
        actions, self._actions = self._actions, None
        rows = [self._step_one(i, actions[i]) for i in range(self.num_envs)]
        return stack_results(rows, self.obs_form.shape, self.obs_form.dtype, label=False)

    def _no_async_pending(self, call):
        if self._flying:
            raise PendingError('%s while %d environments are in flight (asynchronous mode): '
                               'recv their results first' % (call, len(self._flying)))

    def _step_one(self, i, action):
        """Step env i: its result row, auto-reset and episode bookkeeping done."""
        env = self.envs[i]
        o, r, te, tr, info = env.step(np.asarray(action).tolist())
        info = dict(info)
        if te or tr:
            info['terminal_observation'] = self.obs_form.one(o)
            o = env.reset()
        self.tracker.record([r], [te or tr], [info], [i])
        return (i, self.obs_form.one(o), float(r), bool(te), bool(tr), info)

    # -- asynchronous ----------------------------------------------------------------------------
    def async_reset(self, seed=None):
        if self._actions is not None:
            raise PendingError('async_reset while a lockstep step is pending: step_wait first')
        self._no_async_pending('async_reset')
        for i, s in enumerate(self._reset_seeds(seed)):
            self.tracker.restart(i)
            self._ready.append((i, self.obs_form.one(self.envs[i].reset(s)), 0.0, False, False,
                                {}))
            self._flying.add(i)

    def send(self, actions, env_ids):
        if self._actions is not None:
            raise PendingError('send while a lockstep step is pending: step_wait first')
        actions = np.asarray(actions)
        ids = check_env_ids(env_ids, self.num_envs, len(actions))
        busy = sorted(self._flying.intersection(ids.tolist()))
        if busy:
            raise PendingError('environments %s are in flight: recv their results first'
                               % (busy,))
        for k, i in enumerate(ids.tolist()):
            self._flying.add(i)
            self._ready.append(self._step_one(i, actions[k]))

    def recv(self, batch_size=None, timeout=None):
        if not self._flying:
            raise NothingPendingError('recv with no environment in flight: send (or '
                                      'async_reset) first')
        # every result is ready as soon as it is sent: hand them all over
        rows = list(self._ready)
        self._ready.clear()
        self._flying.clear()
        return stack_results(rows, self.obs_form.shape, self.obs_form.dtype)

    def close(self):
        for env in self.envs:
            env.close()
