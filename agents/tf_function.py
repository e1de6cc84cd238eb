"""Numpy-in, numpy-out TensorFlow computations that work in eager and in graph mode.

Importing ``rl.agents`` switches the whole process to graph mode, so an agent cannot know which mode
it will run in. :class:`NumpyFunction` takes a Python function over tensors, builds it once in the
mode current at construction, and is then called with numpy arrays:

- eager mode: the function becomes a ``tf.function`` with a fixed input signature (one trace, one
  fused graph per call);
- graph mode: it is built once on placeholders in Keras' graph and run with Keras' session (the
  one the models' variables live in); variables it creates (optimizer slots) are initialized.

The mode must not change after construction; a call after ``rl.agents`` switched it raises a clear
error instead of TensorFlow's ``Tensor.op is meaningless when eager execution is enabled``.
Side effects inside ``fn`` must be ordered with ``tf.control_dependencies``: graph mode has no
automatic control dependencies.
"""
from agents.compat import tf


class NumpyFunction(object):
    """``fn(*tensors) -> list of tensors`` as a callable ``(*arrays) -> list of arrays``."""

    def __init__(self, fn, input_specs, name=None):
        """``input_specs``: list of ``(shape, dtype)``, ``None`` for the batch dimension."""
        self.eager = tf.executing_eagerly()
        self.name = name or getattr(fn, '__name__', 'fn')
        if self.eager:
            signature = [tf.TensorSpec(shape, dtype) for shape, dtype in input_specs]
            self._function = tf.function(fn, input_signature=signature)
            # Traced once, here; calling the concrete function skips tf.function's binding of
            # the arguments to its signature, a fixed ~0.2-0.3 ms a call (the acting pass runs
            # once per ready batch: at hundreds of environments, per env step it counts).
            self._concrete = self._function.get_concrete_function()
            self._dtypes = [dtype for _, dtype in input_specs]
        else:
            self._session = tf.compat.v1.keras.backend.get_session()
            with self._session.graph.as_default():
                self._inputs = [tf.compat.v1.placeholder(dtype, shape)
                                for shape, dtype in input_specs]
                self._outputs = list(fn(*self._inputs))
                _initialize_new_variables(self._session)

    def __call__(self, *arrays):
        if tf.executing_eagerly() != self.eager:
            raise RuntimeError(
                '%s was built in %s mode but TensorFlow is now in %s mode: something imported '
                'rl.agents (which disables eager execution process-wide) after this agent was '
                'compiled. Import rl.agents (or agents.ddpg) before building any model.'
                % (self.name, 'eager' if self.eager else 'graph',
                   'eager' if tf.executing_eagerly() else 'graph'))
        if self.eager:
            tensors = [tf.convert_to_tensor(a, dtype) for a, dtype in zip(arrays, self._dtypes)]
            return [out.numpy() for out in self._concrete(*tensors)]
        return self._session.run(self._outputs, feed_dict=dict(zip(self._inputs, arrays)))


def _initialize_new_variables(session):
    """Initialize what is still uninitialized, never touching weights the models already hold."""
    # Keras' get_session() initializes the variables Keras tracks (layers, legacy optimizers);
    # anything else created while building (a raw tf.Variable) is caught here.
    tf.compat.v1.keras.backend.get_session()
    names = session.run(tf.compat.v1.report_uninitialized_variables())
    if len(names):
        wanted = set(n.decode() if isinstance(n, bytes) else n for n in names)
        pending = [v for v in tf.compat.v1.global_variables() if v.op.name in wanted]
        session.run(tf.compat.v1.variables_initializer(pending))
