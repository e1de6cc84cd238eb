"""The learner side's settings: the names both sides agree on (port, key variable, local host
names) and every timeout and interval of the host package, in one place.

The host modules read these as ``settings.NAME`` where they use them, not at import, so a test
or a drill changes one for the whole learner side with ``monkeypatch.setattr(settings, 'NAME',
value)``. Two are bound once, as defaults in a signature: ``LEASE_TTL`` (``Farmer(lease_ttl=)``)
and ``CLOSE_TIMEOUT`` (the default of ``Farmer.close_leases(timeout=)``).

Python 3.6 compatible.
"""
DEFAULT_PORT = 20099
KEY_ENV = 'FARM_KEY'
TLS_CA_ENV = 'FARM_TLS_CA'
LOCAL_HOSTS = ('127.0.0.1', 'localhost', '::1')

LEASE_TTL = 60.0
MONITOR_EVERY = 1.0       # the keep-alive thread's tick: stall reports, probes of lost farms
KEEPALIVE_EVERY = 10.0    # renew leases, refresh every farm's numbers, retry moving back
RETRY_EVERY = 10.0        # probe a farm that stopped answering
STALL_AFTER = 5.0         # a call outstanding this long is reported...
REPORT_EVERY = 5.0        # ...every this many seconds while the farm does not answer a probe
SLOW_REPORT_EVERY = 30.0  # ...or this often while it does (a slow environment step)
PROBE_TIMEOUT = 3.0
CALL_MARGIN = 30.0        # a call times out this long after the farm's own step timeout
CLOSE_TIMEOUT = 3.0       # close() returns within about this long, whatever the farms do
WAIT_FOR_CAPACITY = 30.0  # capacity a departed learner still holds is waited for this long
BUILD_SECONDS = 120.0     # a farm's time to build environments (its BUILD_TIMEOUT)
OVERCOMMIT = 2            # a farm taking over a lost farm's environments runs up to this x capacity
EAGER_SECONDS = 0.0005    # a farm answering faster than this is polled for (see link.py)
