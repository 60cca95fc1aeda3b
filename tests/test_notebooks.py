"""The retraining notebooks run end to end on small phantom datasets in the real layouts.

Each notebook is executed with nbclient in a kernel running this interpreter (a kernelspec written
to a temporary JUPYTER_PATH), with CI parameters injected in a cell after the "parameters" cell
(as papermill does). Data: ``radtriage.phantoms.write_vinbigdata`` / ``write_mura``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from radtriage.phantoms import write_mura, write_vinbigdata

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
KERNEL = "radtriage-test-venv"
TIMEOUT_S = 600
TINY = {"IMAGE_SIZE": 64, "ARCHITECTURE": "small_cnn", "ARCHITECTURE_KWARGS": {"width": 8, "depth": 3},
        "EPOCHS": 2, "BATCH_SIZE": 32, "N_BOOT": 50, "WORKERS": 1}


@pytest.fixture()
def kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A kernelspec for this interpreter (the venv's python, which has ipykernel and radtriage)."""
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": KERNEL, "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    return KERNEL


def inject(nb: nbformat.NotebookNode, values: dict) -> nbformat.NotebookNode:
    """Insert a cell assigning ``values`` right after the cell tagged "parameters"."""
    index = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    source = "\n".join(f"{k} = {v!r}" for k, v in values.items())
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    nb.cells.insert(index + 1, cell)
    return nb


def run_notebook(name: str, values: dict, kernel: str) -> nbformat.NotebookNode:
    nb = inject(nbformat.read(NOTEBOOKS / name, as_version=4), values)
    client = NotebookClient(nb, kernel_name=kernel, timeout=TIMEOUT_S,
                            resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()
    return nb


def check_model_dir(model_dir: Path, task: str) -> dict:
    for name in ("model.h5", "metadata.json", "MODEL_CARD.md", "reference_predictions.json"):
        assert (model_dir / name).is_file(), name
    meta = json.loads((model_dir / "metadata.json").read_text())
    assert meta["task"] == task
    assert meta["training_data"]["phantom_only"] is True
    assert "Trained on synthetic phantom radiographs only" in (model_dir / "MODEL_CARD.md").read_text()
    return meta


@pytest.mark.slow
def test_train_chest_notebook(tmp_path: Path, kernel: str) -> None:
    data = tmp_path / "vinbigdata"
    write_vinbigdata(data, 100, seed=3, size=80, findings_prob=0.5, jpeg2000_prob=0.0, workers=2)
    model_dir = tmp_path / "model" / "chest"
    values = {**TINY, "DATA_ROOT": str(data), "SYNTHETIC": True, "MODEL_DIR": str(model_dir),
              "CACHE_DIR": str(tmp_path / "cache"), "WORK_DIR": str(tmp_path / "work")}
    nb = run_notebook("train_chest.ipynb", values, kernel)
    meta = check_model_dir(model_dir, "chest")
    assert set(meta["metrics"]) >= {"test", "validation"}
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "images per split" in outputs


@pytest.mark.slow
def test_train_mura_notebook(tmp_path: Path, kernel: str) -> None:
    write_mura(tmp_path / "mura", 60, seed=4, size=192, valid_fraction=0.3, workers=2)
    model_dir = tmp_path / "model" / "mura"
    values = {**TINY, "DATA_ROOT": str(tmp_path / "mura"), "SYNTHETIC": True, "VAL_FRACTION": 0.25,
              "MODEL_DIR": str(model_dir), "CACHE_DIR": str(tmp_path / "cache"), "WORK_DIR": str(tmp_path / "work")}
    run_notebook("train_mura.ipynb", values, kernel)
    meta = check_model_dir(model_dir, "mura")
    assert meta["metrics"]["test"]["study_level"][0]["group"] == "overall"
    assert meta["provenance"] == {"Abnormal": "synthetic only"}
