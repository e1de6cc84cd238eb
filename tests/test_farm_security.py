"""The farm against callers that are not its learners: sockets that never speak or speak
garbage, wrong keys, learners that vanish, and TLS. Real daemons (farm_daemon.FarmDaemon, in a
thread or as `python farm.py`), real worker processes."""
import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
import time

import Pyro4
import Pyro4.errors
import pytest

from conftest import ROOT, alive

GOOD = [0.5, 0.5]


def wait_for(condition, seconds):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def learner_works(proxy):
    """info, a lease, an environment, a reset and a step, as a learner would."""
    assert proxy.info()['capacity'] >= 1
    lease = proxy.open_lease(30)
    ids = proxy.make(lease, 'CheapEnv', {}, 1)['env_ids']
    assert proxy.reset(lease, ids) == [[0.0, 0.0, 0.0]]
    assert proxy.step(lease, ids, [GOOD])[0][0] == [1.0, 1.0, 1.0]
    assert proxy.close_lease(lease)


# --- sockets that never authenticate -------------------------------------------------------------

@pytest.mark.slow
def test_a_learner_is_served_while_400_sockets_never_authenticate(process_farm):
    """Regression: about 70 idle TCP connections that never authenticated took every thread of
    Pyro4's pool, and a learner with the right key then timed out."""
    f = process_farm(capacity=1, extra=['--key', 'right key', '--handshake-timeout', '3'])
    address = ('127.0.0.1', f.port)
    silent = [socket.create_connection(address, timeout=10) for _ in range(200)]
    garbage = []
    for k in range(200):
        s = socket.create_connection(address, timeout=10)
        # Half send a whole header of junk, half the start of a Pyro4 header and then nothing.
        s.sendall(os.urandom(64) if k % 2 else b'PYRO\x00')
        garbage.append(s)
    try:
        learner = Pyro4.Proxy('PYRO:farm@127.0.0.1:%d' % f.port)
        learner._pyroHmacKey = b'right key'
        learner._pyroSerializer = 'msgpack'
        learner._pyroMaxRetries = 0
        learner._pyroTimeout = 10  # a bound for a failing test, far above what a call needs
        learner_works(learner)
        learner._pyroRelease()
    finally:
        for s in silent + garbage:
            s.close()
    log = f.stop()
    refused = [line for line in log.splitlines() if 'refused' in line]
    assert refused and all('WARNING' in line and '127.0.0.1' in line for line in refused), log
    # Rate-limited: about one line per peer host every 10 s, not one per connection.
    assert len(refused) < 20, log
    assert 'not a Pyro4 client' in log or 'no handshake' in log or 'sent nothing' in log


@pytest.mark.slow
def test_an_authenticated_idle_connection_is_never_dropped(thread_farm):
    """A learner may sit at its prompt for hours on one connection: the handshake deadline does
    not apply once the handshake is done."""
    f = thread_farm(capacity=2, key='k', handshake_timeout=0.5)
    p = f.proxy()
    assert p.info()['capacity'] == 2
    connection = p._pyroConnection
    time.sleep(2.0)  # four handshake timeouts
    silent = socket.create_connection(('127.0.0.1', f.port))  # one that is dropped meanwhile
    time.sleep(1.5)
    assert silent.recv(1) == b''  # closed by the farm
    silent.close()
    assert p.info()['capacity'] == 2  # same connection: no retries allowed, none needed
    assert p._pyroConnection is connection


def test_wrong_key_and_garbage_are_logged_with_the_peer(thread_farm, caplog):
    """Regression: the farm logged nothing when it refused a caller."""
    caplog.set_level(logging.WARNING, logger='farm.door')
    f = thread_farm(key='right key')
    wrong = f.proxy(key='wrong key')
    with pytest.raises(Pyro4.errors.CommunicationError, match='hmac'):
        wrong.info()
    assert wait_for(lambda: 'wrong or missing key' in caplog.text, 5), caplog.text
    assert 'refused a caller from 127.0.0.1:' in caplog.text
    caplog.clear()
    f.daemon.refusals.every = 0.0  # no rate limit: the next refusal gets its own line
    with socket.create_connection(('127.0.0.1', f.port)) as s:
        s.sendall(b'GET / HTTP/1.0\r\n\r\n' + b'x' * 40)
        assert s.recv(1024) is not None  # Pyro4 answers with a refusal, or closes
    assert wait_for(lambda: 'not a Pyro4 client' in caplog.text, 5), caplog.text
    assert all(r.levelno == logging.WARNING for r in caplog.records)
    learner_works(f.proxy())  # and the farm goes on


def test_a_stranger_cannot_make_the_farm_allocate_what_a_header_claims(thread_farm, caplog):
    """Pyro4 allocates the size a message header claims before it checks the key: a handshake
    claiming 2 GB is refused from its header alone."""
    import struct
    from Pyro4 import constants, message
    caplog.set_level(logging.WARNING, logger='farm.door')
    f = thread_farm(key='k')
    f.daemon.refusals.every = 0.0
    claimed = 2 ** 31 - 1
    fields = [message.MSG_CONNECT, constants.PROTOCOL_VERSION, claimed, 0, 0, 2, 1]
    checksum = (sum(fields) + message.Message.checksum_magic) & 0xffff
    header = struct.pack(message.Message.header_format, b'PYRO', constants.PROTOCOL_VERSION,
                         message.MSG_CONNECT, 0, 1, claimed, 2, 0, 0, checksum)
    with socket.create_connection(('127.0.0.1', f.port), timeout=10) as s:
        s.sendall(header + b'x' * 100)
        assert s.recv(1) == b''  # closed, nothing allocated or answered
    assert wait_for(lambda: 'a handshake of %d bytes' % claimed in caplog.text, 5), caplog.text
    learner_works(f.proxy(key='k'))


def test_refusals_are_rate_limited_per_host():
    from farmside.daemon import Refusals
    lines = []

    class Catch(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())

    handler = Catch()
    logging.getLogger('farm.door').addHandler(handler)
    try:
        refusals = Refusals(every=3600)
        for k in range(500):
            refusals.note(('10.0.0.1', 1000 + k), 'wrong or missing key')
        refusals.note(('10.0.0.2', 5), 'not a Pyro4 client')
        assert len(lines) == 2 and '10.0.0.1:1000' in lines[0] and '10.0.0.2:5' in lines[1]
        refusals.every = 0.0
        refusals.flush()  # the 499 not yet said
        assert len(lines) == 3 and 'refused 499 callers from 10.0.0.1' in lines[2]
    finally:
        logging.getLogger('farm.door').removeHandler(handler)


# --- learners that disconnect --------------------------------------------------------------------

@pytest.mark.slow
def test_a_lease_whose_learner_disconnected_is_released_after_the_grace(thread_farm):
    f = thread_farm(release_after=1.0, lease_ttl=300)
    learner = f.proxy()
    lease = learner.open_lease(300)
    learner.make(lease, 'CheapEnv', {}, 2)
    pids = [int(pid) for pid in learner.worker_pids(lease).values()]
    watcher = f.proxy()
    assert watcher.info()['in_use'] == 2
    learner._pyroRelease()  # its connection closes, as when the learner's process dies
    assert wait_for(lambda: watcher.info()['in_use'] == 0, 10)
    assert not any(alive(pid) for pid in pids)
    with pytest.raises(LookupError, match='no such lease'):
        f.proxy().renew(lease)


@pytest.mark.slow
def test_a_connected_idle_learner_and_one_that_reconnects_keep_their_leases(thread_farm):
    f = thread_farm(release_after=1.0, lease_ttl=300)
    idle = f.proxy()
    idle_lease = idle.open_lease(300)
    idle.make(idle_lease, 'CheapEnv', {}, 1)
    back = f.proxy()
    back_lease = back.open_lease(300)
    back.make(back_lease, 'CheapEnv', {}, 1)
    back._pyroRelease()
    time.sleep(0.3)
    back = f.proxy()  # a farmer reconnects at its next call, within the grace
    assert back.renew(back_lease)
    time.sleep(3.0)  # three graces
    assert f.proxy().info()['in_use'] == 2
    assert idle.renew(idle_lease) and back.renew(back_lease)


@pytest.mark.slow
def test_frees_in_says_when_a_departed_learners_capacity_comes_back(thread_farm):
    f = thread_farm(capacity=1, release_after=5.0, lease_ttl=300)
    learner = f.proxy()
    learner.make(learner.open_lease(300), 'CheapEnv', {}, 1)
    other = f.proxy()
    assert 200 < other.info()['frees_in'] <= 300  # a connected learner: only its TTL
    learner._pyroRelease()
    assert wait_for(lambda: other.info()['frees_in'] <= 5.0, 5)
    with pytest.raises(ValueError) as refused:
        other.make(other.open_lease(30), 'CheapEnv', {}, 1)
    assert '1 of them by learners that disconnected, free in' in str(refused.value)
    assert wait_for(lambda: other.info()['in_use'] == 0, 15)
    assert other.info()['frees_in'] is None


# --- TLS -----------------------------------------------------------------------------------------

def make_certificate(directory):
    """A self-signed certificate for 127.0.0.1 / localhost, made with the openssl command."""
    cert, key = os.path.join(directory, 'farm.pem'), os.path.join(directory, 'farm.key')
    command = ['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key,
               '-out', cert, '-days', '2', '-subj', '/CN=127.0.0.1',
               '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost']
    try:
        subprocess.run(command, check=True, capture_output=True, timeout=60)
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip('cannot make a test certificate with openssl: %s' % e)
    return cert, key


TLS_CLIENT = textwrap.dedent('''
    import json, sys
    import Pyro4
    Pyro4.config.SERIALIZER = 'msgpack'
    Pyro4.config.SSL = True
    Pyro4.config.SSL_CACERTS = sys.argv[2]
    p = Pyro4.Proxy('PYRO:farm@127.0.0.1:%s' % sys.argv[1])
    p._pyroHmacKey = sys.argv[3].encode()
    p._pyroMaxRetries = 0
    p._pyroTimeout = 20
    out = {}
    try:
        out['capacity'] = p.info()['capacity']
        lease = p.open_lease(30)
        ids = p.make(lease, 'CheapEnv', {}, 1)['env_ids']
        out['reset'] = p.reset(lease, ids)
        out['step'] = p.step(lease, ids, [[0.5, 0.5]])[0][0]
        out['closed'] = p.close_lease(lease)
        out['cipher'] = p._pyroConnection.sock.cipher()[0]
    except Exception as e:
        out['error'] = '%s: %s' % (type(e).__name__, e)
    print(json.dumps(out))
''')


def tls_client(port, ca, key):
    """A learner with TLS, in its own process: Pyro4's SSL settings are process-wide."""
    result = subprocess.run([sys.executable, '-c', TLS_CLIENT, str(port), ca, key], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_tls_farm_serves_a_tls_learner_with_the_key_and_refuses_others(process_farm, tmp_path):
    cert, key = make_certificate(str(tmp_path))
    f = process_farm(capacity=1, extra=['--key', 'lab secret', '--tls-cert', cert,
                                        '--tls-key', key])
    served = tls_client(f.port, cert, 'lab secret')
    assert served.get('error') is None, served
    assert served['capacity'] == 1 and served['reset'] == [[0.0, 0.0, 0.0]]
    assert served['step'] == [1.0, 1.0, 1.0] and served['closed'] and served['cipher']
    # The key still counts under TLS...
    wrong_key = tls_client(f.port, cert, 'wrong')
    assert 'hmac' in wrong_key.get('error', ''), wrong_key
    # ...and a learner without TLS gets nothing (this process has Pyro4's SSL off).
    plain = Pyro4.Proxy('PYRO:farm@127.0.0.1:%d' % f.port)
    plain._pyroHmacKey = b'lab secret'
    plain._pyroSerializer = 'msgpack'
    plain._pyroMaxRetries = 0
    plain._pyroTimeout = 10
    with pytest.raises(Pyro4.errors.CommunicationError):
        plain.info()
    plain._pyroRelease()
    log = f.stop()
    assert 'with TLS' in log and 'TLS handshake failed' in log, log


def test_only_the_verbs_can_be_called_over_the_wire(thread_farm):
    """close() kills every learner's workers and disconnected() is the daemon's news of a closed
    connection: neither may be called by a client (they were, with any key the farm accepted)."""
    f = thread_farm(capacity=2)
    p = f.proxy()
    lease = p.open_lease()
    env_id = p.make(lease, 'CheapEnv', {}, 1)['env_ids'][0]
    for name, args in (('close', ()), ('disconnected', (1,)), ('_drop', ([env_id],))):
        with pytest.raises(AttributeError):
            getattr(p, name)(*args)
    p.reset(lease, [env_id])
    assert not isinstance(p.step(lease, [env_id], [[0.5, 0.5]])[0], dict)  # the farm still serves
    assert sorted(p._pyroMethods) == sorted([
        'info', 'open_lease', 'renew', 'close_lease', 'worker_pids', 'make', 'release', 'reset',
        'step', 'set_params', 'send', 'send_reset', 'post', 'post_reset', 'recv'])


def test_the_one_private_pyro4_override_still_matches_pyro4():
    """farmside/daemon.py overrides Pyro4.Daemon._handshake (its comment says why) and swaps the
    class of Pyro4's thread-pool transport server: both rely on Pyro4 4.82's shapes. A Pyro4
    that changes them fails here, not in a farm that silently stops classifying refusals."""
    import inspect
    from Pyro4.socketserver.threadpoolserver import SocketServer_Threadpool
    from farmside import daemon
    assert Pyro4.__version__ == '4.82'
    assert list(inspect.signature(Pyro4.Daemon._handshake).parameters) == [
        'self', 'conn', 'denied_reason']
    assert daemon.FarmDaemon._handshake is not Pyro4.Daemon._handshake
    assert issubclass(daemon.GuardedServer, SocketServer_Threadpool)
