#!/usr/bin/env bash
# Installs everything the project needs, idempotently:
#   .venv/    Python 3.11 with requirements.txt (farm and learner together)
#   .venv27/  Python 2.7 farm dependencies, when a 2.7 interpreter exists (for the cross-version test)
#   .venv36/  Python 3.6 learning host (TF 2.6, keras-rl2), when a 3.6 interpreter exists
# Usage: ./setup.sh [--bench]   (--bench adds requirements-bench.txt: torch CPU + stable-baselines3)
set -euo pipefail
cd "$(dirname "$0")"

find_python() {  # the first interpreter of version $1 found
  local v=$1 c
  for c in "python$v" "$HOME/.pyenv/versions/$v"*/bin/python "/usr/bin/python$v" "/usr/local/bin/python$v"; do
    if command -v "$c" >/dev/null 2>&1 && "$c" -c "import sys; assert sys.version.startswith('$v')" 2>/dev/null; then
      echo "$c"; return 0
    fi
  done
  return 1
}

PY311=$(find_python 3.11) || { echo "setup.sh: Python 3.11 is required (opensim 4.6 wheels are cp311-cp313)" >&2; exit 1; }
if [ ! -x .venv/bin/python ]; then
  "$PY311" -m venv .venv
fi
stamp=.venv/.installed-$(cat requirements.txt constraints.txt | sha1sum | cut -c1-12)
if [ ! -f "$stamp" ]; then
  # (grep: some machines' pip configuration names local mirrors that do not exist: noise)
  .venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v 'is ignored' || true
  .venv/bin/python -m pip install -q -r requirements.txt -c constraints.txt 2>&1 \
    | grep -v 'is ignored' || true
  .venv/bin/python -c "import opensim, osim, tensorflow, rl, Pyro4, msgpack, gymnasium" \
    || { echo "setup.sh: the install is incomplete (see above)" >&2; exit 1; }
  touch "$stamp"
fi
if [ "${1:-}" = "--bench" ]; then
  .venv/bin/python -m pip install -q -r requirements-bench.txt 2>&1 | grep -v 'is ignored' || true
fi

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
    .venv36/bin/python -m pip install -q --disable-pip-version-check 'pip==21.3.1' 2>&1 \
      | grep -v 'is ignored' || true
    .venv36/bin/python -m pip install -q -r requirements-py36.txt 2>&1 | grep -v 'is ignored' || true
    .venv36/bin/python -c "import tensorflow, rl, Pyro4" 2>/dev/null && touch "$stamp36" \
      || echo "setup.sh: the Python 3.6 host environment (.venv36) is incomplete; its test will skip" >&2
  fi
fi
echo "setup.sh: ready (.venv: $(.venv/bin/python --version 2>&1))"
