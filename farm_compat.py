"""Farm-side compatibility shims for running farm.py under Python 2.7 (legacy OpenSim builds).

What broke: Pyro4 4.82's msgpack serializer packs with ``use_bin_type=True``. On Python 2 every
``str`` literal (including Pyro4's own handshake keys, ``'meta'``...) is bytes, so a Python 3 peer
received ``b'meta'`` and failed the handshake with ``KeyError: 'meta'``. The farm sends no binary
data, so on Python 2 we pack strings as msgpack's str type; Python 3 then reads them as ``str``,
and what Python 3 sends arrives on Python 2 as ``unicode`` (``raw=False``), which compares and
hashes equal to the ASCII ``str`` the farm uses. Nothing changes on Python 3.
"""
from __future__ import absolute_import

import sys


def apply():
    if sys.version_info[0] >= 3:
        return
    import msgpack
    from Pyro4 import util

    serializer = util.MsgpackSerializer

    def dumps(self, data):
        return msgpack.packb(data, use_bin_type=False, default=self.default)

    def dumpsCall(self, obj, method, vargs, kwargs):
        return msgpack.packb((obj, method, vargs, kwargs), use_bin_type=False,
                             default=self.default)

    serializer.dumps = dumps
    serializer.dumpsCall = dumpsCall
