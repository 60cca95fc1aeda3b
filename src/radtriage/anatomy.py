"""The anatomy gate: what an image shows, from its pixels, before any model judges it.

A small model (``model/anatomy``) tells apart the four :data:`radtriage.labels.ANATOMY_CLASSES`:
chest radiograph, upper-limb radiograph, other radiograph, not a radiograph. It is frozen ImageNet
EfficientNet-Lite0 features (pooled stages 4-7) with a multinomial logistic head trained on real
radiographs (:mod:`radtriage.runs.anatomy`); its input is the one shared preprocessing at the size
in its metadata. :mod:`radtriage.triage` applies its verdict, with each model's out-of-distribution
score, in one place for the CLI, the dashboard and the PACS connector.

``metadata.json`` of the gate (its own schema, not a triage model's)::

    kind            "anatomy gate"
    name            str
    classes         [str]             labels.ANATOMY_CLASSES, the softmax output order
    preprocess      {..}              PreprocessConfig.to_dict()
    model_sha256    str               of model.h5
    serving         {"litert": {file, sha256, max_abs_diff_vs_keras, ...}}
    training_data, metrics, phantoms, code_version, created   (what the card shows)

Serving reads the verified ``model.tflite`` on LiteRT when the runtime is installed (no TensorFlow),
else ``model.h5`` on Keras.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from radtriage import labels
from radtriage.artifact import MODEL_FILE, ArtifactError, sha256_file
from radtriage.litert import LiteRtRunner, litert_available
from radtriage.preprocess import PreprocessConfig

GATE_KIND = "anatomy gate"
GATE_FOLDER = "anatomy"  # under the model directory
METADATA_FILE = "metadata.json"


@dataclass(frozen=True)
class AnatomyVerdict:
    """The gate's verdict on one image.

    Attributes:
        anatomy: the most probable of :data:`labels.ANATOMY_CLASSES`.
        probability: its softmax probability, in [0, 1].
        probabilities: every class's probability (sums to 1).
    """

    anatomy: str
    probability: float
    probabilities: dict[str, float] = field(repr=False)

    @property
    def phrase(self) -> str:
        """The anatomy in a sentence: "an upper-limb radiograph"."""
        return labels.ANATOMY_PHRASES[self.anatomy]


@dataclass(frozen=True)
class GateMetadata:
    """The parts of the gate's ``metadata.json`` that serving needs, plus the rest as ``extra``."""

    name: str
    classes: tuple[str, ...]
    preprocess: PreprocessConfig
    model_sha256: str
    serving: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def read(cls, directory: str | Path) -> GateMetadata:
        """Parse ``directory/metadata.json`` (raises :class:`ArtifactError` with one sentence)."""
        path = Path(directory) / METADATA_FILE
        try:
            d = json.loads(path.read_text())
            if d.get("kind") != GATE_KIND or tuple(d["classes"]) != labels.ANATOMY_CLASSES:
                raise ArtifactError(f"{path} does not describe an anatomy gate with the classes {labels.ANATOMY_CLASSES}.")
            return cls(d["name"], tuple(d["classes"]), PreprocessConfig.from_dict(d["preprocess"]),
                       d["model_sha256"], dict(d.get("serving") or {}), d)
        except FileNotFoundError:
            raise ArtifactError(f"{path} is missing: no anatomy gate in {directory}.") from None
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ArtifactError(f"{path} is not a valid anatomy gate description ({e}).") from None


class AnatomyGate:
    """The anatomy classifier of a gate folder, on LiteRT (default when installed) or Keras.

    Args:
        directory: the gate folder (``model/anatomy``).
        backend: "auto" (LiteRT when its export and runtime exist), "litert" or "keras".

    Raises:
        ArtifactError: missing or modified files, or the backend cannot be used.
    """

    def __init__(self, directory: str | Path, backend: str = "auto") -> None:
        directory = Path(directory)
        self.metadata = GateMetadata.read(directory)
        self.classes = self.metadata.classes
        self.preprocess_config = self.metadata.preprocess
        entry = self.metadata.serving.get("litert")
        use_litert = backend == "litert" or (backend == "auto" and entry is not None and litert_available())
        if use_litert:
            if entry is None:
                raise ArtifactError(f"{directory} has no LiteRT export of the anatomy gate.")
            path = directory / entry["file"]
            if not path.is_file() or sha256_file(path) != entry["sha256"]:
                raise ArtifactError(f"{path} is missing or does not match the SHA-256 in its metadata.")
            self.backend = "litert"
            self._run = LiteRtRunner(path)
        else:
            path = directory / MODEL_FILE
            if not path.is_file() or sha256_file(path) != self.metadata.model_sha256:
                raise ArtifactError(f"{path} is missing or does not match the SHA-256 in its metadata.")
            self.backend = "keras"
            self._run = _keras_runner(path)

    def probabilities(self, inputs: np.ndarray) -> np.ndarray:
        """(N, S, S, 1) float32 in [0, 1] (the gate's preprocessing) -> (N, K) softmax probabilities."""
        x = np.asarray(inputs, np.float32)
        if len(x) == 0:
            return np.zeros((0, len(self.classes)), np.float64)
        out = np.concatenate([self._run(x[i : i + 64])[0] for i in range(0, len(x), 64)]).astype(np.float64)
        return out / out.sum(axis=1, keepdims=True)

    def assess(self, inputs: np.ndarray) -> list[AnatomyVerdict]:
        """One :class:`AnatomyVerdict` per preprocessed image."""
        out = []
        for p in self.probabilities(inputs):
            k = int(np.argmax(p))
            out.append(AnatomyVerdict(self.classes[k], float(p[k]), dict(zip(self.classes, map(float, p)))))
        return out


def _keras_runner(path: Path) -> Any:
    import keras

    model = keras.models.load_model(path, compile=False)
    return lambda x: [np.asarray(model(x, training=False))]
