"""Allocation: :class:`Farmer`, the one owner of this learner's farm capacity.

- Start: reads the farm list (host/farmlist_reader.py), probes every farm at once, and starts a
  local farm (host/local_farm.py) when the list names only this machine and none answers; with
  no farm answering otherwise, :class:`errors.NoFarmError` gives each farm's advice.
- Placement: :meth:`Farmer.place` spreads environments by free capacity, never past the farm
  list's capacity per farm (counting what this learner holds there); :meth:`Farmer.place_or_wait`
  (a new vector env) waits up to ``WAIT_FOR_CAPACITY`` for capacity a departed learner frees, and
  otherwise raises :class:`errors.NoCapacityError` saying who holds what.
- Leases: each vector env holds an :class:`Allocation`, at most one lease per farm (opened
  when first needed, packed observations), renewed by the keep-alive thread (a third of the
  shortest TTL, at most every ``KEEPALIVE_EVERY``), and given back whole on every exit path:
  the env's ``close()``, a build that fails part-way, ``Farmer.close()``, interpreter exit
  (atexit, below). A lease the farm forgot is dropped from renewal; the vector env rebuilds its
  environments.
- Protocol: a farm whose ``info()`` reports another farm protocol than protocol.PROTOCOL is not
  used: its status says why, and with no other farm answering :class:`errors.ProtocolMismatchError`
  is the one line the user sees.
- Keep-alive thread (every ``MONITOR_EVERY``): reports calls outstanding past ``STALL_AFTER``
  (with a probe of the farm), renews leases, refreshes every farm's numbers, marks each vector
  env's ``rebalance_due``, and probes lost farms every ``RETRY_EVERY``.
- Outages: :meth:`Farmer.mark_down` keeps a lost farm's leases to close when it answers again
  (:meth:`Farmer.try_revive`, from any thread); :meth:`Farmer.wait_for_a_farm` blocks while none
  answers; past ``give_up_after`` seconds of silence :class:`errors.FarmsLostError`.
- Vector envs (host/farm_vec_env.py) are clients of this, through public calls only: they ask
  for a plan (``place``, ``place_or_wait``), lease through their Allocation, report lost farms
  (``mark_down``) and forgotten leases (``Allocation.drop``), wait (``wait``,
  ``wait_for_a_farm``, ``check_give_up``) and give their Allocation back on close.

All intervals are host/settings.py's, read at call time. Python 3.6 compatible.
"""
import atexit
import concurrent.futures
import logging
import os
import threading
import time

from common.errors import FarmsLostError, NoCapacityError, NoFarmError, ProtocolMismatchError
from host import local_farm, settings
from host.diagnosis import advice, describe
from host.farm_vec_env import FarmVecEnv
from host.farmlist_reader import parse_farms, read_farmlist
from host.link import FARM_DOWN, FarmLink, configure_tls
from host.remote_env import RemoteEnv

log = logging.getLogger('farmer')  # one logger for the whole learner side, as farmer.py had

_OPEN = set()  # Farmers not closed yet: closed at interpreter exit


@atexit.register
def _close_open_farmers():
    """A learner that dies (an exception during start-up, sys.exit) frees its leases at once
    instead of leaving them to expire on the farms."""
    for farmer in list(_OPEN):
        try:
            farmer.close()
        except Exception as e:  # at exit: say it, do not stop the others
            log.warning('closing the farmer at exit: %s', e)


class Farmer(object):
    """All farms of the farm list; builds environments on them. Close it (or use ``with``); it
    is also closed at interpreter exit.

    ``give_up_after``: seconds with no farm answering after which a vector step raises
    :class:`errors.FarmsLostError` (None or 0: wait for a farm for ever, saying so every few
    seconds).
    ``tls_ca``: CA certificate of TLS farms (default ``$FARM_TLS_CA``; see
    :func:`host.link.configure_tls`).
    ``where``: how the farm list is named in errors (default: farmlist.py, or Farmer(farms=...)).
    """

    def __init__(self, farms=None, key=None, start_local=True, lease_ttl=settings.LEASE_TTL,
                 give_up_after=None, tls_ca=None, where=None):
        farms = read_farmlist() if farms is None else parse_farms(
            farms, where or 'Farmer(farms=...)')
        configure_tls(tls_ca if tls_ca is not None else os.environ.get(settings.TLS_CA_ENV))
        self.key = key if key is not None else os.environ.get(settings.KEY_ENV)
        self.lease_ttl = lease_ttl
        self.give_up_after = give_up_after or None  # 0: never, as None
        self.links = [FarmLink(h, c, p, self.key) for h, c, p in farms]
        self.local_farm = None
        self._leases = []          # (link, token) to renew and to close
        self._stale = []           # (link, token) held on a farm when it went down: closed when
        #                            it answers again, so they do not hold its capacity
        self.revivals = 0          # how many times a lost farm answered again
        self._vec_envs = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._probe_all()
        if not any(link.up for link in self.links):
            mismatched = [link.mismatch for link in self.links if link.mismatch]
            if mismatched:  # a farm answers, but in another protocol: starting one would not help
                raise ProtocolMismatchError('; '.join(mismatched))
            if start_local and all(link.host in settings.LOCAL_HOSTS for link in self.links):
                self._start_local_farm()
            else:
                raise NoFarmError(self._nothing_answers())
        _OPEN.add(self)
        self._keepalive = threading.Thread(target=self._keep_alive, name='farmer-keepalive',
                                           daemon=True)
        self._keepalive.start()

    # --- farms -----------------------------------------------------------------------------------
    def _probe_all(self):
        with concurrent.futures.ThreadPoolExecutor(max(1, len(self.links))) as pool:
            # (each pool thread closes its connection: the pool ends with this block)
            list(pool.map(lambda link: link.probe() and link.release_connection(),
                          self.links))
        some = any(link.up for link in self.links)
        for link in self.links:
            if link.up:
                log.info('farm %s answers: capacity %s, python %s', link.name,
                         link.info['capacity'], link.info['versions'].get('python'))
            elif some:  # going on without it: say why, and that it is probed again
                log.warning('%s; going on without it (probed every %g s)', advice(link),
                            settings.RETRY_EVERY)
            else:
                log.info('farm %s does not answer: %s', link.name, link.error)

    def _nothing_answers(self):
        return ('no farm answered: %s' % '; '.join(advice(link) for link in self.links)
                + ('. Or list only this machine in farmlist.py to have a local farm started'
                   if not all(link.host in settings.LOCAL_HOSTS for link in self.links) else ''))

    def _start_local_farm(self):
        # Stopped by close(), also at interpreter exit (_close_open_farmers: after our leases
        # are closed, not before), and by the farm itself if we die (--exit-with).
        self.local_farm = local_farm.start(self.links[0], self.key, self._nothing_answers)

    def _stop_local_farm(self):
        local_farm.stop(self.local_farm)
        self.local_farm = None

    @property
    def closed(self):
        return self._stop.is_set()

    def wait(self, seconds):
        """Sleeps ``seconds`` unless the farmer is closed meanwhile; returns whether it is."""
        return self._stop.wait(seconds)

    def allocation(self):
        """A new, empty :class:`Allocation`: the leases of one vector env, given back whole."""
        return Allocation(self)

    def status(self):
        """One plain dict per farm: name, up, capacity, in use, versions, error (fresh probes;
        a lost farm that answers again is taken back)."""
        for link in self.links:
            if link.up:
                link.refresh()
            else:
                self.try_revive(link)
        return [link.status() for link in self.links]

    def mark_down(self, link, error):
        """``link`` failed a call: it is down; our leases there are kept to close later."""
        with self._lock:
            mine = [(l, t) for l, t in self._leases if l is link]
            self._leases = [(l, t) for l, t in self._leases if l is not link]
            self._stale.extend(mine)
        was_up = link.up
        link.mark_down(error)
        if was_up:
            log.warning('farm %s stopped answering (%s); probing it every %g s',
                        link.name, link.error, settings.RETRY_EVERY)

    def try_revive(self, link):
        """Probe a farm that is down; when it answers, close the leases we held there before it
        went down (their capacity would be held for nothing), then take it back. Returns whether
        it is up. Safe from any thread; a probe already under way elsewhere is not repeated."""
        if link.up:
            return True
        if not link.reviving.acquire(False):
            return False
        try:
            info = link.ping()
            if isinstance(info, Exception):
                link.retry_at = time.time() + settings.RETRY_EVERY
                return False
            with self._lock:
                stale = [(l, t) for l, t in self._stale if l is link]
            closed = 0
            for pair in stale:
                try:
                    closed += bool(link.call('close_lease', pair[1],
                                             timeout=settings.CLOSE_TIMEOUT))
                except FARM_DOWN:
                    link.retry_at = time.time() + settings.RETRY_EVERY
                    return False
                except Exception:  # the farm refused it: nothing of ours is held there
                    pass
                with self._lock:
                    self._stale.remove(pair)
            if stale:
                link.refresh()
                info = link.info
            down_for = time.time() - (link.down_since or time.time())
            link.info, link.up, link.down_since = info, True, None
            self.revivals += 1
            log.warning('farm %s answers again%s%s', link.name,
                        ' after %.0f s' % down_for if down_for >= 1 else '',
                        '; closed the %d leases it still held for us from before' % closed
                        if closed else '')
            return True
        finally:
            link.reviving.release()

    def silent_for(self):
        """Seconds since any farm last answered any call."""
        answers = [link.last_answer for link in self.links if link.last_answer is not None]
        return time.time() - max(answers) if answers else float('inf')

    def check_give_up(self):
        if self.give_up_after is not None and not any(link.up for link in self.links) \
                and self.silent_for() >= self.give_up_after:
            raise FarmsLostError('no farm has answered for %.0f s (give up after %.0f s): %s'
                                 % (self.silent_for(), self.give_up_after,
                                    '; '.join(advice(link) for link in self.links)))

    def wait_for_a_farm(self):
        """Blocks while no farm answers: probes them, says so every REPORT_EVERY seconds, and
        returns once one answers (raises FarmsLostError past ``give_up_after``)."""
        started = time.time()
        next_report = started
        while not any(link.up for link in self.links):
            probed_at = time.time()
            for link in self.links:
                self.try_revive(link)
            if any(link.up for link in self.links):
                break
            self.check_give_up()
            if time.time() >= next_report:
                next_report = probed_at + settings.REPORT_EVERY
                log.warning('no farm answers (for %.0f s): %s. Waiting for one; the run goes on '
                            'when one answers%s', self.silent_for(),
                            '; '.join('%s: %s' % (link.name, link.error) for link in self.links),
                            '' if self.give_up_after is None else
                            ' (giving up after %.0f s)' % self.give_up_after)
            self._stop.wait(1.0)
            if self._stop.is_set():
                raise FarmsLostError('the farmer was closed while no farm answered')
        log.warning('farm %s answers; going on after %.0f s without a farm',
                    ', '.join(link.name for link in self.links if link.up), time.time() - started)

    def _renew_every(self):
        """A third of the shortest lease TTL we get (a farm caps ours at its --lease-ttl)."""
        ttls = [self.lease_ttl] + [float(link.info.get('lease_ttl') or self.lease_ttl)
                                   for link in self.links if link.up and link.info]
        return min([settings.KEEPALIVE_EVERY] + [ttl / 3.0 for ttl in ttls])

    def _keep_alive(self):
        next_round = time.time() + self._renew_every()
        while not self._stop.wait(min(settings.MONITOR_EVERY, self._renew_every())):
            try:
                now = time.time()
                self._report_stalls(now)
                if now >= next_round:
                    next_round = now + self._renew_every()
                    self._renew_all()
                    for env in list(self._vec_envs):
                        env.rebalance_due = True
                for link in self.links:
                    if not link.up and time.time() >= link.retry_at:
                        self.try_revive(link)
            except Exception as e:  # never let the keep-alive thread die
                log.warning('keep-alive: %s', describe(e))

    def _renew_all(self):
        with self._lock:
            leases = list(self._leases)
        for link, token in leases:
            if not link.up or (link.reported and not link.stall_answers):
                continue  # (a stalled farm that answers no probe would only time out again)
            try:
                link.call('renew', token, timeout=settings.PROBE_TIMEOUT)
            except LookupError:
                # The farm forgot it: the next step rebuilds its environments (lost_cause
                # 'lease'); stop renewing it.
                self.forget_lease(link, token)
            except Exception as e:
                log.warning('renewing lease on %s failed: %s', link.name, describe(e))
        for link in self.links:
            # Not a farm with a call stuck past STALL_AFTER (its stall report probes it); a call
            # merely outstanding is the rule in the asynchronous mode (a receiver waiting).
            oldest = link.oldest_call()
            if link.up and (oldest is None or time.time() - oldest[1] < settings.STALL_AFTER):
                link.refresh()

    def _report_stalls(self, now):
        """Says which farm has not answered a call for how long, and what a probe of it says."""
        for link in self.links:
            oldest = link.oldest_call()
            if oldest is None or now - oldest[1] < settings.STALL_AFTER or not link.up:
                # (a farm that is down has its calls abandoned; wait_for_a_farm reports it)
                link.reported, link.stall_answers = 0.0, True
                continue
            if now - link.reported < (settings.SLOW_REPORT_EVERY
                                      if link.reported and link.stall_answers
                                      else settings.REPORT_EVERY):
                continue
            method, started = oldest
            link.reported = now  # (before the probe, which may take PROBE_TIMEOUT)
            link.stall_answers = not isinstance(link.ping(), Exception)
            now = time.time()
            if link.stall_answers:
                log.warning('farm %s: no answer to %s for %.0f s, but it answers a probe: an '
                            'environment is slow (the farm replaces one stuck past its step '
                            'timeout)', link.name, method, now - started)
            else:
                log.warning('farm %s: no answer to %s for %.0f s, nor to a probe (%s): the farm '
                            'is frozen, or its machine or the link is down. Waiting; the call '
                            'times out in %.0f s, then its environments are rebuilt where a farm '
                            'answers', link.name, method, now - started, link.error,
                            max(0.0, started + link.call_timeout - now))

    # --- leases and placement --------------------------------------------------------------------
    def open_lease(self, link):
        # Packed observations (wire.pack): raw float32 bytes instead of lists of floats, one
        # copy in place of a list conversion on both sides (issue 9 item 4).
        token = link.call('open_lease', self.lease_ttl, True,
                          timeout=settings.PROBE_TIMEOUT + 5)
        with self._lock:
            self._leases.append((link, token))
        return token

    def forget_lease(self, link, token):
        with self._lock:
            if (link, token) in self._leases:
                self._leases.remove((link, token))

    def close_leases(self, pairs, timeout=settings.CLOSE_TIMEOUT):
        """Close leases on their farms, all at once, within about ``timeout`` seconds whatever
        the farms do (a lease not closed is released by its farm later)."""
        pairs = list(pairs)
        for link, token in pairs:
            self.forget_lease(link, token)

        def close(link, token):
            try:
                link.call('close_lease', token, timeout=timeout)
            except Exception as e:
                log.warning('closing a lease on %s: %s', link.name, describe(e))
            finally:
                link.release_connection()

        threads = [threading.Thread(target=close, args=pair, daemon=True,
                                    name='close-lease-%s' % pair[0].name)
                   for pair in pairs if pair[0].up]
        for thread in threads:
            thread.start()
        deadline = time.time() + timeout + 0.5
        for thread in threads:
            thread.join(max(0.0, deadline - time.time()))

    def place(self, n, exclude=(), replacing=()):
        """How many of ``n`` environments go to each answering farm: by free capacity, at most
        the farm list's capacity per farm (counting what this learner holds there, except the
        placements it is ``replacing``). Returns ``(plan, how many did not fit)``."""
        links = [link for link in self.links if link.up and link not in exclude]
        free = {}
        for link in links:
            if link.refresh():  # fresh numbers: other learners may have taken capacity since
                mine = self._held_on(link, replacing)
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
            self._stop.wait(min(max(soonest[0], 0.2) + 0.3, 5.0))
            if self._stop.is_set():
                raise NoCapacityError(self.no_capacity(n, what, n - missing))

    def no_capacity(self, n, what, have):
        """Why ``n`` x ``what`` do not fit (only ``have`` do): who holds what, and what to do."""
        parts = []
        for link in self.links:
            info = link.info or {}
            if not link.up:
                parts.append('%s does not answer (%s)' % (link.name, link.error))
                continue
            mine = self._held_on(link)
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

    def _held_on(self, link, replacing=(), idle=()):
        skip = set(id(place) for place in replacing)
        return sum(1 for env in self._vec_envs if not env.closed and env not in idle
                   for place in env.places
                   if place is not None and place.link is link and id(place) not in skip)

    def vec_env(self, env_name, n_envs, env_kwargs=None, batch_size=1):
        """``n_envs`` environments spread over the farms, as one vectorized env (vecenv/contract.py);
        ``batch_size``: its asynchronous ``recv``'s default batch."""
        env = FarmVecEnv(self, env_name, int(n_envs), dict(env_kwargs or {}), batch_size)
        self._vec_envs = [e for e in self._vec_envs if not e.closed] + [env]
        return env

    def env(self, env_name, env_kwargs=None):
        """One remote environment with the gym interface."""
        return RemoteEnv(self.vec_env(env_name, 1, env_kwargs))

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
                held += min(self._held_on(link, idle=idle), cap)
        return held / float(capacity) if capacity else 0.0

    def overcommit(self):
        """``{farm: environments in use / capacity}`` for the answering farms above capacity
        (from the last keep-alive round; every learner's environments count)."""
        return dict((link.name, link.info['in_use'] / float(link.info['capacity']))
                    for link in self.links if link.up and link.info
                    and link.info['in_use'] > link.info['capacity'] > 0)

    def close(self):
        """Close every environment and lease (within a few seconds, whatever the farms do)."""
        if self._stop.is_set():
            return
        self._stop.set()
        _OPEN.discard(self)
        for env in list(self._vec_envs):
            env.close()
        with self._lock:
            left, self._leases = self._leases, []
        self.close_leases(left)
        for link in self.links:
            link.close()
        self._stop_local_farm()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Allocation(object):
    """The leases one vector env holds: at most one per farm (its environments there all live in
    it), opened when first needed, given back whole by :meth:`close` (also when a build fails
    part-way). The :class:`Farmer` renews them with the others; a farm lost or a lease it forgot
    is dropped here (:meth:`drop`) so that the next build there opens a fresh one."""

    def __init__(self, farmer):
        self.farmer = farmer
        self._leases = {}  # link -> token
        self._lock = threading.Lock()
        self.closed = False

    def lease(self, link, open_new=True):
        """This allocation's lease on ``link``, opened now if it has none (``open_new``)."""
        with self._lock:
            token = self._leases.get(link)
            if token is None and open_new:
                if self.closed:  # (a recovery thread still at work when its env closed)
                    raise RuntimeError('this vector env is closed: nothing more is leased')
                token = self._leases[link] = self.farmer.open_lease(link)
            return token

    def drop(self, link, token=None):
        """Forget the lease on ``link`` (its farm is lost, or forgot it: the Farmer keeps what
        it must close later); ``token``: only if it is still that one."""
        with self._lock:
            if link in self._leases and token in (None, self._leases[link]):
                self.farmer.forget_lease(link, self._leases.pop(link))

    def leases(self):
        with self._lock:
            return list(self._leases.items())

    def close(self, timeout=settings.CLOSE_TIMEOUT):
        """Close every lease (within about ``timeout`` seconds): the farms free what they held."""
        with self._lock:
            pairs, self._leases = list(self._leases.items()), {}
            self.closed = True
        self.farmer.close_leases(pairs, timeout)
