#!/usr/bin/env python
"""train_sac.py: Soft Actor-Critic (agents/sac.py) on osim-rl's L2M2019Env, stepped on the farms.

    python train_sac.py --episodes 200                 # train 200 episodes, save, exit
    python train_sac.py --env Pendulum-v1 --episodes 50
    python train_sac.py --help                         # every config field is a flag
    ipython -i train_sac.py                            # build everything; then, at the prompt,
                                                       # r(100), test(5), save(), load(), video()

What makes it SAC is here: a stochastic policy, twin critics and a learned entropy temperature
(``Config``, ``make_agent``). The rest is run/'s and the same in train_ddpg.py: the flags for the
environments, the farms and the run (run/config.py's RunConfig), the start-up, the prompt's verbs,
SIGTERM and the exit codes (run/main.py, whose docstring says what each verb does).
"""
from dataclasses import dataclass  # novermin (3.6: the dataclasses backport)

from run import config as runconfig  # (these two import no TensorFlow: --help stays instant)
from run import main


@dataclass
class Config(runconfig.RunConfig):
    """SAC; defaults from the SAC paper (Haarnoja et al. 2018, arXiv:1812.05905)"""
    hidden: tuple = (256, 256)
    """hidden layer sizes of the policy and of both critics, comma-separated"""
    lr: float = 3e-4
    """Adam learning rate of the policy, the critics and the temperature"""
    gamma: float = 0.99
    """discount factor"""
    tau: float = 0.005
    """target critics' soft-update rate"""
    batch_size: int = 256
    """transitions per gradient update"""
    warmup: int = 1000
    """env steps of uniform random actions before the first update (once per run)"""
    updates_per_step: float = 1.0
    """gradient updates per env step (fractions allowed)"""
    initial_alpha: float = 1.0
    """initial entropy temperature (learned towards a target entropy of -|A|)"""
    memory_limit: int = 1000000
    """replay memory size, in transitions"""
    seed: int = 1
    """seed of the networks, the warm-up actions, the replay sampling and the resets"""


def make_agent(cfg, env):
    """A squashed-Gaussian policy and twin critics (agents/networks.py) in a keras-rl Agent."""
    from agents.compat import adam, tf  # (imported once the flags are read: TensorFlow)
    from agents.sac import SAC
    tf.random.set_seed(cfg.seed)
    agent = SAC.from_spaces(env.observation_space, env.action_space, hidden=cfg.hidden,
                            gamma=cfg.gamma, tau=cfg.tau, batch_size=cfg.batch_size,
                            nb_steps_warmup=cfg.warmup, updates_per_step=cfg.updates_per_step,
                            initial_alpha=cfg.initial_alpha, memory_limit=cfg.memory_limit,
                            seed=cfg.seed, normalize_obs=cfg.normalize_obs,
                            reward_scale=cfg.reward_scale, reward_offset=cfg.reward_offset,
                            reward_root=cfg.reward_root)
    agent.compile(adam(cfg.lr))
    return agent


# Plumbing (run/main.py): the flags, the farms and n_envs environments on them seen as one
# vectorized env, the agent above, the run directory; then the prompt's names and verbs.
run = main.start(Config, 'sac', make_agent, __file__, __doc__)
cfg, farmer, env, agent = run.cfg, run.farmer, run.env, run.agent
r, test, save, load, video = main.verbs(run)

if __name__ == '__main__':
    main.finish(run)  # as a script: train --episodes, save, exit; at a prompt: wait for r(n)
