"""The host's one conversion in: observations off the wire (packed arrays, or lists from a
Python 2.7 farm) in the contract's form, :class:`vecenv.contract.ObsForm` (float32, or an int for
a Discrete space). Used by both stepping modes of :class:`host.farm_vec_env.FarmVecEnv`.

Python 3.6 compatible.
"""
from common import wire


def as_obs(value, form):
    """One observation off the wire (packed, or a list) in ``form`` (a
    :class:`vecenv.contract.ObsForm`: float32, or an int for a Discrete space): the host's one
    conversion in, a fresh writable array or a scalar."""
    return form.one(wire.unpack(value) if wire.is_packed(value) else value)


def as_obs_rows(values, form):
    """Observations off the wire, one per row, as one array in ``form`` (read-only when they
    came packed as float32: the caller stores them). A farm's packed answer takes one numpy
    call."""
    rows = wire.unpack_rows(values)
    if rows is not None:
        return form.rows(rows)
    stacked = form.zeros(len(values))
    for k, value in enumerate(values):
        stacked[k] = as_obs(value, form)
    return stacked
