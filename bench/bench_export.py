"""Serving export: does TFLite or ONNX Runtime serve our chest model faster than Keras, with the same outputs?

The model served is the Predictor's logits model; every backend's logits are calibrated
(``sigmoid(logits / T)``) by the same :func:`radtriage.contract.calibrate`, as ``Predictor.predict_batch``
does. Reference: the Predictor's own ``tf.function`` (fixed signature ``(None, S, S, 1)``), which is
what the CLI and the app call. Candidates, each tried several ways
(every attempt and its error is reported, so the table says what works with TF 2.21 / Keras 3):

- LiteRT as shipped: the model folder's ``model.tflite`` (``radtriage export``) served by
  ``radtriage.litert.LiteRtPredictor`` on the ``ai-edge-litert`` interpreter, the CLI's default backend.
- TFLite: ``model.export(..., format="litert")`` (Keras 3), ``tf.lite.TFLiteConverter.from_keras_model``,
  ``TFLiteConverter.from_concrete_functions``; run with ``tf.lite.Interpreter`` (``num_threads`` = nproc).
- ONNX: ``model.export(..., format="onnx")`` (Keras 3, via tf2onnx), ``tf2onnx.convert.from_function``
  on the tf.function, ``tf2onnx.convert.from_keras``; run with ``onnxruntime`` (CPU provider).

Inputs: ``--n`` preprocessed phantom images (the public load + preprocess path). Outputs are compared
with Keras on all of them (max |difference|, goal < 1e-4); latency at batch 1 (median, p90 over
``--runs``) and throughput at batch ``--batch``. Grad-CAM needs gradients, so it stays on Keras
whatever serves the forward pass.

Run: ``.venv-bench/bin/python bench/bench_export.py [--runs 30] [--batch 32]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

C.quiet_tf()

ATOL = 1e-4
FASTER = 1.1  # speed-up needed at BOTH batch sizes to call a backend faster (timing noise is ~10 %)
Runner = Callable[[np.ndarray], np.ndarray]


# ------------------------------------------------------------------------------------ TFLite


def tflite_bytes(model: Any, fn: Any, work: Path) -> tuple[bytes, str, list[str]]:
    """Convert to a .tflite flatbuffer; returns (bytes, route that worked, errors of the routes that failed)."""
    import tensorflow as tf

    errors = []
    try:
        path = work / "model.tflite"
        model.export(str(path), format="litert", verbose=False)
        return path.read_bytes(), 'model.export(format="litert")', errors
    except Exception as err:  # noqa: BLE001 - try the next route
        errors.append(f'model.export(format="litert"): {type(err).__name__}: {str(err)[:160]}')
    try:
        return tf.lite.TFLiteConverter.from_keras_model(model).convert(), "TFLiteConverter.from_keras_model", errors
    except Exception as err:  # noqa: BLE001
        errors.append(f"TFLiteConverter.from_keras_model: {type(err).__name__}: {str(err)[:160]}")
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], model)
    return converter.convert(), "TFLiteConverter.from_concrete_functions", errors


def tflite_runner(content: bytes, shape: tuple[int, ...]) -> Callable[[int], Runner]:
    """A factory: batch size -> function running the interpreter on a batch of that size."""
    import tensorflow as tf

    def make(batch: int) -> Runner:
        interp = tf.lite.Interpreter(model_content=content, num_threads=os.cpu_count())
        inp = interp.get_input_details()[0]
        interp.resize_tensor_input(inp["index"], [batch, *shape])
        interp.allocate_tensors()
        out = interp.get_output_details()[0]["index"]

        def run(x: np.ndarray) -> np.ndarray:
            interp.set_tensor(inp["index"], x)
            interp.invoke()
            return interp.get_tensor(out).copy()

        return run

    return make


# ------------------------------------------------------------------------------------ ONNX


def onnx_bytes(model: Any, fn: Any, shape: tuple[int, ...], work: Path) -> tuple[bytes, str, list[str]]:
    import tensorflow as tf

    errors = []
    try:
        path = work / "model.onnx"
        model.export(str(path), format="onnx", verbose=False)
        return path.read_bytes(), 'model.export(format="onnx")', errors
    except Exception as err:  # noqa: BLE001
        errors.append(f'model.export(format="onnx"): {type(err).__name__}: {str(err)[:160]}')
    import tf2onnx

    spec = (tf.TensorSpec((None, *shape), tf.float32, name="image"),)
    try:
        proto, _ = tf2onnx.convert.from_function(fn, input_signature=spec, opset=17)
        return proto.SerializeToString(), "tf2onnx.convert.from_function", errors
    except Exception as err:  # noqa: BLE001
        errors.append(f"tf2onnx.convert.from_function: {type(err).__name__}: {str(err)[:160]}")
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=17)
    return proto.SerializeToString(), "tf2onnx.convert.from_keras", errors


def onnx_runner(content: bytes) -> Callable[[int], Runner]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = os.cpu_count() or 1
    session = ort.InferenceSession(content, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda batch: (lambda x: session.run(None, {name: x})[0])


# ------------------------------------------------------------------------------------ the shipped backend

SHIPPED = "LiteRT, the CLI's backend (litert.LiteRtPredictor)"


def shipped_litert(model_dir: Path, xs: np.ndarray, reference: np.ndarray, args: Any) -> dict[str, Any]:
    """The model folder's own verified ``model.tflite`` through ``LiteRtPredictor.predict_batch`` (calibration
    included), on the ai-edge-litert interpreter; exported here first when the folder has none."""
    from radtriage.artifact import read_metadata
    from radtriage.export import export_litert
    from radtriage.litert import LiteRtPredictor, litert_entry

    if litert_entry(read_metadata(model_dir)) is None:
        export_litert(model_dir)
    lite = LiteRtPredictor.from_dir(model_dir)
    r = measure(lambda batch: lite.predict_batch, xs, reference, args.runs, args.batch)
    r.update(route="radtriage export (model.export(format=\"litert\")), recorded in metadata.json",
             file_mib=(model_dir / "model.tflite").stat().st_size / 2**20)
    return r


# ------------------------------------------------------------------------------------ measure


def measure(make: Callable[[int], Runner], xs: np.ndarray, reference: np.ndarray, runs: int, batch: int
            ) -> dict[str, Any]:
    one = make(1)
    got = np.concatenate([one(xs[i:i + 1]) for i in range(len(xs))])
    res: dict[str, Any] = {"max_abs_diff": float(np.max(np.abs(got - reference)))}
    items = [xs[i % len(xs)][None] for i in range(runs)]
    res["batch1"] = C.stats_ms(C.time_calls(one, items, warmup=3))
    big = make(batch)
    xb = np.stack([xs[i % len(xs)] for i in range(batch)])
    res[f"batch{batch}"] = C.stats_ms(C.time_calls(big, [xb] * max(3, runs // 5), warmup=1))
    res["batch_images_per_s"] = batch / (res[f"batch{batch}"]["median_ms"] / 1000)
    return res


def inputs(work: Path, n: int, predictor: Any) -> np.ndarray:
    from radtriage import radiograph

    paths = C.write_inputs(work / "inputs", n - n // 2, n // 2)[:n]
    size = predictor.preprocess_config.size
    return np.stack([predictor.prepare_input(radiograph.load(p, min_side=size)) for p in paths]).astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20, help="distinct preprocessed inputs to compare outputs on")
    parser.add_argument("--runs", type=int, default=30, help="timed batch-1 calls per backend")
    parser.add_argument("--batch", type=int, default=32, help="batch size of the throughput measurement")
    parser.add_argument("--work-dir", help="reuse this folder for inputs and the stand-in model (kept)")
    parser.add_argument("--json", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="bench-export-"))
    export_dir = Path(tempfile.mkdtemp(prefix="bench-export-files-"))
    res: dict[str, Any] = {"machine": C.machine(), "backends": {}, "failed": {}}
    try:
        from radtriage.inference import Predictor

        model_dir, res["model_note"] = C.chest_model_dir(work)
        predictor = Predictor.from_dir(model_dir)
        shape = predictor.input_shape
        xs = inputs(work, args.n, predictor)
        reference = predictor.predict_batch(xs)
        fn = predictor._logits_fn  # the tf.function the Predictor serves with
        keras_make = lambda batch: (lambda x: predictor.calibrate(fn(x).numpy()))  # noqa: E731
        res["backends"]["Keras tf.function (reference)"] = measure(keras_make, xs, reference, args.runs, args.batch)
        res["backends"]["Keras tf.function (reference)"]["route"] = "Predictor.predict_batch's tf.function"
        res["backends"][SHIPPED] = shipped_litert(model_dir, xs, reference, args)
        for name, build in (("TFLite (tf.lite.Interpreter)",
                             lambda: tflite_bytes(predictor.logits_model, fn, export_dir)),
                            ("ONNX Runtime (CPU)", lambda: onnx_bytes(predictor.logits_model, fn, shape, export_dir))):
            try:
                content, route, errors = build()
                logits = tflite_runner(content, shape) if name.startswith("TFLite") else onnx_runner(content)
                make = lambda batch, logits=logits: (  # noqa: E731
                    lambda x, run=logits(batch): predictor.calibrate(run(x)))
                r = measure(make, xs, reference, args.runs, args.batch)
                r.update(route=route, failed_routes=errors, file_mib=len(content) / 2**20)
                res["backends"][name] = r
            except Exception as err:  # noqa: BLE001 - report, keep going
                res["failed"][name] = f"{type(err).__name__}: {str(err)[:300]}"
                traceback.print_exc(file=sys.stderr)
        res["machine"]["loadavg_end"] = C.machine()["loadavg"]
    finally:
        shutil.rmtree(export_dir, ignore_errors=True)
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)

    ref = res["backends"]["Keras tf.function (reference)"]
    rows = []
    for name, r in res["backends"].items():
        rows.append([name, r["route"], f"{r['max_abs_diff']:.1e}", r["batch1"]["median_ms"], r["batch1"]["p90_ms"],
                     r["batch_images_per_s"], ref["batch1"]["median_ms"] / r["batch1"]["median_ms"],
                     r["batch_images_per_s"] / ref["batch_images_per_s"]])
    print("## 2. Serving export (forward pass only; Grad-CAM stays on Keras)\n")
    print(f"Model: {res['model_note']}; {args.n} preprocessed phantom inputs; batch-1 latency over {args.runs} calls, "
          f"throughput at batch {args.batch}.\n")
    print(C.md_table(["backend", "conversion that worked", "max abs diff vs Keras", "batch 1 median ms",
                      "batch 1 p90 ms", f"images/s at batch {args.batch}", "speed-up batch 1",
                      f"speed-up batch {args.batch}"], rows))
    print()
    verdicts = []
    for name, r in res["backends"].items():
        if name.startswith("Keras"):
            continue
        for e in r.get("failed_routes", []):
            print(f"- {name}: route failed: {e}")
        same = r["max_abs_diff"] <= ATOL
        s1 = ref["batch1"]["median_ms"] / r["batch1"]["median_ms"]
        sb = r["batch_images_per_s"] / ref["batch_images_per_s"]
        faster = min(s1, sb) >= FASTER
        r["verdict"] = (f"candidate backend (>= {FASTER}x Keras at batch 1 and {args.batch}, same outputs)"
                        if same and faster else "no: outputs differ" if not same
                        else f"no: not >= {FASTER}x faster at both batch sizes")
        verdicts.append(f"- {name}: outputs within {ATOL:g}: {'yes' if same else 'NO'} "
                        f"({r['max_abs_diff']:.1e}); {s1:.2f}x Keras speed at batch 1, {sb:.2f}x at batch "
                        f"{args.batch} -> {r['verdict']}.")
    for name, why in res["failed"].items():
        verdicts.append(f"- {name}: could not be measured: {why}")
    print("\n".join(verdicts))
    print(f"- Load average at start / end: {res['machine']['loadavg']} / {res['machine']['loadavg_end']}")
    C.write_json(args.json, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
