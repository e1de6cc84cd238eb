"""Keras-RL agents that train on a vectorized environment (``vecenv/contract.py``'s contract).

Nothing is imported here: ``agents.ddpg`` imports ``rl.agents``, which switches TensorFlow to graph
mode for the whole process, and importing it must stay a deliberate choice. Modules:

- ``compat``: the keras-rl2-on-modern-TensorFlow shims (import first);
- ``networks``: Keras model builders shared by DDPG and SAC;
- ``sac`` (:class:`agents.sac.SAC`) and ``sac_math``: Soft Actor-Critic as a keras-rl Agent;
- ``ddpg`` (:class:`agents.ddpg.DDPG`): keras-rl2's DDPGAgent, extended for parallel stepping;
- ``base``: what both share (counters, keras-rl's single-env protocol, the files' verbs);
- ``persistence``: the agents' files (weights, counters, a policy, the training state);
- ``parallel``: :class:`agents.parallel.VecTrainer`, the agent's trainer on a vectorized env
  (``train_vec``, ``evaluate_vec``; owns the episodes it continues between calls);
- ``stepping``: its two stepping modes (lockstep, asynchronous); ``recording``: what they record
  (episodes in flight, transitions, update metrics);
- ``replay``: a replay memory correct for interleaved environments; ``noise``: per-env exploration;
- ``tf_function``: numpy-callable TensorFlow functions in eager or graph mode;
- ``gym_adapter``: the old 4-tuple gym API keras-rl's ``fit``/``test`` expect, over gymnasium.
"""
