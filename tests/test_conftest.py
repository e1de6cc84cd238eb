"""The suite's own signal handling (tests/conftest.py): a suite stopped by SIGTERM (``timeout``, a
CI runner, ``kill``) still tears its fixtures down, so namespace hosts, Slurm daemons and farms
made by module- or session-scoped fixtures do not outlive it."""
import os
import signal
import subprocess
import sys

from conftest import ROOT, wait_until

PROBE = '''
import os, sys, time
import pytest
sys.path.insert(0, os.environ['SUITE_TESTS'])
import conftest  # noqa: F401  (the suite's signal handling, as every test module gets it)
MARK = os.environ['PROBE_DIR']


@pytest.fixture(scope='module')
def made():
    open(os.path.join(MARK, 'made'), 'w').close()
    yield
    open(os.path.join(MARK, 'removed'), 'w').close()


def test_waits(made):
    open(os.path.join(MARK, 'running'), 'w').close()
    time.sleep(120)
'''


def test_sigterm_runs_the_fixtures_teardown(tmp_path):
    (tmp_path / 'test_probe.py').write_text(PROBE)
    env = dict(os.environ, SUITE_TESTS=os.path.join(ROOT, 'tests'), PROBE_DIR=str(tmp_path))
    suite = subprocess.Popen([sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider',
                              'test_probe.py'], cwd=str(tmp_path), env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert wait_until(lambda: (tmp_path / 'running').exists(), 60)
        assert not (tmp_path / 'removed').exists()
        suite.send_signal(signal.SIGTERM)
        out, _ = suite.communicate(timeout=30)
    finally:
        if suite.poll() is None:
            suite.kill()
            suite.wait()
    assert (tmp_path / 'removed').exists(), out
    assert 'KeyboardInterrupt: SIGTERM' in out
    assert suite.returncode == 2  # pytest's "interrupted"
