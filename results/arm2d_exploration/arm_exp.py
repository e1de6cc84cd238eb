"""Exploration: SAC on Arm2DEnv, in-process, with variants. Prints JSON lines.

The script behind the README's side-by-side table (README.md, "What the agents learn from"), kept
as it was run (on commit ec1557d's code: normalization here is a keras-rl Processor with fixed
statistics from 3,000 random steps, before agents/normalize.py existed). The runs:

    A: --norm --reward d2x10 --frame-skip 2
    B: --norm --reward raw --frame-skip 2
    C: --reward d2x10 --frame-skip 2
    D: --norm --reward d3 --frame-skip 2
    E: --norm --reward d2x10 --frame-skip 2 --target-entropy -12

each with --sim-steps 40000 --eval-every 4000 (seed 0), under `nice -n 19` with one TensorFlow
thread, on 2 cores shared with other work. Their output: A.jsonl ... E.jsonl.
"""
import argparse, json, sys, time, os
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
import numpy as np
p = argparse.ArgumentParser()
p.add_argument('--seed', type=int, default=0)
p.add_argument('--envs', type=int, default=2)
p.add_argument('--sim-steps', type=int, default=60000)
p.add_argument('--frame-skip', type=int, default=1)
p.add_argument('--acc', type=float, default=1e-3)
p.add_argument('--norm', action='store_true')
p.add_argument('--reward', default='raw')  # raw | d2x10 | d | d2x100
p.add_argument('--alpha0', type=float, default=1.0)
p.add_argument('--hidden', default='256,256')
p.add_argument('--eval-every', type=int, default=5000)
p.add_argument('--eval-eps', type=int, default=5)
p.add_argument('--upd', type=float, default=1.0)
p.add_argument('--tag', default='')
p.add_argument('--target-entropy', type=float, default=None)
a = p.parse_args()
import vecenv, envs
from agents.compat import adam, tf
from agents.sac import SAC
from agents.parallel import train_vec
import rl.core

kw = {'integrator_accuracy': a.acc, 'frame_skip': a.frame_skip}
vec = vecenv.InProcessVecEnv('Arm2DEnv', a.envs, dict(kw, seed=a.seed * 100))
mean = np.zeros(16); std = np.ones(16)
if a.norm:
    e = envs.make('Arm2DEnv', seed=999, **kw)
    o = e.reset(); xs = [o]
    rng = np.random.RandomState(0)
    for t in range(3000 // a.frame_skip):
        o, r, te, tr, _ = e.step(rng.uniform(0, 1, 6))
        xs.append(o)
        if te or tr:
            xs.append(e.reset())
    xs = np.asarray(xs); mean = xs.mean(0); std = xs.std(0) + 1e-3
    e.close()

class Proc(rl.core.Processor):
    def process_observation(self, o):
        return np.clip((np.asarray(o) - mean) / std, -10, 10)
    def process_reward(self, r):
        k = a.frame_skip
        d2 = k - r  # sum of squared distances over the skipped frames
        if a.reward == 'raw':
            return r
        if a.reward == 'd2x10':
            return -10 * d2
        if a.reward == 'd2x100':
            return -100 * d2
        if a.reward == 'd':
            return -np.sqrt(max(d2, 0) / k) * k
        if a.reward == 'd10':
            return -10 * np.sqrt(max(d2, 0) / k) * k
        if a.reward == 'd3':
            return -3 * np.sqrt(max(d2, 0) / k) * k
        raise ValueError(a.reward)

tf.random.set_seed(a.seed)
agent = SAC.from_spaces(vec.observation_space, vec.action_space,
                        hidden=tuple(int(h) for h in a.hidden.split(',')),
                        initial_alpha=a.alpha0, seed=a.seed, target_entropy=a.target_entropy, updates_per_step=a.upd,
                        processor=Proc())
agent.compile(adam(3e-4))
ev = envs.make('Arm2DEnv', integrator_accuracy=a.acc, frame_skip=a.frame_skip)

def evaluate():
    rets, dists = [], []
    for k in range(a.eval_eps):
        o = ev.reset(seed=10000 + k); ret = 0; ds = []
        while True:
            act = agent.select_actions(agent.state_batch(Proc().process_observation(o)[None].astype(np.float32)), explore=False)
            act = agent.to_env_action(act)[0]
            o, r, te, tr, _ = ev.step(act)
            ret += r; ds.append(np.hypot(*(np.asarray(o[-2:]) - o[:2])))
            if te or tr:
                break
        rets.append(ret); dists.append(np.mean(ds[len(ds) // 2:]))
    return float(np.mean(rets)), float(np.mean(dists))

t0 = time.time(); done = 0
while done < a.sim_steps:
    n = a.eval_every // a.frame_skip
    s = train_vec(agent, vec, nb_steps=n)
    done += s['steps'] * a.frame_skip
    r, d = evaluate()
    tr = s['returns']
    print(json.dumps({'tag': a.tag, 'sim_steps': done, 'eval_return': round(r, 2), 'eval_dist': round(d, 4),
                      'train_return': round(float(np.mean(tr)), 2) if tr else None,
                      'alpha': round(float(agent.alpha), 4) if hasattr(agent, 'alpha') else None,
                      'min': round((time.time() - t0) / 60, 1)}), flush=True)
