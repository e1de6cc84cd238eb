"""common/protocol.py: the facts the farm and the learner must agree on, defined once.

Both sides import this module (the farm side from farmside/, the learner side from host/ through
host/settings.py), so no number or name here is ever written a second time elsewhere: the Pyro4
object and its default port, the environment variables of the shared key and the TLS CA, the
protocol version, the one-way verbs, the kinds of a per-environment error and how to tell one
from a result, the lease timings that the two ends' behaviour depends on, and the rendezvous
file's name and fields.

Python 2.7 and 3.6+; the standard library only. What crosses the wire and how arrays are packed
is common/wire.py.
"""
from __future__ import absolute_import

PROTOCOL = 3                 # the farm's verbs and their shapes; bump when one changes
DEFAULT_PORT = 20099
OBJECT_ID = 'farm'
ONEWAY = ('post', 'post_reset')  # the farm's one-way verbs: no answer is waited for
KEY_ENV = 'FARM_KEY'         # the shared key (Pyro4's HMAC), same on farm and learner
TLS_CA_ENV = 'FARM_TLS_CA'   # the CA file a learner trusts for farms serving TLS

# The kinds of a per-environment error element {'error': text, 'kind': kind}:
# 'input': the caller's request was bad (nothing happened); 'env': the simulation raised (reset
# it); 'lost': its worker died or passed the step timeout and has been replaced (reset it).
ERROR_KINDS = ('input', 'env', 'lost')

# Leases. A lease lives LEASE_TTL seconds without any call (also the most a learner may ask for);
# the learner renews its leases at least every KEEPALIVE_EVERY seconds, and the farm releases a
# lease's environments RELEASE_AFTER its last connection closed, which must be longer than
# KEEPALIVE_EVERY (a learner whose connection broke reconnects at its next call).
LEASE_TTL = 60.0
KEEPALIVE_EVERY = 10.0
RELEASE_AFTER = 15.0
# How far above its capacity a farm runs environments a learner moved to it from a lost farm
# (make(..., overcommit=True)). 2: a learner spread evenly over two farms that loses one keeps
# all its environments on the other (at half speed each, two processes per core) until the lost
# farm answers again and they move back; with more farms a loss needs less (n/(n-1)). 1 refuses
# it: that learner then stops when either farm dies. More than 2 only slows everything down.
OVERCOMMIT = 2.0

# A farm started with --rendezvous DIR announces itself in DIR as one JSON file named
# RENDEZVOUS_PREFIX + host-port + RENDEZVOUS_SUFFIX, holding at least RENDEZVOUS_FIELDS
# (farmside/rendezvous.py writes it, host/rendezvous.py reads it).
RENDEZVOUS_PREFIX, RENDEZVOUS_SUFFIX = 'farm-', '.json'
RENDEZVOUS_FIELDS = ('address', 'port', 'capacity', 'protocol', 'pid', 'hostname')


def uri(host, port):
    """The Pyro4 URI of the farm at host:port."""
    return 'PYRO:%s@%s:%d' % (OBJECT_ID, host, int(port))


def is_error(element):
    """Whether one environment's element of an answer is an error ``{'error': text, 'kind':
    kind}`` (exactly those two keys), not a result. A result is a row (a list), and a packed
    array is a dict of other keys, so neither is ever taken for an error."""
    return (isinstance(element, dict) and len(element) == 2 and 'error' in element
            and 'kind' in element)


def error(text, kind):
    """One environment's error element (``kind`` one of ERROR_KINDS)."""
    assert kind in ERROR_KINDS, kind
    return {'error': text, 'kind': kind}


def protocol_mismatch(info):
    """None when a farm's ``info()`` reports this protocol, else one line saying what differs
    and what to do (the learner raises errors.ProtocolMismatchError with it)."""
    versions = info.get('versions') if isinstance(info, dict) else None
    spoken = versions.get('farm_protocol') if isinstance(versions, dict) else None
    if spoken == PROTOCOL:
        return None
    where = info.get('farm') if isinstance(info, dict) else None
    said = 'no farm protocol version' if spoken is None else 'farm protocol %s' % (spoken,)
    return ('farm %s speaks %s, this learner %d: run the same version of this project on both'
            % (where or '?', said, PROTOCOL))
