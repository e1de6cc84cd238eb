"""Helpers shared by the tests/test_agents_*.py files (fakes, small agents, subprocess cases).

Tests that import ``rl.agents`` (DDPG, or SAC in graph mode) switch TensorFlow to graph mode for
the whole process, so they run as ``case_*`` functions in a fresh interpreter via
:func:`run_case`; everything else runs in the pytest process, in eager mode.
"""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for _path in (ROOT, HERE):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import agents.compat  # noqa: E402,F401  (before TensorFlow, for tf-keras)
import numpy as np  # noqa: E402
from rl.callbacks import Callback  # noqa: E402

import vecenv  # noqa: E402

SMALL = (32, 32)


def run_case(test_file, case, timeout=300):
    """Run ``case`` (a function name in ``test_file``) in a fresh interpreter; fail with its log."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, test_file, case], cwd=ROOT, env=env, timeout=timeout,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True)
    assert proc.returncode == 0, '%s failed:\n%s' % (case, proc.stdout[-6000:])


def main(namespace):
    """``python tests/test_x.py case_name`` runs one case (see :func:`run_case`)."""
    namespace[sys.argv[1]]()
    print('case %s passed' % sys.argv[1])


def cheap_vec(n_envs=3, **env_kwargs):
    kwargs = {'obs_size': 3, 'act_size': 1, 'episode_length': 10}
    kwargs.update(env_kwargs)
    return vecenv.InProcessVecEnv('CheapEnv', n_envs, kwargs)


class CountingCallback(Callback):
    """Counts keras-rl callback calls and keeps the episode logs."""

    def __init__(self):
        Callback.__init__(self)
        self.calls = {}
        self.episode_logs = []

    def _count(self, name):
        self.calls[name] = self.calls.get(name, 0) + 1

    def on_train_begin(self, logs=None):
        self._count('train_begin')

    def on_train_end(self, logs=None):
        self._count('train_end')

    def on_episode_begin(self, episode, logs=None):
        self._count('episode_begin')

    def on_episode_end(self, episode, logs=None):
        self._count('episode_end')
        self.episode_logs.append(dict(logs or {}))

    def on_step_end(self, step, logs=None):
        self._count('step_end')

    def on_action_end(self, action, logs=None):
        self._count('action_end')


class NoRenderEnv(object):
    """Wraps an old-API env; rendering fails the test (keras-rl's test() used to render)."""

    def __init__(self, env):
        self.env = env
        self.observation_space = env.observation_space
        self.action_space = env.action_space

    def reset(self):
        return self.env.reset()

    def step(self, action):
        return self.env.step(action)

    def render(self, *args, **kwargs):
        raise AssertionError('render() called although visualize was not asked for')

    def close(self):
        self.env.close()


class ScalingProcessor(object):
    """A keras-rl processor (duck-typed) that halves observations and counts its calls."""

    metrics = []
    metrics_names = []

    def __init__(self):
        self.calls = {'observation': 0, 'action': 0, 'state_batch': 0}

    def process_step(self, observation, reward, done, info):
        return self.process_observation(observation), reward, done, info

    def process_observation(self, observation):
        self.calls['observation'] += 1
        return np.asarray(observation) * 0.5

    def process_reward(self, reward):
        return reward

    def process_action(self, action):
        self.calls['action'] += 1
        return action

    def process_state_batch(self, batch):
        self.calls['state_batch'] += 1
        return batch


class FlakyVecEnv(vecenv.VecEnv):
    """Delegates to a vectorized env; can raise KeyboardInterrupt inside ``step_wait``."""

    def __init__(self, inner):
        self.inner = inner
        self.num_envs = inner.num_envs
        self.observation_space = inner.observation_space
        self.action_space = inner.action_space
        self.resets = 0
        self.interrupt_on_wait = None  # raise on this step_wait call (1-based)
        self.waits = 0

    def reset(self, seed=None):
        self.resets += 1
        return self.inner.reset(seed)

    def step_async(self, actions):
        self.inner.step_async(actions)

    def step_wait(self):
        self.waits += 1
        if self.waits == self.interrupt_on_wait:
            raise KeyboardInterrupt
        return self.inner.step_wait()

    def close(self):
        self.inner.close()


def check_interleaved_replay(memory, offsets, episode_length, terminated):
    """Every stored transition's next state belongs to its own env and the right episode.

    CheapEnv's observation is ``[t, offset + t, offset + t]`` where ``offset`` is the reset seed
    (env i of a vectorized env reset with seed s gets s + i; auto-resets get 0).
    """
    n = len(memory)
    s, s2 = memory.observations[:n], memory.next_observations[:n]
    term = memory.terminals[:n]
    assert n > 0
    # next state is one step later...
    np.testing.assert_array_equal(s2[:, 0], s[:, 0] + 1)
    # ...of the same environment (the seed offset survives the step)
    np.testing.assert_array_equal(s2[:, 1] - s2[:, 0], s[:, 1] - s[:, 0])
    np.testing.assert_array_equal(s2[:, 2], s2[:, 1])
    seen = set(np.round(s[:, 1] - s[:, 0]).astype(int).tolist())
    assert set(offsets) <= seen <= set(offsets) | {0}, (offsets, seen)
    # the episode's last transition ends at t == episode_length, never at a reset observation
    ends = s2[:, 0] == episode_length
    assert ends.any()
    assert (s2[:, 0] <= episode_length).all()
    if terminated:
        np.testing.assert_array_equal(term, ends.astype(np.float32))
    else:
        assert not term.any()  # truncated: bootstrapped
