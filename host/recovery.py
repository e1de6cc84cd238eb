"""The asynchronous mode's recovery threads: :class:`Recovery` rebuilds environments lost with
their farm or lease where farms answer, and moves displaced ones to free capacity, each in a
daemon thread off the learner's thread, one at a time (placements change in turn). It is
handed the Farmer (its links: each thread gives its connections back), the vector env's
:class:`host.placement.Placements` (which does the building) and the event queue that
:class:`host.async_mode.AsyncState` drains: a thread's outcome comes back as ``('rebuilt',
indices)``, ``('relocated', indices, moved)`` or ``('fatal', error)``.

Safe because an environment in flight is the machinery's until its result is handed over:
nothing else touches its placement meanwhile. Python 3.6 compatible.
"""
import logging
import threading

from host.diagnosis import describe

log = logging.getLogger('farmer')


class Recovery(object):
    """Rebuilding and relocating threads for one vector env's asynchronous mode."""

    def __init__(self, farmer, placement, events):
        self.farmer = farmer
        self.placement = placement
        self.events = events
        self.threads = []
        self._rebuilding = threading.Lock()  # one rebuild at a time: placements in turn

    def _start(self, target, arg):
        thread = threading.Thread(target=target, args=(arg,), name='farm-recovery',
                                  daemon=True)
        self.threads = [t for t in self.threads if t.is_alive()] + [thread]
        thread.start()

    def relocate(self, indices):
        """Moves those of ``indices`` (displaced, their step's result held) that run above a
        farm's capacity to free capacity, in a thread; then queues ``('relocated', indices,
        moved)``."""
        self._start(self._relocate, indices)

    def _relocate(self, indices):
        """A recovery thread: moves those of ``indices`` (displaced, their step's result held)
        that run above a farm's capacity to free capacity."""
        try:
            with self._rebuilding:
                moved = self.placement.relocate(indices)
        except BaseException as e:  # not moved: retried at a later keep-alive round
            log.warning('could not move environments back: %s', describe(e))
            moved = {}
        finally:
            for link in self.farmer.links:
                link.release_connection()
        self.events.put(('relocated', indices, moved))

    def rebuild(self, old):
        """Rebuilds ``old`` (index -> lost placement) where farms answer, in a thread; then
        queues ``('rebuilt', indices)`` (or ``('fatal', error)``)."""
        self._start(self._rebuild, old)

    def _rebuild(self, old):
        """A recovery thread: rebuilds ``old`` (index -> lost placement) where farms answer."""
        try:
            with self._rebuilding:
                self.placement.rebuild(old)
        except BaseException as e:
            if not self.placement.closed:
                self.events.put(('fatal', e))
            return
        finally:
            for link in self.farmer.links:
                link.release_connection()
        self.events.put(('rebuilt', sorted(old)))
