"""Environments by registered name, as plain data: what a farm's worker process builds and steps.

``envs.make(name, **kwargs)`` returns an :class:`envs.base.EnvAdapter` whose ``reset`` and ``step``
take and return only plain Python data (lists of floats, bools, dicts with string keys), and whose
spaces are plain dicts. Names are osim-rl's environments, the project's own numpy environments, or
any registered gym/gymnasium id; nothing else can be built (a caller never names a module to import).
``SIM_PRESETS`` names the simulator's speed settings that ``make(name, sim=...)`` takes.

Imported by the farm's worker processes, never by the learner. Python 2.7 compatible.
"""
from __future__ import absolute_import

import pkgutil

# osim-rl installs a top-level package also called ``envs`` (L2M2019Env runs
# ``from envs.target import VTgtField``). Extending __path__ lets both resolve under one name
# whichever of the two is found first on sys.path.
__path__ = pkgutil.extend_path(__path__, __name__)

from envs.registry import SIM_PRESETS, EnvError, make, names  # noqa: E402

__all__ = ['EnvError', 'SIM_PRESETS', 'make', 'names']
