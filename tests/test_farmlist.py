"""The farm list (farmlist.py, Farmer(farms=...)) and the errors a user sees when no farm answers:
one line naming the file, the entry and what to write; advice that fits each farm's cause."""
import os
import socket
import subprocess
import sys
import threading

import pytest

from common import errors
import farmer
from conftest import ROOT, free_port
from host import settings


@pytest.mark.parametrize('entries, says', [
    ([], "lists no farm: add one, e.g. farmlist_base = [('127.0.0.1', 4)]"),
    ([('127.0.0.1', 'four')], "entry 1 ('127.0.0.1', 'four'): the capacity must be a whole number"),
    ([('a', 2), ('b', 0)], "entry 2 ('b', 0): the capacity must be a whole number of environments, 1"),
    ([('a', -3)], 'entry 1'),
    ([('a', 2, 70000)], "entry 1 ('a', 2, 70000): the port must be a whole number from 1 to 65535"),
    ([('a', 2, 0)], 'the port must be'),
    ([('a', 2.5)], 'the capacity must be'),
    ([('a', True)], 'the capacity must be'),
    ([(4, 2)], 'the host must be a machine name or address'),
    ([('a',)], 'expected 2 or 3 values'),
    (['a:2'], 'expected 2 or 3 values'),
    ([('h', 2), ('h', 3)], "entry 2 ('h', 3): the same farm (h:20099) as entry 1"),
    ([('localhost', 2, 5000), ('127.0.0.1', 2, 5000)], 'the same farm'),
    ('127.0.0.1', 'must be a list'),
])
def test_a_bad_farm_list_names_the_file_the_entry_and_what_to_write(entries, says):
    """Regression: [] crashed train_sac.py with IndexError, ('127.0.0.1', 'four') gave a raw int()
    error, duplicates double-counted capacity, capacity < 1 and ports out of range passed."""
    with pytest.raises(errors.FarmListError) as e:
        farmer.parse_farms(entries, '/x/farmlist.py')
    message = str(e.value)
    assert message.startswith('/x/farmlist.py') and says in message, message
    assert '\n' not in message
    if entries and isinstance(entries, list):
        assert 'write (host, capacity[, port])' in message or 'the same farm' in message


def test_good_entries_and_strings_from_the_command_line():
    assert farmer.parse_farms([('127.0.0.1', 4), ('10.0.0.2', '8', '20100')]) == [
        ('127.0.0.1', 4, 20099), ('10.0.0.2', 8, 20100)]
    assert farmer.parse_farms([['h', 1, 1]]) == [('h', 1, 1)]


def write_farmlist(tmp_path, text):
    (tmp_path / 'farmlist.py').write_text(text)
    return str(tmp_path)


def run_farmer_cli(farmlist_dir, *args, env=None):
    """``python farmer.py`` reading the farmlist.py in ``farmlist_dir``."""
    # (-c: the working directory comes first on sys.path, so its farmlist.py is the one read)
    code = 'import sys, farmer; sys.exit(farmer.main(%r))' % (list(args),)
    full_env = dict(os.environ)
    full_env.pop('FARM_KEY', None)
    full_env.update(env or {})
    return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          timeout=60, env=full_env, cwd=farmlist_dir)


@pytest.mark.parametrize('text, says', [
    ('farmlist_base = []\n', 'lists no farm'),
    ("farmlist_base = [('127.0.0.1', 'four')]\n", "entry 1 ('127.0.0.1', 'four')"),
    ("farmlist_base = [('127.0.0.1', 4\n", 'line 1'),
    ('farms = []\n', 'defines no farmlist_base'),
])
def test_python_farmer_py_shows_a_farm_list_error_as_one_line(tmp_path, text, says):
    result = run_farmer_cli(write_farmlist(tmp_path, text))
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0
    assert len(lines) == 1 and lines[0].startswith('farmer.py: '), result.stderr
    assert says in lines[0] and 'farmlist.py' in lines[0], lines[0]


def test_python_farmer_py_says_why_no_farm_answered_in_one_line(tmp_path):
    port = free_port()
    result = run_farmer_cli(write_farmlist(tmp_path, "farmlist_base = [('127.0.0.1', 2, %d), "
                                                     "('no-such-host.invalid', 2)]\n" % port))
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and 'Traceback' not in result.stderr, result.stderr
    assert lines[0].startswith('farmer.py: no farm answered')
    assert 'start `python farm.py --port %d` on 127.0.0.1' % port in lines[0]
    assert 'no-such-host.invalid does not resolve' in lines[0]
    assert 'NO' in result.stdout  # the status table is printed first


@pytest.mark.slow
def test_advice_fits_each_cause(thread_farm, monkeypatch):
    """Regression: every cause got 'Start one with python farm.py', even a name that does not
    resolve, a machine that does not answer, or a wrong key."""
    monkeypatch.setattr(settings, 'PROBE_TIMEOUT', 1.0)
    keyed = thread_farm(key='s3cret')
    silent = socket.socket()  # accepts connections (the kernel does) but never answers
    silent.bind(('127.0.0.1', 0))
    silent.listen(8)
    quiet = silent.getsockname()[1]
    refused = free_port()  # after binding `silent`, so the two can never be the same port
    try:
        with pytest.raises(errors.NoFarmError) as e:
            farmer.Farmer(farms=[('no-such-host.invalid', 1), ('127.0.0.1', 1, refused),
                                 ('127.0.0.1', 1, quiet),
                                 ('127.0.0.1', 1, keyed.port)], key='', start_local=False)
    finally:
        silent.close()
    message = str(e.value)
    assert '\n' not in message
    assert 'no-such-host.invalid does not resolve; check it in the farm list' in message
    assert 'nothing listens there; start `python farm.py --port %d`' % refused in message
    assert '%d: no answer (timed out); the machine is down or a firewall drops port %d' % (
        quiet, quiet) in message
    assert '%d: wrong or missing key; export FARM_KEY=' % keyed.port in message


def test_farmer_is_a_user_error_for_an_empty_list():
    with pytest.raises(errors.FarmListError, match='--farms lists no farm'):
        farmer.Farmer(farms=[], where='--farms')
