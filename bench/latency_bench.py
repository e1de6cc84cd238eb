#!/usr/bin/env python
"""latency_bench.py: the same learner over loopback and through a link that adds 20 ms each way,
lockstep and asynchronous: what a farm across a network costs, and how much asynchronous stepping
hides.

    python bench/latency_bench.py --json [--quick] [--n-envs 4] [--delay-ms 20]

One local farm (``farm.py`` on a free loopback port, started for this run). The learner reaches
it either directly (``loopback``) or through ``bench/drills.py``'s ``LinkProxy`` (``proxy``): a
TCP proxy that holds every chunk it forwards ``--delay-ms`` in each direction (this kernel has no
netem), so every call pays a round trip of twice that. The learner is ``agents.sac.SAC`` (two
hidden layers of 256, batch 256, one gradient update per env step: the train scripts' settings)
trained with ``agents.parallel.train_vec`` on ``--n-envs`` ``Pendulum-v1`` environments, in
``lockstep`` or ``async`` mode (``--batch-size``, default 1: act for whichever environments are
ready, learn while the others are out). One vector env per link and mode, all from the same farm;
one agent for all four (only its speed matters here). After an untimed warm-up past the agent's
``nb_steps_warmup`` (so every timed step learns), the four take timed windows of
``--steps`` env steps in turn, ``--rounds`` times (the first rotating: background load falls on
all alike).

Prints ONE JSON object on stdout: ``<link>_<mode>_steps_per_s`` for the four, ``proxy_vs_loopback_
lockstep`` / ``proxy_vs_loopback_async`` (env steps/s through the proxy / over loopback, the same
mode) and ``async_vs_lockstep_proxy``. The issue's figures (4 Pendulum envs, before the
asynchronous mode): 156 env steps/s over loopback, 78 through the proxy.
"""
import argparse
import logging
import os
import platform
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

from bench import farm_bench  # noqa: E402  (bench/: local farms, load probes)
from bench.drills import LinkProxy  # noqa: E402

log = logging.getLogger('latency_bench')

LINKS = ('loopback', 'proxy')
MODES = ('lockstep', 'async')
SIZES = {
    'quick': {'hidden': (32, 32), 'batch_size': 32, 'nb_steps_warmup': 32, 'warmup_steps': 48,
              'steps': 40, 'rounds': 1},
    'full': {'hidden': (256, 256), 'batch_size': 256, 'nb_steps_warmup': 256,
             'warmup_steps': 400, 'steps': 600, 'rounds': 3},
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--json', action='store_true',
                        help='print the one JSON object on stdout (the default; kept for clarity)')
    parser.add_argument('--quick', action='store_true', help='a small network, short windows')
    parser.add_argument('--n-envs', type=int, default=4)
    parser.add_argument('--delay-ms', type=float, default=20.0, help='added in each direction')
    parser.add_argument('--steps', type=int, default=None, help='env steps per timed window')
    parser.add_argument('--rounds', type=int, default=None, help='timed windows per setup')
    parser.add_argument('--batch-size', type=int, default=1,
                        help="the async mode's recv batch (default 1: whichever are ready)")
    parser.add_argument('--log-level', default='WARNING')
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format='%(asctime)s %(name)s %(levelname)s %(message)s')
    mode = 'quick' if args.quick else 'full'
    size = dict(SIZES[mode])
    for key in ('steps', 'rounds'):
        if getattr(args, key):
            size[key] = getattr(args, key)
    sys.stdout.flush()
    json_out = os.dup(1)  # stdout is for the JSON alone (TensorFlow and farms print)
    os.dup2(2, 1)
    os.chdir(ROOT)  # the local farm's workers find envs/ from the repository (see farm_bench)

    import farmer
    from agents.compat import tf
    from agents.sac import SAC
    from host import local_farm

    n = args.n_envs
    started = time.time()
    result = {'mode': mode, 'cores': os.cpu_count(), 'python': platform.python_version(),
              'n_envs': n, 'env': 'Pendulum-v1', 'delay_ms_each_way': args.delay_ms,
              'batch_size': args.batch_size,
              'size': dict(size, hidden=list(size['hidden'])),
              'loadavg_start': [round(x, 2) for x in os.getloadavg()]}
    ports = []
    (fm_direct, processes) = farm_bench.start_local_farms([n * len(LINKS) * len(MODES)], ports)
    proxy = LinkProxy(('127.0.0.1', ports[0]), args.delay_ms / 1000.0)
    fm_proxy = None
    vecs = {}
    try:
        fm_proxy = farmer.Farmer(farms=[('127.0.0.1', n * len(MODES), proxy.port)],
                                 start_local=False)
        farmers = {'loopback': fm_direct, 'proxy': fm_proxy}
        for link in LINKS:
            for m in MODES:
                vecs[(link, m)] = farmers[link].vec_env('Pendulum-v1', n, {'seed': 0},
                                                        batch_size=args.batch_size)
        some = vecs[('loopback', 'lockstep')]
        tf.random.set_seed(0)
        agent = SAC.from_spaces(some.observation_space, some.action_space,
                                hidden=size['hidden'], batch_size=size['batch_size'],
                                nb_steps_warmup=size['nb_steps_warmup'], seed=0)
        agent.compile()
        for key, vec in vecs.items():  # untimed: connections, resets, TensorFlow's tracing
            agent.train_vec(vec, nb_steps=size['warmup_steps'], mode=key[1])
        steps = dict((key, 0) for key in vecs)
        wall = dict((key, 0.0) for key in vecs)
        order = [(link, m) for link in LINKS for m in MODES]
        for r in range(size['rounds']):
            for key in order[r % len(order):] + order[:r % len(order)]:
                summary = agent.train_vec(vecs[key], nb_steps=size['steps'], mode=key[1])
                steps[key] += summary['steps']
                wall[key] += summary['seconds']
        probe = farm_bench.cpu_times()
        time.sleep(1.0)
        result['background_busy_cores_after'] = farm_bench.busy_cores(
            probe, farm_bench.cpu_times())
    finally:
        for vec in vecs.values():
            vec.close()
        if fm_proxy is not None:
            fm_proxy.close()
        fm_direct.close()
        proxy.close()
        for process in processes:
            local_farm.stop(process)
    rate = dict((key, steps[key] / wall[key]) for key in steps)
    for (link, m), value in rate.items():
        result['%s_%s_steps_per_s' % (link, m)] = round(value, 2)
        result['%s_%s_steps' % (link, m)] = steps[(link, m)]
        result['%s_%s_wall_s' % (link, m)] = round(wall[(link, m)], 3)
    for m in MODES:
        result['proxy_vs_loopback_%s' % m] = round(rate[('proxy', m)] / rate[('loopback', m)], 4)
    result['async_vs_lockstep_proxy'] = round(rate[('proxy', 'async')]
                                              / rate[('proxy', 'lockstep')], 4)
    result['issue_figures_before'] = {'loopback_lockstep_steps_per_s': 156,
                                      'proxy_lockstep_steps_per_s': 78}
    result['async_vs_lockstep_loopback'] = round(rate[('loopback', 'async')]
                                                 / rate[('loopback', 'lockstep')], 4)
    return farm_bench.write_result(result, ports, started, json_out)


if __name__ == '__main__':
    sys.exit(main())
