"""Training runs end to end: data -> prepare cache -> train -> calibrate -> evaluate -> artifact + card.

One config object drives a whole run, so a notebook, the CLI (``radtriage train --config run.json``)
and a benchmark do exactly the same thing. A config names its *recipe*; :data:`RECIPES` maps each
recipe to its config class and training function:

- ``"chest"`` (:mod:`radtriage.runs.chest`): a Keras CNN on VinBigData / NIH / phantoms, merged.
- ``"chest_frontend"`` (:mod:`radtriage.runs.frontend_chest`): the shipped small-data chest model,
  a fixed filter-bank front-end with fitted linear heads.
- ``"mura"`` (:mod:`radtriage.runs.mura`): a Keras CNN on MURA-v1.1 (or limb phantoms), per study.
- ``"pretrained"`` (:mod:`radtriage.runs.pretrained`): a frozen ImageNet EfficientNet-Lite with
  fitted linear heads on real images (NIH for chest, FracAtlas for the upper limb): the shipped models.

Shared steps live in their own modules: :mod:`~radtriage.runs.config` (data sources, splits, JSON),
:mod:`~radtriage.runs.sources` (image tables, phantom detection, cached arrays),
:mod:`~radtriage.runs.calibration` (temperatures, thresholds, held-out metrics),
:mod:`~radtriage.runs.saving` (artifact, export, card), :mod:`~radtriage.runs.reference` (reference
predictions on the bundled examples) and :mod:`~radtriage.runs.evaluate` (a saved model on a dataset).
Adding a recipe means a module with its config and training function, and one line here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from radtriage.runs.chest import ChestRunConfig, split_chest, train_chest
from radtriage.runs.config import DataSource, RunCommon, SplitConfig
from radtriage.runs.evaluate import evaluate_model
from radtriage.runs.frontend_chest import FrontEndChestRunConfig, train_frontend_chest
from radtriage.runs.mura import MuraRunConfig, train_mura
from radtriage.runs.pretrained import PretrainedRunConfig, train_pretrained
from radtriage.runs.reference import (
    DEFAULT_ATOL,
    ReferenceCheck,
    check_reference_predictions,
    write_reference_predictions,
)
from radtriage.runs.saving import RunResult
from radtriage.runs.sources import load_source

RunConfig = ChestRunConfig | FrontEndChestRunConfig | MuraRunConfig | PretrainedRunConfig

# recipe -> (its config class, its training function)
RECIPES: dict[str, tuple[type, Callable[[Any], RunResult]]] = {
    "chest": (ChestRunConfig, train_chest),
    "chest_frontend": (FrontEndChestRunConfig, train_frontend_chest),
    "mura": (MuraRunConfig, train_mura),
    "pretrained": (PretrainedRunConfig, train_pretrained),
}

__all__ = [
    "DEFAULT_ATOL", "RECIPES", "ChestRunConfig", "DataSource", "FrontEndChestRunConfig", "MuraRunConfig",
    "ReferenceCheck", "RunCommon", "RunConfig", "RunResult", "SplitConfig", "check_reference_predictions",
    "evaluate_model", "load_run_config", "load_source", "run_config_from_dict", "split_chest", "train_chest",
    "train_frontend_chest", "train_mura", "train_pretrained", "train_run", "write_reference_predictions",
]


def run_config_from_dict(d: dict[str, Any]) -> RunConfig:
    """The run config of the recipe named by the dict's ``recipe`` key (older files: ``task``)."""
    recipe = d.get("recipe", d.get("task"))
    if recipe not in RECIPES:
        raise ValueError(f"a run config needs \"recipe\": one of {', '.join(map(repr, RECIPES))}, got {recipe!r}")
    return RECIPES[recipe][0].from_dict(d)


def load_run_config(path: str | Path) -> RunConfig:
    """Read a run config JSON file (as written by ``to_json`` or ``radtriage train --print-config``)."""
    return run_config_from_dict(json.loads(Path(path).read_text()))


def train_run(run: RunConfig) -> RunResult:
    """Train, evaluate and save a model with the recipe the config names."""
    return RECIPES[run.recipe][1](run)
