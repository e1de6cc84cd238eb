"""The cases of tests/test_resume.py, run in their own interpreters (Python 3.11, or the Python
3.6 learner, which has no pytest): ``python tests/resume_cases.py case_first sac eager DIR``.

``case_first ... DIR norm`` (a 5th argument) builds the agents with observation normalization
and a reward scale and offset, whose statistics must continue exactly too.

``case_first`` trains the uninterrupted run and the first half (two agents built alike) and saves
the half as a checkpoint; ``case_second`` loads it in a fresh process and trains the second half.
Each writes what it ends with to a ``.npz`` (see :func:`_dump`) for the test to compare.
"""
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

N_ENVS, HALF = 3, 150  # 5 episodes of 10 steps per environment in each half


def _build(algo, options='plain'):
    """An agent with the same initial weights in every process (drawn from a seeded numpy RNG,
    not from TensorFlow's initializers); ``options`` 'norm': normalizing observations, rewards
    scaled."""
    import agents_support
    from agents.noise import VectorNoise
    vec = agents_support.cheap_vec(N_ENVS)
    common = dict(hidden=agents_support.SMALL, batch_size=16, nb_steps_warmup=30,
                  updates_per_step=0.5, seed=3)
    if options == 'norm':
        common.update(normalize_obs=True, reward_scale=3.0, reward_offset=0.5)
    if algo == 'ddpg':
        from agents.ddpg import DDPG
        agent = DDPG.from_spaces(vec.observation_space, vec.action_space, nb_steps_random=30,
                                 noise=VectorNoise(1, 'ou', 0.3, seed=4), **common)
        models = [agent.actor, agent.critic]
    else:
        from agents.sac import SAC
        agent = SAC.from_spaces(vec.observation_space, vec.action_space, **common)
        models = [agent.policy, agent.critic1, agent.critic2]
    rng = np.random.RandomState(0)
    for model in models:
        model.set_weights([rng.uniform(-0.3, 0.3, w.shape).astype(np.float32)
                           for w in model.get_weights()])
    agent.compile()
    return agent, vec


def _dump(agent, path):
    """Everything a continuing run depends on, as arrays."""
    arrays = {}
    models = ([agent.actor, agent.critic, agent.target_actor, agent.target_critic]
              if hasattr(agent, 'actor') else
              [agent.policy, agent.critic1, agent.critic2, agent.target_critic1,
               agent.target_critic2])
    for i, model in enumerate(models):
        for j, w in enumerate(model.get_weights()):
            arrays['model%d.%d' % (i, j)] = w
    for name, (optimizer, _) in sorted(agent._optimizers().items()):
        for j, w in enumerate(optimizer.get_weights()):
            arrays['optimizer.%s.%d' % (name, j)] = w
    n = len(agent.memory)
    for field in ('observations', 'actions', 'rewards', 'next_observations', 'terminals'):
        arrays['memory.' + field] = getattr(agent.memory, field)[:n]
    arrays['memory.position'] = agent.memory.position
    for name, rng in agent._rngs().items():
        arrays['rng.' + name] = rng.get_state()[1]
        arrays['draw.' + name] = rng.uniform(size=3)  # the next draws, gauss cache included
    counters = agent.counters()
    arrays['counters'] = [counters[k] for k in sorted(counters)]
    arrays['credit'] = agent._update_credit
    if hasattr(agent, 'log_alpha'):
        arrays['alpha'] = agent.alpha
    if hasattr(agent, 'noise'):
        arrays['noise_state'] = agent.noise.state
    if agent.normalize_obs:
        for key, value in agent.obs_norm.state().items():
            arrays['obs_norm.' + key] = value
    np.savez(path, **arrays)


def _mode(mode):
    import agents.compat  # noqa: F401  (before TensorFlow and rl, for tf-keras)
    if mode == 'graph':
        import rl.agents  # noqa: F401  (disables eager execution process-wide)


def case_first(algo, mode, folder, options='plain'):
    """The uninterrupted run, then a first half saved as a checkpoint."""
    from run import checkpoints
    _mode(mode)
    agent, vec = _build(algo, options)
    agent.train_vec(vec, nb_steps=HALF, seed=100)
    agent.train_vec(vec, nb_steps=HALF)
    _dump(agent, os.path.join(folder, 'uninterrupted.npz'))
    vec.close()
    agent, vec = _build(algo, options)
    agent.train_vec(vec, nb_steps=HALF, seed=100)
    assert agent.counters()['episodes'] == HALF // 10  # every env at an episode boundary
    checkpoints.save(agent, os.path.join(folder, 'checkpoints'), 'half')
    vec.close()


def case_second(algo, mode, folder, options='plain'):
    """A fresh process: load the checkpoint, train the second half on a new vectorized env."""
    from run import checkpoints
    _mode(mode)
    agent, vec = _build(algo, options)
    checkpoints.load(agent, os.path.join(folder, 'checkpoints'))
    agent.train_vec(vec, nb_steps=HALF)
    _dump(agent, os.path.join(folder, 'resumed.npz'))
    vec.close()


if __name__ == '__main__':
    globals()[sys.argv[1]](*sys.argv[2:])
    print('case %s passed' % sys.argv[1])
