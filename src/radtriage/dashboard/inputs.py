"""What to analyse: the bundled examples gallery, the uploader, and which model / study type.

:func:`ingest` ``(name, bytes) -> Item`` is the one entry point for a file, whatever its source;
uploads stay in memory (Streamlit keeps them in RAM) and are never written to disk.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
import numpy as np
import streamlit as st

from radtriage import labels, radiograph, tasks
from radtriage.anatomy import AnatomyVerdict
from radtriage.dashboard import engine, imaging, settings

UPLOAD_KEY = "uploads"
EXAMPLE_KEY = "example"
SOURCE_KEY = "source"
FILES, PACS = "Files and examples", "PACS"
PHANTOM_NOTE = "synthetic phantom (made by radtriage's generator; not a patient image)"


@dataclass(frozen=True)
class Example:
    """One bundled example (a chest image or an upper-limb study) and its ground truth.

    Attributes:
        id: manifest id, e.g. "chest_02_cardiomegaly".
        files: paths of its images (a MURA study has 2-3).
        anatomy: "chest" or "limb".
        study_type: "CHEST PA" or a MURA study type ("XR_WRIST").
        label: 1 abnormal, 0 normal.
        findings: ground-truth finding names (chest: VinBigData classes; limb: the abnormality).
    """

    id: str
    files: tuple[Path, ...]
    anatomy: str
    study_type: str
    label: int
    findings: tuple[str, ...]

    @property
    def title(self) -> str:
        kind, number, *rest = self.id.split("_")
        return f"{kind.capitalize()} {number}: {' '.join(rest)}"

    def truth_text(self) -> str:
        """Ground truth in one sentence (the phantom generator's record, not a model output)."""
        if self.anatomy == "limb":
            verdict = f"abnormal ({', '.join(self.findings)})" if self.label else "normal"
            return f"Ground truth of this {PHANTOM_NOTE}: {verdict}."
        present = ", ".join(self.findings) if self.findings else "no finding"
        return f"Ground truth of this {PHANTOM_NOTE}: {present}."


@dataclass(frozen=True)
class Item:
    """A file to analyse, held in memory.

    Attributes:
        name: the file's base name.
        data: its bytes (never written to disk).
        digest: SHA-256 of ``data``: its identity in every cache.
        example: the bundled example it belongs to, or None for an upload.
    """

    name: str
    data: bytes = field(repr=False)
    digest: str
    example: Example | None = None


def ingest(name: str, data: bytes, example: Example | None = None) -> Item:
    """Wrap a file's name and bytes for analysis (the upload handler; no decoding yet)."""
    return Item(name=Path(name).name or "upload", data=bytes(data), digest=engine.digest_of(data), example=example)


@st.cache_data(show_spinner=False)
def load_examples(folder: str) -> list[Example]:
    """The examples listed in ``<folder>/manifest.json`` whose files exist (empty if none)."""
    manifest = Path(folder) / "manifest.json"
    if not manifest.is_file():
        return []
    entries = json.loads(manifest.read_text(encoding="utf-8")).get("examples", [])
    examples = []
    for e in entries:
        files = tuple(Path(folder) / f for f in e.get("files", []))
        if not files or not all(f.is_file() for f in files):
            continue
        if e.get("anatomy") == "limb":
            findings = (e["abnormality"],) if e.get("abnormality") else ()
        else:
            findings = tuple(f["name"] for f in e.get("findings", []))
        examples.append(Example(id=e["id"], files=files, anatomy=e.get("anatomy", "chest"),
                                study_type=e.get("study_type", ""), label=int(e.get("label", 0)), findings=findings))
    return examples


@st.cache_data(show_spinner=False)
def thumbnail(path: str) -> np.ndarray | None:
    """uint8 thumbnail of a bundled file (None if it does not load); bypasses the decode cache."""
    try:
        rg = radiograph.load(path, min_side=settings.THUMB_SIDE)
    except radiograph.RadiographError:
        return None
    return imaging.to_display(rg.pixels, settings.THUMB_SIDE)


def example_items(example: Example) -> list[Item]:
    """The example's files read into memory."""
    return [ingest(p.name, p.read_bytes(), example) for p in example.files]


def _pick(example_id: str) -> None:
    st.session_state[EXAMPLE_KEY] = example_id


def source() -> str:
    """The sidebar's source choice: uploads and bundled examples (:func:`sidebar`), or a PACS
    (:mod:`radtriage.dashboard.pacs_source`)."""
    return st.sidebar.radio("Source", (FILES, PACS), key=SOURCE_KEY, horizontal=True,
                            help="PACS: studies of the DICOMweb server configured in .streamlit/secrets.toml "
                                 "or the environment, as for 'radtriage pacs run'.")


def sidebar(examples: Sequence[Example]) -> list[Item]:
    """The sidebar's uploader and example picker; uploads win over a picked example.

    Returns:
        The files to analyse (empty when nothing is chosen).
    """
    st.sidebar.header("Input")
    uploads = st.sidebar.file_uploader(
        "Upload radiographs (DICOM, PNG or JPG; several files = one study)",
        accept_multiple_files=True,
        key=UPLOAD_KEY,
        help="Files stay in memory and are never saved. The format is read from the content, so DICOM "
        "files without an extension are fine.",
    )
    ids = [None, *(e.id for e in examples)]
    titles = {e.id: e.title for e in examples}
    st.sidebar.selectbox(
        "…or a bundled example (synthetic phantom)",
        ids,
        key=EXAMPLE_KEY,
        format_func=lambda i: "—" if i is None else titles[i],
    )
    if uploads:
        if len(uploads) > settings.MAX_FILES:
            st.sidebar.warning(f"Only the first {settings.MAX_FILES} files are analysed.")
        return [ingest(u.name, u.getvalue()) for u in uploads[: settings.MAX_FILES]]
    chosen = next((e for e in examples if e.id == st.session_state.get(EXAMPLE_KEY)), None)
    return example_items(chosen) if chosen else []


def gallery(examples: Sequence[Example], columns: int = 4) -> None:
    """Thumbnails of the bundled examples, each with a button that opens it."""
    if not examples:
        st.info("No bundled examples found (app_images/manifest.json is missing). Upload a file instead.")
        return
    st.subheader("Bundled examples")
    st.caption(f"Every example is a {PHANTOM_NOTE}; its ground truth is shown beside the prediction.")
    for row in range(0, len(examples), columns):
        for col, example in zip(st.columns(columns), examples[row : row + columns]):
            with col:
                thumb = thumbnail(str(example.files[0]))
                if thumb is not None:
                    st.image(thumb, caption=f"{example.title} ({len(example.files)} image"
                             f"{'s' if len(example.files) > 1 else ''}) — synthetic phantom")
                st.button("Analyse", key=f"open_{example.id}", on_click=_pick, args=(example.id,),
                          width="stretch")


# --- model and study type -----------------------------------------------------------------
def anatomy_of(decoded: engine.Decoded) -> str | None:
    """"chest", "limb" or None, from the DICOM BodyPartExamined tag."""
    return labels.anatomy_from_body_part(decoded.metadata.body_part_examined)


def suggested_task(decoded: Sequence[engine.Decoded], verdicts: Sequence[AnatomyVerdict | None],
                   example: Example | None) -> tuple[tasks.Task | None, str]:
    """The model the inputs call for, and why: the pixels (the anatomy gate, most images), else the
    example's anatomy, else DICOM BodyPartExamined; (None, reason) when nothing names a model."""
    seen = Counter(v.anatomy for v in verdicts if v is not None)
    readable = [(n, a) for a, n in seen.most_common() if tasks.for_anatomy(a)]
    if readable:
        return tasks.for_anatomy(readable[0][1]), "from the pixels (anatomy check)"
    if example is not None:
        return tasks.for_anatomy(example.anatomy), "from the example's anatomy"
    found = {a for a in (anatomy_of(d) for d in decoded) if a}
    if len(found) == 1:
        return tasks.for_anatomy(found.pop()), "from DICOM BodyPartExamined"
    if seen:
        return None, "the anatomy check found no chest or upper-limb radiograph"
    return None, "no anatomy check is installed and no DICOM body part was found"


def choose_model(decoded: Sequence[engine.Decoded], verdicts: Sequence[AnatomyVerdict | None],
                 example: Example | None) -> tasks.Task | None:
    """The model's task, chosen without a click (:func:`suggested_task`) and changeable in the sidebar.

    The radio lists every task of the registry; None only when nothing suggests a model and the
    user has not chosen one.
    """
    default, why = suggested_task(decoded, verdicts, example)
    names = list(tasks.names())
    key = "model_" + engine.digest_of("".join(d.digest for d in decoded).encode())[:16]
    choice = st.sidebar.radio(
        "Model",
        names,
        index=names.index(default.name) if default else None,
        format_func=lambda name: tasks.get(name).label,
        key=key,
        help="Chosen from what the images show (the anatomy check), else the DICOM body part; you can change it.",
    )
    if default and choice == default.name:
        st.sidebar.caption(f"Chosen {why}.")
    elif not default:
        st.sidebar.caption(f"No model chosen: {why}. Choose one to see its output.")
    return tasks.get(choice) if choice else None


def override_checks(example: Example | None) -> bool:
    """The sidebar toggle that shows results the anatomy check refuses (on for the bundled phantoms)."""
    return st.sidebar.toggle(
        "Show results the anatomy check refuses", value=example is not None,
        key=f"force_{example.id if example else 'upload'}",
        help="An image of another anatomy than the model's, or unlike the images it learnt from, gets no "
             "probabilities. Turn this on to see them anyway, with a warning. The bundled examples are synthetic "
             "phantoms, unlike the real radiographs the models learnt from, so it is on for them.")


def choose_study_type(decoded: Sequence[engine.Decoded], example: Example | None) -> str | None:
    """The MURA study type: from the example, else BodyPartExamined when all files agree, else asked.

    Without a body part it is None ("not given") until the user picks one: a guessed default would
    be written into the verdict, the CSV and the report as if it had been read from the images.
    """
    if example is not None and example.study_type in labels.MURA_STUDY_TYPES:
        st.sidebar.caption(f"Study type: {example.study_type} (from the example).")
        return example.study_type
    found = {labels.mura_study_type_from_body_part(d.metadata.body_part_examined) for d in decoded}
    if len(found) == 1 and None not in found:
        study_type = found.pop()
        st.sidebar.caption(f"Study type: {study_type} (from DICOM BodyPartExamined).")
        return study_type
    return st.sidebar.selectbox("Study type (no DICOM body part found)", [None, *labels.MURA_STUDY_TYPES],
                                format_func=lambda t: "not given" if t is None else t, key="study_type",
                                help="Recorded with the result only; the model reads the pixels, not the study type.")


def example_of(items: Sequence[Item]) -> Example | None:
    """The example the items come from (None for uploads)."""
    return items[0].example if items else None
