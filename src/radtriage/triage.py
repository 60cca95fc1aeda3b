"""The one place that decides, for every image, which model reads it and whether its result is shown.

The CLI, the dashboard and the PACS connector all go through :class:`Triage`:

1. The anatomy gate (:mod:`radtriage.anatomy`) says what the pixels show. DICOM Body Part Examined
   is only a hint: when it disagrees with the pixels, a warning says so and the pixels decide.
2. The model: the one the caller asked for (a task or a model folder), or, in automatic mode, the
   task whose anatomy the gate saw (:func:`radtriage.tasks.for_anatomy`).
3. :func:`decide`: an image of the wrong anatomy for that model, or out of its distribution
   (:mod:`radtriage.ood`: unlike the images it learnt from), gets no probabilities, status
   "refused" and one sentence. With ``force`` the result is shown with status "forced" and the same
   sentence as a warning.

Without an installed gate (no ``model/anatomy``) the anatomy is not checked; every result then
carries a warning saying so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from radtriage import labels, locations, tasks
from radtriage.anatomy import GATE_FOLDER, AnatomyGate, AnatomyVerdict
from radtriage.artifact import ArtifactError, read_metadata
from radtriage.predictor import BasePredictor, Prediction
from radtriage.preprocess import LoadFailure, Loaded, PreprocessConfig, load_and_preprocess, try_load

OK, FORCED, REFUSED, ERROR = "ok", "forced", "refused", "error"
NO_GATE = "No anatomy gate is installed: whether this image is what the model was trained on was not checked."


@dataclass(frozen=True)
class ImageResult:
    """What the triage made of one image.

    Attributes:
        name: the caller's display name (a file name; never a patient identifier).
        status: "ok", "forced" (would be refused; shown because the check was overridden),
            "refused" (no probabilities) or "error" (the file could not be read).
        message: one plain sentence when the status is not "ok", else "".
        task: the task whose model read (or would read) it, or None.
        anatomy: the gate's verdict, or None (no gate, or unreadable file).
        ood_ratio: distance to the model's training images / its threshold (> 1: out of
            distribution), or None when not measured.
        prediction: calibrated probabilities and flags when the status is "ok" or "forced".
        warnings: other notes (a tag that disagrees with the pixels, a loader note).
        model_input: the (S, S, 1) model input, for Grad-CAM (None for errors).
        error_code: the loader's error code for "error" rows, else "".
    """

    name: str
    status: str
    message: str
    task: str | None = None
    anatomy: AnatomyVerdict | None = None
    ood_ratio: float | None = None
    prediction: Prediction | None = None
    warnings: tuple[str, ...] = ()
    model_input: np.ndarray | None = field(default=None, repr=False, compare=False)
    error_code: str = ""

    @property
    def shown(self) -> bool:
        """True when its probabilities may be shown (status "ok" or "forced")."""
        return self.status in (OK, FORCED)


def refusal(verdict: AnatomyVerdict | None, task: tasks.Task, ood_ratio: float | None) -> str:
    """The sentence that refuses an image for ``task``'s model, or "" when the model may read it.

    Args:
        verdict: the gate's verdict (None: not checked).
        task: the task whose model would read the image.
        ood_ratio: distance / threshold of the model's OOD score (None: not measured).
    """
    if verdict is not None and verdict.anatomy != task.anatomy:
        if verdict.anatomy == "not a radiograph":
            return (f"This does not look like a radiograph (gate probability {verdict.probability:.2f}); "
                    f"{task.model_phrase} does not read it.")
        return (f"This looks like {verdict.phrase} (gate probability {verdict.probability:.2f}); "
                f"{task.model_phrase} does not read those.")
    if ood_ratio is not None and ood_ratio > 1:
        return (f"This image is unlike the images {task.model_phrase} learnt from (its distance from them is "
                f"{ood_ratio:.1f} times the limit that 99 % of held-out training-like images stay within), "
                "so its probabilities would not be trustworthy.")
    return ""


def decide(verdict: AnatomyVerdict | None, task: tasks.Task, ood_ratio: float | None,
           force: bool = False) -> tuple[str, str]:
    """(status, message) of an image for ``task``'s model: "ok", or "refused" / "forced" with the sentence."""
    why = refusal(verdict, task, ood_ratio)
    if not why:
        return OK, ""
    return (FORCED, f"Shown because the check was overridden: {why}") if force else (REFUSED, why)


def no_model(verdict: AnatomyVerdict) -> str:
    """The sentence for an image that no model reads (automatic mode)."""
    seen = ("This does not look like a radiograph" if verdict.anatomy == "not a radiograph"
            else f"This looks like {verdict.phrase}")
    return (f"{seen} (gate probability {verdict.probability:.2f}); "
            "no model here reads it (chest and upper-limb radiographs only).")


def tag_conflict(body_part: str | None, verdict: AnatomyVerdict | None) -> str:
    """A warning when DICOM Body Part Examined names another anatomy than the pixels show, else ""."""
    hint = labels.anatomy_from_body_part(body_part)
    if verdict is None or hint is None or hint == verdict.anatomy:
        return ""
    seen = ("do not look like a radiograph" if verdict.anatomy == "not a radiograph"
            else f"look like {verdict.phrase}")
    return (f"The DICOM tag Body Part Examined says {body_part.strip().upper()}, but the pixels {seen} "
            f"(gate probability {verdict.probability:.2f}): the pixels decide.")


class Triage:
    """Route images to models and apply the gate, for a batch of files or preprocessed inputs.

    Args:
        task: the task asked for (None: automatic, from the pixels).
        model_dir: an explicit model folder (its task is then the one asked for).
        force: show results the gate would refuse, with a warning.
        backend: "auto" | "keras" | "litert" for the models (:func:`radtriage.serving.load_predictor`).
        gate_dir: the gate folder (default: ``<model directory>/anatomy``); None when absent.
        explain: the models must draw Grad-CAM heatmaps.
    """

    def __init__(self, task: str | None = None, *, model_dir: str | Path | None = None, force: bool = False,
                 backend: str = "auto", gate_dir: str | Path | None = None, explain: bool = False) -> None:
        self.force, self.backend, self.explain = force, backend, explain
        self._dirs = {t.name: locations.model_dir() / t.model_folder for t in tasks.TASKS.values()}
        if model_dir is not None:
            task = read_metadata(model_dir).task
            self._dirs[task] = Path(model_dir)
        self.task = tasks.get(task) if task else None
        gate_dir = Path(gate_dir) if gate_dir else locations.model_dir() / GATE_FOLDER
        self.gate = AnatomyGate(gate_dir) if (gate_dir / "metadata.json").is_file() else None
        self._predictors: dict[str, BasePredictor] = {}

    @property
    def input_config(self) -> PreprocessConfig:
        """The preprocessing of the inputs :meth:`run` takes: the gate's, else the asked model's."""
        if self.gate is not None:
            return self.gate.preprocess_config
        return self.predictor((self.task or tasks.CHEST).name).preprocess_config

    def predictor(self, task: str) -> BasePredictor:
        """The model of ``task`` (loaded once). Raises ArtifactError when it cannot be used."""
        if task not in self._predictors:
            from radtriage.serving import load_predictor

            self._predictors[task] = load_predictor(self._dirs[task], self.backend, self.explain)
        return self._predictors[task]

    def model_dir(self, task: str) -> Path:
        """The folder of ``task``'s model."""
        return self._dirs[task]

    # ------------------------------------------------------------------------------ batches

    def run(self, names: Sequence[str], loaded: Sequence[Loaded | LoadFailure],
            sources: Sequence[Any] | None = None) -> list[ImageResult]:
        """Results of a batch of loaded files, in order.

        Args:
            names: display names.
            loaded: per file, a :class:`Loaded` made with :attr:`input_config`, or a :class:`LoadFailure`.
            sources: the files (paths or bytes), needed only when a model's preprocessing differs from
                :attr:`input_config` (the file is then loaded again for it).
        """
        results: list[ImageResult | None] = [None] * len(names)
        good = [i for i, item in enumerate(loaded) if isinstance(item, Loaded)]
        for i, item in enumerate(loaded):
            if isinstance(item, LoadFailure):
                results[i] = ImageResult(names[i], ERROR, item.message, self.task.name if self.task else None,
                                         error_code=item.code)
        verdicts = dict(zip(good, self.gate.assess(np.stack([loaded[i].x for i in good])))) if (
            self.gate is not None and good) else {}
        routes: dict[str, list[int]] = {}
        for i in good:
            verdict = verdicts.get(i)
            task = self.task or (tasks.for_anatomy(verdict.anatomy) if verdict else
                                 tasks.for_anatomy(labels.anatomy_from_body_part(loaded[i].body_part)) or tasks.CHEST)
            if task is None:
                results[i] = ImageResult(names[i], REFUSED, no_model(verdict), None, verdict,
                                         warnings=self._notes(loaded[i], verdict), model_input=loaded[i].x)
            else:
                routes.setdefault(task.name, []).append(i)
        for name, idx in routes.items():
            task = tasks.get(name)
            try:
                predictor = self.predictor(name)
            except ArtifactError as err:
                for i in idx:
                    results[i] = ImageResult(names[i], ERROR, f"{task.model_phrase.capitalize()} cannot be used: {err}",
                                             name, verdicts.get(i), error_code="model")
                continue
            x = self._inputs(predictor, [loaded[i] for i in idx], [sources[i] for i in idx] if sources else None)
            probs, ratios = predictor.score_batch(x)
            for k, i in enumerate(idx):
                ratio = None if ratios is None else float(ratios[k])
                status, message = decide(verdicts.get(i), task, ratio, self.force)
                results[i] = ImageResult(
                    names[i], status, message, name, verdicts.get(i), ratio,
                    predictor.to_prediction(probs[k]) if status != REFUSED else None,
                    self._notes(loaded[i], verdicts.get(i)), x[k])
        return [r for r in results if r is not None]

    def read(self, sources: Sequence[tuple[str, Any]]) -> list[ImageResult]:
        """Results of files given as (display name, path or bytes) pairs, loaded in this process."""
        config = self.input_config
        loaded = [try_load(src, config, name) for name, src in sources]
        return self.run([n for n, _ in sources], loaded, [s for _, s in sources])

    def _inputs(self, predictor: BasePredictor, loaded: list[Loaded], sources: list[Any] | None) -> np.ndarray:
        if predictor.preprocess_config == self.input_config:
            return np.stack([item.x for item in loaded])
        if sources is None:
            raise ValueError("the model's preprocessing differs from the gate's: pass the sources to reload them")
        return np.stack([load_and_preprocess(s, predictor.preprocess_config)[1] for s in sources])

    def _notes(self, item: Loaded, verdict: AnatomyVerdict | None) -> tuple[str, ...]:
        notes = list(item.warnings)
        conflict = tag_conflict(item.body_part, verdict)
        if conflict:
            notes.append(conflict)
        if self.gate is None:
            notes.append(NO_GATE)
        return tuple(notes)

