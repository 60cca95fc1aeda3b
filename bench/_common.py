"""Shared helpers of the bench/ scripts: timing statistics, markdown tables, machine facts, the chest
model to measure and the generated phantom inputs.

Not a public module of radtriage: the bench scripts import it from their own folder.
"""

from __future__ import annotations

import datetime
import importlib
import json
import os
import platform
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_CHEST = ROOT / "model" / "chest"
PIN_ENV, PIN_NOTE_ENV = "RADTRIAGE_BENCH_MODEL_DIR", "RADTRIAGE_BENCH_MODEL_NOTE"
VERSION_PACKAGES = ("numpy", "tensorflow", "keras", "ai_edge_litert", "pydicom", "pylibjpeg", "openjpeg", "PIL", "torch",
                    "torchvision", "torchxrayvision", "skimage", "onnxruntime", "onnx", "tf2onnx")


# ----------------------------------------------------------------------------------- timing


def time_calls(fn: Callable[[Any], Any], items: Sequence[Any], warmup: int = 1, repeats: int = 1) -> np.ndarray:
    """Wall seconds of ``fn(item)`` for every item, ``repeats`` passes after ``warmup`` un-timed passes.

    Warm-up runs over the first items (traces graphs, fills allocators, loads codec plugins).

    Returns:
        float64 array of len(items) * repeats seconds.
    """
    for i in range(warmup):
        fn(items[i % len(items)])
    out = []
    for _ in range(repeats):
        for item in items:
            start = time.perf_counter()
            fn(item)
            out.append(time.perf_counter() - start)
    return np.asarray(out)


def stats_ms(seconds: Sequence[float]) -> dict[str, float]:
    """Median, p90, mean and n of a list of durations in seconds, as milliseconds."""
    s = 1000 * np.asarray(seconds, np.float64)
    return {"median_ms": float(np.median(s)), "p90_ms": float(np.percentile(s, 90)), "mean_ms": float(s.mean()),
            "n": int(len(s))}


# ----------------------------------------------------------------------------------- output


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table; floats get 3 significant-ish digits."""
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "n/a" if not np.isfinite(v) else (f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}")
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def write_json(path: str | Path | None, data: dict[str, Any]) -> None:
    """Write ``data`` as JSON when a path is given (run_all reads these)."""
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(data, indent=1, default=float))


def quiet_tf() -> None:
    """Silence TensorFlow's start-up chatter, and make OpenMP threads sleep when idle (set before imports).

    OMP_WAIT_POLICY=PASSIVE: with OpenMP's default busy-waiting, PyTorch on a shared, loaded machine
    was measured 5-50x slower per forward pass (threads spin against other jobs); passive waiting
    keeps the comparison about the pipelines, not about the scheduler. Override by setting it.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def set_threads(n: int) -> dict[str, Any]:
    """Use ``n`` intra-op threads in TensorFlow and PyTorch (0: each library's default). Call early.

    Returns:
        the thread settings in force (for the report).
    """
    out: dict[str, Any] = {"requested": n or "library defaults", "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY")}
    import tensorflow as tf

    if n:
        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(n)
    try:
        import torch

        if n:
            torch.set_num_threads(n)
        out["torch"] = torch.get_num_threads()
    except ImportError:
        pass
    return out


# ----------------------------------------------------------------------------------- machine


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def ram_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return float("nan")


def versions() -> dict[str, str]:
    """Installed versions of the packages that matter for the figures (absent ones are skipped)."""
    out = {"python": platform.python_version()}
    for name in VERSION_PACKAGES:
        try:
            mod = importlib.import_module(name)
        except Exception:  # noqa: BLE001 - absent or broken: not part of this run
            continue
        out[name] = str(getattr(mod, "__version__", "?"))
    return out


def machine() -> dict[str, Any]:
    """nproc, CPU model, RAM, load average, date and the code's git commit."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {"nproc": os.cpu_count(), "cpu": cpu_model(), "ram_gib": round(ram_gib(), 1),
            "loadavg": [round(v, 2) for v in os.getloadavg()], "platform": platform.platform(),
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "git_commit": git("rev-parse", "--short", "HEAD"), "git_dirty": bool(git("status", "--porcelain"))}


# ----------------------------------------------------------------------------------- the model


def chest_model_dir(scratch: Path) -> tuple[Path, str]:
    """The chest model to measure: the shipped ``model/chest`` when it loads, else a stand-in.

    The stand-in has the architecture and input size of the training default
    (``TrainConfig()``: its architecture, ``architecture_kwargs`` and ``preprocess``), random weights,
    saved as a normal artifact into ``scratch`` (speed does not depend on the weights).

    Returns:
        (model directory, one sentence saying which model it is).
    """
    from radtriage.artifact import ArtifactError, load_artifact

    pinned = os.environ.get(PIN_ENV)
    if pinned:  # run_all resolves the model once, so every benchmark of a run measures the same one
        return Path(pinned), os.environ.get(PIN_NOTE_ENV, f"model pinned by run_all at {pinned}")
    if (SHIPPED_CHEST / "metadata.json").is_file():
        try:
            art = load_artifact(SHIPPED_CHEST)
            return SHIPPED_CHEST, f"shipped model/chest ({art.metadata.name})"
        except ArtifactError as err:
            reason = f"shipped model/chest unusable ({err})"
    else:
        reason = "no shipped model/chest yet"
    from radtriage.architectures import build_model
    from radtriage.artifact import ModelMetadata, save_artifact
    from radtriage.training import TrainConfig

    config = TrainConfig(task="chest")
    out = scratch / "chest-standin"
    if not (out / "metadata.json").is_file():
        model = build_model(config.architecture, config.preprocess.size, 14, **config.architecture_kwargs)
        meta = ModelMetadata.for_task(f"bench-standin-{config.architecture}-{config.preprocess.size}", "chest",
                                      config.preprocess, train_config=config.to_dict())
        save_artifact(model, out, meta)
    return out, (f"{reason}: stand-in with the training default architecture {config.architecture!r} "
                 f"{dict(config.architecture_kwargs) or '(default kwargs)'} at {config.preprocess.size}^2, "
                 "random weights")


# ----------------------------------------------------------------------------------- inputs


def _render_one(args: tuple[int, int]) -> np.ndarray:
    from radtriage.phantoms import render_chest

    seed, size = args
    return render_chest(seed, size, ("Nodule/Mass",) if seed % 2 else ()).image


def render(seeds: Sequence[int], size: int, workers: int = 2) -> list[np.ndarray]:
    """Chest phantom images (size, size) float32 in [0, 1], rendered in ``workers`` processes."""
    if workers <= 1:
        return [_render_one((s, size)) for s in seeds]
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(_render_one, [(s, size) for s in seeds]))


def upscale(image: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize to (size, size), plus faint noise so the pixels are not a smooth interpolation
    (real detector noise is what makes JPEG 2000 files large and slow to decode)."""
    from PIL import Image

    out = np.array(Image.fromarray(image.astype(np.float32), mode="F").resize((size, size), Image.Resampling.BILINEAR))
    rng = np.random.default_rng(size)
    return np.clip(out + rng.normal(0, 0.004, out.shape).astype(np.float32), 0, 1)


def save_png(path: Path, image: np.ndarray, bits: int = 8) -> Path:
    """8- or 16-bit grayscale PNG of a [0, 1] image."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    if bits == 16:
        Image.fromarray(np.round(image * 65535).astype(np.uint16)).save(path)
    else:
        Image.fromarray(np.round(image * 255).astype(np.uint8)).save(path)
    return path


def write_inputs(out_dir: Path, n_dicom: int = 10, n_png: int = 10, dicom_side: int = 2048, png_side: int = 1024,
                 render_side: int = 1024, workers: int = 2) -> list[Path]:
    """The single-image benchmark inputs: 16-bit JPEG 2000 DICOMs (dicom_side^2) and 8-bit PNGs (png_side^2).

    Phantoms are rendered at ``render_side`` (rendering at 2,048 px costs ~4x more and does not
    change decoding or inference cost) and resized; files already present are reused.

    Returns:
        Paths, DICOMs and PNGs interleaved (d, p, d, p, ...).
    """
    from radtriage.phantoms import write_dicom

    out_dir.mkdir(parents=True, exist_ok=True)
    dicoms = [out_dir / f"chest{i:02d}.dcm" for i in range(n_dicom)]
    pngs = [out_dir / f"chest{i:02d}.png" for i in range(n_png)]
    todo = [i for i in range(max(n_dicom, n_png)) if (i < n_dicom and not dicoms[i].exists())
            or (i < n_png and not pngs[i].exists())]
    if todo:
        images = dict(zip(todo, render([100 + i for i in todo], render_side, workers)))
        for i, img in images.items():
            if i < n_dicom and not dicoms[i].exists():
                write_dicom(dicoms[i], upscale(img, dicom_side), uid_key=f"bench-{i}", bits_stored=16,
                            photometric="MONOCHROME2", jpeg2000=True)
            if i < n_png and not pngs[i].exists():
                save_png(pngs[i], upscale(img, png_side) if png_side != render_side else img)
    paths: list[Path] = []
    for i in range(max(n_dicom, n_png)):
        paths += ([dicoms[i]] if i < n_dicom else []) + ([pngs[i]] if i < n_png else [])
    return paths


# ----------------------------------------------------------------------------------- child processes


def run_measured(cmd: Sequence[str], timeout: float = 3600, env: dict[str, str] | None = None,
                 poll: float = 0.05) -> dict[str, Any]:
    """Run ``cmd``; wall time and peak resident memory of its process tree (sampled every ``poll`` s).

    Returns:
        dict: seconds, peak_rss_mib (child alone), peak_tree_mib (child + descendants, summed per
        sample: worker pools count), returncode, stdout, stderr (text).
    """
    import psutil

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    start = time.perf_counter()
    proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    ps = psutil.Process(proc.pid)
    peak_main = peak_tree = 0
    out: dict[str, str] = {}
    readers = [threading.Thread(target=lambda k=k, f=f: out.__setitem__(k, f.read()))
               for k, f in (("stdout", proc.stdout), ("stderr", proc.stderr))]
    for t in readers:
        t.start()
    while proc.poll() is None:
        try:
            main = ps.memory_info().rss
            tree = main + sum(c.memory_info().rss for c in ps.children(recursive=True))
            peak_main, peak_tree = max(peak_main, main), max(peak_tree, tree)
        except psutil.Error:
            pass
        if time.perf_counter() - start > timeout:
            proc.kill()
        time.sleep(poll)
    seconds = time.perf_counter() - start
    for t in readers:
        t.join()
    return {"seconds": seconds, "peak_rss_mib": peak_main / 2**20, "peak_tree_mib": peak_tree / 2**20,
            "returncode": proc.returncode, "stdout": out.get("stdout", ""), "stderr": out.get("stderr", "")}


def bad_files(out_dir: Path) -> list[Path]:
    """A few files the loader must refuse (truncated DICOM, text, tiny image, colour photo, empty)."""
    from PIL import Image

    out_dir.mkdir(parents=True, exist_ok=True)
    made = []
    good = sorted(out_dir.parent.rglob("*.dcm"))
    trunc = out_dir / "bad_truncated.dcm"
    trunc.write_bytes(good[0].read_bytes()[:4000] if good else b"DICM" * 100)
    made.append(trunc)
    (out_dir / "bad_text.png").write_text("this is not an image\n")
    made.append(out_dir / "bad_text.png")
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(out_dir / "bad_tiny.png")
    made.append(out_dir / "bad_tiny.png")
    rgb = np.zeros((256, 256, 3), np.uint8)
    rgb[..., 0] = 200
    rgb[64:192, 64:192, 1] = 180
    Image.fromarray(rgb).save(out_dir / "bad_colour_photo.png")
    made.append(out_dir / "bad_colour_photo.png")
    (out_dir / "bad_empty.dcm").write_bytes(b"")
    made.append(out_dir / "bad_empty.dcm")
    return made


# ----------------------------------------------------------------------------------- torchvision


_TV_SHIM: list[Any] = []  # keeps the shim library alive


def import_torchxrayvision() -> Any:
    """``import torchxrayvision``, working around a CUDA-built torchvision next to a CPU torch.

    PyPI's torchvision wheels link against the CUDA torch; with the CPU torch their ``_C``
    extension cannot load, and torchvision 0.28's import then fails registering a fake kernel for
    ``torchvision::nms`` / ``qnms`` (its unguarded registrations). The bench never calls torchvision's C++
    ops (nms, roi_align...), so those ops' schemas is declared here first and the import succeeds;
    torchxrayvision only needs torchvision's pure-Python transforms and model classes.
    """
    import sys

    import torch

    try:
        import torchvision  # noqa: F401
    except RuntimeError as err:
        if "torchvision::nms" not in str(err):
            raise
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        lib = torch.library.Library("torchvision", "DEF")
        for op in ("nms", "qnms"):  # the two fake-kernel registrations torchvision does unguarded
            lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _TV_SHIM.append(lib)
        import torchvision  # noqa: F401
    import torchxrayvision

    return torchxrayvision


# ----------------------------------------------------------------------------------- compute


def keras_gmacs(model: Any) -> float:
    """Multiply-accumulates of one forward pass (batch 1) in Conv2D/DepthwiseConv2D/Dense layers, in 10^9."""
    total = 0
    for layer in model.layers:
        kind = type(layer).__name__
        if kind in ("Conv2D", "DepthwiseConv2D"):
            out = layer.output.shape  # (None, H, W, C)
            kh, kw = layer.kernel_size
            cin = layer.input.shape[-1]
            per_out = kh * kw * (1 if kind == "DepthwiseConv2D" else cin // layer.groups)
            total += int(out[1]) * int(out[2]) * int(out[3]) * per_out
        elif kind == "Dense":
            total += int(layer.input.shape[-1]) * int(layer.units)
    return total / 1e9


def torch_gmacs(model: Any, x: Any) -> float:
    """Multiply-accumulates of ``model(x)`` in Conv2d/Linear modules (forward hooks), in 10^9."""
    import torch

    total = [0]

    def hook(mod: Any, inp: Any, out: Any) -> None:
        if isinstance(mod, torch.nn.Conv2d):
            total[0] += out.numel() * mod.kernel_size[0] * mod.kernel_size[1] * mod.in_channels // mod.groups
        else:
            total[0] += out.numel() * mod.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return total[0] / 1e9
