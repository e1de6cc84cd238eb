#!/usr/bin/env python
"""drill_learner.py: train_sac.py as the fault drills and the soak run it, with its books open.

    python bench/drill_learner.py [drill flags] [every train_sac.py flag]

The learner is train_sac.py's, built the same way from the same ``Config`` (read from
train_sac.py's source, so a flag added there is a flag here): ``config.prepare``,
``config.make_farmer``, ``farmer.vec_env``, ``SAC.from_spaces``, ``session.Session``,
``run.train``. What this adds is
only observation, never a change of behaviour:

- a recorder (unless ``--no-record``) around the vectorized env's ``reset``/``step_wait`` and
  ``async_reset``/``recv`` (both stepping modes, ``--stepping``): every
  transition the learner *received* (the observation it acted on, the next one or the episode's terminal observation,
  why an episode ended), to compare with what reached the replay memory;
- a heartbeat JSON (``--heartbeat``), rewritten a few times a second between vector steps:
  global step, episodes, updates, time;
- at the end (``--stop-file`` appears, or ``--max-seconds`` pass), ``run.train`` returns as after a
  Ctrl-C (checkpoint, curve), then ``--dump`` gets the replay memory and the received transitions
  (.npz) and ``--result`` a JSON (counters, loaded counters, error if training raised).

``--wait-file``: TensorFlow and the agent's modules are imported first, then the learner waits for
that file before it builds its farmer (so a drill can start a second learner "at once").
``--save-storm``: after ``--episodes`` episodes, alternate one vector step and ``run.save()`` until
killed, announcing each save before and after in the heartbeat, with a digest of the weights (the
checkpoint drill kills it mid-save and checks what a resumed learner loads).
"""
import argparse
import ast
import hashlib
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # noqa: E402

from run import config  # noqa: E402
from run import session  # noqa: E402
from vecenv.contract import end_reason, env_ids_of  # noqa: E402

TRAIN_SAC = os.path.join(ROOT, 'train_sac.py')


def train_sac_config():
    """train_sac.py's ``Config`` dataclass, without running the script (which trains at import)."""
    with open(TRAIN_SAC) as f:
        tree = ast.parse(f.read())
    keep = [node for node in tree.body
            if isinstance(node, (ast.Import, ast.ImportFrom)) and not (
                isinstance(node, ast.Import) and any(a.name in ('session', 'runconfig')
                                                     for a in node.names))
            or isinstance(node, ast.ClassDef) and node.name == 'Config']
    namespace = {'__name__': 'train_sac_config'}
    exec(compile(ast.Module(body=keep, type_ignores=[]), TRAIN_SAC, 'exec'), namespace)
    return namespace['Config']


def write_json(path, value):
    """Atomically: a reader never sees half a file."""
    if not path:
        return
    tmp = '%s.%d.tmp' % (path, os.getpid())
    with open(tmp, 'w') as f:
        json.dump(value, f)
    os.replace(tmp, path)


class Recorder(object):
    """What the learner received from the vectorized env, transition by transition, in either
    stepping mode: lockstep's ``reset``/``step_wait`` and asynchronous ``async_reset``/``recv``
    (a ``recv`` row of an environment being reset is its first observation, as the agent
    reads it; any other row is one step's result)."""

    def __init__(self, env):
        self.env = env
        self.current = None
        self.obs, self.next_obs, self.kind = [], [], []   # kind: 0 running, 1 ended (next = last)
        self.ended = []                                   # (env index, length, end reason)
        self.lengths = np.zeros(env.num_envs, dtype=np.int64)
        self.resetting = np.zeros(env.num_envs, dtype=bool)
        self.inner = {name: getattr(env, name)
                      for name in ('reset', 'step_wait', 'async_reset', 'recv')}
        env.reset, env.step_wait = self.reset, self.step_wait
        env.async_reset, env.recv = self.async_reset, self.recv

    def reset(self, *args, **kwargs):
        obs = self.inner['reset'](*args, **kwargs)
        self.current = np.array(obs, dtype=np.float32, copy=True)
        self.lengths[:] = 0
        self.resetting[:] = False
        return obs

    def step_wait(self):
        result = self.inner['step_wait']()
        obs, rewards, terminated, truncated, infos = result
        for i in range(len(rewards)):
            self._stepped(i, obs[i], terminated[i], truncated[i], infos[i])
        return result

    def async_reset(self, *args, **kwargs):
        self.inner['async_reset'](*args, **kwargs)
        self.resetting[:] = True

    def recv(self, *args, **kwargs):
        result = self.inner['recv'](*args, **kwargs)
        obs, rewards, terminated, truncated, infos = result
        for k, i in enumerate(env_ids_of(infos).tolist()):
            if self.resetting[i]:
                if self.current is None:
                    self.current = np.zeros((self.env.num_envs,) + np.shape(obs[k]),
                                            dtype=np.float32)
                self.current[i] = obs[k]
                self.lengths[i] = 0
                self.resetting[i] = False
            else:
                self._stepped(i, obs[k], terminated[k], truncated[k], infos[k])
        return result

    def _stepped(self, i, obs, terminated, truncated, info):
        self.lengths[i] += 1
        ended = bool(terminated or truncated)
        if ended:
            self.ended.append((i, int(self.lengths[i]), end_reason(bool(terminated), info)))
            self.lengths[i] = 0
            last = info.get('terminal_observation')
            if last is None:  # the agent stores nothing for it: nothing was received
                self.current[i] = obs
                return
            nxt = np.asarray(last, dtype=np.float32)
        else:
            nxt = obs
        self.obs.append(self.current[i].copy())
        self.next_obs.append(np.array(nxt, dtype=np.float32, copy=True))
        self.kind.append(int(ended))
        self.current[i] = obs


def weights_digest(agent, path='x.h5'):
    digest = hashlib.sha1()
    for _, model in sorted(agent.weight_files(path).items()):
        for w in model.get_weights():
            digest.update(np.ascontiguousarray(w).tobytes())
    return digest.hexdigest()[:16]


def main(argv=None):
    own = argparse.ArgumentParser(add_help=False)
    own.add_argument('--heartbeat', default='')
    own.add_argument('--stop-file', default='')
    own.add_argument('--wait-file', default='')
    own.add_argument('--max-seconds', type=float, default=3600.0)
    own.add_argument('--dump', default='')
    own.add_argument('--result', default='')
    own.add_argument('--save-storm', action='store_true')
    own.add_argument('--no-record', action='store_true',
                     help='no recorder and no dump (the soak: the record grows with every step)')
    mine, rest = own.parse_known_args(argv)
    cfg = config.parse_config(train_sac_config(), TRAIN_SAC, rest)
    run_dir = config.prepare(cfg, 'sac')
    started = time.time()
    beat = {'pid': os.getpid(), 'phase': 'importing', 'global_step': 0, 'episodes': 0,
            'updates': 0, 'time': time.time()}
    write_json(mine.heartbeat, beat)

    from agents.compat import adam, tf
    from agents.sac import SAC

    if mine.wait_file:
        beat.update(phase='waiting', time=time.time())
        write_json(mine.heartbeat, beat)
        while not os.path.exists(mine.wait_file):
            time.sleep(0.05)
        started = time.time()

    result = {'pid': os.getpid(), 'error': None}
    agent = recorder = run = None
    last = [0.0]

    def heartbeat(phase='training', **extra):
        if agent is not None:
            beat.update(agent.counters())
        beat.update(phase=phase, time=time.time(), **extra)
        write_json(mine.heartbeat, beat)

    def stop_now():
        now = time.time()
        if now - last[0] >= 0.1:
            last[0] = now
            heartbeat()
        return (now - started > mine.max_seconds
                or bool(mine.stop_file) and os.path.exists(mine.stop_file))

    base = session.Progress

    class DrillProgress(base):
        """session's progress line, plus the heartbeat and the drill's stop request."""

        def tick(self):
            return base.tick(self) or stop_now()

    session.Progress = DrillProgress  # Session.train builds its Progress from this name
    try:
        # What train_sac.py does, in its order.
        farmer = config.make_farmer(cfg.farms, cfg.give_up_after)
        with config.closing_on_error(farmer):
            env = farmer.vec_env(cfg.env, cfg.n_envs, cfg.env_kwargs)
            config.require_box(env.action_space, 'SAC', cfg.env)
            recorder = None if mine.no_record else Recorder(env)
            tf.random.set_seed(cfg.seed)
            agent = SAC.from_spaces(env.observation_space, env.action_space, hidden=cfg.hidden,
                                    gamma=cfg.gamma, tau=cfg.tau, batch_size=cfg.batch_size,
                                    nb_steps_warmup=cfg.warmup,
                                    updates_per_step=cfg.updates_per_step,
                                    initial_alpha=cfg.initial_alpha,
                                    memory_limit=cfg.memory_limit, seed=cfg.seed)
            agent.compile(adam(cfg.lr))
            run = session.Session(cfg, 'sac', agent, env, farmer, run_dir)
        result.update(loaded=agent.counters(), loaded_digest=weights_digest(agent),
                      run_dir=run.run_dir)
        heartbeat(loaded=result['loaded'], loaded_digest=result['loaded_digest'])
        if mine.save_storm:
            run.train(cfg.episodes)
            k = 0
            while not stop_now():
                agent.train_vec(env, nb_steps=env.num_envs)
                k += 1
                heartbeat('saving', save=k, saving=dict(agent.counters(),
                                                        digest=weights_digest(agent)))
                run.save()
                heartbeat('saved', save=k, saved=dict(agent.counters(),
                                                      digest=weights_digest(agent)))
        else:
            run.train(10 ** 9)  # until the stop file or --max-seconds
    except BaseException as e:  # recorded for the drill, then raised again below
        result['error'] = '%s: %s' % (type(e).__name__, e)
        heartbeat('failed', error=result['error'])
        raise
    finally:
        if agent is not None:
            result['counters'] = agent.counters()
            result['memory_size'] = len(agent.memory)
            result['memory_limit'] = agent.memory.limit
        if recorder is not None:
            result['ended_episodes'] = len(recorder.ended)
        if mine.dump and agent is not None and recorder is not None:
            n, width = len(agent.memory), env.observation_space.shape[0]
            np.savez_compressed(
                mine.dump, memory_obs=agent.memory.observations[:n],
                memory_next=agent.memory.next_observations[:n],
                received_obs=np.array(recorder.obs, dtype=np.float32).reshape(-1, width),
                received_next=np.array(recorder.next_obs, dtype=np.float32).reshape(-1, width),
                received_kind=np.array(recorder.kind, dtype=np.int8),
                ended_env=np.array([e[0] for e in recorder.ended], dtype=np.int64),
                ended_length=np.array([e[1] for e in recorder.ended], dtype=np.int64),
                ended_reason=np.array([e[2] for e in recorder.ended], dtype='U16'))
        result['seconds'] = time.time() - started
        write_json(mine.result, result)
    heartbeat('stopping')
    run.close()
    heartbeat('done')
    return 0


if __name__ == '__main__':
    sys.exit(main())
