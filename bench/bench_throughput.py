"""Throughput of the batch CLI: ``python -m radtriage predict`` on mixed files, images/s and peak memory.

Files: ``--n`` files in one folder, cycling over a few unique generated phantoms (16-bit JPEG 2000
DICOMs at 2,048^2 and 8-bit PNGs at 1,024^2, half each, copied under distinct names) plus 5 bad
files (truncated DICOM, text, 32 px image, colour photo, empty file) that must be skipped.

Measured per configuration (a fresh child process, as a user runs it: ``radtriage.cli.main`` with the
same argv, its ``predict_files`` loop timed from inside): wall time of the whole process including
Python start-up, imports and model load, the loop's own time (load + preprocess + batched forward of
every file, anatomy gate included), peak resident memory of the process, files predicted/skipped. Configurations: the Keras
backend decoding in the main process (the first implementation), the LiteRT backend alone, and the
default (LiteRT + decoding worker processes).

Run: ``.venv-bench/bin/python bench/bench_throughput.py [--n 200] [--unique 10]``
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

GOAL_IMAGES_PER_S = 30.0
N_BAD = 5


def make_folder(work: Path, n: int, unique: int, tag: str) -> Path:
    """``n`` files (n - 5 good copies cycling over the unique inputs, 5 bad) in ``work/<tag>``."""
    src = C.write_inputs(work / "inputs", unique // 2 or 1, unique - unique // 2 or 1)
    folder = work / tag
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for i in range(n - N_BAD):
        s = src[i % len(src)]
        shutil.copyfile(s, folder / f"img{i:05d}{s.suffix}")  # copies: distinct files, as a user's folder
    C.bad_files(folder / "bad")
    return folder


# ``python -m radtriage predict ...`` with the predict loop timed from inside (same argv, same code path):
# the process's wall time minus the loop is start-up (imports, TensorFlow, model load, tracing) + writing.
CHILD = """
import json, sys, time
t0 = time.perf_counter()
from radtriage import cli
timing = {}
original = cli.predict_files
def timed(*args, **kwargs):
    start = time.perf_counter()
    out = original(*args, **kwargs)
    timing["loop_s"] = time.perf_counter() - start
    return out
cli.predict_files = timed
code = cli.main(sys.argv[1:])
timing["main_s"] = time.perf_counter() - t0
print("BENCH_TIMING " + json.dumps(timing), file=sys.stderr)
sys.exit(code)
"""


def run_cli(folder: Path, model_dir: Path, out: Path, batch_size: int, extra: list[str]) -> dict[str, Any]:
    import json

    import pandas as pd

    # --force: the inputs are phantoms, which the real-data models call out of distribution; forced, every
    # readable file still goes through the anatomy gate and the model, and gets its probabilities
    argv = ["predict", str(folder), "--model", str(model_dir), "--out", str(out), "--no-progress", "--studies", "no",
            "--batch-size", str(batch_size), "--force", *extra]
    r = C.run_measured([sys.executable, "-c", CHILD, *argv])
    table = pd.read_csv(out) if out.exists() else pd.DataFrame(columns=["status"])
    r["predicted"] = int(table["status"].isin(["ok", "forced"]).sum())
    r["skipped"] = int((table["status"] == "error").sum())
    r["files"] = len(table)
    r.pop("stdout")
    lines = r.pop("stderr").strip().splitlines()
    timing = [json.loads(line.split(" ", 1)[1]) for line in lines if line.startswith("BENCH_TIMING ")]
    r.update(timing[-1] if timing else {})
    r["cli_message"] = [line for line in lines if line.startswith("predicted ")][-1:]
    return r


def configurations() -> list[tuple[str, list[str]]]:
    """(label, extra CLI flags): the default last, after the Keras-only and no-parallel-decode baselines."""
    from radtriage.cli import DEFAULT_WORKERS

    return [("keras backend, decode in the main process", ["--backend", "keras", "--workers", "1"]),
            ("litert backend, decode in the main process", ["--backend", "litert", "--workers", "1"]),
            (f"default: --backend auto (litert) --workers {DEFAULT_WORKERS}", [])]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200, help="files in the big run (incl. 5 bad)")
    parser.add_argument("--unique", type=int, default=20, help="distinct generated images the files cycle over")
    parser.add_argument("--batch-size", type=int, default=32, help="the CLI's --batch-size")
    parser.add_argument("--work-dir", help="reuse this folder for inputs and the stand-in model (kept)")
    parser.add_argument("--json", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="bench-throughput-"))
    res: dict[str, Any] = {"machine": C.machine(), "runs": {}}
    try:
        model_dir, note = C.chest_model_dir(work)
        res["model_note"] = note
        folder = make_folder(work, args.n, args.unique, f"cli{args.n}")
        for label, extra in configurations():
            r = run_cli(folder, model_dir, work / f"cli{args.n}.csv", args.batch_size, extra)
            r["flags"] = " ".join(extra) or "(none)"
            r["images_per_s"] = r["predicted"] / r["seconds"]
            r["loop_images_per_s"] = r["predicted"] / r["loop_s"] if r.get("loop_s") else float("nan")
            r["startup_s"] = r["seconds"] - r.get("loop_s", float("nan"))
            res["runs"][label] = r
        shutil.rmtree(folder, ignore_errors=True)
        res["machine"]["loadavg_end"] = C.machine()["loadavg"]
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    rows = [[label, r["flags"], r["files"], r["predicted"], r["skipped"], r["returncode"], r["seconds"],
             r["images_per_s"], r.get("loop_s", float("nan")), r["loop_images_per_s"], r["startup_s"],
             r["peak_rss_mib"], r["peak_tree_mib"]] for label, r in res["runs"].items()]
    print("## 3. Batch CLI throughput (python -m radtriage predict)\n")
    print(f"Files: {args.n} given: half 2,048^2 16-bit JPEG 2000 DICOM, half 1,024^2 8-bit PNG (copies of "
          f"{args.unique} generated phantoms) + {N_BAD} bad files; --batch-size {args.batch_size}; each row one fresh "
          f"process (`cli.main` with the predict loop timed from inside). Model: {note}.\n")
    print(C.md_table(["configuration", "extra flags", "rows out", "predicted", "skipped", "exit code",
                      "process wall s", "images/s (whole process)", "predict loop s", "images/s (predict loop)",
                      "start-up + writing s", "peak RSS MiB (main process)",
                      "peak RSS MiB (with decoding workers)"], rows))
    label, r = list(res["runs"].items())[-1]
    res["images_per_s"], res["loop_images_per_s"] = r["images_per_s"], r["loop_images_per_s"]
    ok = r["images_per_s"] >= GOAL_IMAGES_PER_S
    base = res["runs"][next(iter(res["runs"]))]
    print(f"\n- Default ({label}): {r['images_per_s']:.1f} images/s for the whole process, start-up and CSV "
          f"included (goal >= {GOAL_IMAGES_PER_S:.0f}: {'met' if ok else 'NOT met'}); {r['loop_images_per_s']:.1f} "
          f"images/s in the predict loop (load + preprocess + batched forward); start-up + writing "
          f"{r['startup_s']:.1f} s. Against Keras without parallel decoding: x{r['images_per_s'] / base['images_per_s']:.2f} "
          f"whole process, x{r['loop_images_per_s'] / base['loop_images_per_s']:.2f} loop.")
    print(f"- CLI said: {' '.join(r['cli_message'])}")
    print(f"- Load average at start / end: {res['machine']['loadavg']} / {res['machine']['loadavg_end']}")
    C.write_json(args.json, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
