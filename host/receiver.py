"""One farm's results for one vector env in the asynchronous mode: :class:`Receiver`, daemon
threads that wait in the farm's ``recv`` while environments of that vector env are in flight
there, and put what comes back on the queue that :class:`host.async_mode.AsyncState` drains on
the learner's thread. They share nothing with it but that queue and a count (``expect``).

Python 3.6 compatible.
"""
import threading

from host import settings


def receiver_threads(link):
    """How many recvs to keep going to ``link``'s farm at once: ``settings.RECV_THREADS`` for a
    far farm (its fastest probe answer took ``settings.FAR_RTT`` or more), one for a near one
    (nothing to hide, and fewer, fuller answers cost the learner less)."""
    if link.rtt is not None and link.rtt >= settings.FAR_RTT:
        return max(1, int(settings.RECV_THREADS))
    return 1


class Receiver(object):
    """One farm's results for one vector env: :func:`receiver_threads` daemon threads, each
    with a connection of its own, that call the farm's ``recv`` on lease ``lease`` while
    ``expected`` > 0 (their recvs overlap: one waits at the farm while another's answer travels)
    and queue ``('results', self, list)``; a failed call is queued as ``('failed', self, error)``
    and ends its thread (the learner's thread decides what it means)."""

    def __init__(self, link, lease, events, call_timeout):
        self.link, self.lease = link, lease
        self.expected = 0
        self._events = events
        self._call_timeout = call_timeout
        self._stopped = False
        self._cond = threading.Condition()
        self.threads = [threading.Thread(target=self._run, name='recv-%s' % link.name,
                                         daemon=True)
                        for _ in range(receiver_threads(link))]
        for thread in self.threads:
            thread.start()

    def expect(self, n):
        """``n`` more (or fewer, if negative) of our environments are in flight on this farm."""
        with self._cond:
            self.expected += n
            self._cond.notify_all()

    def stop(self):
        """Ends the threads after the calls they are in (at most ``settings.RECV_WAIT`` on the
        farm)."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def _run(self):
        try:
            while True:
                with self._cond:
                    while self.expected <= 0 and not self._stopped:
                        self._cond.wait()
                    if self._stopped:
                        return
                try:
                    # wait=True: the farm waits for sends that have not reached it yet
                    # (they travel on another connection), so the round trip is paid once.
                    results = self.link.call(
                        'recv', self.lease, 1, settings.RECV_WAIT, True, settings.RECV_LINGER,
                        timeout=settings.RECV_WAIT + self._call_timeout(self.link))
                except BaseException as e:
                    if not self._stopped:
                        self._events.put(('failed', self, e))
                    return
                if results:
                    with self._cond:
                        self.expected -= len(results)
                    self._events.put(('results', self, results))
                elif not self._stopped:
                    # Nothing came back: the farm waited RECV_WAIT (it waits even with none of
                    # ours in flight yet); a farm that answered at once must not be spun on.
                    self._cond.acquire()
                    self._cond.wait(0.01)
                    self._cond.release()
        finally:
            self.link.release_connection()  # this thread's: each thread has its own
