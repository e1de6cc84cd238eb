"""Where a vector env's environments live, and how they are (re)built there: :class:`Placements`,
one object that :class:`host.farm_vec_env.FarmVecEnv` and its asynchronous mode
(:class:`host.async_mode.AsyncState`) share.

- ``places[i]``: vector index ``i``'s :class:`Placement` (farm link, lease, env id); ``groups``
  per (link, lease) for one call per farm; :meth:`Placements.index_of` the other way;
  ``params[i]`` what set_params gave it (rebuilt environments get them again).
- Builds go through its :class:`host.leases.Allocation` (one lease per farm): :meth:`build`
  makes environments, one ``make`` per farm, and gives rebuilt ones the parameters their
  predecessors had; :meth:`rebuild` rebuilds lost ones where farms answer (above capacity if
  need be, waiting while none does) and marks them ``displaced``; :meth:`relocate` moves
  displaced ones back to free capacity when a keep-alive round sets ``rebalance_due``. Both are
  safe off the learner's thread for environments in flight (nothing else touches those), which
  is how the asynchronous mode recovers.
- ``close()`` marks it closed (a recovery thread at work gives up) and gives the leases back.

Python 3.6 compatible.
"""
import logging

from common.errors import FarmsLostError, NoCapacityError, UserError
from host import settings
from host.diagnosis import describe, no_such_lease
from host.link import FARM_DOWN
from common.protocol import is_error

log = logging.getLogger('farmer')


class Placement(object):
    """Where vector index ``i`` lives: its farm link, lease and env id there."""
    __slots__ = ('link', 'lease', 'env_id')

    def __init__(self, link, lease, env_id):
        self.link, self.lease, self.env_id = link, lease, env_id



class Placements(object):
    """Placement and (re)building of one vector env's ``n_envs`` environments of ``env_name``
    (``env_kwargs``) on the farms of ``farmer``, in a lease per farm of its own."""

    def __init__(self, farmer, env_name, env_kwargs, n_envs):
        self.farmer = farmer
        self.env_name = env_name
        self.env_kwargs = env_kwargs
        self.num_envs = n_envs
        self.allocation = farmer.allocation()
        self.places = [None] * n_envs
        self.params = [{} for _ in range(n_envs)]  # set_params so far: rebuilt envs get them
        self.spec = None          # the farm's answer to the first make: spaces, time limit
        self.groups = {}          # (link, lease) -> (vector indices, env ids), in vector order
        self._where = {}          # (link, env id) -> vector index: whose result came back
        self.displaced = set()    # indices moved off a lost farm, maybe running above capacity
        self.rebalance_due = False  # set every keep-alive round: try moving displaced ones back
        self.closed = False

    def close(self):
        """No more builds (a recovery thread at work gives up); the leases are given back."""
        self.closed = True
        self.allocation.close()

    def call_timeout(self, link):
        # With give_up_after, a stuck call must not outlast it: the wait for a farm checks it.
        give_up = self.farmer.give_up_after
        return link.call_timeout if give_up is None else min(link.call_timeout, give_up)

    def build(self, indices, mode):
        """(Re)builds environments ``indices`` on the farms, one ``make`` per farm in this
        env's lease there. ``mode``: 'start' (all must fit; waits for capacity a departed
        learner frees soon; user errors as UserError), 'move' (only to free capacity) or
        'recover' (after a loss: above capacity if need be)."""
        if mode == 'start':
            plan = self.farmer.place_or_wait(len(indices), self.env_name)
        else:
            plan, missing = self.farmer.place(len(indices), replacing=[
                self.places[i] for i in indices if self.places[i] is not None])
            if missing and mode == 'move':
                raise RuntimeError('only %d free' % (len(indices) - missing))
            if missing:  # taking over a lost farm's envs: let the survivors run above capacity
                self._overcommit(plan, missing)
        todo = list(indices)
        try:
            for link, count in plan.items():
                mine, todo = todo[:count], todo[count:]
                try:
                    token = self.allocation.lease(link)
                    spec = link.call('make', token, self.env_name, self.env_kwargs, count,
                                     mode == 'recover',
                                     timeout=link.call_timeout + settings.BUILD_SECONDS)
                except BaseException as e:
                    if mode != 'start' and isinstance(e, FARM_DOWN):
                        self.farm_lost(link, e)
                    elif no_such_lease(e):
                        self.allocation.drop(link)  # the next try opens a fresh one
                    if mode == 'start' and isinstance(e, (ValueError, TypeError)):
                        raise self._refusal(link, e)
                    raise
                if self.spec is None:
                    self.spec = spec
                for i, env_id in zip(mine, spec['env_ids']):
                    self.places[i] = Placement(link, token, env_id)
                self._replay_params(link, token, mine, spec['env_ids'])
        finally:
            self._regroup()

    def farm_lost(self, link, error):
        """``link`` failed a call: the Farmer marks it down; this env's lease there is gone."""
        self.farmer.mark_down(link, error)
        self.allocation.drop(link)

    def _replay_params(self, link, token, indices, env_ids):
        """Gives rebuilt environments the parameters their predecessors had (a curriculum
        survives a lost farm); they apply at the reset that follows every rebuild."""
        groups = {}
        for i, env_id in zip(indices, env_ids):
            if self.params[i]:
                key = repr(sorted(self.params[i].items()))
                groups.setdefault(key, (self.params[i], []))[1].append(env_id)
        for params, ids in groups.values():
            for result in link.call('set_params', token, ids, params):
                if is_error(result):
                    raise RuntimeError('could not set %s on a rebuilt environment: %s'
                                       % (sorted(params), result['error']))

    def _overcommit(self, plan, missing):
        """Adds ``missing`` environments to ``plan`` above the answering farms' capacity, one at
        a time to the farm with the most room left under its overcommit factor."""
        room = {}
        for link in self.farmer.links:
            if link.up and link.info:
                info = link.info
                room[link] = int(info['capacity'] * info.get('overcommit',
                                                              settings.OVERCOMMIT)) \
                    - info['in_use'] - plan.get(link, 0)
        for _ in range(missing):
            if not room:
                raise RuntimeError('no farm answers')
            best = max(room, key=lambda l: room[l])  # past every farm's room: the farm refuses
            plan[best] = plan.get(best, 0) + 1
            room[best] -= 1

    def _refusal(self, link, error):
        """A farm's refusal of ``make`` as the user's error: capacity, or the name or kwargs."""
        text = str(error)
        if 'free' in text or 'capacity' in text:  # another learner took it since we looked
            link.refresh()
            return NoCapacityError('%s; %s' % (text, self.farmer.no_capacity(
                self.num_envs, self.env_name, 0)))
        return UserError(text)

    def _regroup(self):
        """Per (link, lease): the vector indices and env ids, in vector order; and the reverse
        map from (link, env id). Rebuilt whole and swapped in: other threads read them."""
        groups, where = {}, {}
        for i, place in enumerate(self.places):
            if place is None:
                continue
            group = groups.setdefault((place.link, place.lease), ([], []))
            group[0].append(i)
            group[1].append(place.env_id)
            where[(place.link, place.env_id)] = i
        self.groups, self._where = groups, where

    def groups_of(self, indices):
        """``{(link, lease): (positions in indices, env ids)}`` for the vector ``indices``."""
        groups = {}
        for k, i in enumerate(indices):
            place = self.places[i]
            group = groups.setdefault((place.link, place.lease), ([], []))
            group[0].append(k)
            group[1].append(place.env_id)
        return groups

    def index_of(self, link, env_id):
        return self._where.get((link, env_id))


    def rebuild(self, old):
        """Rebuilds the environments ``old`` (index -> the placement that was lost) where farms
        answer, one ``make`` per farm; waits while no farm answers. Safe off the learner's
        thread while those environments are in flight (nothing else touches them then)."""
        while True:
            if self.closed:
                raise FarmsLostError('the vector env was closed while environments were lost')
            if not any(link.up for link in self.farmer.links):
                self.farmer.wait_for_a_farm()
            todo = [i for i in sorted(old)
                    if self.places[i] is old[i] or not self.places[i].link.up]
            if not todo:
                break
            try:
                self.build(todo, mode='recover')
            except FARM_DOWN:  # that farm is marked down: try the others (or wait for one)
                continue
            except LookupError as e:  # our lease there was forgotten meanwhile: a fresh one
                if not no_such_lease(e):
                    raise
                continue
            except (ValueError, RuntimeError) as e:  # refused: capacity, the overcommit policy
                if self.closed:
                    raise FarmsLostError('the vector env was closed while environments were '
                                         'lost')
                log.warning('could not rebuild %d environments yet: %s; retrying in %.0f s',
                            len(todo), e, settings.REPORT_EVERY)
                if self.farmer.wait(settings.REPORT_EVERY) or self.closed:
                    raise FarmsLostError('the farmer was closed while environments were lost')
        self.displaced.update(old)
        log.warning('%d environments rebuilt on %s', len(old), ', '.join(sorted(set(
            self.places[i].link.name for i in old))))

    def relocate(self, candidates):
        """Moves those of the displaced environments ``candidates`` that run above a farm's
        capacity to free capacity (rebuilt there, released where they were; not reset yet).
        Returns ``{index: reason}`` of the moved ones. Off the learner's thread in the
        asynchronous mode, for environments between their step's result and its delivery."""
        excess = []
        for link in set(self.places[i].link for i in candidates):
            mine = sorted(i for i in candidates if self.places[i].link is link)
            if link.up and link.refresh():
                over = max(0, link.info['in_use'] - link.info['capacity'])
            else:
                over = len(mine)  # on a farm that is down again: move them when there is room
            excess.extend(mine[:over])
            self.displaced.difference_update(mine[over:])  # within capacity: they stay
        if not excess:
            return {}
        fits = len(excess) - self.farmer.place(
            len(excess), replacing=[self.places[i] for i in excess])[1]
        if not fits:
            return {}
        old = dict((i, self.places[i]) for i in excess[:fits])
        try:
            self.build(list(old), mode='move')
        except Exception as e:  # capacity taken meanwhile, or a farm failed: retried next round
            log.warning('could not move %d environments back yet: %s', len(old), describe(e))
        moved = dict((i, place) for i, place in old.items() if self.places[i] is not place)
        released = {}
        for i, place in moved.items():
            released.setdefault((place.link, place.lease), []).append(place.env_id)
            self.displaced.discard(i)
        for (link, lease), ids in released.items():
            try:
                link.call('release', lease, ids, timeout=settings.PROBE_TIMEOUT + 5)
            except Exception as e:  # the farm's reaper frees them when the lease expires
                log.warning('releasing %s on %s failed: %s', ids, link.name, describe(e))
        result = dict((i, 'farm %s -> farm %s' % (place.link.name, self.places[i].link.name))
                      for i, place in moved.items())
        if result:
            log.warning('%d environments moved to free capacity: %s', len(result),
                        ', '.join(sorted(set(result.values()))))
        return result

