"""What DDPG and SAC share: counters, keras-rl's single-env protocol on an explicit replay, files.

:class:`OffPolicyAgent` is a mixin placed before ``rl.core.Agent`` (or a subclass of it) in the
bases. The concrete agent provides:

- ``select_actions(obs_batch, explore, env_ids=None) -> (n, act_dim)`` actions in ``[-1, 1]``
  (``env_ids``: the vector indices of the rows when they are not all environments in order);
- ``train_once() -> list of metric values`` (one gradient update from ``self.memory``);
- ``reset_noise(indices)``; ``memory`` (:class:`agents.replay.TransitionReplay`), ``batch_size``,
  ``nb_steps_warmup`` (no updates before this many env steps), ``updates_per_step``,
  ``action_low`` / ``action_high``; ``weight_files(filepath)`` (suffix -> model) for
  save/load; ``_optimizers()`` (name -> (optimizer, the variables it trains)) and ``_rngs()``
  (name -> numpy ``RandomState``) for the training state; ``_acting_model()`` (the network
  that acts, for :meth:`OffPolicyAgent.save_policy`).

It provides keras-rl's ``forward``/``backward``, ``fit``/``test`` with keras-rl's pitfalls fixed,
the vectorized ``train_vec``/``evaluate_vec`` (delegated to the agent's own
:class:`agents.parallel.VecTrainer`, ``agent.trainer``, made at the first of them: it keeps the
episodes in flight between calls), and counters that are plain Python ints and continue across
calls: ``global_step`` (env steps trained on), ``episodes``, ``updates`` (gradient updates).
Warm-up happens once per agent, not once per ``fit`` call.

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

Files (``save_weights``/``load_weights``, ``save_policy``/``load_policy``, and for a full resume
``save_training_state``/``load_training_state``): the agent hands its models and state to
:mod:`agents.persistence`, which says where each file lives and what it holds.

What the learner sees, and what stays the environment's own:

- ``normalize_obs``: the networks take observations through :meth:`OffPolicyAgent.state_batch`,
  which normalizes them with running statistics (:class:`agents.normalize.RunningNorm`), for
  acting and for every update alike. The replay memory stores *raw* observations, so replayed
  states are normalized with the current statistics, as fresh ones are. The statistics learn
  from every observation the training loop receives (:meth:`OffPolicyAgent.observe`: reset
  observations, next states, terminal observations; agents/recording.py in both stepping modes,
  ``forward`` while training) and never while evaluating (``evaluate_vec``, ``test``,
  evaluate.py). They are written beside the weights (``<name>_obsnorm.npz``: a policy loaded by
  evaluate.py acts as it was trained; loading such a file switches normalization on) and in
  the training state.
- ``reward_scale`` / ``reward_offset``: the updates learn from ``reward_scale * (r +
  reward_offset)`` (:meth:`OffPolicyAgent.learning_rewards`, applied to each sampled batch; the
  replay memory keeps the environment's rewards, so a memory is never scaled twice). Returns,
  episode events, ``episodes.csv`` and evaluations are the environment's own rewards.
  On osim-rl's Arm2DEnv (reward ``1 - d^2`` per simulator step) ``reward_offset = -frame_skip``
  and ``reward_scale = 10`` give ``-10 d^2`` summed over the skipped frames: the differences
  between arm positions are then no longer small beside SAC's entropy bonus.
- ``reward_root``: the updates learn from ``-reward_scale * sqrt(max(0, -(r + reward_offset)))``
  instead: a squared penalty becomes a linear one. On Arm2DEnv (``reward_offset =
  -frame_skip``) that is ``reward_scale * sqrt(sum of d^2)``, about ``sqrt(frame_skip) *
  reward_scale * d``: its slope does not vanish near the target as ``d^2``'s does, which is
  what brings the hand from about 0.1 m to the target (README, "What the agents learn from").
"""
import logging
import os

import numpy as np
from rl.callbacks import Callback

from agents import persistence
from agents.normalize import RunningNorm

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

    def _init_off_policy(self, action_low, action_high, updates_per_step, seed=None,
                         normalize_obs=False, reward_scale=1.0, reward_offset=0.0,
                         reward_root=False):
        """``self.obs_dim`` must be set. ``normalize_obs``, ``reward_scale``, ``reward_offset``,
        ``reward_root``: see the module docstring."""
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
        self.normalize_obs = bool(normalize_obs)
        self.obs_norm = RunningNorm((self.obs_dim,))
        self.reward_scale = float(reward_scale)
        self.reward_offset = float(reward_offset)
        self.reward_root = bool(reward_root)
        self.warmup_rng = np.random.RandomState(seed)  # random actions during warm-up
        self._pending = None       # (s, a, r, terminal) waiting for its next state
        self._closing = False      # the last backward ended an episode
        self.trainer = None        # its VecTrainer (agents.parallel), made by _vec_trainer
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
        """A batch of observations as the networks take it: the processor's hook applied, then
        normalized with the current statistics when ``normalize_obs``."""
        if self.processor is not None:
            obs = self.processor.process_state_batch(obs)
        if self.normalize_obs:
            return self.obs_norm.normalize(obs)
        return np.asarray(obs, dtype=np.float32)

    def observe(self, obs):
        """Observations the training loop received (a batch, processed as stored): they update
        the normalization statistics, while training only."""
        if self.normalize_obs and self.training:
            obs = np.asarray(obs, dtype=np.float32)
            if len(obs):
                self.obs_norm.update(obs)

    def learning_rewards(self, rewards):
        """Sampled rewards as the updates learn from them: ``reward_scale * (r +
        reward_offset)``, or with ``reward_root`` ``-reward_scale * sqrt(max(0, -(r +
        reward_offset)))``."""
        rewards = np.asarray(rewards, dtype=np.float32)
        if self.reward_scale == 1.0 and self.reward_offset == 0.0 and not self.reward_root:
            return rewards
        shifted = rewards + np.float32(self.reward_offset)
        if self.reward_root:
            shifted = -np.sqrt(np.maximum(-shifted, np.float32(0.0)))
        return (np.float32(self.reward_scale) * shifted).astype(np.float32)

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
        self.observe(obs[None])
        action = self.select_actions(self.state_batch(obs[None]), explore=self.training)[0]
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
        if self.trainer is not None:
            self.trainer.forget()  # the vectorized env's episodes are not continued after this
        callbacks = list(callbacks or []) + [_TruncationWatcher(self, nb_max_episode_steps)]
        return super(OffPolicyAgent, self).fit(env, nb_steps, callbacks=callbacks,
                                               nb_max_episode_steps=nb_max_episode_steps,
                                               **kwargs)

    def test(self, env, nb_episodes=1, visualize=False, **kwargs):
        """keras-rl's ``test``, deterministic actions, without rendering by default."""
        self._pending, self._closing = None, False
        return super(OffPolicyAgent, self).test(env, nb_episodes=nb_episodes,
                                                visualize=visualize, **kwargs)

    # -- vectorized environments: the agent's VecTrainer steps them -------------------------------
    def train_vec(self, vec_env, nb_episodes=None, nb_steps=None, callback=None, stop=None,
                  seed=None, log_interval=None, mode=None):
        """Train on a vectorized env; see :meth:`agents.parallel.VecTrainer.train`."""
        return self._vec_trainer().train(vec_env, nb_episodes=nb_episodes, nb_steps=nb_steps,
                                         callback=callback, stop=stop, seed=seed,
                                         log_interval=log_interval, mode=mode)

    def evaluate_vec(self, vec_env, nb_episodes=10, seed=None):
        """Mean-return evaluation with deterministic actions; see
        :meth:`agents.parallel.VecTrainer.evaluate`."""
        return self._vec_trainer().evaluate(vec_env, nb_episodes=nb_episodes, seed=seed)

    def _vec_trainer(self):
        if self.trainer is None:
            # made (and imported) on first use: an agent that never steps a vectorized env
            # (keras-rl's fit/test, evaluate.py) needs none of the stepping modules
            from agents.parallel import VecTrainer
            self.trainer = VecTrainer(self)
        return self.trainer

    # -- weights and counters (files: agents/persistence.py) -----------------------------------
    def save_weights(self, filepath, overwrite=False):
        """Every model to ``<name>_<part><ext>`` (use ``.h5``), counters to ``<name>_state.json``.

        With ``overwrite=False`` an existing file raises ``FileExistsError`` (Keras would ask on
        stdin). Optimizer states, RNG states and the replay memory are
        :meth:`save_training_state`'s.
        """
        state = self.counters()
        state.update(self._extra_state())
        persistence.write_weights(filepath, self.weight_files(filepath), state,
                                  self.obs_norm if self.normalize_obs else None, overwrite)

    def load_weights(self, filepath):
        """Load what :meth:`save_weights` wrote; counters too when the state file exists."""
        if not self.compiled:
            raise RuntimeError('compile() the agent before load_weights (targets and the '
                               'temperature are created by compile)')
        persistence.read_weights(self.weight_files(filepath), self._optional_weight_file)
        self._after_load(filepath)
        self._load_norm(self.norm_file(filepath))
        state = persistence.read_state(filepath)
        if state is not None:
            for name in COUNTERS:
                setattr(self, name, int(state.get(name, 0)))
            self._load_extra_state(state)
        else:
            log.warning('%s not found: weights loaded, counters left as they were',
                        persistence.state_file(filepath))
        if self.trainer is not None:
            self.trainer.forget()

    norm_file = staticmethod(persistence.norm_file)
    training_files = staticmethod(persistence.training_files)
    _part_file = staticmethod(persistence.part_file)  # for weight_files

    def _load_norm(self, path):
        if os.path.exists(path):
            if not self.normalize_obs:
                log.info('%s: observation statistics found; the agent normalizes observations '
                         'with them, as it was trained', path)
            self.normalize_obs = True
            self.obs_norm.load(path)
        elif self.normalize_obs:
            log.warning('%s not found: the weights were saved without observation statistics; '
                        'they start afresh', path)
            self.obs_norm = RunningNorm((self.obs_dim,))

    # -- a policy on its own: what acting needs (bench/learn.py --export, evaluate.py) ---------
    POLICY_FILE = persistence.POLICY_FILE
    NORM_FILE = persistence.NORM_FILE

    def save_policy(self, folder):
        """The acting network's weights (``actor.h5``) and, when normalizing, the observation
        statistics (``obs_norm.npz``) into ``folder``; returns the files written."""
        return persistence.save_policy(folder, self._acting_model(),
                                       self.obs_norm if self.normalize_obs else None)

    def load_policy(self, folder):
        """What :meth:`save_policy` wrote: enough to act (evaluate.py), not to train on."""
        self.normalize_obs = persistence.load_policy(folder, self._acting_model(), self.obs_norm)

    # -- training state: optimizers, RNGs, replay memory (files: agents/persistence.py) --------
    def save_training_state(self, filepath, memory=True):
        """Optimizer and RNG states beside ``filepath``'s weights, and the replay memory when
        ``memory``; returns the files written."""
        arrays = {'update_credit': np.float64(self._update_credit)}
        arrays.update(persistence.optimizer_arrays(self._optimizers()))
        arrays.update(persistence.rng_arrays(self._rngs()))
        arrays.update(self._extra_arrays())
        arrays.update(persistence.norm_arrays(self.obs_norm, self.normalize_obs))
        return persistence.write_training_state(filepath, arrays,
                                                self.memory if memory else None)

    def load_training_state(self, filepath):
        """Load what :meth:`save_training_state` wrote beside ``filepath``. Returns a sentence
        for the user when something starts fresh (a checkpoint written before training states
        were saved, or without its memory), else None."""
        arrays = persistence.read_training_arrays(filepath)
        if arrays is None:  # written before checkpoints held the training state
            return persistence.start_fresh(filepath, self._optimizers(), self.memory)
        self._update_credit = float(arrays['update_credit'])
        persistence.set_optimizer_arrays(self._optimizers(), arrays)
        persistence.set_rng_arrays(self._rngs(), arrays)
        self._load_extra_arrays(arrays)
        normalize = persistence.set_norm_arrays(arrays, self.obs_norm)
        if normalize is not None:
            self.normalize_obs = normalize
        return persistence.read_memory(filepath, self.memory)

    # -- what the concrete agent may override (see the module docstring) -------------------------
    def _optimizers(self):
        return {}

    def _rngs(self):
        rngs = {'warmup': self.warmup_rng}
        if getattr(self.memory, 'rng', None) is not None:
            rngs['memory'] = self.memory.rng
        return rngs

    def _extra_arrays(self):
        return {}

    def _load_extra_arrays(self, arrays):
        pass

    def _optional_weight_file(self, path):
        return False

    def _after_load(self, filepath):
        pass

    def _extra_state(self):
        return {}

    def _load_extra_state(self, state):
        pass
