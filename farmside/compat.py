"""Farm-side compatibility shims for running farm.py under Python 2.7 (legacy OpenSim builds).

What broke: Pyro4 4.82's msgpack serializer packs with ``use_bin_type=True``. On Python 2 every
``str`` literal (including Pyro4's own handshake keys, ``'meta'``...) is bytes, so a Python 3 peer
received ``b'meta'`` and failed the handshake with ``KeyError: 'meta'``. So on Python 2 we pack
strings as msgpack's str type; Python 3 then reads them as ``str``, and what Python 3 sends
arrives on Python 2 as ``unicode`` (``raw=False``), which compares and hashes equal to the ASCII
``str`` the farm uses. Nothing changes on Python 3.

Packed arrays (common/wire.py) carry raw bytes, which must cross as msgpack ``bin``: on Python 2 they are
wrapped in ``wire.Bin``. A message without one is packed as above (the fast, common path: the
packer meets a Bin only through ``default``, which it calls for types it does not know). A
message with one is packed again with ``use_bin_type=True`` after every ``str`` in it became
``unicode`` and every Bin its bytes: a walk over the message, paid only by packed leases, whose
messages are small (their observations are single Bins).
"""
from __future__ import absolute_import

import sys


# Python 2's str (bytes) is the text to convert; on Python 3 (where _text runs only in tests)
# str is text already.
_BYTES_TEXT = str if sys.version_info[0] < 3 else None


class _HasBin(Exception):
    """Raised by the first packing attempt when the message holds a wire.Bin."""


def _text(value, Bin):
    """``value`` with every py2 ``str`` made ``unicode`` and every Bin its raw bytes."""
    kind = type(value)
    if kind in _AS_IS:
        return value
    if kind is _BYTES_TEXT:
        return _unicode(value)
    if kind is list or kind is tuple:
        return [v if type(v) in _AS_IS else _text(v, Bin) for v in value]
    if kind is dict:
        data = value.get('data')
        if type(data) is Bin and len(value) == 3:  # a packed array (wire.pack): one step
            return {u'nd': _unicode(value['nd']), u'shape': value['shape'], u'data': data.data}
        return dict((_unicode(k) if type(k) is _BYTES_TEXT else k,
                     v if type(v) in _AS_IS else _text(v, Bin)) for k, v in value.items())
    if kind is Bin:
        return value.data
    if isinstance(value, dict):
        return dict((_text(k, Bin), _text(v, Bin)) for k, v in value.items())
    return value


# What _text passes through untouched (checked first: most of a message is numbers).
_AS_IS = frozenset([float, int, bool, type(None), type(u'')]
                   + ([long] if _BYTES_TEXT else []))  # noqa: F821  # novermin
_DECODED = {}  # short py2 str -> unicode: dict keys and dtype names repeat in every message


def _unicode(text):
    if type(text) is not _BYTES_TEXT:
        return text
    decoded = _DECODED.get(text)
    if decoded is None:
        decoded = text.decode('utf-8', 'replace')
        if len(text) <= 32 and len(_DECODED) < 4096:
            _DECODED[text] = decoded
    return decoded


def apply():
    if sys.version_info[0] >= 3:
        return
    import msgpack
    from Pyro4 import util

    from common import wire

    serializer = util.MsgpackSerializer

    def pack(self, data):
        default = self.default

        def no_bin(obj):
            if type(obj) is wire.Bin:
                raise _HasBin()
            return default(obj)
        try:
            return msgpack.packb(data, use_bin_type=False, default=no_bin)
        except _HasBin:
            return msgpack.packb(_text(data, wire.Bin), use_bin_type=True, default=default)

    def dumps(self, data):
        return pack(self, data)

    def dumpsCall(self, obj, method, vargs, kwargs):
        return pack(self, (obj, method, vargs, kwargs))

    serializer.dumps = dumps
    serializer.dumpsCall = dumpsCall
