"""farmside/channel.py: the two channels between the farm and one worker process.

- The pipe: framed messages (:func:`write_message`, :func:`read_message`), as
  ``multiprocessing``'s Connection frames them (a 4-byte big-endian length, then the bytes), read
  and written on the descriptor directly: one system call each way, and less Python per step
  than the Connection's methods, which matters when 32 workers wake at once on a few cores.
  Commands and replies are pickles (safe here and only here: both ends are this farm and its
  own children; nothing from the wire is ever unpickled); a shared-block step is a one-byte
  message each way (``STEP``/``STEP_RESET``, answered ``DONE``).
- The shared block (:class:`Block`): float64 memory in /dev/shm mapped by both and unlinked at
  once, carrying a step's action in and its observation, reward, flags and terminal observation
  out, with no serialisation.

:func:`plain` is the farm side's one conversion of what an environment returns to wire-safe
data. Python 2.7 compatible.
"""
from __future__ import absolute_import

import errno
import mmap
import os
import struct
import sys
import tempfile

import numpy as np

from common import wire

if sys.version_info[0] >= 3:
    string_types = (str,)
    number_types = (float, int)
else:  # pragma: no cover - Python 2.7 farms
    string_types = (basestring,)  # noqa: F821
    number_types = (float, int, long)  # noqa: F821  # novermin (Python 2 branch)

# One-byte messages of the shared-block step (anything else on the pipe is a pickle, which
# always starts with the protocol byte 0x80).
STEP, STEP_RESET, DONE = b's', b'S', b'k'
_HEADER = struct.Struct('!i')  # a message's length, as multiprocessing's Connection frames it
# The step path's messages, framed once.
_FRAMED = dict((m, _HEADER.pack(1) + m) for m in (STEP, STEP_RESET, DONE))
_CHUNK = 65536

SHM_DIR = '/dev/shm' if os.path.isdir('/dev/shm') and os.access('/dev/shm', os.W_OK) else None

def plain(value):
    """The farm side's one conversion to wire-safe data (numpy arrays and scalars included)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, dict):
        return dict((str(k), plain(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if value is None or isinstance(value, string_types):
        return value
    return repr(value)


class Block(object):
    """The memory one worker and the farm share for a step: ``action`` (written by the farm),
    then ``obs``, ``terminal`` (the ended episode's last observation after an auto-reset) and
    ``scalars`` = reward, terminated, truncated, reset-done (written by the worker)."""

    def __init__(self, mapped, sizes):
        self.act_size, self.obs_size = sizes
        a, o = sizes
        values = np.frombuffer(mapped, dtype=np.float64)  # the views keep the mapping alive
        self.action = values[:a]
        self.obs = values[a:a + o]
        self.terminal = values[a + o:a + 2 * o]
        self.scalars = values[a + 2 * o:]

    @staticmethod
    def sizes(spec):
        """``(action size, observation size)`` for flat box spaces, else None (pipe only)."""
        spaces = spec['action_space'], spec['observation_space']
        if any(s.get('kind') != 'box' or len(s.get('shape', ())) != 1 for s in spaces):
            return None
        return int(spaces[0]['shape'][0]), int(spaces[1]['shape'][0])

    @staticmethod
    def nbytes(sizes):
        return 8 * (sizes[0] + 2 * sizes[1] + 4)

    @classmethod
    def create(cls, sizes):
        """A new block and the path the worker attaches by (the caller unlinks it after)."""
        fd, path = tempfile.mkstemp(prefix='osimfarm-', dir=SHM_DIR)
        try:
            os.ftruncate(fd, cls.nbytes(sizes))
            mapped = mmap.mmap(fd, cls.nbytes(sizes))
        except Exception:
            os.unlink(path)
            raise
        finally:
            os.close(fd)
        return cls(mapped, sizes), path

    @classmethod
    def attach(cls, path, sizes):
        fd = os.open(path, os.O_RDWR)
        try:
            return cls(mmap.mmap(fd, cls.nbytes(sizes)), sizes)
        finally:
            os.close(fd)

    # farm side
    def load_action(self, action):
        """Writes ``action`` into the block if it is a flat list of numbers of the right length
        (or a row of a packed float array, common/wire.py); False otherwise (it then goes through the
        pipe, and the worker explains what is wrong)."""
        if isinstance(action, np.ndarray):
            if action.shape != (self.act_size,) or action.dtype.kind != 'f':
                return False
            self.action[:] = action
            return True
        if not isinstance(action, (list, tuple)) or len(action) != self.act_size:
            return False
        for a in action:
            if type(a) not in number_types:  # not isinstance: bool is an int, and is refused
                return False
        self.action[:] = action
        return True

    def result(self, info, packed=False):
        """The step's result as plain data; with ``packed`` its observations are wire.pack'ed
        float32 arrays (one copy of the block's bytes, no list of floats)."""
        reward, terminated, truncated, reset = self.scalars.tolist()
        if reset:
            info['terminal_observation'] = _out(self.terminal, packed)
        return [_out(self.obs, packed), reward, bool(terminated), bool(truncated), info]

    # worker side
    def step(self, env, auto_reset):
        """Steps ``env`` with the block's action, leaves the outcome in the block; returns info.
        The environment gets its own copy of the action, a float64 array (envs.base.CheckedAction
        checks one in a single numpy call), never a view of the memory the farm writes."""
        obs, reward, terminated, truncated, info, ended = step_env(env, self.action.copy(),
                                                                auto_reset)
        if ended is not None:
            self.terminal[:] = _flat(ended, self.terminal)
        self.obs[:] = _flat(obs, self.obs)
        # Element by element: numpy reading a tuple costs more than four plain stores.
        scalars = self.scalars
        scalars[0] = reward
        scalars[1] = terminated
        scalars[2] = truncated
        scalars[3] = ended is not None
        return plain(info) if info else None


def _flat(values, like):
    """``values`` as the block expects them: an array of ``like``'s shape is stored as it is."""
    if isinstance(values, np.ndarray) and values.shape == like.shape:
        return values
    return np.asarray(values, dtype=np.float64).ravel()


def _out(values, packed):
    return wire.pack(values.astype(np.float32)) if packed else values.tolist()


def step_env(env, action, auto_reset):
    """``env.step(action)``, typed, plus ``ended``: with ``auto_reset``, the last observation of an
    episode that ended here (``obs`` is then the next episode's first), else None. Reset here
    rather than in another round trip: the learner needs that first observation anyway."""
    obs, reward, terminated, truncated, info = env.step(action)
    terminated, truncated = bool(terminated), bool(truncated)
    ended = None
    if auto_reset and (terminated or truncated):
        ended, obs = obs, env.reset(None)
    return obs, float(reward), terminated, truncated, info, ended


def write_message(fd, payload):
    """Writes one framed message to the pipe ``fd`` (a blocking write may come back short for
    a large message: the rest follows)."""
    data = _FRAMED.get(payload) or _HEADER.pack(len(payload)) + payload
    while data:
        data = data[_retrying(os.write, fd, data):]


def read_message(fd):
    """Reads one framed message from the pipe ``fd``; EOFError when the other end closed it.
    Each end waits for an answer before it sends again, so the pipe never holds more than one
    message: a read of whatever is there cannot take the start of the next."""
    data = b''
    size = None
    while size is None or len(data) < size:
        chunk = _retrying(os.read, fd, _CHUNK if size is None else max(_CHUNK, size - len(data)))
        if not chunk:
            raise EOFError('the pipe was closed')
        data += chunk
        if size is None and len(data) >= _HEADER.size:
            size = _HEADER.size + _HEADER.unpack(data[:_HEADER.size])[0]
    return data[_HEADER.size:]


def _retrying(call, *args):
    """``call(*args)``, again when a signal interrupted it (Python 3 retries by itself; 2.7
    raises EINTR)."""
    while True:
        try:
            return call(*args)
        except (IOError, OSError) as e:
            if e.errno != errno.EINTR:
                raise


