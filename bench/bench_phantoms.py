"""Phantom generation speed: images/s for in-memory batches and the dataset writers.

Usage: .venv/bin/python bench/bench_phantoms.py [--n 200] [--size 512] [--workers 2]
(the issue's target: 2,000 images at 512^2 in a few minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import tempfile
import time

from radtriage.phantoms import chest_batch, limb_batch, write_mura, write_vinbigdata


def _rate(label: str, n: int, fn) -> None:
    t0 = time.perf_counter()
    fn()
    dt = time.perf_counter() - t0
    print(f"{label:<40s} {n:5d} images  {dt:7.1f} s  {n / dt:6.1f} images/s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    n, s, w = a.n, a.size, a.workers
    _rate(f"chest_batch {s}px, 1 worker", n // 4, lambda: chest_batch(n // 4, s, workers=1))
    _rate(f"chest_batch {s}px, {w} workers", n, lambda: chest_batch(n, s, workers=w))
    _rate(f"limb_batch {s}px, {w} workers", n, lambda: limb_batch(n, s, workers=w))
    with tempfile.TemporaryDirectory() as tmp:
        _rate(f"write_vinbigdata {s}px DICOM, {w} workers", n, lambda: write_vinbigdata(f"{tmp}/v", n, size=s, workers=w))
        # ~2.5 views per study
        _rate(f"write_mura {s}px PNG, {w} workers", int(n / 2.5) * 5 // 2,
              lambda: write_mura(f"{tmp}/m", int(n / 2.5), size=s, workers=w))


if __name__ == "__main__":
    main()
