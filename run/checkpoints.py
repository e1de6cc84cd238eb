"""run/checkpoints.py: a run's checkpoints, written so that a kill at any moment leaves the previous
one loadable, and loaded newest first, past damaged ones. This module is the interface callers use
(``checkpoints.save``, ``checkpoints.load``...) and holds the reading; writing is
run/checkpoint_writing.py's, the layout on disk run/checkpoint_layout.py's (one checkpoint: a
folder ``checkpoints/ep0000100/`` of weight, counter, training-state and replay-memory files;
``checkpoint.json`` beside it names the newest).

A checkpoint holds what continuing needs (see :mod:`agents.base`): a run loaded from it goes on
as if it had not stopped. The replay memory is stored compactly (agents/replay.py) but can still
be large; ``save(..., memory=False)`` leaves it out, and loading such a checkpoint (or one
written before training states were saved) says in one line what starts fresh.

Writing (:func:`save`, :func:`write_pointer`, :func:`prune`; run/checkpoint_writing.py): into a
temporary folder, fsynced, renamed whole; nothing whole is overwritten; old ones are pruned.

Loading (:func:`load`): the candidates of a run, newest written first. One whose state file is
not JSON, whose weight file does not open as HDF5 (a ``.npz`` as a zip), or that the agent fails
to load is reported in one line that names the file and why, and the next older one is tried;
with none left, :class:`errors.UserError` names the directory. ``checkpoint.json`` is for
people: loading does not need it (a kill between the folder's rename and the pointer's leaves it
one behind), and a damaged one is reported and ignored. Runs of earlier versions (flat files
``checkpoints/ep0000100_<part>.h5``) still load.

Public: writing :func:`save`, :func:`write_pointer`, :func:`prune`; finding :func:`candidates`,
:func:`find`, :func:`earlier_runs`, :func:`read_pointer`, :func:`run_dir_of`, :func:`location`;
loading :func:`load`, :func:`check`, :class:`Damaged`; the names :data:`FOLDER`,
:data:`POINTER`, :data:`COUNTERS`.

Host side; Python 3.6 compatible; imports no TensorFlow (h5py only to check a file, if present).
"""
import glob
import json
import logging
import os
import zipfile

from common.errors import UserError
from run.checkpoint_layout import (COUNTERS, FOLDER, POINTER, candidates_in, location,
                                   run_dir_of, written)
from run.checkpoint_writing import prune, save, write_pointer

# Names from run/checkpoint_layout.py and run/checkpoint_writing.py are part of this interface.
__all__ = ['COUNTERS', 'FOLDER', 'POINTER', 'Damaged', 'candidates', 'check', 'earlier_runs',
           'find', 'load', 'location', 'prune', 'read_pointer', 'run_dir_of', 'save',
           'write_pointer']

log = logging.getLogger('checkpoints')
_reported = set()  # damage already said, as (file, why)


class Damaged(Exception):
    """A checkpoint that cannot be loaded: ``path`` is the file at fault, ``why`` says how."""

    def __init__(self, path, why):
        Exception.__init__(self, '%s: %s' % (path, why))
        self.path, self.why = path, why


# --- finding -------------------------------------------------------------------------------------
def candidates(path):
    """Checkpoints at ``path``, newest written first, as the base paths ``load_weights`` takes
    (``.../ep0000100/ep0000100.h5``). A run directory or its checkpoints folder gives all of them;
    a checkpoint (its folder, its base or one of its files) gives itself."""
    path = os.path.normpath(path)
    if not os.path.exists(path) and not glob.glob(glob.escape(os.path.splitext(path)[0]) + '_*'):
        raise UserError('%s: no such file or directory; give a run directory or a checkpoint'
                        % path)
    if os.path.isdir(path):
        if os.path.isdir(os.path.join(path, FOLDER)) or os.path.exists(
                os.path.join(path, POINTER)):
            read_pointer(path)  # only to say so when it is damaged
            path = os.path.join(path, FOLDER)
        if os.path.basename(path) == FOLDER:
            return candidates_in(path) if os.path.isdir(path) else []
        if not _is_checkpoint_dir(path):
            return []
        states = glob.glob(os.path.join(glob.escape(path), '*_state.json'))
        stem = states[0][:-len('_state.json')] if states else os.path.join(
            path, os.path.basename(path))
        return [stem + '.h5']
    stem = os.path.splitext(path)[0]
    if stem.endswith('_state'):
        stem = stem[:-len('_state')]
    if not os.path.exists(stem + '_state.json') and '_' in os.path.basename(stem):
        stem = stem.rsplit('_', 1)[0]  # one part's file (ep0000100_policy.h5)
    return [stem + '.h5']


def read_pointer(run_dir):
    """``checkpoint.json`` as a dict, or None (missing, or damaged: said in one line)."""
    pointer = os.path.join(run_dir, POINTER)
    if not os.path.exists(pointer):
        return None
    try:
        with open(pointer) as f:
            data = json.load(f)
        if not isinstance(data, dict) or 'latest' not in data:
            raise ValueError('no "latest" entry')
        return data
    except (ValueError, OSError) as e:
        if (pointer, _short(e)) not in _reported:
            _reported.add((pointer, _short(e)))
            log.warning('%s is damaged (%s); ignored: the checkpoints themselves are looked at',
                        pointer, _short(e))
        return None


def _is_checkpoint_dir(path):
    return bool(glob.glob(os.path.join(glob.escape(path), '*.h5')) or glob.glob(
        os.path.join(glob.escape(path), '*_state.json')))


# --- loading -------------------------------------------------------------------------------------
def check(base):
    """Raise :class:`Damaged` unless ``base``'s state file is a JSON object of counters and each
    of its weight files opens as HDF5 (a file cut short does not)."""
    stem = os.path.splitext(base)[0]
    state = stem + '_state.json'
    try:
        with open(state) as f:
            data = json.load(f)
        if not isinstance(data, dict):
            raise ValueError('not a JSON object')
        for name in COUNTERS:
            int(data.get(name, 0))
    except (ValueError, TypeError, OSError) as e:
        raise Damaged(state, _short(e))
    parts = [p for p in glob.glob(glob.escape(stem) + '_*.h5')]
    if not parts:
        raise Damaged(base, 'no weight files (%s_*.h5)' % os.path.basename(stem))
    for archive in sorted(glob.glob(glob.escape(stem) + '_*.npz')):
        try:  # reads the zip's directory, at its end: a file cut short has none
            zipfile.ZipFile(archive).close()
        except (zipfile.BadZipFile, OSError) as e:
            raise Damaged(archive, _short(e))
    try:
        import h5py
    except ImportError:  # nothing to check with: the agent's load will say
        return data
    for part in sorted(parts):
        try:
            with h5py.File(part, 'r'):
                pass
        except Exception as e:  # h5py raises OSError, or others for odd files
            raise Damaged(part, _short(e))
    return data


def find(path):
    """The first checkpoint at ``path`` that passes :func:`check` (damaged ones said in one line
    each); :class:`errors.UserError` when there is none. Loads nothing: for checks before
    anything is started."""
    return _first(candidates(path), path, lambda base: None)


def load(agent, path):
    """Load into ``agent`` the newest checkpoint at ``path`` that loads (weights, counters and,
    where the checkpoint holds them, optimizer and RNG states and the replay memory); returns its
    base path. What starts fresh is said in one line."""
    notes = []

    def load_one(base):
        agent.load_weights(base)
        if hasattr(agent, 'load_training_state'):
            notes[:] = [agent.load_training_state(base)]

    base = _first(candidates(path), path, load_one)
    if notes and notes[0]:
        log.warning('%s', notes[0])
    return base


def _first(found, path, load_one):
    for i, base in enumerate(found):
        try:
            check(base)
        except Damaged as e:
            _say(e, 'damaged checkpoint', found, i)
            continue
        try:
            load_one(base)
            return base
        except Exception as e:  # whole files the agent refuses: other networks, another algo
            _say(Damaged(location(base), _short(e)), 'cannot load checkpoint', found, i)
    raise UserError('%s: no loadable checkpoint%s; give another run or checkpoint' % (
        path, ' (%d damaged or not for this agent, see above)' % len(found) if found else ''))


def _say(damaged, what, found, i):
    """One line per damaged checkpoint, once per process (start-up checks find them first)."""
    if (damaged.path, damaged.why) in _reported:
        return
    _reported.add((damaged.path, damaged.why))
    log.warning('%s: %s: %s%s', what, damaged.path, damaged.why,
                '; trying the next older one (%s)' % location(found[i + 1])
                if i + 1 < len(found) else '')


def _short(error):
    text = ' '.join(str(error).split()) or type(error).__name__
    return text if len(text) <= 200 else text[:197] + '...'


def earlier_runs(runs_folder, algo, env, exclude=None):
    """Run directories under ``runs_folder`` of ``algo`` on ``env`` (their config.json) that hold
    a checkpoint, the one written most recently first."""
    found = []
    for config in glob.glob(os.path.join(glob.escape(runs_folder), '*', 'config.json')):
        run = os.path.dirname(config)
        if exclude and os.path.abspath(run) == os.path.abspath(exclude):
            continue
        try:
            with open(config) as f:
                data = json.load(f)
        except (ValueError, OSError):
            continue
        if not isinstance(data, dict) or (data.get('algo'), data.get('env')) != (algo, env):
            continue
        folder = os.path.join(run, FOLDER)
        newest = candidates_in(folder) if os.path.isdir(folder) else []
        if newest:
            found.append((written(newest[0])[0], run))
    return [run for _, run in sorted(found, reverse=True)]
