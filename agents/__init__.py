"""Keras-RL agents that train on a vectorized environment (``vecenv/contract.py``'s contract).

Nothing is imported here: ``agents.ddpg`` imports ``rl.agents``, which switches TensorFlow to graph
mode for the whole process, and importing it must stay a deliberate choice. Modules:

- ``compat``: the keras-rl2-on-modern-TensorFlow shims (import first);
- ``networks``: Keras model builders shared by DDPG and SAC;
- ``sac`` (:class:`agents.sac.SAC`) and ``sac_math``: Soft Actor-Critic as a keras-rl Agent;
- ``ddpg`` (:class:`agents.ddpg.DDPG`): keras-rl2's DDPGAgent, extended for parallel stepping;
- ``base``: what both share (counters, keras-rl's single-env protocol, weights and counters files);
- ``parallel``: the vector-stepping loop (``train_vec``, ``evaluate_vec``);
- ``replay``: a replay memory correct for interleaved environments; ``noise``: per-env exploration;
- ``tf_function``: numpy-callable TensorFlow functions in eager or graph mode;
- ``gym_adapter``: the old 4-tuple gym API keras-rl's ``fit``/``test`` expect, over gymnasium.
"""
