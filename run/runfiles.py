"""run/runfiles.py: the files of a run directory that grow as it trains, each written whole.

- ``episodes.csv``: one row per episode, appended as it ends (:data:`CSV_COLUMNS`; ``end`` is why
  it ended, one of vecenv.END_REASONS). A file of an earlier version gets today's columns (empty
  there) before the next row; rows past a loaded checkpoint's episodes move to a backup file.
- ``eval.csv``: one row per evaluation (:data:`EVAL_COLUMNS`, the task's own measures of
  envs/measures.py last). A run of an earlier version kept them in ``evaluations.csv``: the first
  evaluation after a resume moves that file here (columns added, empty); until then the curve
  reads it.
- ``curve.png``: episode returns and evaluations against env steps.

Checkpoints are run/checkpoints.py's, TensorBoard files run/tblog.py's. A signal that arrives while one of
these files is written is acted on once the file is complete (:func:`signals_deferred`); a file
rewritten in full goes through a temporary file renamed into place, so a kill leaves the old one.

Python 3.6 compatible (the learner may run under TensorFlow 2.6).
"""
import contextlib
import csv
import logging
import os
import shutil
import signal
import threading
import time

import numpy as np

from envs.measures import MEASURES

log = logging.getLogger('session')

CSV_COLUMNS = ('episode', 'global_step', 'return', 'length', 'terminated', 'lost', 'env',
               'wall_time', 'end')
MEASURE_COLUMNS = tuple(sorted(key for key, _, _ in MEASURES.values()))  # the task's own
EVAL_COLUMNS = ('global_step', 'episodes', 'mean_return', 'std_return', 'n', 'wall_time',
                'mean_length') + MEASURE_COLUMNS
EPISODES_CSV = 'episodes.csv'
EVAL_CSV, OLD_EVAL_CSV = 'eval.csv', 'evaluations.csv'  # the name before issue 11
CURVE = 'curve.png'


@contextlib.contextmanager
def signals_deferred(note=None, redeliver=True):
    """Hold Ctrl-C and SIGTERM until the block ends; then hand each to the handler that was
    installed before (``train_vec``'s stop request, a KeyboardInterrupt, the session's SIGTERM
    handler). A held Ctrl-C is dropped unless ``redeliver``; a held SIGTERM never is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = {}

    def hold(signum, frame):
        if note and not caught and signum == signal.SIGINT:
            print('\n' + note, flush=True)
        caught.setdefault(signum, frame)

    previous = dict((s, signal.signal(s, hold)) for s in (signal.SIGINT, signal.SIGTERM))
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for s in (signal.SIGINT, signal.SIGTERM):
            if s in caught and callable(previous[s]) and (redeliver or s == signal.SIGTERM):
                previous[s](s, caught[s])


class RunFiles(object):
    """The growing files of the run directory ``run_dir``."""

    def __init__(self, run_dir):
        self.run_dir = run_dir

    @property
    def episodes_path(self):
        return os.path.join(self.run_dir, EPISODES_CSV)

    @property
    def eval_path(self):
        return os.path.join(self.run_dir, EVAL_CSV)

    # -- episodes.csv -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def episode_rows(self):
        """``episodes.csv`` open for appending (today's columns; header on a new file); yields a
        function that writes one episode's row from an episode event of ``train_vec``."""
        self._upgrade_episodes()
        with open(self.episodes_path, 'a') as f:
            rows = csv.DictWriter(f, CSV_COLUMNS)
            if f.tell() == 0:
                rows.writeheader()

            def add(event):
                with signals_deferred():
                    rows.writerow(dict(
                        episode=event['episode'], global_step=event['global_step'],
                        end=event['end'], env=event['env'], length=event['length'],
                        terminated=int(event['terminated']), lost=int(event['lost']),
                        wall_time='%.3f' % time.time(), **{'return': '%.6g' % event['return']}))
                    f.flush()
            yield add

    def trim(self, episodes):
        """Drop rows the loaded weights have not lived through (a crash, an older checkpoint)."""
        path = self.episodes_path
        if not os.path.exists(path) or os.path.getsize(path) == 0:
            return
        header, rows = self._read_episodes()
        keep = [row for row in rows if int(row['episode']) <= episodes]
        if len(keep) < len(rows) or tuple(header) != CSV_COLUMNS:
            backup = '%s.%s.bak' % (path, time.strftime('%Y%m%d-%H%M%S'))
            if len(keep) < len(rows):
                shutil.copyfile(path, backup)
            _rewrite_csv(path, CSV_COLUMNS, keep)
            if len(keep) < len(rows):
                print('episodes.csv: %d rows past episode %d moved aside (%s)'
                      % (len(rows) - len(keep), episodes, backup))

    def _read_episodes(self):
        with open(self.episodes_path) as f:
            rows = list(csv.reader(f))
        return (rows[0] if rows else []), [dict(zip(rows[0], row)) for row in rows[1:]]

    def _upgrade_episodes(self):
        """An episodes.csv of an earlier version gets today's columns (``end`` empty there)."""
        path = self.episodes_path
        if not os.path.exists(path) or os.path.getsize(path) == 0:
            return
        header = _csv_header(path)  # every r comes here: read the rows only to rewrite
        if tuple(header) != CSV_COLUMNS:
            rows = self._read_episodes()[1]
            with signals_deferred():
                _rewrite_csv(path, CSV_COLUMNS, rows)
            log.info('episodes.csv: columns %s added', ', '.join(
                c for c in CSV_COLUMNS if c not in header))

    # -- eval.csv ---------------------------------------------------------------------------------
    def add_eval(self, global_step, episodes, result, n):
        """One evaluation's row: ``result`` as agents' ``evaluate_vec`` returns it, over ``n``
        episodes, after ``episodes`` episodes and ``global_step`` env steps of training."""
        lengths = result.get('lengths')
        with signals_deferred():
            self._upgrade_eval()
            path = self.eval_path
            new = not os.path.exists(path)
            with open(path, 'a') as f:
                rows = csv.writer(f)
                if new:
                    rows.writerow(EVAL_COLUMNS)
                rows.writerow([global_step, episodes,
                               '%.6g' % result['mean_return'], '%.6g' % result['std_return'],
                               n, '%.3f' % time.time(),
                               '%.6g' % np.mean(lengths) if lengths else ''] +
                              ['%.6g' % result[key] if key in result else ''
                               for key in MEASURE_COLUMNS])

    def _upgrade_eval(self):
        """One evaluation file per run: an earlier version's ``evaluations.csv`` becomes
        ``eval.csv``, and a file with fewer columns than today's gets them (empty)."""
        path, old = self.eval_path, os.path.join(self.run_dir, OLD_EVAL_CSV)
        source = path if os.path.exists(path) else old if os.path.exists(old) else None
        if source is None or os.path.getsize(source) == 0:
            return
        if source == path and tuple(_csv_header(source)) == EVAL_COLUMNS:
            return
        with open(source) as f:
            rows = list(csv.DictReader(f))
        _rewrite_csv(path, EVAL_COLUMNS, rows)
        if source == old:
            os.remove(old)
            log.info('%s: the evaluations of %s, moved here', path, OLD_EVAL_CSV)

    # -- curve.png --------------------------------------------------------------------------------
    def plot(self):
        """Episode returns against env steps, with a moving average, and the evaluations, to
        ``curve.png``; returns its path."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure  # no pyplot: an interactive session keeps its backend
        steps, returns = _read_columns(self.episodes_path, ('global_step', 'return'))
        figure = Figure(figsize=(8, 4.5))
        FigureCanvasAgg(figure)
        ax = figure.add_subplot(1, 1, 1)
        if len(returns):
            ax.plot(steps, returns, '.', alpha=0.4, markersize=4, label='episode return')
            window = int(min(len(returns) // 10, 100))
            if window >= 2:
                smooth = np.convolve(returns, np.ones(window) / window, mode='valid')
                ax.plot(steps[window - 1:], smooth, label='mean of %d episodes' % window)
        e_path = self.eval_path
        if not os.path.exists(e_path):  # a run of an earlier version, not evaluated since
            e_path = os.path.join(self.run_dir, OLD_EVAL_CSV)
        e_steps, e_means = _read_columns(e_path, ('global_step', 'mean_return'))
        if len(e_means):
            ax.plot(e_steps, e_means, 'o-', label='test() (deterministic)')
        ax.set_xlabel('env steps')
        ax.set_ylabel('return')
        ax.set_title(os.path.basename(os.path.normpath(self.run_dir)))
        ax.grid(alpha=0.3)
        if len(returns) or len(e_means):
            ax.legend(loc='best')
        path = os.path.join(self.run_dir, CURVE)
        with signals_deferred():
            tmp = os.path.join(self.run_dir, '.%s.tmp' % CURVE)
            figure.savefig(tmp, dpi=100, format='png')
            os.replace(tmp, path)
        return path


def _csv_header(path):
    with open(path) as f:
        return next(csv.reader(f), [])


def _rewrite_csv(path, columns, rows):
    """``rows`` (dicts) under ``columns`` (missing ones empty) to ``path``, through a temporary
    file renamed into place: a kill meanwhile leaves the old file whole."""
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        writer = csv.DictWriter(f, columns, restval='', extrasaction='ignore')
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def _read_columns(path, names):
    """Float columns of a CSV file (empty arrays when it does not exist)."""
    if not os.path.exists(path):
        return [np.zeros(0) for _ in names]
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return [np.array([float(row[name]) for row in rows]) for name in names]
