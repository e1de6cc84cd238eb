"""Why a farm does not answer, and what the user should do about it.

- :func:`classify` sorts a failed call's exception into a cause: 'dns', 'refused', 'timeout',
  'key', 'tls', 'protocol', 'closed' or 'other' (host/link.py adds 'version': a farm that
  answers in another farm protocol version, see protocol.protocol_mismatch).
- :func:`describe` is the exception's text for logs and ``info['lost']``, with a hint for a key
  mismatch.
- :func:`advice` is one sentence for a farm link that did not answer (its ``cause``, ``error``,
  ``host``, ``port`` and ``name``): what is wrong and what to do; the farmer joins these into its
  :class:`errors.NoFarmError` and FarmsLostError messages.

Python 3.6 compatible.
"""
import socket

import Pyro4.errors

from host import settings


def classify(error):
    """Why a farm does not answer: 'dns', 'refused', 'timeout', 'key', 'tls', 'protocol',
    'closed' or 'other' (each has its own advice in :func:`advice`)."""
    text = str(error).lower()
    cause = getattr(error, '__cause__', None)
    if isinstance(cause, socket.gaierror) or 'name or service not known' in text \
            or 'nodename nor servname' in text or 'name resolution' in text:
        return 'dns'
    if isinstance(cause, ConnectionRefusedError) or 'connection refused' in text:
        return 'refused'
    if 'hmac' in text:
        return 'key'
    if 'ssl' in text or 'certificate' in text or 'tls' in text:
        return 'tls'
    if isinstance(error, Pyro4.errors.TimeoutError) or 'timeout' in text or 'timed out' in text:
        return 'timeout'
    if isinstance(error, Pyro4.errors.ProtocolError):
        return 'protocol'
    if isinstance(error, Pyro4.errors.ConnectionClosedError) or 'not enough data' in text:
        return 'closed'
    return 'other'


def describe(error):
    text = str(error) or type(error).__name__
    if classify(error) == 'key':
        text += ' (wrong or missing key: export %s with the farm\'s key)' % settings.KEY_ENV
    return text


def advice(link):
    """One sentence for a farm that did not answer: what is wrong and what to do."""
    cause, host, port = link.cause, link.host, link.port
    if cause == 'version':  # the farm's own words already say what to do
        return link.error
    if cause == 'dns':
        return ('%s: the name %s does not resolve; check it in the farm list (or use the '
                'machine\'s IP address)' % (link.name, host))
    if cause == 'refused':
        return ('%s: nothing listens there; start `python farm.py --port %d` on %s (with --host '
                '0.0.0.0 --key SECRET for other machines), or fix the port in the farm list'
                % (link.name, port, host))
    if cause == 'timeout':
        return ('%s: no answer (timed out); the machine is down or a firewall drops port %d'
                % (link.name, port))
    if cause == 'key':
        return ('%s: wrong or missing key; export %s=<the key the farm was started with>'
                % (link.name, settings.KEY_ENV))
    if cause == 'tls':
        return ('%s: TLS failed (%s); start the farm with --tls-cert/--tls-key and set %s to '
                'the CA that signed its certificate' % (link.name, link.error, settings.TLS_CA_ENV))
    if cause == 'protocol':
        return ('%s: something answers that does not speak our protocol (%s): another program '
                'on that port, or a farm using TLS (set %s) or not when we do'
                % (link.name, link.error, settings.TLS_CA_ENV))
    if cause == 'closed':
        return ('%s: the farm closed the connection at once (%s): it may use TLS (set %s to '
                'its CA certificate), or it refused us (see its log)'
                % (link.name, link.error, settings.TLS_CA_ENV))
    return '%s: %s' % (link.name, link.error)


def no_such_lease(error):
    """Whether a farm's error says it does not know our lease (expired, or the farm restarted)."""
    return isinstance(error, LookupError) and 'no such lease' in str(error)
