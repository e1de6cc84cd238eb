"""The vectorized-environment contract every learner sees, and its adapters; the learner's side.

- :mod:`vecenv.contract`: the contract (lockstep ``step``/``step_async``/``step_wait`` and
  EnvPool-style asynchronous ``send``/``recv`` with ``info['env_id']``), the observation form,
  episode bookkeeping, and :class:`vecenv.contract.InProcessVecEnv`, the same contract without
  farms (tests, evaluation, a laptop);
- :mod:`vecenv.sb3` and :mod:`vecenv.gym_vector`: a farm's environments as a stable-baselines3
  ``VecEnv`` and a gymnasium ``VectorEnv`` (each imports its library only when used).

It may import ``common`` and ``envs`` only; ``host`` implements this contract over farms and
``agents`` train on it, so neither is imported here. Python 3.6 compatible.
"""
