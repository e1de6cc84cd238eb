"""Allocation: the leases one vector env holds, at most one per farm, given back whole.

Opened through the :class:`host.allocation.Farmer` (which renews every lease with the others in
its keep-alive), dropped here when a farm is lost or forgets one (the next build there opens a
fresh one), and closed all at once by :meth:`Allocation.close` within a few seconds whatever the
farms do. Python 3.6 compatible.
"""
import threading

from host import settings


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
