"""Real `python farm.py` processes: stopping leaves nothing behind, osim-rl steps through them,
keys work end to end."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import farmer
from conftest import ROOT, descendants_alive, wait_until


@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGINT])
@pytest.mark.slow
def test_stopping_a_farm_leaves_no_process_behind(process_farm, sig):
    f = process_farm(capacity=3)
    with farmer.Farmer(farms=[('127.0.0.1', 3, f.port)], start_local=False) as fm:
        env = fm.vec_env('CheapEnv', 3, {})
        env.reset()
        env.step(np.zeros((3, 2)))
        assert len(descendants_alive(f.process.pid)) >= 4  # the farm, its workers (+forkserver)
        log = f.stop(sig)
    assert f.process.returncode == 0, log
    assert wait_until(lambda: descendants_alive(f.process.pid) == []), log
    assert 'stopped; all workers killed' in log


@pytest.mark.slow
def test_a_farm_started_from_another_directory_builds_envs(process_farm, tmp_path):
    """Regression: the workers' forkserver once imported osim-rl's top-level `envs` instead of
    ours when farm.py was started outside the project directory."""
    f = process_farm(capacity=1, cwd=str(tmp_path))
    with farmer.Farmer(farms=[('127.0.0.1', 1, f.port)], start_local=False) as fm:
        env = fm.vec_env('CheapEnv', 1, {})
        assert env.reset().tolist() == [[0, 0, 0]]


@pytest.mark.slow
def test_a_keyed_farm_serves_a_farmer_with_the_key(process_farm):
    f = process_farm(capacity=1, extra=['--key', 'lab secret'])
    with pytest.raises(Exception, match='wrong or missing key'):  # NoFarmError (a UserError)
        farmer.Farmer(farms=[('127.0.0.1', 1, f.port)], key='', start_local=False)
    with farmer.Farmer(farms=[('127.0.0.1', 1, f.port)], key='lab secret') as fm:
        env = fm.vec_env('CheapEnv', 1, {})
        assert env.reset().shape == (1, 3)


@pytest.mark.parametrize('name,kwargs,obs_size,act_size', [
    ('L2M2019Env', {'difficulty': 2, 'seed': 1}, 339, 22),
    ('Arm2DEnv', {}, 16, 6)])
@pytest.mark.slow
def test_osim_envs_step_through_a_farm(process_farm, name, kwargs, obs_size, act_size):
    f = process_farm(capacity=2)
    with farmer.Farmer(farms=[('127.0.0.1', 2, f.port)], start_local=False) as fm:
        env = fm.vec_env(name, 2, kwargs)
        assert env.observation_space.shape == (obs_size,)
        assert env.action_space.shape == (act_size,)
        assert env.max_episode_steps in (1000, 200)
        obs = env.reset(seed=0)
        assert obs.shape == (2, obs_size) and np.isfinite(obs).all()
        rng = np.random.RandomState(0)
        ended = 0
        for _ in range(30):
            obs, rewards, terminated, truncated, infos = env.step(rng.uniform(0, 1, (2, act_size)))
            assert np.isfinite(obs).all() and np.isfinite(rewards).all()
            ended += int((terminated | truncated).sum())
            assert not any('lost' in info for info in infos)
        assert env.last_obs.shape == (2, obs_size)


def test_a_farm_raises_its_open_file_limit_for_many_workers(process_farm):
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 65536 if hard == resource.RLIM_INFINITY else hard
    if wanted <= 256:
        pytest.skip('the hard limit (%s) leaves nothing to raise' % hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))  # the farm inherits this
    try:
        f = process_farm(capacity=1)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    with open('/proc/%d/limits' % f.process.pid) as limits:
        line = [l for l in limits if l.startswith('Max open files')][0]
    assert int(line.split()[3]) == wanted


LEARNER = textwrap.dedent('''
    import json, sys, time
    import Pyro4
    Pyro4.config.SERIALIZER = 'msgpack'
    p = Pyro4.Proxy('PYRO:farm@127.0.0.1:%s' % sys.argv[1])
    lease = p.open_lease(3600)  # asks for more than the farm allows: capped at its --lease-ttl
    ids = p.make(lease, 'CheapEnv', {}, 2)['env_ids']
    p.reset(lease, ids)
    print(json.dumps(p.worker_pids(lease)), flush=True)
    time.sleep(3600)
''')


@pytest.mark.slow
def test_a_killed_learners_capacity_comes_back_long_before_its_ttl(process_farm):
    """Regression (issue 8, 7): a learner killed with SIGKILL kept its environments until its
    lease expired, so a new learner was refused meanwhile. Now the farm notices the learner's
    connection close and releases them --release-after seconds later."""
    f = process_farm(capacity=2, extra=['--release-after', '2', '--lease-ttl', '300'])
    learner = subprocess.Popen([sys.executable, '-c', LEARNER, str(f.port)], cwd=ROOT,
                               stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(pid) for pid in json.loads(learner.stdout.readline()).values()]
        with farmer.Farmer(farms=[('127.0.0.1', 2, f.port)], start_local=False) as fm:
            link = fm.links[0]
            held = link.call('info')
            assert held['in_use'] == 2 and 200 < held['frees_in'] <= 300
            learner.kill()  # SIGKILL: no atexit, no close_lease
            learner.wait()
            killed_at = time.time()
            while link.call('info')['in_use'] and time.time() - killed_at < 60:
                time.sleep(0.2)
            assert link.call('info')['in_use'] == 0
            # release-after (2 s) plus the reaper's beat, nowhere near the TTL (300 s)
            assert time.time() - killed_at < 10
            env = fm.vec_env('CheapEnv', 2, {})  # the full capacity, at once
            assert env.reset().shape == (2, 3)
    finally:
        if learner.poll() is None:
            learner.kill()
            learner.wait()
    assert wait_until(lambda: not any(os.path.exists('/proc/%d' % pid) and _state(pid) != 'Z'
                                      for pid in pids))
    log = f.stop()
    assert 'disconnected' in log and 'releasing 2 environments' in log, log


def _state(pid):
    try:
        with open('/proc/%d/stat' % pid) as stat:
            return stat.read().rsplit(')', 1)[1].split()[0]
    except (IOError, OSError):
        return 'gone'
