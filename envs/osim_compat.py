"""Compatibility shims that let osim-rl 3.0.11 (and older 1.x/2.x releases) run on today's OpenSim.

Everything here is applied once, before the first osim-rl environment is built, and leaves osim-rl
itself unmodified. Farm side only; Python 2.7 compatible.
"""
from __future__ import absolute_import

import logging
import os
import sys
import warnings

log = logging.getLogger(__name__)
_applied = [False]


def apply():
    """Patch OpenSim for osim-rl and quiet its logging. Safe to call many times."""
    if _applied[0]:
        return
    import opensim

    # gym 0.26 (which osim-rl subclasses) prints a multi-line banner on import under numpy 2;
    # one per worker process buries the farm's log. It is about gym itself, not our use of it.
    stderr = sys.stderr
    try:
        sys.stderr = open(os.devnull, 'w')
        import gym  # noqa: F401
    except ImportError:
        pass
    finally:
        if sys.stderr is not stderr:
            sys.stderr.close()
        sys.stderr = stderr

    # OpenSim logs every integration step at info level; a farm would drown its own log in it.
    logger = getattr(opensim, 'Logger', None)
    if logger is not None and hasattr(logger, 'setLevelString'):
        logger.setLevelString('error')

    # What broke: OpenSim 4.6 turned PrescribedController.prescribeControlForActuator(int, Function)
    # into a hard error ("... is deprecated"); osim-rl's OsimModel.__init__ still calls it with the
    # muscle's index right after addActuator(muscle). The name-based overload works, so remember the
    # names as actuators are added and translate the index into the name.
    controller = opensim.PrescribedController
    if not getattr(controller, '_osim_farm_patched', False):
        add_actuator = controller.addActuator
        prescribe = controller.prescribeControlForActuator

        def add_actuator_recording_name(self, actuator):
            names = self.__dict__.setdefault('_osim_farm_actuator_names', [])
            names.append(actuator.getName())
            return add_actuator(self, actuator)

        def prescribe_by_name(self, which, function):
            if isinstance(which, int):
                which = self.__dict__['_osim_farm_actuator_names'][which]
            return prescribe(self, which, function)

        controller.addActuator = add_actuator_recording_name
        controller.prescribeControlForActuator = prescribe_by_name
        controller._osim_farm_patched = True
    # osim-rl builds float64 Box bounds that gym casts to float32, warning once per process.
    warnings.filterwarnings('ignore', message='.*Box bound precision lowered.*')
    # osim-rl 3.0.11's velocity field (envs/target/v_tgt_field.py) calls scipy's interp2d and
    # converts 1-element arrays to scalars, both deprecated: thousands of warnings per episode,
    # nothing we can act on (scipy is pinned below 1.14, where interp2d still exists).
    warnings.filterwarnings('ignore', category=DeprecationWarning,
                            module=r'envs\.target\.v_tgt_field')
    _applied[0] = True
    log.debug('opensim compatibility patches applied')
