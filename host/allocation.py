"""Allocation: :class:`Farmer`, the one owner of this learner's farm capacity.

- Start: reads the farm list (host/farmlist_reader.py), probes every farm at once, and starts a
  local farm (host/local_farm.py) when the list names only this machine and none answers; with
  no farm answering otherwise, :class:`errors.NoFarmError` gives each farm's advice.
- Placement: :meth:`Farmer.place` spreads environments by free capacity, never past the farm
  list's capacity per farm (counting what this learner holds there); :meth:`Farmer.place_or_wait`
  (a new vector env) waits up to ``WAIT_FOR_CAPACITY`` for capacity a departed learner frees, and
  otherwise raises :class:`errors.NoCapacityError` saying who holds what.
- Leases: each vector env holds an :class:`host.leases.Allocation`, at most one lease per farm
  (opened when first needed, packed observations), renewed by the keep-alive thread (a third of
  the shortest TTL, at most every ``KEEPALIVE_EVERY``), and given back whole on every exit path:
  the env's ``close()``, a build that fails part-way, ``Farmer.close()``, interpreter exit
  (atexit, below). A lease the farm forgot is dropped from renewal; the vector env rebuilds its
  environments.
- Protocol: a farm whose ``info()`` reports another farm protocol than protocol.PROTOCOL is not
  used: its status says why, and with no other farm answering :class:`errors.ProtocolMismatchError`
  is the one line the user sees.
- Keep-alive (host/keepalive.py, a thread handed this Farmer): reports stalled calls, renews
  leases, refreshes every farm's numbers, tells each vector env to rebalance, and probes lost
  farms.
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

from common.errors import FarmsLostError, NoFarmError, ProtocolMismatchError
from host import local_farm, settings
from host.capacity import Capacity
from host.diagnosis import advice, describe
from host.farm_vec_env import FarmVecEnv
from host.farmlist_reader import parse_farms, read_farmlist
from host.keepalive import KeepAlive
from host.leases import Allocation
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
        self.capacity = Capacity(self.links, self.open_vec_envs, self.wait, lambda: self.closed)
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
        self.keepalive = KeepAlive(self)
        self.keepalive.start()

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

    def leases(self):
        """The ``(link, token)`` pairs of every lease this learner holds on an answering farm
        (what the keep-alive renews)."""
        with self._lock:
            return list(self._leases)

    def open_vec_envs(self):
        """The vector envs this Farmer built that are not closed."""
        return [env for env in self._vec_envs if not env.closed]

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
        """:meth:`host.capacity.Capacity.place`: ``(plan, how many did not fit)``."""
        return self.capacity.place(n, exclude, replacing)

    def place_or_wait(self, n, what):
        """:meth:`host.capacity.Capacity.place_or_wait`: a plan for all ``n``, or
        :class:`errors.NoCapacityError`."""
        return self.capacity.place_or_wait(n, what)

    def no_capacity(self, n, what, have):
        return self.capacity.no_capacity(n, what, have)

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
        """:meth:`host.capacity.Capacity.utilization` (``idle``: vector envs not counted)."""
        return self.capacity.utilization(idle)

    def overcommit(self):
        """:meth:`host.capacity.Capacity.overcommit`: ``{farm: in use / capacity}`` above 1."""
        return self.capacity.overcommit()

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
