"""run/session.py: a run once it has started: what train_sac.py and train_ddpg.py do after
run/config.py has read the flags, checked what needs no farm and built the farmer and the agent.

- :class:`Session`: one run directory and the verbs behind the scripts' ``r``, ``test``, ``save``,
  ``load``. A run directory (default ``runs/<algo>-<env>-<timestamp>``) holds:

  - ``config.json`` (``config-<timestamp>.json`` for each later session resuming the run);
  - ``episodes.csv``, one row per episode, and ``eval.csv``, one row per evaluation (``test()``
    and ``--eval-every``): see run/runfiles.py;
  - ``tb/``: TensorBoard event files (run/tblog.py; ``tensorboard --logdir runs``): per episode
    ``train/episode_return`` and ``train/episode_length``; every ``TB_EVERY`` seconds of ``r``
    (run/progress.py) the means of the agent's update metrics since the last point
    (``agent/<name>``: SAC's losses, ``alpha``, ``entropy``, ``mean_q``; DDPG's ``critic_loss``,
    ``mean_q``) and
    ``perf/env_steps_per_s``, ``perf/updates_per_s``, ``perf/farm_utilization``,
    ``perf/learner_waited`` (the share of that time spent waiting on the farms); per ``test()``
    ``eval/mean_return``, ``eval/std_return``, ``eval/mean_length``. The x axis is always env
    steps (``global_step``);
  - ``checkpoints/ep<episodes>/`` (see run/checkpoints.py), every ``checkpoint_every`` episodes, at
    the end of every ``r`` and on exit, and ``checkpoint.json`` naming the newest: written so that
    a kill at any moment leaves the previous one loadable (run/checkpoints.py);
  - ``curve.png``: the learning curve, redrawn after every ``r`` (run/runfiles.py).

``test(n)`` runs on environments of its own (``cfg.eval_envs`` of them, built through the same
farms on first use, kept for later calls, closed with the session), so the training
environments' episodes in flight go on untouched at the next ``r``. When the farms have no free
capacity for them, that is said in one line and that ``test()`` runs on the training
environments instead (their episodes in flight end); ``eval_envs`` 0 always does that. With
``cfg.eval_every`` (episodes; absent or 0: never), ``r`` also evaluates ``cfg.eval_episodes``
(default 5) episodes every that many episodes, on those environments only: when they do not fit,
that evaluation is skipped (said once), since the training environments are mid-``r``.

A checkpoint holds what continuing needs (weights, target networks, optimizer states, RNG states,
counters and, unless ``--save-memory no``, the replay memory; see run/checkpoints.py): a run resumed
from it goes on as if it had not stopped, except that episodes in flight start over.

Stepping: ``cfg.stepping`` ('async' or 'lockstep', see agents/stepping.py) is the mode of every
``r``; asynchronously, the training environments still in flight when an ``r`` ends stay in flight
(their results are taken in by the next ``r``), and ``test()`` steps its own environments in
lockstep meanwhile.

Ctrl-C: during ``r`` the first one stops training after the batch in hand (the vector step in
flight, in lockstep; the agent's ``train_vec`` handles it), then the checkpoint and plot are
written. SIGTERM (what a scheduler sends): the same during ``r``, then the farms are released and
the process exits (code 143); at the prompt at once; during ``test()`` once it ends. A step still
in flight after :data:`TERM_GRACE` seconds (the farms stalled) is abandoned. Writing files is
never cut in half: a signal arriving meanwhile is acted on once the file is complete.

Python 3.6 compatible (the learner may run under TensorFlow 2.6); imports no TensorFlow itself.
"""
import atexit
import dataclasses  # novermin (3.6: the dataclasses backport, environment-py36.yml)
import json
import logging
import os
import platform
import shutil
import signal
import sys
import threading
import time

import numpy as np

from run import checkpoints
from common import errors
from run import config as runconfig
from run import tblog
from run.curriculum import Curriculum
from run.progress import Progress  # a name callers may replace (bench/drill_learner.py)
from run.config import TERM_EXIT
from run.runfiles import MEASURE_COLUMNS, RunFiles, signals_deferred

log = logging.getLogger('session')

TERM_GRACE = 10.0   # seconds a vector step may still take after SIGTERM (schedulers wait ~30)


# --- the run -------------------------------------------------------------------------------------
class Session(object):
    """One run directory, and ``train`` (the scripts' ``r``), ``test``, ``save``, ``load``."""

    def __init__(self, cfg, algo, agent, env, farmer, run_dir=None):
        self.cfg, self.algo, self.agent, self.env, self.farmer = cfg, algo, agent, env, farmer
        agent.save_memory = getattr(cfg, 'save_memory', True)
        # --curriculum: environment parameters by episodes/steps reached (run/curriculum.py)
        self.curriculum = (Curriculum.load(cfg.curriculum) if getattr(cfg, 'curriculum', '')
                           else None)
        self.summary = None
        self.eval_env = None  # test()'s own environments, built on first use
        self._eval_refused = False  # periodic evaluation found no room (said once)
        self.saved_path = None  # the last checkpoint, and its counters (nothing to save yet):
        self.saved = agent.counters()
        self._busy = None    # 'train', 'test', 'close': what a SIGTERM must let finish
        self._in_vec = False  # inside train_vec: a second SIGTERM may interrupt its step
        self._terminating = 0  # SIGTERMs received
        self._grace = None
        stamp = time.strftime('%Y%m%d-%H%M%S')
        self.run_dir = run_dir or runconfig.prepare_run_dir(cfg, algo)
        self._created = not os.path.exists(self.run_dir)
        self.tb = tblog.EventLog(os.path.join(self.run_dir, 'tb'))
        self.files = RunFiles(self.run_dir)  # episodes.csv, eval.csv, curve.png
        os.makedirs(os.path.join(self.run_dir, checkpoints.FOLDER), exist_ok=True)
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
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._on_sigterm)
        atexit.register(self.close)

    # -- r ----------------------------------------------------------------------------------------
    def train(self, n):
        """Train ``n`` more episodes; checkpoint, redraw the curve; Ctrl-C stops cleanly."""
        if not isinstance(n, (int, np.integer)) or n < 1:
            raise errors.UserError('r(%r): give a number of episodes, at least 1' % (n,))
        progress = Progress(self, n, self.cfg.log_every, lambda: self._terminating > 0)
        self._busy = 'train'
        try:
            try:
                self.summary = self._train_vec(n, progress)
            except Exception:
                # Every farm lost past --give-up-after, or a fault: keep what was learned.
                self._save_after_failure()
                raise
            finally:
                if self._grace is not None:
                    self._grace.cancel()
                progress.point()
                self.tb.flush()
            progress.draw(final=True)
            path = self.save()
            curve = self.plot()
            returns = self.summary['returns']
            print('%s%d episodes, %d env steps in %.0f s; mean return %s; saved %s; curve %s' % (
                'interrupted: ' if self.summary['interrupted'] else '', self.summary['episodes'],
                self.summary['steps'], self.summary['seconds'],
                '%.2f' % np.mean(returns) if returns else '-', path, curve), flush=True)
        finally:
            self._busy = None
            if self._terminating:
                self._shutdown()

    def _train_vec(self, n, progress):
        with self.files.episode_rows() as add_row:

            def on_episode(event):
                progress.episode(event)
                self.tb.scalars({'train/episode_return': event['return'],
                                 'train/episode_length': event['length']},
                                event['global_step'])
                add_row(event)
                if event['episode'] % self.cfg.checkpoint_every == 0:
                    self.save()
                if self.curriculum is not None:
                    self.curriculum.update(self.env, event['episode'], event['global_step'])
                every = getattr(self.cfg, 'eval_every', 0)
                if every and event['episode'] % every == 0:
                    self._evaluate(getattr(self.cfg, 'eval_episodes', 5), 'eval')

            if self.curriculum is not None:  # also after a resume: the stage of its counts
                self.curriculum.update(self.env, self.agent.episodes, self.agent.global_step)
            self._in_vec = True
            try:
                return self.agent.train_vec(
                    self.env, nb_episodes=n, callback=on_episode, stop=progress.tick,
                    seed=self.cfg.seed + self.agent.episodes,
                    mode=getattr(self.cfg, 'stepping', None))
            finally:
                self._in_vec = False

    def _save_after_failure(self):
        try:
            if self.saved != self.agent.counters():
                print('saved %s' % self.save(), flush=True)
        except Exception as e:  # the failure that brought us here is the one to report
            log.warning('could not write a checkpoint: %s', e)

    # -- test -------------------------------------------------------------------------------------
    def idle_envs(self):
        """Vector envs of this run that sit idle while ``r`` trains (test()'s own)."""
        return [self.eval_env] if self.eval_env is not None else []

    def test(self, n=5):
        """``n`` episodes with deterministic actions on environments of their own (see the module
        docstring); the training environments' episodes in flight go on at the next ``r``.
        Prints and returns the mean return."""
        if not isinstance(n, (int, np.integer)) or n < 1:
            raise errors.UserError('test(%r): give a number of episodes, at least 1' % (n,))
        note = 'Ctrl-C: test() finishes its episodes first'
        self._busy = 'test'
        try:
            with signals_deferred(note, redeliver=False):
                result = self._evaluate(n, 'test')
        finally:
            self._busy = None
            if self._terminating:
                self._shutdown()
        return result['mean_return']

    def _evaluate(self, n, what):
        """``n`` deterministic episodes, recorded and printed; ``what``: 'test' (test()), or
        'eval' (every ``eval_every`` episodes during ``r``: never on the training environments,
        which ``r`` is stepping; None when there is no room for environments of its own)."""
        env, where = self._test_env(fall_back=what == 'test')
        if env is None:
            return None
        result = self.agent.evaluate_vec(env, nb_episodes=n, seed=self.cfg.seed + 10 ** 6)
        self._record_test(result, n)
        measured = ''.join(', %s %.4f' % (key, result[key]) for key in MEASURE_COLUMNS
                           if key in result)
        print('%s%s: mean return %.2f +- %.2f%s over %d episodes (deterministic, %s), after %d '
              'episodes' % ('\n' if what == 'eval' and sys.stdout.isatty() else '', what,
                            result['mean_return'], result['std_return'], measured, n, where,
                            self.agent.episodes), flush=True)
        return result

    def _test_env(self, fall_back=True):
        """The vectorized env to evaluate on, and a few words saying which it is; when the farms
        have no room for environments of its own, the training env if ``fall_back``, else
        ``(None, None)``."""
        wanted = int(getattr(self.cfg, 'eval_envs', 1))
        if wanted < 1:
            if not fall_back:
                return None, None
            return self.env, 'on the training environments (--eval-envs 0)'
        if self.eval_env is None or getattr(self.eval_env, 'closed', False):
            try:
                self.eval_env = self.farmer.vec_env(self.cfg.env, wanted, self.cfg.env_kwargs)
            except errors.NoCapacityError as e:
                envs = '%d evaluation environment%s' % (wanted, 's' if wanted > 1 else '')
                if fall_back:
                    log.warning('test(): no free farm capacity for %s, so this test runs on the '
                                'training environments and ends their episodes in flight (%s; '
                                'to keep them, leave %d free: fewer --n-envs or more capacity; '
                                '--eval-envs 0 always tests on them)', envs, _first_clause(e),
                                wanted)
                    return self.env, 'on the training environments: no free capacity'
                (log.debug if self._eval_refused else log.warning)(
                    'evaluation during r skipped: no free farm capacity for %s (%s; leave %d '
                    'free: fewer --n-envs or more capacity)', envs, _first_clause(e), wanted)
                self._eval_refused = True
                return None, None
        if self.curriculum is not None and self.curriculum.current >= 0:
            # evaluate the task as it stands now (params apply at the evaluation's resets)
            self.eval_env.set_params(self.curriculum.params_at(self.curriculum.current))
        return self.eval_env, 'on %d evaluation environment%s' % (
            self.eval_env.num_envs, 's' if self.eval_env.num_envs > 1 else '')

    def _record_test(self, result, n):
        self.files.add_eval(self.agent.global_step, self.agent.episodes, result, n)
        lengths = result.get('lengths')
        scalars = {'eval/mean_return': result['mean_return'],
                   'eval/std_return': result['std_return'],
                   'eval/mean_length': np.mean(lengths) if lengths else None}
        for key in MEASURE_COLUMNS:
            if key in result:  # the task's own measure (envs/measures.py)
                scalars['eval/' + key] = result[key]
        self.tb.scalars(scalars, self.agent.global_step)
        self.tb.flush()

    # -- checkpoints (run/checkpoints.py) -------------------------------------------------------------
    def save(self, path=None):
        """Weights and counters to ``checkpoints/ep<episodes>/`` (or to the folder ``path``, a
        suffix added when taken); returns the checkpoint's folder."""
        if path is None and self.saved == self.agent.counters() and self.saved_path and \
                os.path.isdir(self.saved_path):
            return self.saved_path  # no update since: the same weights (r's end after a save)
        with signals_deferred():
            if path is None:
                folder = os.path.join(self.run_dir, checkpoints.FOLDER)
                path = checkpoints.save(self.agent, folder, 'ep%07d' % self.agent.episodes,
                                        keep=self.cfg.keep_checkpoints)
                checkpoints.write_pointer(self.run_dir, path, self.agent.counters())
            else:
                path = os.path.normpath(path)
                path = path[:-len('.h5')] if path.endswith('.h5') else path  # save('best.h5')
                path = checkpoints.save(self.agent, os.path.dirname(path) or '.',
                                        os.path.basename(path))
            self.saved, self.saved_path = self.agent.counters(), path
        return path

    def load(self, path=None):
        """Resume from the newest loadable checkpoint of this run (none yet: of the newest
        earlier run of this algo and env beside it), or of ``path`` (a run directory or a
        checkpoint). A checkpoint inside a run directory makes that run the current one: its CSV
        continues (rows past the checkpoint's episodes move to a backup file)."""
        if path is None and not checkpoints.candidates(self.run_dir):
            path = self._earlier_run()
        with signals_deferred():
            base = checkpoints.load(self.agent, path or self.run_dir)
            self.saved, self.saved_path = self.agent.counters(), checkpoints.location(base)
            run_dir = checkpoints.run_dir_of(base)
            if run_dir and os.path.abspath(run_dir) != os.path.abspath(self.run_dir):
                self._leave_empty_run()
                self.run_dir = run_dir
                self.files = RunFiles(run_dir)
                self.tb.close()
                self.tb = tblog.EventLog(os.path.join(run_dir, 'tb'))
                print('now writing to %s' % run_dir)
            self.files.trim(self.agent.episodes)
        c = self.agent.counters()
        print('loaded %s: %d episodes, %d env steps, %d updates' % (
            os.path.dirname(base), c['episodes'], c['global_step'], c['updates']), flush=True)

    def _earlier_run(self):
        runs = os.path.dirname(os.path.abspath(self.run_dir))
        for run in checkpoints.earlier_runs(runs, self.algo, self.cfg.env, exclude=self.run_dir):
            try:
                checkpoints.find(run)
            except errors.UserError:
                continue
            print('no checkpoint in %s yet: loading the newest of the latest %s run on %s, %s'
                  % (self.run_dir, self.algo, self.cfg.env, os.path.relpath(run)), flush=True)
            return run
        raise errors.UserError('no checkpoint in %s, nor in an earlier %s run on %s in %s; '
                               'train with r(n) first, or give load() a run or a checkpoint'
                               % (self.run_dir, self.algo, self.cfg.env, runs))

    def _leave_empty_run(self):
        """Remove the run directory this session made if it holds nothing but its config."""
        if self._created and sorted(os.listdir(self.run_dir)) == [
                checkpoints.FOLDER, 'config.json'] and not os.listdir(
                    os.path.join(self.run_dir, checkpoints.FOLDER)):
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def plot(self):
        """Redraw ``curve.png`` (run/runfiles.py); returns its path."""
        return self.files.plot()

    # -- end --------------------------------------------------------------------------------------
    def close(self):
        """Checkpoint what is not saved yet, redraw the curve, release the farms."""
        if self.farmer is None:
            return
        self._busy = 'close'
        try:
            if self.saved != self.agent.counters():
                print('saved %s' % self.save(), flush=True)
            self.plot()
        finally:
            self.tb.close()
            if self.eval_env is not None:
                self.eval_env.close()
            self.farmer.close()
            self.farmer = None
            self._busy = None

    def train_and_exit(self, n):
        """``python train_x.py``: train ``n`` episodes, save, stop the farms, exit."""
        try:
            self.train(n)
        finally:
            self.close()

    def _on_sigterm(self, signum, frame):
        """SIGTERM: like Ctrl-C during ``r`` (then checkpoint, release, exit); after ``test()``
        or ``close()`` when one runs; at once otherwise (the prompt)."""
        self._terminating += 1
        if self._busy == 'train':
            if self._terminating == 1:
                log.warning('SIGTERM: stopping after the current vector step, then checkpoint, '
                            'release the farms and exit')
                main = threading.main_thread().ident
                # A step the farms never answer must not outlast the scheduler's patience.
                self._grace = threading.Timer(TERM_GRACE, lambda: self._busy == 'train' and
                                              signal.pthread_kill(main, signal.SIGTERM))
                self._grace.daemon = True
                self._grace.start()
            elif self._in_vec:
                raise KeyboardInterrupt  # train_vec abandons the step in flight
            return
        if self._busy is None:
            self._shutdown()

    def _shutdown(self):
        """Checkpoint, release the farms, exit with 143; called once nothing is in progress."""
        log.warning('SIGTERM: checkpoint, release the farms, exit')
        self.close()
        if runconfig.interactive():  # IPython turns SystemExit at the prompt into a warning
            sys.stdout.flush()
            sys.stderr.flush()
            logging.shutdown()
            os._exit(TERM_EXIT)
        raise SystemExit(TERM_EXIT)


def _first_clause(error):
    """A NoCapacityError's figures, without its advice (the warning gives its own)."""
    return str(error).split('. Stop the other learners')[0]
