"""Models and per-file results behind Streamlit's caches, so a rerun recomputes nothing.

Why this module exists (the "Grad-CAM takes ~1 s per rerun inside Streamlit" problem): Streamlit
re-executes the whole script on every widget change. Without caches each rerun rebuilt the model,
the Grad-CAM functional model and its ``tf.function`` (a fresh trace: ~1 s), re-decoded the file and
recomputed the heatmap even when only the opacity slider moved. Here:

* :func:`get_model` - one predictor per model folder and server process (``st.cache_resource``,
  shared by every session): the verified LiteRT export with its Grad-CAM graph when the model has
  one (:func:`radtriage.serving.load_predictor` with ``explain``: no TensorFlow in the server at all,
  a model loads in well under a second), else Keras, whose compiled functions are traced once.
* :func:`decode` - one decoded radiograph per file content (SHA-256), shared, bounded in number. The
  model input is made from that same decode (:func:`radtriage.preprocess.model_input`); only a large
  JPEG 2000 DICOM, whose display decode is at a finer resolution level than the model's, is decoded
  a second time, at the model's level (~20 ms), once for the gate and the model together
  (:func:`input_for`, cached per file and preprocessing).
* :func:`examine` / :func:`heatmap` - the :class:`~radtriage.predictor.Prediction`, the OOD ratio
  and heatmaps per (model, file hash[, class]) (``st.cache_data``): switching back to a class or
  moving a slider costs a dictionary look-up. One graph call gives the probabilities, the OOD
  features and a heatmap; a heatmap that would not be drawn (no flagged class) is not computed.
  A study's verdict is the contract's mean of its images' probabilities.
* :func:`warm_up` - the models (and TensorFlow with traced graphs, for a Keras-only model) load in a
  background thread from the first page render on, so the first upload after a server start does
  not wait for them.
* The opacity slider only re-blends (:func:`radtriage.dashboard.imaging.blend`), inside a fragment.
* With a Keras model: Streamlit calls ``keras.backend.clear_session()`` after *every* script run once Keras is imported
  (``_clean_problem_modules`` in its script runner, meant for apps that build models per run). With
  TensorFlow loaded that is a full ``gc.collect()`` (~0.8 s) plus a cleared kernel cache, on every
  rerun: the main part of the measured ~1 s. :func:`_skip_streamlit_clear_session` makes that one
  caller a no-op (models here are built once per process); every other caller is unaffected.
  ``runner.postScriptGC = false`` in .streamlit/config.toml removes the second full collection.

TensorFlow is reached only through :mod:`radtriage.inference` (a model without a LiteRT Grad-CAM
export), imported lazily on first model load so the page renders before TensorFlow has loaded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from radtriage import contract, locations, radiograph, tasks
from radtriage.anatomy import GATE_FOLDER, AnatomyGate, AnatomyVerdict
from radtriage.artifact import METADATA_FILE, MODEL_FILE, ArtifactError, ModelMetadata
from radtriage.dashboard import imaging, settings
from radtriage.dashboard.tables import ModelFacts, model_facts
from radtriage.heatmap import heatmap_for_original
from radtriage.model_card import CARD_FILE
from radtriage.predictor import Prediction
from radtriage.preprocess import PreprocessConfig, content_box, model_input

_BUILD_LOCK = threading.Lock()  # Keras builds models through global state: one build at a time
_BUILT: set[tuple[str, str]] = set()  # (folder, key) of every Predictor built in this process
_WARMED: dict[tuple[str, str], Any] = {}  # built ahead by warm_up, not yet taken by _load's cache
DECODE_CACHE_ENTRIES = 24  # decoded images kept (all sessions together); ~4 MB each at 1,024 px
RESULT_CACHE_ENTRIES = 256


class ModelUnavailable(Exception):
    """A model folder is missing or unreadable; ``str()`` is a sentence for the page."""


@dataclass(frozen=True)
class Model:
    """A loaded model and what it says about itself.

    Attributes:
        task: the model's task (:mod:`radtriage.tasks`); its folder is ``task.model_folder``.
        key: cache key: the folder and its files' modification times (a new model = new key).
        predictor: a :class:`radtriage.predictor.BasePredictor` that draws Grad-CAM (LiteRT or Keras;
            never pickled: resource-cached).
        facts: the metadata read for display (:class:`ModelFacts`).
        preprocess: the model's own preprocessing parameters.
        card: MODEL_CARD.md text, or None when absent.
    """

    task: tasks.Task
    key: str
    predictor: Any = field(repr=False, compare=False)
    facts: ModelFacts
    preprocess: PreprocessConfig
    card: str | None = field(repr=False)

    @property
    def metadata(self) -> ModelMetadata:
        """The model's verified metadata."""
        return self.predictor.metadata


@dataclass(frozen=True)
class Decoded:
    """A file that loaded: its safe metadata and pixels.

    Attributes:
        name: the file's base name.
        digest: SHA-256 of its bytes (the cache key; never the bytes themselves).
        radiograph: the loaded :class:`radtriage.radiograph.Radiograph` (pixels float32 [0, 1]).
        display: uint8 (H', W') image at most ``settings.DISPLAY_SIDE`` a side.
        data: the file's bytes, kept in memory (never on disk), for the rare second decode at a
            model's resolution level (:func:`radtriage.preprocess.model_input`).
    """

    name: str
    digest: str
    radiograph: radiograph.Radiograph = field(repr=False)
    display: np.ndarray = field(repr=False)
    data: bytes = field(repr=False, default=b"")

    @property
    def metadata(self) -> radiograph.SafeMetadata:
        return self.radiograph.metadata


@dataclass(frozen=True)
class Failure:
    """A file that did not load; ``message`` is the loader's one-sentence explanation."""

    name: str
    digest: str
    message: str
    code: str


@dataclass(frozen=True)
class Examination:
    """A model's output on one image.

    Attributes:
        prediction: calibrated probabilities, flags and thresholds.
        x: float32 (S, S, 1) model input (the model's own preprocessing), kept for more heatmaps.
        box: (top, left, height, width) of the image inside ``x``.
        default_class: class shown first (:func:`radtriage.contract.default_class`).
        heatmap: float32 (S, S) in [0, 1] for ``default_class``, or None when that class is not
            flagged (:func:`radtriage.contract.heatmap_class`: no heatmap is drawn, so none is computed).
        degenerate: the heatmap was NaN or constant (shown as "no localisation").
        ood_ratio: distance to the model's training images / its threshold, from the same graph
            call (None: the model has no OOD score).
    """

    prediction: Prediction
    x: np.ndarray
    box: tuple[int, int, int, int]
    default_class: int
    heatmap: np.ndarray | None
    degenerate: bool
    ood_ratio: float | None = None

    @property
    def probs(self) -> np.ndarray:
        """float64 (C,) probabilities in the model's class order."""
        return self.prediction.vector()


def digest_of(data: bytes) -> str:
    """Hex SHA-256 of a file's bytes: the identity of an upload in every cache."""
    return hashlib.sha256(data).hexdigest()


# --- models ---------------------------------------------------------------------------------
def _stamp(folder: Path) -> str:
    parts = [f"{p.name}:{p.stat().st_mtime_ns}" for p in sorted(folder.iterdir()) if p.is_file()]
    return f"{folder.resolve()}|{'|'.join(parts)}"


def _skip_streamlit_clear_session() -> None:
    """Make Streamlit's post-run ``keras.backend.clear_session()`` a no-op (see the module doc)."""
    import sys

    if "keras" not in sys.modules:  # a LiteRT model: Streamlit has nothing to clear
        return
    backend = sys.modules["keras"].backend
    real = backend.clear_session
    if getattr(real, "_radtriage_wrapped", False):
        return

    def clear_session(*args: Any, **kwargs: Any) -> Any:
        if sys._getframe(1).f_code.co_name == "_clean_problem_modules":  # Streamlit's after-run hook only
            return None
        return real(*args, **kwargs)

    clear_session._radtriage_wrapped = True  # type: ignore[attr-defined]
    backend.clear_session = clear_session


def _build(folder: str, key: str, keep: bool = False) -> Any:
    """A predictor that draws Grad-CAM, its graph run once on zeros (so no upload pays for the
    tracing or the interpreter's first allocation).

    One build at a time. One built ahead by :func:`warm_up` (``keep``) is handed over once to
    :func:`_load`'s cache instead of being built again.
    """
    from radtriage.serving import load_predictor  # deferred: a Keras-only model loads TensorFlow here

    with _BUILD_LOCK:
        if (folder, key) in _WARMED:
            return _WARMED.pop((folder, key))
        predictor = load_predictor(folder, explain=True)
        _skip_streamlit_clear_session()
        predictor.predict_and_explain(np.zeros(predictor.input_shape, np.float32))
        _BUILT.add((folder, key))
        if keep:
            _WARMED[(folder, key)] = predictor
        return predictor


@st.cache_resource(show_spinner=False, max_entries=4)
def _load(folder: str, key: str) -> Any:
    """The predictor of a model folder, once per server process (``key`` invalidates on change)."""
    return _build(folder, key)


def _installed(task: tasks.Task) -> Path | None:
    folder = locations.model_dir() / task.model_folder
    return folder if all((folder / f).is_file() for f in (MODEL_FILE, METADATA_FILE)) else None


def _warm(folders: list[Path]) -> None:
    # no Streamlit call here: this thread belongs to no session (a session's stop would stop it)
    for folder in folders:
        key = (str(folder), _stamp(folder))
        if key in _BUILT:
            continue
        try:
            _build(*key, keep=True)
        except Exception:  # noqa: BLE001 - get_model explains the failure when the model is asked for
            continue


@st.cache_resource(show_spinner=False, max_entries=2)
def _warm_up(model_dir: str) -> threading.Thread:
    folders = [f for f in (_installed(tasks.get(n)) for n in tasks.names()) if f is not None]
    thread = threading.Thread(target=_warm, args=(folders,), name="radtriage-warm-up", daemon=True)
    thread.start()
    return thread


@st.cache_resource(show_spinner=False)
def _blas_on_one_thread() -> bool:
    # NumPy's BLAS worker threads spin after each small product (the OOD score's 704 x 704 whitening)
    # and took 15-90 ms of CPU per upload from the script and the browser on 2 cores; once per process
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, user_api="blas")
    return True


def warm_up() -> None:
    """Load every installed model in the background, once per server process.

    Called at the top of the first run, so the model loads (for a Keras-only model also TensorFlow's
    import, seconds, and the graph tracing) overlap the first page render and the user's choice of a file instead of
    following the first upload. :func:`get_model` then finds the model cached, or waits for the
    load under way (the cache computes one value at a time).
    """
    _blas_on_one_thread()
    _warm_up(str(locations.model_dir()))


def model_loaded(task: tasks.Task) -> bool:
    """True when ``task``'s model is loaded in this process (built for a session or by :func:`warm_up`),
    so its results follow an upload within a fraction of a second."""
    folder = _installed(task)
    return folder is not None and (str(folder), _stamp(folder)) in _BUILT


def get_model(task: tasks.Task) -> Model:
    """The model of ``task`` in ``<model dir>/<task.model_folder>``, loaded once per server process.

    Raises:
        ModelUnavailable: the folder, its model.h5 or metadata.json is missing, or it cannot load.
    """
    folder = locations.model_dir() / task.model_folder
    label = task.label
    missing = [f for f in (MODEL_FILE, METADATA_FILE) if not (folder / f).is_file()]
    if missing:
        raise ModelUnavailable(
            f"The {label} model is not installed: {folder} has no {' or '.join(missing)}. "
            f"Train or download it into that folder (or set {locations.MODEL_DIR_ENV})."
        )
    key = _stamp(folder)
    try:
        with st.spinner(f"Loading the {label} model (once per server)…"):
            predictor = _load(str(folder), key)
        metadata = predictor.metadata
        facts = model_facts(metadata)
        config = predictor.preprocess_config
    except ArtifactError as err:  # the artifact's own sentence: a modified, stale or missing file
        raise ModelUnavailable(f"The {label} model in {folder} could not be loaded: {err}") from None
    except Exception as err:  # noqa: BLE001 - any other load failure becomes one sentence on the page
        raise ModelUnavailable(
            f"The {label} model in {folder} could not be loaded ({type(err).__name__}); "
            "its files may be incomplete or from an incompatible version."
        ) from None
    card_path = folder / CARD_FILE
    card = card_path.read_text(encoding="utf-8") if card_path.is_file() else _card_from(metadata)
    return Model(task=task, key=key, predictor=predictor, facts=facts, preprocess=config, card=card)


def _card_from(metadata: ModelMetadata) -> str | None:
    """The model card written from the metadata when the folder has no MODEL_CARD.md."""
    from radtriage.model_card import model_card_markdown

    try:
        return model_card_markdown(metadata.to_dict())
    except Exception:  # noqa: BLE001 - a card is a convenience; the page states the metadata anyway
        return None


# --- files ----------------------------------------------------------------------------------
@st.cache_resource(show_spinner=False, max_entries=DECODE_CACHE_ENTRIES, ttl=3600)
def _decode(digest: str, name: str, _data: bytes) -> Decoded | Failure:
    # Resource cache: the Radiograph is shared as is, not pickled per rerun. The bytes are hashed
    # once by the caller (digest), not by Streamlit on every rerun.
    try:
        rg = radiograph.load(_data, min_side=settings.DECODE_MIN_SIDE, name=name)
    except radiograph.RadiographError as err:
        return Failure(name=name, digest=digest, message=str(err), code=err.code)
    return Decoded(name=rg.name, digest=digest, radiograph=rg,
                   display=imaging.to_display(rg.pixels, settings.DISPLAY_SIDE), data=_data)


def decode(name: str, data: bytes, digest: str | None = None) -> Decoded | Failure:
    """Load an uploaded or bundled file (never written to disk) or explain why it cannot be.

    Args:
        name: the file's name (display only; the format is read from the content).
        data: the file's bytes.
        digest: :func:`digest_of` ``data`` when already known.

    Returns:
        :class:`Decoded`, or :class:`Failure` carrying the loader's one-sentence message.
        JPEG 2000 DICOMs are decoded at the coarsest level with >= ``settings.DECODE_MIN_SIDE`` px.
    """
    return _decode(digest or digest_of(data), name, data)


# --- model outputs --------------------------------------------------------------------------
def _explain(predictor: Any, x: np.ndarray, class_index: int | None) -> Any:
    """One compiled call: the :class:`radtriage.predictor.Explanation` (prediction, explained class,
    heatmap (S, S) float32, OOD ratio), its ``degenerate`` also true for a flat or non-finite map."""
    out = predictor.predict_and_explain(x, class_index=class_index)
    heat = np.asarray(out.heatmap, dtype=np.float32)
    return dataclasses.replace(out, heatmap=heat, degenerate=out.degenerate or contract.heatmap_is_degenerate(heat))


@st.cache_resource(show_spinner=False, max_entries=DECODE_CACHE_ENTRIES, ttl=3600)
def _input(digest: str, config: str, _decoded: Decoded, _config: PreprocessConfig) -> np.ndarray:
    # Resource cache, read-only: the gate and the chest model share one preprocessing, so a large
    # JPEG 2000 file is decoded at the models' level once, not once per model.
    x = model_input(_decoded.radiograph, _config, _decoded.data)
    x.flags.writeable = False
    return x


def input_for(decoded: Decoded, config: PreprocessConfig) -> np.ndarray:
    """The (S, S, 1) model input of a file under ``config`` (:func:`radtriage.preprocess.model_input`:
    the display decode reused where its resolution level is the model's), cached per (file, config)."""
    return _input(decoded.digest, json.dumps(config.to_dict(), sort_keys=True), decoded, config)


@st.cache_data(show_spinner=False, max_entries=RESULT_CACHE_ENTRIES)
def _examine(model_key: str, digest: str, _model: Model, _decoded: Decoded) -> Examination:
    x = input_for(_decoded, _model.preprocess)
    # One graph call: probabilities, the OOD ratio and the most probable class's heatmap. A second
    # only when the default class (the top *flagged* one; thresholds differ per class) is another
    # class AND is flagged: an unflagged class's heatmap is never drawn (contract.heatmap_class).
    out = _explain(_model.predictor, x, None)
    facts = _model.facts
    first = contract.default_class(out.prediction.vector(), facts.thresholds, facts.flaggable, facts.classes)
    heat, degenerate = out.heatmap, out.degenerate
    if out.class_index != first:
        drawn = contract.heatmap_class(facts.classes, out.prediction.vector(), facts.thresholds, facts.flaggable)
        heat, degenerate = (None, False) if drawn is None else _heatmap_of(_model, x, first)
    return Examination(prediction=out.prediction, x=x, box=content_box(_decoded.radiograph.pixels.shape,
                                                                          _model.preprocess),
                       default_class=first, heatmap=heat, degenerate=degenerate, ood_ratio=out.ood_ratio)


def _heatmap_of(model: Model, x: np.ndarray, class_index: int) -> tuple[np.ndarray, bool]:
    out = _explain(model.predictor, x, class_index)
    return out.heatmap, out.degenerate


def examine(model: Model, decoded: Decoded) -> Examination:
    """The prediction and the default class's heatmap for one image, cached per (model, file)."""
    return _examine(model.key, decoded.digest, model, decoded)


@st.cache_data(show_spinner=False, max_entries=RESULT_CACHE_ENTRIES)
def _heatmap(model_key: str, digest: str, class_index: int, _model: Model, _x: np.ndarray) -> tuple[np.ndarray, bool]:
    return _heatmap_of(_model, _x, class_index)


def heatmap(model: Model, decoded: Decoded, exam: Examination, class_index: int) -> tuple[np.ndarray, bool]:
    """Heatmap (S, S) in [0, 1] and degenerate flag for ``class_index``, cached per (model, file, class)."""
    if class_index == exam.default_class and exam.heatmap is not None:
        return exam.heatmap, exam.degenerate
    return _heatmap(model.key, decoded.digest, int(class_index), model, exam.x)


@st.cache_resource(show_spinner=False, max_entries=DECODE_CACHE_ENTRIES, ttl=3600)
def _display_heat(model_key: str, digest: str, class_index: int, _heat: np.ndarray, _model: Model,
                  _decoded: Decoded) -> tuple[np.ndarray, np.ndarray]:
    # Resource cache, read-only: ~4 MB per image that a data cache would copy (pickle) on every rerun
    heat = heatmap_for_original(_heat, _decoded.display.shape, _model.preprocess)
    colours = imaging.colorize(heat, settings.HEATMAP_CMAP)
    heat.flags.writeable = colours.flags.writeable = False
    return heat, colours


def display_heatmap(model: Model, decoded: Decoded, class_index: int, heat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The heatmap on the display image's grid and its colours: float32 (H', W'), uint8 (H', W', 3)."""
    return _display_heat(model.key, decoded.digest, int(class_index), heat, model, decoded)


# --- the anatomy gate -----------------------------------------------------------------------
@st.cache_resource(show_spinner=False, max_entries=2)
def _gate(folder: str, key: str) -> AnatomyGate | None:
    try:
        return AnatomyGate(folder)
    except ArtifactError:
        return None


def get_gate() -> AnatomyGate | None:
    """The anatomy gate in ``<model dir>/anatomy`` (LiteRT: no TensorFlow needed), or None when absent."""
    folder = locations.model_dir() / GATE_FOLDER
    if not (folder / "metadata.json").is_file():
        return None
    return _gate(str(folder), _stamp(folder))


@st.cache_data(show_spinner=False, max_entries=RESULT_CACHE_ENTRIES)
def _verdict(gate_key: str, digest: str, _gate: AnatomyGate, _decoded: Decoded) -> AnatomyVerdict:
    return _gate.assess(input_for(_decoded, _gate.preprocess_config)[None])[0]


def verdict(gate: AnatomyGate | None, decoded: Decoded) -> AnatomyVerdict | None:
    """What the gate sees in one file (cached per file), or None without a gate."""
    if gate is None:
        return None
    return _verdict(gate.metadata.model_sha256, decoded.digest, gate, decoded)


def ood_ratio(model: Model, decoded: Decoded, exam: Examination) -> float | None:
    """The image's distance to the model's training images / its threshold (None: the model has no OOD score).

    Computed in the examination's graph call (:meth:`radtriage.predictor.BasePredictor.predict_and_explain`).
    """
    return exam.ood_ratio


def study_prediction(model: Model, exams: list[Examination]) -> Prediction:
    """A study's prediction: the contract's mean of its images' calibrated probabilities, flagged."""
    mean = contract.study_mean(np.stack([e.prediction.vector() for e in exams]))
    return Prediction.of(list(model.facts.classes), mean, model.facts.thresholds, model.metadata.provenance)


@st.cache_data(show_spinner=False, max_entries=8)
def _metadata_json(model_key: str, _model: Model) -> str:
    return json.dumps(_model.metadata.to_dict(), indent=1, default=str)


def metadata_json(model: Model) -> str:
    """The model's metadata as pretty JSON (for the model card panel), written once per model."""
    return _metadata_json(model.key, model)
