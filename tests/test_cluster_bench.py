"""bench/cluster_bench.py: stopped by SIGTERM mid-run, it removes every host (namespace, link),
farm and process it made, and says it was interrupted. (Its figures are a benchmark's, in
docs/benchmarks.md, not a test's.) Needs root for the namespaces; skipped saying why elsewhere."""
import json
import os
import subprocess
import sys

import pytest

from bench import netns
from conftest import ROOT, command_lines, terminated_when

WHY = netns.unavailable()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(WHY is not None, reason=str(WHY))]


def namespaces(prefix):
    out = subprocess.run(['ip', 'netns', 'list'], capture_output=True, text=True).stdout
    return [name for name in out.split() if name.startswith(prefix)]


def host_pids(name):
    return subprocess.run(['ip', 'netns', 'pids', name], capture_output=True,
                          text=True).stdout.split()


def test_sigterm_mid_run_removes_every_host_and_farm():
    bench = subprocess.Popen([sys.executable, os.path.join(ROOT, 'bench', 'cluster_bench.py'),
                              '--quick', '--json', '--only', 'trace'], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    prefix = 'cb%d_' % (bench.pid % 1000)
    # the trace run is under way once the farms of the first 4 hosts have started workers
    def running():
        hosts = namespaces(prefix)
        return len(hosts) == 8 and sum(len(host_pids(h)) for h in hosts) > 8 + 32
    out, err = terminated_when(bench, running)
    assert bench.returncode == 130, err[-3000:]
    assert 'farmer farm 10.217.1.2:20099 answers' in err  # it was stopped mid-run
    result = json.loads(out)
    assert result['interrupted'] and result['hosts_left'] == []
    assert namespaces(prefix) == []
    assert not [l for l in command_lines().values() if 'farm.py' in l and '10.217.' in l]
