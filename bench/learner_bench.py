"""SAC gradient updates per second: agents.sac.SAC next to stable-baselines3's SAC, same run.

Same sizes for both: Pendulum-sized observations (3) and actions (1), two hidden layers of 256,
batch 256, Adam 3e-4, automatic temperature, a replay memory prefilled with 100,000 random
transitions. One update = one critic, policy, temperature and target step, sampling included.

Each learner runs in its own worker process (TensorFlow and torch never share a process or its
thread pools); the parent alternates short timed windows between the workers, so both see the same
machine load (shared machines are noisy), and reports medians over the windows. ``ratio`` is the
median of the per-round ratios ours / sb3 (adjacent windows). stable-baselines3 is timed with
torch's default threads and with one thread, and compared at the faster of the two.

    python bench/learner_bench.py --json [--rounds 8] [--updates 100] [--graph]

Prints one JSON object: ``updates_per_s``, ``sb3_updates_per_s``, ``ratio`` and the details
(``updates_per_s_graph`` with ``--graph``: our SAC after ``import rl.agents``). If
stable-baselines3 cannot be imported, ``sb3_updates_per_s`` and ``ratio`` are null and
``sb3_error`` says why.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OBS_DIM, ACT_DIM, BATCH, HIDDEN, PREFILL = 3, 1, 256, (256, 256), 100000


# -- workers: prepare once, then answer "run N" with the seconds N updates took ---------------------
def _prefill(rng):
    return (rng.randn(PREFILL, OBS_DIM).astype(np.float32),
            rng.uniform(-1, 1, (PREFILL, ACT_DIM)).astype(np.float32),
            rng.randn(PREFILL).astype(np.float32),
            rng.randn(PREFILL, OBS_DIM).astype(np.float32),
            (rng.uniform(size=PREFILL) < 0.01).astype(np.float32))


def _ours(graph):
    import agents.compat  # noqa: F401  (tf-keras before TensorFlow)
    if graph:
        import rl.agents  # noqa: F401  (graph mode, as after importing agents.ddpg)
    import gymnasium
    from agents.sac import SAC
    box = gymnasium.spaces.Box
    agent = SAC.from_spaces(box(-np.inf, np.inf, (OBS_DIM,), np.float32),
                            box(-1.0, 1.0, (ACT_DIM,), np.float32), hidden=HIDDEN,
                            batch_size=BATCH, memory_limit=PREFILL, seed=0)
    agent.compile()
    agent.memory.append_batch(*_prefill(np.random.RandomState(0)))
    info = {'tensorflow': agents.compat.tf.__version__,
            'eager': agents.compat.tf.executing_eagerly()}
    return agent.train_once, info


def _sb3(threads=None):
    import gymnasium
    import torch
    if threads:
        torch.set_num_threads(threads)
    import stable_baselines3
    from stable_baselines3 import SAC
    from stable_baselines3.common.logger import configure

    class Dummy(gymnasium.Env):
        observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32)
        action_space = gymnasium.spaces.Box(-1.0, 1.0, (ACT_DIM,), np.float32)

        def reset(self, seed=None, options=None):
            return np.zeros(OBS_DIM, np.float32), {}

        def step(self, action):
            return np.zeros(OBS_DIM, np.float32), 0.0, False, False, {}

    model = SAC('MlpPolicy', Dummy(), batch_size=BATCH, buffer_size=PREFILL, learning_starts=0,
                policy_kwargs={'net_arch': list(HIDDEN)}, device='cpu', seed=0)
    model.set_logger(configure(None, []))
    buf = model.replay_buffer
    obs, act, rew, nxt, done = _prefill(np.random.RandomState(0))
    buf.observations[:] = obs[:, None]
    buf.actions[:] = act[:, None]
    buf.rewards[:] = rew[:, None]
    buf.next_observations[:] = nxt[:, None]
    buf.dones[:] = done[:, None]
    buf.full = True

    def update():
        model.train(gradient_steps=1, batch_size=BATCH)
    info = {'torch': torch.__version__, 'stable_baselines3': stable_baselines3.__version__,
            'torch_threads': torch.get_num_threads()}
    return update, info


def worker(kind):
    try:
        if kind.startswith('sb3'):
            update, info = _sb3(1 if kind == 'sb3_1thread' else None)
        else:
            update, info = _ours(kind == 'ours_graph')
        for _ in range(30):  # tracing, allocation, first Adam steps
            update()
    except Exception as e:  # reported to the parent, which puts it in the JSON
        _reply({'error': '%s: %s' % (type(e).__name__, e)})
        return
    _reply(dict(info, ready=True))
    for line in sys.stdin:  # idle workers block here, leaving the cores to the one being timed
        n = int(line)
        start = time.perf_counter()
        for _ in range(n):
            update()
        _reply({'seconds': time.perf_counter() - start})


def _reply(obj):
    sys.stdout.write(json.dumps(obj) + '\n')
    sys.stdout.flush()


# -- parent ---------------------------------------------------------------------------------------
class Worker(object):
    def __init__(self, kind):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3', PYTHONWARNINGS='ignore')
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), '--worker', kind],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, universal_newlines=True, env=env)
        self.hello = self._read()

    def _read(self):
        line = self.proc.stdout.readline()
        if not line:
            return {'error': 'worker exited with %s' % self.proc.wait()}
        return json.loads(line)

    def rate(self, n):
        self.proc.stdin.write('%d\n' % n)
        self.proc.stdin.flush()
        return n / self._read()['seconds']

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--json', action='store_true', help='print one JSON object (default)')
    parser.add_argument('--rounds', type=int, default=8, help='timed windows per learner')
    parser.add_argument('--updates', type=int, default=100, help='updates per window')
    parser.add_argument('--graph', action='store_true',
                        help='also time our SAC in graph mode (after import rl.agents)')
    parser.add_argument('--worker', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker)

    kinds = ['ours', 'sb3', 'sb3_1thread'] + (['ours_graph'] if args.graph else [])
    workers = [Worker(kind) for kind in kinds]
    try:
        live = [w for w in workers if 'error' not in w.hello]
        rates = dict((kind, []) for kind in kinds)
        for _ in range(args.rounds):
            for kind, w in zip(kinds, workers):
                if w in live:
                    rates[kind].append(w.rate(args.updates))
    finally:
        for w in workers:
            w.close()

    def median(kind):
        return float(np.median(rates[kind])) if rates[kind] else None

    hello = dict(zip(kinds, [w.hello for w in workers]))
    # stable-baselines3 is compared at its better thread setting: torch's OpenMP threads suffer
    # more than TensorFlow's pool when the cores are shared, and we do not want to win by that.
    sb3 = max(['sb3', 'sb3_1thread'], key=lambda k: median(k) or 0.0)
    result = {'updates_per_s': median('ours'), 'sb3_updates_per_s': median(sb3),
              'sb3_threads': hello[sb3].get('torch_threads'), 'ratio': None,
              'batch_size': BATCH, 'hidden': list(HIDDEN), 'obs_dim': OBS_DIM, 'act_dim': ACT_DIM,
              'prefill': PREFILL, 'rounds': args.rounds, 'updates_per_round': args.updates,
              'cpus': os.cpu_count(), 'workers': hello,
              'rates': dict((k, [round(r, 1) for r in v]) for k, v in rates.items())}
    if rates['ours'] and rates[sb3]:
        result['ratio'] = float(np.median(np.array(rates['ours']) / np.array(rates[sb3])))
    if args.graph:
        result['updates_per_s_graph'] = median('ours_graph')
    if 'error' in hello['sb3']:
        result['sb3_error'] = 'stable-baselines3 not usable: ' + hello['sb3']['error']
    print(json.dumps(result, sort_keys=True))


if __name__ == '__main__':
    main()
