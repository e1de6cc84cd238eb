#!/usr/bin/env python
"""train_ddpg.py: DDPG (agents/ddpg.py, keras-rl2's DDPGAgent) on osim-rl's L2M2019Env via farms.

    python train_ddpg.py --episodes 200                 # train 200 episodes, save, exit
    python train_ddpg.py --env Pendulum-v1 --episodes 50
    python train_ddpg.py --help                         # every config field is a flag
    ipython -i train_ddpg.py                            # build everything; then, at the prompt:

    r(100)      train 100 more episodes (Ctrl-C stops cleanly after the current step; r continues)
    test(5)     5 episodes with deterministic actions; prints the mean return
    save()      checkpoint now (r also saves at its end, every --checkpoint-every episodes, on exit)
    load()      the newest checkpoint of this run (none yet: of the latest earlier run like it);
                load('runs/...') another run's, which continues
    video()     film deterministic episodes of the current policy to video.mp4 (or 'x.gif')

SIGTERM (a scheduler's stop) acts like Ctrl-C, then checkpoints, releases the farms and exits;
--give-up-after S ends training the same way when no farm has answered for S seconds.

The namespace also holds ``cfg``, ``farmer`` (``farmer.status()``), ``env`` and ``agent``.
Environments come from the farms in farmlist.py (or ``--farms``); when only this machine is listed
and no farm answers, a local one is started and stopped on exit. The run directory's contents
(config, episodes.csv, checkpoints, curve.png, tb/ for TensorBoard) are described in run/session.py.
"""
import os
from dataclasses import dataclass, field  # novermin (3.6: the dataclasses backport)

from run import config as runconfig  # (these two import no TensorFlow: --help stays instant)
from run import session


@dataclass
class Config:
    # --- environments
    env: str = 'L2M2019Env'
    """environment: an osim-rl env (L2M2019Env, Arm2DEnv), a gym id (Pendulum-v1) or CheapEnv"""
    env_kwargs: dict = field(default_factory=dict)
    """the environment's keyword arguments, as JSON, e.g. '{"difficulty": 2}'"""
    curriculum: str = ''
    """a JSON file of stages [{"episodes": N, "params": {...}}, ...] that change the environments'
    parameters during training (run/curriculum.py); empty: none"""
    sim: str = 'default'
    """osim-rl simulator preset: exact (integrator accuracy 1e-5), default (osim-rl's 5e-5), fast
    (1e-3); an integrator_accuracy in --env-kwargs wins"""
    frame_skip: int = 1
    """simulator steps per agent step (the action repeated, the rewards summed); a frame_skip in
    --env-kwargs wins"""
    n_envs: int = os.cpu_count() or 1
    """environments stepped in parallel on the farms"""
    stepping: str = 'async'
    """async: the learner acts for whichever environments are ready and learns while the others
    simulate (no core waits for the slowest); lockstep: all environments step together"""
    farms: str = ''
    """farms as host:capacity[:port],... ; empty: those of farmlist.py"""
    eval_envs: int = 1
    """environments of test()'s own, on the farms (0: test on the training ones, ending episodes)"""
    eval_every: int = 0
    """episodes between evaluations during r, on the evaluation environments (0: only test())"""
    eval_episodes: int = 5
    """episodes per evaluation during r"""
    give_up_after: float = 0.0
    """seconds with no farm answering before training ends with a checkpoint (0: wait for ever)"""
    # --- DDPG; defaults from the TD3 paper's DDPG (Fujimoto et al. 2018, arXiv:1802.09477)
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
    normalize_obs: bool = True
    """normalize observations with running statistics for the networks (agents/normalize.py; the
    statistics are saved with the weights); --normalize-obs no feeds them raw"""
    reward_scale: float = 1.0
    """the updates learn from reward_scale * (r + reward_offset); returns, episodes.csv and
    evaluations stay the environment's own rewards"""
    reward_offset: float = 0.0
    """see --reward-scale; Arm2DEnv (reward 1 - d^2 per simulator step): --reward-offset
    -FRAME_SKIP --reward-scale 10 learns from -10 d^2"""
    reward_root: bool = False
    """the updates learn from -reward_scale * sqrt(max(0, -(r + reward_offset))): a squared
    penalty made linear (Arm2DEnv: --reward-offset -FRAME_SKIP --reward-root yes learns from
    about the hand's distance to the target; agents/base.py)"""
    seed: int = 1
    """seed of the networks, the noise, the random actions, the replay sampling and the resets"""
    # --- the run
    episodes: int = 100
    """episodes to train when run as a script (interactively nothing trains until r(n))"""
    run_dir: str = ''
    """where the run is written; empty: runs/ddpg-<env>-<timestamp>"""
    resume: str = ''
    """a run directory or checkpoint to continue (weights, optimizer and RNG states, replay memory,
    counters; that run's CSV goes on)"""
    checkpoint_every: int = 50
    """episodes between checkpoints (one is also written at the end of each r and on exit)"""
    keep_checkpoints: int = 5
    """checkpoints kept in the run directory (the newest)"""
    save_memory: bool = True
    """checkpoints hold the replay memory, so a resumed run goes on exactly (1M L2M transitions:
    about 1.3 GB, kept in the newest checkpoint only); --save-memory no leaves it out"""
    log_every: float = 30.0
    """seconds between progress lines when stdout is not a terminal"""
    verbose: bool = False
    """debug logs, and a traceback with every error (otherwise a user error is one line)"""


cfg = runconfig.parse_config(Config, __file__, description=__doc__.split('\n')[1])
run_dir = runconfig.prepare(cfg, 'ddpg')  # checks that need no farm: before anything starts

from agents.compat import adam, tf  # noqa: E402  (plumbing: must come before TensorFlow)
from agents.ddpg import DDPG  # noqa: E402  (imports rl.agents: TensorFlow in graph mode)
from agents.noise import VectorNoise  # noqa: E402

# The environments: n_envs of them on the farms, seen as one vectorized env (vecenv/contract.py).
farmer = runconfig.make_farmer(cfg.farms, cfg.give_up_after)
with runconfig.closing_on_error(farmer):  # a failed start-up releases the farms at once
    env = farmer.vec_env(cfg.env, cfg.n_envs, cfg.env_kwargs)
    runconfig.require_box(env.action_space, 'DDPG', cfg.env)

    # The agent: a tanh actor and a critic (agents/networks.py), built after rl.agents (graph mode).
    tf.random.set_seed(cfg.seed)
    agent = DDPG.from_spaces(env.observation_space, env.action_space, hidden=cfg.hidden,
                             noise=VectorNoise(env.action_space.shape[0], cfg.noise, cfg.sigma,
                                               seed=cfg.seed),
                             gamma=cfg.gamma, tau=cfg.tau, batch_size=cfg.batch_size,
                             nb_steps_warmup=cfg.warmup, nb_steps_random=cfg.random_steps,
                             updates_per_step=cfg.updates_per_step,
                             memory_limit=cfg.memory_limit, seed=cfg.seed,
                             normalize_obs=cfg.normalize_obs, reward_scale=cfg.reward_scale,
                             reward_offset=cfg.reward_offset, reward_root=cfg.reward_root)
    agent.compile([adam(cfg.actor_lr), adam(cfg.critic_lr)])
    run = session.Session(cfg, 'ddpg', agent, env, farmer, run_dir)

def r(n=100):
    """Train n more episodes; counters and episodes in flight continue from the last call."""
    run.train(n)


def test(n=5):
    """n episodes with deterministic actions; returns the mean return."""
    return run.test(n)


def save(path=None):
    """Checkpoint weights and counters now; returns the checkpoint's path."""
    return run.save(path)


def video(path='video.mp4', episodes=1, seed=0):
    """Film deterministic episodes of the current policy (its own env, in this process)."""
    import evaluate
    return evaluate.record(agent, cfg.env, cfg.env_kwargs, path, episodes=episodes, seed=seed)


def load(path=None):
    """Resume from the newest checkpoint of this run (or of an earlier one), or of path."""
    run.load(path)


if __name__ == '__main__':
    if runconfig.interactive():
        print('r(100) trains 100 more episodes; test(), video(), save(), load(); run dir %s' % run.run_dir)
    else:
        run.train_and_exit(cfg.episodes)
