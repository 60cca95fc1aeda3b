"""The DICOM objects written back to the PACS, built with highdicom:

- a Comprehensive SR, TID 1500 "Imaging Measurement Report": one measurement group per verdict and
  class (probability, threshold, flagged yes/no, the model as TID 4019 Algorithm Identification with
  its SHA-256), one study-verdict group per model, each stating that it is for research use only, and
  one anatomy-check group per image (read by a model yes/no and the gate's sentence), so a reader
  sees why an image has no finding;
- a Secondary Capture of the Grad-CAM overlay of the top flagged finding, DERIVED/SECONDARY, with
  "RESEARCH USE ONLY" burnt into its pixels and written in its comments.

Both join the study they describe as new series; patient and study attributes come from the
originals (highdicom copies them), and no free-text field holds anything but model output. Their
UIDs derive from the study and the models (:func:`uids`), so storing the same result twice (a run
interrupted between two requests, then resumed) stores the same instances, never a duplicate.

:func:`models_of` reads back the models recorded in an SR: how a later run knows a study is done.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import highdicom as hd
import numpy as np
from PIL import Image, ImageDraw
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from radtriage import labels
from radtriage.pacs.analysis import ImageRead, ModelIdentity, StudyAnalysis, Verdict, anatomy_line

SR_DESCRIPTION = "radtriage findings - research use only"
SC_DESCRIPTION = "radtriage Grad-CAM overlay - research use only"
DESCRIPTION_PREFIX = "radtriage "  # how a run finds its own series among a study's
SR_SERIES_NUMBER, SC_SERIES_NUMBER = 9901, 9902
MANUFACTURER = "radtriage (open source research software)"
RESEARCH_USE = ("Research use only. Not a medical device: made by software, not reviewed by a clinician; "
                "do not use for diagnosis or treatment.")
BANNER = "RESEARCH USE ONLY - radtriage Grad-CAM"
SHA_PARAMETER = "model SHA-256 "  # TID 4019 Algorithm Parameters value, followed by the hex digest
TASK_PARAMETER = "task "
SCHEME = "99RADTRIAGE"  # private coding scheme, for concepts no standard code names

# Standard codes where pydicom's dictionary has the concept; the others are private (SCHEME)
_CLASS_CODES = {
    "Cardiomegaly": codes.SCT.Cardiomegaly,
    "Pleural effusion": codes.SCT.PleuralEffusion,
    "Pneumothorax": codes.SCT.Pneumothorax,
    labels.MURA_CLASSES[0]: codes.SCT.Abnormal,
}
_FLAGGED = hd.sr.CodedConcept("RT001", SCHEME, "Flagged (probability at or above threshold)")
_STUDY_FLAGGED = hd.sr.CodedConcept("RT002", SCHEME, "Study flagged by the model")
_ANATOMY_CHECK = hd.sr.CodedConcept("RT003", SCHEME, "Anatomy check")
_READ_BY_MODEL = hd.sr.CodedConcept("RT004", SCHEME, "Read by a model (passed the anatomy check)")
_NO_UNITS = codes.UCUM.NoUnits
_PROCEDURE = codes.SCT.PlainRadiography
_SITES = {"chest": codes.SCT.Chest, "mura": codes.SCT.UpperLimb}


@dataclass(frozen=True)
class Uids:
    """The UIDs of what one run writes for one study (deterministic: see the module docstring)."""

    sr_series: str
    sr_instance: str
    sc_series: str
    sc_instance: str


def models_key(models: Sequence[ModelIdentity]) -> str:
    """A stable text naming a set of models (task and SHA-256 of each)."""
    return ";".join(sorted(f"{m.task}={m.sha256}" for m in models))


def uids(study_uid: str, models: Sequence[ModelIdentity]) -> Uids:
    """The UIDs for ``study_uid`` read by ``models``: the same inputs always give the same UIDs."""
    key = [study_uid, models_key(models)]
    return Uids(*(generate_uid(entropy_srcs=[*key, part]) for part in ("sr-series", "sr", "sc-series", "sc")))


def _class_code(name: str) -> hd.sr.CodedConcept:
    code = _CLASS_CODES.get(name)
    if code is not None:
        return hd.sr.CodedConcept(code.value, code.scheme_designator, code.meaning)
    return hd.sr.CodedConcept(f"RT-{labels_slug(name)}", SCHEME, name)


def labels_slug(name: str) -> str:
    """A class name as a code value ("Nodule/Mass" -> "NODULE-MASS"; <= 16 characters)."""
    return "".join(ch if ch.isalnum() else "-" for ch in name.upper())[:13]


def _yes_no(value: bool) -> hd.sr.CodedConcept:
    code = codes.SCT.Yes if value else codes.SCT.No
    return hd.sr.CodedConcept(code.value, code.scheme_designator, code.meaning)


def _algorithm(model: ModelIdentity) -> hd.sr.AlgorithmIdentification:
    return hd.sr.AlgorithmIdentification(
        name=model.name, version=model.version,
        parameters=[f"{SHA_PARAMETER}{model.sha256}", f"{TASK_PARAMETER}{model.task}"],
        manufacturer=MANUFACTURER)


def _comment(group: hd.sr.MeasurementsAndQualitativeEvaluations, text: str) -> None:
    """Add a TEXT "Comment" to a group: TID 1501 has no coded slot for a statement or a note."""
    group[0].ContentSequence.append(hd.sr.TextContentItem(
        name=codes.DCM.Comment, value=text, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS))


def _where(verdict: Verdict, names: Sequence[str]) -> str:
    return "study" if verdict.unit == "study" else names[verdict.images[0]]


def _class_groups(verdict: Verdict, model: ModelIdentity, originals: Sequence[Dataset],
                  names: Sequence[str]) -> Iterator[hd.sr.MeasurementsAndQualitativeEvaluations]:
    """One group per class of a verdict: probability, threshold, flagged."""
    p = verdict.prediction
    sources = [hd.sr.SourceImageForMeasurementGroup.from_source_image(originals[i]) for i in verdict.images]
    where = _where(verdict, names)
    for cls, prob in p.probabilities.items():
        group = hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(identifier=f"{where}: {cls}"[:64]),
            finding_type=_class_code(cls),
            algorithm_id=_algorithm(model),
            finding_sites=[hd.sr.FindingSite(_SITES[verdict.task])] if verdict.task in _SITES else None,
            measurements=[
                hd.sr.Measurement(name=codes.DCM.Probability, value=round(prob, 6), unit=_NO_UNITS),
                hd.sr.Measurement(name=codes.DCM.ThresholdValue, value=round(p.thresholds[cls], 6), unit=_NO_UNITS),
            ],
            qualitative_evaluations=[hd.sr.QualitativeEvaluation(_FLAGGED, _yes_no(p.flags[cls]))],
            source_images=sources,
        )
        if verdict.unit == "study":
            _comment(group, f"The study's probability: the mean of its {len(verdict.images)} images' probabilities.")
        yield group


def _study_group(task: str, verdicts: Sequence[Verdict], model: ModelIdentity, names: Sequence[str],
                 overlay_note: str) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    """The study verdict of one model: flagged or not, what, where, and the research-use statement."""
    flagged = [f"{cls} ({_where(v, names)})" for v in verdicts for cls in v.prediction.flagged]
    text = f"Flagged: {', '.join(flagged)}." if flagged else "Nothing flagged."
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(identifier=f"study verdict: {task}"),
        finding_type=hd.sr.CodedConcept(codes.SCT.Finding.value, "SCT", codes.SCT.Finding.meaning),
        algorithm_id=_algorithm(model),
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(_STUDY_FLAGGED, _yes_no(bool(flagged)))],
    )
    for line in (text, overlay_note, RESEARCH_USE):
        _comment(group, line)
    return group


def _anatomy_group(read: ImageRead, original: Dataset) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    """An image's anatomy check: read by a model or not, and the gate's sentence (why, when refused)."""
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(identifier=f"{read.name}: anatomy check"[:64]),
        finding_type=_ANATOMY_CHECK,
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(_READ_BY_MODEL, _yes_no(read.prediction is not None))],
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(original)],
    )
    _comment(group, anatomy_line(read))
    return group


def build_sr(analysis: StudyAnalysis, originals: Sequence[Dataset], ids: Uids) -> hd.sr.ComprehensiveSR:
    """The findings SR of a study.

    Args:
        analysis: the study's verdicts and models.
        originals: the image datasets, one per read, in order (pixel data not needed).
        ids: from :func:`uids`.
    """
    names = [r.name for r in analysis.reads]
    models = {m.task: m for m in analysis.models}
    groups: list[hd.sr.MeasurementsAndQualitativeEvaluations] = []
    for task, model in models.items():
        mine = [v for v in analysis.verdicts if v.task == task]
        groups.append(_study_group(task, mine, model, names, analysis.overlay_note))
        for v in mine:
            groups.extend(_class_groups(v, model, originals, names))
    groups.extend(_anatomy_group(read, original) for read, original in zip(analysis.reads, originals))
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=generate_uid(entropy_srcs=["radtriage", models_key(analysis.models)]), name="radtriage",
        manufacturer_name=MANUFACTURER, model_name=", ".join(m.name for m in analysis.models)[:64])
    context = hd.sr.ObservationContext(observer_device_context=hd.sr.ObserverContext(
        observer_type=codes.DCM.Device, observer_identifying_attributes=device))
    report = hd.sr.MeasurementReport(observation_context=context, procedure_reported=_PROCEDURE,
                                     imaging_measurements=groups)
    sr = hd.sr.ComprehensiveSR(
        evidence=list(originals), content=report[0], series_instance_uid=ids.sr_series,
        series_number=SR_SERIES_NUMBER, sop_instance_uid=ids.sr_instance, instance_number=1,
        manufacturer=MANUFACTURER, is_complete=True, is_final=False, is_verified=False,
        series_description=SR_DESCRIPTION)
    return sr


def _banner(rgb: np.ndarray) -> np.ndarray:
    """Burn the research-use banner into the top-left corner of an RGB image."""
    im = Image.fromarray(rgb)
    draw = ImageDraw.Draw(im)
    size = max(10, rgb.shape[1] // 40)
    try:
        from PIL import ImageFont

        font = ImageFont.load_default(size=size)
    except (OSError, TypeError):  # an old Pillow without scalable default font
        font = None
    box = draw.textbbox((4, 4), BANNER, font=font)
    draw.rectangle((0, 0, box[2] + 4, box[3] + 4), fill=(0, 0, 0))
    draw.text((4, 4), BANNER, fill=(255, 255, 0), font=font)
    return np.asarray(im)


def build_sc(analysis: StudyAnalysis, originals: Sequence[Dataset], ids: Uids) -> hd.sc.SCImage | None:
    """The overlay as a Secondary Capture in the study, or None when the analysis has no overlay."""
    ov = analysis.overlay
    if ov is None:
        return None
    source = originals[ov.image]
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=source, pixel_array=_banner(ov.rgb), photometric_interpretation="RGB", bits_allocated=8,
        coordinate_system="PATIENT", series_instance_uid=ids.sc_series, series_number=SC_SERIES_NUMBER,
        sop_instance_uid=ids.sc_instance, instance_number=1, manufacturer=MANUFACTURER,
        patient_orientation=("L", "F"), series_description=SC_DESCRIPTION)
    # highdicom wants an orientation; the overlay has the source's (often unknown: Type 2, empty then)
    sc.PatientOrientation = source.get("PatientOrientation", "")
    sc.ImageType = ["DERIVED", "SECONDARY"]
    sc.BurnedInAnnotation = "YES"
    sc.ImageComments = f"{RESEARCH_USE} Grad-CAM heatmap of {ov.class_name} (probability {ov.probability:.2f})."[:10240]
    sc.DerivationDescription = f"Grad-CAM heatmap of {ov.class_name} blended over the source image by radtriage"
    ref = Dataset()
    ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = source.SOPClassUID, source.SOPInstanceUID
    sc.SourceImageSequence = [ref]
    return sc


def _walk(items: Sequence[Dataset]) -> Iterator[Dataset]:
    for item in items:
        yield item
        yield from _walk(getattr(item, "ContentSequence", []))


def models_of(sr: Dataset) -> set[str]:
    """The models that made an SR, as "task=sha256" strings (empty when it is not radtriage's)."""
    params = [item.TextValue for item in _walk(getattr(sr, "ContentSequence", []))
              if item.get("ValueType") == "TEXT" and item.ConceptNameCodeSequence[0].CodeValue == "111002"]
    shas = [p[len(SHA_PARAMETER):] for p in params if p.startswith(SHA_PARAMETER)]
    task_names = [p[len(TASK_PARAMETER):] for p in params if p.startswith(TASK_PARAMETER)]
    return {f"{t}={s}" for t, s in zip(task_names, shas)}
