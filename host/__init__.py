"""The learner's side of the farms: everything ``farmer.py`` offers, one job per module.

``farmer.py`` (at the top, where users look) is the entry point and re-exports the public names;
import from there. This package is the only host code that speaks Pyro4.

- :mod:`host.settings`: every timeout and interval of the learner side, read at call time (a
  test changes one in one place), and the names both sides agree on, from common/wire.py.
- :mod:`host.farmlist_reader`: reads and checks the farm list (``farmlist.py`` or a list given).
- :mod:`host.diagnosis`: why a farm does not answer, and what the user should do about it.
- :mod:`host.link`: one farm: its connection per calling thread, its call thread, its state.
- :mod:`host.allocation`: :class:`Farmer`, the one owner of farm capacity: probing (and the
  farm protocol check), placement, leases, keep-alive, revival of lost farms; and
  :class:`Allocation`, the leases of one vector env (one per farm), given back whole.
- :mod:`host.local_farm`: the ``farm.py`` started on this machine when nothing else answers.
- :mod:`host.farm_vec_env`: :class:`FarmVecEnv`, N remote environments as one vectorized env, in
  lockstep and asynchronously; :mod:`host.placement` places and (re)builds its environments;
  :mod:`host.receivers` is its asynchronous mode (a receiver per farm, recovery threads).
- :mod:`host.remote_env`: :class:`RemoteEnv`, one remote environment with the gym interface.

Python 3.6 compatible.
"""
