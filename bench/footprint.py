"""bench/footprint.py: what a farm holds per served environment, and what a learner holds per farm.

Read from Linux's ``/proc``, so a user can size a node and a learner:

- :func:`memory`: one process's resident memory, ``rss_mb`` (every page it maps, shared ones
  counted in full) and ``pss_mb`` (shared pages split among the processes sharing them: the
  figure that adds up across a farm's processes);
- :func:`farm_memory`: a local ``farm.py`` serving ``n`` environments of one kind: the farm
  process idle and serving, its forkserver, each worker (one process per environment), and
  ``per_env_pss_mb``, a worker's PSS plus what the farm process grew by per environment;
- :func:`learner_handles`: this process's OS threads and open sockets, to be read with a
  Farmer open over 1, 2, 4, 8 hosts (bench/cluster_bench.py): how they grow with farms.
"""
import os
import time

import numpy as np

MB = 1024.0


def _status_kb(pid, field):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    return 0


def memory(pid):
    """``{'rss_mb', 'pss_mb'}`` of process ``pid`` (PSS from smaps_rollup; RSS where the kernel
    has no rollup)."""
    rss = _status_kb(pid, 'VmRSS')
    pss = None
    try:
        with open('/proc/%d/smaps_rollup' % pid) as f:
            for line in f:
                if line.startswith('Pss:'):
                    pss = int(line.split()[1])
                    break
    except (IOError, OSError):
        pass
    return {'rss_mb': round(rss / MB, 1), 'pss_mb': round((rss if pss is None else pss) / MB, 1)}


def children(pid):
    """The pids of the live processes whose parent is ``pid``."""
    from bench import drills
    return sorted(drills.processes(lambda child, stat: stat[1] == pid))


def farm_tree(farm_pid):
    """``(forkservers, workers)`` under a farm: its worker processes are started by a forkserver
    (farmside/envworker.py), a child of the farm; 2.7 farms fork workers directly."""
    forkservers, workers, alone = [], [], []
    for child in children(farm_pid):
        below = children(child)
        if below:
            forkservers.append(child)
            workers += below
        else:  # a 2.7 worker, or a helper (multiprocessing's resource tracker) beside the server
            alone.append(child)
    return forkservers, (workers if forkservers else alone)


def _mean(rows, key):
    return round(float(np.mean([r[key] for r in rows])), 1) if rows else None


def farm_memory(env_name, kwargs, n, steps=20):
    """A local farm of capacity ``n`` serving ``n`` environments ``env_name(**kwargs)``, stepped
    ``steps`` times with random actions: a dict of MB figures (see the module docstring)."""
    from bench import farm_bench
    from host import local_farm
    ports = []
    # a loopback farm takes no key: one left in the environment (bench/cluster_bench.py sets its
    # hosts') would reach the farm but not its learner's link
    key = os.environ.pop('FARM_KEY', None)
    try:
        fm, processes = farm_bench.start_local_farms([n], ports)
    finally:
        if key is not None:
            os.environ['FARM_KEY'] = key
    farm_pid = processes[0].pid
    try:
        time.sleep(0.5)
        idle = memory(farm_pid)
        with fm.vec_env(env_name, n, kwargs) as env:
            env.reset()
            rng = np.random.default_rng(0)
            low, high = env.action_space.low, env.action_space.high
            for _ in range(steps):
                env.step(rng.uniform(low, high, (n,) + tuple(env.action_space.shape)))
            serving = memory(farm_pid)
            forkservers, workers = farm_tree(farm_pid)
            per_worker = [memory(pid) for pid in workers]
            forkserver = [memory(pid) for pid in forkservers]
    finally:
        fm.close()
        for process in processes:
            local_farm.stop(process)
    growth = max(0.0, serving['pss_mb'] - idle['pss_mb']) / n
    return {'workers': len(workers),
            'worker_rss_mb': _mean(per_worker, 'rss_mb'),
            'worker_pss_mb': _mean(per_worker, 'pss_mb'),
            'farm_idle_rss_mb': idle['rss_mb'], 'farm_serving_rss_mb': serving['rss_mb'],
            'farm_serving_pss_mb': serving['pss_mb'],
            'forkserver_pss_mb': _mean(forkserver, 'pss_mb'),
            'per_env_pss_mb': round((_mean(per_worker, 'pss_mb') or 0.0) + growth, 1)}


def learner_handles():
    """``{'threads', 'sockets'}`` of this process now (OS threads: Python's and TensorFlow's
    alike)."""
    threads = len(os.listdir('/proc/self/task'))
    sockets = 0
    for fd in os.listdir('/proc/self/fd'):
        try:
            if os.readlink('/proc/self/fd/%s' % fd).startswith('socket:'):
                sockets += 1
        except OSError:  # closed since the listing
            pass
    return {'threads': threads, 'sockets': sockets}
