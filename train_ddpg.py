#!/usr/bin/env python
"""train_ddpg.py: DDPG (agents/ddpg.py, keras-rl2's DDPGAgent) on osim-rl's L2M2019Env via farms.

    python train_ddpg.py --episodes 200                 # train 200 episodes, save, exit
    python train_ddpg.py --env Pendulum-v1 --episodes 50
    python train_ddpg.py --help                         # every config field is a flag
    ipython -i train_ddpg.py                            # build everything; then, at the prompt,
                                                        # r(100), test(5), save(), load(), video()

What makes it DDPG is here: a deterministic actor explored with noise, and one critic
(``Config``, ``make_agent``). The rest is run/'s and the same in train_sac.py: the flags for the
environments, the farms and the run (run/config.py's RunConfig), the start-up, the prompt's verbs,
SIGTERM and the exit codes (run/main.py, whose docstring says what each verb does).
"""
from dataclasses import dataclass  # novermin (3.6: the dataclasses backport)

from run import config as runconfig  # (these two import no TensorFlow: --help stays instant)
from run import main


@dataclass
class Config(runconfig.RunConfig):
    """DDPG; defaults from the TD3 paper's DDPG (Fujimoto et al. 2018, arXiv:1802.09477)"""
    hidden: tuple = (256, 256)
    """hidden layer sizes of the actor and of the critic, comma-separated"""
    actor_lr: float = 1e-3
    """Adam learning rate of the actor"""
    critic_lr: float = 1e-3
    """Adam learning rate of the critic"""
    noise: str = 'gaussian'
    """exploration noise, one process per environment: gaussian (TD3 paper) or ou (DDPG paper)"""
    sigma: float = 0.1
    """exploration noise scale, in the normalized action space [-1, 1]"""
    gamma: float = 0.99
    """discount factor"""
    tau: float = 0.005
    """target networks' soft-update rate (>= 1: a hard update every tau updates)"""
    batch_size: int = 256
    """transitions per gradient update"""
    warmup: int = 1000
    """env steps before the first update (once per run)"""
    random_steps: int = 1000
    """env steps of uniform random actions first (once per run)"""
    updates_per_step: float = 1.0
    """gradient updates per env step (fractions allowed)"""
    memory_limit: int = 1000000
    """replay memory size, in transitions"""
    seed: int = 1
    """seed of the networks, the noise, the random actions, the replay sampling and the resets"""


def make_agent(cfg, env):
    """A tanh actor and a critic (agents/networks.py), built after rl.agents (graph mode)."""
    from agents.compat import adam, tf  # (imported once the flags are read: TensorFlow)
    from agents.ddpg import DDPG  # imports rl.agents: TensorFlow in graph mode from here on
    from agents.noise import VectorNoise
    tf.random.set_seed(cfg.seed)  # after rl.agents switched to graph mode: the graph's seed
    noise = VectorNoise(env.action_space.shape[0], cfg.noise, cfg.sigma, seed=cfg.seed)
    agent = DDPG.from_spaces(env.observation_space, env.action_space, hidden=cfg.hidden,
                             noise=noise, gamma=cfg.gamma, tau=cfg.tau,
                             batch_size=cfg.batch_size, nb_steps_warmup=cfg.warmup,
                             nb_steps_random=cfg.random_steps,
                             updates_per_step=cfg.updates_per_step,
                             memory_limit=cfg.memory_limit, seed=cfg.seed,
                             normalize_obs=cfg.normalize_obs, reward_scale=cfg.reward_scale,
                             reward_offset=cfg.reward_offset, reward_root=cfg.reward_root)
    agent.compile([adam(cfg.actor_lr), adam(cfg.critic_lr)])
    return agent


# Plumbing (run/main.py): the flags, the farms and n_envs environments on them seen as one
# vectorized env, the agent above, the run directory; then the prompt's names and verbs.
run = main.start(Config, 'ddpg', make_agent, __file__, __doc__)
cfg, farmer, env, agent = run.cfg, run.farmer, run.env, run.agent
r, test, save, load, video = main.verbs(run)

if __name__ == '__main__':
    main.finish(run)  # as a script: train --episodes, save, exit; at a prompt: wait for r(n)
