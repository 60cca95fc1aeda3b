"""Choosing a serving backend for a model folder: :func:`load_predictor`.

Two backends compute the same calibrated probabilities ``sigmoid(logit / T)`` of a model artifact
(:class:`radtriage.predictor.BasePredictor` holds what they share):

- ``keras`` (:class:`radtriage.inference.Predictor`): the reference. It loads ``model.h5`` and also
  serves Grad-CAM, which needs gradients.
- ``litert`` (:class:`radtriage.litert.LiteRtPredictor`): ``model.tflite``, written and verified by
  :func:`radtriage.export.export_litert`. It never imports TensorFlow, so a batch job starts in
  about a second instead of several, and its forward pass is 2.6x (batch 1) to 3.1x (batch 32) faster on CPU (BENCHMARKS.md).

This module imports neither TensorFlow nor Keras at import time.
"""

from __future__ import annotations

from pathlib import Path

from radtriage.artifact import read_metadata
from radtriage.litert import LiteRtPredictor, litert_available, litert_entry
from radtriage.predictor import BasePredictor

BACKENDS = ("auto", "keras", "litert")


def resolve_backend(directory: str | Path, backend: str = "auto") -> str:
    """The backend ``load_predictor`` would use: "auto" = litert when a verified export and the runtime exist."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend != "auto":
        return backend
    has_export = litert_entry(read_metadata(directory)) is not None
    return "litert" if has_export and litert_available() else "keras"


def load_predictor(directory: str | Path, backend: str = "auto") -> BasePredictor:
    """A predictor of the model in ``directory`` on the chosen backend.

    Args:
        directory: a model directory.
        backend: "keras" (reference, with Grad-CAM), "litert", or "auto" (litert when available).

    Raises:
        ArtifactError: the model (or its export) cannot be used; ValueError: unknown backend.
    """
    if resolve_backend(directory, backend) == "litert":
        return LiteRtPredictor.from_dir(directory)
    from radtriage.inference import Predictor

    return Predictor.from_dir(directory)
