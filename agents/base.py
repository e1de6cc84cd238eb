"""What DDPG and SAC share: counters, keras-rl's single-env protocol on an explicit replay, weights.

:class:`OffPolicyAgent` is a mixin placed before ``rl.core.Agent`` (or a subclass of it) in the
bases. The concrete agent provides:

- ``select_actions(obs_batch, explore) -> (n, act_dim)`` actions in ``[-1, 1]``;
- ``train_once() -> list of metric values`` (one gradient update from ``self.memory``);
- ``reset_noise(indices)``; ``memory`` (:class:`agents.replay.TransitionReplay`), ``batch_size``,
  ``nb_steps_warmup`` (no updates before this many env steps), ``updates_per_step``,
  ``action_low`` / ``action_high``; ``_weight_files(filepath)`` (suffix -> model) for
  save/load.

It provides keras-rl's ``forward``/``backward``, ``fit``/``test`` with keras-rl's pitfalls fixed,
the vectorized ``train_vec``/``evaluate_vec`` (see :mod:`agents.parallel`), and counters that are
plain Python ints and continue across calls: ``global_step`` (env steps trained on), ``episodes``,
``updates`` (gradient updates). Warm-up happens once per agent, not once per ``fit`` call.

keras-rl pitfalls fixed here:

- ``Agent.fit`` restarts ``self.step`` at 0 and counts in ``np.int16`` (wraps after 32,767 steps
  under numpy 2): ``step`` is a property that stores a Python int, and warm-up and updates use
  ``global_step``, which ``fit`` never resets. (``fit``'s local episode counter is still
  ``np.int16``; it only labels callback logs.)
- ``test`` defaults to ``visualize=True`` (``env.render(mode='human')``): here ``False``.
- keras-rl passes only ``done`` to ``backward``, so a time limit looked like a true end. ``fit``
  adds a callback that reads ``info['TimeLimit.truncated']`` (see :mod:`agents.gym_adapter`) and
  ``nb_max_episode_steps``, so truncated episodes are bootstrapped.

Single-env protocol: keras-rl calls ``forward(o_t)``, ``backward(r_t, done)``; at the end of an
episode one more ``forward(o_last)``, ``backward(0, terminal=False)``. A transition is complete
when the next ``forward`` brings its next state; the extra ``backward`` after an episode end is
recognised and dropped, so no transition ever spans two episodes.
"""
import json
import logging
import os

import numpy as np
from rl.callbacks import Callback

from agents import parallel

log = logging.getLogger(__name__)

COUNTERS = ('global_step', 'episodes', 'updates')


class _TruncationWatcher(Callback):
    """Marks the pending transition non-terminal when its episode ended by a time limit."""

    def __init__(self, agent, nb_max_episode_steps):
        Callback.__init__(self)
        self.agent = agent
        self.nb_max_episode_steps = nb_max_episode_steps

    def on_step_end(self, step, logs=None):
        info = (logs or {}).get('info') or {}
        limit = self.nb_max_episode_steps
        truncated = bool(np.any(info.get('TimeLimit.truncated', False)))
        if limit and step >= limit - 1:
            truncated = True  # fit() forced done: a time limit, not a true end
        if truncated:
            self.agent._mark_pending_truncated()


class OffPolicyAgent(object):
    """Mixin; call :meth:`_init_off_policy` in ``__init__`` before the keras-rl base's."""

    def _init_off_policy(self, action_low, action_high, updates_per_step, seed=None):
        if not (np.all(np.isfinite(action_low)) and np.all(np.isfinite(action_high))):
            raise ValueError('the action space needs finite bounds (the networks act in [-1, 1] '
                             'and are rescaled to them); got %r, %r' % (action_low, action_high))
        self.global_step = 0
        self.episodes = 0
        self.updates = 0
        self.updates_per_step = float(updates_per_step)
        self.action_low = np.asarray(action_low, dtype=np.float32)
        self.action_high = np.asarray(action_high, dtype=np.float32)
        self._update_credit = 0.0
        self.warmup_rng = np.random.RandomState(seed)  # random actions during warm-up
        self._pending = None       # (s, a, r, terminal) waiting for its next state
        self._closing = False      # the last backward ended an episode
        self._vec_state = None     # see agents.parallel
        self.recent_observation = None
        self.recent_action = None

    # -- keras-rl's counter, as a Python int ------------------------------------------------
    @property
    def step(self):
        return self._call_step

    @step.setter
    def step(self, value):
        self._call_step = int(value)

    def counters(self):
        """The counters as a plain dict."""
        return dict((name, int(getattr(self, name))) for name in COUNTERS)

    # -- actions ------------------------------------------------------------------------------
    def to_env_action(self, actions):
        """Normalized ``[-1, 1]`` actions -> the environment's bounds."""
        actions = np.clip(actions, -1.0, 1.0)
        return self.action_low + (actions + 1.0) * 0.5 * (self.action_high - self.action_low)

    def random_actions(self, n):
        return self.warmup_rng.uniform(-1.0, 1.0, size=(n, self.nb_actions)).astype(np.float32)

    def state_batch(self, obs):
        """A batch of observations as the networks take it (the processor's hook applied)."""
        if self.processor is not None:
            obs = self.processor.process_state_batch(obs)
        return np.asarray(obs, dtype=np.float32)

    # -- learning -----------------------------------------------------------------------------
    def learn(self, n_env_steps):
        """Run the gradient updates owed for ``n_env_steps`` new env steps; last metrics or None.

        Updates start once ``global_step >= nb_steps_warmup`` and the memory holds a batch;
        ``updates_per_step`` may be fractional (credit carries over).
        """
        if self.global_step < self.nb_steps_warmup or len(self.memory) < self.batch_size:
            return None
        self._update_credit += n_env_steps * self.updates_per_step
        metrics = None
        while self._update_credit >= 1.0:
            metrics = self.train_once()
            self.updates += 1
            self._update_credit -= 1.0
        return metrics

    def _nan_metrics(self):
        return [np.nan] * len(self.metrics_names)

    # -- keras-rl single-environment protocol ---------------------------------------------------
    def forward(self, observation):
        obs = np.asarray(observation, dtype=np.float32)
        if self._pending is not None:
            s, a, r, terminal = self._pending
            self._pending = None
            if self.training:
                self.memory.append(s, a, r, obs, terminal)
        action = self.select_actions(obs[None], explore=self.training)[0]
        self.recent_observation = obs
        self.recent_action = action
        return self.to_env_action(action)

    def backward(self, reward, terminal=False):
        if self._closing:  # keras-rl's extra step after an episode: not a transition
            self._closing = False
            self._pending = None
            return self._nan_metrics()
        self._pending = (self.recent_observation, self.recent_action, float(reward),
                         bool(terminal))
        if terminal:
            self._closing = True
        if not self.training:
            return self._nan_metrics()
        self.global_step += 1
        if terminal:
            self.episodes += 1
            self.reset_noise([0])
        metrics = self.learn(1)
        if metrics is None:
            return self._nan_metrics()
        if self.processor is not None:
            metrics = list(metrics) + list(self.processor.metrics)
        return list(metrics)

    def _mark_pending_truncated(self):
        if self._pending is not None:
            s, a, r, _ = self._pending
            self._pending = (s, a, r, False)

    def fit(self, env, nb_steps, callbacks=None, nb_max_episode_steps=None, **kwargs):
        """keras-rl's ``fit`` (``nb_steps`` more steps), continuing the counters."""
        self._pending, self._closing = None, False
        self._vec_state = None  # the vectorized env's episodes are not continued after this
        callbacks = list(callbacks or []) + [_TruncationWatcher(self, nb_max_episode_steps)]
        return super(OffPolicyAgent, self).fit(env, nb_steps, callbacks=callbacks,
                                               nb_max_episode_steps=nb_max_episode_steps,
                                               **kwargs)

    def test(self, env, nb_episodes=1, visualize=False, **kwargs):
        """keras-rl's ``test``, deterministic actions, without rendering by default."""
        self._pending, self._closing = None, False
        return super(OffPolicyAgent, self).test(env, nb_episodes=nb_episodes,
                                                visualize=visualize, **kwargs)

    # -- vectorized environments ----------------------------------------------------------------
    def train_vec(self, vec_env, nb_episodes=None, nb_steps=None, callback=None, stop=None,
                  seed=None, log_interval=None):
        """Train on a vectorized env; see :func:`agents.parallel.train_vec`."""
        return parallel.train_vec(self, vec_env, nb_episodes=nb_episodes, nb_steps=nb_steps,
                                  callback=callback, stop=stop, seed=seed,
                                  log_interval=log_interval)

    def evaluate_vec(self, vec_env, nb_episodes=10, seed=None):
        """Mean-return evaluation with deterministic actions; see
        :func:`agents.parallel.evaluate_vec`."""
        return parallel.evaluate_vec(self, vec_env, nb_episodes=nb_episodes, seed=seed)

    # -- weights and counters ------------------------------------------------------------------
    def save_weights(self, filepath, overwrite=False):
        """Every model to ``<name>_<part><ext>`` (use ``.h5``), counters to ``<name>_state.json``.

        With ``overwrite=False`` an existing file raises ``FileExistsError`` (Keras would ask on
        stdin). Optimizer states and the replay memory are not saved.
        """
        files = self._weight_files(filepath)
        state_file = self._state_file(filepath)
        if not overwrite:
            for path in list(files) + [state_file]:
                if os.path.exists(path):
                    raise FileExistsError('%s exists; pass overwrite=True' % path)
        for path, model in files.items():
            model.save_weights(path, overwrite=True)
        state = self.counters()
        state.update(self._extra_state())
        with open(state_file, 'w') as f:
            json.dump(state, f, indent=1, sort_keys=True)

    def load_weights(self, filepath):
        """Load what :meth:`save_weights` wrote; counters too when the state file exists."""
        if not self.compiled:
            raise RuntimeError('compile() the agent before load_weights (targets and the '
                               'temperature are created by compile)')
        for path, model in self._weight_files(filepath).items():
            if os.path.exists(path) or not self._optional_weight_file(path):
                model.load_weights(path)
        self._after_load(filepath)
        state_file = self._state_file(filepath)
        if os.path.exists(state_file):
            with open(state_file) as f:
                state = json.load(f)
            for name in COUNTERS:
                setattr(self, name, int(state.get(name, 0)))
            self._load_extra_state(state)
        else:
            log.warning('%s not found: weights loaded, counters left as they were', state_file)
        self._vec_state = None

    @staticmethod
    def _state_file(filepath):
        return os.path.splitext(filepath)[0] + '_state.json'

    @staticmethod
    def _part_file(filepath, part):
        name, ext = os.path.splitext(filepath)
        return '%s_%s%s' % (name, part, ext)

    def _optional_weight_file(self, path):
        return False

    def _after_load(self, filepath):
        pass

    def _extra_state(self):
        return {}

    def _load_extra_state(self, state):
        pass
