"""The Farmer's keep-alive: one daemon thread, handed the :class:`host.allocation.Farmer` it
serves, that every ``settings.MONITOR_EVERY`` seconds (until the Farmer closes):

- reports calls outstanding past ``STALL_AFTER`` (with a probe of the farm: a slow environment,
  or a frozen farm), again every ``REPORT_EVERY`` (``SLOW_REPORT_EVERY`` while the farm answers
  probes);
- every :meth:`KeepAlive.renew_every` seconds (a third of the shortest lease TTL, at most
  ``KEEPALIVE_EVERY``) renews every lease on an answering farm (one the farm forgot is dropped:
  the vector env rebuilds its environments), refreshes every farm's numbers, and tells each
  vector env to try moving displaced environments back (``rebalance_soon``);
- probes lost farms every ``RETRY_EVERY`` (``Farmer.try_revive``).

It uses the Farmer's public interface only (``links``, ``lease_ttl``, ``leases``,
``forget_lease``, ``try_revive``, ``open_vec_envs``, ``wait``). Python 3.6 compatible.
"""
import logging
import threading
import time

from host import settings
from host.diagnosis import describe

log = logging.getLogger('farmer')


class KeepAlive(object):
    """The keep-alive thread of ``farmer``; it ends when the Farmer closes."""

    def __init__(self, farmer):
        self.farmer = farmer
        self._thread = threading.Thread(target=self._run, name='farmer-keepalive', daemon=True)

    def start(self):
        self._thread.start()

    def renew_every(self):
        """A third of the shortest lease TTL we get (a farm caps ours at its --lease-ttl)."""
        farmer = self.farmer
        ttls = [farmer.lease_ttl] + [float(link.info.get('lease_ttl') or farmer.lease_ttl)
                                     for link in farmer.links if link.up and link.info]
        return min([settings.KEEPALIVE_EVERY] + [ttl / 3.0 for ttl in ttls])

    def _run(self):
        next_round = time.time() + self.renew_every()
        while not self.farmer.wait(min(settings.MONITOR_EVERY, self.renew_every())):
            try:
                now = time.time()
                self.report_stalls(now)
                if now >= next_round:
                    next_round = now + self.renew_every()
                    self.renew_all()
                    for env in self.farmer.open_vec_envs():
                        env.rebalance_soon()
                for link in self.farmer.links:
                    if not link.up and time.time() >= link.retry_at:
                        self.farmer.try_revive(link)
            except Exception as e:  # never let the keep-alive thread die
                log.warning('keep-alive: %s', describe(e))

    def renew_all(self):
        for link, token in self.farmer.leases():
            if not link.up or (link.reported and not link.stall_answers):
                continue  # (a stalled farm that answers no probe would only time out again)
            try:
                link.call('renew', token, timeout=settings.PROBE_TIMEOUT)
            except LookupError:
                # The farm forgot it: the next step rebuilds its environments (lost_cause
                # 'lease'); stop renewing it.
                self.farmer.forget_lease(link, token)
            except Exception as e:
                log.warning('renewing lease on %s failed: %s', link.name, describe(e))
        for link in self.farmer.links:
            # Not a farm with a call stuck past STALL_AFTER (its stall report probes it); a call
            # merely outstanding is the rule in the asynchronous mode (a receiver waiting).
            oldest = link.oldest_call()
            if link.up and (oldest is None or time.time() - oldest[1] < settings.STALL_AFTER):
                link.refresh()

    def report_stalls(self, now):
        """Says which farm has not answered a call for how long, and what a probe of it says."""
        for link in self.farmer.links:
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
