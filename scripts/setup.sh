#!/usr/bin/env bash
# Idempotent set-up of the local virtual environment .venv:
#   bash scripts/setup.sh         what the dashboard needs: the pinned requirements.txt
#   bash scripts/setup.sh --dev   plus the test and notebook tools: the pinned requirements-dev.txt
# then this package (editable) with the dependencies pyproject.toml declares, which the pinned files
# must already satisfy. Re-installs only when those files change. The Python is the one stated by
# requires-python in pyproject.toml; PYTHON=/path/to/python chooses the interpreter for a new .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

case "${1:-}" in
  "") profile=app; requirements=requirements.txt; files="requirements.txt pyproject.toml"; target=. ;;
  --dev) profile=dev; requirements=requirements-dev.txt
         files="requirements.txt requirements-dev.txt pyproject.toml"; target=".[test]" ;;
  *) echo "usage: bash scripts/setup.sh [--dev]" >&2; exit 2 ;;
esac

# check_python INTERPRETER WHAT: refuse, in one sentence, an interpreter outside requires-python.
check_python() {
  "$1" - pyproject.toml "$2" <<'PYEOF'
import io
import re
import sys

text = io.open(sys.argv[1], encoding="utf-8").read()  # io: a clear refusal from Python 2 as well
found = re.search(r'^requires-python\s*=\s*"([^"]*)"', text, re.M)
if not found:
    sys.exit("setup: pyproject.toml states no requires-python")
spec, have = found.group(1), sys.version_info[:3]


def satisfies(clause):
    m = re.match(r"(>=|<=|==|!=|~=|>|<)\s*(\d+(?:\.\d+)*)(\.\*)?\Z", clause.strip())
    if not m:
        sys.exit("setup: cannot read the requires-python clause %r in pyproject.toml" % clause)
    op, version, star = m.groups()
    want = tuple(int(x) for x in version.split("."))
    n = max(3, len(want))
    h, w = have + (0,) * (n - len(have)), want + (0,) * (n - len(want))
    if star:  # ==3.11.* / !=3.11.*
        return (have[: len(want)] == want) == (op == "==")
    if op == "~=":
        return h >= w and have[: len(want) - 1] == want[:-1]
    return {">=": h >= w, "<=": h <= w, ">": h > w, "<": h < w, "==": h == w, "!=": h != w}[op]


if not all(satisfies(c) for c in spec.split(",")):
    where = "" if sys.argv[2] == sys.executable else " (%s)" % sys.executable
    sys.exit("setup: radtriage needs Python %s (requires-python in pyproject.toml), but %s%s is Python %s."
             % (spec, sys.argv[2], where, ".".join(map(str, have))))
PYEOF
}

if [ ! -x .venv/bin/python ]; then
  command -v "$PY" >/dev/null || { echo "setup: no '$PY' on PATH; set PYTHON=/path/to/python3" >&2; exit 1; }
  check_python "$PY" "$PY" || { echo "setup: install a Python in that range and run again with PYTHON=/path/to/it" >&2; exit 1; }
  if ! "$PY" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "setup: installing python3-venv (Debian package)"
      apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
    else
      echo "setup: Python's venv module is missing; install it (Debian: sudo apt-get install python3-venv)" >&2
      exit 1
    fi
  fi
  echo "setup: creating .venv with $("$PY" -c 'import sys; print("Python", sys.version.split()[0], "at", sys.executable)')"
  "$PY" -m venv .venv
else
  check_python .venv/bin/python "the Python of .venv" \
    || { echo "setup: remove .venv and run again (PYTHON=/path/to/python chooses the interpreter)" >&2; exit 1; }
fi

# One stamp per profile over the files that decide its contents; --dev installs a superset of the app's.
hash_of() { cat "$@" | sha256sum | cut -c1-16; }
stamp=".venv/.setup-$profile-$(hash_of $files)"
[ -f "$stamp" ] && exit 0

echo "setup: installing into .venv from $requirements (a first run downloads about 600 MB and takes a few minutes)"
rm -f .venv/.installed-* .venv/.setup-*  # any stamp is void once pip touches .venv, until this run succeeds
pip=(.venv/bin/python -m pip)
echo "setup: [1/4] upgrading pip"
"${pip[@]}" install --upgrade pip
echo "setup: [2/4] installing the pinned $requirements"
"${pip[@]}" install -r "$requirements"
echo "setup: [3/4] installing radtriage (editable, $target) with its declared dependencies (must add nothing)"
before=$("${pip[@]}" freeze --exclude-editable)
"${pip[@]}" install -e "$target"
after=$("${pip[@]}" freeze --exclude-editable)
if [ "$before" != "$after" ]; then
  echo "setup: pyproject.toml's dependencies made pip change packages beyond $requirements; pin these there" \
       "(or fix the ranges in pyproject.toml):" >&2
  diff <(echo "$before") <(echo "$after") | grep '^[<>]' >&2 || true
  exit 1
fi
echo "setup: [4/4] pip check"
"${pip[@]}" check

[ "$profile" = dev ] && touch ".venv/.setup-app-$(hash_of requirements.txt pyproject.toml)"  # dev holds app
touch "$stamp"
echo "setup: done"
