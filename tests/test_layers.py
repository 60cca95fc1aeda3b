"""The package's layering, as .importlinter states it: layers point one way, no import cycle, no
TensorFlow at the serving edge; and no module grows past the size a reader can hold."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MAX_LINES = 800


def test_import_contracts_are_kept() -> None:
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if lint is None:
        pytest.skip("import-linter is not installed (it comes with requirements-dev.txt)")
    done = subprocess.run([lint, "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "3 kept, 0 broken" in done.stdout


def test_no_module_is_over_800_lines() -> None:
    sizes = {p.relative_to(REPO).as_posix(): len(p.read_text(encoding="utf-8").splitlines())
             for p in (REPO / "src" / "radtriage").rglob("*.py")}
    assert len(sizes) > 30
    assert {p: n for p, n in sizes.items() if n > MAX_LINES} == {}


def test_the_contracts_catch_an_upward_import(tmp_path: Path) -> None:
    """The same contracts on a copy of the package where the model contract imports the CLI: broken."""
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if lint is None:
        pytest.skip("import-linter is not installed (it comes with requirements-dev.txt)")
    shutil.copytree(REPO / "src" / "radtriage", tmp_path / "radtriage",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / ".importlinter", tmp_path / ".importlinter")
    contract = tmp_path / "radtriage" / "contract.py"
    contract.write_text(contract.read_text(encoding="utf-8") + "\nimport radtriage.cli  # noqa\n", encoding="utf-8")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path)}
    done = subprocess.run([lint, "--no-cache"], cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode != 0
    assert "radtriage.contract is not allowed to import radtriage.cli" in done.stdout
