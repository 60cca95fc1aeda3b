"""The anatomy check on the page: what the gate saw beside each image, and images it refuses.

The rule itself is :func:`radtriage.triage.decide`, the one the CLI and the PACS connector apply;
this module only shows its outcome.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import streamlit as st

from radtriage import tasks
from radtriage.anatomy import AnatomyVerdict
from radtriage.dashboard import engine
from radtriage.triage import FORCED, NO_GATE, REFUSED, decide, tag_conflict


@dataclass(frozen=True)
class Check:
    """The gate's outcome for one image and the chosen model.

    Attributes:
        verdict: what the gate saw (None: no gate installed).
        ood_ratio: distance to the model's training images / its limit (None: not measured).
        status: "ok", "forced" or "refused" (:func:`radtriage.triage.decide`).
        message: the refusal sentence ("" when ok).
        conflict: a sentence when DICOM Body Part Examined disagrees with the pixels, else "".
    """

    verdict: AnatomyVerdict | None
    ood_ratio: float | None
    status: str
    message: str
    conflict: str

    @property
    def shown(self) -> bool:
        return self.status != REFUSED


def check(task: tasks.Task, decoded: engine.Decoded, verdict: AnatomyVerdict | None, ood_ratio: float | None,
          force: bool) -> Check:
    """Apply the triage rule to one image."""
    status, message = decide(verdict, task, ood_ratio, force)
    return Check(verdict, ood_ratio, status, message, tag_conflict(decoded.metadata.body_part_examined, verdict))


def summary(c: Check) -> str:
    """One line for beside the image: what the gate saw and how near the model's training images it is."""
    if c.verdict is None:
        return NO_GATE
    seen = f"Anatomy check: {c.verdict.phrase} (probability {c.verdict.probability:.2f})"
    if c.ood_ratio is None:
        return seen + "."
    where = "within" if c.ood_ratio <= 1 else "outside"
    return (f"{seen}; {where} the range of the images the model learnt from "
            f"(distance {c.ood_ratio:.2f} x the limit).")


def show(c: Check, name: str | None = None) -> None:
    """The check's line (prefixed with the file's ``name`` when given), and its warnings: the refusal
    (or the override) and a tag conflict."""
    st.caption(f"{name}: {summary(c)}" if name else summary(c))
    if c.status == REFUSED:
        st.error(c.message, icon=":material/block:")
    elif c.status == FORCED:
        st.warning(c.message, icon=":material/warning:")
    if c.conflict:
        st.warning(c.conflict, icon=":material/warning:")


def previews(decoded: Sequence[engine.Decoded], verdicts: Sequence[AnatomyVerdict | None]) -> None:
    """Each image at once, with what the gate saw, before any model is loaded or run."""
    columns = st.columns(min(4, max(1, len(decoded))))
    for i, (d, v) in enumerate(zip(decoded, verdicts)):
        with columns[i % len(columns)]:
            st.image(d.display, caption=d.name, width="stretch")
            st.caption(NO_GATE if v is None else f"Anatomy check: {v.phrase} (probability {v.probability:.2f}).")


def refused(decoded: engine.Decoded, c: Check) -> None:
    """An image the model does not read: the image and the sentence, no probabilities."""
    left, right = st.columns([1, 1])
    with left:
        st.image(decoded.display, caption=decoded.name, width="stretch")
    with right:
        show(c)
        st.caption("Turn on 'Show results the anatomy check refuses' in the sidebar to see the model's output "
                   "anyway, or choose another model.")
