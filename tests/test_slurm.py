"""cluster/slurm/train.sbatch on a real SLURM (tests/slurm_cluster.py: munged, slurmctld and three
slurmd on this machine): one farm per node announces itself, the learner trains Pendulum
episodes on environments of every node, and scancel stops everything, with a final checkpoint.

Needs root and Debian's SLURM packages (``./setup.sh --test`` installs them as root); skipped
saying why elsewhere. ``pytest -k slurm`` runs these.
"""
import contextlib
import csv
import glob
import json
import os
import time

import pytest

from conftest import ROOT, command_lines, wait_until
from slurm_cluster import SlurmCluster, unavailable

WHY = unavailable()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(WHY is not None, reason=str(WHY))]
NODES = 3


@pytest.fixture(scope='module')
def slurm_cluster():
    with contextlib.closing(SlurmCluster(nodes=NODES)) as cluster:
        yield cluster


def ours(marker):
    """Processes whose command line names ``marker`` (this test's own directory)."""
    return [(pid, line[:200]) for pid, line in command_lines().items()
            if marker in line and 'pytest' not in line]


def envs_with_episodes(run_dir):
    """The vector indices whose ended episodes episodes.csv records so far."""
    try:
        with open(os.path.join(run_dir, 'episodes.csv')) as f:
            return {row['env'] for row in csv.DictReader(f)}
    except FileNotFoundError:
        return set()


# How the job is stopped: scancel (SIGTERM to every step at once), and what the time limit does
# with the script's --signal=B:TERM@120 (SIGTERM to the batch shell only: the script stops the
# learner, then the farms).
STOPS = {'scancel': [], 'time_limit_signal': ['--batch', '--signal=TERM']}


@pytest.mark.parametrize('stop', sorted(STOPS))
def test_slurm_batch_script_trains_on_every_node_and_scancel_stops_everything(slurm_cluster,
                                                                              tmp_path, stop):
    rendezvous, run_dir = str(tmp_path / 'rendezvous'), str(tmp_path / 'run')
    output = str(tmp_path / 'job.out')
    submitted = slurm_cluster.run(
        'sbatch', '--parsable', '-N', str(NODES), '-o', output,
        os.path.join(ROOT, 'cluster', 'slurm', 'train.sbatch'), 'train_sac.py',
        '--env', 'Pendulum-v1', '--episodes', '100000', '--run-dir', run_dir,
        '--hidden', '16,16', '--warmup', '50', '--batch-size', '16', '--eval-envs', '0',
        cwd=ROOT, env={'FARM_RENDEZVOUS': rendezvous, 'TF_CPP_MIN_LOG_LEVEL': '2'})
    job = submitted.stdout.strip().split(';')[0]

    def job_log():
        return open(output).read() if os.path.exists(output) else '(no output yet)'

    # Every node's farm announced itself (the emulated nodes share this host: free ports)
    assert wait_until(lambda: len(glob.glob(os.path.join(rendezvous, 'farm-*.json'))) == NODES,
                      120, every=0.5), job_log()
    records = [json.load(open(p)) for p in glob.glob(os.path.join(rendezvous, 'farm-*.json'))]
    assert sorted(r['node'] for r in records) == ['n1', 'n2', 'n3']
    assert all(r['capacity'] == 1 for r in records)  # SLURM gave each task one CPU
    # The learner trains on all three: 3 environments, one per farm (capacity 1 each)
    assert wait_until(lambda: len(envs_with_episodes(run_dir)) == NODES, 240,
                      every=1.0), job_log()
    log = job_log()
    for task in range(NODES):  # srun --label: each farm task made its environment
        assert any(line.startswith('%d: ' % task) and 'x Pendulum-v1 made' in line
                   for line in log.splitlines()), log

    started = time.time()
    slurm_cluster.run('scancel', *(STOPS[stop] + [job]))
    marker = str(tmp_path)
    assert wait_until(lambda: slurm_cluster.job_state(job) not in ('RUNNING', 'COMPLETING')
                      and not ours(marker), 30, every=0.5), (
        slurm_cluster.job_state(job), ours(marker), job_log())
    stopped_in = time.time() - started
    assert stopped_in < 30
    assert not os.path.isdir(rendezvous) or os.listdir(rendezvous) == []
    pointer = os.path.join(run_dir, 'checkpoint.json')  # the newest checkpoint: written at stop
    assert os.path.exists(pointer) and os.path.getmtime(pointer) >= started, (
        os.listdir(run_dir), job_log())
    assert glob.glob(os.path.join(run_dir, 'checkpoints', '*', '*_state.json'))
    assert 'stopping' in job_log()
    # every farm stopped itself (workers killed, leases closed, file removed), none was SIGKILLed
    stopped = [line for line in job_log().splitlines() if 'stopped; all workers killed' in line]
    assert len(stopped) == NODES, job_log()
    assert 'Killed' not in job_log(), job_log()
