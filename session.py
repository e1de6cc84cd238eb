"""session.py: what train_sac.py and train_ddpg.py share, so each script can stay one short story.

- :func:`parse_config`: command-line flags generated from a config dataclass; each field's
  docstring (the string literal under it) is its ``--help`` text.
- :func:`make_farmer`: a :class:`farmer.Farmer` from ``--farms`` (empty: ``farmlist.py``).
- :class:`Session`: one run directory and the verbs behind the scripts' ``r``, ``test``, ``save``,
  ``load``. A run directory (default ``runs/<algo>-<env>-<timestamp>``) holds:

  - ``config.json`` (``config-<timestamp>.json`` for each later session resuming the run);
  - ``episodes.csv``: one row per episode, appended as it ends (:data:`CSV_COLUMNS`);
  - ``evaluations.csv``: one row per ``test()``;
  - ``checkpoints/ep<episodes>_<part>.h5`` and ``..._state.json`` (weights and counters, the
    agent's ``save_weights``), every ``checkpoint_every`` episodes and at the end of every ``r``
    and on exit; ``checkpoint.json`` names the latest; the newest ``keep_checkpoints`` are kept;
  - ``curve.png``: the learning curve, redrawn after every ``r``.

The replay memory and optimizer states are not checkpointed: a resumed run keeps its weights and
counters (so warm-up is not repeated) and refills its memory before updating again.

Ctrl-C: during ``r`` the first one stops training after the vector step in flight (the agent's
``train_vec`` handles it), then the checkpoint and plot are written. Writing files is never cut
in half: a Ctrl-C arriving meanwhile is delivered once the file is complete.

Python 3.6 compatible (the learner may run under TensorFlow 2.6); imports no TensorFlow itself.
"""
import argparse
import ast
import atexit
import contextlib
import csv
import dataclasses  # novermin (3.6: the dataclasses backport, environment-py36.yml)
import glob
import json
import logging
import os
import platform
import shutil
import signal
import sys
import threading
import time
from collections import deque

import numpy as np

CSV_COLUMNS = ('episode', 'global_step', 'return', 'length', 'terminated', 'lost', 'env',
               'wall_time')
EVAL_COLUMNS = ('global_step', 'episodes', 'mean_return', 'std_return', 'n', 'wall_time')


# --- configuration -------------------------------------------------------------------------------
def field_docs(cls, path):
    """``{field: docstring}`` for the dataclass ``cls`` as written in the file ``path``."""
    with open(path) as f:
        tree = ast.parse(f.read())
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == cls.__name__:
            docs = {}
            for field, doc in zip(node.body, node.body[1:]):
                if isinstance(field, ast.AnnAssign) and isinstance(doc, ast.Expr):
                    try:
                        text = ast.literal_eval(doc.value)
                    except ValueError:
                        continue
                    if isinstance(text, str):
                        docs[field.target.id] = ' '.join(text.split())
            return docs
    return {}


def _flag_type(default):
    """How a flag's text becomes the field's value, judged by the default's type."""
    if isinstance(default, bool):
        return lambda text: text.lower() in ('1', 'true', 'yes', 'on')
    if isinstance(default, tuple):
        return lambda text: tuple(int(x) for x in text.replace(' ', '').split(',') if x)
    if isinstance(default, dict):
        return json.loads
    return type(default)


def _show(value):
    if isinstance(value, tuple):
        return ','.join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value)
    return repr(value) if value == '' else str(value)


def parse_config(cls, path, argv=None, description=None):
    """An instance of the dataclass ``cls`` from command-line flags (``--n-envs`` or
    ``--n_envs``); every field must carry a docstring, which becomes its help."""
    docs = field_docs(cls, path)
    parser = argparse.ArgumentParser(description=description)
    for f in dataclasses.fields(cls):
        if f.name not in docs:
            raise TypeError('%s.%s has no docstring (it is the --help text)' % (cls.__name__,
                                                                                f.name))
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        flags = ['--' + f.name.replace('_', '-')] + (['--' + f.name] if '_' in f.name else [])
        parser.add_argument(*flags, dest=f.name, type=_flag_type(default), default=default,
                            metavar=type(default).__name__.upper(),
                            help='%s (default: %s)' % (docs[f.name], _show(default)))
    return cls(**vars(parser.parse_args(argv)))


def interactive():
    """True under ``python -i``, ``ipython -i``, IPython's ``%run`` and Jupyter; False for
    ``python script.py`` and ``ipython script.py``."""
    if sys.flags.interactive:
        return True
    ipython = sys.modules.get('IPython')
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None:
        return False
    # TerminalIPythonApp.interact is False when a file is run without -i; kernels have no such app
    return bool(getattr(getattr(shell, 'parent', None), 'interact', True))


def setup_logging():
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(name)s: %(message)s',
                        datefmt='%H:%M:%S')
    for noisy in ('tensorflow', 'absl', 'h5py', 'matplotlib', 'Pyro4'):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def make_farmer(farms):
    """``Farmer()`` (farmlist.py) when ``farms`` is empty, else the farms of
    ``host:capacity[:port],...``. Either way a local farm is started when only this machine is
    listed and none answers; ``Farmer.close`` stops it."""
    from farmer import Farmer
    if not farms:
        return Farmer()
    return Farmer(farms=[tuple(part.strip().split(':')) for part in farms.split(',')
                         if part.strip()])


# --- Ctrl-C while a file is written --------------------------------------------------------------
@contextlib.contextmanager
def sigint_deferred(note=None, redeliver=True):
    """Hold Ctrl-C until the block ends; then hand it to the handler that was installed before
    (``train_vec``'s stop request, or a KeyboardInterrupt) when ``redeliver``."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []

    def hold(signum, frame):
        if note and not caught:
            print('\n' + note, flush=True)
        caught.append(frame)

    previous = signal.signal(signal.SIGINT, hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught and redeliver and callable(previous):
            previous(signal.SIGINT, caught[0])


# --- progress ------------------------------------------------------------------------------------
class Progress(object):
    """The status of one ``r``: redrawn in place on a terminal, a log line every ``every``
    seconds otherwise. ``tick`` is passed to ``train_vec`` as its ``stop`` check, the one hook
    called between vector steps; it never asks to stop."""

    def __init__(self, session, target, every):
        self.s, self.target = session, target
        self.tty = sys.stdout.isatty()
        self.every = 0.5 if self.tty else every
        agent = session.agent
        self.started = self.last_draw = time.time()
        self.start = (agent.global_step, agent.updates, agent.episodes, self._waited())
        self.returns = deque(maxlen=100)

    def _waited(self):
        return getattr(self.s.env, 'wait_seconds', None)

    def episode(self, event):
        self.returns.append(event['return'])

    def tick(self):
        if time.time() - self.last_draw >= self.every:
            self.draw()
        return False

    def line(self):
        agent, s = self.s.agent, self.start
        seconds = max(time.time() - self.started, 1e-9)
        recent = list(self.returns)[-10:]
        text = 'ep %d (+%d/%d)  step %d  %.0f steps/s  %.1f updates/s  return %s' % (
            agent.episodes, agent.episodes - s[2], self.target, agent.global_step,
            (agent.global_step - s[0]) / seconds, (agent.updates - s[1]) / seconds,
            '%.1f, mean(%d) %.1f' % (recent[-1], len(recent), np.mean(recent)) if recent else '-')
        text += '  farms %.0f%% used' % (100 * self.s.farmer.utilization())
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


# --- the run -------------------------------------------------------------------------------------
class Session(object):
    """One run directory, and ``train`` (the scripts' ``r``), ``test``, ``save``, ``load``."""

    def __init__(self, cfg, algo, agent, env, farmer):
        self.cfg, self.algo, self.agent, self.env, self.farmer = cfg, algo, agent, env, farmer
        self.summary = None
        self.saved = None    # the counters of the last checkpoint
        stamp = time.strftime('%Y%m%d-%H%M%S')
        resume_dir = _run_dir_of(_checkpoint_of(cfg.resume)) if cfg.resume else None
        self.run_dir = resume_dir or cfg.run_dir or os.path.join(
            'runs', '%s-%s-%s' % (algo, cfg.env.replace('/', '_'), stamp))
        os.makedirs(os.path.join(self.run_dir, 'checkpoints'), exist_ok=True)
        config = os.path.join(self.run_dir, 'config.json')
        if os.path.exists(config):
            config = os.path.join(self.run_dir, 'config-%s.json' % stamp)
        with open(config, 'w') as f:
            json.dump(dict(dataclasses.asdict(cfg), algo=algo, run_dir=self.run_dir,
                           started=stamp, python=platform.python_version(),
                           farms_seen=[s['farm'] for s in farmer.status() if s['up']]),
                      f, indent=1, sort_keys=True)
        if cfg.resume:
            self.load(cfg.resume)
        atexit.register(self.close)

    @property
    def csv_path(self):
        return os.path.join(self.run_dir, 'episodes.csv')

    # -- r ----------------------------------------------------------------------------------------
    def train(self, n):
        """Train ``n`` more episodes; checkpoint, redraw the curve; Ctrl-C stops cleanly."""
        progress = Progress(self, n, self.cfg.log_every)
        new = not os.path.exists(self.csv_path) or os.path.getsize(self.csv_path) == 0
        with open(self.csv_path, 'a') as f:
            rows = csv.writer(f)
            if new:
                rows.writerow(CSV_COLUMNS)

            def on_episode(event):
                progress.episode(event)
                with sigint_deferred():
                    rows.writerow([event['episode'], event['global_step'],
                                   '%.6g' % event['return'], event['length'],
                                   int(event['terminated']), int(event['lost']), event['env'],
                                   '%.3f' % time.time()])
                    f.flush()
                if event['episode'] % self.cfg.checkpoint_every == 0:
                    self.save()

            self.summary = self.agent.train_vec(
                self.env, nb_episodes=n, callback=on_episode, stop=progress.tick,
                seed=self.cfg.seed + self.agent.episodes)
        progress.draw(final=True)
        path = self.save()
        self.plot()
        returns = self.summary['returns']
        print('%s%d episodes, %d env steps in %.0f s; mean return %s; saved %s; curve %s' % (
            'interrupted: ' if self.summary['interrupted'] else '', self.summary['episodes'],
            self.summary['steps'], self.summary['seconds'],
            '%.2f' % np.mean(returns) if returns else '-', path,
            os.path.join(self.run_dir, 'curve.png')), flush=True)

    # -- test -------------------------------------------------------------------------------------
    def test(self, n=5):
        """``n`` episodes with deterministic actions on the training environments (their episodes
        in flight end; the next ``r`` starts fresh ones). Prints and returns the mean return."""
        note = 'Ctrl-C: test() finishes its episodes first'
        with sigint_deferred(note, redeliver=False):
            result = self.agent.evaluate_vec(self.env, nb_episodes=n, seed=self.cfg.seed + 10 ** 6)
            path = os.path.join(self.run_dir, 'evaluations.csv')
            new = not os.path.exists(path)
            with open(path, 'a') as f:
                rows = csv.writer(f)
                if new:
                    rows.writerow(EVAL_COLUMNS)
                rows.writerow([self.agent.global_step, self.agent.episodes,
                               '%.6g' % result['mean_return'], '%.6g' % result['std_return'], n,
                               '%.3f' % time.time()])
        print('test: mean return %.2f +- %.2f over %d episodes (deterministic), after %d episodes'
              % (result['mean_return'], result['std_return'], n, self.agent.episodes), flush=True)
        return result['mean_return']

    # -- checkpoints ------------------------------------------------------------------------------
    def save(self, path=None):
        """Weights and counters to ``checkpoints/ep<episodes>.h5`` (or ``path``); returns it."""
        folder = os.path.join(self.run_dir, 'checkpoints')
        path = path or os.path.join(folder, 'ep%07d.h5' % self.agent.episodes)
        with sigint_deferred():
            self.agent.save_weights(path, overwrite=True)
            self.saved = self.agent.counters()
            if os.path.dirname(os.path.abspath(path)) == os.path.abspath(folder):
                with open(os.path.join(self.run_dir, 'checkpoint.json'), 'w') as f:
                    json.dump(dict(self.saved, latest=os.path.basename(path)), f, indent=1)
                self._prune(folder, keep=os.path.basename(path))
        return path

    def _prune(self, folder, keep):
        states = sorted(glob.glob(os.path.join(folder, 'ep*_state.json')), key=os.path.getmtime)
        for state in states[:-max(1, self.cfg.keep_checkpoints)]:
            base = state[:-len('_state.json')]
            if os.path.basename(base) + '.h5' != keep:
                for part in glob.glob(base + '_*'):
                    os.remove(part)

    def load(self, path=None):
        """Resume from the latest checkpoint of this run, or of ``path`` (a run directory or a
        checkpoint). A checkpoint inside a run directory makes that run the current one: its CSV
        continues (rows past the checkpoint's episodes move to a backup file)."""
        checkpoint = _checkpoint_of(path or self.run_dir)
        with sigint_deferred():
            self.agent.load_weights(checkpoint)
            self.saved = self.agent.counters()
            run_dir = _run_dir_of(checkpoint)
            if run_dir and os.path.abspath(run_dir) != os.path.abspath(self.run_dir):
                self.run_dir = run_dir
                print('now writing to %s' % run_dir)
            self._trim_csv(self.agent.episodes)
        c = self.agent.counters()
        print('loaded %s: %d episodes, %d env steps, %d updates' % (
            checkpoint, c['episodes'], c['global_step'], c['updates']), flush=True)

    def _trim_csv(self, episodes):
        """Drop rows the loaded weights have not lived through (a crash, an older checkpoint)."""
        if not os.path.exists(self.csv_path):
            return
        with open(self.csv_path) as f:
            rows = list(csv.reader(f))
        keep = [row for row in rows[1:] if int(row[0]) <= episodes]
        if len(keep) < len(rows) - 1:
            backup = '%s.%s.bak' % (self.csv_path, time.strftime('%Y%m%d-%H%M%S'))
            shutil.copyfile(self.csv_path, backup)
            with open(self.csv_path, 'w') as f:
                csv.writer(f).writerows(rows[:1] + keep)
            print('episodes.csv: %d rows past episode %d moved aside (%s)'
                  % (len(rows) - 1 - len(keep), episodes, backup))

    # -- curve ------------------------------------------------------------------------------------
    def plot(self):
        """Episode returns against env steps, with a moving average, to ``curve.png``."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure  # no pyplot: an interactive session keeps its backend
        steps, returns = _read_columns(self.csv_path, ('global_step', 'return'))
        figure = Figure(figsize=(8, 4.5))
        FigureCanvasAgg(figure)
        ax = figure.add_subplot(1, 1, 1)
        if len(returns):
            ax.plot(steps, returns, '.', alpha=0.4, markersize=4, label='episode return')
            window = int(min(len(returns) // 10, 100))
            if window >= 2:
                smooth = np.convolve(returns, np.ones(window) / window, mode='valid')
                ax.plot(steps[window - 1:], smooth, label='mean of %d episodes' % window)
        e_steps, e_means = _read_columns(os.path.join(self.run_dir, 'evaluations.csv'),
                                         ('global_step', 'mean_return'))
        if len(e_means):
            ax.plot(e_steps, e_means, 'o-', label='test() (deterministic)')
        ax.set_xlabel('env steps')
        ax.set_ylabel('return')
        ax.set_title(os.path.basename(os.path.normpath(self.run_dir)))
        ax.grid(alpha=0.3)
        if len(returns) or len(e_means):
            ax.legend(loc='best')
        with sigint_deferred():
            figure.savefig(os.path.join(self.run_dir, 'curve.png'), dpi=100)

    # -- end --------------------------------------------------------------------------------------
    def close(self):
        """Checkpoint what is not saved yet, redraw the curve, release the farms."""
        if self.farmer is None:
            return
        try:
            if self.saved != self.agent.counters():
                print('saved %s' % self.save(), flush=True)
            self.plot()
        finally:
            self.farmer.close()
            self.farmer = None

    def train_and_exit(self, n):
        """``python train_x.py``: train ``n`` episodes, save, stop the farms, exit."""
        try:
            self.train(n)
        finally:
            self.close()


def _checkpoint_of(path):
    """A checkpoint's base path (``.../epN.h5``) from a run directory, its checkpoints folder,
    a base path or one of its files."""
    path = os.path.normpath(path)
    if os.path.isdir(path):
        run = os.path.dirname(path) if os.path.basename(path) == 'checkpoints' else path
        pointer = os.path.join(run, 'checkpoint.json')
        if os.path.exists(pointer):
            with open(pointer) as f:
                return os.path.join(run, 'checkpoints', json.load(f)['latest'])
        states = sorted(glob.glob(os.path.join(run, 'checkpoints', '*_state.json')),
                        key=os.path.getmtime)
        if not states:
            raise FileNotFoundError('no checkpoint in %s' % run)
        return states[-1][:-len('_state.json')] + '.h5'
    if path.endswith('_state.json'):
        return path[:-len('_state.json')] + '.h5'
    base, ext = os.path.splitext(path)
    if not os.path.exists(base + '_state.json') and '_' in os.path.basename(base):
        base = base.rsplit('_', 1)[0]  # one part's file (ep0000100_policy.h5)
    if not os.path.exists(base + '_state.json'):
        raise FileNotFoundError('no checkpoint at %s (expected %s_state.json)' % (path, base))
    return base + (ext or '.h5')


def _run_dir_of(checkpoint):
    folder = os.path.dirname(os.path.abspath(checkpoint))
    return os.path.dirname(folder) if os.path.basename(folder) == 'checkpoints' else None


def _read_columns(path, names):
    """Float columns of a CSV file (empty arrays when it does not exist)."""
    if not os.path.exists(path):
        return [np.zeros(0) for _ in names]
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return [np.array([float(row[name]) for row in rows]) for name in names]
