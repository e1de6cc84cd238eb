"""What both sides of the wire share: the farm (farm.py, farmside/) and the learner (farmer.py,
host/, run/) import these, so they run on Python 2.7 (the farm side's floor, checked by vermin in
tests/test_static.py) and 3.6+.

- :mod:`common.protocol`: every fact both sides must agree on, defined once (the farm protocol
  version, the Pyro4 object and default port, the key and TLS variables, error kinds, lease
  timings);
- :mod:`common.wire`: plain data and packed numeric arrays across the wire (msgpack only);
- :mod:`common.errors`: the errors a user can fix, shown as one line with no traceback;
- :mod:`common.logformat`: the one log line format of every process.

It may import nothing of the project (only the standard library, numpy and msgpack).
"""
