#!/usr/bin/env bash
# Installs what the job at hand needs, idempotently (a second run installs nothing):
#   ./setup.sh           .venv/: Python 3.11 with requirements.txt: farm and learner, the main job
#   ./setup.sh --test    also requirements-test.txt (pytest, vermin, and the optional peers the
#                        adapter tests train: torch CPU + stable-baselines3; cma) and the cross-version
#                        environments the tests use where those interpreters exist:
#                          .venv27/  Python 2.7 farm dependencies (a 2.7 farm serving a 3.11 learner)
#                          .venv36/  Python 3.6 learning host (TF 2.6, keras-rl2)
#                        and, as root with apt-get, Debian's SLURM, munge and openssh-server
#                        (tests/test_slurm.py, tests/test_ssh_launch.py)
#   ./setup.sh --bench   also requirements-bench.txt (torch CPU + stable-baselines3, cma: bench/*.py)
# The flags combine. .ci/run calls ./setup.sh --test, then the README's test command.
set -euo pipefail
cd "$(dirname "$0")"

TEST=0 BENCH=0
for arg in "$@"; do
  case "$arg" in
    --test) TEST=1 ;;
    --bench) BENCH=1 ;;
    *) echo "setup.sh: unknown option $arg; use --test (tests), --bench (benchmarks) or nothing" >&2
       exit 2 ;;
  esac
done

find_python() {  # the first interpreter of version $1 found
  local v=$1 c
  for c in "python$v" "$HOME/.pyenv/versions/$v"*/bin/python "/usr/bin/python$v" "/usr/local/bin/python$v"; do
    if command -v "$c" >/dev/null 2>&1 && "$c" -c "import sys; assert sys.version.startswith('$v')" 2>/dev/null; then
      echo "$c"; return 0
    fi
  done
  return 1
}

# pip quietly, without the lines some machines' pip configuration adds about local mirrors that do
# not exist (noise, not errors: a failed install still fails the import check after it)
pip_install() {  # pip_install PYTHON ARGS...
  local python=$1; shift
  "$python" -m pip install -q --disable-pip-version-check "$@" 2>&1 | grep -v 'is ignored' || true
}

# installs requirement file $1 (checked by importing $2) into .venv once per content of $1, of the
# files it includes (-r) and of constraints.txt: a stamp file remembers it
install_once() {
  local file=$1 check=$2 stamp
  stamp=.venv/.installed-$(basename "$file" .txt)-$(cat "$file" $(sed -n 's/^-r *//p' "$file") \
    constraints.txt | sha1sum | cut -c1-12)
  [ -f "$stamp" ] && return 0
  pip_install .venv/bin/python -r "$file" -c constraints.txt
  # (the imports' own start-up chatter, gym's banner and TensorFlow's, only when they fail)
  local said
  said=$(.venv/bin/python -c "$check" 2>&1) \
    || { echo "$said" >&2; echo "setup.sh: installing $file is incomplete (see above)" >&2; exit 1; }
  touch "$stamp"
}

PY311=$(find_python 3.11) || { echo "setup.sh: Python 3.11 is required (opensim 4.6 wheels are cp311-cp313)" >&2; exit 1; }
if [ ! -x .venv/bin/python ]; then
  "$PY311" -m venv .venv
  pip_install .venv/bin/python --upgrade pip
fi
install_once requirements.txt "import opensim, osim, tensorflow, rl, Pyro4, msgpack, gymnasium, imageio_ffmpeg"
# The project itself, editable: every package and entry module of this checkout importable from
# anywhere (bench/, tests/, ipython), with no sys.path edits in the code. osim-rl installs a
# top-level package also named `envs` (empty, but first on sys.path as site-packages is), so a
# second .pth moves the checkout just ahead of site-packages: ours is found first and extends its
# __path__ to osim-rl's (envs/__init__.py), so both resolve.
if [ "$(cat .venv/.installed-project 2>/dev/null)" != "$PWD" ]; then
  pip_install .venv/bin/python --no-deps -e .
  .venv/bin/python - "$PWD" <<'PY'
import os, sys, sysconfig
# (one line, run by site.py in a function's scope: no comprehension may name p; and the folder
# is processed twice here, through lib and lib64, so the line must be idempotent)
line = ("import sys; p = %r; list(map(sys.path.remove, [p] * sys.path.count(p))); "
        "s = list(map(lambda e: e.endswith('site-packages'), sys.path)); "
        "sys.path.insert(s.index(True) if True in s else len(sys.path), p)\n")
with open(os.path.join(sysconfig.get_paths()['purelib'], 'osim_farm_first.pth'), 'w') as f:
    f.write(line % sys.argv[1])
PY
  (cd / && "$OLDPWD/.venv/bin/python" -c "import envs, farmside.core, run.session; envs.make") \
    || { echo "setup.sh: the project did not install into .venv (see above)" >&2; exit 1; }
  echo "$PWD" > .venv/.installed-project
fi
if [ "$TEST" = 1 ]; then
  install_once requirements-test.txt "import pytest, vermin, torch, stable_baselines3, cma"
fi
if [ "$BENCH" = 1 ]; then
  install_once requirements-bench.txt "import torch, stable_baselines3, cma"
fi

if [ "$TEST" = 1 ]; then
  # Python 2.7 farm (optional): only what farm.py needs for the numpy environments.
  if PY27=$(find_python 2.7); then
    if ! PYTHONPATH=.venv27 "$PY27" -c "import Pyro4, msgpack, numpy" 2>/dev/null; then
      "$PY27" -m pip install -q --disable-pip-version-check --target .venv27 \
        Pyro4==4.82 msgpack==0.6.2 numpy==1.16.6 selectors34==1.2 serpent==1.28 2>&1 \
        | grep -v -i -e 'deprecat' -e 'is ignored' || true
    fi
  fi
  # Python 3.6 learning host (optional): for the 3.6 host smoke test.
  if PY36=$(find_python 3.6); then
    stamp36=.venv36/.installed-$(sha1sum < requirements-py36.txt | cut -c1-12)
    if [ ! -f "$stamp36" ]; then
      [ -x .venv36/bin/python ] || "$PY36" -m venv .venv36
      pip_install .venv36/bin/python 'pip==21.3.1'
      pip_install .venv36/bin/python -r requirements-py36.txt
      .venv36/bin/python -c "import tensorflow, rl, Pyro4" 2>/dev/null && touch "$stamp36" \
        || echo "setup.sh: the Python 3.6 host environment (.venv36) is incomplete; its test will skip" >&2
    fi
  fi
  # SLURM and sshd for the cluster tests (tests/test_slurm.py, tests/test_ssh_launch.py): Debian's
  # packages, where this runs as root with apt-get (CI here); elsewhere those tests skip saying why.
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    missing=""
    for pair in slurmctld:slurmctld slurmd:slurmd sbatch:slurm-client munged:munge \
                sshd:openssh-server ssh:openssh-client ip:iproute2; do
      PATH="$PATH:/usr/sbin:/sbin" command -v "${pair%%:*}" >/dev/null 2>&1 || missing="$missing ${pair#*:}"
    done
    if [ -n "$missing" ]; then
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
          --no-install-recommends $missing; } >/dev/null 2>&1 \
        || echo "setup.sh: could not install$missing with apt-get; the SLURM/ssh tests will skip" >&2
    fi
  fi
fi
extras=""
[ "$TEST" = 1 ] && extras="$extras, test extras and cross-version environments"
[ "$BENCH" = 1 ] && extras="$extras, benchmark extras"
echo "setup.sh: ready (.venv: $(.venv/bin/python --version 2>&1)$extras)"
