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

import agents.compat  # noqa: E402,F401  (before TensorFlow, for tf-keras)
import numpy as np  # noqa: E402
from rl.callbacks import Callback  # noqa: E402

from common import errors  # noqa: E402
from vecenv import contract  # noqa: E402

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
    return contract.InProcessVecEnv('CheapEnv', n_envs, kwargs)


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


class FlakyVecEnv(contract.VecEnv):
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


class ScriptedAsyncVecEnv(contract.VecEnv):
    """An asynchronous vectorized env whose results come back interleaved, in a scripted order.

    It steps an :class:`contract.InProcessVecEnv` at ``send`` and holds each result back on a
    virtual clock: env i's k-th step (or reset: k = -1) takes ``duration(i, k)`` ticks. ``recv``
    hands over the earliest-finishing results (at least ``batch_size``) and every other one
    finished by then, in order of finishing. InProcessVecEnv itself never interleaves.

    Knobs: ``interrupt_on_recv`` (raise KeyboardInterrupt on that recv call, 1-based, before
    taking anything); ``lose`` (a set of ``(env, k)``: that step comes back lost, as the farmer
    reports a lost worker); ``sorted_labels`` (a deliberate bug: label each batch's rows with its
    env ids in ascending order, as if a batch came back in env order: rows paired by position).
    """

    def __init__(self, inner, duration, batch_size=1):
        self.inner = inner
        self.num_envs = inner.num_envs
        self.observation_space = inner.observation_space
        self.action_space = inner.action_space
        self.duration = duration
        self.batch_size = batch_size
        self.clock = 0.0
        self._pending = []  # [finish time, sequence number, result row]
        self._sequence = 0
        self.steps = np.zeros(self.num_envs, dtype=int)
        self.resets = self.async_resets = self.recvs = 0
        self.sends = []        # the env ids of every send
        self.received = []     # the env ids of every recv
        self.interrupt_on_recv = None
        self.lose = set()
        self.sorted_labels = False
        self._last = {}        # each env's latest observation
        self.mislabeled = 0    # batches whose sorted labels differed from the truth

    @property
    def in_flight(self):
        return len(self._pending)

    def reset(self, seed=None):
        self.resets += 1
        self._pending = []
        return self.inner.reset(seed)

    def step_async(self, actions):
        if self._pending:
            raise errors.PendingError('lockstep call while environments are in flight')
        self.inner.step_async(actions)

    def step_wait(self):
        return self.inner.step_wait()

    def set_params(self, params, indices=None):
        self.inner.set_params(params, indices)

    def _hold(self, rows, k_of):
        for row in rows:
            i = row[0]
            self._last[i] = np.asarray(row[1], dtype=np.float32)
            finish = self.clock + self.duration(i, k_of(i))
            self._pending.append([finish, self._sequence, row])
            self._sequence += 1

    def async_reset(self, seed=None):
        if self._pending:
            raise errors.PendingError('async_reset while environments are in flight')
        self.async_resets += 1
        self.inner.async_reset(seed)
        self._hold(self._rows(self.inner.recv()), lambda i: -1)

    def send(self, actions, env_ids):
        ids = contract.check_env_ids(env_ids, self.num_envs, len(actions))
        busy = set(row[2][0] for row in self._pending) & set(ids.tolist())
        if busy:
            raise errors.PendingError('environments %s are in flight' % sorted(busy))
        self.sends.append(ids.tolist())
        # what a lost env reports as terminal observation: the state before the lost step
        last = dict((i, self._last[i].copy()) for i in ids.tolist())
        self.inner.send(actions, ids)
        rows = self._rows(self.inner.recv())
        for n, row in enumerate(rows):
            i = row[0]
            if (i, int(self.steps[i])) in self.lose:  # its worker died: the step never happened
                fresh = np.asarray(self.inner.envs[i].reset(), dtype=np.float32)
                self.inner.tracker.restart(i)
                rows[n] = (i, fresh, 0.0, False, True,
                           {'lost': 'worker died', 'lost_cause': 'worker',
                            'terminal_observation': last[i]})
        steps = self.steps.copy()
        self._hold(rows, lambda i: int(steps[i]))
        self.steps[ids] += 1

    @staticmethod
    def _rows(result):
        obs, rewards, terminated, truncated, infos = result
        return [(info['env_id'], obs[k], rewards[k], terminated[k], truncated[k], info)
                for k, info in enumerate(infos)]

    def recv(self, batch_size=None, timeout=None):
        self.recvs += 1
        if self.recvs == self.interrupt_on_recv:
            raise KeyboardInterrupt
        if not self._pending:
            raise errors.NothingPendingError('nothing in flight')
        self._pending.sort(key=lambda p: (p[0], p[1]))
        wanted = min(batch_size or self.batch_size, len(self._pending))
        now = max(self.clock, self._pending[wanted - 1][0])
        taken = [p for p in self._pending if p[0] <= now]
        self._pending = [p for p in self._pending if p[0] > now]
        self.clock = now
        rows = [p[2] for p in taken]
        truth = [row[0] for row in rows]
        labels = sorted(truth) if self.sorted_labels else truth
        self.mislabeled += labels != truth
        self.received.append(labels)
        rows = [(label,) + tuple(row[1:]) for label, row in zip(labels, rows)]
        return contract.stack_results(rows, self.observation_space.shape)

    def close(self):
        self.inner.close()


def uneven_steps(i, k):
    """Step times of a scripted env: env i takes about i + 1 ticks, varying from step to step
    (resets: 2 ticks)."""
    if k < 0:
        return 2.0
    return (1.0 + 0.7 * i) * (1.0 + 0.5 * ((3 * k + i) % 4))


def scripted_cheap(n_envs=4, episode_length=6, duration=uneven_steps, batch_size=1):
    """A ScriptedAsyncVecEnv of CheapEnvs whose observations carry a tag per env (offset
    100 * (i + 1) in every episode, so that a mispaired next state shows)."""
    inner = cheap_vec(n_envs, episode_length=episode_length)
    for i in range(n_envs):
        inner.set_params({'offset': 100.0 * (i + 1)}, [i])
    return ScriptedAsyncVecEnv(inner, duration, batch_size=batch_size)


def check_chains(memory, episode_length, restarts=False):
    """Every stored transition of a :func:`scripted_cheap` env is its own: next state one step
    on and of the same env (tag), reward that of the stored action, and each env's transitions
    in memory order form its trajectory (nothing lost or stored twice): the next transition
    starts where the previous one ended, or at t = 0 after an episode's end (``restarts``:
    after any transition, e.g. a lost or abandoned step)."""
    n = len(memory)
    assert n > 0
    s, s2 = memory.observations[:n], memory.next_observations[:n]
    a, r = memory.actions[:n, 0], memory.rewards[:n]
    tag, tag2 = s[:, 1] - s[:, 0], s2[:, 1] - s2[:, 0]
    np.testing.assert_array_equal(tag2, tag, err_msg='a next state of another environment')
    np.testing.assert_array_equal(s2[:, 0], s[:, 0] + 1, err_msg='a next state not one step on')
    # CheapEnv rewards -(a_env - 0.5)^2 with a_env = (a + 1) / 2 in its [0, 1] action space
    np.testing.assert_allclose(r, -(a / 2.0) ** 2, rtol=1e-4, atol=1e-6,
                               err_msg='a reward of another action')
    for t in np.unique(tag):
        rows = np.flatnonzero(tag == t)
        for j, k in zip(rows[:-1], rows[1:]):
            ended = s2[j, 0] == episode_length
            if ended or restarts:
                assert s[k, 0] == 0 or (not ended and s[k, 0] == s2[j, 0]), (t, j, k)
            else:
                np.testing.assert_array_equal(s[k], s2[j], err_msg='env %g: a gap' % t)


def interrupt_learning(agent, at_call=5):
    """Make the agent's ``at_call``-th gradient update raise KeyboardInterrupt (a Ctrl-C that
    lands while it learns); the others run as usual."""
    original = agent.train_once
    calls = []

    def train_once():
        calls.append(1)
        if len(calls) == at_call:
            raise KeyboardInterrupt
        return original()
    agent.train_once = train_once
