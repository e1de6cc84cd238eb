#!/usr/bin/env python
"""cluster_bench.py: one learner over many hosts, measured on one machine.

    python bench/cluster_bench.py --json [--quick] [--only trace,ingest,learners,cutoff]

Hosts are network namespaces (bench/netns.py), each with its own address behind a veth pair and
its own ``farm.py`` (listening on that address, with a shared key); the learner runs here and
reaches them over the veths, as over a LAN. Environments sleep instead of simulating, so the
figures mean on 2 cores what they would on 64: what is measured is the farms' dispatch, the wire
and the learner, not the simulator.

- ``cluster_l2m_trace_64``: 64 ``TraceEnv`` replaying the recorded L2M2019Env step times over 4
  hosts (16 each), one learner stepping asynchronously with random actions: env steps/s over the
  ideal (64 / mean step time). ``cluster_l2m_trace_64_delay5ms``: the same through TCP proxies
  that add 5 ms each way (a LAN under load; run in a process of their own here, since this
  machine's kernel has no netem). ``cluster_l2m_trace_128``: 128 over 8 hosts.
- ``ingest_<mode>_<N>``: the learner's ingest limit: ``SlowEnv`` with no step time (339 floats
  in, 22 out: L2M2019Env's sizes) over 4 hosts (N = 32, 64) or 8 (N = 128, 256), SAC (2 x 256)
  training with updates off (``updates_per_step=0``, no warm-up): its batched policy forward
  pass, the replay storage, the farmer's threads. ``..._us_per_step`` is the learner process's
  CPU time per env step (CPU time, so the figure holds although the farms share these cores),
  ``..._steps_per_s`` the rate it took in. Measured in the steady state: the replay ring's pages
  already touched, as they are once a learner has stored its first ``memory_limit`` transitions;
  ``ingest_async_256_first_fill_*`` is the same with a fresh memory of a million, whose first
  writes pay the kernel's zeroing of new pages. ``learner_cpu_us_per_env_step_256`` is
  ``ingest_async_256_us_per_step`` under the issue's name.
- ``learner_threads_<H>hosts`` / ``learner_sockets_<H>hosts``: what the learner holds above its
  start with 8 environments per host open over H = 1, 2, 4, 8 hosts, ``..._per_farm`` the
  growth per farm, ``..._left_after_close`` what remains once all is closed.
- ``memory_<env>_*``: a farm serving SlowEnv (8) or L2M2019Env (2): MB per served environment
  (``per_env_pss_mb``), a worker's RSS and PSS, the farm process idle and serving
  (bench/footprint.py).

- ``two_learners_*``: two learners, each in its own process, asking 16 environments each of 4
  hosts of capacity 8: what each farm has in use, each one's rate of its ideal, and once one is
  killed (-9), the seconds until its environments are free on every farm.
- ``cutoff_*``: 64 environments (DrillEnv, 30 ms steps) over 4 hosts, one host's link cut for
  good 5 s in: env steps per second throughout, the rate while its environments are lost, the
  seconds until re-placing them on the other three (above capacity, as the overcommit policy
  lends) brings the rate back to 90%, and the books of every transition received (the fault
  drills' accounting): ``..._duplicated`` (received twice), ``..._lost`` (missing inside an
  episode), ``cutoff_steps_marked_lost`` (steps that died with the host, reported as such).

``--json`` prints one JSON object; a summary goes to stderr. Needs root (namespaces); every
host, farm and proxy is removed at the end, on Ctrl-C and on SIGTERM.
"""
import argparse
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np

from bench import farm_bench, footprint, netns
from host.link import FarmLink

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
log = logging.getLogger('cluster_bench')
PORT = 20099
TARGETS = {'cluster_l2m_trace_64': ('>=', 0.90), 'cluster_l2m_trace_128': ('>=', 0.85),
           'learner_cpu_us_per_env_step_256': ('<=', 25.0)}
INGEST = ((32, 4), (64, 4), (128, 8), (256, 8))
PARTS = ('trace', 'ingest', 'handles', 'learners', 'cutoff', 'memory')
L2M_SIZES = {'step_seconds': 0.0, 'obs_size': 339, 'act_size': 22}

PROXY = r'''
import sys, time
from bench.drills import LinkProxy
targets = [(h, int(p)) for h, p in (t.split(':') for t in sys.argv[2:])]
proxies = [LinkProxy(t, delay=float(sys.argv[1])) for t in targets]
print(' '.join(str(p.port) for p in proxies), flush=True)
sys.stdin.read()
'''


class Cluster(object):
    """``count`` hosts, each with a farm of ``capacity`` on its address; the key is this run's."""

    def __init__(self, count, capacity, logs, extra=(), net=217):
        self.key = os.urandom(12).hex()
        self.hosts = netns.make_hosts(count, 'cb%d_%d_' % (os.getpid() % 1000, net), net)
        self.farms = []
        try:
            for host in self.hosts:
                out = open(os.path.join(logs, '%s.log' % host.name), 'w')
                command = host.inside([sys.executable, os.path.join(ROOT, 'farm.py'), '--host',
                                       host.address, '--port', str(PORT), '--capacity',
                                       str(capacity)] + list(extra))
                self.farms.append(subprocess.Popen(
                    command, env=dict(os.environ, FARM_KEY=self.key), stdout=out,
                    stderr=subprocess.STDOUT, start_new_session=True))
                out.close()
            for host in self.hosts:
                link = FarmLink(host.address, capacity, PORT, self.key)
                deadline = time.time() + 60
                while not link.probe() and time.time() < deadline:
                    time.sleep(0.3)
                link.close()
                if not link.up:
                    raise RuntimeError('the farm on %s did not answer: %s' % (host.address,
                                                                               link.error))
        except BaseException:
            self.close()
            raise

    def farmer(self, hosts, capacity, ports=None):
        """A Farmer over the first ``hosts`` farms (``ports``: through proxies on loopback)."""
        import farmer
        os.environ['FARM_KEY'] = self.key
        if ports:
            farms = [('127.0.0.1', capacity, port) for port in ports]
        else:
            farms = [(host.address, capacity, PORT) for host in self.hosts[:hosts]]
        return farmer.Farmer(farms=farms, start_local=False)

    def close(self):
        for process in self.farms:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.farms:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        for host in self.hosts:
            host.close()
        self.hosts, self.farms = [], []


def trace_run(fm, n, seconds, warmup):
    stats = farm_bench.trace_stats('l2m')
    ideal = n / stats['mean_step_s']
    rng = np.random.default_rng(7)
    with fm.vec_env('TraceEnv', n, {'trace': 'l2m', 'seed': 0, 'start': 'time'},
                    batch_size=1) as env:
        env.reset()
        steps, wall = farm_bench.run_async(env, seconds, rng, warmup)
    rate = steps / wall
    return {'': round(rate / ideal, 4), '_steps_per_s': round(rate, 1),
            '_ideal_steps_per_s': round(ideal, 1), '_steps': steps}


def bench_trace(cluster, size, result):
    for n, hosts in ((64, 4), (128, 8)):
        with cluster.farmer(hosts, n // hosts) as fm:
            for key, value in trace_run(fm, n, size['seconds'], size['warmup']).items():
                result['cluster_l2m_trace_%d%s' % (n, key)] = value
        log.info('trace %d over %d hosts: %.3f of ideal', n, hosts,
                 result['cluster_l2m_trace_%d' % n])
    targets = ['%s:%d' % (host.address, PORT) for host in cluster.hosts[:4]]
    proxy = subprocess.Popen([sys.executable, '-c', PROXY, '0.005'] + targets, cwd=ROOT,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             start_new_session=True)
    try:
        ports = [int(p) for p in proxy.stdout.readline().split()]
        with cluster.farmer(4, 16, ports) as fm:
            for key, value in trace_run(fm, 64, size['seconds'], size['warmup']).items():
                result['cluster_l2m_trace_64_delay5ms%s' % key] = value
        log.info('trace 64 over 4 hosts, 5 ms each way: %.3f of ideal',
                 result['cluster_l2m_trace_64_delay5ms'])
    finally:
        proxy.kill()
        proxy.wait()


def ingest_once(cluster, n, hosts, mode, size, warm_memory):
    """``(learner CPU us per env step, env steps/s)`` of one SAC learner taking in ``n``
    zero-time environments over ``hosts`` hosts, updates off. ``warm_memory``: the replay ring
    (10^5 transitions) has every page touched first, as a learner's memory is after its first
    ``memory_limit`` transitions (at 40,000 env steps/s: 25 s into a run of a million); else a
    fresh memory of 10^6, whose first writes pay the kernel's zeroing of new pages."""
    from agents.compat import tf
    from agents.sac import SAC
    with cluster.farmer(hosts, n // hosts) as fm:
        env = fm.vec_env('SlowEnv', n, L2M_SIZES)
        tf.random.set_seed(0)
        agent = SAC.from_spaces(env.observation_space, env.action_space,
                                hidden=(256, 256), nb_steps_warmup=0, updates_per_step=0,
                                memory_limit=10 ** 5 if warm_memory else 10 ** 6, seed=0)
        agent.compile()
        if warm_memory:
            for array in (agent.memory.observations, agent.memory.next_observations,
                          agent.memory.actions, agent.memory.rewards, agent.memory.terminals):
                array.fill(0.0)
        agent.train_vec(env, nb_steps=n * 5, mode=mode)  # warm: graphs traced, farms up
        steps = n * size['ingest_vector_steps']
        cpu, wall = time.process_time(), time.perf_counter()
        summary = agent.train_vec(env, nb_steps=steps, mode=mode)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        taken = summary['steps']
        env.close()
    return round(cpu / taken * 1e6, 2), round(taken / wall, 1)


def bench_ingest(cluster, size, result):
    for n, hosts in INGEST:
        for mode in ('async', 'lockstep'):
            key = 'ingest_%s_%d' % (mode, n)
            result[key + '_us_per_step'], result[key + '_steps_per_s'] = ingest_once(
                cluster, n, hosts, mode, size, warm_memory=True)
            log.info('ingest %s N=%d over %d hosts: %.1f us of learner CPU per env step, %.0f '
                     'env steps/s', mode, n, hosts, result[key + '_us_per_step'],
                     result[key + '_steps_per_s'])
    key = 'ingest_async_256_first_fill'
    result[key + '_us_per_step'], result[key + '_steps_per_s'] = ingest_once(
        cluster, 256, 8, 'async', size, warm_memory=False)
    log.info('ingest async N=256, a fresh replay memory: %.1f us of learner CPU per env step',
             result[key + '_us_per_step'])
    if 'ingest_async_256_us_per_step' in result:  # the name for the headline figure
        result['learner_cpu_us_per_env_step_256'] = result['ingest_async_256_us_per_step']


def bench_handles(cluster, result):
    """The learner's OS threads and sockets with a Farmer and 8 SlowEnvs per host open over 1,
    2, 4 and 8 hosts (stepped asynchronously, so every receiver is up), and once all is closed
    again."""
    base = footprint.learner_handles()

    def settled():  # threads end a moment after close() returns: wait (5 s at most) for them
        deadline, now = time.time() + 5, footprint.learner_handles()
        while now != base and time.time() < deadline:
            time.sleep(0.1)
            now = footprint.learner_handles()
        return now

    rows = {}
    for hosts in (1, 2, 4, 8):
        settled()  # the previous farmer's threads are not counted with this one's
        with cluster.farmer(hosts, 8) as fm:
            with fm.vec_env('SlowEnv', 8 * hosts, L2M_SIZES) as env:
                env.reset()
                farm_bench.run_async(env, 0.5, np.random.default_rng(0))  # the default mode
                rows[hosts] = footprint.learner_handles()
    after = settled()
    for hosts, row in rows.items():
        for what in ('threads', 'sockets'):
            result['learner_%s_%dhosts' % (what, hosts)] = row[what] - base[what]
    for what in ('threads', 'sockets'):  # growth per farm, from 1 to 8 hosts
        result['learner_%s_per_farm' % what] = round(
            (rows[8][what] - rows[1][what]) / 7.0, 2)
        result['learner_%s_left_after_close' % what] = after[what] - base[what]
    log.info('learner at 8 hosts: %d threads, %d sockets above its start (%.1f / %.1f per farm)',
             result['learner_threads_8hosts'], result['learner_sockets_8hosts'],
             result['learner_threads_per_farm'], result['learner_sockets_per_farm'])


def bench_memory(result, quick):
    """Memory per served environment: a local farm serving SlowEnv (L2M sizes) and
    L2M2019Env (the simulator's own; 2 of them, this machine's cores)."""
    for name, env, kwargs, n in (('slowenv', 'SlowEnv', L2M_SIZES, 8),
                                 ('l2m', 'L2M2019Env', {'frame_skip': 4}, 2)):
        figures = footprint.farm_memory(env, kwargs, n, steps=5 if quick else 20)
        for key, value in figures.items():
            result['memory_%s_%s' % (name, key)] = value
        log.info('memory per served %s: %.1f MB (PSS; a worker\'s RSS %.1f MB)', env,
                 figures['per_env_pss_mb'], figures['worker_rss_mb'])


LEARNER = r"""
import json, os, sys, time
import numpy as np
import farmer
from bench import farm_bench
farms = json.loads(sys.argv[1])
n, seconds = int(sys.argv[2]), float(sys.argv[3])
with farmer.Farmer(farms=[tuple(f) for f in farms], start_local=False) as fm:
    with fm.vec_env('TraceEnv', n, {'trace': 'l2m', 'seed': 0, 'start': 'time'}) as env:
        env.reset()
        print(json.dumps({'ready': time.time()}), flush=True)
        steps, wall = farm_bench.run_async(env, seconds, np.random.default_rng(1), 1.0)
        print(json.dumps({'steps': steps, 'wall': wall}), flush=True)
"""


def in_use(cluster, hosts):
    """Environments in use on each of the first ``hosts`` farms, as they answer now."""
    used = []
    for host in cluster.hosts[:hosts]:
        link = FarmLink(host.address, 1, PORT, cluster.key)
        link.probe()
        used.append(link.info['in_use'] if link.up else None)
        link.close()
    return used


def bench_learners(logs, size, result):
    """Two learners, each in its own process, sharing 4 hosts by leases (16 environments each, 8
    per host of capacity 8 each): what each gets and steps, and once one is killed (-9), how
    long until its environments are free on every farm."""
    cluster = Cluster(4, 8, logs, net=219)  # 32 in all: exactly what the two ask for
    farms = json.dumps([[host.address, 4, PORT] for host in cluster.hosts])
    env = dict(os.environ, FARM_KEY=cluster.key, TF_CPP_MIN_LOG_LEVEL='2')
    learners = [subprocess.Popen([sys.executable, '-c', LEARNER, farms, '16',
                                  str(size['seconds'])], cwd=ROOT, env=env, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                 start_new_session=True) for _ in range(2)]
    try:
        for learner in learners:
            json.loads(learner.stdout.readline())  # built: it holds its 16
        result['two_learners_in_use_per_host'] = in_use(cluster, 4)
        done = [json.loads(learner.stdout.readline()) for learner in learners]
        ideal = 16 / farm_bench.trace_stats('l2m')['mean_step_s']
        for k, d in enumerate(done):
            result['two_learners_%d_of_ideal' % k] = round(d['steps'] / d['wall'] / ideal, 4)
        # again, and kill the first while both hold their environments
        learners = [subprocess.Popen([sys.executable, '-c', LEARNER, farms, '16', '60'],
                                     cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
                    for _ in range(2)]
        for learner in learners:
            json.loads(learner.stdout.readline())
        killed = time.time()
        os.killpg(learners[0].pid, signal.SIGKILL)
        learners[0].wait()
        while time.time() - killed < 60 and sum(in_use(cluster, 4)) > 16:
            time.sleep(0.25)
        result['two_learners_freed_after_kill_s'] = round(time.time() - killed, 2)
        result['two_learners_in_use_after_kill'] = in_use(cluster, 4)
    finally:
        for learner in learners:
            if learner.poll() is None:
                os.killpg(learner.pid, signal.SIGKILL)
                learner.wait()
        cluster.close()
    log.info('two learners: %s of ideal each; a killed one\'s environments free after %.1f s',
             [result.get('two_learners_%d_of_ideal' % k) for k in (0, 1)],
             result['two_learners_freed_after_kill_s'])


def bench_cutoff(logs, size, result):
    """64 environments over 4 hosts (farms with --step-timeout 3: the farmer's call timeout is
    33 s); 5 s into the run one host's link is cut for good: env steps per second before, while
    its environments are lost, and the seconds until re-placing them brings the rate back.
    ``DrillEnv`` (30 ms steps) so that every transition received names its environment instance,
    episode and step: the fault drills' accounting (bench/drills.py) then counts what came twice
    and what is missing from an episode."""
    from bench import drills
    from vecenv import contract
    cluster = Cluster(4, 32, logs, extra=['--step-timeout', '3'], net=218)
    lost_host = cluster.hosts[3].address
    states, nexts, marked_lost = [], [], 0
    try:
        with cluster.farmer(4, 16) as fm:
            kwargs = {'episode_length': 400, 'step_seconds': 0.03}
            with fm.vec_env('DrillEnv', 64, kwargs) as env:
                current = np.array(env.reset(), dtype=np.float64)
                rng = np.random.default_rng(3)
                act = env.action_space.shape[-1]
                counts = [0] * size['cutoff_seconds']
                env.send(rng.uniform(-1, 1, (64, act)), np.arange(64))
                started, cut = time.time(), None
                while time.time() - started < size['cutoff_seconds']:
                    if cut is None and time.time() - started >= 5.0:
                        cut = time.time()
                        cluster.hosts[3].set_link(False)
                    obs, _, terminated, truncated, infos = env.recv(timeout=0.5)
                    ids = contract.env_ids_of(infos)
                    for k, i in enumerate(ids):  # the learner's books: (s, s') per transition
                        if 'lost' in infos[k]:  # its step died with the host: no transition
                            marked_lost += 1
                        else:
                            ended = terminated[k] or truncated[k]
                            states.append(current[i].copy())
                            nexts.append(infos[k]['terminal_observation'] if ended else obs[k])
                        current[i] = obs[k]
                    second = int(time.time() - started)
                    if second < len(counts):
                        counts[second] += len(ids)
                    if len(ids):
                        env.send(rng.uniform(-1, 1, (len(ids), act)), ids)
                placed = [p.link.host for p in env.places]
    finally:
        cluster.close()
    before = float(np.mean(counts[1:5]))
    back = next((k for k in range(6, len(counts)) if counts[k] >= 0.9 * before), None)
    books = drills.count_transitions(np.array(states), np.array(nexts))
    result['cutoff_steps_per_second'] = counts
    result['cutoff_rate_while_lost_of_before'] = round(float(np.mean(counts[6:9])) / before, 4)
    result['cutoff_seconds_to_recover'] = None if back is None else back - 5
    result['cutoff_envs_left_on_lost_host'] = placed.count(lost_host)
    result['cutoff_transitions_received'] = books['stored']
    result['cutoff_transitions_duplicated'] = books['duplicated']
    result['cutoff_transitions_lost'] = books['gaps']
    result['cutoff_transitions_mismatched'] = books['mismatched'] + books['phantom']
    result['cutoff_steps_marked_lost'] = marked_lost
    log.info('host cut off: %.2f of the rate at first, back to 90%% after %s s; %d transitions '
             'received, %d duplicated, %d missing, %d steps marked lost with the host',
             result['cutoff_rate_while_lost_of_before'], result['cutoff_seconds_to_recover'],
             books['stored'], books['duplicated'], books['gaps'], marked_lost)


def check_targets(result):
    met = {}
    for key, (op, bound) in TARGETS.items():
        if key in result:
            met[key] = result[key] >= bound if op == '>=' else result[key] <= bound
    return met


def _interrupt(signum, frame):
    raise KeyboardInterrupt('signal %d' % signum)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--json', action='store_true', help='print one JSON object')
    parser.add_argument('--quick', action='store_true', help='shorter windows')
    parser.add_argument('--only', default='trace,ingest,handles,learners,cutoff,memory',
                        help='some of trace, ingest, handles, learners, cutoff, memory '
                             '(default: all)')
    args = parser.parse_args(argv)
    parts = set(args.only.split(','))
    unknown = parts - set(PARTS)
    if unknown:
        sys.stderr.write('cluster_bench.py: --only: unknown part(s) %s; the parts are %s\n'
                         % (', '.join(sorted(unknown)), ', '.join(PARTS)))
        return 2
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format='%(asctime)s %(name)s %(message)s')
    why = netns.unavailable()
    if why:
        sys.stderr.write('cluster_bench.py: %s\n' % why)
        return 2
    signal.signal(signal.SIGTERM, _interrupt)
    size = {'seconds': 10.0, 'warmup': 3.0, 'ingest_vector_steps': 40, 'cutoff_seconds': 60}
    if args.quick:
        size = {'seconds': 4.0, 'warmup': 2.0, 'ingest_vector_steps': 15, 'cutoff_seconds': 50}
    result = {'cores': os.cpu_count(), 'host': socket.gethostname(), 'quick': args.quick,
              'loadavg_start': [round(x, 2) for x in os.getloadavg()]}
    started = time.time()
    logs = os.path.join('/tmp', 'cluster-bench-%d' % os.getpid())
    os.makedirs(logs, exist_ok=True)
    cluster = None
    try:
        if parts & {'trace', 'ingest', 'handles'}:
            cluster = Cluster(8, 32, logs)
        if 'trace' in parts:
            bench_trace(cluster, size, result)
        if 'ingest' in parts:
            bench_ingest(cluster, size, result)
        if 'handles' in parts:
            bench_handles(cluster, result)
        if cluster is not None:
            cluster.close()
        if 'learners' in parts:
            bench_learners(logs, size, result)
        if 'cutoff' in parts:
            bench_cutoff(logs, size, result)
        if 'memory' in parts:
            bench_memory(result, args.quick)
    except KeyboardInterrupt:
        result['interrupted'] = True
        log.warning('interrupted: removing the hosts')
    except Exception as e:  # one part failed: what the others measured is still printed
        log.exception('a part failed')
        result['error'] = '%s: %s' % (type(e).__name__, e)
    finally:
        if cluster is not None:
            cluster.close()
    result['hosts_left'] = [n for n in subprocess.run(['ip', 'netns', 'list'],
                                                      capture_output=True, text=True
                                                      ).stdout.split() if n.startswith('cb')]
    result['targets'] = dict((k, '%s %s' % v) for k, v in TARGETS.items())
    result['targets_met'] = check_targets(result)
    result['total_wall_s'] = round(time.time() - started, 1)
    result['farm_logs'] = logs
    if args.json:
        print(json.dumps(result, sort_keys=True))
    return 130 if result.get('interrupted') else 1 if result.get('error') else 0


if __name__ == '__main__':
    sys.exit(main())
