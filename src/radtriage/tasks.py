"""The task registry: each kind of model radtriage serves, declared once.

A *task* is what a model does (its classes, the anatomy it reads, whether its verdict is per image
or per study); a *run config* names the *recipe* that trains a model for a task
(:mod:`radtriage.runs`). The dashboard, the CLI's choices, training, metadata validation and the
export check all read this registry, so adding a model means adding a :class:`Task` here (and its
recipe), never editing the app.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from radtriage import labels

Unit = Literal["image", "study"]


@dataclass(frozen=True)
class Task:
    """One model task.

    Attributes:
        name: identifier in metadata, CLI flags and configs ("chest", "mura"); also the default
            model folder name under the model directory.
        label: how the page and the CLI name the model.
        classes: the task's classes in output order (from :mod:`radtriage.labels`); a model outputs
            them, or an in-order subset of them followed by ``extra_classes``.
        anatomy: what the images show ("chest", "limb"), as :func:`labels.anatomy_from_body_part` says it.
        unit: "image" (each image gets its own verdict) or "study" (the verdict is the mean of the
            study's images, :func:`radtriage.contract.study_mean`).
        anatomy_phrase: the anatomy in a sentence ("a chest", "an upper limb").
        render_check_image: ``(index, side) -> (H, W) float32 in [0, 1]``: a phantom of the task,
            with a finding for odd indices, used to verify exports (:mod:`radtriage.export`).
        default_recipe: the training recipe ``radtriage train --task NAME`` starts from
            (:data:`radtriage.runs.RECIPES`).
        extra_classes: optional summary outputs after the classes (chest: "Any finding").
    """

    name: str
    label: str
    classes: tuple[str, ...]
    anatomy: str
    unit: Unit
    anatomy_phrase: str
    render_check_image: Callable[[int, int], np.ndarray]
    default_recipe: str
    extra_classes: tuple[str, ...] = ()

    @property
    def outputs(self) -> tuple[str, ...]:
        """Every class a model of this task may output, in the required order."""
        return (*self.classes, *self.extra_classes)

    @property
    def model_phrase(self) -> str:
        """The model in a sentence: "the chest model", "the upper-limb model"."""
        return f"the {self.anatomy_phrase.split(' ', 1)[1].replace(' ', '-')} model"

    @property
    def model_folder(self) -> str:
        """Folder name of the task's default model under the model directory."""
        return self.name


def _chest_check_image(i: int, side: int) -> np.ndarray:
    from radtriage.phantoms import render_chest

    findings = [labels.CHEST_CLASSES[i % len(labels.CHEST_CLASSES)]] if i % 2 else []
    return render_chest(7000 + i, size=side, findings=findings).image


def _limb_check_image(i: int, side: int) -> np.ndarray:
    from radtriage.phantoms import render_limb

    study = labels.MURA_STUDY_TYPES[i % len(labels.MURA_STUDY_TYPES)]
    return render_limb(study, 7000 + i, size=side, abnormality="fracture" if i % 2 else None).image


CHEST = Task("chest", "Chest (14 findings)", labels.CHEST_CLASSES, "chest", "image", "a chest", _chest_check_image,
             default_recipe="chest", extra_classes=(labels.ANY_FINDING,))
MURA = Task("mura", "Upper limb (MURA normal/abnormal)", labels.MURA_CLASSES, "limb", "study", "an upper limb",
            _limb_check_image, default_recipe="mura")

TASKS: dict[str, Task] = {t.name: t for t in (CHEST, MURA)}


def names() -> tuple[str, ...]:
    """Every task name, in registry order (the CLI's ``--task`` choices)."""
    return tuple(TASKS)


def get(name: str) -> Task:
    """The task called ``name``.

    Raises:
        ValueError: no such task (the message lists the known ones).
    """
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; known: {', '.join(TASKS)}") from None


def for_anatomy(anatomy: str | None) -> Task | None:
    """The task that reads images of ``anatomy`` ("chest", "limb"), or None."""
    return next((t for t in TASKS.values() if t.anatomy == anatomy), None)


def for_unit(unit: Unit) -> Task | None:
    """The first task whose verdict is made per ``unit`` ("image" or "study"), or None."""
    return next((t for t in TASKS.values() if t.unit == unit), None)
