"""common/logformat.py: the one log line format of every process of the project: the farm (farm.py), the
learner (runconfig.setup_logging: train_sac.py, train_ddpg.py) and the farmer's smoke run.

A local farm's lines are interleaved with the learner's on one terminal, so both must read alike:

    2026-11-29 12:34:13 farm INFO farm vm:60499 serving 1 environments at 127.0.0.1:60499 ...
    2026-11-29 12:34:13 farmer INFO local farm up at 127.0.0.1:60499 (pid 20566)

The date is there because farms and runs last days; the level because a farm's WARNING (a refused
caller, a replaced worker) must stand out among its INFO lines. This module is shared rather than
defined once per side because both sides can import it: it imports nothing but ``logging`` and
runs on Python 2.7 (the farm side's floor, checked by tests/test_static.py), so the two formats
cannot drift apart.
"""
import logging

FORMAT = '%(asctime)s %(name)s %(levelname)s %(message)s'
DATEFMT = '%Y-%m-%d %H:%M:%S'
# The level a learner's --verbose hands down to the processes it starts (its local farm, through
# the environment they inherit): farm.py's --log-level defaults to it.
LEVEL_ENV = 'FARM_LOG_LEVEL'


def setup(level):
    """Log ``level`` and above (a level name or number) to stderr in the shared format."""
    logging.basicConfig(level=level, format=FORMAT, datefmt=DATEFMT)
