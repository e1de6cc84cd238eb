"""run/tblog.py: event files TensorBoard reads, read back by TensorFlow's own reader (and by
TensorBoard's where it is installed); a session's event files in graph mode (DDPG imports
rl.agents: run in a fresh interpreter); the PNG rendering script.

``python tests/test_tblog.py case_name`` runs one graph-mode case (see agents_support.run_case).
"""
import os
import subprocess
import sys

import pytest

import conftest  # noqa: F401  (puts the project on sys.path)
from conftest import ROOT
from run import tblog


def tf_reader(folder):
    """The scalars as TensorFlow's own reader (which checks every record's CRC) sees them."""
    tf = tblog._tf()  # agents.compat first, as everywhere
    found = {}
    for path in tblog.event_files(folder):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                found.setdefault(value.tag, []).append((event.step, value.simple_value))
    return found


def test_scalars_are_read_back_by_tensorflow_with_their_steps(tmp_path):
    folder = str(tmp_path / 'tb')
    log = tblog.EventLog(folder)
    for step in range(5):
        log.scalars({'train/episode_return': -step * 1.5, 'agent/mean_q': float('nan'),
                     'eval/mean_return': None}, step * 100)
    log.scalar('perf/env_steps_per_s', 123.25, 400)
    log.close()
    expected = {'train/episode_return': [(s * 100, -s * 1.5) for s in range(5)],
                'perf/env_steps_per_s': [(400, 123.25)]}  # NaN and None are left out
    assert tblog.read_scalars(folder) == expected
    assert tf_reader(folder) == expected
    name = os.path.basename(tblog.event_files(folder)[0])
    assert name.startswith('events.out.tfevents.')  # the names TensorBoard looks for


def test_tensorboard_itself_reads_the_scalars(tmp_path):
    accumulator = pytest.importorskip(
        'tensorboard.backend.event_processing.event_accumulator',
        reason='tensorboard is not installed (pip install tensorboard: TensorFlow 2.21 does not '
               'install it)')
    folder = str(tmp_path / 'tb')
    log = tblog.EventLog(folder)
    log.scalars({'eval/mean_return': -150.5, 'train/episode_length': 200}, 3000)
    log.close()
    events = accumulator.EventAccumulator(folder)
    events.Reload()
    assert sorted(events.Tags()['scalars']) == ['eval/mean_return', 'train/episode_length']
    (point,) = events.Scalars('eval/mean_return')
    assert (point.step, point.value) == (3000, -150.5)


def test_flushed_scalars_are_readable_while_the_log_is_open(tmp_path):
    folder = str(tmp_path / 'tb')
    log = tblog.EventLog(folder, flush_every=3600)
    log.scalar('a', 1.0, 1)
    log.flush()
    assert tblog.read_scalars(folder) == {'a': [(1, 1.0)]}
    log.close()


def test_two_logs_opened_at_once_write_two_files(tmp_path):
    folder = str(tmp_path / 'tb')
    first, second = tblog.EventLog(folder), tblog.EventLog(folder)
    first.scalar('a', 1.0, 1)
    second.scalar('a', 2.0, 2)
    first.close()
    second.close()
    assert len(tblog.event_files(folder)) == 2
    assert tblog.read_scalars(folder) == {'a': [(1, 1.0), (2, 2.0)]}


def test_a_log_that_cannot_write_says_so_once_and_the_run_goes_on(tmp_path, caplog):
    (tmp_path / 'tb').write_text('a file where the folder should be')
    log = tblog.EventLog(str(tmp_path / 'tb'))
    log.scalar('a', 1.0, 1)
    log.scalar('a', 2.0, 2)
    log.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelname == 'WARNING']
    assert len(warnings) == 1 and warnings[0].startswith('TensorBoard logging stopped: cannot '
                                                         'write')


@pytest.mark.slow
def test_the_script_draws_a_runs_scalars_to_a_png(tmp_path):
    run = tmp_path / 'run'
    log = tblog.EventLog(str(run / 'tb'))
    for step in range(3):
        log.scalars({'train/episode_return': step, 'eval/mean_return': 2 * step}, step)
    log.close()
    png = tmp_path / 'scalars.png'
    done = subprocess.run([sys.executable, 'run/tblog.py', str(run), '--png', str(png)], cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3'))
    assert done.returncode == 0, done.stdout
    assert png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    empty = subprocess.run([sys.executable, 'run/tblog.py', str(tmp_path)], cwd=ROOT,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           universal_newlines=True)
    assert empty.returncode == 2
    assert empty.stderr == 'run/tblog.py: no event files in %s: give a run directory (runs/...)\n' % (
        tmp_path)


# --- graph mode: DDPG (rl.agents) through a farm, in a fresh interpreter -------------------------
@pytest.mark.slow
def test_a_ddpg_session_in_graph_mode_writes_its_metrics():
    from agents_support import run_case
    run_case(__file__, 'case_ddpg_session_in_graph_mode')


def case_ddpg_session_in_graph_mode():
    import tempfile

    import agents.compat  # noqa: F401
    import farmer as farmer_module
    from run import session
    from agents.compat import tf
    from agents.ddpg import DDPG
    from test_session import Cfg
    assert not tf.executing_eagerly()  # rl.agents turned eager execution off

    kwargs = {'obs_size': 3, 'act_size': 1, 'episode_length': 10}
    farm = conftest.ThreadFarm(capacity=3)
    farmer = farmer_module.Farmer(farms=[('127.0.0.1', 3, farm.port)], start_local=False)
    try:
        env = farmer.vec_env('CheapEnv', 2, kwargs)
        agent = DDPG.from_spaces(env.observation_space, env.action_space, hidden=(8, 8),
                                 batch_size=8, nb_steps_warmup=10, nb_steps_random=10, seed=0)
        agent.compile()
        run_dir = os.path.join(tempfile.mkdtemp(), 'run')
        s = session.Session(Cfg(env='CheapEnv', env_kwargs=kwargs, checkpoint_every=100), 'ddpg',
                            agent, env, farmer, run_dir)
        s.train(4)
        # (stepping asynchronously, the default, an r may take a few more steps and end one
        # episode more than asked)
        steps, episodes = agent.global_step, agent.episodes
        s.test(2)
        s.close()
    finally:
        farmer.close()
        farm.close()
    scalars = tblog.read_scalars(os.path.join(run_dir, 'tb'))
    assert 4 <= episodes <= 5 and 40 <= steps < 50
    assert len(scalars['train/episode_return']) == episodes
    assert [step for step, _ in scalars['eval/mean_return']] == [steps]
    for name in ('agent/critic_loss', 'agent/mean_q'):
        assert scalars[name] and all(value == value for _, value in scalars[name])


if __name__ == '__main__':
    from agents_support import main
    main(globals())
