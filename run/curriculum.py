"""run/curriculum.py: a schedule of environment parameters over training (``--curriculum FILE.json``).

The file is a JSON list of stages, in order::

    [{"episodes": 0, "params": {"episode_length": 50}},
     {"episodes": 500, "params": {"episode_length": 200}},
     {"steps": 100000, "params": {"offset": 1.0}}]

Each stage has one threshold, ``episodes`` (episodes ended so far, all environments together) or
``steps`` (env steps so far), and the ``params`` it sets (name -> number, string, bool or list;
the environment declares which names it accepts, see envs/base.py). A stage starts once its
threshold and every earlier stage's are reached; its params add to, and override, the earlier
ones. :meth:`Curriculum.update` hands a change to the vector env's ``set_params``, which applies it
at each environment's next reset (a running episode is never changed mid-way). A run resumed from a
checkpoint calls ``update`` with its restored counts and so gets the same params back.

Host side; Python 3.6 compatible.
"""
import json
import logging
import numbers

from common.errors import UserError

log = logging.getLogger('curriculum')

KINDS = ('episodes', 'steps')


def _plain(value):
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    return isinstance(value, (str, bool, numbers.Real))


class Curriculum(object):
    """Stages ``[(kind, threshold, params), ...]`` in order; see the module's docstring."""

    def __init__(self, stages, source='curriculum'):
        self.source = source
        self.stages = [self._check(i, stage) for i, stage in enumerate(stages)]
        if not self.stages:
            raise UserError('%s: no stages; give a list like [{"episodes": 0, "params": {...}}]'
                            % source)
        self.current = -1  # index of the last stage applied; -1: none yet

    @classmethod
    def load(cls, path):
        try:
            with open(path) as f:
                stages = json.load(f)
        except (IOError, OSError) as e:
            raise UserError('--curriculum %s: cannot read it (%s)' % (path, e.strerror or e))
        except ValueError as e:
            raise UserError('--curriculum %s: not valid JSON (%s)' % (path, e))
        if not isinstance(stages, list):
            raise UserError('--curriculum %s: must be a JSON list of stages, got %s'
                            % (path, type(stages).__name__))
        return cls(stages, source='--curriculum %s' % path)

    def _check(self, i, stage):
        where = '%s: stage %d' % (self.source, i + 1)
        if not isinstance(stage, dict):
            raise UserError('%s must be an object like {"episodes": 0, "params": {...}}' % where)
        kinds = [k for k in KINDS if k in stage]
        extra = sorted(set(stage) - set(KINDS) - {'params'})
        if len(kinds) != 1 or extra:
            raise UserError('%s: needs exactly one of "episodes" or "steps" and "params"%s'
                            % (where, ', not %s' % ', '.join(extra) if extra else ''))
        threshold = stage[kinds[0]]
        if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 0:
            raise UserError('%s: "%s" must be an integer >= 0, got %r'
                            % (where, kinds[0], threshold))
        params = stage.get('params')
        if not isinstance(params, dict) or not params:
            raise UserError('%s: "params" must be a non-empty object of name -> value' % where)
        for key, value in params.items():
            if not _plain(value):
                raise UserError('%s: parameter %s = %r is not a number, string, bool or list '
                                'of those' % (where, key, value))
        return kinds[0], threshold, dict(params)

    def stage_at(self, episodes, steps):
        """Index of the stage in force after ``episodes`` episodes and ``steps`` steps (-1:
        none yet): stages start in order, each once its threshold is reached."""
        counts = {'episodes': episodes, 'steps': steps}
        reached = -1
        for i, (kind, threshold, _) in enumerate(self.stages):
            if counts[kind] < threshold:
                break
            reached = i
        return reached

    def params_at(self, stage):
        """The params in force at ``stage``: every stage's up to it, later ones winning."""
        params = {}
        for _, _, more in self.stages[:stage + 1]:
            params.update(more)
        return params

    def update(self, vec_env, episodes, steps):
        """Applies a stage newly reached (call between steps, e.g. when episodes end); returns
        the params set, or None when the stage is unchanged. An env that refuses a parameter
        ends the run as a UserError naming the file."""
        stage = self.stage_at(episodes, steps)
        if stage <= self.current:
            return None
        params = self.params_at(stage) if self.current < 0 else dict(
            p for _, _, more in self.stages[self.current + 1:stage + 1] for p in more.items())
        try:
            vec_env.set_params(params)
        except ValueError as e:
            raise UserError('%s: stage %d: %s' % (self.source, stage + 1, e))
        self.current = stage
        log.info('curriculum stage %d of %d from %d episodes, %d steps: %s', stage + 1,
                 len(self.stages), episodes, steps, json.dumps(params, sort_keys=True))
        return params
