"""The PACS job: query new studies, retrieve their radiographs, read them, store the findings.

For each study found (QIDO-RS: modality, date, or the UIDs asked for):

1. skip it when it already holds a findings SR made by the models this installation uses (recognised
   from the SRs on the server: their series description, then the model SHA-256s inside them);
2. retrieve its CR/DX radiographs (WADO-RS), leaving every other instance (reports, PDFs, our own
   series) alone, and read them (:func:`radtriage.pacs.analysis.analyse_study`);
3. check that the study did not change while it was read, then store (STOW-RS) the findings SR and
   the overlay as new series of the same study (:mod:`radtriage.pacs.findings`). The originals are
   only ever read.

Every study and every image that could not be done gets one row with one sentence and the batch goes
on; a study that failed is tried again by the next run. Rows and messages name studies by a short
hash of their UID (:func:`short_id`) and images by their place in the study: no patient identifier
and no DICOM value from the originals is ever printed.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import logging
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import pydicom
import requests
from pydicom.uid import (
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    DigitalXRayImageStorageForProcessing,
)
from tqdm import tqdm

from radtriage.pacs import analysis, findings
from radtriage.pacs.client import PacsError, describe_failure

logger = logging.getLogger(__name__)
DEFAULT_MODALITIES = ("CR", "DX")
IMAGE_CLASSES = frozenset({ComputedRadiographyImageStorage, DigitalXRayImageStorageForPresentation,
                           DigitalXRayImageStorageForProcessing})
# QIDO-RS attribute tags
STUDY_UID, SERIES_UID, SOP_UID, SOP_CLASS = "0020000D", "0020000E", "00080018", "00080016"
MODALITY, SERIES_DESCRIPTION, SERIES_NUMBER, INSTANCE_NUMBER = "00080060", "0008103E", "00200011", "00200013"
STUDY_DATE, STUDY_TIME, MODALITIES_IN_STUDY, BODY_PART = "00080020", "00080030", "00080061", "00180015"
INSTANCE_FIELDS = ["SOPClassUID", "Modality", "SeriesDescription", "SeriesNumber", "InstanceNumber"]
PAGE = 200  # QIDO-RS results per request
ALREADY_DONE = "Already read by the current models (its findings SR is on the PACS)."

Analyse = Callable[[Sequence[tuple[str, bytes]]], analysis.StudyAnalysis]


@dataclass(frozen=True)
class Row:
    """One line of the job's report: a study's outcome, or an image that could not be read.

    Attributes:
        study: short hashed study ID (:func:`short_id`).
        image: "image N" for an image row, "" for a study row.
        status: "written", "dry-run", "skipped", "failed" (study) or "refused", "error" (image).
        detail: one sentence.
    """

    study: str
    image: str
    status: str
    detail: str


@dataclass
class Summary:
    """Counts of one run; :meth:`line` is its one-line summary."""

    studies: int = 0
    written: int = 0
    dry_run: int = 0
    skipped: int = 0
    failed: int = 0
    images_read: int = 0
    images_not_read: int = 0
    overlays: int = 0
    seconds: float = 0.0
    rows: list[Row] = field(default_factory=list)

    def line(self) -> str:
        """E.g. "pacs: 3 studies: 2 written (1 overlay), 1 skipped, 0 failed; 4 images read, 1 not; 9.1 s"."""
        done = f"{self.dry_run} dry-run" if self.dry_run else f"{self.written} written ({self.overlays} overlays)"
        return (f"pacs: {self.studies} studies: {done}, {self.skipped} skipped, {self.failed} failed; "
                f"{self.images_read} images read, {self.images_not_read} not; {self.seconds:.1f} s")


def short_id(uid: str) -> str:
    """A short, stable, non-reversible study ID for output (10 hex digits of the UID's SHA-256)."""
    return hashlib.sha256(uid.encode("ascii", "replace")).hexdigest()[:10]


def search_all(search: Callable[..., list[dict[str, Any]]], key: str, **kwargs: Any) -> list[dict[str, Any]]:
    """Every result of a QIDO-RS search, page by page, each once (by its ``key`` tag's value).

    Not dicomweb-client's ``get_remaining``: a server that ignores ``offset`` (Orthanc 1.10's DICOMweb
    plugin does, with some filters) would make it loop for ever; here a page that brings nothing new ends it.
    """
    found: dict[Any, dict[str, Any]] = {}
    offset = 0
    while True:
        page = search(limit=PAGE, offset=offset, **kwargs)
        new = {_value(r, key): r for r in page if _value(r, key) not in found}
        found.update(new)
        if not new or len(page) < PAGE:
            return list(found.values())
        offset += len(page)


def _value(obj: dict[str, Any], tag: str, default: Any = None) -> Any:
    """First value of a DICOM JSON attribute."""
    values = obj.get(tag, {}).get("Value") or [default]
    return values[0]


# ----------------------------------------------------------------------------------- querying


def _query_studies(client: Any, since: datetime.date | None, modalities: Sequence[str], study_uids: Sequence[str],
                   fields: Sequence[str]) -> dict[str, dict[str, Any]]:
    """QIDO-RS study results by UID, each once, in the server's order (see :func:`find_studies`)."""
    if study_uids:
        queries = [{"StudyInstanceUID": uid} for uid in study_uids]
    else:
        date = {"StudyDate": f"{since:%Y%m%d}-"} if since else {}
        queries = [{"ModalitiesInStudy": m, **date} for m in modalities]
    found: dict[str, dict[str, Any]] = {}
    for filters in queries:
        for study in search_all(client.search_for_studies, STUDY_UID, search_filters=filters, fields=list(fields)):
            uid = _value(study, STUDY_UID)
            if uid:
                found.setdefault(uid, study)
    return found


def find_studies(client: Any, *, since: datetime.date | None = None,
                 modalities: Sequence[str] = DEFAULT_MODALITIES, study_uids: Sequence[str] = ()) -> list[str]:
    """Study Instance UIDs to process, in the server's order, each once.

    Args:
        client: a ``DICOMwebClient``.
        since: only studies on or after this date (StudyDate).
        modalities: only studies holding a series of one of these modalities.
        study_uids: these studies only (date and modality filters then do not apply to the query).
    """
    return list(_query_studies(client, since, modalities, study_uids, ["StudyInstanceUID"]))


@dataclass(frozen=True)
class StudyEntry:
    """A study as a list shows it: its date, modalities, radiographs' body parts and :func:`short_id`.

    Attributes:
        uid: the Study Instance UID, to open it (never shown: ``repr`` hides it).
        id: :func:`short_id` of the UID, what the page and the CLI's rows show.
        date: "YYYY-MM-DD", or "" when the study has none.
        modalities: the study's modalities (ModalitiesInStudy).
        body_parts: Body Part Examined of its radiograph series, as tagged (the anatomy gate decides).
    """

    uid: str = field(repr=False)
    id: str
    date: str
    modalities: tuple[str, ...]
    body_parts: tuple[str, ...]


def recent_studies(client: Any, *, since: datetime.date | None = None,
                   modalities: Sequence[str] = DEFAULT_MODALITIES, limit: int = 50) -> list[StudyEntry]:
    """The newest ``limit`` studies holding a radiograph of ``modalities`` (by study date and time), newest first.

    One QIDO-RS series query per study listed gives its body parts; nothing identifying the patient is asked for.
    """
    found = _query_studies(client, since, modalities, (), ["StudyDate", "StudyTime", "ModalitiesInStudy"])
    newest = sorted(found.items(), reverse=True,
                    key=lambda kv: (str(_value(kv[1], STUDY_DATE, "")), str(_value(kv[1], STUDY_TIME, ""))))
    return [_entry(client, uid, study, modalities) for uid, study in newest[:limit]]


def _entry(client: Any, uid: str, study: dict[str, Any], modalities: Sequence[str]) -> StudyEntry:
    series = client.search_for_series(study_instance_uid=uid, fields=["BodyPartExamined"])
    parts = {str(_value(s, BODY_PART, "")).strip().upper() for s in series if _value(s, MODALITY) in modalities}
    date = str(_value(study, STUDY_DATE, ""))
    return StudyEntry(uid, short_id(uid), f"{date[:4]}-{date[4:6]}-{date[6:8]}" if len(date) == 8 else "",
                      tuple(study.get(MODALITIES_IN_STUDY, {}).get("Value") or ()), tuple(sorted(parts - {""})))


def _instances(client: Any, study_uid: str) -> list[dict[str, Any]]:
    return search_all(client.search_for_instances, SOP_UID, study_instance_uid=study_uid, fields=INSTANCE_FIELDS)


def _ours(instance: dict[str, Any]) -> bool:
    return str(_value(instance, SERIES_DESCRIPTION, "")).startswith(findings.DESCRIPTION_PREFIX)


def done_by(client: Any, study_uid: str, instances: Iterable[dict[str, Any]]) -> list[set[str]]:
    """The model sets ("task=sha256") of the radtriage SRs already in a study, one set per SR."""
    made = []
    for inst in instances:
        if _ours(inst) and _value(inst, MODALITY) == "SR":
            sr = client.retrieve_instance(study_uid, _value(inst, SERIES_UID), _value(inst, SOP_UID))
            made.append(findings.models_of(sr))
    return made


def radiographs(instances: Iterable[dict[str, Any]], modalities: Sequence[str]) -> list[dict[str, Any]]:
    """The instances to read: CR/DX image storage of the chosen modalities, not ours, in series order."""
    chosen = [i for i in instances if _value(i, SOP_CLASS) in IMAGE_CLASSES and _value(i, MODALITY) in modalities
              and not _ours(i)]
    return sorted(chosen, key=lambda i: (int(_value(i, SERIES_NUMBER, 0) or 0), int(_value(i, INSTANCE_NUMBER, 0) or 0)))


def _file_bytes(ds: pydicom.Dataset) -> bytes:
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def _retrieve(client: Any, study_uid: str, instance: dict[str, Any]) -> pydicom.Dataset:
    return client.retrieve_instance(study_uid, _value(instance, SERIES_UID), _value(instance, SOP_UID),
                                    media_types=(("application/dicom", "*"),))


def retrieve_radiographs(client: Any, study_uid: str, listing: Iterable[dict[str, Any]],
                         modalities: Sequence[str] = DEFAULT_MODALITIES) -> list[pydicom.Dataset]:
    """The study's radiographs (:func:`radiographs` of its ``listing``), retrieved over WADO-RS in series order."""
    return [_retrieve(client, study_uid, i) for i in radiographs(listing, modalities)]


def sources_of(originals: Sequence[pydicom.Dataset]) -> list[tuple[str, bytes]]:
    """(display name, DICOM file bytes) per image: "image N" by its place in the study, never a DICOM value."""
    return [(f"image {n}", _file_bytes(ds)) for n, ds in enumerate(originals, 1)]


def fetch_study(client: Any, study_uid: str, modalities: Sequence[str] = DEFAULT_MODALITIES) -> list[tuple[str, bytes]]:
    """A study's radiographs as :func:`sources_of` pairs (QIDO-RS listing, then WADO-RS), for a viewer."""
    return sources_of(retrieve_radiographs(client, study_uid, _instances(client, study_uid), modalities))


def is_done(client: Any, study_uid: str, listing: Iterable[dict[str, Any]], current: set[str]) -> bool:
    """True when the study holds a findings SR made by the ``current`` models ("task=sha256") or a subset."""
    return any(made and made <= current for made in done_by(client, study_uid, listing))


def current_models() -> set[str]:
    """The models this installation uses, as "task=sha256" strings (metadata.json only; loads nothing)."""
    return {f"{task}={sha}" for task, sha in analysis.current_identities().items()}


# ----------------------------------------------------------------------------------- one study


def _verdict_text(result: analysis.StudyAnalysis) -> str:
    parts = []
    for v in result.verdicts:
        where = "study" if v.unit == "study" else result.reads[v.images[0]].name
        parts.append(f"{v.task} {where}: {', '.join(v.prediction.flagged) or 'nothing flagged'}")
    return "; ".join(parts) + ("; overlay stored." if result.overlay is not None else ".")


@dataclass
class _Job:
    client: Any
    modalities: Sequence[str]
    dry_run: bool
    analyse: Analyse
    summary: Summary
    current: set[str]

    def study(self, uid: str) -> None:
        sid = short_id(uid)
        try:
            status, detail = self._study(uid, sid)
        except PacsError as e:
            status, detail = "failed", str(e)
        except requests.RequestException as e:
            status, detail = "failed", describe_failure(e, self.client.base_url)
        except Exception as e:  # noqa: BLE001 - the batch goes on; no message: it might quote a DICOM value
            logger.debug("study %s failed", sid, exc_info=True)
            status, detail = "failed", f"This study could not be processed ({type(e).__name__}); please report it."
        counter = {"written": "written", "dry-run": "dry_run", "skipped": "skipped"}.get(status, "failed")
        setattr(self.summary, counter, getattr(self.summary, counter) + 1)
        self.summary.rows.append(Row(sid, "", status, detail))

    def _study(self, uid: str, sid: str) -> tuple[str, str]:
        listing = _instances(self.client, uid)
        if is_done(self.client, uid, listing, self.current):
            return "skipped", ALREADY_DONE
        originals = retrieve_radiographs(self.client, uid, listing, self.modalities)
        if not originals:
            return "skipped", f"No {' or '.join(self.modalities)} radiograph in this study."
        result = self.analyse(sources_of(originals))
        self._image_rows(sid, result)
        if not result.verdicts:
            return "failed", "No radiograph of this study could be read (see its image rows)."
        if self.dry_run:
            return "dry-run", _verdict_text(result)
        if {_value(i, SOP_UID) for i in _instances(self.client, uid) if not _ours(i)} != \
                {_value(i, SOP_UID) for i in listing if not _ours(i)}:
            return "failed", "The study changed while it was read; the next run will read it again."
        ids = findings.uids(uid, result.models)
        sc = findings.build_sc(result, originals, ids)
        sr = findings.build_sr(result, originals, ids)
        self.client.store_instances([sc, sr] if sc is not None else [sr], study_instance_uid=uid)
        self.summary.overlays += sc is not None
        return "written", _verdict_text(result)

    def _image_rows(self, sid: str, result: analysis.StudyAnalysis) -> None:
        for read in result.reads:
            if read.prediction is None:
                self.summary.images_not_read += 1
                self.summary.rows.append(Row(sid, read.name, read.status, read.message))
            else:
                self.summary.images_read += 1


def run(client: Any, *, since: datetime.date | None = None, modalities: Sequence[str] = DEFAULT_MODALITIES,
        study_uids: Sequence[str] = (), dry_run: bool = False, progress: bool = True,
        analyse: Analyse | None = None, stream: TextIO | None = None) -> Summary:
    """Process the studies of a PACS (see the module docstring).

    Args:
        client: a ``DICOMwebClient`` (:func:`radtriage.pacs.client.connect`).
        since: only studies on or after this date.
        modalities: radiograph modalities to read (CR and DX by default).
        study_uids: these studies only.
        dry_run: read and report, write nothing.
        progress: show a progress bar on ``stream``.
        analyse: the analysis step (default :func:`radtriage.pacs.analysis.analyse_study`).
        stream: where the progress bar goes (default stderr).

    Returns:
        The :class:`Summary`, its rows included.

    Raises:
        PacsError: the study query itself failed (server unreachable, credentials refused): nothing
            was done.
    """
    start = time.perf_counter()
    try:
        uids = find_studies(client, since=since, modalities=modalities, study_uids=study_uids)
    except Exception as e:  # noqa: BLE001 - any failure of the first request is told in one sentence
        raise PacsError(describe_failure(e, client.base_url)) from None
    summary = Summary(studies=len(uids))
    if study_uids:
        for missing in sorted(set(study_uids) - set(uids)):
            summary.rows.append(Row(short_id(missing), "", "failed", "The PACS holds no study with this UID."))
            summary.failed += 1
            summary.studies += 1
    job = _Job(client, tuple(modalities), dry_run, analyse or analysis.analyse_study, summary, current_models())
    for uid in tqdm(uids, desc="pacs", unit="study", file=stream or sys.stderr, disable=not progress):
        job.study(uid)
    summary.seconds = time.perf_counter() - start
    return summary


def write_rows(rows: Sequence[Row], stream: TextIO) -> None:
    """The rows as tab-separated lines under a header (nothing when there is no row)."""
    if rows:
        stream.write("study\timage\tstatus\tdetail\n")
        stream.writelines(f"{r.study}\t{r.image or '-'}\t{r.status}\t{r.detail}\n" for r in rows)
