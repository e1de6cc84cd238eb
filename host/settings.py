"""The learner side's settings: every timeout and interval of the host package in one place, and
the facts both sides agree on, taken from common/protocol.py (port, key and TLS variables, lease
timings, overcommit), never written a second time here.

The host modules read these as ``settings.NAME`` where they use them, not at import, so a test
or a drill changes one for the whole learner side with ``monkeypatch.setattr(settings, 'NAME',
value)``. Two are bound once, as defaults in a signature: ``LEASE_TTL`` (``Farmer(lease_ttl=)``)
and ``CLOSE_TIMEOUT`` (the default of ``Farmer.close_leases(timeout=)``).

Python 3.6 compatible.
"""
from common import protocol

DEFAULT_PORT = protocol.DEFAULT_PORT
KEY_ENV = protocol.KEY_ENV
TLS_CA_ENV = protocol.TLS_CA_ENV
LOCAL_HOSTS = ('127.0.0.1', 'localhost', '::1')

LEASE_TTL = protocol.LEASE_TTL
MONITOR_EVERY = 1.0       # the keep-alive thread's tick: stall reports, probes of lost farms
KEEPALIVE_EVERY = protocol.KEEPALIVE_EVERY  # renew leases, refresh every farm's numbers, retry moving back
RETRY_EVERY = 10.0        # probe a farm that stopped answering
STALL_AFTER = 5.0         # a call outstanding this long is reported...
REPORT_EVERY = 5.0        # ...every this many seconds while the farm does not answer a probe
SLOW_REPORT_EVERY = 30.0  # ...or this often while it does (a slow environment step)
PROBE_TIMEOUT = 3.0
CALL_MARGIN = 30.0        # a call times out this long after the farm's own step timeout
CLOSE_TIMEOUT = 3.0       # close() returns within about this long, whatever the farms do
WAIT_FOR_CAPACITY = 30.0  # capacity a departed learner still holds is waited for this long
BUILD_SECONDS = 120.0     # a farm's time to build environments (its BUILD_TIMEOUT)
OVERCOMMIT = protocol.OVERCOMMIT  # a farm taking over a lost farm's environments runs up to this x capacity
RECV_WAIT = 1.0           # asynchronous mode: how long one farm.recv waits on the farm (the
#                           receiver then checks whether it should stop, and calls again)
RECV_THREADS = 4          # asynchronous mode: recvs a receiver keeps going to a far farm at once,
#                           each on its own thread and connection, so that one waits at the farm
#                           while the others' answers travel back (through a far link a result
#                           would otherwise wait up to a round trip for the next recv to arrive)
FAR_RTT = 0.002           # seconds: a farm whose fastest answer to a probe took at least this
#                           long is far (RECV_THREADS receiver threads; a near one gets one)
RECV_LINGER = 0.002       # asynchronous mode: how long a farm's recv waits, results in hand, for
#                           environments due within it (each one that misses the answer waits
#                           a round trip more: 40 ms through a 20 ms link)
