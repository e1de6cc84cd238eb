"""run/progress.py: the status of one ``r`` (run/session.py's ``Session.train``) while it trains:
a line redrawn in place on a terminal (a log line every ``every`` seconds otherwise), and every
:data:`TB_EVERY` seconds a TensorBoard point of the speeds and the agent's update metrics.

Public: :class:`Progress` (``tick``, ``episode``, ``point``, ``draw``, ``line``) and
:data:`TB_EVERY`. It reads from the session it is given only public names: ``agent``, ``env``,
``farmer``, ``tb`` and ``idle_envs()``. ``Session.train`` builds it through the name
``session.Progress``, so a caller may put a subclass there (bench/drill_learner.py does).

Python 3.6 compatible; imports no TensorFlow.
"""
import shutil
import sys
import time
from collections import deque

import numpy as np

TB_EVERY = 5.0      # seconds between TensorBoard points of the agent's metrics and the speeds


class Progress(object):
    """The status of one ``r``: redrawn in place on a terminal, a log line every ``every``
    seconds otherwise. ``tick`` is passed to ``train_vec`` as its ``stop`` check, the one hook
    called between vector steps; it asks to stop once ``stopping()`` is true."""

    def __init__(self, session, target, every, stopping):
        self.s, self.target, self.stopping = session, target, stopping
        self.tty = sys.stdout.isatty()
        self.every = 0.5 if self.tty else every
        agent = session.agent
        self.started = self.last_draw = time.time()
        self.start = (agent.global_step, agent.updates, agent.episodes, self._waited())
        self.returns = deque(maxlen=100)
        self.last_point = (self.started, agent.global_step, agent.updates, self._waited())

    def _waited(self):
        return getattr(self.s.env, 'wait_seconds', None)

    def episode(self, event):
        self.returns.append(event['return'])

    def tick(self):
        now = time.time()
        if now - self.last_draw >= self.every:
            self.draw()
        if now - self.last_point[0] >= TB_EVERY:
            self.point(now)
        return self.stopping()

    def point(self, now=None):
        """One TensorBoard point of the speeds since the last one and the agent's metrics."""
        now = now or time.time()
        agent = self.s.agent
        then, steps, updates, waited = self.last_point
        seconds = now - then
        values = {}
        waited_now = self._waited()
        if seconds >= 1.0:  # speeds over less (the end of an r) would be noise
            values = {'perf/env_steps_per_s': (agent.global_step - steps) / seconds,
                      'perf/updates_per_s': (agent.updates - updates) / seconds,
                      'perf/farm_utilization': self.s.farmer.utilization(idle=self.s.idle_envs())}
            if waited_now is not None and waited is not None:
                values['perf/learner_waited'] = (waited_now - waited) / seconds
        metrics = getattr(agent, 'update_metrics', None)  # filled by agents/recording.py
        if metrics is not None:
            values.update(('agent/' + name, value) for name, value in metrics.take().items())
        self.last_point = (now, agent.global_step, agent.updates, waited_now)
        self.s.tb.scalars(values, agent.global_step)

    def line(self):
        agent, s = self.s.agent, self.start
        seconds = max(time.time() - self.started, 1e-9)
        recent = list(self.returns)[-10:]
        text = 'ep %d (+%d/%d)  step %d  %.0f steps/s  %.1f updates/s  return %s' % (
            agent.episodes, agent.episodes - s[2], self.target, agent.global_step,
            (agent.global_step - s[0]) / seconds, (agent.updates - s[1]) / seconds,
            '%.1f, mean(%d) %.1f' % (recent[-1], len(recent), np.mean(recent)) if recent else '-')
        text += '  farms %.0f%% used' % (100 * self.s.farmer.utilization(idle=self.s.idle_envs()))
        waited = self._waited()
        if waited is not None:
            text += ', learner waited %.0f%%' % (100 * (waited - s[3]) / seconds)
        return text

    def draw(self, final=False):
        self.last_draw = time.time()
        text = self.line()
        if self.tty:
            width = shutil.get_terminal_size().columns - 1
            sys.stdout.write('\r' + text[:width].ljust(width) + ('\n' if final else ''))
            sys.stdout.flush()
        else:
            print(text, flush=True)
