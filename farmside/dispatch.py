"""farmside/dispatch.py: :class:`Dispatcher`, how commands reach a lease's workers and answers
come back, shared by the lockstep verbs (farmside/core.py) and the asynchronous ones
(farmside/async_verbs.py).

- ``claim(held, slots, what)`` / ``unclaim``: an environment does one thing at a time; one
  already busy (a lockstep call of the same lease, or in flight since a send) gets an 'input'
  error element instead of a second command;
- ``call_all(held, slots, command, args)``: lockstep: every command sent first, the answers
  collected in the order they come, so the workers run concurrently;
- ``shaped(held, command, result)``: a packed lease's observations as packed float32 arrays;
- ``land(held, env_ids)``: environments released or ended with their lease are no longer in
  flight (a recv waiting on them wakes and leaves them);
- ``actions`` / ``seeds``: a call's per-environment arguments, checked against its slots.

What follows each answer (counting, recycling, failures) is the worker life's
(farmside/lifecycle.py). Python 2.7 and 3.6+.
"""
from __future__ import absolute_import

import time

from common import protocol, wire
from farmside.books import BUILD_TIMEOUT, CALL, packed_obs
from farmside.envworker import WorkerError, replies


class Dispatcher(object):
    """Sends a lease's commands to its workers (see the module docstring)."""

    def __init__(self, life):
        self.life = life

    @property
    def label(self):
        return self.life.label

    def claim(self, held, slots, what):
        """Marks each slot busy with ``what``; one not free gets its 'input' error element
        instead (None for those claimed)."""
        results = [None] * len(slots)
        with held.state:
            for k, slot in enumerate(slots):
                if slot.busy is None:
                    slot.busy = what
                else:
                    results[k] = protocol.error('farm %s: env %d %s' % (
                        self.label, slot.env_id,
                        'is in flight: recv its result first' if slot.busy is not CALL
                        else 'is busy with another call of this lease'), 'input')
        return results

    def unclaim(self, held, slots):
        with held.state:
            for slot in slots:
                slot.busy = None

    def call_all(self, held, slots, command, args):
        """Lockstep: send every command first, then collect in the order they finish: the
        workers run concurrently. ``args`` are the commands' arguments (``(action, auto_reset)``
        to step). An environment in flight (send/send_reset) gets an 'input' error element."""
        life = self.life
        results = self.claim(held, slots, CALL)
        claimed = [k for k, r in enumerate(results) if r is None]
        try:
            sent = []
            for k in claimed:
                slot, arg = slots[k], args[k]
                try:
                    if command == 'reset':
                        life.prepare_reset(slot)
                        slot.worker.send(command, arg)
                    elif command == 'set_params':
                        if slot.needs_hello:  # its hello comes before any other answer
                            life.hello(slot, BUILD_TIMEOUT)
                        slot.worker.send(command, arg)
                    elif slot.needs_hello:
                        raise WorkerError('input', 'environment was lost; reset it before stepping')
                    else:
                        slot.worker.send_step(*arg)
                    sent.append(k)
                except Exception as e:
                    results[k] = life.failure(slot, e)
            deadline = time.time() + life.step_timeout
            for j, outcome in replies([slots[k].worker for k in sent], deadline):
                k = sent[j]
                slot = slots[k]
                result, due = life.settled(slot, command, outcome)
                if due:
                    try:
                        result[0] = life.recycle(slot)
                    except Exception as e:
                        result = life.failure(slot, e)
                results[k] = self.shaped(held, command, result)
        finally:
            self.unclaim(held, [slots[k] for k in claimed])
        return results

    @staticmethod
    def shaped(held, command, result):
        """A packed lease's observations as wire.pack'ed float32 arrays (the shared block's
        results are packed by the worker already; what came through the pipe is packed here)."""
        if not held.packed or command not in ('step', 'reset') or protocol.is_error(result):
            return result
        if command == 'reset':
            return packed_obs(result)
        result[0] = packed_obs(result[0])
        info = result[4]
        if isinstance(info, dict) and 'terminal_observation' in info:
            info['terminal_observation'] = packed_obs(info['terminal_observation'])
        return result

    @staticmethod
    def land(held, env_ids):
        """Environments released or dropped with their lease: no longer in flight (a recv
        waiting on them wakes and leaves them)."""
        with held.state:
            for env_id in env_ids:
                flight = held.in_flight.pop(env_id, None)
                if flight is None:
                    continue
                # Slot and Flight refer to each other: left so, the slot's dead worker (and
                # the descriptors of its process) would wait for the cyclic garbage collector.
                flight.slot.busy = None
                if flight.fd is not None:
                    held.watch.remove(flight.fd)
            if held.watch is not None:
                held.watch.nudge()

    def actions(self, slots, actions, verb):
        """One action per slot: from a list, or the rows of ONE wire.pack'ed float array of
        shape (len(slots), act_dim). ValueError for anything else."""
        if wire.is_packed(actions):
            try:
                array = wire.unpack(actions)
            except ValueError as e:
                raise ValueError('farm %s: %s: actions: %s' % (self.label, verb, e))
            if array.ndim != 2 or array.shape[0] != len(slots) or array.dtype.kind != 'f':
                raise ValueError('farm %s: %s needs packed actions of shape (%d, action size) '
                                 'and a float dtype, got shape %s, dtype %s'
                                 % (self.label, verb, len(slots), list(array.shape),
                                    array.dtype.name))
            return list(array)  # rows: read-only views, copied into each worker's block
        if not isinstance(actions, (list, tuple)) or len(actions) != len(slots):
            raise ValueError('farm %s: %s needs one action per environment (%d), got %r'
                             % (self.label, verb, len(slots), type(actions).__name__))
        return actions

    def seeds(self, slots, seeds):
        """One seed (or None) per slot."""
        seeds = list(seeds) if seeds is not None else [None] * len(slots)
        if len(seeds) != len(slots):
            raise ValueError('farm %s: %d seeds for %d environments' % (self.label, len(seeds),
                                                                         len(slots)))
        return seeds
