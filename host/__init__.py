"""The learner's side of the farms: everything ``farmer.py`` offers, one job per module.

``farmer.py`` (at the top, where users look) is the entry point and re-exports the public names;
import from there. This package is the only host code that speaks Pyro4. It may import
``common`` and ``vecenv`` (the contract it implements), never the farm side's packages nor
``agents``/``run``.

- :mod:`host.settings`: every timeout and interval of the learner side, read at call time (a
  test changes one in one place), and the names both sides agree on, from common/protocol.py.
- :mod:`host.farmlist_reader`: reads and checks the farm list (``farmlist.py``, a list given,
  or ``--farms rendezvous:DIR``); :mod:`host.rendezvous`: the farms announced in a directory;
  :mod:`host.launch`: farms started and stopped on the list's hosts over ssh.
- :mod:`host.diagnosis`: why a farm does not answer, and what the user should do about it.
- :mod:`host.link`: one farm: its connection per calling thread, its call thread, its state.
- :mod:`host.allocation`: :class:`Farmer`, the one owner of this learner's farms and leases:
  probing (and the farm protocol check), revival of lost farms, the vector envs it built;
  :mod:`host.capacity` (placement by free capacity, utilization), :mod:`host.keepalive` (its
  thread: stalls, renewals, revival probes) and :mod:`host.leases` (:class:`Allocation`, the
  leases of one vector env, one per farm, given back whole) are its parts.
- :mod:`host.local_farm`: the ``farm.py`` started on this machine when nothing else answers.
- :mod:`host.farm_vec_env`: :class:`FarmVecEnv`, N remote environments as one vectorized env;
  its :class:`host.placement.Placements` (where each environment lives, (re)building) is shared
  by its two modes: lockstep (:mod:`host.lockstep`: waiting on a call per farm, recovering) and
  asynchronous (:mod:`host.async_mode`, with :mod:`host.receiver`, a receiver per farm, and
  :mod:`host.recovery`, its rebuilding threads). :mod:`host.observations`: the one conversion
  in.
- :mod:`host.remote_env`: :class:`RemoteEnv`, one remote environment with the gym interface.

Python 3.6 compatible.
"""
