"""run/config.py: configuring and starting a run, before there is a run to save: what
train_sac.py and train_ddpg.py do first, so each script can stay one short story.

- :class:`RunConfig`: the fields both scripts share (environments and farms, what the agent
  learns from, the run); each script's ``Config`` extends it with its algorithm's hyperparameters.
- :func:`parse_config`: command-line flags generated from a config dataclass; each field's
  docstring (the string literal under it, read by :func:`field_docs`, in the base class's own file
  for an inherited field) is its ``--help`` text; a value out of range (:data:`LIMITS`:
  ``--n-envs 0``, ``--episodes -1``) is refused in one line (exit code 2) before anything starts.
- :func:`prepare`: the checks that need no farm (run directory writable, ``--resume`` loadable,
  the farm list readable), one-line user errors (``--verbose``: tracebacks and debug logs, see
  :func:`setup_logging`), and until a Session takes over, SIGTERM exits (:data:`TERM_EXIT`)
  through the ``finally`` blocks. Returns the run directory (:func:`prepare_run_dir`).
- :func:`make_farmer`, :func:`closing_on_error`, :func:`require_box`: the farms, released at once
  when the start-up fails after they were reserved.
- :func:`interactive`: whether the script runs at a prompt (``python -i``, IPython, Jupyter),
  where it builds everything and waits for ``r(n)`` instead of training and exiting.

What happens once the run exists (its directory, ``r``, ``test``, ``save``, ``load``, signals
during training) is run/session.py's; run/main.py puts the two together for the scripts.
Python 3.6 compatible; imports no TensorFlow, and the farmer only inside the functions that need
it (``--help`` stays instant).
"""
import argparse
import ast
import contextlib
import dataclasses  # novermin (3.6: the dataclasses backport, environment-py36.yml)
import inspect
import json
import logging
import os
import signal
import sys
import threading
import time

from run import checkpoints
from common import errors
from common import logformat

TERM_EXIT = 128 + signal.SIGTERM   # the shell's code for "ended by SIGTERM"


# --- configuration -------------------------------------------------------------------------------
@dataclasses.dataclass
class RunConfig:
    """environments, farms and the run (the same for every algorithm)"""
    # --- environments
    env: str = 'L2M2019Env'
    """environment: an osim-rl env (L2M2019Env, Arm2DEnv), a gym id (Pendulum-v1) or CheapEnv"""
    env_kwargs: dict = dataclasses.field(default_factory=dict)
    """the environment's keyword arguments, as JSON, e.g. '{"difficulty": 2}'"""
    curriculum: str = ''
    """a JSON file of stages [{"episodes": N, "params": {...}}, ...] that change the environments'
    parameters during training (run/curriculum.py); empty: none"""
    sim: str = 'default'
    """osim-rl simulator preset: exact (integrator accuracy 1e-5), default (osim-rl's 5e-5), fast
    (1e-3); an integrator_accuracy in --env-kwargs wins"""
    frame_skip: int = 1
    """simulator steps per agent step (the action repeated, the rewards summed); a frame_skip in
    --env-kwargs wins"""
    n_envs: int = os.cpu_count() or 1
    """environments stepped in parallel on the farms"""
    stepping: str = 'async'
    """async: the learner acts for whichever environments are ready and learns while the others
    simulate (no core waits for the slowest); lockstep: all environments step together"""
    farms: str = ''
    """farms as host:capacity[:port],... , or rendezvous:DIR (those announced there by farm.py
    --rendezvous DIR); empty: those of farmlist.py"""
    eval_envs: int = 1
    """environments of test()'s own, on the farms (0: test on the training ones, ending episodes)"""
    eval_every: int = 0
    """episodes between evaluations during r, on the evaluation environments (0: only test())"""
    eval_episodes: int = 5
    """episodes per evaluation during r"""
    give_up_after: float = 0.0
    """seconds with no farm answering before training ends with a checkpoint (0: wait for ever)"""
    # --- what the agent learns from (agents/base.py: any agent, whatever its algorithm)
    normalize_obs: bool = True
    """normalize observations with running statistics for the networks (agents/normalize.py; the
    statistics are saved with the weights); --normalize-obs no feeds them raw"""
    reward_scale: float = 1.0
    """the updates learn from reward_scale * (r + reward_offset); returns, episodes.csv and
    evaluations stay the environment's own rewards"""
    reward_offset: float = 0.0
    """see --reward-scale; Arm2DEnv (reward 1 - d^2 per simulator step): --reward-offset
    -FRAME_SKIP --reward-scale 10 learns from -10 d^2"""
    reward_root: bool = False
    """the updates learn from -reward_scale * sqrt(max(0, -(r + reward_offset))): a squared
    penalty made linear (Arm2DEnv: --reward-offset -FRAME_SKIP --reward-root yes learns from
    about the hand's distance to the target; agents/base.py)"""
    # --- the run
    episodes: int = 100
    """episodes to train when run as a script (interactively nothing trains until r(n))"""
    run_dir: str = ''
    """where the run is written; empty: runs/<algo>-<env>-<timestamp>"""
    resume: str = ''
    """a run directory or checkpoint to continue (weights, optimizer and RNG states, replay memory,
    counters; that run's CSV goes on)"""
    checkpoint_every: int = 50
    """episodes between checkpoints (one is also written at the end of each r and on exit)"""
    keep_checkpoints: int = 5
    """checkpoints kept in the run directory (the newest)"""
    save_memory: bool = True
    """checkpoints hold the replay memory, so a resumed run goes on exactly (1M L2M transitions:
    about 1.3 GB, kept in the newest checkpoint only); --save-memory no leaves it out"""
    log_every: float = 30.0
    """seconds between progress lines when stdout is not a terminal"""
    verbose: bool = False
    """debug logs, and a traceback with every error (otherwise a user error is one line)"""


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


def config_docs(cls, path):
    """:func:`field_docs` of ``cls`` (written in ``path``) and of the dataclasses it extends (each
    read in its own file: RunConfig's here); a field a subclass declares again keeps its text."""
    docs = {}
    for base in reversed(cls.__mro__[1:]):
        if dataclasses.is_dataclass(base):
            docs.update(field_docs(base, inspect.getsourcefile(base)))
    docs.update(field_docs(cls, path))
    return docs


def _declared_by(cls):
    """``{field: the class in cls's bases, or cls, that declares it first}``."""
    owners = {}
    for base in reversed(cls.__mro__):
        if dataclasses.is_dataclass(base):
            for f in dataclasses.fields(base):
                owners.setdefault(f.name, base)
    return owners


def _named(name, convert):
    convert.__name__ = name  # argparse says "invalid <name> value: 'x'"
    return convert


def _json_object(text):
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError('not a JSON object')
    return value


def _flag_type(default):
    """How a flag's text becomes the field's value, judged by the default's type."""
    if isinstance(default, bool):
        return _named('yes/no', lambda text: text.lower() in ('1', 'true', 'yes', 'on'))
    if isinstance(default, tuple):
        return _named('comma-separated int', lambda text: tuple(
            int(x) for x in text.replace(' ', '').split(',') if x))
    if isinstance(default, dict):
        return _named('JSON object', _json_object)
    return type(default)


# The values the scripts' fields may take, checked before anything starts: (test, what is allowed).
LIMITS = {
    'n_envs': (lambda v: v >= 1, 'at least 1'),
    'episodes': (lambda v: v >= 1, 'at least 1'),
    'checkpoint_every': (lambda v: v >= 1, 'at least 1'),
    'keep_checkpoints': (lambda v: v >= 1, 'at least 1'),
    'batch_size': (lambda v: v >= 1, 'at least 1'),
    'memory_limit': (lambda v: v >= 1, 'at least 1'),
    'warmup': (lambda v: v >= 0, '0 or more'),
    'random_steps': (lambda v: v >= 0, '0 or more'),
    'updates_per_step': (lambda v: v >= 0, '0 or more'),
    'log_every': (lambda v: v >= 0, '0 or more'),
    'give_up_after': (lambda v: v >= 0, '0 (never) or more seconds'),
    'hidden': (lambda v: len(v) >= 1 and min(v) >= 1, 'one or more sizes of at least 1'),
    'lr': (lambda v: v > 0, 'above 0'),
    'actor_lr': (lambda v: v > 0, 'above 0'),
    'critic_lr': (lambda v: v > 0, 'above 0'),
    'initial_alpha': (lambda v: v > 0, 'above 0'),
    'gamma': (lambda v: 0 <= v <= 1, 'between 0 and 1'),
    'tau': (lambda v: v > 0, 'above 0'),
    'sigma': (lambda v: v >= 0, '0 or more'),
    'noise': (lambda v: v in ('gaussian', 'ou'), 'gaussian or ou'),
    'sim': (lambda v: v in ('exact', 'default', 'fast'), 'exact, default or fast'),
    'frame_skip': (lambda v: v >= 1, 'at least 1'),
    'reward_scale': (lambda v: 0 < v < float('inf'), 'a finite number above 0'),
    'reward_offset': (lambda v: abs(v) < float('inf'), 'a finite number'),
    'stepping': (lambda v: v in ('async', 'lockstep'), 'async or lockstep'),
    'eval_envs': (lambda v: v >= 0, '0 or more'),
    'eval_every': (lambda v: v >= 0, '0 or more'),
    'eval_episodes': (lambda v: v >= 1, 'at least 1'),
}


class Parser(argparse.ArgumentParser):
    def error(self, message):
        """One line, no usage block: ``train_sac.py: argument --n-envs: ... (see --help)``."""
        self.exit(2, '%s: %s (see --help)\n' % (self.prog, message))


def parse_config(cls, path, argv=None, description=None, algo=None):
    """An instance of the dataclass ``cls`` from command-line flags (``--n-envs`` or
    ``--n_envs``); every field must carry a docstring, which becomes its help (``<algo>`` in it
    reads ``algo``). A value outside :data:`LIMITS` ends the program with one line (exit code 2).
    A ``cls`` that extends another config (RunConfig) lists each class's flags under its own
    heading, its docstring's first line, the inherited ones first."""
    docs = config_docs(cls, path)
    parser = Parser(prog=os.path.basename(path), description=description)
    owners, groups = _declared_by(cls), {}
    for f in dataclasses.fields(cls):
        owner = owners[f.name]
        if owner not in groups:
            groups[owner] = (parser if len(set(owners.values())) == 1 else
                             parser.add_argument_group(owner.__doc__.strip().split('\n')[0]))
        if f.name not in docs:
            raise TypeError('%s.%s has no docstring (it is the --help text)' % (cls.__name__,
                                                                                f.name))
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        flags = ['--' + f.name.replace('_', '-')] + (['--' + f.name] if '_' in f.name else [])
        text = docs[f.name].replace('<algo>', algo) if algo else docs[f.name]
        options = dict(dest=f.name, type=_flag_type(default), default=default,
                       metavar=type(default).__name__.upper(),
                       help='%s (default: %s)' % (text, _show(default)))
        if isinstance(default, bool):
            options.update(nargs='?', const=True)  # --verbose alone means yes
        groups[owner].add_argument(*flags, **options)
    values = vars(parser.parse_args(argv))
    for name, value in sorted(values.items()):
        allowed, text = LIMITS.get(name, (lambda v: True, ''))
        if not allowed(value):
            parser.error('argument --%s: %s is not allowed: %s' % (
                name.replace('_', '-'), _show(value), text))
    return cls(**values)


def _show(value):
    if isinstance(value, tuple):
        return ','.join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value)
    return repr(value) if value == '' else str(value)


def interactive():
    """True under ``python -i``, ``ipython -i``, IPython's ``%run`` and Jupyter; False for
    ``python script.py`` and ``ipython script.py``."""
    if sys.flags.interactive:
        return True
    shell = _ipython()
    if shell is None:
        return False
    # TerminalIPythonApp.interact is False when a file is run without -i; kernels have no such app
    return bool(getattr(getattr(shell, 'parent', None), 'interact', True))


def _ipython():
    ipython = sys.modules.get('IPython')
    return ipython.get_ipython() if ipython is not None else None


def setup_logging(verbose=False):
    """The learner's logging, in the farm's line format (common/logformat.py): INFO, or with ``verbose``
    DEBUG, which also lets TensorFlow's native start-up lines through (agents/compat.py reads
    the root level) and is handed to a local farm (logformat.LEVEL_ENV)."""
    logformat.setup(logging.DEBUG if verbose else logging.INFO)
    if verbose:  # the local farm this learner may start logs at DEBUG too
        os.environ[logformat.LEVEL_ENV] = 'DEBUG'
    # Libraries that log their internals at INFO/DEBUG (Pyro4: every connection; matplotlib: font
    # lookups): their warnings still show, their chatter only with --verbose.
    for noisy in ('tensorflow', 'absl', 'h5py', 'matplotlib', 'Pyro4', 'PIL'):
        logging.getLogger(noisy).setLevel(logging.INFO if verbose else logging.WARNING)


# --- before anything starts ----------------------------------------------------------------------
def prepare(cfg, algo):
    """Everything that can be checked before TensorFlow and the farms start; returns the run
    directory. From here on a user error (errors.UserError) is one line on stderr and a
    non-zero exit (a traceback too with ``--verbose``), at the prompt as well; SIGTERM exits
    (143) through the ``finally`` blocks, so a :func:`closing_on_error` farmer is released."""
    errors.install_excepthook(cfg.verbose)
    shell = _ipython()
    if shell is not None and not cfg.verbose:  # IPython shows errors itself, not by excepthook
        program = os.path.basename(sys.argv[0] or 'python')

        def one_line(shell, kind, error, tb, tb_offset=None):
            sys.stderr.write('%s: %s\n' % (program, error))
        shell.set_custom_exc((errors.UserError,), one_line)
    setup_logging(cfg.verbose)
    apply_sim(cfg)
    if getattr(cfg, 'curriculum', ''):  # a bad schedule is one line now, not after start-up
        from run.curriculum import Curriculum
        Curriculum.load(cfg.curriculum)
    if cfg.resume:
        try:
            checkpoints.find(cfg.resume)
        except errors.UserError as e:
            raise errors.UserError('--resume %s' % e)
    run_dir = prepare_run_dir(cfg, algo)
    flag = '--resume' if cfg.resume and checkpoints.run_dir_of(cfg.resume) else '--run-dir'
    _check_writable(run_dir, flag)
    from host.farmlist_reader import check_farms_flag
    check_farms_flag(cfg.farms)  # errors.FarmListError naming the entry, before any farm starts
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    return run_dir


def _exit_on_sigterm(signum, frame):
    raise SystemExit(TERM_EXIT)  # Session replaces this once there is a run to checkpoint


def _check_writable(path, flag):
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        raise errors.UserError('%s %s: %s is a file, not a folder; give a folder' % (
            flag, path, probe))
    if not os.access(probe, os.W_OK | os.X_OK):
        raise errors.UserError('%s %s: cannot write in %s; give a folder you can write to' % (
            flag, path, probe))


def make_farmer(farms, give_up_after=0):
    """``Farmer()`` (farmlist.py) when ``farms`` is empty, else the farms of
    ``host:capacity[:port],...``. Either way a local farm is started when only this machine is
    listed and none answers; ``Farmer.close`` stops it. ``give_up_after`` seconds with no farm
    answering end training with errors.FarmsLostError (0: never)."""
    from host.allocation import Farmer
    kwargs = {'give_up_after': give_up_after} if give_up_after else {}
    if not farms:
        return Farmer(**kwargs)
    from host.farmlist_reader import farms_of_flag
    return Farmer(farms=farms_of_flag(farms), **kwargs)


@contextlib.contextmanager
def closing_on_error(farmer):
    """Release the farms at once (not after the lease TTL) when the block fails: an env the
    agent cannot use, a SIGTERM or a Ctrl-C during start-up."""
    try:
        yield farmer
    except BaseException:
        farmer.close()
        raise


def require_box(space, algo, env_name):
    """errors.UserError unless ``space`` is a one-dimensional Box (continuous actions)."""
    if not (hasattr(space, 'low') and hasattr(space, 'high')
            and len(getattr(space, 'shape', None) or ()) == 1):
        raise errors.UserError(
            '%s needs a continuous (Box) action space; --env %s has %s: choose an environment '
            'with continuous actions (L2M2019Env, Arm2DEnv, Pendulum-v1)' % (algo, env_name, space))


def apply_sim(cfg):
    """``--sim`` goes to the environments as their ``sim`` kwarg (the farm expands it, see
    envs.SIM_PRESETS), unless ``--env-kwargs`` names one; 'default' adds nothing, so environments
    that are not osim-rl's never see it. ``--frame-skip`` likewise as ``frame_skip`` (envs.make
    repeats the action for any environment), unless ``--env-kwargs`` names one; 1 adds nothing."""
    sim = getattr(cfg, 'sim', 'default')
    if sim != 'default' and 'sim' not in cfg.env_kwargs:
        cfg.env_kwargs = dict(cfg.env_kwargs, sim=sim)
    frame_skip = getattr(cfg, 'frame_skip', 1)
    if frame_skip != 1 and 'frame_skip' not in cfg.env_kwargs:
        cfg.env_kwargs = dict(cfg.env_kwargs, frame_skip=frame_skip)
    return cfg


def prepare_run_dir(cfg, algo):
    """The run directory of ``cfg`` without the other checks of :func:`prepare`."""
    if cfg.resume and checkpoints.run_dir_of(cfg.resume):
        return checkpoints.run_dir_of(cfg.resume)
    return cfg.run_dir or os.path.join('runs', '%s-%s-%s' % (
        algo, cfg.env.replace('/', '_'), time.strftime('%Y%m%d-%H%M%S')))
