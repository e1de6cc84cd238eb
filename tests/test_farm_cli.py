"""farm.py's command line: every bad flag value ends in one line on stderr and exit code 2, with no
traceback, before anything starts (real `python farm.py` processes)."""
import os
import socket
import subprocess
import sys

import pytest

from conftest import ROOT, free_port

FARM = os.path.join(ROOT, 'farm.py')


def run_farm(*args, **kwargs):
    env = dict(os.environ)
    env.pop('FARM_KEY', None)
    return subprocess.run([sys.executable, FARM] + list(args), capture_output=True, text=True,
                          timeout=60, env=env, **kwargs)


@pytest.mark.parametrize('args,says', [
    (['--port', '70000'], '--port 70000: a port is 1-65535'),
    (['--port', '-1'], '--port -1: a port is 1-65535'),
    (['--port', 'abc'], "argument --port: invalid int value: 'abc'"),
    (['--capacity', '0'], '--capacity 0: a farm serves at least 1 environment'),
    (['--capacity', '-3'], '--capacity -3: a farm serves at least 1 environment'),
    (['--step-timeout', '0'], '--step-timeout 0.0: must be a number of seconds > 0'),
    (['--step-timeout', 'nan'], '--step-timeout nan: must be a number of seconds > 0'),
    (['--lease-ttl', '-5'], '--lease-ttl -5.0: must be a number of seconds > 0'),
    (['--release-after', '0'], '--release-after 0.0: must be a number of seconds > 0'),
    (['--handshake-timeout', '0'], '--handshake-timeout 0.0: must be a number of seconds > 0'),
    (['--recycle-steps', '0'], '--recycle-steps 0: must be at least 1'),
    (['--overcommit', '0.5'], '--overcommit 0.5: a factor of capacity, at least 1'),
    (['--tls-cert', 'cert.pem'], 'TLS needs both --tls-cert FILE and --tls-key FILE'),
    (['--tls-cert', '/no/such.pem', '--tls-key', '/no/such.key'],
     '--tls-cert /no/such.pem: cannot read it'),
    (['--tls-cert', FARM, '--tls-key', FARM], 'not a PEM certificate and its private key'),
    (['--host', '0.0.0.0'], 'beyond loopback) needs a shared key'),
    (['--log-level', 'LOUD'], '--log-level LOUD: one of DEBUG'),
])
def test_a_bad_flag_value_is_one_line_and_exit_2(args, says):
    """Regression: --port 70000 gave a 17-line traceback; --capacity 0 silently became the CPU
    count and --capacity -3 was served."""
    result = run_farm(*args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith('farm.py: ') and says in lines[0], lines[0]
    assert 'Traceback' not in result.stderr and result.stdout == ''


def test_a_port_in_use_is_one_line_and_exit_2():
    with socket.socket() as taken:
        taken.bind(('127.0.0.1', 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = run_farm('--port', str(port))
    lines = result.stderr.splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith('farm.py: cannot listen on 127.0.0.1:%d' % port)
    assert 'choose another --port' in lines[0]


def test_an_unknown_host_is_one_line_and_exit_2():
    result = run_farm('--host', 'no.such.host.invalid', '--key', 'k', '--port', str(free_port()))
    lines = result.stderr.splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith('farm.py: --host no.such.host.invalid: not an address')


def test_the_help_names_the_operator_policies():
    result = run_farm('--help')
    assert result.returncode == 0
    for flag in ('--overcommit', '--lease-ttl', '--release-after', '--tls-cert', '--tls-key',
                 '--handshake-timeout'):
        assert flag in result.stdout
