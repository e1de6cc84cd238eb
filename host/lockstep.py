"""The calls the lockstep mode of :class:`host.farm_vec_env.FarmVecEnv` waits on, and what
happens when a farm fails one: :class:`LockstepCalls`, handed the Farmer (its give-up check),
the vector env's :class:`host.placement.Placements` and its observation form.

- :meth:`LockstepCalls.await_all` waits for one call per farm; Ctrl-C abandons the calls still
  out (their farms' call threads are replaced), so nothing later queues behind a stuck one.
- :meth:`LockstepCalls.collect` hands each farm's good results to the caller and returns the
  lost environments with why (``'farm'``, ``'lease'``, ``'worker'``), rebuilt where farms
  answer by then (:meth:`recover`); an ``'input'`` refusal (a bad action) is a ValueError
  once every farm's results are in.
- :meth:`LockstepCalls.reset_many` gives replaced or moved environments their first
  observations (rebuilding ones lost again meanwhile); :meth:`move_back` moves displaced
  environments to free capacity when a keep-alive round asked for it.

Python 3.6 compatible.
"""
import concurrent.futures
import logging

from common.protocol import is_error
from host.diagnosis import describe, no_such_lease
from host.link import FARM_DOWN
from host.observations import as_obs

log = logging.getLogger('farmer')


class LockstepCalls(object):
    """The waiting and recovering of :class:`FarmVecEnv`'s lockstep calls."""

    def __init__(self, farmer, placement, obs_form):
        self.farmer = farmer
        self.placement = placement
        self.obs_form = obs_form

    def abandon(self, futures):
        for (link, lease), future in futures.items():
            if not future.done():
                link.abandon()

    def await_all(self, futures):
        """Waits for every future; Ctrl-C abandons the calls still out (their farms' threads are
        replaced), so nothing later queues behind a stuck call."""
        try:
            waiting = set(f for f in futures.values() if not f.done())  # usually none: a step
            while waiting:
                waiting = concurrent.futures.wait(waiting, timeout=1.0)[1]
                if waiting:
                    self.farmer.check_give_up()
        except BaseException:
            self.abandon(futures)
            raise

    def collect(self, futures, store):
        """Waits for every farm; ``store(indices, results)`` takes each farm's good results;
        returns ``{index: (reason, lost_cause)}`` of the lost environments, rebuilt by then. An
        'input' error (a bad action) raises ValueError after every farm's results are in."""
        self.await_all(futures)
        lost = {}
        down = {}
        expired = []
        refused = []
        for (link, lease), future in futures.items():
            indices = self.placement.groups[(link, lease)][0]
            try:
                results = future.result()
            except FARM_DOWN as e:
                down[link] = e
                for i in indices:
                    lost[i] = ('farm %s lost: %s' % (link.name, describe(e)), 'farm')
                continue
            except LookupError as e:
                if not no_such_lease(e):
                    raise
                expired.append((link, lease))
                for i in indices:
                    lost[i] = (str(e), 'lease')
                continue
            good = []
            for i, result in zip(indices, results):
                if is_error(result):
                    if result.get('kind') == 'input':
                        refused.append(result['error'])
                        continue
                    log.warning('%s', result['error'])
                    lost[i] = (result['error'], 'worker')
                else:
                    good.append(i)
            if len(good) < len(indices):
                results = [r for r in results if not is_error(r)]
            if good:
                store(good, results)
        if down or expired:
            self.recover(down, expired)
        if refused:
            raise ValueError(refused[0])
        return lost

    def recover(self, down, expired):
        """Rebuilds the environments of lost farms and forgotten leases where farms answer
        (waiting for one while none does); their episodes are reported lost by the caller."""
        for link, error in down.items():
            self.placement.farm_lost(link, error)
        for link, lease in expired:
            self.placement.allocation.drop(link, lease)
        gone = set(expired)
        old = dict((i, p) for i, p in enumerate(self.placement.places)
                   if p.link in down or (p.link, p.lease) in gone)
        if expired:
            log.warning('farm %s no longer knows our lease (it expired while this process was '
                        'paused, or the farm restarted); rebuilding its environments, their '
                        'episodes truncated', ', '.join(sorted(set(l.name for l, _ in expired))))
        self.placement.rebuild(old)

    def move_back(self):
        """Environments that took over a lost farm's work may run on farms above capacity (at
        half speed); while a farm has free capacity, those move there. Returns
        ``{index: (first observation, reason)}`` of the moved ones; their episodes are cut."""
        moved = self.placement.relocate(sorted(self.placement.displaced))
        if not moved:
            return {}
        first = self.reset_many(sorted(moved))
        return dict((i, (first[k], moved[i])) for k, i in enumerate(sorted(moved)))

    def reset_many(self, indices, seed=None):
        """First observations of environments ``indices`` (replaced or moved ones), one call
        per farm; environments lost again meanwhile are rebuilt first."""
        wanted = set(indices)
        for attempt in range(10):
            futures = {}
            for key, (group_indices, ids) in self.placement.groups.items():
                mine = [(i, env_id) for i, env_id in zip(group_indices, ids) if i in wanted]
                if mine:
                    seeds = None if seed is None else [seed + i for i, _ in mine]
                    futures[key] = (mine, key[0].submit('reset', key[1], [e for _, e in mine],
                                                        seeds))
            self.await_all(dict((key, f) for key, (_, f) in futures.items()))
            obs = {}
            down, expired = {}, []
            for (link, lease), (mine, future) in futures.items():
                try:
                    results = future.result()
                except FARM_DOWN as e:
                    down[link] = e
                    continue
                except LookupError as e:
                    if not no_such_lease(e):
                        raise
                    expired.append((link, lease))
                    continue
                for (i, _), result in zip(mine, results):
                    if is_error(result):
                        raise RuntimeError('could not reset a replaced environment: %s'
                                           % result['error'])
                    obs[i] = as_obs(result, self.obs_form)
            if not down and not expired:
                first = self.obs_form.zeros(len(indices))
                for k, i in enumerate(indices):
                    first[k] = obs[i]
                return first
            self.recover(down, expired)
        raise RuntimeError('could not reset replaced environments: farms keep failing')
