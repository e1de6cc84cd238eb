"""The fault drills' counting (bench/drills.py) and DrillEnv's identity encoding (envs/drill.py).

The drills themselves take minutes and kill processes: they stay out of the default test run
(``python bench/drills.py --json``). Here the counting is checked on memories built by hand,
including negative controls (a planted duplicate, a planted gap, a transition received but never
stored, a phantom and a mismatched transition must each be caught), and once on a real DrillEnv
stepped through a real farm process.
"""
import csv
import json
import os
import sys

import numpy as np
import pytest

from conftest import ROOT

from bench import drills  # noqa: E402
from envs.drill import DrillEnv  # noqa: E402


def episode_obs(env, steps):
    """The observations of one episode of ``env``: reset, then ``steps`` steps."""
    obs = [env.reset()]
    for _ in range(steps):
        obs.append(env.step([0.0])[0])
    return np.asarray(obs, dtype=np.float32)


def transitions(obs):
    """(s, s') pairs of consecutive observations, as the replay memory holds them."""
    return obs[:-1], obs[1:]


def clean_memory():
    """Two environments, two episodes each, interleaved: a memory with nothing wrong."""
    a, b = DrillEnv(episode_length=10), DrillEnv(episode_length=10)
    parts = [transitions(episode_obs(env, 6)) for env in (a, b, a, b)]
    return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))


def test_identity_survives_float32_and_decodes():
    env = DrillEnv()
    env.reset()
    env.reset()
    for _ in range(700):
        obs = env.step([0.0])[0]
    identity, episode, t = drills.decode(np.asarray([obs], dtype=np.float32))
    assert identity[0] == (env.identity[0] << 24) + env.identity[1]
    assert (episode[0], t[0]) == (1, 700)


def test_two_instances_have_different_identities():
    ids = set(tuple(DrillEnv().identity) for _ in range(50))
    assert len(ids) == 50


def test_clean_memory_counts_nothing_lost_or_duplicated():
    obs, nxt = clean_memory()
    counts = drills.count_transitions(obs, nxt, obs, nxt)
    assert counts['stored'] == counts['real'] == counts['received'] == 24
    assert counts['episodes'] == 4
    assert (counts['lost'], counts['duplicated'], counts['phantom'], counts['mismatched']) == (
        0, 0, 0, 0)


def test_planted_duplicate_and_gap_are_caught():
    """Negative control: one transition stored twice, another dropped from the middle."""
    obs, nxt = clean_memory()
    received = (obs.copy(), nxt.copy())
    keep = [i for i in range(len(obs)) if i != 3]          # a gap: episode 1's t=3 is gone
    obs2 = np.concatenate([obs[keep], obs[[8]]])            # ...and t=2 of another stored twice
    nxt2 = np.concatenate([nxt[keep], nxt[[8]]])
    counts = drills.count_transitions(obs2, nxt2, *received)
    assert counts['duplicated'] == 1
    assert counts['gaps'] == 1
    assert counts['missing'] == 1  # received once, never stored
    assert counts['lost'] == 2     # the gap and the missing are the same transition, seen twice
    without_received = drills.count_transitions(obs2, nxt2)
    assert (without_received['duplicated'], without_received['lost']) == (1, 1)


def test_received_but_not_stored_at_the_end_of_an_episode_is_missing_not_a_gap():
    obs, nxt = clean_memory()
    last = 5  # the first episode's last transition: no later t shows the hole
    keep = [i for i in range(len(obs)) if i != last]
    counts = drills.count_transitions(obs[keep], nxt[keep], obs, nxt)
    assert (counts['gaps'], counts['missing'], counts['lost']) == (0, 1, 1)


def test_phantom_and_mismatched_transitions_are_told_apart():
    obs, nxt = clean_memory()
    phantom = (obs[[2]], obs[[2]])           # s' = s: a lost step's stand-in
    crossed = (obs[[2]], obs[[9]])           # s' from another environment
    counts = drills.count_transitions(np.concatenate([obs, phantom[0], crossed[0]]),
                                      np.concatenate([nxt, phantom[1], crossed[1]]))
    assert (counts['phantom'], counts['mismatched']) == (1, 1)
    assert (counts['duplicated'], counts['lost']) == (0, 0)


def test_episodes_csv_against_the_received_ends(tmp_path):
    path = str(tmp_path / 'episodes.csv')
    with open(path, 'w') as f:
        rows = csv.writer(f)
        rows.writerow(['episode', 'global_step', 'return', 'length', 'terminated', 'lost', 'env',
                       'wall_time'])
        rows.writerow([1, 20, -1, 10, 1, 0, 0, 0])
        rows.writerow([2, 20, -1, 10, 1, 0, 0, 0])   # the same episode written twice
    counts = drills.count_episodes(path, [0, 1], [10, 10])
    assert counts == {'csv_rows': 2, 'episodes_received': 2, 'csv_missing': 1, 'csv_extra': 1}


@pytest.mark.slow
def test_drill_env_through_a_real_farm_counts_clean(process_farm):
    """DrillEnv served by a real farm.py: what comes back decodes, in order, with no gap."""
    import farmer
    farm = process_farm(capacity=2)
    with farmer.Farmer(farms=[('127.0.0.1', 2, farm.port)], start_local=False) as f:
        env = f.vec_env('DrillEnv', 2, {'episode_length': 7})
        obs = env.reset()
        memory_obs, memory_next = [], []
        for _ in range(20):
            nxt, _, terminated, truncated, infos = env.step(np.zeros((2, 1)))
            for i in range(2):
                memory_obs.append(obs[i])
                ended = terminated[i] or truncated[i]
                memory_next.append(infos[i]['terminal_observation'] if ended else nxt[i])
            obs = nxt
        env.close()
    counts = drills.count_transitions(np.asarray(memory_obs), np.asarray(memory_next))
    assert counts['real'] == 40 and counts['episodes'] == 6
    assert (counts['lost'], counts['duplicated'], counts['phantom']) == (0, 0, 0)


def test_markdown_table_of_a_saved_run(tmp_path, capsys):
    row = drills.new_row('worker_kill', 'kill -9 of a worker')
    row.update(recovered=True, seconds_to_recover=0.25, transitions_lost=0,
               transitions_duplicated=0, processes_left=0, notes='a | b')
    counted = dict(row, stepping='lockstep', counts={'received': 12, 'stored': 11})
    path = tmp_path / 'drills.json'
    path.write_text(__import__('json').dumps({'rows': [row, counted]}))
    assert drills.main(['--markdown', str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2] == ('| `worker_kill` | kill -9 of a worker | yes | 0.2 | 0 | 0 | - | 0 | '
                        'a / b |')
    assert lines[3] == ('| `worker_kill (lockstep)` | kill -9 of a worker | yes | 0.2 | 0 | 0 | '
                        '12 / 11 | 0 | a / b |')


def test_soak_growth_is_the_slope_over_the_second_half():
    from bench import soak
    # Start-up: 100 MiB jump in the first half; then a steady 1 MiB per minute.
    samples = [{'t': 60.0 * k, 'x': (0.0 if k < 5 else 100.0) + k} for k in range(10)]
    summary = soak.summarize(samples)['x']
    assert summary['growth_per_hour'] == pytest.approx(60.0)
    assert (summary['first'], summary['last'], summary['max']) == (0.0, 109.0, 109.0)


def test_a_cross_check_with_nothing_on_one_side_is_a_failure_not_zero_lost():
    """Regression: the recorder once saw only lockstep calls, so in asynchronous stepping every
    drill compared the memory with nothing and reported 0 lost."""
    obs, nxt = clean_memory()
    nothing_received = drills.count_transitions(obs, nxt, obs[:0], nxt[:0])
    assert nothing_received['lost'] == 0 and drills.nothing_compared(nothing_received)
    compared = drills.count_transitions(obs, nxt, obs, nxt)
    assert not drills.nothing_compared(compared)
    assert drills.nothing_compared(dict(compared, csv_rows=4, episodes_received=0))
    assert not drills.nothing_compared(dict(compared, csv_rows=4, episodes_received=4))


@pytest.mark.slow
@pytest.mark.parametrize('stepping', ['lockstep', 'async'])
def test_the_drill_recorder_sees_what_the_agent_stores_in_both_stepping_modes(stepping):
    """drill_learner's Recorder around a real SAC agent training on DrillEnvs: everything stored
    was received, nothing received is missing, and every episode end is seen; the asynchronous
    results come back interleaved (agents_support's scripted env)."""
    import agents_support
    from agents.sac import SAC
    from bench.drill_learner import Recorder
    from vecenv.contract import InProcessVecEnv
    inner = InProcessVecEnv('DrillEnv', 3, {'episode_length': 7})
    env = (inner if stepping == 'lockstep' else
           agents_support.ScriptedAsyncVecEnv(inner, agents_support.uneven_steps))
    recorder = Recorder(env)
    agent = SAC.from_spaces(env.observation_space, env.action_space, hidden=(8, 8),
                            batch_size=8, nb_steps_warmup=10, memory_limit=10000, seed=0)
    agent.compile()
    agent.train_vec(env, nb_steps=60, mode=stepping)
    n = len(agent.memory)
    counts = drills.count_transitions(agent.memory.observations[:n],
                                      agent.memory.next_observations[:n],
                                      np.asarray(recorder.obs), np.asarray(recorder.next_obs))
    assert not drills.nothing_compared(counts)
    assert counts['received'] == counts['stored'] == n >= 60
    assert counts['lost'] == counts['duplicated'] == counts['mismatched'] == 0
    assert len(recorder.ended) >= 6 and all(length == 7 for _, length, _ in recorder.ended)
    env.close()


@pytest.mark.slow
def test_a_drill_run_stopped_by_sigterm_leaves_nothing_running():
    """Found as a new user would: ``timeout 600 bench/drills.py --json`` killed the runner and
    left its farm and drill learner running. SIGTERM now stops the drill in progress and removes
    what it started."""
    import subprocess
    from conftest import command_lines, terminated_when, wait_until

    def ours():
        return [pid for pid, line in command_lines().items()
                if 'drill_learner.py' in line or ('farm.py' in line and pid not in before)]
    before = set(pid for pid, line in command_lines().items() if 'farm.py' in line)
    run = subprocess.Popen([sys.executable, os.path.join(ROOT, 'bench', 'drills.py'), '--json',
                            '--only', 'worker_kill', '--stepping', 'async'], cwd=ROOT,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = terminated_when(run, lambda: any('drill_learner.py' in line
                                                for line in command_lines().values()))
    assert run.returncode == 130, err[-2000:]
    assert json.loads(out)['interrupted'] is True
    assert wait_until(lambda: not ours(), 10), ours()
