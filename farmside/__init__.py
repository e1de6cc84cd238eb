"""The farm's side of the wire: what ``farm.py`` (the entry point and the farm's command line)
serves. Python 2.7 compatible as a whole package (vermin checks it, tests/test_static.py), so a
farm runs under a legacy OpenSim's Python.

- :mod:`farmside.daemon`: the Pyro4 daemon that lets learners in (shared key, handshake
  deadline, TLS) and tells the farm when one disconnects;
- :mod:`farmside.core`: :class:`Farm`, the verbs a learner calls (leases, make, reset, step,
  set_params, release), each a short story over the parts below;
- :mod:`farmside.async_verbs`: the asynchronous verbs (send, post, recv);
- :mod:`farmside.ledger` (who holds what) with :mod:`farmside.books` (leases, slots, flights,
  the policy defaults); :mod:`farmside.dispatch` (commands to a lease's workers and their
  answers); :mod:`farmside.lifecycle` (spawn, hello, replace, recycle, reap);
- :mod:`farmside.envworker` (one environment in one OS process) over :mod:`farmside.channel`
  (the framed pipe to it);
- :mod:`farmside.rendezvous`: announcing a farm (``--rendezvous``: its record, the address
  others reach it at) and the CPUs it may use (the default capacity);
- :mod:`farmside.compat`: the Python 2.7 shims.

It may import ``common`` and ``envs`` only: never the learner's side (host/, vecenv/, agents/,
run/), which tests/test_architecture.py checks.
"""
