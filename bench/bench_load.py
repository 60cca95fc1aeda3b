"""Time load + preprocess (warm, median and p90 over N runs) on synthetic files in a temp dir.

Run: .venv/bin/python bench/bench_load.py [--runs 20]
Cases: 2048^2 JPEG 2000 (lossless) DICOM, 16- and 12-bit, with min_side=256 (reduced decode via
Pillow) and without (full pydicom decode); a 1024^2 8-bit PNG. Nothing is written to the project.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from dicom_fixtures import compressed, dicom_bytes, make_dataset, png_bytes, smooth_texture  # noqa: E402
from pydicom.uid import JPEG2000Lossless  # noqa: E402

from radtriage.preprocess import PreprocessConfig, preprocess  # noqa: E402
from radtriage.radiograph import load  # noqa: E402

SIDE_DICOM = 2048
SIDE_PNG = 1024
CONFIG = PreprocessConfig(size=256)


def radiograph_like(side: int, top: int, seed: int = 0) -> np.ndarray:
    """Smooth anatomy-like field plus noise so the codestream is realistically sized."""
    base = smooth_texture(side, side, int(top * 0.9), seed=seed).astype(np.int64)
    noise = np.random.default_rng(seed).integers(0, max(top // 100, 2), base.shape)
    return np.clip(base + noise, 0, top).astype(np.uint16)


def time_case(path: Path, min_side: int | None, runs: int) -> tuple[float, float, tuple[int, int]]:
    """Median and p90 in ms of load(path, min_side) + preprocess, after one warm-up run."""
    rad = load(path, min_side=min_side)
    preprocess(rad.pixels, CONFIG)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        rad = load(path, min_side=min_side)
        preprocess(rad.pixels, CONFIG)
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times)), float(np.percentile(times, 90)), rad.pixels.shape


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cases = []
        for bits in (16, 12):
            arr = radiograph_like(SIDE_DICOM, 2**bits - 1)
            ds = compressed(make_dataset(arr, bits_stored=bits), JPEG2000Lossless)
            path = Path(tmp) / f"j2k_{bits}bit.dcm"
            path.write_bytes(dicom_bytes(ds))
            for min_side in (256, None):
                cases.append((f"DICOM J2K {SIDE_DICOM}^2 {bits}-bit, min_side={min_side}", path, min_side))
        png = Path(tmp) / "image.png"
        png.write_bytes(png_bytes((radiograph_like(SIDE_PNG, 65535) >> 8).astype(np.uint8)))
        cases.append((f"PNG {SIDE_PNG}^2 8-bit", png, None))
        print(f"load + preprocess(size={CONFIG.size}), warm, {args.runs} runs")
        for label, path, min_side in cases:
            median, p90, shape = time_case(path, min_side, args.runs)
            size_mb = path.stat().st_size / 1e6
            print(f"{label:<42} file {size_mb:5.1f} MB  decoded {shape}  median {median:7.1f} ms  p90 {p90:7.1f} ms")


if __name__ == "__main__":
    main()
