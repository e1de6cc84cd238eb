"""run/main.py: what train_sac.py and train_ddpg.py do alike, from their flags to their prompt, so
that each script holds only its algorithm: a ``Config`` (run/config.py's RunConfig plus the
algorithm's hyperparameters) and ``make_agent(cfg, env)``, which builds and compiles its agent.
A script ends with::

    run = main.start(Config, 'sac', make_agent, __file__, __doc__)
    cfg, farmer, env, agent = run.cfg, run.farmer, run.env, run.agent
    r, test, save, load, video = main.verbs(run)
    if __name__ == '__main__':
        main.finish(run)

and is then used as::

    python train_sac.py --episodes 200     # train 200 episodes, save, exit
    ipython -i train_sac.py                # build everything; then, at the prompt:

    r(100)      train 100 more episodes (Ctrl-C stops cleanly after the current step; r continues)
    test(5)     5 episodes with deterministic actions; prints the mean return
    save()      checkpoint now (r also saves at its end, every --checkpoint-every episodes, on exit)
    load()      the newest checkpoint of this run (none yet: of the latest earlier run like it);
                load('runs/...') another run's, which continues
    video()     film deterministic episodes of the current policy to video.mp4 (or 'x.gif')

The prompt's namespace also holds ``cfg``, ``farmer`` (``farmer.status()``), ``env``, ``agent``
and ``run`` (the Session). Environments come from the farms in farmlist.py (or ``--farms``); when
only this machine is listed and no farm answers, a local one is started and stopped on exit. The
run directory's contents (config, episodes.csv, checkpoints, curve.png, tb/ for TensorBoard) are
described in run/session.py.

Exit codes: 0 when done; 2 for a bad flag (one line, before anything starts); 1 for any other
user error (one line, a traceback too with ``--verbose``; the farms released at once when they
were reserved already); 143 after SIGTERM (a scheduler's stop), which acts like Ctrl-C, then
checkpoints, releases the farms and exits; ``--give-up-after S`` ends training the same way (code
1) when no farm has answered for S seconds.

Python 3.6 compatible. TensorFlow is imported by :func:`start`, once the flags are read, so
``--help`` stays instant.
"""
from run import config as runconfig
from run import session


def start(Config, algo, make_agent, path, doc):
    """The run of the script at ``path``: its flags parsed into ``Config`` (``--help``: the first
    line of its ``doc`` and every field's docstring), the checks that need no farm, ``n_envs``
    environments on the farms seen as one vectorized env (vecenv/contract.py), the agent
    ``make_agent(cfg, env)`` returns compiled, and the Session (run/session.py) that runs them.
    ``algo`` ('sac', 'ddpg') names the run directory and the runs ``load()`` looks among."""
    cfg = runconfig.parse_config(Config, path, description=doc.split('\n')[1], algo=algo)
    run_dir = runconfig.prepare(cfg, algo)  # checks that need no farm: before anything starts
    # TensorFlow loads now: after the logging set up above (agents/compat.py reads its level),
    # before the farms start, so a TensorFlow that cannot load holds no lease.
    import agents.compat  # noqa: F401
    farmer = runconfig.make_farmer(cfg.farms, cfg.give_up_after)
    with runconfig.closing_on_error(farmer):  # a failed start-up releases the farms at once
        env = farmer.vec_env(cfg.env, cfg.n_envs, cfg.env_kwargs)
        runconfig.require_box(env.action_space, algo.upper(), cfg.env)
        agent = make_agent(cfg, env)
        return session.Session(cfg, algo, agent, env, farmer, run_dir)


def verbs(run):
    """The prompt's ``r, test, save, load, video`` on ``run`` (a Session)."""

    def r(n=100):
        """Train n more episodes; counters and episodes in flight continue from the last call."""
        run.train(n)

    def test(n=5):
        """n episodes with deterministic actions; returns the mean return."""
        return run.test(n)

    def save(path=None):
        """Checkpoint weights and counters now; returns the checkpoint's path."""
        return run.save(path)

    def load(path=None):
        """Resume from the newest checkpoint of this run (or of an earlier one), or of path."""
        run.load(path)

    def video(path='video.mp4', episodes=1, seed=0):
        """Film deterministic episodes of the current policy (its own env, in this process)."""
        from run import evaluation
        return evaluation.record(run.agent, run.cfg.env, run.cfg.env_kwargs, path,
                               episodes=episodes, seed=seed)

    return r, test, save, load, video


def finish(run):
    """At a prompt, say what to type and wait for ``r(n)``; as a script, train ``--episodes``,
    save, release the farms, exit."""
    if runconfig.interactive():
        print('r(100) trains 100 more episodes; test(), video(), save(), load(); run dir %s'
              % run.run_dir)
    else:
        run.train_and_exit(run.cfg.episodes)
