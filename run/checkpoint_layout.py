"""run/checkpoint_layout.py: where a run's checkpoints lie on disk, as names and path functions that
touch nothing; shared by writing them (run/checkpoint_writing.py) and reading them
(run/checkpoints.py, the interface callers use, which re-exports what is public here).

Layout inside a run directory::

    checkpoints/ep0000100/ep0000100_<part>.h5      weights, one file per model (the agent's
    checkpoints/ep0000100/ep0000100_state.json     ``save_weights``), and its counters
    checkpoints/ep0000100/ep0000100_training.npz   optimizer and RNG states (the agent's
    checkpoints/ep0000100/ep0000100_memory.npz     ``save_training_state``), the replay memory
    checkpoint.json                                the newest checkpoint's name and counters

A checkpoint is named by its *base* path, the one ``load_weights`` takes
(``.../ep0000100/ep0000100.h5``). Runs of earlier versions (flat files
``checkpoints/ep0000100_<part>.h5``) are still found.

Public: :data:`FOLDER`, :data:`POINTER`, :data:`COUNTERS`, :func:`location`,
:func:`candidates_in`, :func:`written`, :func:`run_dir_of`.

Host side; Python 3.6 compatible; imports nothing of the project.
"""
import glob
import os

POINTER = 'checkpoint.json'
FOLDER = 'checkpoints'
COUNTERS = ('global_step', 'episodes', 'updates')


def location(base):
    """What a checkpoint occupies: its folder (named like its files), or (the flat layout of
    earlier versions) its base path."""
    folder = os.path.dirname(base)
    if os.path.basename(folder) == os.path.basename(os.path.splitext(base)[0]):
        return folder
    return base


def candidates_in(folder):
    """The checkpoints in a checkpoints ``folder`` (both layouts), as base paths, newest written
    first; leftovers of saves (names starting with a dot) are not checkpoints."""
    found = []
    for entry in os.listdir(folder):
        full = os.path.join(folder, entry)
        if entry.startswith('.'):
            continue
        if os.path.isdir(full):
            states = glob.glob(os.path.join(glob.escape(full), '*_state.json'))
            found.append(states[0][:-len('_state.json')] + '.h5' if states
                         else os.path.join(full, entry + '.h5'))
        elif entry.endswith('_state.json'):  # the flat layout of earlier versions
            found.append(full[:-len('_state.json')] + '.h5')
    return sorted(found, key=written, reverse=True)


def written(base):
    """When a checkpoint was written, as a sort key ``(mtime, base)``: its state file comes last
    (``save_weights``)."""
    stem = os.path.splitext(base)[0]
    for path in (stem + '_state.json', location(base)):
        try:
            return (os.path.getmtime(path), base)
        except OSError:
            continue
    return (0.0, base)


def run_dir_of(path):
    """The run directory ``path`` (a run, its checkpoints folder, a checkpoint or one of its
    files) belongs to, or None (a checkpoint saved elsewhere)."""
    path = os.path.abspath(path)
    if os.path.isdir(path) and (os.path.isdir(os.path.join(path, FOLDER)) or os.path.exists(
            os.path.join(path, POINTER))):
        return path
    for _ in range(3):
        if os.path.basename(path) == FOLDER:
            return os.path.dirname(path)
        path = os.path.dirname(path)
    return None
