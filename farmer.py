#!/usr/bin/env python
"""farmer.py: every farm in farmlist.py as one vectorized environment (the only host module that
speaks Pyro4).

    python farmer.py                       # probe the farms in farmlist.py, print their status
    python farmer.py --random-steps 200    # and step a random policy on L2M2019Env through them

- :class:`Farmer` reads the farm list, probes every farm, starts a local farm when the list names
  only this machine and none answers, and builds environments on the farms:
  ``farmer.vec_env(name, n_envs, env_kwargs)`` (see vecenv.py for the contract) and
  ``farmer.env(name, env_kwargs)`` (one remote environment with the gym interface).
- One thread per farm owns that farm's proxy (Pyro4 proxies belong to one thread); a vector step
  sends one call to every farm at once, so it costs the slowest farm plus one round trip.
- A farm that stops answering: its environments are truncated (``info['lost']``), rebuilt on the
  farms that remain (above their capacity if need be), and training goes on; the lost farm is
  probed again every ``RETRY_EVERY`` seconds, and once it answers, environments running above a
  farm's capacity move to free capacity at their next step (``info['moved']``, truncated).
- Leases are renewed by a keep-alive thread, so a learner may sit at the prompt for hours; if the
  learner dies, its leases expire on the farms.

Python 3.6 compatible.
"""
import atexit
import concurrent.futures
import importlib
import logging
import os
import select
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import Pyro4
import Pyro4.errors

from vecenv import EpisodeTracker, VecEnv, gym_spaces_lib, make_space

DEFAULT_PORT = 20099
KEY_ENV = 'FARM_KEY'
LEASE_TTL = 60.0
KEEPALIVE_EVERY = 10.0
RETRY_EVERY = 30.0
PROBE_TIMEOUT = 3.0
LOCAL_HOSTS = ('127.0.0.1', 'localhost', '::1')
HERE = os.path.dirname(os.path.abspath(__file__))

log = logging.getLogger('farmer')

Pyro4.config.SERIALIZER = 'msgpack'
Pyro4.config.SERIALIZERS_ACCEPTED = {'msgpack'}

# A farm that answers within a few hundred microseconds (fast environments) is better waited for
# by polling its socket, yielding the CPU at every turn, than by sleeping: on the 2-vCPU VM we
# measure on, waking an idle vCPU cost tens of microseconds, several times per round trip. Only
# while this farm's recent answers came that fast: an osim step (30 ms) is slept on.
EAGER_SECONDS = 0.0005
CAN_WAIT_EAGERLY = hasattr(select, 'poll') and hasattr(os, 'sched_yield')  # not on Windows

# Errors that mean "this farm is gone", as opposed to an error the farm reported.
FARM_DOWN = (Pyro4.errors.CommunicationError, OSError)


def parse_farms(entries, where='farmlist.py'):
    """``[(host, capacity, port)]`` from ``(host, capacity[, port])`` entries, checked."""
    farms = []
    for k, entry in enumerate(entries):
        if not isinstance(entry, (tuple, list)) or len(entry) not in (2, 3):
            raise ValueError('%s entry %d: expected (host, capacity[, port]), got %r'
                             % (where, k, entry))
        host, capacity = entry[0], int(entry[1])
        port = int(entry[2]) if len(entry) == 3 else DEFAULT_PORT
        farms.append((str(host), capacity, port))
    return farms


def read_farmlist(module='farmlist'):
    """The farms of ``farmlist.farmlist_base`` (see :func:`parse_farms`)."""
    try:
        entries = importlib.import_module(module).farmlist_base
    except ImportError as e:
        raise RuntimeError('cannot read the farm list (%s.py): %s' % (module, e))
    return parse_farms(entries, '%s.py' % module)


class FarmLink(object):
    """One farm: its address, planned capacity, state, and the one thread that talks to it."""

    def __init__(self, host, capacity, port, key=None, call_timeout=60.0):
        self.host, self.capacity, self.port = host, capacity, port
        self.key = key
        self.call_timeout = call_timeout
        self.info = None
        self.error = None
        self.up = False
        self.retry_at = 0.0
        self.latency = 0.0  # running mean of this farm's call times, for _wait_eagerly
        self._local = threading.local()
        self._thread = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix='farm-%s:%d' % (host, port))

    @property
    def name(self):
        return '%s:%d' % (self.host, self.port)

    def _proxy(self, timeout):
        proxy = getattr(self._local, 'proxy', None)
        if proxy is None:
            proxy = Pyro4.Proxy('PYRO:farm@%s:%d' % (self.host, self.port))
            proxy._pyroMaxRetries = 0  # never replay a step: environments are not idempotent
            if self.key:
                proxy._pyroHmacKey = self.key.encode('utf-8')
            self._local.proxy = proxy
        proxy._pyroTimeout = timeout
        connection = proxy._pyroConnection  # None until the first call connects
        if CAN_WAIT_EAGERLY and connection is not None and not getattr(connection, 'eager', False):
            _wait_eagerly(connection, self)
        return proxy

    def _drop_proxy(self):
        proxy = getattr(self._local, 'proxy', None)
        if proxy is not None:
            self._local.proxy = None
            try:
                proxy._pyroRelease()
            except Exception:  # already broken: nothing to release
                pass

    def _invoke(self, method, args, timeout, eager=False):
        """``proxy.method(*args)`` from this thread; ``eager``: the caller has nothing else to do
        meanwhile, so a fast answer may be polled for (see _wait_eagerly)."""
        self._local.eager = eager
        try:
            started = time.perf_counter()
            result = getattr(self._proxy(timeout), method)(*args)
            self.latency += 0.2 * (time.perf_counter() - started - self.latency)
            return result
        except BaseException:
            # A lost farm, or Ctrl-C in the middle of a call: the connection may hold half a
            # message (or an unread reply) now, so the next call on it would be out of step.
            self._drop_proxy()
            raise

    def submit(self, method, *args, timeout=None):
        """Run ``proxy.method(*args)`` on this farm's thread; returns a Future."""
        return self._thread.submit(self._invoke, method, args, timeout or self.call_timeout)

    def call(self, method, *args, timeout=None):
        try:
            future = self.submit(method, *args, timeout=timeout)
        except RuntimeError:
            # At interpreter exit (atexit) concurrent.futures refuses new work; closing leases
            # then still has to happen, so make the call from this thread.
            return self._invoke(method, args, timeout or self.call_timeout)
        return future.result()

    def status(self):
        """This farm as one plain dict (last probe): name, up, capacity, in use, versions, error."""
        info = (self.info or {}) if self.up else {}
        return {'farm': self.name, 'up': self.up, 'capacity': info.get('capacity'),
                'planned': self.capacity, 'in_use': info.get('in_use'),
                'versions': info.get('versions', {}), 'error': self.error}

    def probe(self):
        """Ask the farm for its info; records up/down and returns whether it answered."""
        try:
            self.info = self.call('info', timeout=PROBE_TIMEOUT)
            self.up, self.error = True, None
            self.call_timeout = float(self.info.get('step_timeout', 30.0)) + 30.0
        except Exception as e:
            self.up, self.error = False, _describe(e)
            self.retry_at = time.time() + RETRY_EVERY
        return self.up

    def mark_down(self, error):
        if self.up:
            log.warning('farm %s stopped answering (%s); its environments move to the others; '
                        'retrying it every %.0f s', self.name, _describe(error), RETRY_EVERY)
        self.up, self.error = False, _describe(error)
        self.retry_at = time.time() + RETRY_EVERY

    def close(self):
        try:
            self._thread.submit(self._drop_proxy).result(timeout=5)
        except Exception:
            pass
        self._thread.shutdown(wait=False)


def _wait_eagerly(connection, link):
    """Makes a Pyro4 connection poll for the farm's answer for up to EAGER_SECONDS before it
    blocks, in calls made with ``eager`` (a synchronous ``step``: with ``step_async`` the learner
    trains meanwhile, and polling would take CPU from it), while ``link``'s recent calls came
    back within that time."""
    receive = connection.recv
    poller = select.poll()
    poller.register(connection.sock.fileno(), select.POLLIN)

    def eager_receive(size):
        if getattr(link._local, 'eager', False) and link.latency < EAGER_SECONDS:
            give_up = time.perf_counter() + EAGER_SECONDS
            while not poller.poll(0) and time.perf_counter() < give_up:
                os.sched_yield()
        return receive(size)

    connection.recv = eager_receive
    connection.eager = True


def _describe(error):
    text = str(error) or type(error).__name__
    if 'hmac' in text.lower():
        text += ' (wrong or missing key: export %s with the farm\'s key)' % KEY_ENV
    return text


class Farmer(object):
    """All farms of the farm list; builds environments on them. Close it (or use ``with``)."""

    def __init__(self, farms=None, key=None, start_local=True, lease_ttl=LEASE_TTL):
        farms = read_farmlist() if farms is None else parse_farms(farms, 'Farmer(farms=...)')
        self.key = key if key is not None else os.environ.get(KEY_ENV)
        self.lease_ttl = lease_ttl
        self.links = [FarmLink(h, c, p, self.key) for h, c, p in farms]
        self.local_farm = None
        self._leases = []          # (link, token) to renew and to close
        self.revivals = 0          # how many times a lost farm answered again
        self._vec_envs = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._probe_all()
        if not any(link.up for link in self.links):
            if start_local and all(link.host in LOCAL_HOSTS for link in self.links):
                self._start_local_farm()
            else:
                raise RuntimeError(self._nothing_answers())
        self._keepalive = threading.Thread(target=self._keep_alive, name='farmer-keepalive',
                                           daemon=True)
        self._keepalive.start()

    # --- farms -----------------------------------------------------------------------------------
    def _probe_all(self):
        with concurrent.futures.ThreadPoolExecutor(max(1, len(self.links))) as pool:
            list(pool.map(lambda link: link.probe(), self.links))
        for link in self.links:
            if link.up:
                log.info('farm %s answers: capacity %s, python %s', link.name,
                         link.info['capacity'], link.info['versions'].get('python'))
            else:
                log.info('farm %s does not answer: %s', link.name, link.error)

    def _nothing_answers(self):
        tried = '; '.join('%s (%s)' % (link.name, link.error) for link in self.links)
        return ('no farm answered. Tried: %s. Start one with `python farm.py` on each machine '
                '(with --host 0.0.0.0 --key SECRET and %s=SECRET here for other machines), or '
                'list only this machine in farmlist.py to have a local farm started for you.'
                % (tried or 'nothing: farmlist.py is empty', KEY_ENV))

    def _start_local_farm(self):
        link = self.links[0]
        capacity = max(link.capacity, 1)
        command = [sys.executable, os.path.join(HERE, 'farm.py'), '--host', '127.0.0.1',
                   '--port', str(link.port), '--capacity', str(capacity),
                   '--exit-with', str(os.getpid())]  # even if we die without closing it
        env = dict(os.environ)
        if self.key:
            env[KEY_ENV] = self.key
        log.info('no farm answered; starting a local one: %s', ' '.join(command))
        # The farm logs to stderr, but osim-rl prints to stdout from the workers; the learner's
        # stdout may be a result a program reads (bench/*.py --json), so keep it clean.
        self.local_farm = subprocess.Popen(command, env=env, start_new_session=True,
                                           stdout=sys.stderr.fileno())
        atexit.register(self._stop_local_farm)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.local_farm.poll() is not None:
                raise RuntimeError('the local farm exited at once (code %s); %s'
                                   % (self.local_farm.returncode, self._nothing_answers()))
            if link.probe():
                log.info('local farm up at %s (pid %d)', link.name, self.local_farm.pid)
                return
            time.sleep(0.2)
        self._stop_local_farm()
        raise RuntimeError('the local farm did not answer within 60 s; ' + self._nothing_answers())

    def _stop_local_farm(self):
        if self.local_farm is not None and self.local_farm.poll() is None:
            self.local_farm.terminate()
            try:
                self.local_farm.wait(15)
            except subprocess.TimeoutExpired:
                self.local_farm.kill()
                self.local_farm.wait()
        self.local_farm = None

    def status(self):
        """One plain dict per farm: name, up, capacity, in use, versions, error."""
        for link in self.links:
            link.probe()
        return [link.status() for link in self.links]

    def _keep_alive(self):
        while not self._stop.wait(min(KEEPALIVE_EVERY, self.lease_ttl / 3.0)):
            with self._lock:
                leases = list(self._leases)
            for link, token in leases:
                if link.up:
                    try:
                        link.call('renew', token, timeout=PROBE_TIMEOUT + 5)
                    except Exception as e:
                        log.warning('renewing lease on %s failed: %s', link.name, _describe(e))
            for link in self.links:
                if not link.up and time.time() >= link.retry_at and link.probe():
                    log.info('farm %s answers again; environments that took over its work '
                             'move back at their next step', link.name)
                    self.revivals += 1

    # --- leases and placement --------------------------------------------------------------------
    def open_lease(self, link):
        token = link.call('open_lease', self.lease_ttl)
        with self._lock:
            self._leases.append((link, token))
        return token

    def forget_lease(self, link, token):
        with self._lock:
            if (link, token) in self._leases:
                self._leases.remove((link, token))

    def place(self, n, exclude=()):
        """How many of ``n`` environments go to each answering farm: by free capacity."""
        links = [link for link in self.links if link.up and link not in exclude]
        free = {}
        for link in links:
            if link.probe():  # fresh numbers: other learners may have taken capacity since
                free[link] = max(0, min(link.capacity,
                                        link.info['capacity'] - link.info['in_use']))
        plan = {}
        left = n
        while left > 0:
            candidates = [link for link in free if free[link] - plan.get(link, 0) > 0]
            if not candidates:
                break
            best = max(candidates, key=lambda l: free[l] - plan.get(l, 0))
            plan[best] = plan.get(best, 0) + 1
            left -= 1
        return plan, left

    def vec_env(self, env_name, n_envs, env_kwargs=None):
        """``n_envs`` environments spread over the farms, as one vectorized env (vecenv.py)."""
        env = FarmVecEnv(self, env_name, int(n_envs), dict(env_kwargs or {}))
        self._vec_envs.append(env)
        return env

    def env(self, env_name, env_kwargs=None):
        """One remote environment with the gym interface."""
        return RemoteEnv(self.vec_env(env_name, 1, env_kwargs))

    def utilization(self):
        """Environments this farmer holds / capacity of the farms that answer."""
        capacity = sum(link.info['capacity'] for link in self.links if link.up and link.info)
        held = sum(env.num_envs for env in self._vec_envs if not env.closed)
        return held / float(capacity) if capacity else 0.0

    def close(self):
        if self._stop.is_set():
            return
        self._stop.set()
        for env in list(self._vec_envs):
            env.close()
        for link in self.links:
            link.close()
        self._stop_local_farm()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Placement(object):
    """Where vector index ``i`` lives: its farm link, lease and env id there."""
    __slots__ = ('link', 'lease', 'env_id')

    def __init__(self, link, lease, env_id):
        self.link, self.lease, self.env_id = link, lease, env_id


class FarmVecEnv(VecEnv):
    """N remote environments over the farms; the contract is vecenv.py's."""

    def __init__(self, farmer, env_name, n_envs, env_kwargs):
        self.farmer = farmer
        self.env_name = env_name
        self.env_kwargs = env_kwargs
        self.num_envs = n_envs
        self.closed = False
        self.places = [None] * n_envs
        self.spec = None
        self._displaced = set()  # indices moved off a lost farm, maybe running above capacity
        self._revivals_seen = farmer.revivals
        self._build(list(range(n_envs)))
        self.observation_space = make_space(self.spec['observation_space'])
        self.action_space = make_space(self.spec['action_space'])
        self.max_episode_steps = self.spec.get('max_episode_steps')
        self._obs_shape = self.observation_space.shape
        self.last_obs = np.zeros((n_envs,) + self._obs_shape, dtype=np.float32)
        self.tracker = EpisodeTracker(n_envs)
        self._pending = None
        self.wait_seconds = 0.0   # time spent blocked in step_wait: how long the learner waited

    # --- placement -------------------------------------------------------------------------------
    def _build(self, indices, exclude=(), overcommit=False):
        plan, missing = self.farmer.place(len(indices), exclude)
        if missing and not overcommit:
            have = sum(plan.values())
            raise RuntimeError('%d x %s requested, but the farms that answer have only %d free: %s'
                               % (len(indices), self.env_name, have, self._farm_summary()))
        if missing:  # taking over a lost farm's envs: let the survivors run above capacity
            plan = self._overcommit_plan(len(indices), exclude)
        todo = list(indices)
        for link, count in plan.items():
            mine, todo = todo[:count], todo[count:]
            token = self.farmer.open_lease(link)
            spec = link.call('make', token, self.env_name, self.env_kwargs, count, overcommit)
            if self.spec is None:
                self.spec = spec
            for i, env_id in zip(mine, spec['env_ids']):
                self.places[i] = Placement(link, token, env_id)
        self._groups = self._group()

    def _overcommit_plan(self, n, exclude):
        """Spread ``n`` evenly over the answering farms, capacity or not (they allow 2x)."""
        links = [link for link in self.farmer.links if link.up and link not in exclude]
        if not links:
            raise RuntimeError('every farm is lost; %s' % self.farmer._nothing_answers())
        plan = {}
        for k in range(n):
            link = links[k % len(links)]
            plan[link] = plan.get(link, 0) + 1
        return plan

    def _group(self):
        """Per (link, lease): the vector indices and env ids, in vector order."""
        groups = {}
        for i, place in enumerate(self.places):
            groups.setdefault((place.link, place.lease), ([], []))
            groups[(place.link, place.lease)][0].append(i)
            groups[(place.link, place.lease)][1].append(place.env_id)
        return groups

    def _farm_summary(self):
        return ', '.join('%s: %s' % (s['farm'], ('%d/%d in use' % (s['in_use'], s['capacity']))
                                     if s['up'] else 'down (%s)' % s['error'])
                         for s in self.farmer.status())

    # --- the contract ----------------------------------------------------------------------------
    def reset(self, seed=None):
        futures = {}
        for (link, lease), (indices, ids) in self._groups.items():
            seeds = None if seed is None else [seed + i for i in indices]
            futures[(link, lease)] = link.submit('reset', lease, ids, seeds)
        obs = np.zeros((self.num_envs,) + self._obs_shape, dtype=np.float32)
        lost = self._collect(futures, lambda indices, results: obs.__setitem__(indices, results))
        for i in lost:
            obs[i] = self._reset_one(i)
        for i in range(self.num_envs):
            self.tracker.restart(i)
        self.last_obs = obs.copy()
        return obs

    def step_async(self, actions):
        wire = self._check(actions)
        self._pending = self._send_steps(wire, in_caller=None)

    def _check(self, actions):
        """Validates the actions; returns them as plain lists (the host's one conversion out)."""
        actions = np.asarray(actions, dtype=np.float64)
        per_env = int(np.prod(self.action_space.shape)) if self.action_space.shape else 1
        if actions.shape[:1] != (self.num_envs,) or actions.size != self.num_envs * per_env:
            raise ValueError('%s: expected %d actions of %d values each, got an array of shape %s'
                             % (self.env_name, self.num_envs, per_env, actions.shape))
        actions = actions.reshape(self.num_envs, -1)
        if not np.all(np.isfinite(actions)):
            bad = sorted(set(np.argwhere(~np.isfinite(actions))[:, 0].tolist()))
            raise ValueError('%s: non-finite action for vector index %s (%s)' % (
                self.env_name, bad, ', '.join('farm %s env %d' % (self.places[i].link.name,
                                                                  self.places[i].env_id)
                                              for i in bad)))
        return actions.tolist()

    def step(self, actions):
        """step_async + step_wait, with one farm's call made in the calling thread.

        When nothing overlaps the wait, handing the last farm's call to its thread only adds a
        thread switch to every vector step; the other farms are still called concurrently.
        """
        wire = self._check(actions)
        self._pending = self._send_steps(wire, in_caller=list(self._groups)[-1])
        return self.step_wait()

    def _send_steps(self, wire, in_caller):
        pending = {}
        for key, (indices, ids) in self._groups.items():
            link, lease = key
            if key != in_caller:
                pending[key] = link.submit('step', lease, ids, [wire[i] for i in indices], True)
        if in_caller is not None:
            link, lease = in_caller
            indices, ids = self._groups[in_caller]
            done = concurrent.futures.Future()
            try:
                done.set_result(link._invoke('step', (lease, ids, [wire[i] for i in indices],
                                                      True), link.call_timeout, eager=True))
            except Exception as e:
                done.set_exception(e)
            pending[in_caller] = done
        return pending

    def step_wait(self):
        if self._pending is None:
            raise RuntimeError('step_wait() without step_async()')
        started = time.time()
        n = self.num_envs
        obs = np.zeros((n,) + self._obs_shape, dtype=np.float32)
        rewards = np.zeros(n)
        terminated = np.zeros(n, dtype=bool)
        truncated = np.zeros(n, dtype=bool)
        infos = [None] * n

        def store(indices, results):
            # The host's one conversion in: a whole farm's answer per numpy call, not per env.
            obs[indices] = np.array([res[0] for res in results], dtype=np.float32)
            rewards[indices] = [res[1] for res in results]
            terminated[indices] = [res[2] for res in results]
            truncated[indices] = [res[3] for res in results]
            for i, res in zip(indices, results):
                info = res[4]
                if 'terminal_observation' in info:
                    info['terminal_observation'] = np.asarray(info['terminal_observation'],
                                                              dtype=np.float32)
                infos[i] = info

        futures, self._pending = self._pending, None
        lost = self._collect(futures, store)
        for i, reason in lost.items():
            # Not terminal: the episode was cut short by the machinery, so a learner bootstraps.
            truncated[i], terminated[i], rewards[i] = True, False, 0.0
            infos[i] = {'lost': reason, 'terminal_observation': self.last_obs[i].copy()}
            obs[i] = self._reset_one(i)
        if self._displaced and self.farmer.revivals != self._revivals_seen:
            self._revivals_seen = self.farmer.revivals
            for i, (first_obs, reason) in self._move_back().items():
                if not (terminated[i] or truncated[i]):  # this step's outcome stands; then cut
                    truncated[i] = True
                    infos[i] = dict(infos[i], terminal_observation=obs[i].copy())
                infos[i]['moved'] = reason
                obs[i] = first_obs
        self.tracker.record(rewards, terminated | truncated, infos)
        self.last_obs = obs.copy()
        self.wait_seconds += time.time() - started
        return obs, rewards, terminated, truncated, infos

    def _collect(self, futures, store):
        """Waits for every farm; ``store(indices, results)`` takes each farm's good results;
        returns ``{index: reason}`` of the lost environments."""
        lost = {}
        down = []
        for (link, lease), future in futures.items():
            indices = self._groups[(link, lease)][0]
            try:
                results = future.result()
            except FARM_DOWN as e:
                link.mark_down(e)
                down.append(link)
                for i in indices:
                    lost[i] = 'farm %s lost: %s' % (link.name, _describe(e))
                continue
            good = []
            for i, result in zip(indices, results):
                if isinstance(result, dict):
                    if result.get('kind') == 'input':
                        raise ValueError(result['error'])
                    log.warning('%s', result['error'])
                    lost[i] = result['error']
                else:
                    good.append(i)
            if len(good) < len(indices):
                results = [r for r in results if not isinstance(r, dict)]
            if good:
                store(good, results)
        if down:
            moved = [i for i, p in enumerate(self.places) if p.link in down]
            for link in down:
                for (l, lease) in list(self._groups):
                    if l is link:
                        self.farmer.forget_lease(l, lease)
            self._build(moved, exclude=down, overcommit=True)
            self._displaced.update(moved)
            log.warning('%d environments moved off %s', len(moved),
                        ', '.join(link.name for link in down))
        return lost

    def _move_back(self):
        """Environments that took over a lost farm's work may run on farms above capacity (at
        half speed); once a farm answers again, those move to free capacity. Returns
        ``{index: (first observation, reason)}`` of the moved ones; their episodes are cut."""
        excess = []
        for link in set(self.places[i].link for i in self._displaced):
            mine = sorted(i for i in self._displaced if self.places[i].link is link)
            over = max(0, link.info['in_use'] - link.info['capacity']) if link.probe() else 0
            excess.extend(mine[:over])
            self._displaced.difference_update(mine[over:])  # within capacity: they stay
        fits = len(excess) - self.farmer.place(len(excess))[1] if excess else 0
        if not fits:
            return {}
        old = dict((i, self.places[i]) for i in excess[:fits])
        try:
            self._build(list(old))
        except Exception as e:  # capacity taken meanwhile, or a farm failed: they stay
            log.warning('could not move %d environments back: %s', len(old), _describe(e))
        moved = {}
        released = {}
        for i, place in old.items():
            if self.places[i] is not place:
                released.setdefault((place.link, place.lease), []).append(place.env_id)
                self._displaced.discard(i)
                moved[i] = (self._reset_one(i), 'farm %s -> farm %s' % (
                    place.link.name, self.places[i].link.name))
        for (link, lease), ids in released.items():
            try:
                if (link, lease) in self._groups:
                    link.call('release', lease, ids)
                else:  # nothing of ours left in that lease
                    link.call('close_lease', lease)
                    self.farmer.forget_lease(link, lease)
            except Exception as e:  # the farm's reaper frees them when the lease expires
                log.warning('releasing %s on %s failed: %s', ids, link.name, _describe(e))
        if moved:
            log.info('%d environments moved back to free capacity: %s', len(moved),
                     ', '.join(sorted(set(reason for _, reason in moved.values()))))
        return moved

    def _reset_one(self, i):
        place = self.places[i]
        result = place.link.call('reset', place.lease, [place.env_id], None)[0]
        if isinstance(result, dict):
            raise RuntimeError('could not reset a replaced environment: %s' % result['error'])
        return np.asarray(result, dtype=np.float32)

    def close(self):
        if self.closed:
            return
        self.closed = True
        if self._pending:
            concurrent.futures.wait(list(self._pending.values()), timeout=60)
        for (link, lease) in self._groups:
            self.farmer.forget_lease(link, lease)
            if link.up:
                try:
                    link.call('close_lease', lease, timeout=10)
                except Exception as e:
                    log.warning('closing lease on %s: %s', link.name, _describe(e))


class RemoteEnv(gym_spaces_lib.Env):
    """One remote environment with the gym interface (reset -> (obs, info); 5-tuple step).

    Episodes are not reset automatically: after ``terminated`` or ``truncated``, call ``reset``.
    """

    metadata = {'render_modes': []}

    def __init__(self, vec_env):
        self.vec = vec_env
        self.observation_space = vec_env.observation_space
        self.action_space = vec_env.action_space
        self._ended = False

    def reset(self, seed=None, options=None):
        super(RemoteEnv, self).reset(seed=seed)  # seeds np_random, as gym's contract expects
        obs = self.vec.reset(seed=seed)[0]
        self._ended = False
        return obs, {}

    def step(self, action):
        obs, rewards, terminated, truncated, infos = self.vec.step(
            np.asarray(action, dtype=np.float64).reshape(1, -1))
        info = infos[0]
        if 'terminal_observation' in info:
            obs = info.pop('terminal_observation')[None]
            info.pop('episode', None)
        return obs[0], float(rewards[0]), bool(terminated[0]), bool(truncated[0]), info

    def close(self):
        self.vec.close()


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


def main(argv=None):
    import argparse
    parser = argparse.ArgumentParser(description='Probe the farms in farmlist.py; optionally '
                                     'step a random policy through them.')
    parser.add_argument('--random-steps', type=int, default=0,
                        help='vector steps of a random policy (0: only print the status table)')
    parser.add_argument('--env', default='L2M2019Env')
    parser.add_argument('--envs', type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.random_steps else logging.WARNING,
                        format='%(asctime)s %(name)s %(message)s')
    if args.random_steps:
        random_policy(args.env, args.envs, args.random_steps)
        return 0
    links = [FarmLink(h, c, p, os.environ.get(KEY_ENV)) for h, c, p in read_farmlist()]
    for link in links:
        link.probe()
    statuses = [link.status() for link in links]
    print_status(statuses)
    for link in links:
        link.close()
    return 0 if any(s['up'] for s in statuses) else 1


if __name__ == '__main__':
    sys.exit(main())
