"""common/wire.py: how data crosses between the farm (farm.py) and the learner (farmer.py, host/):
plain data and packed numeric arrays. The protocol's facts (port, key, version, error kinds,
lease timings) are in common/protocol.py.

Both sides import it, so it runs on Python 2.7 (the farm side's floor) and 3.6+, and imports
nothing but the standard library (numpy only inside pack/unpack, which need it anyway).

Packed arrays: an observation or a batch of actions may cross the wire as one dict
``{'nd': dtype name, 'shape': [...], 'data': raw little-endian bytes}`` instead of nested lists.
``data`` is msgpack ``bin``: plain data, never pickle. Converting 32 x 339 floats to and from
lists costs about a millisecond per vector step; the raw bytes cost a copy.

Python 2.7: a Python 2 ``str`` is bytes, and farmside/compat.py packs every ``str`` as msgpack's
*str* type so that a Python 3 peer can read the farm's text (see there). Raw bytes would then
arrive as text and fail to decode. So on Python 2, :func:`pack` wraps the bytes in :class:`Bin`,
which farmside/compat.py packs as msgpack ``bin``; a Python 3 peer gets ``bytes``. What a Python 3
peer sends as ``bin`` reaches Python 2 as ``str``, which :func:`unpack` reads directly.
"""
from __future__ import absolute_import

import sys

# The dtypes a packed array may have: numbers only (an object dtype would be pickle in disguise).
DTYPES = ('float32', 'float64', 'float16', 'int8', 'int16', 'int32', 'int64', 'uint8', 'uint16',
          'uint32', 'uint64', 'bool')
_PACKED_KEYS = frozenset(('nd', 'shape', 'data'))
_PY2 = sys.version_info[0] < 3
_INTS = (int, type(2 ** 64))  # Python 2: a size may arrive as long


class Bin(object):
    """Python 2 only: raw bytes that must cross as msgpack ``bin`` (see the module docstring)."""
    __slots__ = ('data',)

    def __init__(self, data):
        self.data = data

    def __len__(self):
        return len(self.data)

    def __eq__(self, other):
        return isinstance(other, Bin) and other.data == self.data

    def __ne__(self, other):
        return not self == other

    __hash__ = None


_LITTLE = {}  # dtype name -> its little-endian numpy dtype (filled on first use)
_NAMES = {}   # numpy dtype -> its name if packable (numpy computes dtype.name in Python: slow)


def _little(name):
    dtype = _LITTLE.get(name)
    if dtype is None:
        import numpy
        dtype = _LITTLE[name] = numpy.dtype(name).newbyteorder('<')
    return dtype


def pack(array):
    """``array`` (anything numpy.asarray takes, of a numeric dtype) as a packed dict."""
    import numpy
    array = numpy.asarray(array)
    name = _NAMES.get(array.dtype)
    if name is None:
        name = array.dtype.name
        if name not in DTYPES:
            raise ValueError('cannot pack an array of dtype %s (numbers only: %s)'
                             % (array.dtype, ', '.join(DTYPES)))
        _NAMES[array.dtype] = name
    little = _little(name)
    if array.dtype != little:  # big-endian input (rare): convert; tobytes copies C-ordered
        array = array.astype(little)
    data = array.tobytes()
    return {'nd': name, 'shape': list(array.shape), 'data': Bin(data) if _PY2 else data}


def is_packed(obj):
    """Whether ``obj`` is a packed array (a dict with exactly the keys nd, shape, data)."""
    return isinstance(obj, dict) and len(obj) == 3 and _PACKED_KEYS.issuperset(obj)


def unpack(obj):
    """The numpy array packed in ``obj``: a READ-ONLY view of the received bytes (no copy; take
    ``numpy.array(result)`` for a writable one). Raises ValueError for anything that is not a
    well-formed packed array."""
    import numpy
    if not is_packed(obj):
        raise ValueError('not a packed array: %s' % _short(obj))
    name, shape, data = obj['nd'], obj['shape'], obj['data']
    if isinstance(data, Bin):
        data = data.data
    if name not in DTYPES:  # (a py2 unicode name compares equal to the str in DTYPES)
        raise ValueError('packed array of dtype %s: numbers only (%s)'
                         % (_short(name), ', '.join(DTYPES)))
    if type(shape) not in (list, tuple):
        raise ValueError('packed array with shape %s: a list of sizes >= 0' % _short(shape))
    count = 1
    for n in shape:
        if type(n) not in _INTS or n < 0:
            raise ValueError('packed array with shape %s: a list of sizes >= 0' % _short(shape))
        count *= n
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ValueError('packed array whose data is %s, not bytes' % type(data).__name__)
    dtype = _little(str(name))
    if count * dtype.itemsize != len(data):
        raise ValueError('packed array of shape %s and dtype %s needs %d bytes, got %d'
                         % (list(shape), name, count * dtype.itemsize, len(data)))
    array = numpy.frombuffer(data, dtype=dtype, count=count).reshape(shape)
    if array.flags.writeable:  # a bytearray's buffer is writable: keep the promise above
        array.flags.writeable = False
    return array


def unpack_rows(objs):
    """The arrays packed in ``objs`` stacked as one array of ``len(objs)`` rows, read-only like
    :func:`unpack`, with one join and one numpy call (a farm's answer holds one observation per
    environment: unpacking 32 one by one cost more than the rest of storing them). None unless
    every one is packed with the same dtype, shape and size: unpack them one by one then, which
    names what is wrong."""
    if not objs or not is_packed(objs[0]):
        return None
    name, shape, data = objs[0]['nd'], objs[0]['shape'], objs[0]['data']
    if type(shape) not in (list, tuple):
        return None
    size = len(data)
    rows = []
    for obj in objs:
        if not is_packed(obj) or obj['nd'] != name or obj['shape'] != shape:
            return None
        data = obj['data']
        if isinstance(data, Bin):
            data = data.data
        if not isinstance(data, (bytes, bytearray)) or len(data) != size:
            return None
        rows.append(data)
    return unpack({'nd': name, 'shape': [len(objs)] + list(shape), 'data': b''.join(rows)})


def _short(value):
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + '...'
