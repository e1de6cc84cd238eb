"""Language-level compatibility, checked statically with vermin: the farm side must parse and run
on Python 2.7 and 3.6+, the host side on 3.6+ (the design's legacy setups). Lines that only run
on newer versions behind a version check carry a ``# novermin`` comment."""
import glob
import os
import subprocess
import sys

import pytest

from conftest import ROOT

# logformat.py is imported by both sides, so it is held to the farm side's floor.
FARM_SIDE = ['farm.py', 'farm_daemon.py', 'envworker.py', 'farm_compat.py', 'logformat.py'] + sorted(
    os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, 'envs', '*.py')))
# (a module listed here that does not exist yet is skipped: evaluate.py, render.py are coming)
HOST_SIDE = ['farmer.py', 'farmlist.py', 'vecenv.py', 'errors.py', 'session.py', 'runconfig.py',
             'checkpoints.py', 'train_sac.py', 'train_ddpg.py', 'tblog.py', 'evaluate.py',
             'render.py'] + sorted(
    os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, 'agents', '*.py'))
    + glob.glob(os.path.join(ROOT, 'host', '*.py')))


# vermin has no __main__ module; its console script sits next to this interpreter.
VERMIN = os.path.join(os.path.dirname(sys.executable), 'vermin')


def vermin(targets, files):
    files = [f for f in files if os.path.exists(os.path.join(ROOT, f))]
    command = [VERMIN, '--no-tips', '--violations', '--eval-annotations'] + ['-t=%s' % t for t in targets] + files
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True), files


def test_farm_side_is_python27_and_36_compatible():
    result, files = vermin(['2.7', '3.6-'], FARM_SIDE)
    assert 'farm.py' in files and 'envs/base.py' in files
    assert result.returncode == 0, result.stdout + result.stderr


def test_host_side_is_python36_compatible():
    result, files = vermin(['3.6-'], HOST_SIDE)
    assert 'farmer.py' in files and 'host/link.py' in files
    assert result.returncode == 0, result.stdout + result.stderr


def test_vermin_catches_a_violation(tmp_path):
    """The check can fail: an f-string is not Python 2.7."""
    bad = tmp_path / 'bad.py'
    bad.write_text('x = 1\nprint(f"{x}")\n')
    result = subprocess.run([VERMIN, '--no-tips', '--violations',
                             '-t=2.7', '-t=3.6-', str(bad)], capture_output=True, text=True)
    assert result.returncode != 0
