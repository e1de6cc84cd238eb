"""Capacity: how many of a learner's environments go to which farm, and how full the farms are.

- :meth:`Capacity.place` spreads environments by free capacity, never past the farm list's
  capacity per farm (counting what this learner holds there, except placements being replaced);
  :meth:`Capacity.place_or_wait` (a new vector env) waits up to ``WAIT_FOR_CAPACITY`` for
  capacity a departed learner frees, and otherwise raises :class:`errors.NoCapacityError` whose
  text (:meth:`Capacity.no_capacity`) says who holds what and what to do.
- :meth:`Capacity.utilization` and :meth:`Capacity.overcommit`: from the farms' numbers of the
  last keep-alive round, no call made.

Handed what it reads: the farm links, a function giving the learner's open vector envs (their
``places``), the Farmer's ``wait`` and whether it is closed. Python 3.6 compatible.
"""
import logging
import time

from common.errors import NoCapacityError
from host import settings

log = logging.getLogger('farmer')


class Capacity(object):
    """Placement by free capacity over ``links`` for the vector envs ``open_vec_envs()`` returns."""

    def __init__(self, links, vec_envs, wait, closed):
        self.links = links
        self._vec_envs = vec_envs
        self._wait = wait
        self._closed = closed

    def place(self, n, exclude=(), replacing=()):
        """How many of ``n`` environments go to each answering farm: by free capacity, at most
        the farm list's capacity per farm (counting what this learner holds there, except the
        placements it is ``replacing``). Returns ``(plan, how many did not fit)``."""
        links = [link for link in self.links if link.up and link not in exclude]
        free = {}
        for link in links:
            if link.refresh():  # fresh numbers: other learners may have taken capacity since
                mine = self.held_on(link, replacing)
                free[link] = max(0, min(link.capacity - mine,
                                        link.info['capacity'] - link.info['in_use']))
        plan = {}
        left = n
        while left > 0:
            candidates = [link for link in free if free[link] - plan.get(link, 0) > 0]
            if not candidates:
                break
            best = max(candidates, key=lambda l: free[l] - plan.get(l, 0))
            plan[best] = plan.get(best, 0) + 1
            left -= 1
        return plan, left

    def place_or_wait(self, n, what):
        """:meth:`place` for a new vector env: all ``n`` must fit. Capacity that a departed
        learner still holds is waited for when its farm frees it within WAIT_FOR_CAPACITY;
        otherwise :class:`errors.NoCapacityError` says who holds it and when it frees."""
        deadline = time.time() + settings.WAIT_FOR_CAPACITY
        said = False
        while True:
            plan, missing = self.place(n)
            if not missing:
                return plan
            frees = [(link.info.get('frees_in'), link) for link in self.links
                     if link.up and link.info and link.info.get('frees_in') is not None]
            soonest = min(frees, key=lambda f: f[0]) if frees else None
            if soonest is None or time.time() + soonest[0] > deadline:
                raise NoCapacityError(self.no_capacity(n, what, n - missing))
            if not said:
                said = True
                log.warning('%d x %s: %d do not fit now; capacity another learner holds on %s '
                            'frees in %.0f s if that learner has gone: waiting for it', n, what,
                            missing, soonest[1].name, soonest[0])
            self._wait(min(max(soonest[0], 0.2) + 0.3, 5.0))
            if self._closed():
                raise NoCapacityError(self.no_capacity(n, what, n - missing))

    def no_capacity(self, n, what, have):
        """Why ``n`` x ``what`` do not fit (only ``have`` do): who holds what, and what to do."""
        parts = []
        for link in self.links:
            info = link.info or {}
            if not link.up:
                parts.append('%s does not answer (%s)' % (link.name, link.error))
                continue
            mine = self.held_on(link)
            others = info.get('in_use', 0) - mine
            text = '%s: %d of %d in use' % (link.name, info.get('in_use', 0),
                                           info.get('capacity', 0))
            if others > 0:
                text += ' (%d by other learners%s)' % (others, (
                    '; the first frees in %.0f s unless its learner calls again'
                    % info['frees_in']) if info.get('frees_in') is not None else '')
            if mine:
                text += ' (%d by this learner)' % mine
            if link.capacity < info.get('capacity', 0):
                text += ', farm list takes at most %d' % link.capacity
            parts.append(text)
        return ('%d x %s requested, but the farms that answer have only %d free: %s. Stop the '
                'other learners, ask for fewer environments, or add farms to the farm list'
                % (n, what, have, '; '.join(parts)))

    def held_on(self, link, replacing=(), idle=()):
        skip = set(id(place) for place in replacing)
        return sum(1 for env in self._vec_envs() if env not in idle
                   for place in env.places
                   if place is not None and place.link is link and id(place) not in skip)

    def utilization(self, idle=()):
        """The share of the answering farms' capacity that runs this learner's environments at
        full speed: for each farm that answers, this learner's environments there up to its
        capacity (the smaller of the farm list's and the farm's), summed, over those capacities
        summed. Environments above a farm's capacity share its cores and do not count, so a
        learner crowding one farm while another idles shows below 1.0 (see :meth:`overcommit`);
        nor do the vector envs in ``idle`` (e.g. evaluation environments while training runs).
        From the last keep-alive round: no call is made."""
        capacity = held = 0
        for link in self.links:
            if link.up and link.info:
                cap = min(link.capacity, link.info['capacity'])
                capacity += cap
                held += min(self.held_on(link, idle=idle), cap)
        return held / float(capacity) if capacity else 0.0

    def overcommit(self):
        """``{farm: environments in use / capacity}`` for the answering farms above capacity
        (from the last keep-alive round; every learner's environments count)."""
        return dict((link.name, link.info['in_use'] / float(link.info['capacity']))
                    for link in self.links if link.up and link.info
                    and link.info['in_use'] > link.info['capacity'] > 0)
