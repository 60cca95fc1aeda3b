"""Run configurations: one config object drives a whole training run, so a notebook, the CLI
(``radtriage train --config run.json``) and a benchmark do exactly the same thing.

A run config names its *recipe* (``"chest"``, ``"chest_frontend"``, ``"mura"``: how the model is
trained); the recipe trains a model for a *task* (:mod:`radtriage.tasks`: what the model does).
This module holds what every recipe's config shares: the data sources, the patient split, the common
settings and the JSON round trip. Each recipe module declares its own config class.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from radtriage.training import TrainConfig

SourceKind = Literal["vinbigdata", "nih", "phantom_chest", "mura"]
SOURCE_KINDS: tuple[str, ...] = ("vinbigdata", "nih", "phantom_chest", "mura")
CHEST_KINDS: tuple[str, ...] = ("vinbigdata", "nih", "phantom_chest")


@dataclass
class DataSource:
    """One dataset in its real layout (or phantoms).

    Attributes:
        kind: "vinbigdata" (folder with train.csv[.gz] and train/*.dicom), "nih" (labels.csv +
            images/), "phantom_chest" (renders ``n`` phantom PNGs into ``path``) or "mura" (folder
            holding or being ``MURA-v1.1``).
        path: the dataset's root folder.
        synthetic: the images are phantoms written in the real layout (e.g. by
            ``radtriage.phantoms.write_vinbigdata``); their labels count as synthetic.
        policy: VinBigData reader-vote policy: "any", "majority" or "soft".
        name: source name in merged tables (default: ``kind``); must be unique within a run.
        n: phantom_chest: number of images. mura: 0 reads the folder as it is; > 0 renders that
            many limb phantom STUDIES into ``path`` in the MURA-v1.1 layout first (unless already
            there; ``PHANTOM_MURA_VALID_FRACTION`` of the patients go to ``valid``), which makes the
            source synthetic.
        size: phantoms only: image side (chest) or height (limb) in pixels (>= 64).
        seed: phantoms only: generator seed.
        prevalence: phantoms only: per-class probability of a finding (chest), or of an abnormal
            study (limb).
    """

    kind: str
    path: str
    synthetic: bool = False
    policy: str = "majority"
    name: str = ""
    n: int = 0
    size: int = 256
    seed: int = 0
    prevalence: float = 0.15

    def __post_init__(self) -> None:
        if self.kind not in SOURCE_KINDS:
            raise ValueError(f"unknown data source kind {self.kind!r}; use one of {', '.join(SOURCE_KINDS)}")
        if self.kind == "phantom_chest":
            self.synthetic = True
            if self.n < 1:
                raise ValueError("a phantom_chest source needs n >= 1 images")
        if self.kind == "mura" and self.n > 0:
            self.synthetic = True  # rendered limb phantoms

    @property
    def label(self) -> str:
        return self.name or self.kind

    def describe(self, synthetic: bool | None = None) -> str:
        """One line for metadata and the model card (``synthetic`` overrides the declared flag)."""
        what = "synthetic phantoms" if (self.synthetic if synthetic is None else synthetic) else "real images"
        extra = f", label policy {self.policy}" if self.kind == "vinbigdata" else ""
        return f"{self.label}: {self.kind} layout at {self.path} ({what}{extra})"


@dataclass
class SplitConfig:
    """Patient-level split fractions (train, validation[, test]) and the split seed."""

    fractions: tuple[float, ...] = (0.8, 0.1, 0.1)
    seed: int = 0

    def __post_init__(self) -> None:
        self.fractions = tuple(float(f) for f in self.fractions)
        if len(self.fractions) not in (2, 3):
            raise ValueError("split fractions are (train, validation) or (train, validation, test)")


class _JsonConfig:
    """JSON round trip shared by the run configurations."""

    def to_dict(self) -> dict[str, Any]:
        return _config_to_dict(self)  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Any:
        return _config_from_dict(cls, d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> Any:
        return cls.from_dict(json.loads(text))


@dataclass
class RunCommon(_JsonConfig):
    """Settings every training recipe shares (its own fields follow in each run config).

    Attributes:
        cache_dir: the prepare cache.
        threshold_rule: "youden", "sensitivity", "specificity" or "f1" (see :mod:`radtriage.evaluation`).
        target_sensitivity: for the "sensitivity" rule.
        target_specificity: for the "specificity" rule.
        n_boot: bootstrap resamples for the 95 % intervals.
        workers: processes for the prepare cache and phantom rendering.
        progress: progress bars.
        examples_dir: bundled examples for the reference predictions ("" to skip).
    """

    cache_dir: str = "runs/cache"
    threshold_rule: str = "youden"
    target_sensitivity: float = 0.9
    target_specificity: float = 0.9
    n_boot: int = 1000
    workers: int = 2
    progress: bool = True
    examples_dir: str = "app_images"


def _config_to_dict(run: Any) -> dict[str, Any]:
    d: dict[str, Any] = {}
    for f in dataclasses.fields(run):
        value = getattr(run, f.name)
        if isinstance(value, TrainConfig):
            d[f.name] = value.to_dict()
        elif dataclasses.is_dataclass(value):
            d[f.name] = dataclasses.asdict(value)
        elif isinstance(value, list):
            d[f.name] = [dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v for v in value]
        elif isinstance(value, tuple):
            d[f.name] = list(value)
        else:
            d[f.name] = value
    return d


def _config_from_dict(cls: type, d: dict[str, Any]) -> Any:
    known = {f.name for f in dataclasses.fields(cls)}
    d = dict(d)
    if "task" in d and "recipe" not in d:  # config files written before recipes had their own word
        d["recipe"] = d.pop("task")
    unknown = set(d) - known
    if unknown:
        raise ValueError(f"unknown {cls.__name__} parameters {sorted(unknown)}")
    d = dict(d)
    if "train" in d:
        d["train"] = TrainConfig.from_dict(d["train"])
    if "sources" in d:
        d["sources"] = [DataSource(**s) for s in d["sources"]]
    if "source" in d:
        d["source"] = DataSource(**d["source"])
    if "split" in d:
        d["split"] = SplitConfig(**d["split"])
    return cls(**d)


def train_config(task: str, output_dir: str) -> TrainConfig:
    """A default :class:`TrainConfig` for ``task`` writing checkpoints to ``output_dir``."""
    return TrainConfig(task=task, output_dir=output_dir)


def check_recipe(config: Any, recipe: str) -> None:
    """Raise ValueError unless ``config.recipe`` is ``recipe`` (a config file names its recipe)."""
    if config.recipe != recipe:
        raise ValueError(f"a {type(config).__name__} has recipe {recipe!r}, got {config.recipe!r}")
