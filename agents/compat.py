"""The shims that let keras-rl2 1.0.5 run on TensorFlow 2.16+ (checked with 2.21 + tf-keras 2.21).

Import this module before anything that imports TensorFlow or ``rl``; every module in ``agents``
does so first. It exports ``tf``, ``keras`` (Keras 2, i.e. tf-keras) and :func:`adam`.

What broke, and the fix for each:

1. TensorFlow 2.16 made ``tf.keras`` Keras 3, which keras-rl2 cannot use (no ``get_updates``, no
   graph-mode ``K.function`` with updates). ``TF_USE_LEGACY_KERAS=1`` makes ``tf.keras`` the tf-keras
   package (Keras 2), but only if it is set before TensorFlow is first imported.
2. ``rl/callbacks.py`` does ``from tensorflow.keras import __version__``, which tf-keras no longer
   exports: we set it to TensorFlow's version before ``rl`` is imported.
3. keras-rl2's DDPG calls ``optimizer.get_updates``; the new Keras optimizers lack it (``'Adam'
   object has no attribute 'get_updates'``), so optimizers are ``tf.keras.optimizers.legacy.*``.

Not a shim but a warning: importing ``rl.agents`` runs ``tf.compat.v1.disable_eager_execution()``
for the whole process. See :mod:`agents.tf_function` for how the agents cope with both modes.

A quiet start: TensorFlow 2.18+ writes its native start-up lines (oneDNN, "Could not find cuda
drivers", absl's "All log messages before absl::InitializeLog()") straight to file descriptor 2
while its libraries load, before absl's logging is initialized, so ``TF_CPP_MIN_LOG_LEVEL`` does
not reach them. TensorFlow is therefore loaded, and its devices discovered, with descriptor 2
captured: the lines matching :data:`NATIVE_NOISE` (each known, none a user can act on) are
dropped, everything else is written back to stderr. ``TF_CPP_MIN_LOG_LEVEL`` defaults to 2 for
TensorFlow's later C++ lines, and one tf-keras warning is filtered by its text (both explained
where they are set). With DEBUG logging (``--verbose``) nothing is dropped or filtered.
"""
import contextlib
import logging
import os
import re
import sys
import tempfile
import warnings

# TensorFlow's native lines that say nothing a user of this project can act on, by source file
# and text (one alternative per kind of line, so a new or different line still shows).
NATIVE_NOISE = re.compile('|'.join([
    # absl's notice that logging was not initialized (printed once per TensorFlow library)
    r'WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR',
    # oneDNN's round-off notice: its results are as correct, only summed in another order
    r'port\.cc:\d+\] oneDNN custom operations are on',
    # a machine without an NVIDIA driver: the learner runs on the CPU, as it is meant to here
    r'cudart_stub\.cc:\d+\] Could not find cuda drivers',
    r'TF-TRT Warning: Could not find TensorRT',
    # CUDA builds that register their plugins twice (TF 2.15-2.17)
    r'Unable to register cu(DNN|FFT|BLAS) factory',
    r'computation placer already registered',
    # CPU instructions a source build could use: a matter of TensorFlow's build, not ours
    r'cpu_feature_guard\.cc:\d+\] This TensorFlow binary is optimized',
    r'^To enable the following instructions: .* rebuild TensorFlow',
]))
NO_DRIVER = re.compile(r'cudart_stub\.cc:\d+\] Could not find cuda drivers')
# cuInit failing is expected only where there is no driver at all; with one it is news
NO_DRIVER_FOLLOWUP = re.compile(r'cuda_platform\.cc:\d+\] failed call to cuInit')


def drop_native_noise(text):
    """``text`` (lines written to stderr) without TensorFlow's known start-up noise."""
    lines = text.splitlines(True)
    no_driver = any(NO_DRIVER.search(line) for line in lines)
    return ''.join(line for line in lines if not (
        NATIVE_NOISE.search(line) or (no_driver and NO_DRIVER_FOLLOWUP.search(line))))


@contextlib.contextmanager
def native_stderr_filtered(keep=drop_native_noise):
    """Within the block, what anything in the process writes to file descriptor 2 (C++ code
    included) is held back; at its end, ``keep(text)`` of it is written to stderr. With the root
    logger at DEBUG (``--verbose``) nothing is held back or dropped."""
    if logging.getLogger().isEnabledFor(logging.DEBUG):
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no stderr at all (closed, or a daemon's /dev/null): no filter
        yield
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = keep(capture.read().decode('utf-8', 'replace'))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()


if 'tensorflow' not in sys.modules:
    os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
    # TensorFlow's own C++ log (not absl's, above), below ERROR: its INFO lines are for
    # TensorFlow's developers, and its WARNINGs here are keras-rl2's graph mode tripping
    # c_api.cc ("Operation ... was changed by setting attribute after it was run by a session",
    # a dozen per DDPG model, during training, where no line filter can reach). --verbose: all.
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL',
                          '0' if logging.getLogger().isEnabledFor(logging.DEBUG) else '2')

with native_stderr_filtered():
    import tensorflow as tf  # noqa: E402
    import tensorflow.keras  # noqa: E402
    # Device discovery (lazy otherwise) writes the "failed call to cuInit" line: do it in here.
    tf.config.list_physical_devices()

# Python-side warnings a user of this project cannot act on, each filtered by its text and module:
# keras-rl2's DDPG trains a graph-mode Model (training_v1), which reads its own deprecated
# ``state_updates`` when it builds its train function: tf-keras warns about tf-keras.
if not logging.getLogger().isEnabledFor(logging.DEBUG):
    warnings.filterwarnings('ignore', message=r'`Model\.state_updates` will be removed',
                            category=UserWarning, module=r'tf_keras\.')

# Only TensorFlow 2.16+ can hand out Keras 3; before that tf.keras is Keras 2 (on TF 2.6, the
# `keras` 2.6 package: module keras.engine.training), which is what keras-rl2 wants.
_TF_VERSION = tuple(int(x) for x in tf.__version__.split('.')[:2])
if _TF_VERSION >= (2, 16) and not tf.keras.Model.__module__.startswith('tf_keras'):
    raise ImportError(
        'tf.keras is Keras 3 (%s), not tf-keras (Keras 2): TensorFlow was imported before '
        'agents.compat without TF_USE_LEGACY_KERAS=1. Import agents.compat first, or set '
        'TF_USE_LEGACY_KERAS=1 in the environment.' % (tf.keras.Model.__module__,))

if not hasattr(tensorflow.keras, '__version__'):
    tensorflow.keras.__version__ = tf.__version__

keras = tf.keras


def adam(learning_rate=3e-4, **kwargs):
    """A legacy Adam, the optimizer kind keras-rl2 (``get_updates``) and graph mode accept."""
    # optimizers.legacy exists from TF 2.9; before it (TF 2.6) the plain optimizers are those.
    optimizers = getattr(tf.keras.optimizers, 'legacy', tf.keras.optimizers)
    return optimizers.Adam(learning_rate=learning_rate, **kwargs)


def clone_optimizer(optimizer):
    """A fresh optimizer with the same configuration (each network needs its own slots)."""
    return optimizer.__class__.from_config(optimizer.get_config())


def create_optimizer_slots(optimizer, variables):
    """Makes a legacy optimizer's slot variables now. They are made at its first update, and a
    checkpoint's optimizer state must be loaded before that; tf-keras 2.21's legacy optimizers
    have no public call for it, so this uses their ``_create_all_weights`` (the one place)."""
    optimizer._create_all_weights(variables)


def renamed_clone(model, name):
    """A copy of ``model`` (same architecture, fresh weights) named ``name``. Keras models have
    no public setter for the name, which the weight files' layer lookup depends on: tf-keras
    reads ``_name``."""
    clone = keras.models.clone_model(model)
    clone._name = name
    return clone
