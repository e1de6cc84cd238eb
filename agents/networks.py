"""Keras model builders shared by DDPG and SAC. The agents never choose architectures; these do.

Every model takes flat observation vectors ``(batch, obs_dim)`` (no keras-rl window dimension:
the replay stores single observations) and works in the *normalized* action space ``[-1, 1]``;
the agents rescale to the environment's bounds.

- :func:`actor`: ``obs -> tanh action`` (DDPG's deterministic policy).
- :func:`critic`: ``[obs, action] -> Q`` (inputs in that order; DDPG needs ``critic.inputs[1]``).
- :func:`gaussian_policy`: ``obs -> [mean, log_std]`` of the pre-tanh Gaussian (SAC's policy;
  the agent clips ``log_std`` and squashes).

Defaults are the SAC paper's: two hidden layers of 256 ReLU units. Build models after importing
``rl.agents`` when graph mode is wanted (see :mod:`agents.compat`).
"""
from agents.compat import keras

DEFAULT_HIDDEN = (256, 256)


def _trunk(x, hidden, activation, name):
    for i, units in enumerate(hidden):
        x = keras.layers.Dense(units, activation=activation, name='%s_h%d' % (name, i))(x)
    return x


def actor(obs_dim, act_dim, hidden=DEFAULT_HIDDEN, activation='relu', name='actor'):
    """Deterministic policy: observation -> action in [-1, 1]."""
    obs = keras.Input(shape=(obs_dim,), name='%s_obs' % name)
    h = _trunk(obs, hidden, activation, name)
    # Small final weights keep the first actions near 0 instead of saturating tanh (DDPG paper 7).
    init = keras.initializers.RandomUniform(-3e-3, 3e-3)
    out = keras.layers.Dense(act_dim, activation='tanh', kernel_initializer=init,
                             name='%s_out' % name)(h)
    return keras.Model(obs, out, name=name)


def critic(obs_dim, act_dim, hidden=DEFAULT_HIDDEN, activation='relu', name='critic'):
    """Q function: [observation, action] -> scalar Q (inputs in this order)."""
    obs = keras.Input(shape=(obs_dim,), name='%s_obs' % name)
    act = keras.Input(shape=(act_dim,), name='%s_act' % name)
    h = keras.layers.Concatenate(name='%s_concat' % name)([obs, act])
    h = _trunk(h, hidden, activation, name)
    q = keras.layers.Dense(1, name='%s_q' % name)(h)
    return keras.Model([obs, act], q, name=name)


def gaussian_policy(obs_dim, act_dim, hidden=DEFAULT_HIDDEN, activation='relu',
                    name='policy'):
    """Stochastic policy: observation -> [mean, log_std], each (batch, act_dim), before tanh."""
    obs = keras.Input(shape=(obs_dim,), name='%s_obs' % name)
    h = _trunk(obs, hidden, activation, name)
    mean = keras.layers.Dense(act_dim, name='%s_mean' % name)(h)
    log_std = keras.layers.Dense(act_dim, name='%s_log_std' % name)(h)
    return keras.Model(obs, [mean, log_std], name=name)
