"""run/runfiles.py on its own: signals held while a file is written, episodes.csv's rows, upgrade
and trim, eval.csv's rows and the move from an earlier version's evaluations.csv, curve.png.
The same files through a Session are covered in test_session.py."""
import csv
import os
import signal
import time

import conftest  # noqa: F401  (puts the project on sys.path)
from run import runfiles


def rows_of(path):
    with open(str(path)) as f:
        return list(csv.DictReader(f))


def header_of(path):
    with open(str(path)) as f:
        return next(csv.reader(f))


def event(episode, step, ret=-1.0, end='time_limit'):
    return {'episode': episode, 'global_step': step, 'return': ret, 'length': 10,
            'terminated': False, 'lost': False, 'env': episode % 2, 'end': end}


def test_signals_held_while_a_file_is_written_are_delivered_after(restore_signals):
    got = []
    signal.signal(signal.SIGINT, lambda signum, frame: got.append(signum))
    signal.signal(signal.SIGTERM, lambda signum, frame: got.append(signum))
    with runfiles.signals_deferred(redeliver=False):
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        assert got == []
    assert got == [signal.SIGTERM]  # a held Ctrl-C may be dropped; a SIGTERM never
    with runfiles.signals_deferred():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
    assert got == [signal.SIGTERM, signal.SIGINT]


def test_episode_rows_append_under_one_header_across_runs(tmp_path):
    files = runfiles.RunFiles(str(tmp_path))
    with files.episode_rows() as add:
        add(event(1, 10))
        add(event(2, 20, end='farm_lost'))
    with files.episode_rows() as add:  # the next r
        add(event(3, 30, ret=-0.5))
    assert header_of(files.episodes_path) == list(runfiles.CSV_COLUMNS)
    rows = rows_of(files.episodes_path)
    assert [(r['episode'], r['global_step'], r['return'], r['end']) for r in rows] == [
        ('1', '10', '-1', 'time_limit'), ('2', '20', '-1', 'farm_lost'), ('3', '30', '-0.5',
                                                                         'time_limit')]


def test_an_earlier_versions_episodes_csv_gets_todays_columns_and_keeps_its_rows(tmp_path):
    path = tmp_path / 'episodes.csv'
    with open(str(path), 'w') as f:
        csv.writer(f).writerows([runfiles.CSV_COLUMNS[:-1], (1, 10, -1, 10, 1, 0, 1, 1.0)])
    files = runfiles.RunFiles(str(tmp_path))
    with files.episode_rows() as add:
        add(event(2, 20))
    rows = rows_of(path)
    assert header_of(path) == list(runfiles.CSV_COLUMNS)
    assert [(r['episode'], r['terminated'], r['end']) for r in rows] == [
        ('1', '1', ''), ('2', '0', 'time_limit')]


def test_trim_moves_rows_past_the_loaded_episodes_aside(tmp_path, capsys):
    files = runfiles.RunFiles(str(tmp_path))
    with files.episode_rows() as add:
        for k in range(1, 6):
            add(event(k, 10 * k))
    files.trim(3)
    assert [r['episode'] for r in rows_of(files.episodes_path)] == ['1', '2', '3']
    backups = [p for p in os.listdir(str(tmp_path)) if p.endswith('.bak')]
    assert len(backups) == 1
    assert [r['episode'] for r in rows_of(tmp_path / backups[0])] == ['1', '2', '3', '4', '5']
    assert 'episodes.csv: 2 rows past episode 3 moved aside' in capsys.readouterr().out
    files.trim(3)  # nothing past it: no second backup
    assert len([p for p in os.listdir(str(tmp_path)) if p.endswith('.bak')]) == 1


def test_eval_rows_carry_lengths_and_the_tasks_measure(tmp_path):
    files = runfiles.RunFiles(str(tmp_path))
    files.add_eval(100, 4, {'mean_return': -2.0, 'std_return': 0.5, 'lengths': [7, 9],
                            'mean_distance': 0.25}, 2)
    files.add_eval(200, 8, {'mean_return': -1.0, 'std_return': 0.0}, 1)  # no lengths, no measure
    assert header_of(files.eval_path) == list(runfiles.EVAL_COLUMNS)
    rows = rows_of(files.eval_path)
    assert [(r['global_step'], r['episodes'], r['mean_return'], r['n'], r['mean_length'],
             r['mean_distance']) for r in rows] == [('100', '4', '-2', '2', '8', '0.25'),
                                                    ('200', '8', '-1', '1', '', '')]


def test_an_earlier_versions_evaluations_csv_moves_into_eval_csv_at_the_next_evaluation(
        tmp_path):
    old = tmp_path / runfiles.OLD_EVAL_CSV
    old.write_text('global_step,episodes,mean_return,std_return,n,wall_time\n100,3,-5.5,1,4,1.0\n')
    files = runfiles.RunFiles(str(tmp_path))
    files.add_eval(200, 6, {'mean_return': -2.0, 'std_return': 0.5, 'lengths': [7]}, 1)
    assert not old.exists()
    assert [(r['global_step'], r['mean_return'], r['mean_length'])
            for r in rows_of(files.eval_path)] == [('100', '-5.5', ''), ('200', '-2', '7')]


def test_plot_draws_the_curve_whole_even_with_no_rows_yet(tmp_path):
    files = runfiles.RunFiles(str(tmp_path))
    path = files.plot()
    assert path == str(tmp_path / 'curve.png') and os.path.getsize(path) > 0
    with files.episode_rows() as add:
        for k in range(1, 30):
            add(event(k, 10 * k, ret=-k))
    files.add_eval(290, 29, {'mean_return': -3.0, 'std_return': 0.1}, 1)
    before = os.path.getmtime(path)
    time.sleep(0.01)
    assert files.plot() == path and os.path.getmtime(path) >= before
    assert not [p for p in os.listdir(str(tmp_path)) if p.endswith('.tmp')]
