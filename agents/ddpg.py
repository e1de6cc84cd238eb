"""DDPG: keras-rl2's ``DDPGAgent``, extended only where parallel stepping needs it.

Importing this module imports ``rl.agents``, which switches TensorFlow to graph mode for the whole
process (``tf.compat.v1.disable_eager_execution()``); build the models after importing it.

What is keras-rl2's and unchanged: the networks' compilation (``compile``), the critic loss and the
policy gradient. What changes, and why:

- ``select_actions`` acts for N environments (or the ones in hand, asynchronously) in one
  ``predict_on_batch``; exploration noise is :class:`agents.noise.VectorNoise`, one independent
  process per environment that advances only when its environment acts (keras-rl's
  ``random_process`` holds a single state);
- transitions go to :class:`agents.replay.TransitionReplay` (explicit next states, correct for
  interleaved environments; ``SequentialMemory`` is not) and ``train_once`` feeds keras-rl's
  compiled functions from it;
- counters, warm-up and ``fit``/``test`` fixes come from :class:`agents.base.OffPolicyAgent`:
  Python-int counters that survive ``fit`` calls (keras-rl resets ``step`` to 0 in ``np.int16``,
  so warm-up repeated and updates stopped after 32,767 steps), ``test(visualize=False)``;
- the actor's tanh output is in ``[-1, 1]`` and rescaled to the action space's bounds;
- soft target updates run as their own step after the critic's and the actor's updates. keras-rl
  folds them into the training functions, where nothing orders the target's read of a network
  against that network's own update in the same ``session.run``: two runs from the same state
  drifted apart (actions 3e-5 apart after about 100 updates), so a resumed run could not equal an
  uninterrupted one;
- a checkpoint holds the target networks, both optimizers' states, the per-env noise (its RNG
  and processes) and the other RNGs (see :mod:`agents.base`).

``train_interval`` / ``memory_interval`` are replaced by ``updates_per_step``; every transition is
stored. Only single-input critics ``[obs, action]`` (as :mod:`agents.networks` builds) are
supported; observation windows are not (``window_length`` 1).
"""
import logging
import os

import numpy as np
from rl.agents.ddpg import DDPGAgent
from rl.util import get_soft_target_model_updates

from agents import networks
from agents.base import OffPolicyAgent
from agents.compat import adam, clone_optimizer, tf
from agents.noise import VectorNoise
from agents.replay import TransitionReplay

log = logging.getLogger(__name__)


class DDPG(OffPolicyAgent, DDPGAgent):
    """keras-rl2's DDPG with batched acting, per-env noise and an interleaving-safe replay."""

    def __init__(self, actor, critic, memory=None, action_low=-1.0, action_high=1.0, noise=None,
                 gamma=0.99, tau=0.005, batch_size=256, nb_steps_warmup=1000,
                 nb_steps_random=1000, updates_per_step=1.0, memory_limit=1000000, seed=None,
                 processor=None, normalize_obs=False, reward_scale=1.0, reward_offset=0.0,
                 reward_root=False,
                 **kwargs):
        """``tau`` is keras-rl's ``target_model_update`` (< 1: soft; >= 1: hard, every ``tau``
        updates). ``nb_steps_warmup``: env steps before the first update (keras-rl's critic and
        actor warm-ups). ``nb_steps_random``: env steps of uniform random actions first.
        ``noise``: a :class:`VectorNoise` (default Gaussian, sigma 0.1). ``normalize_obs``,
        ``reward_scale``, ``reward_offset``, ``reward_root``: see :mod:`agents.base`."""
        nb_actions = int(actor.outputs[0].shape[-1])
        self.obs_dim = int(actor.inputs[0].shape[-1])
        self._init_off_policy(np.broadcast_to(action_low, (nb_actions,)),
                              np.broadcast_to(action_high, (nb_actions,)),
                              updates_per_step, seed=seed, normalize_obs=normalize_obs,
                              reward_scale=reward_scale, reward_offset=reward_offset,
                              reward_root=reward_root)
        self.noise = noise if noise is not None else VectorNoise(nb_actions, 'gaussian', 0.1,
                                                                  seed=seed)
        if memory is None:
            memory = TransitionReplay(memory_limit, (self.obs_dim,), (nb_actions,), seed=seed)
        self.nb_steps_warmup = int(nb_steps_warmup)
        self.nb_steps_random = int(nb_steps_random)
        DDPGAgent.__init__(self, nb_actions, actor, critic, critic.inputs[1], memory,
                           gamma=gamma, batch_size=batch_size,
                           nb_steps_warmup_critic=nb_steps_warmup,
                           nb_steps_warmup_actor=nb_steps_warmup, random_process=None,
                           target_model_update=tau, processor=processor, **kwargs)

    @classmethod
    def from_spaces(cls, observation_space, action_space, hidden=networks.DEFAULT_HIDDEN,
                    **kwargs):
        """A DDPG with :mod:`agents.networks`' actor and critic sized for these Box spaces."""
        obs_dim = int(np.prod(observation_space.shape))
        act_dim = int(np.prod(action_space.shape))
        return cls(networks.actor(obs_dim, act_dim, hidden),
                   networks.critic(obs_dim, act_dim, hidden),
                   action_low=action_space.low, action_high=action_space.high, **kwargs)

    def compile(self, optimizer=None, metrics=None):
        """``optimizer``: None (Adam 1e-3 for actor and critic, as in the TD3 paper's DDPG), one
        legacy optimizer (cloned for the critic) or ``[actor_opt, critic_opt]``."""
        if optimizer is None:
            optimizer = [adam(1e-3), adam(1e-3)]
        elif not isinstance(optimizer, (list, tuple)):
            # keras-rl's own clone_optimizer goes through Keras' deserializer, which turns a
            # legacy optimizer into a new-style one (no get_updates).
            optimizer = [optimizer, clone_optimizer(optimizer)]
        # A fresh list: keras-rl appends its mean_q metric to the one it is given, and its
        # default is a shared mutable list.
        # keras-rl wraps the critic's in an AdditionalUpdatesOptimizer; the state (Adam's slots)
        # is the wrapped one's, so both are kept for checkpoints.
        self.actor_optimizer_state, self.critic_optimizer_state = optimizer
        tau = self.target_model_update
        if tau < 1:
            self.target_model_update = 1.0  # keras-rl then folds no target update in
        try:
            DDPGAgent.compile(self, optimizer, metrics=list(metrics or []))
        finally:
            self.target_model_update = tau
        self._soft_update = None
        if tau < 1:
            pairs = (get_soft_target_model_updates(self.target_critic, self.critic, tau)
                     + get_soft_target_model_updates(self.target_actor, self.actor, tau))
            self._soft_update = tf.group(*[target.assign(value) for target, value in pairs])

    # -- what the shared loop needs ------------------------------------------------------------
    def select_actions(self, obs, explore, env_ids=None):
        """Actions for a batch of environments: all of them in order (lockstep), or the ones
        ``env_ids`` names (asynchronous: each row's noise from its own environment's process)."""
        if explore and self.global_step < self.nb_steps_random:
            return self.random_actions(len(obs))
        actions = self.actor.predict_on_batch(np.asarray(obs, dtype=np.float32))
        if explore:
            noise = (self.noise.sample(len(obs)) if env_ids is None
                     else self.noise.sample_for(env_ids))
            actions = np.clip(actions + noise, -1.0, 1.0)
        return actions.astype(np.float32)

    def reset_noise(self, indices):
        self.noise.reset(indices)

    def reset_states(self):
        DDPGAgent.reset_states(self)
        self.noise.reset(None)

    def train_once(self):
        """One update with keras-rl's compiled critic and actor functions."""
        obs, actions, rewards, next_obs, terminals = self.memory.sample(self.batch_size)
        # raw in the memory: normalized with the current statistics, rewards scaled (agents/base)
        obs, next_obs = self.state_batch(obs), self.state_batch(next_obs)
        rewards = self.learning_rewards(rewards)
        idx = self.critic_action_input_idx

        def with_action(states, acts):
            inputs = [states]
            inputs.insert(idx, acts)
            return inputs

        target_actions = self.target_actor.predict_on_batch(next_obs)
        target_q = self.target_critic.predict_on_batch(
            with_action(next_obs, target_actions)).reshape(-1)
        targets = rewards + self.gamma * (1.0 - terminals) * target_q
        metrics = self.critic.train_on_batch(with_action(obs, actions), targets.reshape(-1, 1))
        self.actor_train_fn([obs])
        if self._soft_update is not None:
            tf.compat.v1.keras.backend.get_session().run(self._soft_update)
        elif (self.updates + 1) % self.target_model_update == 0:
            self.update_target_models_hard()
        return [float(m) for m in np.atleast_1d(metrics)]

    @property
    def metrics_names(self):
        # The critic's own metrics_names is empty until its first train_on_batch.
        names = ['critic_loss', 'mean_q']
        if self.processor is not None:
            names += self.processor.metrics_names[:]
        return names

    def weight_files(self, filepath):
        # keras-rl's file names, so plain DDPGAgent weights load here and vice versa; the targets
        # beside them, so that a resumed run continues with the targets it had.
        files = {self._part_file(filepath, 'actor'): self.actor,
                 self._part_file(filepath, 'critic'): self.critic}
        if self.compiled:
            files[self._part_file(filepath, 'target_actor')] = self.target_actor
            files[self._part_file(filepath, 'target_critic')] = self.target_critic
        return files

    def _acting_model(self):
        return self.actor

    def _optional_weight_file(self, path):
        return '_target_' in path  # keras-rl's files and older checkpoints have no targets

    def _after_load(self, filepath):
        if not os.path.exists(self._part_file(filepath, 'target_actor')):
            self.update_target_models_hard()

    # -- training state (see agents.base) ------------------------------------------------------
    def _optimizers(self):
        if not self.compiled:
            return {}
        return {'actor': (self.actor_optimizer_state, self.actor.trainable_weights),
                'critic': (self.critic_optimizer_state, self.critic.trainable_weights)}

    def _rngs(self):
        rngs = OffPolicyAgent._rngs(self)
        rngs['noise'] = self.noise.rng
        return rngs

    def _extra_arrays(self):
        return {'noise_state': np.asarray(self.noise.state)}

    def _load_extra_arrays(self, arrays):
        if 'noise_state' in arrays:
            self.noise.state = np.array(arrays['noise_state'])
