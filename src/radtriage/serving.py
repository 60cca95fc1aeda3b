"""Choosing a serving backend for a model folder: :func:`load_predictor`.

Two backends compute the same calibrated probabilities ``sigmoid(logit / T)`` of a model artifact
(:class:`radtriage.predictor.BasePredictor` holds what they share):

- ``keras`` (:class:`radtriage.inference.Predictor`): the reference. It loads ``model.h5`` and
  computes Grad-CAM's gradients with TensorFlow.
- ``litert`` (:class:`radtriage.litert.LiteRtPredictor`): ``model.tflite`` (and ``explain.tflite``,
  the same Grad-CAM graph at batch 1), written and verified by :func:`radtriage.export.export_litert`.
  It never imports TensorFlow, so a batch job or the dashboard starts in about a second instead of
  several, and its forward pass is 2.6x (batch 1) to 3.1x (batch 32) faster on CPU (BENCHMARKS.md).

This module imports neither TensorFlow nor Keras at import time.
"""

from __future__ import annotations

from pathlib import Path

from radtriage.artifact import read_metadata
from radtriage.litert import LiteRtPredictor, litert_available, litert_entry
from radtriage.predictor import BasePredictor

BACKENDS = ("auto", "keras", "litert")


def resolve_backend(directory: str | Path, backend: str = "auto", explain: bool = False) -> str:
    """The backend ``load_predictor`` would use: "auto" = litert when a verified export (with its
    Grad-CAM graph, when ``explain``) and the runtime exist, else keras."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend != "auto":
        return backend
    entry = litert_entry(read_metadata(directory))
    usable = entry is not None and (not explain or isinstance(entry.get("explain"), dict))
    return "litert" if usable and litert_available() else "keras"


def load_predictor(directory: str | Path, backend: str = "auto", explain: bool = False) -> BasePredictor:
    """A predictor of the model in ``directory`` on the chosen backend.

    Args:
        directory: a model directory.
        backend: "keras" (the reference), "litert", or "auto" (litert when available).
        explain: the predictor must draw Grad-CAM heatmaps (:meth:`BasePredictor.predict_and_explain`).

    Raises:
        ArtifactError: the model (or its export) cannot be used; ValueError: unknown backend.
    """
    if resolve_backend(directory, backend, explain) == "litert":
        return LiteRtPredictor.from_dir(directory, explain=explain)
    from radtriage.inference import Predictor

    return Predictor.from_dir(directory)
