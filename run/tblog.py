#!/usr/bin/env python
"""run/tblog.py: a run's TensorBoard event files, written with TensorFlow's own record writer and
protocol buffers; and, as a script, the scalars of a run drawn to a PNG.

    tensorboard --logdir runs                                     # every run, side by side
    python run/tblog.py runs/sac-Pendulum-v1-<time> --png scalars.png  # the same scalars, as a PNG

- :class:`EventLog` appends scalars to ``<folder>/events.out.tfevents.<time>.<host>.<pid>``.
  Records are buffered and flushed at most every :data:`FLUSH_EVERY` seconds (and by ``flush``
  and ``close``), so logging every episode costs microseconds and TensorBoard is at most a few
  seconds behind.
- :func:`read_scalars` reads a folder's event files back: ``{tag: [(step, value), ...]}``.

Why not ``tf.summary``: its writer is a TensorFlow op, so it needs eager execution or a
``tf.compat.v1.Session`` to run it, and importing ``rl.agents`` (DDPG) turns eager execution off
for the whole process. ``tf.io.TFRecordWriter`` and the ``Event``/``Summary`` protocol buffers
are plain Python objects that work the same in both modes, and in TensorFlow 2.6 (the Python 3.6
host) as in 2.21. Scalars are written as ``simple_value``, which TensorBoard's scalar dashboard
reads. TensorFlow is imported on first use only (``--help`` stays fast, and a run that never
logs never imports it). Writing the event files needs no ``tensorboard`` package; viewing them
does (``pip install tensorboard``: TensorFlow 2.21 no longer installs it).

A failed write (a full disk) is logged once and logging stops: TensorBoard is never the reason a
run dies. Python 3.6 compatible.
"""
import glob
import itertools
import logging
import os
import socket
import struct
import sys
import time

log = logging.getLogger('tblog')

FLUSH_EVERY = 5.0   # seconds between flushes to disk: what TensorBoard may lag behind
FILE_PREFIX = 'events.out.tfevents.'  # TensorBoard reads files whose names contain "tfevents"
_FILE_NUMBERS = itertools.count()  # two logs opened in the same second get two files


def _tf():
    if 'tensorflow' not in sys.modules:  # first import: with the agents' settings (tf-keras)
        import agents.compat  # noqa: F401
    import tensorflow as tf
    return tf


class EventLog(object):
    """Scalars for TensorBoard, appended to one new event file in ``folder`` (made on the first
    write, so a session that logs nothing leaves no file)."""

    def __init__(self, folder, flush_every=FLUSH_EVERY):
        self.folder = folder
        self.flush_every = flush_every
        self.path = None
        self._writer = None
        self._last_flush = 0.0
        self._failed = False

    def _open(self):
        tf = _tf()
        os.makedirs(self.folder, exist_ok=True)
        now = time.time()
        self.path = os.path.join(self.folder, '%s%d.%s.%d.%03d' % (
            FILE_PREFIX, int(now), socket.gethostname(), os.getpid(), next(_FILE_NUMBERS)))
        self._writer = tf.io.TFRecordWriter(self.path)
        # The first record names the format version, as TensorFlow's own writers do.
        self._writer.write(tf.compat.v1.Event(wall_time=now,
                                              file_version='brain.Event:2').SerializeToString())
        self._last_flush = now

    def scalars(self, values, step, wall_time=None):
        """``{tag: number}`` at ``step`` (an int: env steps); values that are None or not finite
        numbers are left out."""
        if self._failed:
            return
        try:
            if self._writer is None:
                self._open()
            tf = _tf()
            summary = tf.compat.v1.Summary()
            for tag, value in sorted(values.items()):
                if value is None:
                    continue
                value = float(value)
                if value == value and abs(value) != float('inf'):
                    summary.value.add(tag=tag, simple_value=value)
            if not summary.value:
                return
            now = time.time()
            event = tf.compat.v1.Event(wall_time=now if wall_time is None else wall_time,
                                       step=int(step), summary=summary)
            self._writer.write(event.SerializeToString())
            if now - self._last_flush >= self.flush_every:
                self.flush()
        except Exception as e:  # noqa: BLE001  (a full disk must not end the run)
            self._give_up(e)

    def scalar(self, tag, value, step, wall_time=None):
        self.scalars({tag: value}, step, wall_time)

    def flush(self):
        if self._writer is not None and not self._failed:
            try:
                self._writer.flush()
                self._last_flush = time.time()
            except Exception as e:  # noqa: BLE001
                self._give_up(e)

    def close(self):
        if self._writer is not None:
            self.flush()
            try:
                self._writer.close()
            except Exception:  # noqa: BLE001  (already reported by flush)
                pass
            self._writer = None

    def _give_up(self, error):
        self._failed = True
        log.warning('TensorBoard logging stopped: cannot write %s: %s', self.path or self.folder,
                    error)


def event_files(folder):
    """The event files in ``folder``, oldest first (TensorBoard's order too)."""
    return sorted(glob.glob(os.path.join(folder, '*tfevents*')))


def _records(path):
    """The records of a TFRecord file: 8-byte length, its CRC, the data, its CRC (not checked
    here: TensorFlow's own reader is deprecated outside eager mode). A record cut short (the
    writer has not flushed it yet) ends the file."""
    with open(path, 'rb') as f:
        while True:
            head = f.read(12)
            if len(head) < 12:
                return
            data = f.read(struct.unpack('<Q', head[:8])[0])
            if len(f.read(4)) < 4:
                return
            yield data


def read_scalars(folder):
    """``{tag: [(step, value), ...]}`` from every event file in ``folder``, in file order."""
    tf = _tf()
    found = {}
    for path in event_files(folder):
        for record in _records(path):
            event = tf.compat.v1.Event.FromString(record)
            for value in event.summary.value:
                if value.HasField('simple_value'):
                    found.setdefault(value.tag, []).append((int(event.step),
                                                            float(value.simple_value)))
    return found


def plot(folder, png, title=None):
    """Every scalar of ``folder``'s event files, one panel per tag, to ``png``: a rendering of
    the event files (what TensorBoard shows), not a screenshot of TensorBoard."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    scalars = read_scalars(folder)
    if not scalars:
        raise ValueError('no scalars in the event files of %s' % folder)
    tags = sorted(scalars)
    columns = 4 if len(tags) > 6 else 3
    rows = (len(tags) + columns - 1) // columns
    figure = Figure(figsize=(4 * columns, 2.6 * rows + 0.6))
    FigureCanvasAgg(figure)
    for i, tag in enumerate(tags):
        ax = figure.add_subplot(rows, columns, i + 1)
        steps, values = zip(*scalars[tag])
        ax.plot(steps, values, '.-' if len(steps) < 30 else '-', linewidth=1, markersize=3,
                color='#e8710a' if tag.startswith('eval/') else '#1f77b4')
        ax.set_title(tag, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    figure.suptitle(title or folder, fontsize=10)
    figure.tight_layout(rect=(0, 0, 1, 0.97))
    figure.savefig(png, dpi=100)


def main(argv=None):
    import argparse
    parser = argparse.ArgumentParser(description='Draw a run\'s TensorBoard scalars to a PNG.')
    parser.add_argument('run', help='a run directory (its tb/ folder is read) or an event folder')
    parser.add_argument('--png', default='tensorboard_scalars.png', help='the PNG to write')
    parser.add_argument('--title', help='the figure\'s title (default: the run)')
    args = parser.parse_args(argv)
    folder = os.path.join(args.run, 'tb') if os.path.isdir(os.path.join(args.run, 'tb')) \
        else args.run
    if not event_files(folder):
        parser.exit(2, 'run/tblog.py: no event files in %s: give a run directory (runs/...)\n'
                    % folder)
    plot(folder, args.png, title=args.title or '%s (rendered from its event files)'
         % os.path.normpath(args.run))
    print('wrote %s' % args.png)


if __name__ == '__main__':
    main()
