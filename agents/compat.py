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
"""
import os
import sys

if 'tensorflow' not in sys.modules:
    os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')

import tensorflow as tf  # noqa: E402
import tensorflow.keras  # noqa: E402

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
