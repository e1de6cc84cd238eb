"""The tree is the architecture, checked over the source so a later change cannot quietly break it:
which package may import which (the arrows run one way), and no module reaching into another's
private attributes. Plain ``ast`` over every project file; nothing is imported or run."""
import ast
import os
import subprocess

import pytest

from conftest import ROOT

# What each part of the tree may import of the project (besides itself). The farm side (common,
# envs, farmside, farm.py) never imports the learner's side; packages never import the entry
# scripts; the host side speaks to farms only through host/.
ENTRY = {'farm', 'farmer', 'farmlist', 'train_sac', 'train_ddpg', 'evaluate'}
MAY_IMPORT = {
    'common': set(),
    'envs': set(),
    'farmside': {'common', 'envs'},
    'farm': {'common', 'farmside', 'envs'},
    'vecenv': {'common', 'envs'},
    'host': {'common', 'vecenv'},
    'agents': {'common', 'vecenv', 'envs'},
    'run': {'common', 'vecenv', 'host', 'agents', 'envs', 'farmlist'},
    'farmer': {'common', 'host', 'vecenv', 'farmlist'},
    'farmlist': set(),
    'train_sac': {'common', 'run', 'agents', 'vecenv', 'host', 'farmer'},
    'train_ddpg': {'common', 'run', 'agents', 'vecenv', 'host', 'farmer'},
    'evaluate': {'common', 'run', 'agents', 'vecenv', 'envs'},
}
FARM_SIDE = ('common', 'envs', 'farmside', 'farm')
LEARNER_SIDE = ('vecenv', 'host', 'agents', 'run', 'farmer', 'train_sac', 'train_ddpg',
                'evaluate')
TOP = set(MAY_IMPORT) | {'bench'}

# Private names of other code that the project may use, each for a documented reason:
# Pyro4 names its proxy and daemon API with a _pyro prefix (so that it never clashes with a
# remote object's methods): that is its public API; os._exit is the standard library's.
ALLOWED_PRIVATE = ('_pyro', '_exit')
# Compatibility shims (one per side) are where third-party internals are touched, each with a
# comment saying what broke; and the one private Pyro4 override (tested in test_farm_security).
SHIMS = {'agents/compat.py', 'envs/osim_compat.py', 'farmside/compat.py'}
PYRO4_OVERRIDE = ('farmside/daemon.py', '_handshake')


def source_files():
    files = subprocess.run(['git', 'ls-files', '*.py'], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    return [f for f in files if not f.startswith(('tests/', 'results/'))
            and os.path.exists(os.path.join(ROOT, f))]


def parse(path):
    with open(os.path.join(ROOT, path)) as f:
        return ast.parse(f.read(), path)


def part_of(path):
    return path.split('/')[0][:-3] if '/' not in path else path.split('/')[0]


def project_imports(tree):
    """(line, top-level project name) of every import, wherever it sits."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name.split('.')[0]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module.split('.')[0]


def arrow_violations(files):
    found = []
    for path in files:
        part = part_of(path)
        if part not in MAY_IMPORT:  # bench/, setup: may import anything
            continue
        for line, name in project_imports(parse(path)):
            if name in TOP and name != part and name not in MAY_IMPORT[part]:
                found.append('%s:%d imports %s' % (path, line, name))
    return found


def defined_privates(tree):
    """Every private name a module defines: functions, classes, attributes it assigns (on self
    or anything else), class and module variables."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names.add(node.value)  # __slots__ entries
    return {n for n in names if n.startswith('_')}


def private_violations(files):
    """``obj._name`` where ``obj`` is not self, cls or super() and ``_name`` is not defined in the
    same module: one module reaching into another's private state."""
    found = []
    for path in files:
        if path in SHIMS:
            continue
        tree = parse(path)
        own = defined_privates(tree)
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Attribute) and node.attr.startswith('_')
                    and not node.attr.startswith('__')):
                continue
            value = node.value
            if isinstance(value, ast.Name) and value.id in ('self', 'cls'):
                continue
            if isinstance(value, ast.Call) and getattr(value.func, 'id', None) == 'super':
                continue
            if node.attr in own or node.attr.startswith(ALLOWED_PRIVATE):
                continue
            if (path, node.attr) == PYRO4_OVERRIDE:
                continue
            found.append('%s:%d .%s' % (path, node.lineno, node.attr))
    return found


def test_the_arrows_run_one_way():
    assert arrow_violations(source_files()) == []


def test_the_farm_side_never_imports_the_learner_side():
    farm_files = [f for f in source_files() if part_of(f) in FARM_SIDE]
    assert 'farmside/core.py' in farm_files and 'common/protocol.py' in farm_files
    for path in farm_files:
        for line, name in project_imports(parse(path)):
            assert name not in LEARNER_SIDE, '%s:%d imports %s' % (path, line, name)


def test_no_module_reaches_into_another_modules_private_attributes():
    assert private_violations(source_files()) == []


def test_every_package_says_what_lives_there_and_what_it_may_import():
    for package in ('common', 'farmside', 'envs', 'vecenv', 'host', 'agents', 'run', 'bench'):
        doc = ast.get_docstring(parse(package + '/__init__.py'))
        assert doc and 'import' in doc, package


def test_no_source_file_outside_tests_and_bench_is_over_400_lines():
    long = []
    for path in source_files():
        if path.startswith('bench/'):
            continue
        with open(os.path.join(ROOT, path)) as f:
            lines = sum(1 for _ in f)
        if lines > 400:
            long.append('%s: %d lines' % (path, lines))
    assert long == []


def non_ascii_farm_side_files(paths):
    """Farm-side files that Python 2.7 cannot read: it refuses a non-ASCII byte in a file with no
    encoding line (PEP 263), so one accented name in a docstring stops every 2.7 farm."""
    found = []
    for path in paths:
        if part_of(path) not in FARM_SIDE:
            continue
        with open(os.path.join(ROOT, path), 'rb') as f:
            for number, line in enumerate(f, 1):
                if any(byte > 127 for byte in line):
                    found.append('%s:%d' % (path, number))
    return found


def test_the_farm_side_is_ascii_so_python27_can_read_it():
    assert non_ascii_farm_side_files(source_files()) == []


def test_the_ascii_check_finds_an_accented_name(tmp_path, monkeypatch):
    (tmp_path / 'envs').mkdir()
    (tmp_path / 'envs' / 'bad.py').write_text('"""Kidzi\u0144ski et al."""\n', encoding='utf-8')
    monkeypatch.setattr(__import__(__name__), 'ROOT', str(tmp_path))
    assert non_ascii_farm_side_files(['envs/bad.py', 'host/x.py']) == ['envs/bad.py:1']


@pytest.mark.parametrize('case, finds', [
    ('from host import link\n', 'imports host'),
    ('import run.session\n', 'imports run'),
    ('import farmer\n', 'imports farmer'),
])
def test_the_arrow_check_finds_a_farm_side_module_importing_the_learner_side(tmp_path,
                                                                              monkeypatch, case,
                                                                              finds):
    """The checks can fail: a farm-side file that imports the learner's side is reported."""
    (tmp_path / 'farmside').mkdir()
    (tmp_path / 'farmside' / 'bad.py').write_text(case)
    monkeypatch.setattr(__import__(__name__), 'ROOT', str(tmp_path))
    found = arrow_violations(['farmside/bad.py'])
    assert len(found) == 1 and finds in found[0]


def test_the_private_check_finds_another_modules_private_attribute(tmp_path, monkeypatch):
    (tmp_path / 'host').mkdir()
    (tmp_path / 'host' / 'bad.py').write_text(
        'class A(object):\n'
        '    def __init__(self, env):\n'
        '        self._mine = 1\n'
        '        self.other = env._displaced\n'  # another module's private: reported
        '        env._mine = 2\n')                # a name this module defines: not reported
    monkeypatch.setattr(__import__(__name__), 'ROOT', str(tmp_path))
    assert private_violations(['host/bad.py']) == ['host/bad.py:4 ._displaced']
