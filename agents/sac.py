"""Soft Actor-Critic as a keras-rl ``Agent`` (Haarnoja et al. 2018, arXiv:1812.05905).

``SAC(policy, critic1, critic2, ...)``: the three Keras models are injected (build them with
:mod:`agents.networks`); target critics are cloned at ``compile``. The policy is a tanh-squashed
Gaussian; the temperature alpha is learned towards ``target_entropy`` (default ``-|A|``). Defaults
are the paper's: Adam 3e-4 for all three optimizers, gamma 0.99, tau 0.005, batch 256.

The whole keras-rl contract holds (``forward``, ``backward``, ``compile``, ``save_weights``,
``load_weights``, ``layers``, ``metrics_names``, callbacks, processors, ``fit``, ``test``), plus
``train_vec`` / ``evaluate_vec`` for vectorized environments (see :mod:`agents.base` and
:mod:`agents.parallel`). Actions are sampled while training and ``tanh(mean)`` otherwise; during
the first ``nb_steps_warmup`` env steps they are uniform and no update runs.

One gradient update is one fused TensorFlow call (critics, policy, temperature, target critics);
acting is one call for the whole batch of environments. Works in eager mode and in the graph mode
that importing ``rl.agents`` forces, whichever is current at ``compile`` (see
:mod:`agents.tf_function`).

The Gaussian noise of the policy's samples comes from a numpy ``RandomState`` of the agent's
(``noise_rng``), fed to both functions, not from TensorFlow's random ops: its state is saved in a
checkpoint (:meth:`agents.base.OffPolicyAgent.save_training_state`), so a resumed run draws the
same samples as one never stopped, in eager and in graph mode alike.
"""
import logging
import math
import os

import numpy as np
from rl.core import Agent

from agents import networks, sac_math
from agents.base import OffPolicyAgent
from agents import compat
from agents.compat import adam, clone_optimizer, keras, tf
from agents.replay import TransitionReplay
from agents.tf_function import NumpyFunction

log = logging.getLogger(__name__)


class SAC(OffPolicyAgent, Agent):
    """SAC with twin critics, target critics and automatic entropy temperature."""

    def __init__(self, policy, critic1, critic2, memory=None, action_low=-1.0, action_high=1.0,
                 gamma=0.99, tau=0.005, batch_size=256, nb_steps_warmup=1000,
                 updates_per_step=1.0, initial_alpha=1.0, target_entropy=None, learn_alpha=True,
                 memory_limit=1000000, seed=None, processor=None, normalize_obs=False,
                 reward_scale=1.0, reward_offset=0.0,
                 reward_root=False):
        """``normalize_obs``, ``reward_scale``, ``reward_offset``, ``reward_root``: see
        :mod:`agents.base`."""
        self.nb_actions = int(policy.outputs[0].shape[-1])
        self.obs_dim = int(policy.inputs[0].shape[-1])
        self._init_off_policy(np.broadcast_to(action_low, (self.nb_actions,)),
                              np.broadcast_to(action_high, (self.nb_actions,)),
                              updates_per_step, seed=seed, normalize_obs=normalize_obs,
                              reward_scale=reward_scale, reward_offset=reward_offset,
                              reward_root=reward_root)
        Agent.__init__(self, processor=processor)
        self.policy = policy
        self.critic1 = critic1
        self.critic2 = critic2
        self.gamma = float(gamma)
        self.tau = float(tau)
        self.batch_size = int(batch_size)
        self.nb_steps_warmup = int(nb_steps_warmup)
        self.initial_alpha = float(initial_alpha)
        self.learn_alpha = bool(learn_alpha)
        self.target_entropy = float(-self.nb_actions if target_entropy is None
                                    else target_entropy)
        if memory is None:
            memory = TransitionReplay(memory_limit, (self.obs_dim,), (self.nb_actions,),
                                      seed=seed)
        self.memory = memory
        # Its own stream, so that warm-up actions and replay sampling do not shift it.
        self.noise_rng = np.random.RandomState(None if seed is None else [int(seed), 1])
        self.compiled = False

    @classmethod
    def from_spaces(cls, observation_space, action_space, hidden=networks.DEFAULT_HIDDEN,
                    **kwargs):
        """A SAC with :mod:`agents.networks`' models sized for these gym Box spaces."""
        obs_dim = int(np.prod(observation_space.shape))
        act_dim = int(np.prod(action_space.shape))
        return cls(networks.gaussian_policy(obs_dim, act_dim, hidden),
                   networks.critic(obs_dim, act_dim, hidden, name='critic1'),
                   networks.critic(obs_dim, act_dim, hidden, name='critic2'),
                   action_low=action_space.low, action_high=action_space.high, **kwargs)

    def get_config(self):
        return {'gamma': self.gamma, 'tau': self.tau, 'batch_size': self.batch_size,
                'nb_steps_warmup': self.nb_steps_warmup, 'updates_per_step': self.updates_per_step,
                'initial_alpha': self.initial_alpha, 'target_entropy': self.target_entropy,
                'learn_alpha': self.learn_alpha, 'normalize_obs': self.normalize_obs,
                'reward_scale': self.reward_scale, 'reward_offset': self.reward_offset,
                'reward_root': self.reward_root,
                'memory': self.memory.get_config()}

    # -- compile: target critics, optimizers, the two TensorFlow functions ----------------------
    def compile(self, optimizer=None, metrics=None):
        """``optimizer``: None (three Adam 3e-4), one legacy optimizer (cloned for each part) or
        ``[policy_opt, critic_opt, alpha_opt]``. Extra Keras ``metrics`` are not supported."""
        if metrics:
            raise ValueError('SAC reports its own metrics (see metrics_names); got %r' % (metrics,))
        if optimizer is None:
            optimizers = [adam(3e-4), adam(3e-4), adam(3e-4)]
        elif isinstance(optimizer, (list, tuple)):
            if len(optimizer) != 3:
                raise ValueError('give 3 optimizers: policy, critics, temperature')
            optimizers = list(optimizer)
        else:
            optimizers = [optimizer, clone_optimizer(optimizer), clone_optimizer(optimizer)]
        self.policy_optimizer, self.critic_optimizer, self.alpha_optimizer = optimizers

        self.target_critic1 = self._clone(self.critic1)
        self.target_critic2 = self._clone(self.critic2)
        self.log_alpha = keras.backend.variable(math.log(self.initial_alpha), dtype='float32',
                                                name='log_alpha')
        obs_spec = ((None, self.obs_dim), tf.float32)
        act_spec = ((None, self.nb_actions), tf.float32)
        self._act_fn = NumpyFunction(self._act_graph, [obs_spec, act_spec], name='SAC.act')
        self._update_fn = NumpyFunction(
            self._update_graph,
            [obs_spec, act_spec, ((None,), tf.float32), obs_spec, ((None,), tf.float32),
             act_spec, act_spec], name='SAC.update')
        self.compiled = True

    @staticmethod
    def _clone(model):
        clone = compat.renamed_clone(model, 'target_' + model.name)
        clone.set_weights(model.get_weights())
        return clone

    def _sample(self, obs, noise):
        mean, log_std = self.policy(obs)
        return sac_math.squashed_sample(mean, log_std, noise)

    def _act_graph(self, obs, noise):
        mean, log_std = self.policy(obs)
        action, _ = sac_math.squashed_sample(mean, log_std, noise)
        return [tf.tanh(mean), action]

    def _update_graph(self, obs, actions, rewards, next_obs, terminals, next_noise, noise):
        alpha = tf.exp(self.log_alpha)
        # Critic targets, from the target critics and a fresh action of the current policy.
        next_actions, next_log_prob = self._sample(next_obs, next_noise)
        targets = tf.stop_gradient(sac_math.critic_target(
            rewards, terminals, self.gamma,
            tf.squeeze(self.target_critic1([next_obs, next_actions]), -1),
            tf.squeeze(self.target_critic2([next_obs, next_actions]), -1),
            next_log_prob, alpha))

        critic_vars = self.critic1.trainable_weights + self.critic2.trainable_weights
        with tf.GradientTape() as tape:
            q1 = tf.squeeze(self.critic1([obs, actions]), -1)
            q2 = tf.squeeze(self.critic2([obs, actions]), -1)
            critic_loss = (0.5 * tf.reduce_mean(tf.square(q1 - targets))
                           + 0.5 * tf.reduce_mean(tf.square(q2 - targets)))
        critic_grads = tape.gradient(critic_loss, critic_vars)

        # Policy: gradient w.r.t. the policy only; the critics are read, not trained, here.
        policy_vars = self.policy.trainable_weights
        with tf.GradientTape() as tape:
            new_actions, log_prob = self._sample(obs, noise)
            q_new = tf.minimum(tf.squeeze(self.critic1([obs, new_actions]), -1),
                               tf.squeeze(self.critic2([obs, new_actions]), -1))
            policy_loss = tf.reduce_mean(tf.stop_gradient(alpha) * log_prob - q_new)
        policy_grads = tape.gradient(policy_loss, policy_vars)

        with tf.GradientTape() as tape:
            alpha_loss = sac_math.temperature_loss(self.log_alpha, log_prob,
                                                   self.target_entropy)
        alpha_grads = tape.gradient(alpha_loss, [self.log_alpha])

        # Graph mode has no automatic control dependencies: every gradient is computed from the
        # same weights before any optimizer writes, and the targets move after the critics.
        computed = critic_grads + policy_grads + alpha_grads + [critic_loss, policy_loss]
        with tf.control_dependencies(computed):
            steps = [self.critic_optimizer.apply_gradients(zip(critic_grads, critic_vars)),
                     self.policy_optimizer.apply_gradients(zip(policy_grads, policy_vars))]
            if self.learn_alpha:
                steps.append(self.alpha_optimizer.apply_gradients(
                    zip(alpha_grads, [self.log_alpha])))
        with tf.control_dependencies(steps):
            moved = [target.assign(self.tau * source + (1.0 - self.tau) * target)
                     for model, target_model in ((self.critic1, self.target_critic1),
                                                 (self.critic2, self.target_critic2))
                     for source, target in zip(model.weights, target_model.weights)]
        with tf.control_dependencies(moved):
            return [tf.identity(critic_loss), tf.identity(policy_loss), tf.identity(alpha_loss),
                    tf.identity(alpha), tf.reduce_mean(tf.minimum(q1, q2)),
                    -tf.reduce_mean(log_prob)]

    # -- what the shared loop needs ------------------------------------------------------------
    def select_actions(self, obs, explore, env_ids=None):
        # env_ids: which environments these rows are (SAC's sampling needs no per-env state)
        if not self.compiled:
            raise RuntimeError('compile() the agent first')
        if explore and self.global_step < self.nb_steps_warmup:
            return self.random_actions(len(obs))
        obs = np.asarray(obs, dtype=np.float32)
        # Deterministic actions draw no noise: evaluating does not shift the training stream.
        noise = (self._noise(len(obs)) if explore
                 else np.zeros((len(obs), self.nb_actions), np.float32))
        deterministic, sampled = self._act_fn(obs, noise)
        return sampled if explore else deterministic

    def _noise(self, n):
        return self.noise_rng.standard_normal((n, self.nb_actions)).astype(np.float32)

    def train_once(self):
        obs, actions, rewards, next_obs, terminals = self.memory.sample(self.batch_size)
        # raw in the memory: normalized with the current statistics, rewards scaled (agents/base)
        obs, next_obs = self.state_batch(obs), self.state_batch(next_obs)
        rewards = self.learning_rewards(rewards)
        noise = self._noise(2 * len(obs))
        return [float(x) for x in self._update_fn(obs, actions, rewards, next_obs, terminals,
                                                   noise[:len(obs)], noise[len(obs):])]

    def reset_noise(self, indices):
        pass  # SAC explores by sampling its policy: no noise process to restart

    def reset_states(self):
        self.recent_observation = None
        self.recent_action = None

    @property
    def alpha(self):
        return float(np.exp(keras.backend.get_value(self.log_alpha)))

    # -- keras-rl contract ---------------------------------------------------------------------
    @property
    def layers(self):
        return self.policy.layers[:] + self.critic1.layers[:] + self.critic2.layers[:]

    @property
    def metrics_names(self):
        names = ['critic_loss', 'policy_loss', 'alpha_loss', 'alpha', 'mean_q', 'entropy']
        if self.processor is not None:
            names += self.processor.metrics_names[:]
        return names

    def weight_files(self, filepath):
        files = {self._part_file(filepath, 'policy'): self.policy,
                 self._part_file(filepath, 'critic1'): self.critic1,
                 self._part_file(filepath, 'critic2'): self.critic2}
        if self.compiled:
            files[self._part_file(filepath, 'target_critic1')] = self.target_critic1
            files[self._part_file(filepath, 'target_critic2')] = self.target_critic2
        return files

    def _acting_model(self):
        return self.policy

    def _optional_weight_file(self, path):
        return '_target_critic' in path  # older files: targets are then copied from the critics

    def _after_load(self, filepath):
        if self.compiled and not os.path.exists(self._part_file(filepath, 'target_critic1')):
            self.target_critic1.set_weights(self.critic1.get_weights())
            self.target_critic2.set_weights(self.critic2.get_weights())

    def _optimizers(self):
        if not self.compiled:
            return {}
        return {'policy': (self.policy_optimizer, self.policy.trainable_weights),
                'critic': (self.critic_optimizer,
                           self.critic1.trainable_weights + self.critic2.trainable_weights),
                'alpha': (self.alpha_optimizer, [self.log_alpha])}

    def _rngs(self):
        rngs = OffPolicyAgent._rngs(self)
        rngs['policy_noise'] = self.noise_rng
        return rngs

    def _extra_state(self):
        return {'log_alpha': float(keras.backend.get_value(self.log_alpha))
                if self.compiled else math.log(self.initial_alpha)}

    def _load_extra_state(self, state):
        if 'log_alpha' in state and self.compiled:
            keras.backend.set_value(self.log_alpha, state['log_alpha'])
