"""train_sac.py and train_ddpg.py end to end: the real scripts in subprocesses (they import
TensorFlow and rl.agents, which must stay out of the pytest process), each through a local farm
the farmer starts by itself on a free port, with tiny networks and budgets. Behaviour is asserted,
never timings. ``runconfig.parse_config`` is also tested in-process (it imports no TensorFlow)."""
import csv
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

import pytest

from conftest import ROOT, free_port
from run import config as runconfig

SCRIPTS = ['train_sac.py', 'train_ddpg.py']
CHEAP = ['--env', 'CheapEnv', '--env-kwargs',
         '{"obs_size": 3, "act_size": 1, "episode_length": 10}']
TIMEOUT = 240


def tiny(script, port, run_dir):
    """Flags for a small, fast run: 2 envs on a local farm at ``port``, a 16x16 network."""
    flags = ['--n-envs', '2', '--farms', '127.0.0.1:2:%d' % port, '--hidden', '16,16',
             '--batch-size', '16', '--warmup', '20', '--run-dir', str(run_dir),
             '--log-every', '0']
    if script == 'train_ddpg.py':
        flags += ['--random-steps', '20']
    return flags


def run_script(args, stdin=None):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
    proc = subprocess.run([sys.executable] + args, cwd=ROOT, env=env, input=stdin,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stdout[-6000:]
    return proc.stdout


def farm_processes(port):
    """PIDs of live farm.py processes listening on ``port`` (the auto-started local farm)."""
    found = []
    for pid in os.listdir('/proc'):
        try:
            with open('/proc/%s/cmdline' % pid, 'rb') as f:
                argv = f.read().decode(errors='replace').split('\0')
            with open('/proc/%s/stat' % pid) as f:
                state = f.read().rsplit(')', 1)[1].split()[0]
        except (IOError, OSError):
            continue
        if state != 'Z' and any(a.endswith('farm.py') for a in argv) and str(port) in argv:
            found.append(int(pid))
    return found


def assert_no_farm_left(port):
    deadline = time.time() + 20  # the farm's workers may take a moment to be reaped
    while farm_processes(port) and time.time() < deadline:
        time.sleep(0.2)
    assert farm_processes(port) == []


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def marked(output, tag):
    """The JSON printed after ``tag`` by a stdin command (see the interactive tests)."""
    lines = [line for line in output.splitlines() if tag in line]
    assert lines, output[-6000:]
    return json.loads(lines[-1].split(tag, 1)[1])


# --- configuration -------------------------------------------------------------------------------
@dataclass
class Example:
    name: str = 'L2M2019Env'
    """an environment name"""
    n_envs: int = 4
    """how many"""
    rate: float = 3e-4
    """a rate"""
    hidden: tuple = (256, 256)
    """layer sizes"""
    kwargs: dict = field(default_factory=dict)
    """keyword arguments"""
    flag: bool = False
    """a switch"""


def test_parse_config_types_and_aliases():
    cfg = runconfig.parse_config(Example, __file__, argv=[
        '--name', 'Pendulum-v1', '--n_envs', '3', '--rate', '0.5', '--hidden', '16,8',
        '--kwargs', '{"difficulty": 2}', '--flag', 'yes'])
    assert cfg == Example('Pendulum-v1', 3, 0.5, (16, 8), {'difficulty': 2}, True)
    assert runconfig.parse_config(Example, __file__, argv=['--n-envs', '2']).n_envs == 2
    assert runconfig.parse_config(Example, __file__, argv=[]) == Example()


def script_docs(script):
    """The docstrings of a script's fields: its Config's own, read in the script (it cannot be
    imported here: it starts a run), and those it inherits from run/config.py's RunConfig."""
    shared = runconfig.field_docs(runconfig.RunConfig, runconfig.__file__)
    own = runconfig.field_docs(type('Config', (), {}), os.path.join(ROOT, script))
    return shared, own


@pytest.mark.parametrize('script', SCRIPTS)
def test_help_lists_every_field_with_its_docstring(script):
    out = run_script([script, '--help'])  # parse_config refuses a field without a docstring
    shared, own = script_docs(script)
    docs = dict(shared, **own)
    assert {'env', 'env_kwargs', 'n_envs', 'farms', 'episodes', 'run_dir', 'resume'} <= set(docs)
    squeezed = ''.join(out.split())  # argparse re-wraps the help text
    for name, doc in docs.items():
        assert '--' + name.replace('_', '-') in out
        doc = doc.replace('<algo>', script[6:-3])  # run_dir's: runs/sac-<env>-<timestamp>
        assert ''.join(doc.split()) in squeezed, name


def test_both_helps_list_the_shared_flags_then_their_own():
    """One RunConfig for both scripts: each --help lists all of its flags under one heading, then
    the algorithm's own under the algorithm's; the hyperparameters that differ stay apart."""
    helps = {script: run_script([script, '--help']) for script in SCRIPTS}
    for script, out in helps.items():
        shared, own = script_docs(script)
        assert own and not set(own) & set(shared), script  # a script declares no shared field
        heading = out.index('\nenvironments, farms and the run')
        algo = out.index('\n%s; defaults from ' % script[6:-3].upper())
        for name in shared:
            assert heading < out.index('\n  --%s ' % name.replace('_', '-')) < algo, name
        for name in own:
            assert algo < out.index('\n  --%s ' % name.replace('_', '-')), name
    for flag in ('--actor-lr', '--critic-lr', '--noise', '--sigma', '--random-steps'):
        assert flag in helps['train_ddpg.py'] and flag not in helps['train_sac.py']
    for flag in ('--lr ', '--initial-alpha'):
        assert flag in helps['train_sac.py'] and flag not in helps['train_ddpg.py']
    assert 'runs/sac-<env>-<timestamp>' in helps['train_sac.py']
    assert 'runs/ddpg-<env>-<timestamp>' in helps['train_ddpg.py']


@dataclass
class Algorithm(runconfig.RunConfig):
    """ALGO; one knob of its own"""
    knob: float = 0.5
    """a knob"""
    seed: int = 1
    """a seed"""


def test_parse_config_of_a_run_config_subclass_reads_inherited_docs_and_groups_them(capsys):
    cfg = runconfig.parse_config(Algorithm, __file__, argv=['--knob', '2', '--n-envs', '3'],
                                 algo='algo')
    assert (cfg.knob, cfg.n_envs, cfg.env, cfg.seed) == (2.0, 3, 'L2M2019Env', 1)
    assert isinstance(cfg, runconfig.RunConfig)
    with pytest.raises(SystemExit):
        runconfig.parse_config(Algorithm, __file__, argv=['--help'], algo='algo')
    out = capsys.readouterr().out
    assert out.index('\nenvironments, farms and the run') < out.index('\n  --env ') < out.index(
        '\nALGO; one knob of its own:') < out.index('\n  --knob ')
    assert 'runs/algo-<env>-<timestamp>' in ''.join(out.split())
    assert runconfig.config_docs(Algorithm, __file__)['knob'] == 'a knob'
    assert runconfig.config_docs(Algorithm, __file__)['farms'].startswith('farms as host')


# --- end to end ----------------------------------------------------------------------------------
@pytest.mark.parametrize('script, stepping', [('train_sac.py', 'async'),
                                               ('train_ddpg.py', 'async'),
                                               ('train_sac.py', 'lockstep')])
@pytest.mark.slow
def test_a_script_run_trains_saves_and_stops_its_local_farm(script, stepping, tmp_path):
    port, run_dir = free_port(), tmp_path / 'run'
    scaled = ['--reward-scale', '5', '--reward-offset', '1'] if stepping == 'lockstep' else []
    out = run_script([script, '--env', 'Pendulum-v1', '--env-kwargs',
                      '{"max_episode_steps": 50}', '--episodes', '4', '--checkpoint-every', '2',
                      '--stepping', stepping] + scaled + tiny(script, port, run_dir))
    config = json.loads((run_dir / 'config.json').read_text())
    assert config['env'] == 'Pendulum-v1' and config['algo'] == script[6:-3]
    assert config['stepping'] == stepping
    assert config['normalize_obs'] is True  # the scripts' default
    assert (config['reward_scale'], config['reward_offset']) == ((5.0, 1.0) if scaled
                                                                 else (1.0, 0.0))
    rows = read_csv(str(run_dir / 'episodes.csv'))
    n = len(rows)  # lockstep: 2 envs, 4 episodes; asynchronously the last batch may bring 5
    assert n == 4 if stepping == 'lockstep' else n in (4, 5)
    assert 'ep %d (+%d/4)' % (n, n) in out  # the progress line
    assert [int(r['episode']) for r in rows] == list(range(1, n + 1))
    assert all(int(r['length']) == 50 and r['terminated'] == '0' for r in rows)
    assert [r['end'] for r in rows] == ['time_limit'] * n  # why each episode ended
    saved = json.loads((run_dir / 'checkpoint.json').read_text())
    name = 'ep%07d' % n
    state = json.loads((run_dir / 'checkpoints' / name / (name + '_state.json')).read_text())
    assert saved['episodes'] == n and saved['updates'] > 0 and saved['latest'] == name
    assert state['global_step'] == saved['global_step'] == int(rows[-1]['global_step'])
    if stepping == 'lockstep':
        assert saved['global_step'] == 200
    else:  # each env took 50 steps per episode; the other one's episode in flight is counted
        assert n * 50 <= saved['global_step'] < (n + 1) * 50
    assert (run_dir / 'checkpoints' / 'ep0000002' / 'ep0000002_state.json').exists()  # every 2
    assert len(list((run_dir / 'checkpoints' / name).glob(name + '_*.h5'))) >= 2
    assert (run_dir / 'checkpoints' / name / (name + '_obsnorm.npz')).exists()
    if scaled:  # the rewards the agent learnt from were scaled; the CSV keeps Pendulum's own
        assert all(-1700 < float(r['return']) < 0 for r in rows)
    assert (run_dir / 'curve.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert_no_farm_left(port)


COUNTERS = 'import json\ndef show(tag): print(tag, json.dumps(agent.counters()))\n\nshow("@C0")\n'
NAMES = ('print("@NAMES", json.dumps(sorted(n for n in ("r", "test", "save", "load", "video", '
         '"cfg", "farmer", "env", "agent") if n in globals())))\n')


@pytest.mark.parametrize('script', SCRIPTS)
@pytest.mark.slow
def test_r_continues_counters_and_load_resumes(script, tmp_path):
    port, run_dir = free_port(), tmp_path / 'run'
    # python -i: the interactive path; stdin feeds the prompt.
    out = run_script(['-i', script] + CHEAP + tiny(script, port, run_dir),
                     stdin=COUNTERS + NAMES + 'r(2)\nshow("@C1")\nr(2)\nshow("@C2")\n'
                     'agent.episodes = 999\nload()\nshow("@LOADED")\n')
    assert 'r(100) trains 100 more episodes' in out
    assert marked(out, '@NAMES') == ['agent', 'cfg', 'env', 'farmer', 'load', 'r', 'save', 'test',
                                     'video']  # the prompt's names (run/main.py)
    c0, c1, c2 = marked(out, '@C0'), marked(out, '@C1'), marked(out, '@C2')
    assert c0 == {'global_step': 0, 'episodes': 0, 'updates': 0}  # nothing trains before r
    assert c0['global_step'] < c1['global_step'] < c2['global_step']
    # (asynchronously, the batch that ends an r may bring one more episode than asked for)
    assert c1['episodes'] in (2, 3) and c2['episodes'] - c1['episodes'] in (2, 3)
    # warm-up (20 steps) only in the first r: the second updates once per env step from the start
    # (asynchronously, per env step sent: those of the 2 envs still in flight are owed already)
    assert c1['updates'] < c1['global_step']
    assert abs((c2['updates'] - c1['updates']) - (c2['global_step'] - c1['global_step'])) <= 2
    assert marked(out, '@LOADED') == c2
    assert_no_farm_left(port)

    # A new session resumes the run: counters, then the same CSV goes on.
    port = free_port()
    out = run_script(['-i', script] + CHEAP + tiny(script, port, tmp_path / 'unused')
                     + ['--resume', str(run_dir)], stdin=COUNTERS + 'r(2)\nshow("@C3")\n')
    assert marked(out, '@C0') == c2
    c3 = marked(out, '@C3')
    assert c3['episodes'] - c2['episodes'] in (2, 3) and c3['global_step'] > c2['global_step']
    assert c3['updates'] - c2['updates'] > 0
    rows = read_csv(str(run_dir / 'episodes.csv'))
    assert [int(r['episode']) for r in rows] == list(range(1, c3['episodes'] + 1))
    assert len(list(run_dir.glob('config-*.json'))) == 1
    assert json.loads((run_dir / 'checkpoint.json').read_text())['episodes'] == c3['episodes']
    assert_no_farm_left(port)


def signal_when(tmp_path, args, ready, what, signum=signal.SIGTERM, stdin=None,
                close_stdin=False, act=None):
    """Runs a script (fed ``stdin``) until ``ready(log)``, sends it ``signum`` (or calls
    ``act(process)``), waits for it to end; returns ``(process, everything it printed)``."""
    with open(str(tmp_path / 'out.txt'), 'w+') as log:
        proc = start_script(args, log)
        try:
            if stdin:
                proc.stdin.write(stdin)
                proc.stdin.flush()
                if close_stdin:
                    proc.stdin.close()
            wait_for(proc, lambda: ready(log), what)
            if act is not None:
                act(proc)
            else:
                proc.send_signal(signum)
            proc.wait(TIMEOUT)
        finally:
            if proc.poll() is None:
                proc.kill()
            log.seek(0)
            out = log.read()
    return proc, out


@pytest.mark.slow
def test_ctrl_c_during_r_stops_cleanly_and_r_continues(tmp_path):
    script, port, run_dir = 'train_sac.py', free_port(), tmp_path / 'run'
    csv_path = str(run_dir / 'episodes.csv')
    proc, out = signal_when(
        tmp_path, ['-i', script] + CHEAP + tiny(script, port, run_dir),
        ready=lambda log: os.path.exists(csv_path) and len(read_csv(csv_path)) >= 6,
        what='no episodes ended', signum=signal.SIGINT,
        stdin=COUNTERS + 'r(1000000)\nshow("@C1")\nr(2)\nshow("@C2")\n', close_stdin=True)
    assert proc.returncode == 0, out[-6000:]
    assert 'interrupted:' in out
    c1, c2 = marked(out, '@C1'), marked(out, '@C2')
    assert c1['episodes'] >= 6
    # nothing lost: the checkpoint written after the interruption has exactly these counters,
    # the CSV every episode; the farms' environments are still leased: r(2) goes on.
    rows = read_csv(str(run_dir / 'episodes.csv'))
    assert [int(r['episode']) for r in rows] == list(range(1, c2['episodes'] + 1))
    name = 'ep%07d' % c1['episodes']
    assert json.loads((run_dir / 'checkpoints' / name / (name + '_state.json'))
                      .read_text())['global_step'] == c1['global_step']
    assert c2['episodes'] - c1['episodes'] in (2, 3) and c2['global_step'] > c1['global_step']
    assert_no_farm_left(port)


# --- SIGTERM (what a cluster scheduler sends) ----------------------------------------------------
def start_script(args, log):
    """The script in a subprocess writing to the file ``log`` (a full pipe would stall it)."""
    return subprocess.Popen([sys.executable] + args, cwd=ROOT,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'),
                            stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
                            universal_newlines=True)


def wait_for(proc, ready, what):
    deadline = time.time() + TIMEOUT
    while not ready():
        assert proc.poll() is None and time.time() < deadline, what
        time.sleep(0.2)


@pytest.mark.slow
def test_sigterm_mid_run_checkpoints_every_episode_done_releases_the_farm_and_exits(tmp_path):
    script, port, run_dir = 'train_sac.py', free_port(), tmp_path / 'run'
    csv_path = str(run_dir / 'episodes.csv')
    proc, out = signal_when(
        tmp_path, [script] + CHEAP + tiny(script, port, run_dir)
        + ['--episodes', '1000000', '--checkpoint-every', '3'],
        ready=lambda log: os.path.exists(csv_path) and len(read_csv(csv_path)) >= 7,
        what='no episodes ended')
    assert proc.returncode == 143, out[-6000:]
    assert 'SIGTERM: stopping after the current vector step' in out and 'Traceback' not in out
    rows = read_csv(csv_path)
    pointer = json.loads((run_dir / 'checkpoint.json').read_text())
    # nothing lost: every episode in the CSV is in the final checkpoint
    assert pointer['episodes'] == len(rows) == int(rows[-1]['episode'])
    assert_no_farm_left(port)  # the farmer was closed: its farm stopped, its leases released

    # The newest checkpoint damaged (a weight file cut short) and the pointer garbage: a resume
    # says which file and why in one line each, and goes on from the older intact checkpoint.
    newest = pointer['latest']
    policy = run_dir / 'checkpoints' / newest / (newest + '_policy.h5')
    with open(str(policy), 'r+b') as f:
        f.truncate(policy.stat().st_size // 2)
    (run_dir / 'checkpoint.json').write_text('garbage')
    port = free_port()
    out = run_script([script, '--resume', str(run_dir), '--episodes', '1'] + CHEAP
                     + tiny(script, port, tmp_path / 'unused'))
    damaged = [line for line in out.splitlines() if 'damaged' in line]
    assert len(damaged) == 2, out[-6000:]
    assert 'checkpoint.json is damaged' in damaged[0]
    assert 'damaged checkpoint: %s: ' % policy in damaged[1] and 'truncated' in damaged[1]
    where, what = out.split('\nloaded ', 1)[1].split(': ', 1)
    loaded = int(what.split(' episodes')[0])
    assert os.path.basename(where) != newest and 0 < loaded <= pointer['episodes']
    episodes = [int(r['episode']) for r in read_csv(csv_path)]  # rows past it moved aside
    assert episodes == list(range(1, len(episodes) + 1)) and len(episodes) > loaded
    moved_aside = list(run_dir.glob('episodes.csv.*.bak'))
    assert len(moved_aside) == (1 if loaded < pointer['episodes'] else 0)
    assert_no_farm_left(port)


@pytest.mark.slow
def test_sigterm_at_the_prompt_checkpoints_releases_the_farm_and_exits(tmp_path):
    script, port, run_dir = 'train_sac.py', free_port(), tmp_path / 'run'
    def shown(log):
        log.seek(0)
        return '@C1' in log.read()
    # stdin stays open: the prompt waits for more
    proc, out = signal_when(tmp_path, ['-i', script] + CHEAP + tiny(script, port, run_dir),
                             ready=shown, what='r(2) did not end',
                             stdin=COUNTERS + 'r(2)\nshow("@C1")\n')
    assert proc.returncode == 143, out[-6000:]
    assert 'SIGTERM: checkpoint, release the farms, exit' in out
    assert json.loads((run_dir / 'checkpoint.json').read_text())['episodes'] == 2
    assert_no_farm_left(port)


@dataclass
class Knobs:
    env_kwargs: dict = field(default_factory=dict)
    """kwargs"""
    sim: str = 'default'
    """preset"""
    frame_skip: int = 1
    """skip"""


def test_frame_skip_and_sim_go_to_the_environments_unless_env_kwargs_name_them():
    assert runconfig.apply_sim(Knobs()).env_kwargs == {}
    assert runconfig.apply_sim(Knobs({}, 'fast', 2)).env_kwargs == {'sim': 'fast',
                                                                     'frame_skip': 2}
    assert runconfig.apply_sim(Knobs({'frame_skip': 4}, 'default', 2)).env_kwargs == {
        'frame_skip': 4}


# --- user errors: one line, non-zero exit, nothing left running ----------------------------------
@pytest.mark.parametrize('script', SCRIPTS)
@pytest.mark.parametrize('flags, message', [
    (['--reward-scale', '0'], 'argument --reward-scale: 0.0 is not allowed: a finite number '
                              'above 0'),
    (['--reward-scale', 'inf'], 'argument --reward-scale: inf is not allowed'),
    (['--reward-offset', 'nan'], 'argument --reward-offset: nan is not allowed: a finite number'),
    (['--frame-skip', '0'], 'argument --frame-skip: 0 is not allowed: at least 1'),
    (['--normalize-obs', 'yes', '--frame-skip', 'two'],
     "argument --frame-skip/--frame_skip: invalid int value: 'two'"),
])
def test_a_bad_knob_is_one_line(script, flags, message):
    proc = subprocess.run([sys.executable, script] + flags, cwd=ROOT, timeout=TIMEOUT,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        proc.stderr.strip().splitlines()[0]] and message in proc.stderr, proc.stderr


def run_failing(args):
    proc = subprocess.run([sys.executable] + args, cwd=ROOT, timeout=TIMEOUT,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3'),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    assert proc.returncode != 0, proc.stdout + proc.stderr
    return proc.stderr.strip().splitlines()[-1], proc.stdout + proc.stderr


@pytest.mark.parametrize('flags, message', [
    (['--run-dir', '{file}/run'], '--run-dir {file}/run: {file} is a file, not a folder'),
    (['--resume', '{tmp}/nothing'], '--resume {tmp}/nothing: no such file or directory'),
    (['--farms', '127.0.0.1:four'], "--farms, entry 1 ('127.0.0.1', 'four'): the capacity"),
])
def test_a_user_error_found_before_start_up_is_one_line_and_starts_nothing(flags, message,
                                                                            tmp_path):
    (tmp_path / 'file').write_text('x')
    port = free_port()
    fill = dict(file=tmp_path / 'file', tmp=tmp_path)
    args = ['train_sac.py'] + CHEAP + tiny('train_sac.py', port, tmp_path / 'run')
    line, everything = run_failing(args + [f.format(**fill) for f in flags])
    assert line.startswith('train_sac.py: ' + message.format(**fill)), everything[-3000:]
    assert 'Traceback' not in everything and 'starting a local one' not in everything
    assert not (tmp_path / 'run').exists()
    # --verbose: the same error with its traceback
    line, everything = run_failing(args + [f.format(**fill) for f in flags] + ['--verbose'])
    assert 'Traceback' in everything and message.format(**fill) in line


@pytest.mark.parametrize('env, message', [
    ('CartPole-v1', 'SAC needs a continuous (Box) action space; --env CartPole-v1 has Discrete'),
    ('NoSuchEnv-v0', "unknown environment 'NoSuchEnv-v0'"),
])
@pytest.mark.slow
def test_an_env_the_agent_cannot_use_is_one_line_and_its_farm_released_at_once(env, message,
                                                                                tmp_path):
    port = free_port()
    line, everything = run_failing(['train_sac.py', '--env', env] + tiny(
        'train_sac.py', port, tmp_path / 'run'))
    assert line.startswith('train_sac.py: ') and message in line, everything[-3000:]
    assert 'Traceback' not in everything
    assert_no_farm_left(port)


@pytest.mark.slow
def test_give_up_after_ends_the_run_with_a_checkpoint_and_one_line(tmp_path, process_farm):
    script, run_dir = 'train_sac.py', tmp_path / 'run'
    farm = process_farm(capacity=2)
    csv_path = str(run_dir / 'episodes.csv')
    proc, out = signal_when(
        tmp_path, [script] + CHEAP + tiny(script, farm.port, run_dir)
        + ['--episodes', '1000000', '--give-up-after', '3'],
        ready=lambda log: os.path.exists(csv_path) and len(read_csv(csv_path)) >= 4,
        what='no episodes ended',  # then kill the only farm, and its workers
        act=lambda proc: os.killpg(farm.process.pid, signal.SIGKILL))
    assert proc.returncode == 1, out[-6000:]
    assert 'Traceback' not in out
    said = [line for line in out.splitlines() if line.startswith('train_sac.py: ')]
    assert len(said) == 1, out[-6000:]
    rows = read_csv(csv_path)
    assert json.loads((run_dir / 'checkpoint.json').read_text())['episodes'] == len(rows)
