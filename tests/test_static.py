"""Language-level compatibility, checked statically with vermin: the farm side must parse and run
on Python 2.7 and 3.6+, the host side on 3.6+ (the design's legacy setups). Lines that only run
on newer versions behind a version check carry a ``# novermin`` comment."""
import ast
import glob
import os
import subprocess
import sys

import pytest

from conftest import ROOT


def _module_file(name):
    """The project file of module ``name`` (a.b -> a/b.py or a/b/__init__.py), or None."""
    base = os.path.join(ROOT, *name.split('.'))
    for path in (base + '.py', os.path.join(base, '__init__.py')):
        if os.path.isfile(path):
            return os.path.relpath(path, ROOT)
    return None


def imported_project_files(entry):
    """``entry`` and every project module it imports, transitively, wherever the import statement
    sits (a function-level ``import envs`` counts): the files that run in its process."""
    found, todo = set(), [entry]
    while todo:
        path = todo.pop()
        if path in found:
            continue
        found.add(path)
        with open(os.path.join(ROOT, path)) as f:
            tree = ast.parse(f.read(), path)
        names = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.append(node.module)  # from m import x: x may be a module of package m
                names += ['%s.%s' % (node.module, alias.name) for alias in node.names]
        for name in names:
            parts = name.split('.')
            for k in range(1, len(parts) + 1):  # a.b.c also runs a/__init__.py and a/b
                module = _module_file('.'.join(parts[:k]))
                if module is not None and module not in found:
                    todo.append(module)
    return sorted(found)


# The farm side is found, not listed: farm.py and everything it imports (common/wire.py and
# common/logformat.py included: the host imports them too, so they are held to the farm side's floor).
FARM_SIDE = imported_project_files('farm.py')
# (a module listed here that does not exist yet is skipped: evaluate.py, run/render.py are coming)
HOST_SIDE = ['farmer.py', 'farmlist.py', 'vecenv/contract.py', 'common/errors.py', 'common/wire.py', 'run/session.py',
             'run/config.py', 'run/runfiles.py', 'run/checkpoints.py', 'run/checkpoint_layout.py', 'run/checkpoint_writing.py', 'run/progress.py', 'train_sac.py', 'train_ddpg.py', 'run/tblog.py', 'evaluate.py',
             'run/render.py'] + sorted(
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
    # The walk found the modules the farm runs (envs through a function-level import).
    assert set(files) >= {'farm.py', 'farmside/daemon.py', 'farmside/envworker.py', 'farmside/compat.py',
                          'common/logformat.py', 'common/wire.py', 'envs/__init__.py', 'envs/base.py',
                          'envs/toy.py', 'envs/osim.py', 'envs/seeding.py'}, files
    assert not set(files) & {'farmer.py', 'common/errors.py', 'vecenv/contract.py'}, files
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
