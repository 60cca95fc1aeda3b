"""The LiteRT (TFLite) backend: a model folder's verified ``model.tflite`` on the ``ai-edge-litert``
interpreter, without importing TensorFlow.

The file holds the logits sub-model of ``model.h5`` (with the features the OOD score reads, when it has them) and is written only by
:func:`radtriage.export.export_litert`, which keeps it when its calibrated probabilities agree with
Keras; the metadata records its SHA-256 and the ``model.h5`` it came from, and a modified or stale
file is refused here. Temperature scaling is applied outside the graph
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
    """A ``.tflite`` graph on the LiteRT interpreter: (N, ...) float32 in -> every output, as NumPy arrays.

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
        details = self._interpreter.get_input_details()[0]
        self._input, self.input_shape = details["index"], tuple(int(d) for d in details["shape"][1:])
        self._outputs = [d["index"] for d in self._interpreter.get_output_details()]
        self._batch = -1
        self._lock = threading.Lock()

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        with self._lock:
            return self._call(x)

    def _call(self, x: np.ndarray) -> list[np.ndarray]:
        if len(x) != self._batch:  # resizing re-plans the graph: only when the batch size changes
            self._interpreter.resize_tensor_input(self._input, [len(x), *self.input_shape])
            with _native_stderr_silenced():
                self._interpreter.allocate_tensors()
            self._batch = len(x)
        self._interpreter.set_tensor(self._input, np.ascontiguousarray(x, np.float32))
        self._interpreter.invoke()
        return [self._interpreter.get_tensor(i) for i in self._outputs]


class LiteRtPredictor(BasePredictor):
    """Calibrated probabilities from ``model.tflite`` on the LiteRT interpreter (no Grad-CAM).

    Args:
        metadata: the artifact's metadata, with a ``serving.litert`` record.
        model_path: the verified ``model.tflite``.
        threads: interpreter threads (default: all cores).
    """

    backend = "litert"

    def __init__(self, metadata: ModelMetadata, model_path: str | Path, threads: int | None = None,
                 ood: OodModel | None = None) -> None:
        super().__init__(metadata, ood)
        self._run = LiteRtRunner(model_path, threads)

    @classmethod
    def from_dir(cls, path: str | Path, threads: int | None = None) -> LiteRtPredictor:
        """Load a model directory's verified LiteRT export.

        Raises:
            ArtifactError: no export recorded, the runtime is missing, or ``model.tflite`` does
                not match its recorded SHA-256 or was exported from another ``model.h5``.
        """
        path = Path(path)
        metadata = read_metadata(path)
        entry = litert_entry(metadata)
        if entry is None:
            raise ArtifactError(f"{path} has no LiteRT export (run 'radtriage export {path}').")
        if not litert_available():
            raise ArtifactError("the LiteRT runtime is not installed (pip install ai-edge-litert).")
        verify_checksum(path, metadata)
        tflite = path / entry.get("file", TFLITE_FILE)
        if not tflite.is_file():
            raise ArtifactError(f"{tflite} is missing.")
        if entry.get("from_model_sha256") != metadata.model_sha256:
            raise ArtifactError(f"{tflite} was exported from another model.h5: export it again.")
        if sha256_file(tflite) != entry.get("sha256"):
            raise ArtifactError(f"{tflite} does not match the SHA-256 recorded in its metadata: modified or corrupted.")
        return cls(metadata, tflite, threads, read_ood(path, metadata))

    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        # an export holds the logits, and the features when the model has them (radtriage.export);
        # the converter does not keep output names, so they are told apart by width
        outputs = self._run(x)
        n = len(self.classes)
        logits = next(o for o in outputs if o.shape[-1] == n)
        features = next((o for o in outputs if o.shape[-1] != n), None)
        return logits, features
