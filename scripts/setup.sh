#!/usr/bin/env bash
# Idempotent set-up: a local virtual environment in .venv with the pinned requirements and this
# package (editable). Re-installs only when requirements.txt or pyproject.toml change.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

if ! "$PY" -c 'import venv, ensurepip' >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing python3-venv (Debian package)"
    apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
  else
    echo "setup: Python's venv module is missing; install it (Debian: sudo apt-get install python3-venv)" >&2
    exit 1
  fi
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=".venv/.installed-$(cat requirements.txt pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "setup: installing Python packages into .venv (first run takes a few minutes)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r requirements.txt
  .venv/bin/python -m pip install -q --no-deps --no-build-isolation -e .
  rm -f .venv/.installed-*
  touch "$stamp"
fi

