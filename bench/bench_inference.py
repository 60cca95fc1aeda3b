"""Single-image inference end to end, ours vs what users would otherwise pick, same inputs, same run.

Inputs (generated phantoms in a temp dir): 16-bit JPEG 2000 DICOMs at 2,048^2 and 8-bit PNGs at
1,024^2, interleaved; every pipeline gets exactly the same files. Warm: one un-timed pass over the
first DICOM and PNG per pipeline; then ``--repeats`` timed passes over all files. Median and p90.

Pipelines (file path -> probabilities + heatmap of the top class):

- ours: ``radiograph.load(path, min_side=S)`` -> ``Predictor.prepare_input`` -> ``predict_and_explain``
  (calibrated probabilities + Grad-CAM of the top class in one compiled call): the CLI's loader
  call and the dashboard's explain call. Components are timed separately too, and
  ``Grad-CAM / forward`` compares ``predict_and_explain`` with ``predict_batch`` on the same input.
- torchxrayvision: ``xrv.models.DenseNet(weights=None, op_threshs=None)`` (random init: the weights
  cannot be downloaded, the computation is the same), ``xrv.utils.read_xray_dcm`` /
  ``xrv.utils.load_image`` -> ``XRayCenterCrop`` + ``XRayResizer(224)`` -> forward -> input-gradient
  saliency of the top class, squared and Gaussian-blurred as its heatmap notebook does.
- Keras seed architectures, seed-style pipeline (pydicom ``pixel_array`` at full resolution or PIL,
  min-max scaling, PIL resize, ``model.predict``, keras-io ``make_gradcam_heatmap``, which builds its
  gradient model and runs an eager GradientTape per call): the VinBigData seed's 256^2 grayscale
  small CNN (``radtriage.architectures.small_cnn``) and the MURA seed's DenseNet-201 at 224^2 RGB
  (``keras.applications.DenseNet201(weights=None)`` + sigmoid head). Their compiled forward time
  (tf.function, batch 1) is listed too, to separate architecture cost from pipeline cost.

Run (bench venv, see bench/README.md): ``.venv-bench/bin/python bench/bench_inference.py``
Prints a markdown table and the ratios; exits 0 (a peer that cannot run is listed as skipped).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import warnings

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

C.quiet_tf()
# the keras-io recipe calls a one-input model with a bare array: Keras warns on every call
warnings.filterwarnings("ignore", message="The structure of `inputs` doesn't match")

GOAL_VS_XRV = 0.25
GOAL_GRADCAM_OVER_FORWARD = 1.5


# ------------------------------------------------------------------------------------ ours


def e2e_stats(fn: Callable[[Path], Any], paths: list[Path], repeats: int) -> dict[str, Any]:
    """End-to-end statistics over all files and per file type, from one timed series (warm-up: 2 files)."""
    seconds = C.time_calls(fn, paths, warmup=2, repeats=repeats)
    suffixes = np.array([p.suffix for p in paths] * repeats)
    return {"end_to_end": C.stats_ms(seconds),
            "by_type": {kind: C.stats_ms(seconds[suffixes == ext])
                        for kind, ext in (("dicom", ".dcm"), ("png", ".png")) if np.any(suffixes == ext)}}


def ours(model_dir: Path) -> dict[str, Callable[[Any], Any]]:
    """Our end-to-end call and its parts, all on the same Predictor."""
    from radtriage import radiograph
    from radtriage.inference import Predictor

    predictor = Predictor.from_dir(model_dir)
    size = predictor.preprocess_config.size

    def end_to_end(path: Path) -> Any:
        x = predictor.prepare_input(radiograph.load(path, min_side=size))
        return predictor.predict_and_explain(x)

    def end_to_end_app(path: Path) -> Any:  # the dashboard decodes at display size first
        from radtriage.dashboard.settings import DISPLAY_SIDE

        x = predictor.prepare_input(radiograph.load(path, min_side=DISPLAY_SIDE))
        return predictor.predict_and_explain(x)

    return {"end_to_end": end_to_end, "end_to_end_app": end_to_end_app, "predictor": predictor,
            "load": lambda p: radiograph.load(p, min_side=size)}


def time_ours(model_dir: Path, paths: list[Path], repeats: int) -> dict[str, Any]:
    o = ours(model_dir)
    pred = o["predictor"]
    out: dict[str, Any] = {"input": f"{pred.input_shape[0]}^2x1", "model": pred.metadata.name,
                           "gmacs": C.keras_gmacs(pred.model)}
    out.update(e2e_stats(o["end_to_end"], paths, repeats))
    out["end_to_end_app"] = C.stats_ms(C.time_calls(o["end_to_end_app"], paths, warmup=2, repeats=repeats))
    out["load"] = C.stats_ms(C.time_calls(o["load"], paths, warmup=0, repeats=repeats))
    raws = [o["load"](p) for p in paths]
    out["preprocess"] = C.stats_ms(C.time_calls(pred.prepare_input, raws, warmup=1, repeats=repeats))
    xs = [pred.prepare_input(r) for r in raws]
    # forward vs Grad-CAM on identical inputs, interleaved passes so load drift hits both alike
    fwd, cam, cam_given = [], [], []
    for _ in range(max(3, repeats * 3)):
        fwd += list(C.time_calls(lambda x: pred.predict_batch(x[None]), xs, warmup=1))
        cam += list(C.time_calls(pred.predict_and_explain, xs, warmup=1))
        cam_given += list(C.time_calls(lambda x: pred.predict_and_explain(x, class_index=0), xs, warmup=1))
    out["forward"] = C.stats_ms(fwd)
    out["gradcam"] = C.stats_ms(cam)
    out["gradcam_given_class"] = C.stats_ms(cam_given)
    return out


# ------------------------------------------------------------------------------------ torchxrayvision


def time_xrv(paths: list[Path], repeats: int) -> dict[str, Any]:
    import skimage.filters
    import torch

    xrv = C.import_torchxrayvision()
    import torchvision

    # random init (no download); apply_sigmoid as the released weights do, so outputs are probabilities
    model = xrv.models.DenseNet(weights=None, op_threshs=None, apply_sigmoid=True).eval()
    transform = torchvision.transforms.Compose([xrv.datasets.XRayCenterCrop(), xrv.datasets.XRayResizer(224)])

    def read(path: Path) -> np.ndarray:
        if path.suffix == ".dcm":
            return xrv.utils.read_xray_dcm(path)[None, :, :]  # (1, H, W) in [-1024, 1024]
        return xrv.utils.load_image(str(path))  # (1, H, W) in [-1024, 1024]

    def end_to_end(path: Path) -> tuple[np.ndarray, np.ndarray]:
        img = torch.from_numpy(transform(read(path))).unsqueeze(0).requires_grad_()
        outputs = model(img)
        top = int(outputs[0].argmax())
        grads = torch.autograd.grad(outputs[:, top], img)[0][0][0]
        heat = skimage.filters.gaussian(grads.detach().numpy() ** 2, sigma=(5, 5), truncate=3.5)
        return outputs.detach().numpy()[0], heat

    def forward(x: torch.Tensor) -> Any:
        with torch.no_grad():
            return model(x)

    out: dict[str, Any] = {"input": "224^2x1", "model": "xrv.models.DenseNet (DenseNet-121), random init",
                           "torch_threads": torch.get_num_threads(),
                           "gmacs": C.torch_gmacs(model, torch.zeros(1, 1, 224, 224))}
    out.update(e2e_stats(end_to_end, paths, repeats))
    out["load"] = C.stats_ms(C.time_calls(read, paths, warmup=0, repeats=repeats))
    xs = [torch.from_numpy(transform(read(p))).unsqueeze(0) for p in paths]
    out["forward"] = C.stats_ms(C.time_calls(forward, xs, warmup=1, repeats=repeats))
    return out


# ------------------------------------------------------------------------------------ Keras seeds


def seed_read(path: Path) -> np.ndarray:
    """What the seed notebooks do: full-resolution pixel_array (or PIL), min-max to [0, 1]."""
    if path.suffix == ".dcm":
        import pydicom

        ds = pydicom.dcmread(path)
        img = ds.pixel_array.astype(np.float32)
        if ds.PhotometricInterpretation == "MONOCHROME1":
            img = img.max() - img
    else:
        from PIL import Image

        img = np.asarray(Image.open(path).convert("L"), np.float32)
    return (img - img.min()) / max(float(img.max() - img.min()), 1e-6)


def seed_resize(img: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(img, mode="F").resize((size, size), Image.Resampling.BILINEAR), np.float32)


def make_gradcam_heatmap(img_array: np.ndarray, model: Any, last_conv_layer_name: str, pred_index: int | None = None
                         ) -> np.ndarray:
    """The keras-io Grad-CAM recipe as seeds copy it (gradient model built on every call, eager tape)."""
    import keras
    import tensorflow as tf

    grad_model = keras.models.Model(model.inputs, [model.get_layer(last_conv_layer_name).output, model.output])
    with tf.GradientTape() as tape:
        last_conv_layer_output, preds = grad_model(img_array)
        if pred_index is None:
            pred_index = tf.argmax(preds[0])
        class_channel = preds[:, pred_index]
    grads = tape.gradient(class_channel, last_conv_layer_output)
    pooled_grads = tf.reduce_mean(grads, axis=(0, 1, 2))
    heatmap = last_conv_layer_output[0] @ pooled_grads[..., tf.newaxis]
    heatmap = tf.squeeze(heatmap)
    heatmap = tf.maximum(heatmap, 0) / (tf.math.reduce_max(heatmap) + 1e-8)
    return heatmap.numpy()


def seed_models() -> dict[str, tuple[Any, int, int, str]]:
    """name -> (model, input side, channels, last conv layer)."""
    import keras

    from radtriage.architectures import small_cnn

    vin = small_cnn(256, 14)
    base = keras.applications.DenseNet201(weights=None, include_top=False, input_shape=(224, 224, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(base.output)
    mura = keras.Model(base.input, keras.layers.Dense(1, activation="sigmoid")(pooled), name="mura_densenet201")
    return {"VinBigData seed: small CNN 256^2x1": (vin, 256, 1, "gradcam_target"),
            "MURA seed: DenseNet-201 224^2x3": (mura, 224, 3, "relu")}


def time_seed(model: Any, side: int, channels: int, layer: str, paths: list[Path], repeats: int) -> dict[str, Any]:
    import tensorflow as tf

    def end_to_end(path: Path) -> tuple[np.ndarray, np.ndarray]:
        x = seed_resize(seed_read(path), side)[None, :, :, None]
        if channels == 3:
            x = np.repeat(x, 3, axis=-1)
        preds = model.predict(x, verbose=0)
        return preds, make_gradcam_heatmap(x, model, layer)

    compiled = tf.function(lambda x: model(x, training=False))
    x0 = np.zeros((1, side, side, channels), np.float32)
    out: dict[str, Any] = {"input": f"{side}^2x{channels}", "params_m": model.count_params() / 1e6,
                           "gmacs": C.keras_gmacs(model)}
    out.update(e2e_stats(end_to_end, paths, repeats))
    out["forward"] = C.stats_ms(C.time_calls(lambda x: compiled(x).numpy(), [x0] * len(paths), warmup=2,
                                             repeats=repeats))
    return out


# ------------------------------------------------------------------------------------ report


def run(args: argparse.Namespace) -> dict[str, Any]:
    threads = C.set_threads(args.threads)
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="bench-inference-"))
    try:
        paths = C.write_inputs(work / "inputs", args.n_dicom, args.n_png, args.dicom_side, args.png_side,
                               args.render_side)
        model_dir, model_note = C.chest_model_dir(work)
        res: dict[str, Any] = {"machine": C.machine(), "model_note": model_note,
                               "inputs": f"{args.n_dicom} x {args.dicom_side}^2 16-bit JPEG 2000 DICOM + "
                                         f"{args.n_png} x {args.png_side}^2 8-bit PNG (phantoms rendered at "
                                         f"{args.render_side}^2, resized + noise)",
                               "repeats": args.repeats, "threads": threads, "pipelines": {}, "skipped": {}}
        res["pipelines"]["ours"] = time_ours(model_dir, paths, args.repeats)
        peers: list[tuple[str, Callable[[], dict[str, Any]]]] = [
            ("torchxrayvision DenseNet-121 + saliency", lambda: time_xrv(paths, args.repeats))]
        if not args.skip_seeds:
            for name, (model, side, ch, layer) in seed_models().items():
                if args.skip_densenet and "DenseNet" in name:
                    res["skipped"][name] = "--skip-densenet"
                    continue
                peers.append((name, lambda m=model, s=side, c=ch, l=layer: time_seed(m, s, c, l, paths, args.repeats)))
        for name, fn in peers:
            try:
                res["pipelines"][name] = fn()
            except Exception as err:  # noqa: BLE001 - a missing peer is reported, not fatal
                res["skipped"][name] = f"{type(err).__name__}: {err}"
                traceback.print_exc(file=sys.stderr)
        res["machine"]["loadavg_end"] = C.machine()["loadavg"]
        return res
    finally:
        if not args.work_dir and not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def report(res: dict[str, Any]) -> str:
    p = res["pipelines"]
    ref = p["ours"]["end_to_end"]["median_ms"]
    rows = []
    for name, r in p.items():
        e = r["end_to_end"]
        label = "ours: load -> preprocess -> 14 probs + Grad-CAM (CLI loader)" if name == "ours" else name
        rows.append([label, r["input"], r.get("gmacs", float("nan")), e["median_ms"], e["p90_ms"], r.get("by_type", {}).get("dicom", {}).get("median_ms", "-"),
                     r.get("by_type", {}).get("png", {}).get("median_ms", "-"), r["forward"]["median_ms"],
                     e["median_ms"] / ref])
    o = p["ours"]
    rows.insert(1, ["ours, app loader (decode at 1,024 px for display)", o["input"], o["gmacs"],
                    o["end_to_end_app"]["median_ms"],
                    o["end_to_end_app"]["p90_ms"], "-", "-", "-", o["end_to_end_app"]["median_ms"] / ref])
    text = [f"Inputs: {res['inputs']}; {res['repeats']} timed pass(es) over all files after warm-up. "
            f"Model: {res['model_note']}. Threads: {res['threads']}.", "",
            C.md_table(["pipeline", "model input", "GMAC/forward", "e2e median ms", "e2e p90 ms", "DICOM median ms",
                        "PNG median ms", "forward median ms (compiled, batch 1)", "time / ours"], rows), ""]
    parts = [["load (radiograph.load, min_side=S)", o["load"]], ["preprocess", o["preprocess"]],
             ["forward (predict_batch, 1 image)", o["forward"]],
             ["forward + Grad-CAM of the top class (predict_and_explain)", o["gradcam"]],
             ["forward + Grad-CAM of a given class (predict_and_explain(x, 0))", o["gradcam_given_class"]]]
    text += ["Our parts:", "", C.md_table(["part", "median ms", "p90 ms", "n"],
                                          [[n, s["median_ms"], s["p90_ms"], s["n"]] for n, s in parts]), ""]
    for name, why in res["skipped"].items():
        text.append(f"- skipped {name}: {why}")
    cam_ratio = o["gradcam"]["median_ms"] / o["forward"]["median_ms"]
    res["ratios"] = {"gradcam_over_forward": cam_ratio}
    given_ratio = o["gradcam_given_class"]["median_ms"] / o["forward"]["median_ms"]
    res["ratios"]["gradcam_given_class_over_forward"] = given_ratio
    lines = [f"- Grad-CAM of the top class (prediction + heatmap) / forward: {cam_ratio:.2f}x (goal <= "
             f"{GOAL_GRADCAM_OVER_FORWARD}x: {'met' if cam_ratio <= GOAL_GRADCAM_OVER_FORWARD else 'NOT met'}); "
             f"of a given class: {given_ratio:.2f}x"]
    for name, r in p.items():
        if name == "ours":
            continue
        ratio = r["end_to_end"]["median_ms"] / ref
        res["ratios"][name] = ratio
        lines.append(f"- {name}: {ratio:.2f}x our end-to-end time (ours = {1 / ratio:.2f}x theirs)")
    xrv_name = "torchxrayvision DenseNet-121 + saliency"
    if xrv_name in p:
        ours_over = ref / p[xrv_name]["end_to_end"]["median_ms"]
        res["ratios"]["ours_over_xrv"] = ours_over
        lines.append(f"- ours / torchxrayvision end to end: {ours_over:.2f}x (goal <= {GOAL_VS_XRV}x: "
                     f"{'met' if ours_over <= GOAL_VS_XRV else 'NOT met'})")
    m = res["machine"]
    text += ["", "Ratios (medians):", ""] + lines + ["", f"Load average at start / end: {m['loadavg']} / {m.get('loadavg_end')}"]
    return "\n".join(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-dicom", type=int, default=10)
    parser.add_argument("--n-png", type=int, default=10)
    parser.add_argument("--dicom-side", type=int, default=2048)
    parser.add_argument("--png-side", type=int, default=1024)
    parser.add_argument("--render-side", type=int, default=1024, help="phantom render size before resizing")
    parser.add_argument("--repeats", type=int, default=1, help="timed passes over all inputs")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads for TF and torch (0: defaults)")
    parser.add_argument("--skip-seeds", action="store_true", help="no Keras seed architectures")
    parser.add_argument("--skip-densenet", action="store_true", help="no DenseNet-201 (slowest peer)")
    parser.add_argument("--work-dir", help="reuse this folder for inputs and the stand-in model (kept)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    parser.add_argument("--json", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    res = run(args)
    print("## 1. Single-image inference, end to end\n")
    print(report(res))
    C.write_json(args.json, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
