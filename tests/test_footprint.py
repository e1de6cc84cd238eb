"""bench/footprint.py: memory and handles read from /proc, against a real farm."""
import json
import os
import signal
import subprocess
import sys

import pytest

from bench import footprint
from conftest import ROOT


def test_memory_of_this_process_grows_with_what_it_touches():
    before = footprint.memory(os.getpid())
    block = bytearray(64 * 1024 * 1024)
    for k in range(0, len(block), 4096):
        block[k] = 1
    after = footprint.memory(os.getpid())
    assert after['rss_mb'] - before['rss_mb'] > 50
    assert 0 < after['pss_mb'] <= after['rss_mb'] + 1


PARENT = r"""
import subprocess, sys
child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])
print(child.pid, flush=True)
child.wait()
"""


def test_children_finds_a_child_and_only_it():
    # a parent of its own: the suite's process has farms and helpers of its own as children
    parent = subprocess.Popen([sys.executable, '-c', PARENT], stdout=subprocess.PIPE, text=True,
                              start_new_session=True)
    try:
        child = int(parent.stdout.readline())
        assert footprint.children(parent.pid) == [child]
        assert footprint.children(child) == []
    finally:
        os.killpg(parent.pid, signal.SIGKILL)
        parent.wait()


HANDLES = r"""
import json, socket, threading, time
from bench import footprint
base = footprint.learner_handles()
stop = threading.Event()
threads = [threading.Thread(target=stop.wait) for _ in range(3)]
for t in threads:
    t.start()
sockets = [socket.socket() for _ in range(2)]
now = footprint.learner_handles()
stop.set()
for t in threads:
    t.join()
for s in sockets:
    s.close()
deadline = time.time() + 5  # an OS thread leaves /proc a moment after join() returns
while footprint.learner_handles() != base and time.time() < deadline:
    time.sleep(0.01)
print(json.dumps([base, now, footprint.learner_handles()]))
"""


def test_learner_handles_count_threads_and_sockets():
    # in a process of its own: the suite's own threads come and go
    out = subprocess.run([sys.executable, '-c', HANDLES], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    base, now, after = json.loads(out.stdout)
    assert now == {'threads': base['threads'] + 3, 'sockets': base['sockets'] + 2}
    assert after == base


@pytest.mark.slow
def test_a_farm_s_memory_counts_one_worker_per_environment():
    figures = footprint.farm_memory('SlowEnv', {'step_seconds': 0.0, 'obs_size': 339}, 3, steps=3)
    assert figures['workers'] == 3
    assert 0 < figures['worker_pss_mb'] <= figures['worker_rss_mb']
    assert figures['per_env_pss_mb'] >= figures['worker_pss_mb']
    assert figures['farm_serving_rss_mb'] > 10


def test_cluster_bench_names_an_unknown_part_in_one_line():
    out = subprocess.run([sys.executable, os.path.join(ROOT, 'bench', 'cluster_bench.py'),
                          '--only', 'trace,nonsense'], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        'cluster_bench.py: --only: unknown part(s) nonsense; the parts are trace, ingest, '
        'handles, learners, cutoff, memory']
