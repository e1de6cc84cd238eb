"""Builds an environment adapter from a registered name and keyword arguments.

``make(name, frame_skip=None, seed=None, sim=None, step_budget=None, **kwargs)``: ``name`` is one
of :func:`names` or a gymnasium/gym id. Every adapter is wrapped in :class:`envs.seeding.Seeding`
(a seed at reset, or ``seed`` here for the first reset, gives the same episodes every time, for
every environment), in :class:`envs.guard.Guard` (a step that diverges, or runs past
``step_budget`` seconds, ends its episode as truncated; with ``frame_skip``, each simulator step
has the whole budget), to reject bad actions with a clear message, and in ``FrameSkip`` when
``frame_skip > 1``.

``sim`` names one of :data:`SIM_PRESETS`, the simulator's speed knobs: it stands for the preset's
``integrator_accuracy`` and ``frame_skip``, and a knob given explicitly wins over the preset's.
Only osim-rl's environments have an integrator: the others take ``sim='default'`` (what the
train scripts pass unless told otherwise) and refuse the rest. Python 2.7 compatible.
"""
from __future__ import absolute_import

from envs import drill, gym_ids, osim, seeding, toy
from envs.base import CheckedAction, EnvError, FrameSkip, keywords
from envs.guard import Guard, check_budget

_OWN = {
    'CheapEnv': toy.CheapEnv,
    'SlowEnv': toy.SlowEnv,
    'TraceEnv': toy.TraceEnv,  # bench/: replays a recorded simulator's step times
    'BusyEnv': toy.BusyEnv,  # bench/scale_bench.py: a CPU-bound step
    'DrillEnv': drill.DrillEnv,  # bench/drills.py: observations that carry their identity
}


# OpenSim's integrator accuracy trades fidelity for speed (osim-rl's default 5e-5; looser than
# about 1e-3 the integrator starts to fail). None: osim-rl's own default. Figures per preset:
# bench/sim_bench.py, results/sim_bench.json. frame_skip stays 1 in every preset: repeating
# actions changes the task the agent sees, which is a choice of its own, not a speed setting.
SIM_PRESETS = {
    'exact': {'integrator_accuracy': 1e-5, 'frame_skip': 1},
    'default': {'integrator_accuracy': None, 'frame_skip': 1},
    'fast': {'integrator_accuracy': 1e-3, 'frame_skip': 1},
}


def sim_knobs(name, sim, frame_skip, kwargs):
    """``frame_skip`` with ``sim``'s preset applied; puts the preset's integrator accuracy into
    ``kwargs`` unless they name one already."""
    if sim is None:
        return 1 if frame_skip is None else frame_skip
    if sim not in SIM_PRESETS:
        raise EnvError('%s: unknown sim preset %r; known: %s'
                       % (name, sim, ', '.join(sorted(SIM_PRESETS))))
    preset = SIM_PRESETS[sim]
    if name in osim.OSIM_NAMES:
        if kwargs.get('integrator_accuracy') is None and preset['integrator_accuracy'] is not None:
            kwargs['integrator_accuracy'] = preset['integrator_accuracy']
    elif sim != 'default' and (name in _OWN or gym_ids.known(name)):  # else: unknown, below
        raise EnvError("%s: sim=%r sets an OpenSim integrator, which only osim-rl's environments "
                       "(%s) have; use sim='default' or leave it out"
                       % (name, sim, ', '.join(osim.OSIM_NAMES)))
    return preset['frame_skip'] if frame_skip is None else frame_skip


def names():
    """The project's own and osim-rl's names; any gym id is accepted besides these."""
    return sorted(_OWN) + list(osim.OSIM_NAMES)


def make(name, frame_skip=None, seed=None, sim=None, step_budget=None, **kwargs):
    if not isinstance(name, str if str is not bytes else basestring):  # noqa: F821 (2.7)
        raise EnvError('environment name must be a string, got %r' % (name,))
    frame_skip = sim_knobs(name, sim, frame_skip, kwargs)
    step_budget = check_budget(name, step_budget)  # before building: osim-rl takes seconds
    if seed is not None:
        seed = seeding.check(seed, name)
    if name in _OWN:
        cls = _OWN[name]
        if seed is not None and 'seed' in (keywords(cls.__init__) or ()):
            kwargs['seed'] = seed
        try:
            adapter = cls(**kwargs)
        except TypeError as e:
            raise EnvError('%s: %s' % (name, e))
    elif name in osim.OSIM_NAMES:
        adapter = osim.OsimAdapter(name, seed=seed, **kwargs)
    elif gym_ids.known(name):
        adapter = gym_ids.GymAdapter(name, **kwargs)
    else:
        raise EnvError(gym_ids.unknown(name, names()))
    # Guard inside FrameSkip: it checks each simulator step, and stops a frame-skip loop there.
    adapter = CheckedAction(Guard(seeding.Seeding(adapter, seed), step_budget))
    if int(frame_skip) != 1:
        adapter = FrameSkip(adapter, frame_skip)
    return adapter
