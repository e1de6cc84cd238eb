#!/usr/bin/env python
"""farmer.py: every farm in farmlist.py as one vectorized environment; the learner's entry point.

    python farmer.py                       # probe the farms in farmlist.py, print their status
    python farmer.py --random-steps 200    # and step a random policy on L2M2019Env through them
    python farmer.py wait DIR --count K [--timeout S] [--hosts h1,h2]
                                           # wait for K farms to announce themselves in DIR
    python farmer.py launch [--farms LIST] [--root DIR] [--ssh CMD]
    python farmer.py stop [--farms LIST] [--root DIR] [--ssh CMD]
                                           # start / stop farm.py on the list's hosts over ssh

- :class:`Farmer` reads the farm list, probes every farm, starts a local farm when the list names
  only this machine and none answers, and builds environments on the farms:
  ``farmer.vec_env(name, n_envs, env_kwargs, batch_size=1)`` (see vecenv/contract.py for the contract)
  and ``farmer.env(name, env_kwargs)`` (one remote environment with the gym interface). A farm
  that speaks another farm protocol (protocol.PROTOCOL) is not used, and says so.
- Two stepping modes. Lockstep (``step``, ``step_async``/``step_wait``): one call to every farm
  at once (each farm's on a thread of its own), so a vector step costs the slowest environment
  plus a round trip. Asynchronous (``async_reset``, ``send``, ``recv``): actions go to the farms
  of the environments named, results come back from whichever environments finish first, via
  one receiver thread per farm; no core waits for the slowest environment. Observations and
  actions cross as packed arrays (wire.pack).
- Outages. The learner never gives up on its farms by itself. A call outstanding longer than
  ``STALL_AFTER`` is reported at WARNING every few seconds (which farm, for how long, and whether
  the farm still answers a probe). A call that fails or times out marks its farm down: its
  environments' episodes are truncated (``info['lost']``, ``lost_cause`` 'farm') and they are
  rebuilt on the farms that answer, above their capacity if need be; while none answers, the
  learner waits, probing and saying so every few seconds, and goes on when one answers
  (``Farmer(give_up_after=s)`` raises :class:`errors.FarmsLostError` instead after ``s`` seconds
  with no farm answering). A farm that answers again first has the leases we held there before
  it went down closed, then environments running above a farm's capacity move to free capacity
  (``info['moved']``), retried every keep-alive round until none is displaced or none fits.
- Leases (one per farm per vector env: its ``Allocation``) are renewed by a keep-alive thread,
  so a learner may sit at the prompt for hours. They are closed on every exit path:
  ``close()``, a ``vec_env`` whose build fails part-way, and interpreter exit (atexit). A farm
  that no longer knows a lease (the learner was paused past its TTL, or the farm restarted) has
  that lease's environments rebuilt (``lost_cause`` 'lease').
- TLS: with ``FARM_TLS_CA`` (or ``Farmer(tls_ca=...)``) naming the CA certificate of farms started
  with ``--tls-cert/--tls-key``, every call of this process goes over TLS. Pyro4's SSL settings
  are process-wide, so then every farm of this learner must use TLS.

The code lives in the ``host/`` package, one job per module (see host/__init__.py): the farm
list (``host.farmlist_reader``), one farm's connection (``host.link``), why a farm does not
answer (``host.diagnosis``), the Farmer (``host.allocation``), the local farm
(``host.local_farm``), the vector env (``host.farm_vec_env``, with ``host.placement`` and
``host.receivers``), the single env
(``host.remote_env``), and every timeout and interval (``host.settings``; change one there, e.g.
``monkeypatch.setattr(host.settings, 'RETRY_EVERY', 0.5)``: the constants re-exported here are
copies, for reading). This module re-exports the public names, so ``from farmer import Farmer``
and the like work as before, and it runs ``python farmer.py``.

Python 3.6 compatible.
"""
import argparse
import logging
import os
import sys
import time

import numpy as np

from common import logformat

from common.errors import NoFarmError, ProtocolMismatchError, UserError, install_excepthook
from host import settings
from host.allocation import Farmer
from host.leases import Allocation
from host.diagnosis import advice
from host.farm_vec_env import FarmVecEnv
from host.placement import Placement
from host.farmlist_reader import EXAMPLE_ENTRY, parse_farms, read_farmlist
from host.link import FARM_DOWN, FarmLink, configure_tls
from host.remote_env import RemoteEnv
from host.settings import DEFAULT_PORT, KEY_ENV, LEASE_TTL, LOCAL_HOSTS, TLS_CA_ENV

__all__ = ['Farmer', 'Allocation', 'FarmVecEnv', 'RemoteEnv', 'FarmLink', 'Placement',
           'FARM_DOWN', 'parse_farms', 'read_farmlist', 'configure_tls', 'EXAMPLE_ENTRY',
           'DEFAULT_PORT', 'KEY_ENV', 'TLS_CA_ENV', 'LEASE_TTL', 'LOCAL_HOSTS', 'settings',
           'print_status', 'random_policy', 'main']


def print_status(farmer_status):
    header = '%-24s %-5s %-8s %-7s %-8s %-7s %-8s %s' % (
        'farm', 'up', 'capacity', 'in use', 'python', 'pyro4', 'osim-rl', 'error')
    print(header)
    print('-' * len(header))
    for s in farmer_status:
        v = s['versions']
        print('%-24s %-5s %-8s %-7s %-8s %-7s %-8s %s' % (
            s['farm'], 'yes' if s['up'] else 'NO', s['capacity'] if s['up'] else '-',
            s['in_use'] if s['up'] else '-', v.get('python', '-'), v.get('pyro4', '-'),
            v.get('osim-rl') or '-', s['error'] or ''))


def random_policy(env_name, n_envs, steps):
    """Step a random policy through the farms (a smoke run of the whole path); returns steps/s."""
    with Farmer() as farmer:
        print_status(farmer.status())
        env = farmer.vec_env(env_name, n_envs)
        rng = np.random.RandomState(0)
        low, high = env.action_space.low, env.action_space.high
        env.reset(seed=0)
        started, returns = time.time(), []
        for step in range(1, steps + 1):
            infos = env.step(rng.uniform(low, high, (n_envs,) + env.action_space.shape))[4]
            returns += [info['episode']['r'] for info in infos if 'episode' in info]
            if step % 50 == 0 or step == steps:
                rate = step * n_envs / (time.time() - started)
                print('%d vector steps, %.1f env steps/s, %d episodes, mean return %s'
                      % (step, rate, len(returns),
                         '%.2f' % np.mean(returns) if returns else '-'))
        return steps * n_envs / (time.time() - started)


class _OneLineParser(argparse.ArgumentParser):
    """A subcommand's flags: a mistake is one line (a UserError), as every other mistake."""

    def error(self, message):
        raise UserError('%s (see %s --help)' % (message, self.prog))


def wait(argv):
    """``farmer.py wait DIR --count K``: one line per farm as it announces itself in DIR
    (``farm.py --rendezvous DIR``); exit 0 once K have, else one line on the deadline."""
    from host import rendezvous
    parser = _OneLineParser(prog='farmer.py wait', description=wait.__doc__)
    parser.add_argument('directory', metavar='DIR')
    parser.add_argument('--count', type=int, required=True, metavar='K',
                        help='farms to wait for')
    parser.add_argument('--timeout', type=float, default=300.0, metavar='SECONDS',
                        help='give up after this long (default 300)')
    parser.add_argument('--hosts', default='', metavar='H1,H2,...',
                        help='the hosts expected to start a farm, named on timeout if missing')
    args = parser.parse_args(argv)
    hosts = [h for h in args.hosts.split(',') if h]
    try:
        rendezvous.wait_for(args.directory, args.count, args.timeout,
                            arrived=lambda r: print(rendezvous.describe(r), flush=True),
                            hosts=hosts)
    except KeyboardInterrupt:
        return 130
    return 0


def launch_or_stop(verb, argv):
    """``farmer.py launch`` / ``farmer.py stop``: farm.py on every remote host of the farm
    list, over ssh (host/launch.py); exit 0 when every one started (stopped), else 1."""
    from host import launch
    from host.farmlist_reader import farms_of_flag
    parser = _OneLineParser(prog='farmer.py ' + verb, description=launch_or_stop.__doc__)
    parser.add_argument('--farms', default='', metavar='LIST',
                        help='host:capacity[:port],... (default: farmlist.py)')
    parser.add_argument('--root', default=os.path.dirname(os.path.abspath(__file__)),
                        metavar='DIR', help='the project checkout on the hosts (default: this '
                        "checkout's path)")
    parser.add_argument('--ssh', default=os.environ.get('FARM_SSH', 'ssh'), metavar='CMD',
                        help='the ssh command and its options (default: $FARM_SSH or ssh), '
                        'e.g. "ssh -i ~/.ssh/lab -l me"')
    parser.add_argument('--timeout', type=float, default=60.0, metavar='SECONDS',
                        help='how long to wait for each farm to answer (stop)')
    args = parser.parse_args(argv)
    farms = parse_farms(farms_of_flag(args.farms), '--farms') if args.farms else read_farmlist()
    configure_tls(os.environ.get(settings.TLS_CA_ENV))
    remote, _ = launch.remote_hosts(farms)
    if verb == 'stop':
        return 0 if launch.stop(farms, args.root, args.ssh, args.timeout) == len(remote) else 1
    links = launch.launch(farms, os.environ.get(settings.KEY_ENV), args.root, args.ssh,
                          args.timeout)
    if links:
        print_status([link.status() for link in links])
    for link in links:
        link.close()
    return 0 if len(links) == len(remote) and all(link.up for link in links) else 1


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] in (['wait'], ['launch'], ['stop']):
        install_excepthook('--verbose' in argv, 'farmer.py ' + argv[0])
        rest = [a for a in argv[1:] if a != '--verbose']
        return wait(rest) if argv[0] == 'wait' else launch_or_stop(argv[0], rest)
    parser = argparse.ArgumentParser(description='Probe the farms in farmlist.py; optionally '
                                     'step a random policy through them.')
    parser.add_argument('--random-steps', type=int, default=0,
                        help='vector steps of a random policy (0: only print the status table)')
    parser.add_argument('--env', default='L2M2019Env')
    parser.add_argument('--envs', type=int, default=os.cpu_count() or 1)
    parser.add_argument('--verbose', action='store_true', help='tracebacks for user errors too')
    args = parser.parse_args(argv)
    install_excepthook(args.verbose, 'farmer.py')
    logformat.setup(logging.INFO if args.random_steps else logging.WARNING)
    if args.random_steps:
        random_policy(args.env, args.envs, args.random_steps)
        return 0
    farms = read_farmlist()
    configure_tls(os.environ.get(settings.TLS_CA_ENV))
    links = [FarmLink(h, c, p, os.environ.get(settings.KEY_ENV)) for h, c, p in farms]
    for link in links:
        link.probe()
    print_status([link.status() for link in links])
    for link in links:
        link.close()
    if not any(link.up for link in links):
        if any(link.mismatch for link in links):
            raise ProtocolMismatchError('; '.join(link.mismatch for link in links
                                                  if link.mismatch))
        raise NoFarmError('no farm answered: %s' % '; '.join(advice(link) for link in links))
    return 0


if __name__ == '__main__':
    sys.exit(main())
