"""Time a forward pass vs Grad-CAM (warm, median over N runs, batch of 1) on CPU; and the shipped
models' Grad-CAM on both backends (Keras vs the LiteRT export the dashboard and PACS use), warm and
from a cold process (import + load + first heatmap).

Run: .venv/bin/python bench/bench_gradcam.py [--runs 20] [--skip-densenet]
Models (random weights; speed does not depend on them):
- a small 4-block CNN at 256 x 256 (the size of the project's default preprocessing);
- DenseNet-121 at 224 x 224 x 1 + global pooling + Dense "logits" + sigmoid.
Forward is timed two ways: ``model.predict_on_batch`` (what a script usually calls) and a
tf.function-compiled ``model(x, training=False)`` (the fair baseline for the compiled Grad-CAM).
Grad-CAM alternates the class index each run, so a retrace would show up in the time.
"""

from __future__ import annotations

import argparse
import time

import keras
import numpy as np
import tensorflow as tf

from radtriage.gradcam import GradCam

N_CLASSES = 14


def small_cnn(size: int) -> keras.Model:
    inputs = keras.Input((size, size, 1))
    h = inputs
    for i, filters in enumerate((16, 32, 64, 128)):
        h = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(h)
        h = keras.layers.MaxPooling2D()(h) if i < 3 else h
    h = keras.layers.Conv2D(128, 3, padding="same", activation="relu", name="gradcam_target")(h)
    return with_head(inputs, h)


def densenet(size: int) -> keras.Model:
    base = keras.applications.DenseNet121(weights=None, include_top=False, input_shape=(size, size, 1))
    # rename the last feature layer so the flat model exposes "gradcam_target"
    features = keras.layers.Activation("linear", name="gradcam_target")(base.output)
    return with_head(base.input, features)


def with_head(inputs: keras.KerasTensor, features: keras.KerasTensor) -> keras.Model:
    pooled = keras.layers.GlobalAveragePooling2D()(features)
    logits = keras.layers.Dense(N_CLASSES, name="logits")(pooled)
    return keras.Model(inputs, keras.layers.Activation("sigmoid", name="probabilities")(logits))


def median_ms(fn, runs: int) -> float:
    fn(0)  # warm-up (tracing, allocation)
    fn(1)
    times = []
    for i in range(runs):
        start = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def bench(name: str, model: keras.Model, runs: int) -> None:
    size = model.input_shape[1]
    x = np.random.default_rng(0).random((1, size, size, 1)).astype(np.float32)
    xt = tf.constant(x)
    compiled = tf.function(lambda t: model(t, training=False))
    build_start = time.perf_counter()
    gradcam = GradCam(model)
    gradcam(x, 0)
    build_ms = 1000 * (time.perf_counter() - build_start)
    t_predict = median_ms(lambda i: model.predict_on_batch(x), runs)
    t_forward = median_ms(lambda i: compiled(xt).numpy(), runs)
    t_gradcam = median_ms(lambda i: gradcam(x, i % N_CLASSES), runs)
    print(
        f"{name:<22} forward predict_on_batch {t_predict:7.1f} ms | forward tf.function {t_forward:7.1f} ms | "
        f"Grad-CAM {t_gradcam:7.1f} ms  (= {t_gradcam / t_forward:.2f}x compiled forward, "
        f"{t_gradcam / t_predict:.2f}x predict) | first call incl. build+trace {build_ms:.0f} ms | "
        f"traces {gradcam.tracing_count}"
    )


COLD = """
import time, sys
t0 = time.perf_counter()
import numpy as np
from radtriage.serving import load_predictor
p = load_predictor(sys.argv[1], backend=sys.argv[2], explain=True)
t1 = time.perf_counter()
p.predict_and_explain(np.full(p.input_shape, 0.5, np.float32))
t2 = time.perf_counter()
print(f"{t1 - t0:.3f} {t2 - t1:.3f} {'tensorflow' in sys.modules}")
"""


def shipped(runs: int) -> None:
    """Keras vs LiteRT Grad-CAM of the shipped models: warm per-image time, agreement, cold start."""
    import subprocess
    import sys
    from pathlib import Path

    from radtriage.serving import load_predictor

    root = Path(__file__).resolve().parents[1] / "model"
    for task in ("chest", "mura"):
        folder = root / task
        if not (folder / "model.h5").is_file():
            continue
        keras_p, lite_p = load_predictor(folder, "keras"), load_predictor(folder, "auto", explain=True)
        x = np.random.default_rng(1).random(keras_p.input_shape).astype(np.float32)
        n = len(keras_p.classes)
        t_keras = median_ms(lambda i: keras_p.predict_and_explain(x, None if i % 2 else i % n), runs)
        t_lite = median_ms(lambda i: lite_p.predict_and_explain(x, None if i % 2 else i % n), runs)
        diff = max(float(np.abs(keras_p.predict_and_explain(x, c).heatmap - lite_p.predict_and_explain(x, c).heatmap).max())
                   for c in (None, 0, n - 1))
        cold = {}
        for backend in ("keras", lite_p.backend):
            out = subprocess.run([sys.executable, "-c", COLD, str(folder), backend], capture_output=True, text=True,
                                 check=True).stdout.split()
            cold[backend] = f"import+load {float(out[0]):.2f} s, first heatmap {float(out[1]):.2f} s, TensorFlow loaded: {out[2]}"
        print(f"shipped {task}: probabilities + Grad-CAM + OOD features, one image: Keras {t_keras:.1f} ms | "
              f"{lite_p.backend} {t_lite:.1f} ms ({t_keras / t_lite:.1f}x); max |heatmap difference| {diff:.1e}")
        for backend, text in cold.items():
            print(f"  cold process, {backend}: {text}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--skip-densenet", action="store_true")
    args = parser.parse_args()
    print(f"TF {tf.__version__}, Keras {keras.__version__}, CPU threads {tf.config.threading.get_intra_op_parallelism_threads() or 'default'}; batch 1, median of {args.runs} warm runs")
    bench("small CNN 256x256", small_cnn(256), args.runs)
    if not args.skip_densenet:
        bench("DenseNet-121 224x224", densenet(224), args.runs)
    shipped(args.runs)


if __name__ == "__main__":
    main()
