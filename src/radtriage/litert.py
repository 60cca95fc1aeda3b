"""The LiteRT (TFLite) backend: a model folder's verified ``model.tflite`` on the ``ai-edge-litert``
interpreter, without importing TensorFlow.

``model.tflite`` holds the logits sub-model of ``model.h5`` (with the features the OOD score reads,
when it has them); ``explain.tflite`` the Grad-CAM graph of :mod:`radtriage.gradcam` at batch 1
(logits, heatmap, explained class, features in one call). Both are written only by
:func:`radtriage.export.export_litert`, which keeps them when their probabilities and heatmaps agree
with Keras; the metadata records their SHA-256 and the ``model.h5`` they came from, and a modified
or stale file is refused here. Temperature scaling is applied outside the graph
(:meth:`radtriage.predictor.BasePredictor.calibrate`), so re-calibrating never invalidates an export.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from radtriage.artifact import ArtifactError, ModelMetadata, read_metadata, read_ood, sha256_file, verify_checksum
from radtriage.ood import OodModel
from radtriage.predictor import BasePredictor

TFLITE_FILE = "model.tflite"
EXPLAIN_FILE = "explain.tflite"  # the Grad-CAM graph (radtriage.gradcam.GradCam.export_function), batch 1


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Silence what the interpreter's C++ prints straight to file descriptor 2 ("INFO: Created TensorFlow
    Lite XNNPACK delegate for CPU.") while it builds its graph: notes for developers, not for a user
    reading the CLI's messages. Python's own exceptions are unaffected."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # no real stderr (e.g. captured): nothing to silence
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), fd)
            yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


def litert_available() -> bool:
    """True when the ``ai-edge-litert`` interpreter can be imported."""
    try:
        import ai_edge_litert.interpreter  # noqa: F401
    except ImportError:
        return False
    return True


def litert_entry(metadata: ModelMetadata) -> dict[str, Any] | None:
    """The metadata's record of a verified LiteRT export, or None."""
    entry = (metadata.serving or {}).get("litert")
    return dict(entry) if isinstance(entry, dict) else None


class LiteRtRunner:
    """A ``.tflite`` graph on the LiteRT interpreter: float32 images (N, ...) and any further inputs by
    name (as in the graph's signature) in -> every output, as NumPy arrays in the signature's order
    (``output_0``, ``output_1``, ...: the order of the converted function's outputs).

    One call at a time: an interpreter's tensors are its own state, and a second thread's ``invoke``
    during a call raises RuntimeError (the dashboard's sessions share one anatomy gate).

    Args:
        model_path: the ``.tflite`` file.
        threads: interpreter threads (default: all cores).
    """

    def __init__(self, model_path: str | Path, threads: int | None = None) -> None:
        from ai_edge_litert.interpreter import Interpreter

        with _native_stderr_silenced():
            self._interpreter = Interpreter(model_path=str(model_path), num_threads=threads or os.cpu_count() or 1)
        if self._interpreter.get_signature_list():
            signature = self._interpreter.get_signature_runner()
            inputs = {name: d["index"] for name, d in signature.get_input_details().items()}
            outputs = signature.get_output_details()
            self._outputs = [outputs[name]["index"] for name in sorted(outputs, key=_position)]
        else:  # a graph without a signature: inputs and outputs in the file's order
            inputs = {d["name"]: d["index"] for d in self._interpreter.get_input_details()}
            outputs = {d["name"]: d["index"] for d in self._interpreter.get_output_details()}
            self._outputs = [outputs[name] for name in sorted(outputs, key=_position)]  # Identity, Identity_1, ...
        details = {d["index"]: d for d in self._interpreter.get_input_details()}
        image = next(i for i in inputs.values() if len(details[i]["shape"]) == 4)
        self._image, self._others = image, {name: i for name, i in inputs.items() if i != image}
        self.input_shape = tuple(int(d) for d in details[image]["shape"][1:])
        # a graph converted at a fixed batch size (the Grad-CAM export) cannot be resized
        self.fixed_batch = int(details[image]["shape"][0]) if details[image]["shape_signature"][0] > 0 else None
        self._batch = -1
        self._lock = threading.Lock()

    def __call__(self, x: np.ndarray, **others: np.ndarray) -> list[np.ndarray]:
        with self._lock:
            return self._call(x, others)

    def _call(self, x: np.ndarray, others: dict[str, np.ndarray]) -> list[np.ndarray]:
        if set(others) != set(self._others):
            raise ValueError(f"this graph takes the inputs {sorted(self._others)} besides the images, got {sorted(others)}")
        if len(x) != self._batch:  # re-planning the graph: only when the batch size changes
            if self.fixed_batch is None:
                self._interpreter.resize_tensor_input(self._image, [len(x), *self.input_shape])
            elif len(x) != self.fixed_batch:
                raise ValueError(f"this graph takes batches of {self.fixed_batch}, got {len(x)}")
            with _native_stderr_silenced():
                self._interpreter.allocate_tensors()
            self._batch = len(x)
        self._interpreter.set_tensor(self._image, np.ascontiguousarray(x, np.float32))
        for name, value in others.items():
            self._interpreter.set_tensor(self._others[name], np.asarray(value))
        self._interpreter.invoke()
        return [self._interpreter.get_tensor(i) for i in self._outputs]


def _position(name: str) -> tuple[int, str]:
    """Sort key of output names in the converted function's order: ``output_2`` before ``output_10``,
    ``Identity`` before ``Identity_1``."""
    head, _, tail = name.rpartition("_")
    return (int(tail), head) if tail.isdigit() else (-1, name)


class LiteRtPredictor(BasePredictor):
    """Calibrated probabilities from ``model.tflite``, and Grad-CAM from ``explain.tflite`` when
    given, on the LiteRT interpreter.

    Args:
        metadata: the artifact's metadata, with a ``serving.litert`` record.
        model_path: the verified ``model.tflite``.
        threads: interpreter threads (default: all cores).
        ood: the model's out-of-distribution statistics, or None.
        explain_path: the verified ``explain.tflite`` (None: no Grad-CAM; :attr:`explains` is False).
    """

    backend = "litert"

    def __init__(self, metadata: ModelMetadata, model_path: str | Path, threads: int | None = None,
                 ood: OodModel | None = None, explain_path: str | Path | None = None) -> None:
        super().__init__(metadata, ood)
        self._run = LiteRtRunner(model_path, threads)
        self._explainer = LiteRtRunner(explain_path, threads) if explain_path is not None else None
        self._rank_scale = (1.0 / self.temperatures).astype(np.float32)

    @classmethod
    def from_dir(cls, path: str | Path, threads: int | None = None, explain: bool = False) -> LiteRtPredictor:
        """Load a model directory's verified LiteRT export (and its Grad-CAM graph when ``explain``).

        Raises:
            ArtifactError: no export recorded (or no Grad-CAM export when ``explain``), the runtime
                is missing, or a ``.tflite`` file does not match its recorded SHA-256 or was exported
                from another ``model.h5``.
        """
        path = Path(path)
        metadata = read_metadata(path)
        entry = litert_entry(metadata)
        if entry is None:
            raise ArtifactError(f"{path} has no LiteRT export (run 'radtriage export {path}').")
        if not litert_available():
            raise ArtifactError("the LiteRT runtime is not installed (pip install ai-edge-litert).")
        verify_checksum(path, metadata)
        tflite = _verified(path, entry, metadata)
        explain_path = None
        if explain:
            if not isinstance(entry.get("explain"), dict):
                raise ArtifactError(f"{path} has no LiteRT Grad-CAM export (run 'radtriage export {path}').")
            explain_path = _verified(path, entry["explain"], metadata)
        return cls(metadata, tflite, threads, read_ood(path, metadata), explain_path)

    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        # an export holds the logits, and the features when the model has them (radtriage.export);
        # the converter does not keep output names, so they are told apart by width
        outputs = self._run(x)
        n = len(self.classes)
        logits = next(o for o in outputs if o.shape[-1] == n)
        features = next((o for o in outputs if o.shape[-1] != n), None)
        return logits, features

    def _explain(self, x: np.ndarray, class_index: int | None) -> tuple[np.ndarray, ...]:
        if self._explainer is None:
            return super()._explain(x, class_index)
        # outputs in radtriage.gradcam.EXPORT_OUTPUTS order (the export checks them against Keras)
        logits, heatmaps, degenerate, explained, *features = self._explainer(
            x, class_index=np.int32(-1 if class_index is None else class_index), rank_scale=self._rank_scale)
        return logits, heatmaps, degenerate.astype(bool), explained, features[0] if features else None

    @property
    def explains(self) -> bool:
        return self._explainer is not None


def _verified(directory: Path, entry: dict[str, Any], metadata: ModelMetadata) -> Path:
    """The ``.tflite`` file an export record names, checked against its SHA-256 and its ``model.h5``."""
    tflite = directory / entry.get("file", TFLITE_FILE)
    if not tflite.is_file():
        raise ArtifactError(f"{tflite} is missing.")
    if entry.get("from_model_sha256") != metadata.model_sha256:
        raise ArtifactError(f"{tflite} was exported from another model.h5: export it again.")
    if sha256_file(tflite) != entry.get("sha256"):
        raise ArtifactError(f"{tflite} does not match the SHA-256 recorded in its metadata: modified or corrupted.")
    return tflite
