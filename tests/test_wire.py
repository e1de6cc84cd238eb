"""common/wire.py: what farm and learner agree on, and packed arrays (plain data, never pickle)."""
import msgpack
import numpy as np
import pytest
from Pyro4 import util

from common import protocol, wire


def test_the_shared_facts():
    assert (protocol.PROTOCOL, protocol.DEFAULT_PORT, protocol.OBJECT_ID) == (3, 20099, 'farm')
    assert (protocol.KEY_ENV, protocol.TLS_CA_ENV) == ('FARM_KEY', 'FARM_TLS_CA')
    assert protocol.ERROR_KINDS == ('input', 'env', 'lost')
    assert protocol.uri('10.0.0.2', 20100) == 'PYRO:farm@10.0.0.2:20100'


@pytest.mark.parametrize('dtype', ['float32', 'float64', 'int64', 'uint8', 'bool'])
def test_pack_unpack_round_trips_through_msgpack_as_bin(dtype):
    array = (np.arange(12) % 3).astype(dtype).reshape(3, 4)
    packed = wire.pack(array)
    assert packed['nd'] == dtype and packed['shape'] == [3, 4]
    assert isinstance(packed['data'], bytes)
    # Through Pyro4's own msgpack serializer, both ways: bin in, bytes out, no pickle.
    serializer = util.MsgpackSerializer()
    message = serializer.dumps({'obs': packed})
    assert b'\xc4' + bytes([array.nbytes]) in message  # msgpack bin 8
    back = wire.unpack(serializer.loads(message)['obs'])
    assert back.dtype == np.dtype(dtype) and back.shape == (3, 4)
    assert np.array_equal(back, array)
    assert not back.flags.writeable  # a read-only view of the received bytes, as documented
    assert wire.is_packed(packed) and not wire.is_packed([1.0, 2.0])


def test_pack_is_little_endian_whatever_the_input():
    big = np.arange(3, dtype='>f8')
    assert wire.pack(big)['data'] == np.arange(3, dtype='<f8').tobytes()
    assert wire.unpack(wire.pack(big)).tolist() == [0.0, 1.0, 2.0]
    scalar = wire.unpack(wire.pack(np.float32(2.5)))
    assert scalar.shape == () and float(scalar) == 2.5
    assert wire.unpack(wire.pack(np.zeros((0, 3)))).shape == (0, 3)


def test_unpack_refuses_what_is_not_a_well_formed_packed_array():
    good = wire.pack(np.zeros(2))
    with pytest.raises(ValueError, match='numbers only'):
        wire.pack(np.array(['a', 'b']))
    with pytest.raises(ValueError, match='numbers only'):
        wire.pack(np.array([object()]))
    for bad, why in [(dict(good, nd='object'), 'numbers only'),
                     (dict(good, nd=7), 'numbers only'),
                     (dict(good, shape=[-1]), 'a list of sizes'),
                     (dict(good, shape='2'), 'a list of sizes'),
                     (dict(good, shape=[True, 2]), 'a list of sizes'),
                     (dict(good, data=[0.0, 0.0]), 'not bytes'),
                     (dict(good, data=good['data'][:3]), 'needs 16 bytes, got 3'),
                     (dict(good, extra=1), 'not a packed array'),
                     ([0.0, 0.0], 'not a packed array')]:
        with pytest.raises(ValueError, match=why):
            wire.unpack(bad)


def test_unpack_rows_stacks_what_unpack_gives_one_by_one_or_declines():
    rows = [np.arange(3, dtype=np.float32) + k for k in range(4)]
    packed = [msgpack.unpackb(msgpack.packb(wire.pack(r))) for r in rows]  # as off the wire
    stacked = wire.unpack_rows(packed)
    assert stacked.shape == (4, 3) and stacked.dtype == np.float32
    assert (stacked == np.array([wire.unpack(p) for p in packed])).all()
    assert not stacked.flags.writeable
    assert wire.unpack_rows([wire.pack(np.zeros((2, 2)))]).shape == (1, 2, 2)
    one = wire.pack(np.zeros(3, dtype=np.float32))
    # Anything not uniform: None, and the caller unpacks row by row (which names the problem).
    for mixed in ([], [one, wire.pack(np.zeros(3))], [one, wire.pack(np.zeros(4, np.float32))],
                  [one, dict(one, data=one['data'][:8])], [one, [0.0, 0.0, 0.0]],
                  [one, dict(one, data=[0.0] * 12)], [[0.0, 0.0, 0.0]],
                  [dict(one, shape='3'), dict(one, shape='3')]):
        assert wire.unpack_rows(mixed) is None, mixed
    # A row too short and one too long with the right total would misalign: declined.
    short, long_ = dict(one, data=one['data'][:8]), dict(one, data=one['data'] + b'\0' * 4)
    assert wire.unpack_rows([short, long_]) is None


def test_protocol_mismatch_says_what_differs_and_what_to_do():
    assert protocol.protocol_mismatch({'farm': 'a:1', 'versions': {'farm_protocol': 3}}) is None
    text = protocol.protocol_mismatch({'farm': 'vm:20099', 'versions': {'farm_protocol': 2}})
    assert text == ('farm vm:20099 speaks farm protocol 2, this learner 3: run the same version '
                    'of this project on both')
    assert 'no farm protocol version' in protocol.protocol_mismatch({'farm': 'old:1'})
    assert protocol.protocol_mismatch(None).startswith('farm ? speaks no farm protocol')


def test_a_python2_bin_is_packed_as_msgpack_bin_by_farm_compat():
    """farm_compat's Python 2 packing, exercised here on Python 3 with what Python 2 would hand
    it: a message holding a wire.Bin goes out with every str as msgpack str and the Bin as bin
    (tests/test_py27.py runs the real thing)."""
    from farmside import compat
    message = {'obs': {'nd': 'float32', 'shape': [1], 'data': wire.Bin(b'\x00\x00\x80?')},
               'info': ['t', 1]}
    text = compat._text(message, wire.Bin)
    packed = msgpack.packb(text, use_bin_type=True)
    back = msgpack.unpackb(packed, raw=False)
    assert wire.unpack(back['obs']).tolist() == [1.0] and back['info'] == ['t', 1]
    assert wire.unpack(message['obs']).tolist() == [1.0]  # unpack reads a Bin directly
