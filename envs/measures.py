"""A task's own measure, from per-step readings to one figure per episode.

An osim-rl environment reports what its task is about after every step (envs/osim.py's
``task_measures``: Arm2DEnv's ``distance`` to the target, a walker's ``forward_distance``), also
in its step's ``info['task']``, so that an evaluation through a farm sees it too. Here is how those
readings become one figure per episode, the same for evaluate.py, bench/learn.py and the
evaluations during training (agents/parallel.py's ``evaluate_vec``, ``eval.csv``): the arm must
reach and then hold, so its distance counts over the last half of the episode (the first steps
are the reach); a walker's distance is where it got to. Plain Python, 2.7 compatible.
"""
from __future__ import absolute_import

# measure -> (the evaluation's key for its mean, the key for its per-episode list, how)
MEASURES = {'distance': ('mean_distance', 'distances', 'last_half'),
            'forward_distance': ('mean_forward_distance', 'forward_distances', 'end')}


def episode_measures(readings):
    """One figure per task measure from the per-step readings of one episode (a list of dicts;
    a step without a reading may be an empty dict or None)."""
    figures = {}
    for name, (_, _, how) in MEASURES.items():
        values = [r[name] for r in readings if r and name in r]
        if values:
            if how == 'end':
                figures[name] = float(values[-1])
            else:
                tail = values[len(values) // 2:]
                figures[name] = float(sum(tail)) / len(tail)
    return figures


def summary(measures):
    """The evaluation's keys for a list of per-episode figures (``episode_measures``' dicts):
    ``mean_<measure>`` and the per-episode list, for each measure some episode has."""
    out = {}
    for name, (mean_key, list_key, _) in sorted(MEASURES.items()):
        values = [m[name] for m in measures if name in m]
        if values:
            out[mean_key] = float(sum(values)) / len(values)
            out[list_key] = values
    return out
