"""An agent's files: where each lives beside a weights path, what it holds, how it is written.

Plain functions over what they are handed (paths, Keras models, optimizers, numpy
``RandomState``s, a :class:`agents.normalize.RunningNorm`, a replay memory, plain dicts and
arrays); :class:`agents.base.OffPolicyAgent` composes them into its ``save_weights`` /
``load_weights``, ``save_policy`` / ``load_policy`` and ``save_training_state`` /
``load_training_state``, giving them its models and state. Beside ``<name>.h5``:

- ``<name>_<part>.h5``: each model's weights (:func:`part_file`; the agent names the parts);
- ``<name>_obsnorm.npz``: the observation statistics, when the agent normalizes
  (:func:`norm_file`); loading such a file switches normalization on;
- ``<name>_state.json``: the counters and the agent's extra plain state (SAC's temperature),
  written last (:func:`write_weights`), so a checkpoint whose state file exists is whole;
- ``<name>_training.npz`` (:func:`training_files`): every optimizer's state (legacy Keras
  optimizers: Adam's iteration count and slots, ``optimizer.<name>.<i>``), every numpy
  ``RandomState`` the agent owns (``rng.<name>.keys`` / ``.rest``: warm-up actions, replay
  sampling, SAC's policy noise, DDPG's per-env noise), the fractional update credit, the agent's
  extra arrays (DDPG's noise processes' states) and the observation statistics (``obs_norm.*``,
  ``normalize_obs``);
- ``<name>_memory.npz``: the replay memory (next states stored by reference, see
  :mod:`agents.replay`; optional, it can be gigabytes).

Full resume (``run/checkpoints.py`` calls ``save_training_state`` / ``load_training_state``
beside ``save_weights`` / ``load_weights``): the agents draw all their randomness from these
numpy generators (none from TensorFlow's), so a run saved and loaded continues exactly as if it
had not stopped, with one limit: episodes in flight are not continued (the vectorized env is a
new one after a restart; its first call resets it), so a run stopped between episodes resumes
bit for bit. (A keras-rl processor is the user's, and not saved.)

A policy on its own (``save_policy``: what acting needs, bench/learn.py ``--export``,
evaluate.py) is a folder with :data:`POLICY_FILE` (the acting network's weights) and, when the
agent normalizes, :data:`NORM_FILE`.
"""
import json
import os

import numpy as np

POLICY_FILE = 'actor.h5'
NORM_FILE = 'obs_norm.npz'


# -- where the files live -----------------------------------------------------------------------
def part_file(filepath, part):
    """``<name>_<part><ext>``: one model's weights beside ``filepath``."""
    name, ext = os.path.splitext(filepath)
    return '%s_%s%s' % (name, part, ext)


def state_file(filepath):
    """The counters' file beside the weights of ``filepath``."""
    return os.path.splitext(filepath)[0] + '_state.json'


def norm_file(filepath):
    """The observation statistics' file beside the weights of ``filepath``."""
    return os.path.splitext(filepath)[0] + '_obsnorm.npz'


def training_files(filepath):
    """``(training state file, replay memory file)`` beside the weights of ``filepath``."""
    stem = os.path.splitext(filepath)[0]
    return stem + '_training.npz', stem + '_memory.npz'


# -- weights and counters -----------------------------------------------------------------------
def write_weights(filepath, models, state, obs_norm=None, overwrite=False):
    """``models`` (``{path: Keras model}``), ``obs_norm`` (None when the agent does not
    normalize) and ``state`` (a JSON-able dict) beside ``filepath``, the state file last.

    With ``overwrite=False`` an existing file raises ``FileExistsError`` (Keras would ask on
    stdin).
    """
    state_path, norm_path = state_file(filepath), norm_file(filepath)
    if not overwrite:
        for path in list(models) + [state_path, norm_path]:
            if os.path.exists(path):
                raise FileExistsError('%s exists; pass overwrite=True' % path)
    for path, model in models.items():
        model.save_weights(path, overwrite=True)
    if obs_norm is not None:  # before the state file: a checkpoint's state file comes last
        obs_norm.save(norm_path)
    with open(state_path, 'w') as f:
        json.dump(state, f, indent=1, sort_keys=True)


def read_weights(models, optional):
    """Load every model of ``models`` (``{path: Keras model}``) whose file exists or is not
    ``optional(path)`` (a missing required file raises)."""
    for path, model in models.items():
        if os.path.exists(path) or not optional(path):
            model.load_weights(path)


def read_state(filepath):
    """The dict :func:`write_weights` wrote beside ``filepath``, or None when there is none."""
    path = state_file(filepath)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


# -- a policy on its own ------------------------------------------------------------------------
def save_policy(folder, model, obs_norm=None):
    """``model``'s weights (:data:`POLICY_FILE`) and ``obs_norm`` (:data:`NORM_FILE`; None
    when the agent does not normalize) into ``folder``; returns the files written."""
    if not os.path.isdir(folder):
        os.makedirs(folder)
    written = [os.path.join(folder, POLICY_FILE)]
    model.save_weights(written[0], overwrite=True)
    norm = os.path.join(folder, NORM_FILE)
    if obs_norm is not None:
        obs_norm.save(norm)
        written.append(norm)
    elif os.path.exists(norm):
        os.remove(norm)  # a stale one would switch normalization on at load
    return written


def load_policy(folder, model, obs_norm):
    """What :func:`save_policy` wrote into ``model`` and ``obs_norm``; returns whether the
    policy normalizes observations (its statistics were saved)."""
    model.load_weights(os.path.join(folder, POLICY_FILE))
    norm = os.path.join(folder, NORM_FILE)
    if os.path.exists(norm):
        obs_norm.load(norm)
        return True
    return False


# -- the training state: arrays by name ---------------------------------------------------------
def optimizer_arrays(optimizers):
    """``{'optimizer.<name>.<i>': array}`` of ``optimizers`` (name -> (optimizer, variables))."""
    arrays = {}
    for name, (optimizer, _) in optimizers.items():
        for i, value in enumerate(optimizer.get_weights() if optimizer.weights else []):
            arrays['optimizer.%s.%04d' % (name, i)] = value
    return arrays


def rng_arrays(rngs):
    """``{'rng.<name>.keys' / '.rest': array}`` of ``rngs`` (name -> numpy ``RandomState``)."""
    arrays = {}
    for name, rng in rngs.items():
        kind, keys, pos, has_gauss, gauss = rng.get_state()
        arrays['rng.%s.keys' % name] = keys
        arrays['rng.%s.rest' % name] = np.array([pos, has_gauss, gauss], dtype=np.float64)
    return arrays


def norm_arrays(obs_norm, normalize_obs):
    """``{'obs_norm.<key>': array, 'normalize_obs': bool}``."""
    arrays = dict(('obs_norm.' + key, value) for key, value in obs_norm.state().items())
    arrays['normalize_obs'] = np.bool_(normalize_obs)
    return arrays


def set_optimizer_arrays(optimizers, arrays):
    """The inverse of :func:`optimizer_arrays` (an optimizer absent from ``arrays`` is reset)."""
    for name, (optimizer, variables) in optimizers.items():
        prefix = 'optimizer.%s.' % name
        values = [arrays[key] for key in sorted(arrays) if key.startswith(prefix)]
        if values and not optimizer.weights:
            # Slots are made at the first update (eager mode): make them now to fill them.
            from agents import compat  # (TensorFlow: imported where it is needed)
            compat.create_optimizer_slots(optimizer, variables)
        if values or optimizer.weights:
            optimizer.set_weights(values or [np.zeros_like(w) for w in optimizer.get_weights()])


def set_rng_arrays(rngs, arrays):
    """The inverse of :func:`rng_arrays`."""
    for name, rng in rngs.items():
        pos, has_gauss, gauss = arrays['rng.%s.rest' % name]
        rng.set_state(('MT19937', arrays['rng.%s.keys' % name], int(pos), int(has_gauss),
                       float(gauss)))


def set_norm_arrays(arrays, obs_norm):
    """The inverse of :func:`norm_arrays`, into ``obs_norm``: whether to normalize, or None when
    ``arrays`` hold no statistics (written before they were saved)."""
    if 'obs_norm.mean' not in arrays:
        return None
    obs_norm.set_state(dict((key[len('obs_norm.'):], value) for key, value in arrays.items()
                            if key.startswith('obs_norm.')))
    return bool(arrays['normalize_obs'])


# -- the training state's files -----------------------------------------------------------------
def write_training_state(filepath, arrays, memory=None):
    """``arrays`` (name -> numpy array) beside ``filepath``'s weights, and ``memory`` (a replay
    memory; None: not saved); returns the files written."""
    training_file, memory_file = training_files(filepath)
    np.savez(training_file, **arrays)
    written = [training_file]
    if memory is not None:
        memory.save(memory_file)
        written.append(memory_file)
    return written


def read_training_arrays(filepath):
    """The arrays :func:`write_training_state` wrote beside ``filepath``, or None when there
    are none (a checkpoint written before training states were saved)."""
    training_file = training_files(filepath)[0]
    if not os.path.exists(training_file):
        return None
    with np.load(training_file) as data:
        return dict((key, data[key]) for key in data.files)


def start_fresh(filepath, optimizers, memory):
    """For weights without a training state beside them (written before checkpoints held one):
    every optimizer of ``optimizers`` as a fresh one holds it (no steps, zero moments) and
    ``memory`` empty; returns a sentence for the user."""
    for optimizer, _ in optimizers.values():
        if optimizer.weights:
            optimizer.set_weights([np.zeros_like(w) for w in optimizer.get_weights()])
    memory.clear()
    return ('%s holds weights and counters only (written before checkpoints held the '
            'training state): the replay memory and optimizer states start fresh'
            % os.path.dirname(os.path.abspath(filepath)))


def read_memory(filepath, memory):
    """The replay memory saved beside ``filepath`` into ``memory``; None, or when there is none
    (``memory`` is emptied) a sentence for the user."""
    memory_file = training_files(filepath)[1]
    if os.path.exists(memory_file):
        memory.load(memory_file)
        return None
    memory.clear()
    return ('%s was saved without its replay memory: the memory starts empty and updates '
            'resume once it holds a batch' % os.path.dirname(os.path.abspath(filepath)))
