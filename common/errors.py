"""common/errors.py: the errors a user of the learning side can fix, shown as one line with no traceback.

Host side; Python 3.6 compatible; imports nothing heavy (``--help`` and the farm list are checked
before TensorFlow or any farm starts).

Everything raised as a :class:`UserError` (or a subclass) reaches the user of ``train_*.py``,
``farmer.py`` and ``bench/*.py`` as ``<program>: <message>`` on stderr and a non-zero exit (see
:func:`install_excepthook`); ``--verbose`` shows the traceback as well. A message says what is
wrong, where (file, entry, flag, farm), and what to do.
"""
import os
import sys


class UserError(Exception):
    """Something the user can fix: a flag, the farm list, a key, a file."""


class FarmListError(UserError):
    """An entry of farmlist.py (or ``--farms``) is malformed or duplicated."""


class NoFarmError(UserError):
    """No farm of the list answered (unreachable, wrong key, not started)."""


class NoCapacityError(UserError):
    """The farms that answer do not have the free capacity asked for."""


class FarmsLostError(UserError):
    """Every farm stopped answering for longer than the learner's ``--give-up-after``."""


class CallOrderError(UserError, RuntimeError):
    """A vectorized env was called out of order (see vecenv/contract.py's two stepping modes)."""


class PendingError(CallOrderError):
    """A call while another is pending: ``step_async`` twice, ``send`` to an environment still
    in flight, a lockstep call while asynchronous results are outstanding."""


class NothingPendingError(CallOrderError):
    """A wait with nothing pending: ``step_wait`` without ``step_async``, ``recv`` with no
    environment in flight."""


class ProtocolMismatchError(UserError):
    """A farm speaks another version of the farm protocol than this learner (protocol.PROTOCOL)."""


def install_excepthook(verbose=False, program=None):
    """Show a :class:`UserError` as one line (no traceback unless ``verbose``); others as usual."""
    program = program or os.path.basename(sys.argv[0] or 'python')
    previous = sys.excepthook

    def hook(kind, error, tb):
        if issubclass(kind, UserError) and not verbose:
            sys.stderr.write('%s: %s\n' % (program, error))
            sys.stderr.flush()
        else:
            previous(kind, error, tb)

    sys.excepthook = hook
    return hook
