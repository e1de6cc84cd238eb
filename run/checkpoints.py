"""run/checkpoints.py: a run's checkpoints, written so that a kill at any moment leaves the previous
one loadable, and loaded newest first, past damaged ones.

Layout inside a run directory::

    checkpoints/ep0000100/ep0000100_<part>.h5      weights, one file per model (the agent's
    checkpoints/ep0000100/ep0000100_state.json     ``save_weights``), and its counters
    checkpoints/ep0000100/ep0000100_training.npz   optimizer and RNG states (the agent's
    checkpoints/ep0000100/ep0000100_memory.npz     ``save_training_state``), the replay memory
    checkpoint.json                                the newest checkpoint's name and counters

A checkpoint holds what continuing needs (see :mod:`agents.base`): a run loaded from it goes on
as if it had not stopped. The replay memory is stored compactly (agents/replay.py) but can still
be large (a million L2M transitions: 1.3 GB); ``save(..., memory=False)`` leaves it out, and
loading such a checkpoint (or one written before training states were saved) says in one line
what starts fresh. Pruning keeps one memory: once a checkpoint with its memory is written, the
older checkpoints kept lose theirs (they still load, with a fresh memory).

Writing (:func:`save`): the agent writes all its files into
``checkpoints/.ep0000100.tmp-<pid>/``; every file and the folder are fsynced; the folder is
renamed to its final name (one atomic rename: a checkpoint is there whole or not at all); then ``checkpoint.json`` is replaced the same way
(temporary file, fsync, ``os.replace``). A name already taken gets a suffix (``ep0000100-2``):
nothing whole is overwritten. The next save removes leftovers of saves that were killed
(``.tmp-<pid>`` of a process that is gone) and all but the newest ``keep`` checkpoints.

Loading (:func:`load`): the candidates of a run, newest written first. One whose state file is
not JSON, whose weight file does not open as HDF5 (a ``.npz`` as a zip), or that the agent fails
to load is reported in one line that names the file and why, and the next older one is tried; with none left,
:class:`errors.UserError` names the directory. ``checkpoint.json`` is for people: loading does
not need it (a kill between the folder's rename and the pointer's leaves it one behind), and a
damaged one is reported and ignored. Runs of earlier versions (flat files
``checkpoints/ep0000100_<part>.h5``) still load.

Host side; Python 3.6 compatible; imports no TensorFlow (h5py only to check a file, if present).
"""
import glob
import json
import logging
import os
import shutil
import time
import zipfile

from common.errors import UserError

log = logging.getLogger('checkpoints')

POINTER = 'checkpoint.json'
FOLDER = 'checkpoints'
COUNTERS = ('global_step', 'episodes', 'updates')
_reported = set()  # damage already said, as (file, why)


class Damaged(Exception):
    """A checkpoint that cannot be loaded: ``path`` is the file at fault, ``why`` says how."""

    def __init__(self, path, why):
        Exception.__init__(self, '%s: %s' % (path, why))
        self.path, self.why = path, why


# --- writing -------------------------------------------------------------------------------------
def save(agent, folder, name, keep=None, memory=None):
    """Write ``agent``'s checkpoint as ``folder/<name>`` (or ``<name>-2``... when taken), whole or
    not at all; then, when ``keep``, prune ``folder`` to the newest ``keep``. ``memory``: whether
    the replay memory goes in (None: the agent's ``save_memory``, default True). Returns the
    checkpoint's folder; its size is logged."""
    if memory is None:
        memory = getattr(agent, 'save_memory', True)
    started = time.time()
    os.makedirs(folder, exist_ok=True)
    final = _free_name(folder, name)
    tmp = os.path.join(folder, '.%s.tmp-%d' % (final, os.getpid()))
    if os.path.exists(tmp):
        shutil.rmtree(tmp)  # our own leftover: a save of this process that raised
    os.mkdir(tmp)
    agent.save_weights(os.path.join(tmp, final + '.h5'), overwrite=True)
    if hasattr(agent, 'save_training_state'):
        agent.save_training_state(os.path.join(tmp, final + '.h5'), memory=memory)
    for entry in os.listdir(tmp):
        _fsync(os.path.join(tmp, entry))
    _fsync(tmp)
    sizes = _sizes(tmp, len(agent.memory) if memory and hasattr(agent, 'memory') else None)
    path = os.path.join(folder, final)
    os.rename(tmp, path)
    _fsync(folder)
    log.info('checkpoint %s: %s in %.1f s', path, sizes, time.time() - started)
    if keep:
        prune(folder, keep, current=path)
    return path


def _sizes(folder, transitions=None):
    """'weights 3.3 MB, training state 3.9 MB, replay memory of 1000 transitions 2.1 MB'."""
    kinds = ('weights', 'training state', 'replay memory')
    total = dict.fromkeys(kinds, 0)
    for entry in os.listdir(folder):
        kind = ('replay memory' if entry.endswith('_memory.npz') else 'training state'
                if entry.endswith('_training.npz') else 'weights')
        total[kind] += os.path.getsize(os.path.join(folder, entry))
    parts = ['%s %s' % (kind, _mb(total[kind])) for kind in kinds[:2] if total[kind]]
    if total['replay memory']:
        parts.append('replay memory of %s transitions %s' % (
            '?' if transitions is None else transitions, _mb(total['replay memory'])))
    else:
        parts.append('no replay memory')
    return ', '.join(parts)


def _mb(size):
    return '%.1f MB' % (size / 1e6) if size >= 1e5 else '%.0f kB' % (size / 1e3)


def write_pointer(run_dir, checkpoint, counters):
    """``run_dir/checkpoint.json`` names ``checkpoint`` (replaced atomically)."""
    latest = os.path.relpath(checkpoint, os.path.join(run_dir, FOLDER))
    for entry in os.listdir(run_dir):  # pointers of saves that were killed mid-write
        if entry.startswith(POINTER + '.') and _leftover_of_dead_process(entry):
            os.remove(os.path.join(run_dir, entry))
    _write_json(os.path.join(run_dir, POINTER), dict(counters, latest=latest))


def prune(folder, keep, current=None):
    """Remove leftovers of killed saves, all but the newest ``keep`` checkpoints of ``folder``
    (never ``current``), and the replay memories of those kept when ``current`` holds one. Removal renames first, so a kill mid-removal leaves a
    leftover, not a checkpoint with files missing."""
    doomed = [(os.path.join(folder, entry), False) for entry in os.listdir(folder)
              if entry.startswith('.') and _leftover_of_dead_process(entry)]
    others = [location(base) for base in _candidates_in(folder)]
    others = [where for where in others
              if not (current and os.path.abspath(where) == os.path.abspath(current))]
    doomed += [(where, True) for where in others[max(1, keep) - 1:]]
    if current and glob.glob(os.path.join(glob.escape(current), '*_memory.npz')):
        # One replay memory is enough (each can be gigabytes): the newest checkpoint's.
        doomed += [(memory, False) for where in others[:max(1, keep) - 1] if os.path.isdir(where)
                   for memory in glob.glob(os.path.join(glob.escape(where), '*_memory.npz'))]
    for where, rename in doomed:
        try:
            _remove(where, rename)
        except OSError as e:  # the checkpoint is written; a later save tries again
            log.warning('could not remove the old checkpoint %s: %s', where, e)


def _free_name(folder, name):
    taken, n = name, 1
    while os.path.exists(os.path.join(folder, taken)):
        n += 1
        taken = '%s-%d' % (name, n)
    return taken


def _leftover_of_dead_process(entry):
    for mark in ('.tmp-', '.trash-'):
        if mark in entry:
            pid = entry.rsplit(mark, 1)[1]
            if not pid.isdigit():
                return True
            if int(pid) == os.getpid():
                return True  # a save of ours that raised; the current one is renamed already
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                return True
            except OSError:
                return False  # alive (another user's process): it may be writing now
            return False
    return False


def _remove(path, rename=True):
    if os.path.isdir(path):
        if rename:
            trash = os.path.join(os.path.dirname(path),
                                 '.%s.trash-%d' % (os.path.basename(path), os.getpid()))
            os.rename(path, trash)
            path = trash
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.isfile(path):  # one file of a checkpoint (its replay memory)
        os.remove(path)
    else:  # a checkpoint of the flat layout: its files
        stem = os.path.splitext(path)[0]
        for part in glob.glob(glob.escape(stem) + '_*'):
            os.remove(part)


def _write_json(path, data):
    tmp = '%s.tmp-%d' % (path, os.getpid())
    with open(tmp, 'w') as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync(os.path.dirname(os.path.abspath(path)))


def _fsync(path):
    """Flush a file's or a folder's entries to disk (folders: not possible everywhere)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --- finding -------------------------------------------------------------------------------------
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
            return _candidates_in(path) if os.path.isdir(path) else []
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


def _candidates_in(folder):
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
    return sorted(found, key=_written, reverse=True)


def _written(base):
    """When a checkpoint was written: its state file comes last (``save_weights``)."""
    stem = os.path.splitext(base)[0]
    for path in (stem + '_state.json', location(base)):
        try:
            return (os.path.getmtime(path), base)
        except OSError:
            continue
    return (0.0, base)


def location(base):
    """What a checkpoint occupies: its folder (named like its files), or (the flat layout of
    earlier versions) its base path."""
    folder = os.path.dirname(base)
    if os.path.basename(folder) == os.path.basename(os.path.splitext(base)[0]):
        return folder
    return base


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
        newest = _candidates_in(folder) if os.path.isdir(folder) else []
        if newest:
            found.append((_written(newest[0])[0], run))
    return [run for _, run in sorted(found, reverse=True)]
