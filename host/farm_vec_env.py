"""FarmVecEnv: N environments on the farms as one vectorized env, in both of vecenv/contract.py's stepping
modes: lockstep (``reset``, ``step_async``/``step_wait``, ``step``) and asynchronous
(``async_reset``, ``send``, ``recv``, ``in_flight``, ``batch_size``).

- Built by ``Farmer.vec_env``: its :class:`host.placement.Placements` (``placement``) holds a
  placement plan from the Farmer and an :class:`host.leases.Allocation` (at most one lease per
  farm) that this env gives back whole on ``close()``, or at once when the build fails
  part-way. Vector index ``i`` lives at ``places[i]`` (farm link, lease, env id); placing and
  (re)building are the placement's, shared with the asynchronous mode.
- Lockstep: one ``step`` call per farm, all at once, each on its farm's thread (``step`` makes
  the last one in the caller's thread: with nothing to overlap, a thread switch less).
- Asynchronous (host/async_mode.py, handed the placement and what it needs): sends go out one-way (one ``post`` per farm touched, on the
  farm's call thread); a receiver per farm (one thread for a near farm, ``settings.RECV_THREADS``
  for a far one, each with a connection of its own, their recvs overlapping) waits in the farm's
  ``recv`` while that farm has environments in flight and queues what comes back; ``recv``
  drains the queue.
- Conversions: actions are checked here and cross as one packed array per farm (wire.pack);
  observations come back packed (the lease is opened with ``packed``) and become one array in
  the contract's form, ``obs_form`` (float32, or int64 for a Discrete space:
  :func:`host.observations.as_obs`; a farm's answer at once, :func:`as_obs_rows`). Those are the
  host's one conversion out and in.
- A farm lost mid-call (``FARM_DOWN``) or a lease it forgot: those environments' episodes end
  truncated, not terminated (``info['lost']``, ``info['lost_cause']`` 'farm' or 'lease'), and
  they are rebuilt where farms answer (one ``make`` per farm), above capacity up to the farm's
  overcommit factor if need be, waiting while no farm answers. In lockstep that happens in
  ``step_wait``; asynchronously in a recovery thread, while the other farms' environments keep
  flowing. A worker lost on the farm has ``lost_cause`` 'worker'; asynchronously it is reset
  through ``send_reset`` and its lost result comes with the reset's first observation, so no
  other environment waits for it. An invalid action the farm reports is a ValueError here.
- Environments displaced that way move to free capacity when a keep-alive round finds some
  (``rebalance_due``), after a step whose outcome stands (between lockstep steps; in the
  asynchronous mode between a step's result and its delivery): their episodes are cut with
  ``info['moved']``.
- ``close()`` gives this env's allocation back within a few seconds, abandoning calls still out
  (environments in flight included: the farm drops them with the lease).

Python 3.6 compatible.
"""
import concurrent.futures
import logging
import time

import numpy as np

from common import wire
from common.errors import NothingPendingError, PendingError, UserError
from host import settings
from common.protocol import is_error
from host.async_mode import AsyncState
from host.diagnosis import no_such_lease
from host.link import FARM_DOWN
from host.lockstep import LockstepCalls
from host.observations import as_obs, as_obs_rows
from host.placement import Placements
from vecenv.contract import EpisodeTracker, ObsForm, VecEnv, check_env_ids, make_space

log = logging.getLogger('farmer')


class FarmVecEnv(VecEnv):
    """N remote environments over the farms; the contract is vecenv/contract.py's, both modes."""

    def __init__(self, farmer, env_name, n_envs, env_kwargs, batch_size=1):
        if n_envs < 1:
            raise UserError('%s: the number of environments must be 1 or more, got %d'
                            % (env_name, n_envs))
        self.farmer = farmer
        self.env_name = env_name
        # A seed among the kwargs seeds the first reset, env i with seed + i as reset(seed)
        # does: handed to the farm, every environment would get the same seed and the same
        # episodes.
        self.env_kwargs = dict(env_kwargs)
        self._first_seed = self.env_kwargs.pop('seed', None)
        self.num_envs = n_envs
        self.batch_size = int(batch_size)
        self.closed = False
        self.placement = Placements(farmer, env_name, self.env_kwargs, n_envs)
        self._pending = None      # the lockstep step's futures, between step_async and step_wait
        self.wait_seconds = 0.0   # time blocked in step_wait/recv: how long the learner waited
        try:
            self.placement.build(list(range(n_envs)), mode='start')
            self.observation_space = make_space(self.placement.spec['observation_space'])
            self.action_space = make_space(self.placement.spec['action_space'])
        except BaseException:
            # A build that fails part-way (the second farm cannot make the env, Ctrl-C) must
            # not leave the first farm's environments leased and renewed for ever.
            self.placement.close()
            self.closed = True
            raise
        self.max_episode_steps = self.placement.spec.get('max_episode_steps')
        self.obs_form = ObsForm(self.observation_space)
        self._act_size = int(np.prod(self.action_space.shape)) if self.action_space.shape else 1
        self.last_obs = self.obs_form.zeros(n_envs)  # updated in place: shared with the async mode
        self.tracker = EpisodeTracker(n_envs)
        self.lockstep = LockstepCalls(farmer, self.placement, self.obs_form)
        self.async_mode = AsyncState(farmer, self.placement, self.obs_form, self.tracker,
                                 self.last_obs, self.apply_params)

    @property
    def places(self):
        """``places[i]``: where vector index ``i`` lives (farm link, lease, env id)."""
        return self.placement.places

    def rebalance_soon(self):
        """A keep-alive round (the Farmer's): try moving displaced environments back to free
        capacity after their next step."""
        self.placement.rebalance_due = True

    # --- the contract: common ---------------------------------------------------------------------
    def reset(self, seed=None):
        if self._pending is not None:  # collect and discard a pending lockstep step
            self.step_wait()
        self.async_mode.discard_in_flight()
        if seed is None:
            seed, self._first_seed = self._first_seed, None
        futures = {}
        for (link, lease), (indices, ids) in self.placement.groups.items():
            seeds = None if seed is None else [seed + i for i in indices]
            futures[(link, lease)] = link.submit('reset', lease, ids, seeds)
        obs = self.obs_form.zeros(self.num_envs)

        def store(indices, results):
            obs[indices] = as_obs_rows(results, self.obs_form)
        lost = self.lockstep.collect(futures, store)
        if lost:
            obs[sorted(lost)] = self.lockstep.reset_many(sorted(lost), seed)
        for i in range(self.num_envs):
            self.tracker.restart(i)
        self.last_obs[:] = obs
        return obs

    def set_params(self, params, indices=None):
        """Changes environment parameters (``params``: name -> number/str/bool/list; the env
        declares which it accepts) of environments ``indices`` (None: all), one call per farm,
        all at once. They take effect at each environment's next reset: its current episode
        runs on unchanged. An environment in flight gets them before its next send. An unknown
        name or bad value is a ValueError naming the env."""
        indices = list(range(self.num_envs)) if indices is None else sorted(set(indices))
        if not isinstance(params, dict):
            raise ValueError('set_params: params must be a dict, got %s' % type(params).__name__)
        flying = self.async_mode.defer_params(params, indices)
        now = [i for i in indices if i not in flying]
        lost = self.apply_params(params, now)
        for i in indices:
            self.placement.params[i].update(params)
        if lost:
            # The farm rebuilt them with the new params; a rebuilt env must be reset before it
            # steps. Their episodes restart here (the learner is not told: rare, and between
            # steps there is no info to carry it).
            self.last_obs[lost] = self.lockstep.reset_many(lost)
            for i in lost:
                self.tracker.restart(i)

    def apply_params(self, params, indices):
        """set_params on the farms for ``indices`` (none in flight), one call per farm; returns
        the indices whose worker was lost meanwhile (rebuilt with the params: reset them)."""
        wanted = set(indices)
        futures = {}
        for (link, lease), (group_indices, ids) in self.placement.groups.items():
            mine = [(i, e) for i, e in zip(group_indices, ids) if i in wanted]
            if mine:
                futures[(link, lease)] = (mine, link.submit('set_params', lease,
                                                            [e for _, e in mine], params))
        self.lockstep.await_all(dict((key, f) for key, (_, f) in futures.items()))
        errors, lost = [], []
        for (link, lease), (mine, future) in futures.items():
            try:
                results = future.result()
            except FARM_DOWN:  # the next step finds it down; the rebuilt envs get self.params
                continue
            except LookupError as e:
                if not no_such_lease(e):
                    raise
                continue  # as a farm down: the next step rebuilds them
            for (i, _), result in zip(mine, results):
                if is_error(result) and result.get('kind') != 'lost':
                    errors.append(result['error'])
                elif is_error(result):
                    log.warning('%s', result['error'])
                    lost.append(i)
        if errors:
            raise ValueError(errors[0])
        return lost

    def check_actions(self, actions, n, what):
        """Validates ``n`` rows of actions; returns them as one float64 array ``(n, act)`` (as
        the caller gave them: an action crosses the wire bit-exact)."""
        actions = np.asarray(actions, dtype=np.float64)
        if actions.shape[:1] != (n,) or actions.size != n * self._act_size:
            raise ValueError('%s: expected %d actions of %d values each, got an array of shape %s'
                             % (self.env_name, n, self._act_size, actions.shape))
        actions = actions.reshape(n, -1)
        if not np.all(np.isfinite(actions)):
            bad = sorted(set(np.argwhere(~np.isfinite(actions))[:, 0].tolist()))
            raise ValueError('%s: non-finite action for %s %s' % (self.env_name, what, bad))
        return actions

    # --- lockstep --------------------------------------------------------------------------------
    def step_async(self, actions):
        self._lockstep_may('step_async')
        wire_actions = self._check(actions)
        self._pending = self._send_steps(wire_actions, in_caller=None)

    def _lockstep_may(self, call):
        if self.closed:
            raise RuntimeError('%s on a closed vectorized env' % call)
        if self._pending is not None:
            raise PendingError('%s while a step is pending: step_wait() for it first' % call)
        self.async_mode.no_results_out(call)

    def _check(self, actions):
        """Validates a lockstep step's actions (the host's one conversion out)."""
        try:
            return self.check_actions(actions, self.num_envs, 'vector index')
        except ValueError as e:
            if 'non-finite' not in str(e):
                raise
            bad = sorted(set(np.argwhere(~np.isfinite(
                np.asarray(actions, dtype=np.float64).reshape(self.num_envs, -1)))[:, 0]))
            raise ValueError('%s (%s)' % (e, ', '.join(
                'farm %s env %d' % (self.places[i].link.name, self.places[i].env_id)
                for i in bad)))

    def step(self, actions):
        """step_async + step_wait, with one farm's call made in the calling thread.

        When nothing overlaps the wait, handing the last farm's call to its thread only adds a
        thread switch to every vector step; the other farms are still called concurrently.
        """
        self._lockstep_may('step')
        wire_actions = self._check(actions)
        self._pending = self._send_steps(wire_actions, in_caller=list(self.placement.groups)[-1])
        return self.step_wait()

    def _send_steps(self, actions, in_caller):
        pending = {}
        try:
            for key, (indices, ids) in self.placement.groups.items():
                link, lease = key
                if key != in_caller:
                    pending[key] = link.submit('step', lease, ids, wire.pack(actions[indices]),
                                               True, timeout=self.placement.call_timeout(link))
            if in_caller is not None:
                link, lease = in_caller
                indices, ids = self.placement.groups[in_caller]
                done = concurrent.futures.Future()
                try:
                    done.set_result(link.call('step', lease, ids, wire.pack(actions[indices]),
                                              True, timeout=self.placement.call_timeout(link)))
                except Exception as e:
                    done.set_exception(e)
                pending[in_caller] = done
        except BaseException:  # Ctrl-C in the caller's call: the other farms' are abandoned
            self.lockstep.abandon(pending)
            raise
        return pending

    def step_wait(self):
        if self.closed:
            raise RuntimeError('step_wait on a closed vectorized env')
        self.async_mode.no_results_out('step_wait')
        if self._pending is None:
            raise NothingPendingError('step_wait() with no step pending: step_async() first')
        started = time.time()
        n = self.num_envs
        form = self.obs_form
        obs = form.zeros(n)
        rewards = np.zeros(n)
        terminated = np.zeros(n, dtype=bool)
        truncated = np.zeros(n, dtype=bool)
        infos = [None] * n

        def store(indices, results):
            # The host's one conversion in: a whole farm's answer per numpy call, not per env.
            obs[indices] = as_obs_rows([res[0] for res in results], form)
            rewards[indices] = [res[1] for res in results]
            terminated[indices] = [res[2] for res in results]
            truncated[indices] = [res[3] for res in results]
            for i, res in zip(indices, results):
                info = res[4]
                if 'terminal_observation' in info:
                    info['terminal_observation'] = as_obs(info['terminal_observation'], form)
                infos[i] = info

        futures, self._pending = self._pending, None
        lost = self.lockstep.collect(futures, store)
        for i, (reason, cause) in lost.items():
            # Not terminal: the episode was cut short by the machinery, so a learner bootstraps.
            truncated[i], terminated[i], rewards[i] = True, False, 0.0
            infos[i] = {'lost': reason, 'lost_cause': cause,
                        'terminal_observation': form.item(self.last_obs[i])}
        if lost:
            obs[sorted(lost)] = self.lockstep.reset_many(sorted(lost))
        if self.placement.displaced and self.placement.rebalance_due:
            self.placement.rebalance_due = False
            for i, (first_obs, reason) in self.lockstep.move_back().items():
                if not (terminated[i] or truncated[i]):  # this step's outcome stands; then cut
                    truncated[i] = True
                    infos[i] = dict(infos[i], terminal_observation=form.item(obs[i]),
                                    moved=reason)
                # (an episode that ended on its own in this step keeps its own end reason)
                obs[i] = first_obs
        self.tracker.record(rewards, terminated | truncated, infos)
        self.last_obs[:] = obs
        self.wait_seconds += time.time() - started
        return obs, rewards, terminated, truncated, infos

    # --- asynchronous (host/async_mode.py does the work) -------------------------------------------
    @property
    def in_flight(self):
        """Environments sent (or reset asynchronously) whose results recv has not handed over."""
        return self.async_mode.in_flight

    def async_reset(self, seed=None):
        """Resets every environment without waiting; their first observations come from recv."""
        self._async_may('async_reset')
        if seed is None:
            seed, self._first_seed = self._first_seed, None
        self.async_mode.reset_all(seed)

    def send(self, actions, env_ids):
        """Steps environments ``env_ids`` with ``actions`` (one row each); returns at once."""
        self._async_may('send')
        ids = check_env_ids(env_ids, self.num_envs, len(np.asarray(actions)))
        self.async_mode.send(self.check_actions(actions, len(ids), 'env_ids'), ids)

    def recv(self, batch_size=None, timeout=None):
        """Results of at least ``min(batch_size, in_flight)`` environments (and every other one
        ready), in order of arrival: ``(obs, rewards, terminated, truncated, infos)``, each
        info with its row's ``'env_id'`` (vecenv/contract.py; ``env_ids_of(infos)``)."""
        if self.closed:
            raise RuntimeError('recv on a closed vectorized env')
        if self._pending is not None:
            raise PendingError('recv while a lockstep step is pending: step_wait() first')
        started = time.time()
        try:
            return self.async_mode.recv(self.batch_size if batch_size is None else int(batch_size),
                                    timeout)
        finally:
            self.wait_seconds += time.time() - started

    def _async_may(self, call):
        if self.closed:
            raise RuntimeError('%s on a closed vectorized env' % call)
        if self._pending is not None:
            raise PendingError('%s while a lockstep step is pending: step_wait() first' % call)

    def close(self):
        """Release this vector env's environments on every farm, within a few seconds whatever
        the farms do (calls still out are abandoned, not waited for; environments in flight
        are dropped with the lease)."""
        if self.closed:
            return
        self.closed = True
        pending, self._pending = self._pending, None
        if pending:
            self.lockstep.abandon(pending)
        self.async_mode.stop()
        self.placement.close()
        self.async_mode.join(settings.CLOSE_TIMEOUT)
