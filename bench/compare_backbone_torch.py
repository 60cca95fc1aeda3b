"""Does radtriage.backbones' Keras EfficientNet-Lite compute what the PyTorch port of the same .pth does?

Two interpreters, since torch must never enter the project's venv:

1. This script, run by the project's python, finds each variant's ``.pth`` (the ``train`` extra),
   makes the inputs (seeded uniform noise in [0, 255] and, if scikit-image is installed, its cat,
   coffee and rocket photos, centre-cropped to the native side) and runs the Keras model.
2. It re-runs itself with ``--torch-python`` (a throwaway venv with torch and
   ``efficientnet-lite-pytorch``, the reference network these weights were converted for) in
   ``--torch-side`` mode, which loads the same file with ``torch.load``, checks that every tensor
   equals :func:`radtriage.backbones.read_legacy_pth`'s, and writes the PyTorch logits.

Reported per variant: tensors compared and the max |tensor difference|, max |logit difference|
(PyTorch vs Keras, same inputs, both float32, eval mode), and whether the top-1 classes agree.
The PyTorch port pads statically for the NATIVE side (TF "same" split, extra row/column at the
bottom/right), so the comparison runs at each variant's native resolution.

Set-up (never in the project's venv)::

    python3 -m venv /tmp/torchcheck
    /tmp/torchcheck/bin/pip install torch==2.13.0 numpy efficientnet-lite-pytorch==0.1.0

Run: ``.venv/bin/python bench/compare_backbone_torch.py --torch-python /tmp/torchcheck/bin/python``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

VARIANTS = ("lite0", "lite1", "lite2")
N_NOISE = 4


def torch_side(pth: str, variant: str, inputs: str, out: str, ours: str) -> None:
    """Runs in the torch venv: the reference logits and a tensor-by-tensor check of our reader."""
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    state = torch.load(pth, map_location="cpu", weights_only=True)
    mine = np.load(ours)
    diffs = {k: float(np.abs(v.numpy().astype(np.float64) - mine[k]).max()) if v.numel() else 0.0
             for k, v in state.items()}
    missing = sorted(set(state) ^ set(mine.files))
    model = EfficientNet.from_name(f"efficientnet-{variant}")
    model.load_state_dict(state)
    model.eval()
    x = np.load(inputs)  # (N, H, W, 3) in [0, 255]
    with torch.no_grad():
        logits = model(torch.from_numpy((x.transpose(0, 3, 1, 2) - 127.0) / 128.0).float()).numpy()
    np.save(out, logits)
    print(json.dumps({"tensors": len(state), "key_mismatch": missing, "max_tensor_diff": max(diffs.values())}))


def photos(side: int) -> list[np.ndarray]:
    """scikit-image's cat, coffee and rocket, centre-cropped squares resized to ``side`` (if installed)."""
    try:
        import skimage.data
        from PIL import Image
    except ImportError:
        return []
    out = []
    for name in ("chelsea", "coffee", "rocket"):
        img = getattr(skimage.data, name)()
        h, w = img.shape[:2]
        c = min(h, w)
        crop = img[(h - c) // 2:(h - c) // 2 + c, (w - c) // 2:(w - c) // 2 + c]
        out.append(np.asarray(Image.fromarray(crop).resize((side, side), Image.BICUBIC), np.float32))
    return out


def compare(variant: str, torch_python: str, tmp: Path) -> dict:
    from radtriage import backbones

    side = backbones.BACKBONES[variant].resolution
    rng = np.random.default_rng(0)
    x = np.stack([*photos(side), *rng.uniform(0, 255, (N_NOISE, side, side, 3)).astype(np.float32)])
    np.save(tmp / "x.npy", x)
    np.savez(tmp / "ours.npz", **backbones.read_legacy_pth(backbones.weights_path(variant)))
    model = backbones.efficientnet_lite(variant)
    keras_logits = model.predict(x, verbose=0)
    done = subprocess.run([torch_python, __file__, "--torch-side", str(backbones.weights_path(variant)), variant,
                           str(tmp / "x.npy"), str(tmp / "torch.npy"), str(tmp / "ours.npz")],
                          capture_output=True, text=True, check=True)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    torch_logits = np.load(tmp / "torch.npy")
    report.update(variant=variant, side=side, images=len(x),
                  max_abs_logit_diff=float(np.abs(torch_logits - keras_logits).max()),
                  logit_range=[float(keras_logits.min()), float(keras_logits.max())],
                  top1_agree=bool((torch_logits.argmax(1) == keras_logits.argmax(1)).all()),
                  top1_keras=keras_logits.argmax(1).tolist())
    return report


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--torch-side":
        torch_side(*sys.argv[2:7])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--torch-python", required=True,
                        help="python of a venv with torch + efficientnet-lite-pytorch")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    args = parser.parse_args()
    for variant in args.variants:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(compare(variant, args.torch_python, Path(tmp))), flush=True)


if __name__ == "__main__":
    main()
