"""Reference predictions: the saved model's outputs on every bundled example of ``app_images/``,
through the public load -> preprocess -> predictor path.

:func:`write_reference_predictions` records them when a model is made;
:func:`check_reference_predictions` re-computes them with today's code, so a drift in loading or
preprocessing (or a changed model file) is caught by a test, not by a user.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from radtriage import contract, locations, tasks
from radtriage.artifact import sha256_file

REFERENCE_FILE = "reference_predictions.json"
MANIFEST_FILE = "manifest.json"
DEFAULT_ATOL = 1e-4


def example_files(examples_dir: str | Path) -> list[dict[str, Any]]:
    """The bundled examples from ``manifest.json``: id, anatomy, study_type, files (paths)."""
    examples_dir = Path(examples_dir)
    manifest = json.loads((examples_dir / MANIFEST_FILE).read_text())
    return [{"id": e["id"], "anatomy": e["anatomy"], "study_type": e.get("study_type"),
             "files": [examples_dir / f for f in e["files"]]} for e in manifest["examples"]]


def reference_outputs(predictor: Any, examples_dir: str | Path) -> dict[str, Any]:
    """The predictor's calibrated outputs on every bundled example (public load + preprocess path).

    Every file goes through ``Predictor.load_input`` (the shared load + preprocess path of the
    prepare cache, the CLI and the dashboard) and is predicted one by one.
    """
    size = predictor.preprocess_config.size
    task_anatomy = tasks.get(predictor.metadata.task).anatomy
    examples = []
    for ex in example_files(examples_dir):
        files, probs = [], []
        for path in ex["files"]:
            p = predictor.predict_batch(predictor.load_input(path)[1][None])[0]
            probs.append(p)
            files.append({"file": path.name, "sha256": sha256_file(path),
                          "probabilities": [float(v) for v in p]})
        examples.append({"id": ex["id"], "anatomy": ex["anatomy"], "matches_task": ex["anatomy"] == task_anatomy,
                         "files": files, "study_probabilities": [float(v) for v in contract.study_mean(np.stack(probs))]})
    return {"model": predictor.metadata.name, "model_sha256": predictor.metadata.model_sha256,
            "classes": predictor.classes, "loader": {"min_side": size},
            "note": "calibrated probabilities; study_probabilities = mean over the example's files",
            "examples": examples}


def write_reference_predictions(model_dir: str | Path, examples_dir: str | Path = "app_images") -> Path:
    """Write ``<model_dir>/reference_predictions.json`` from the SAVED artifact (loaded back)."""
    from radtriage.inference import Predictor

    predictor = Predictor.from_dir(model_dir)
    path = Path(model_dir) / REFERENCE_FILE
    path.write_text(json.dumps(reference_outputs(predictor, examples_dir), indent=1))
    return path


@dataclass
class ReferenceCheck:
    """Result of :func:`check_reference_predictions`.

    Attributes:
        n_files: files compared.
        max_abs_diff: largest |new - stored| probability.
        mismatches: one sentence per file differing by more than ``atol``, or changed on disk.
    """

    n_files: int
    max_abs_diff: float
    mismatches: list[str]

    @property
    def ok(self) -> bool:
        return self.n_files > 0 and not self.mismatches


def check_reference_predictions(model_dir: str | Path, atol: float = DEFAULT_ATOL,
                                examples_dir: str | Path | None = None, backend: str = "keras") -> ReferenceCheck:
    """Re-run the bundled examples through today's code and compare with the stored outputs.

    A difference means the loading or preprocessing (or the model file) drifted since the model
    was made. An example file changed on disk is reported as such (not as drift).

    Args:
        model_dir: a model directory holding ``reference_predictions.json``.
        atol: tolerated absolute difference per probability.
        examples_dir: the examples (default: :func:`radtriage.locations.examples_dir`).
        backend: "keras" (the reference that made the file) or "litert" (the model's export,
            checked against the same stored outputs).

    Returns:
        :class:`ReferenceCheck`; ``.ok`` is False when anything differs or nothing was compared.
    """
    from radtriage.serving import load_predictor

    model_dir = Path(model_dir)
    stored = json.loads((model_dir / REFERENCE_FILE).read_text())
    examples_dir = locations.examples_dir() if examples_dir is None else Path(examples_dir)
    predictor = load_predictor(model_dir, backend)
    mismatches, n, worst = [], 0, 0.0
    for ex in stored["examples"]:
        for f in ex["files"]:
            path = examples_dir / f["file"]
            if not path.is_file():
                mismatches.append(f"{f['file']}: the example file is missing.")
                continue
            if sha256_file(path) != f["sha256"]:
                mismatches.append(f"{f['file']}: the example file changed since the reference was made.")
                continue
            p = predictor.predict_batch(predictor.load_input(path)[1][None])[0]
            diff = float(np.max(np.abs(p - np.asarray(f["probabilities"]))))
            n += 1
            worst = max(worst, diff)
            if diff > atol:
                mismatches.append(f"{f['file']}: outputs differ by up to {diff:.2e} (> {atol:g}).")
    return ReferenceCheck(n, worst, mismatches)
