"""farmside/lifecycle.py: :class:`WorkerLife`, the life of the farm's worker processes, in one place.

A worker (farmside/envworker.py's :class:`EnvWorker`: one environment in one OS process) is
started with the environment's name and kwargs, says *hello* once its environment is built, and
then answers commands. This object decides everything around that, in lockstep and asynchronous
stepping alike:

- ``start`` a worker, and ``hello(slot, timeout)``: wait for it to be built;
- ``settled(slot, command, outcome)``: what follows a worker's answer: an error becomes the
  environment's error element (a worker that died or passed the step timeout is *lost*: killed
  and replaced), steps and resets are counted;
- recycling: a worker that has served ``recycle_steps`` steps or ``recycle_resets`` resets is
  replaced at its next reset (OpenSim leaks and slows down over long runs, osim-rl #58, #176):
  ``recycle_if_due`` (the successor builds while the caller goes on) or ``recycle`` (blocking,
  returning the new episode's first observation);
- ``replace(slot)``: a fresh worker with the same name, kwargs (the seed moved on) and
  parameters, put in the slot through the farm's :class:`farmside.ledger.Ledger` only while the
  slot is still the farm's;
- ``failure(slot, error)``: the error element for an environment, replacing its worker if lost.

Python 2.7 and 3.6+.
"""
from __future__ import absolute_import

import logging
import time

from common import protocol
from farmside.books import BUILD_TIMEOUT
from farmside.envworker import EnvWorker, WorkerError

log = logging.getLogger('farm')


class WorkerLife(object):
    """Starts, checks, recycles and replaces the farm's workers (see the module docstring)."""

    def __init__(self, ledger, step_timeout, recycle_steps, recycle_resets):
        self.ledger = ledger
        self.step_timeout = float(step_timeout)
        self.recycle_steps = int(recycle_steps)
        self.recycle_resets = int(recycle_resets)

    @property
    def label(self):
        return self.ledger.label

    @staticmethod
    def start(name, kwargs, packed):
        """A new worker building ``name``; its hello comes later (:meth:`hello`)."""
        return EnvWorker(name, dict(kwargs or {}), packed=packed)

    def hello(self, slot, timeout):
        """Waits up to ``timeout`` for the slot's worker to be built; returns its spaces."""
        spec = slot.worker.hello(timeout)
        slot.needs_hello = False
        return spec

    def settled(self, slot, command, outcome):
        """What follows a worker's reply. Returns ``(result, due)``: ``due`` when the step
        ended an episode (auto-reset) and the worker has served its quota; the caller then
        recycles it (lockstep: at once, :meth:`recycle`; recv: without holding up the other
        environments, :meth:`recycle_if_due`) and replaces ``result[0]``."""
        if isinstance(outcome, Exception):
            return self.failure(slot, outcome), False
        if command == 'step':
            slot.worker.steps += 1
            if 'terminal_observation' in outcome[4]:
                slot.worker.resets += 1
                return outcome, self.due(slot.worker)
        elif command == 'reset':
            slot.worker.resets += 1
        return outcome, False

    def due(self, worker):
        return worker.steps >= self.recycle_steps or worker.resets >= self.recycle_resets

    def replace(self, slot):
        """A fresh worker for ``slot`` (the old one closed or killed); it must say hello first."""
        old = slot.worker
        if old.alive():
            old.close()
        else:
            old.kill()  # reaps it and closes the pipe
        # builds while the caller goes on
        fresh = EnvWorker(old.name, old.kwargs, old.params, packed=old.packed)
        if not self.ledger.swap_worker(slot, fresh):
            # The lease was closed, released or reaped while this slot's call was in flight, and
            # its old worker has been closed: a replacement would belong to nobody (it leaked
            # two workers in a drill where a frozen farm's step timed out as its lease closed).
            fresh.kill()

    def recycle_if_due(self, slot):
        if not slot.needs_hello and self.due(slot.worker):
            log.info('env %d: recycling worker %s after %d steps, %d resets', slot.env_id,
                     slot.worker.pid, slot.worker.steps, slot.worker.resets)
            self.replace(slot)

    def recycle(self, slot):
        """Replace a worker that has served its quota; returns the new one's first observation."""
        self.recycle_if_due(slot)
        self.hello(slot, BUILD_TIMEOUT)
        slot.worker.send('reset', None)
        obs = slot.worker.receive(time.time() + self.step_timeout)
        slot.worker.resets += 1
        return obs

    def prepare_reset(self, slot):
        """A worker due for recycling replaced, and a new one built, before its reset."""
        self.recycle_if_due(slot)
        if slot.needs_hello:
            self.hello(slot, BUILD_TIMEOUT)

    def failure(self, slot, error):
        """The error element of ``slot``'s environment for ``error``. A worker that answered
        with an error is intact; anything else (died, timed out, or an unexpected failure while
        talking to it) means it is replaced."""
        kind = error.kind if isinstance(error, WorkerError) else 'lost'
        if kind == 'lost' or not slot.worker.alive():
            kind = 'lost'
            log.warning('env %d (%s) lost: %s', slot.env_id, slot.worker.name, error)
            slot.worker.kill()
            self.replace(slot)
        return protocol.error('farm %s, env %d (%s): %s' % (self.label, slot.env_id,
                                                             slot.worker.name, error), kind)
