"""run/session.py and run/config.py in-process, with fakes for the agent, the vectorized env and the
farmer (no TensorFlow, no farm): the flags' limits, the checks before start-up, episodes.csv's
``end`` column, load() from an earlier run, a run ending because every farm is lost, SIGTERM
(real signals sent to this process), and test() on environments of its own. One test runs a real
SAC (eager mode) through a farm in a thread: an r, a test() and an r again continue the training
episodes in flight. The scripts themselves are run in test_train_scripts.py."""
import csv
import json
import os
import signal
import time
from dataclasses import dataclass

import pytest

import conftest  # noqa: F401  (puts the project on sys.path)
from test_checkpoints import FakeAgent
from run import checkpoints
from common import errors
from run import config as runconfig
from run import runfiles
from run import session


# --- fakes ---------------------------------------------------------------------------------------
class VecAgent(FakeAgent):
    """A FakeAgent whose ``train_vec`` ends one episode per vector step, with the ends given,
    and behaves as agents/parallel.py's on Ctrl-C (first: stop request; KeyboardInterrupt: the
    step is abandoned)."""

    def __init__(self, ends=('time_limit',), during_step=None, fail_after=None):
        FakeAgent.__init__(self, size=10)
        self.ends, self.during_step, self.fail_after = ends, during_step, fail_after
        self.evaluated_on = []

    def evaluate_vec(self, env, nb_episodes, seed=None):
        self.evaluated_on.append(env)
        return {'mean_return': -2.0, 'std_return': 0.5, 'returns': [-2.0] * nb_episodes,
                'lengths': [7] * nb_episodes, 'mean_distance': 0.25}

    def train_vec(self, env, nb_episodes, callback, stop, seed=None, mode=None):
        self.modes = getattr(self, 'modes', []) + [mode]
        summary = {'steps': 0, 'episodes': 0, 'returns': [], 'lengths': [],
                   'interrupted': False, 'abandoned_step': False}
        started = time.time()
        try:
            while summary['episodes'] < nb_episodes:
                if stop():
                    summary['interrupted'] = True
                    break
                if self.fail_after is not None and summary['episodes'] == self.fail_after:
                    raise errors.FarmsLostError('no farm answered for 5 s')
                if self.during_step:
                    self.during_step(self)
                self.global_step += 10
                self.updates += 10
                self.episodes += 1
                summary['episodes'] += 1
                summary['steps'] += 10
                summary['returns'].append(-1.0)
                callback({'env': 0, 'episode': self.episodes, 'return': -1.0, 'length': 10,
                          'global_step': self.global_step, 'terminated': False, 'lost': False,
                          'end': self.ends[(summary['episodes'] - 1) % len(self.ends)]})
        except KeyboardInterrupt:
            summary['interrupted'] = summary['abandoned_step'] = True
        summary['seconds'] = time.time() - started
        return summary


class FakeVecEnv(object):
    def __init__(self, num_envs):
        self.num_envs, self.closed = num_envs, False
        self.params = []  # what set_params was given, in order

    def set_params(self, params, indices=None):
        self.params.append(dict(params))

    def close(self):
        self.closed = True


class Farmer(object):
    """Builds FakeVecEnvs, or refuses to for want of capacity while ``full``."""

    def __init__(self, full=False):
        self.closed, self.full, self.built = False, full, []

    def status(self):
        return [{'farm': '127.0.0.1:1', 'up': True}]

    def utilization(self, idle=()):
        return 1.0

    def vec_env(self, env_name, n_envs, env_kwargs=None):
        if self.full:
            raise errors.NoCapacityError(
                '%d x %s requested, but the farms that answer have only 0 free: 127.0.0.1:1: 2 '
                'of 2 in use (2 by this learner). Stop the other learners, ask for fewer '
                'environments, or add farms to the farm list' % (n_envs, env_name))
        self.built.append((env_name, n_envs, env_kwargs))
        return FakeVecEnv(n_envs)

    def close(self):
        self.closed = True


@dataclass
class Cfg:
    env: str = 'Fake-v0'
    env_kwargs: dict = None
    eval_envs: int = 1
    seed: int = 1
    resume: str = ''
    run_dir: str = ''
    checkpoint_every: int = 2
    keep_checkpoints: int = 5
    log_every: float = 0.0
    verbose: bool = False
    curriculum: str = ''
    stepping: str = 'async'


def new_session(run_dir, agent=None, farmer=None, **cfg):
    return session.Session(Cfg(**cfg), 'fake', agent or VecAgent(), env=FakeVecEnv(2),
                           farmer=farmer or Farmer(), run_dir=str(run_dir))


def rows_of(path):
    with open(str(path)) as f:
        return list(csv.DictReader(f))


# --- flags and checks before start-up ------------------------------------------------------------
@dataclass
class Flags:
    n_envs: int = 4
    """how many"""
    episodes: int = 100
    """how many episodes"""
    noise: str = 'gaussian'
    """a choice"""
    verbose: bool = False
    """a switch"""
    sim: str = 'default'
    """a simulator preset"""
    stepping: str = 'async'
    """a stepping mode"""


@pytest.mark.parametrize('argv, where', [
    (['--n-envs', '0'], '--n-envs: 0 is not allowed: at least 1'),
    (['--episodes', '-1'], '--episodes: -1 is not allowed: at least 1'),
    (['--noise', 'pink'], '--noise: pink is not allowed: gaussian or ou'),
    (['--sim', 'quick'], '--sim: quick is not allowed: exact, default or fast'),
    (['--stepping', 'ready'], '--stepping: ready is not allowed: async or lockstep'),
    (['--n-envs', 'x'], "--n-envs/--n_envs: invalid int value: 'x'")])
def test_a_bad_flag_is_one_line_and_exit_code_2(argv, where, capsys):
    with pytest.raises(SystemExit) as e:
        runconfig.parse_config(Flags, __file__, argv=argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and err.startswith('test_session.py: argument ') and where in err


def test_a_switch_alone_means_yes():
    assert runconfig.parse_config(Flags, __file__, argv=['--verbose']).verbose is True
    assert runconfig.parse_config(Flags, __file__, argv=['--verbose', 'no']).verbose is False


def test_an_unwritable_run_dir_is_refused_before_anything_starts(tmp_path):
    (tmp_path / 'file').write_text('x')
    with pytest.raises(errors.UserError, match='--run-dir .*is a file, not a folder'):
        runconfig._check_writable(str(tmp_path / 'file' / 'run'), '--run-dir')
    runconfig._check_writable(str(tmp_path / 'new' / 'deeper'), '--run-dir')  # creatable: fine
    assert not (tmp_path / 'new').exists()  # and nothing made yet


def test_only_a_box_action_space_is_accepted():
    from vecenv.contract import gym_spaces_lib as lib
    import numpy as np
    runconfig.require_box(lib.spaces.Box(-np.ones(2, np.float32), np.ones(2, np.float32)), 'SAC',
                        'Pendulum-v1')
    with pytest.raises(errors.UserError) as e:
        runconfig.require_box(lib.spaces.Discrete(2), 'SAC', 'CartPole-v1')
    assert str(e.value).startswith('SAC needs a continuous (Box) action space; --env '
                                   'CartPole-v1 has Discrete(2)')


@pytest.mark.parametrize('error', [errors.UserError('bad env'), SystemExit(143),
                                   KeyboardInterrupt()])
def test_a_failed_start_up_releases_the_farms_at_once(error):
    farmer = Farmer()
    with pytest.raises(type(error)):
        with runconfig.closing_on_error(farmer):
            raise error
    assert farmer.closed


def test_make_farmer_passes_give_up_after(monkeypatch):
    from host import allocation
    made = []
    monkeypatch.setattr(allocation, 'Farmer', lambda **kwargs: made.append(kwargs))
    runconfig.make_farmer('127.0.0.1:2:9000', give_up_after=30.0)
    runconfig.make_farmer('', give_up_after=0)
    assert made == [{'farms': [('127.0.0.1', '2', '9000')], 'give_up_after': 30.0}, {}]


# --- episodes.csv --------------------------------------------------------------------------------
def test_episodes_csv_says_why_each_episode_ended_and_an_old_file_gets_the_column(
        tmp_path, restore_signals):
    run = tmp_path / 'run'
    run.mkdir()
    old = ('episode', 'global_step', 'return', 'length', 'terminated', 'lost', 'env',
           'wall_time')  # the header of earlier versions
    with open(str(run / 'episodes.csv'), 'w') as f:
        csv.writer(f).writerows([old, (1, 10, -1, 10, 0, 0, 0, 1.0), (2, 20, -1, 10, 1, 0, 1, 2.0)])
    agent = VecAgent(ends=('moved', 'farm_lost', 'lease_expired', 'worker_lost'))
    agent.episodes, agent.global_step = 2, 20
    s = new_session(run, agent)
    s.train(4)
    rows = rows_of(run / 'episodes.csv')
    assert [r['episode'] for r in rows] == ['1', '2', '3', '4', '5', '6']
    assert [r['end'] for r in rows] == ['', '', 'moved', 'farm_lost', 'lease_expired',
                                        'worker_lost']
    assert rows[1]['terminated'] == '1' and rows[1]['env'] == '1'  # old rows kept whole
    assert (run / 'curve.png').exists()
    s.close()


# --- load() --------------------------------------------------------------------------------------
def a_run(runs, name, algo, env, episodes):
    run = runs / name
    (run / 'checkpoints').mkdir(parents=True)
    (run / 'config.json').write_text(json.dumps({'algo': algo, 'env': env}))
    agent = FakeAgent(size=10)
    agent.episodes = episodes
    checkpoints.save(agent, str(run / 'checkpoints'), 'ep%07d' % episodes)
    time.sleep(0.02)  # distinct modification times: which run is the latest
    return run


def test_load_in_a_fresh_run_takes_the_latest_earlier_run_of_this_algo_and_env(
        tmp_path, capsys, restore_signals):
    runs = tmp_path / 'runs'
    a_run(runs, 'older', 'fake', 'Fake-v0', 2)
    latest = a_run(runs, 'latest', 'fake', 'Fake-v0', 5)
    a_run(runs, 'other-env', 'fake', 'Other-v0', 9)
    a_run(runs, 'other-algo', 'sac', 'Fake-v0', 9)
    s = new_session(runs / 'new')
    s.load()
    assert s.agent.episodes == 5 and s.run_dir == str(latest)
    out = capsys.readouterr().out
    assert 'no checkpoint in %s yet' % (runs / 'new') in out and 'latest' in out
    assert not (runs / 'new').exists()  # the empty run it made is not left behind
    s.close()


def test_load_with_no_checkpoint_anywhere_is_a_user_error(tmp_path, restore_signals):
    s = new_session(tmp_path / 'runs' / 'new')
    with pytest.raises(errors.UserError, match='no checkpoint in .*new, nor in an earlier fake '
                                               'run on Fake-v0'):
        s.load()
    s.close()


# --- every farm lost (--give-up-after) -----------------------------------------------------------
def test_when_every_farm_is_lost_the_run_keeps_a_checkpoint_and_says_so(tmp_path,
                                                                         restore_signals):
    s = new_session(tmp_path / 'run', VecAgent(fail_after=3), checkpoint_every=100)
    with pytest.raises(errors.FarmsLostError):
        s.train(10)
    assert json.loads((tmp_path / 'run' / 'checkpoint.json').read_text())['episodes'] == 3
    s.close()
    assert s.farmer is None


# --- SIGTERM -------------------------------------------------------------------------------------
def sigterm_after(episodes):
    def during_step(agent):
        if agent.episodes == episodes:
            os.kill(os.getpid(), signal.SIGTERM)
    return during_step


def test_sigterm_during_r_stops_after_the_step_then_checkpoints_releases_and_exits(
        tmp_path, restore_signals):
    s = new_session(tmp_path / 'run', VecAgent(during_step=sigterm_after(3)),
                    checkpoint_every=100)
    with pytest.raises(SystemExit) as e:
        s.train(1000)
    assert e.value.code == 143
    assert s.agent.episodes == 4  # the step in flight when the signal came was finished
    assert json.loads((tmp_path / 'run' / 'checkpoint.json').read_text())['episodes'] == 4
    assert len(rows_of(tmp_path / 'run' / 'episodes.csv')) == 4
    assert s.farmer is None  # closed: its leases released


def test_a_step_that_outlives_the_grace_after_sigterm_is_abandoned(tmp_path, monkeypatch,
                                                                   restore_signals):
    monkeypatch.setattr(session, 'TERM_GRACE', 0.2)

    def stalled(agent):
        if agent.episodes == 2:
            os.kill(os.getpid(), signal.SIGTERM)
            deadline = time.time() + 30
            while time.time() < deadline:  # the farms do not answer
                time.sleep(0.01)
            raise AssertionError('the stalled step was not interrupted')
    s = new_session(tmp_path / 'run', VecAgent(during_step=stalled), checkpoint_every=100)
    with pytest.raises(SystemExit):
        s.train(1000)
    assert json.loads((tmp_path / 'run' / 'checkpoint.json').read_text())['episodes'] == 2
    assert s.farmer is None


def test_sigterm_at_the_prompt_checkpoints_releases_and_exits(tmp_path, restore_signals):
    agent = VecAgent()
    s = new_session(tmp_path / 'run', agent)
    agent.episodes, agent.global_step = 7, 70  # progress not checkpointed yet
    with pytest.raises(SystemExit) as e:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)  # the handler runs in this thread, between two bytecodes
    assert e.value.code == 143 and s.farmer is None
    assert json.loads((tmp_path / 'run' / 'checkpoint.json').read_text())['episodes'] == 7


def test_sigterm_during_a_save_waits_for_the_save(tmp_path, monkeypatch, restore_signals):
    agent = VecAgent()
    s = new_session(tmp_path / 'run', agent)
    real = agent.save_weights

    def slow_save(filepath, overwrite=False):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.1)
        real(filepath, overwrite)
    monkeypatch.setattr(agent, 'save_weights', slow_save)
    agent.episodes = 3
    with pytest.raises(SystemExit):
        s.save()
    saved = checkpoints.candidates(str(tmp_path / 'run'))
    assert len(saved) == 1 and FakeAgent.load_weights(FakeAgent(), saved[0]) is None


# --- test() on environments of its own ----------------------------------------------------------
def test_test_runs_on_its_own_environments_built_once_and_closed_with_the_session(
        tmp_path, capsys, restore_signals):
    agent = VecAgent()
    s = new_session(tmp_path / 'run', agent, eval_envs=3, env_kwargs={'difficulty': 2})
    assert s.farmer.built == []  # built on first use, not before
    assert s.test(4) == -2.0 and s.test(2) == -2.0
    farmer = s.farmer
    assert farmer.built == [('Fake-v0', 3, {'difficulty': 2})]  # once, kept for later calls
    eval_env = agent.evaluated_on[0]
    assert agent.evaluated_on == [eval_env, eval_env] and eval_env is not s.env
    out = capsys.readouterr().out
    assert 'deterministic, on 3 evaluation environments' in out
    rows = rows_of(tmp_path / 'run' / 'eval.csv')
    assert [(r['n'], r['mean_length']) for r in rows] == [('4', '7'), ('2', '7')]
    assert [(r['mean_distance'], r['mean_forward_distance']) for r in rows] == [('0.25', '')] * 2
    assert 'mean_distance 0.2500 over 4 episodes' in out
    assert not (tmp_path / 'run' / 'evaluations.csv').exists()
    s.close()
    assert eval_env.closed and farmer.closed


def test_with_no_free_capacity_test_says_so_in_one_line_and_uses_the_training_envs(
        tmp_path, caplog, restore_signals):
    agent = VecAgent()
    s = new_session(tmp_path / 'run', agent, farmer=Farmer(full=True))
    s.test(2)
    assert agent.evaluated_on == [s.env]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == 'WARNING']
    assert len(warnings) == 1 and '\n' not in warnings[0]
    assert warnings[0].startswith('test(): no free farm capacity for 1 evaluation environment, '
                                  'so this test runs on the training environments')
    assert '2 of 2 in use' in warnings[0] and 'Stop the other learners' not in warnings[0]
    s.farmer.full = False  # capacity freed: the next test() gets environments of its own
    s.test(2)
    assert agent.evaluated_on[1] is not s.env and len(s.farmer.built) == 1
    s.close()


def test_an_earlier_version_s_evaluations_csv_is_drawn_then_moved_into_eval_csv(
        tmp_path, monkeypatch, restore_signals):
    run = tmp_path / 'run'
    run.mkdir()
    (run / 'evaluations.csv').write_text(
        'global_step,episodes,mean_return,std_return,n,wall_time\n'
        '100,3,-5.5,1,4,1.0\n')
    s = new_session(run, VecAgent())
    drawn = []
    real = runfiles._read_columns
    monkeypatch.setattr(runfiles, '_read_columns',
                        lambda path, names: drawn.append((path, real(path, names))) or drawn[-1][1])
    s.plot()  # not evaluated since: the curve reads the old file
    assert [list(d[1][1]) for d in drawn if d[0].endswith('evaluations.csv')] == [[-5.5]]
    s.test(2)
    assert not (run / 'evaluations.csv').exists()
    rows = rows_of(run / 'eval.csv')
    assert [(r['mean_return'], r['mean_length']) for r in rows] == [('-5.5', ''), ('-2', '7')]
    drawn.clear()
    s.plot()
    assert [list(d[1][1]) for d in drawn if d[0].endswith('eval.csv')] == [[-5.5, -2.0]]
    s.close()


def test_eval_envs_0_tests_on_the_training_environments(tmp_path, capsys, restore_signals):
    agent = VecAgent()
    s = new_session(tmp_path / 'run', agent, eval_envs=0)
    s.test(2)
    assert agent.evaluated_on == [s.env] and s.farmer.built == []
    assert 'on the training environments (--eval-envs 0)' in capsys.readouterr().out
    s.close()


def test_evaluation_every_n_episodes_during_r_uses_its_own_environments_or_none(
        tmp_path, caplog, restore_signals):
    agent = VecAgent()
    s = new_session(tmp_path / 'run', agent, checkpoint_every=100)
    s.cfg.eval_every, s.cfg.eval_episodes = 2, 3  # fields the scripts' Config may carry
    s.train(5)
    assert len(agent.evaluated_on) == 2 and s.env not in agent.evaluated_on
    rows = rows_of(tmp_path / 'run' / 'eval.csv')
    assert [(r['episodes'], r['n']) for r in rows] == [('2', '3'), ('4', '3')]
    s.close()

    agent = VecAgent()  # no room for environments of its own: skipped, said once
    s = new_session(tmp_path / 'run2', agent, farmer=Farmer(full=True), checkpoint_every=100)
    s.cfg.eval_every = 1
    s.train(3)
    assert agent.evaluated_on == [] and s.agent.episodes == 3
    warnings = [r.getMessage() for r in caplog.records if r.levelname == 'WARNING']
    assert len(warnings) == 1 and warnings[0].startswith('evaluation during r skipped: no free '
                                                         'farm capacity for 1 evaluation')
    s.close()


# --- TensorBoard ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_session_writes_training_evaluation_agent_and_speed_scalars_for_tensorboard(
        tmp_path, monkeypatch, restore_signals):
    from run import tblog
    from agents.recording import UpdateMetrics
    agent = VecAgent(during_step=lambda agent: time.sleep(0.35))  # 4 steps: over 1 s in all
    agent.update_metrics = UpdateMetrics()
    agent.update_metrics.add(['critic_loss', 'mean_q'], [0.5, -3.0])
    agent.update_metrics.add(['critic_loss', 'mean_q'], [1.5, float('nan')])
    s = new_session(tmp_path / 'run', agent)
    s.train(4)
    s.test(3)
    s.close()
    scalars = tblog.read_scalars(str(tmp_path / 'run' / 'tb'))
    assert scalars['train/episode_return'] == [(10, -1.0), (20, -1.0), (30, -1.0), (40, -1.0)]
    assert scalars['train/episode_length'] == [(10, 10.0), (20, 10.0), (30, 10.0), (40, 10.0)]
    assert scalars['eval/mean_return'] == [(40, -2.0)]
    assert scalars['eval/std_return'] == [(40, 0.5)] and scalars['eval/mean_length'] == [(40, 7)]
    assert scalars['agent/critic_loss'] == [(40, 1.0)]  # the mean of the updates since
    assert scalars['agent/mean_q'] == [(40, -3.0)]      # (a NaN is no value)
    (step, speed), = scalars['perf/env_steps_per_s']
    assert step == 40 and 0 < speed <= 40 / 1.4
    assert scalars['perf/farm_utilization'] == [(40, 1.0)]
    assert 'perf/updates_per_s' in scalars


# --- a real agent through a farm -----------------------------------------------------------------
@pytest.mark.parametrize('stepping', ['lockstep', 'async'])
@pytest.mark.slow
def test_r_test_r_continues_the_training_episodes_in_flight(tmp_path, thread_farm,
                                                             restore_signals, stepping):
    """test() steps environments of its own: the second r goes on with the episodes the first
    left in flight (no reset of the training env), and its evaluation episodes are whole.
    Asynchronously, the environments still in flight after an r stay in flight through test()."""
    import agents.compat  # noqa: F401  (before TensorFlow)
    import farmer as farmer_module
    from run import tblog
    from agents.sac import SAC
    f = thread_farm(capacity=3)
    farmer = farmer_module.Farmer(farms=[('127.0.0.1', 3, f.port)], start_local=False)
    kwargs = {'obs_size': 3, 'act_size': 1, 'episode_length': 7}
    env = farmer.vec_env('CheapEnv', 2, kwargs)
    resets = []
    for name in ('reset', 'async_reset'):
        if hasattr(env, name):
            original = getattr(env, name)
            setattr(env, name, lambda seed=None, original=original: resets.append(seed)
                    or original(seed=seed))
    agent = SAC.from_spaces(env.observation_space, env.action_space, hidden=(8, 8),
                            batch_size=8, nb_steps_warmup=10, seed=0)
    agent.compile()

    @dataclass
    class RealCfg(Cfg):
        env: str = 'CheapEnv'
        env_kwargs: dict = None

    s = session.Session(RealCfg(env_kwargs=kwargs, stepping=stepping), 'sac', agent, env,
                        farmer, str(tmp_path / 'run'))
    s.train(2)  # 2 envs of 7-step episodes
    extra = agent.train_vec(env, nb_steps=6, mode=stepping)  # 3 more steps each in lockstep
    state = agent.trainer.episodes
    in_flight = (state.lengths.copy(), state.flying.copy(), state.obs.copy())
    if stepping == 'lockstep':
        assert list(in_flight[0]) == [3, 3]
    assert resets == [1]
    at_test = agent.global_step
    mean = s.test(3)
    assert agent.trainer.episodes is state and state.env is env
    for before, after in zip(in_flight, (state.lengths, state.flying, state.obs)):
        assert (before == after).all()  # untouched by test()
    assert s.eval_env is not None and s.eval_env is not env
    s.train(2)
    assert resets == [1]  # one reset, at the first r: the episodes in flight went on
    rows = rows_of(tmp_path / 'run' / 'episodes.csv')
    if stepping == 'lockstep':
        assert [int(r['global_step']) for r in rows] == [14, 14, 28, 28]  # 4 after test()
    else:  # 2 envs, ready-first: each r ends after the result that brings its second episode
        numbers = [int(r['episode']) for r in rows]
        assert numbers == sorted(set(numbers)) and numbers[-1] == agent.episodes
        assert len(rows) + extra['episodes'] == agent.episodes  # those of r, all recorded
        assert 4 <= len(rows) <= 6 and agent.global_step >= 26
    assert [int(r['length']) for r in rows] == [7] * len(rows)
    assert len(agent.memory) == agent.global_step
    assert agent.updates > 0
    s.close()
    assert farmer.closed
    scalars = tblog.read_scalars(str(tmp_path / 'run' / 'tb'))
    assert len(scalars['train/episode_return']) == len(rows)
    assert scalars['eval/mean_return'] == [(at_test, pytest.approx(mean, rel=1e-5))]
    assert scalars['eval/mean_length'] == [(at_test, 7.0)]
    for name in agent.metrics_names:  # the agent's own metrics, finite, at an env step
        assert all(step > 10 and value == value for step, value in scalars['agent/' + name])
    assert scalars['agent/alpha'][-1][1] > 0


def test_every_r_steps_in_the_configured_mode(tmp_path):
    agent = VecAgent()
    for stepping in ('lockstep', 'async'):
        run = new_session(tmp_path / stepping, agent=agent, stepping=stepping)
        try:
            run.train(1)
        finally:
            run.close()
    assert agent.modes == ['lockstep', 'async']


def test_a_curriculum_changes_the_environments_as_training_reaches_its_stages(tmp_path):
    schedule = tmp_path / 'run.curriculum.json'
    schedule.write_text(json.dumps([{'episodes': 0, 'params': {'episode_length': 5}},
                                    {'episodes': 3, 'params': {'episode_length': 8}},
                                    {'steps': 50, 'params': {'offset': 1.0}}]))
    env = FakeVecEnv(2)
    run = session.Session(Cfg(curriculum=str(schedule)), 'fake', VecAgent(), env=env,
                          farmer=Farmer(), run_dir=str(tmp_path / 'run'))
    try:
        run.train(6)  # 10 env steps per episode: stage 2 at episode 3, stage 3 at step 50
        assert env.params == [{'episode_length': 5}, {'episode_length': 8}, {'offset': 1.0}]
        run.test(1)  # test()'s own environments get the params in force
        assert run.eval_env.params[-1] == {'episode_length': 8, 'offset': 1.0}
    finally:
        run.close()
