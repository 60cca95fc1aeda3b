"""Data classes returned by the phantom generators."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from radtriage.labels import CHEST_CLASSES, names_to_vector


@dataclass
class Finding:
    """One inserted abnormality.

    Attributes:
        name: a VinBigData class name (chest) or a limb abnormality ("fracture", "hardware",
            "lytic lesion", "degeneration").
        mask: bool (H, W), True where the finding changes the image.
        box: (x_min, y_min, x_max, y_max) in pixels, the bounding box of ``mask``.
        severity: in [0, 1]; scales size and contrast (small/faint .. large/obvious).
    """

    name: str
    mask: np.ndarray
    box: tuple[float, float, float, float]
    severity: float = 1.0


@dataclass
class Phantom:
    """A synthetic radiograph with its ground truth.

    Attributes:
        image: float32 (H, W) in [0, 1], 0 = black (air), 1 = white (bone, metal).
        findings: the inserted abnormalities (empty for a normal phantom).
        anatomy: named bool (H, W) masks, e.g. "lungs", "hemithorax", "heart", "bone", "body".
        info: scalar facts (seed, cardiothoracic ratio, study type, view...).
    """

    image: np.ndarray
    findings: list[Finding] = field(default_factory=list)
    anatomy: dict[str, np.ndarray] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def finding_names(self) -> list[str]:
        return [f.name for f in self.findings]

    def chest_labels(self) -> np.ndarray:
        """float32 (14,) multi-hot vector in :data:`CHEST_CLASSES` order."""
        return names_to_vector([n for n in self.finding_names if n in CHEST_CLASSES])
