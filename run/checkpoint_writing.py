"""run/checkpoint_writing.py: writing a run's checkpoints so that a kill at any moment leaves the
previous one loadable, and pruning the old ones. Reading them, and the interface callers use
(``checkpoints.save`` is this module's :func:`save`), is run/checkpoints.py; the layout on disk,
run/checkpoint_layout.py.

Writing (:func:`save`): the agent writes all its files into
``checkpoints/.ep0000100.tmp-<pid>/``; every file and the folder are fsynced; the folder is
renamed to its final name (one atomic rename: a checkpoint is there whole or not at all); then
``checkpoint.json`` is replaced the same way (:func:`write_pointer`: temporary file, fsync,
``os.replace``). A name already taken gets a suffix (``ep0000100-2``): nothing whole is
overwritten. The next save removes leftovers of saves that were killed (``.tmp-<pid>`` of a
process that is gone) and all but the newest ``keep`` checkpoints (:func:`prune`).

The replay memory can be large (a million L2M transitions: 1.3 GB); ``save(..., memory=False)``
leaves it out. Pruning keeps one memory: once a checkpoint with its memory is written, the older
checkpoints kept lose theirs (they still load, with a fresh memory).

Public: :func:`save`, :func:`write_pointer`, :func:`prune`.

Host side; Python 3.6 compatible; imports no TensorFlow.
"""
import glob
import json
import logging
import os
import shutil
import time

from run.checkpoint_layout import FOLDER, POINTER, candidates_in, location

log = logging.getLogger('checkpoints')  # one logger for a run's checkpoints, written or read


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
    (never ``current``), and the replay memories of those kept when ``current`` holds one.
    Removal renames first, so a kill mid-removal leaves a leftover, not a checkpoint with files
    missing."""
    doomed = [(os.path.join(folder, entry), False) for entry in os.listdir(folder)
              if entry.startswith('.') and _leftover_of_dead_process(entry)]
    others = [location(base) for base in candidates_in(folder)]
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
