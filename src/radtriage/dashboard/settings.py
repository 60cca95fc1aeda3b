"""Where the dashboard finds its models and examples, and its fixed display parameters."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
MODEL_DIR_ENV = "RADTRIAGE_MODEL_DIR"
EXAMPLES_DIR_ENV = "RADTRIAGE_EXAMPLES_DIR"

# Model folder names under the model directory, and how the page names them.
CHEST = "chest"
MURA = "mura"
MODEL_LABELS: dict[str, str] = {CHEST: "Chest (14 findings)", MURA: "Upper limb (MURA normal/abnormal)"}
ANATOMY_TO_MODEL: dict[str, str] = {"chest": CHEST, "limb": MURA}

# Images are shown (and blended with heatmaps) at most DISPLAY_SIDE pixels a side. For DISPLAY only,
# JPEG 2000 DICOMs are decoded at the coarsest resolution level with DECODE_MIN_SIDE pixels a side
# (a 2,048 px file decodes at 512 px in ~0.15 s instead of ~0.5 s at 1,024 px); model inputs are
# made separately by Predictor.load_input, the path the CLI and training share.
DECODE_MIN_SIDE = 512
DISPLAY_SIDE = 768
THUMB_SIDE = 160
HEATMAP_CMAP = "jet"
DEFAULT_OPACITY = 0.4
MAX_FILES = 12  # per upload: a MURA study has 1-11 images

NOTICE = "Research use only — not a medical device. Not for diagnosis or treatment decisions."


def model_dir() -> Path:
    """The folder holding ``<name>/model.h5`` (``$RADTRIAGE_MODEL_DIR``, default ``<repo>/model``)."""
    return Path(os.environ.get(MODEL_DIR_ENV) or REPO_ROOT / "model")


def examples_dir() -> Path:
    """The bundled examples (``$RADTRIAGE_EXAMPLES_DIR``, default ``<repo>/app_images``)."""
    return Path(os.environ.get(EXAMPLES_DIR_ENV) or REPO_ROOT / "app_images")
