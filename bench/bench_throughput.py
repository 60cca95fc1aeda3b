"""Throughput of the batch CLI: ``python -m radtriage predict`` on mixed files, images/s and peak memory.

Files: ``--n`` files in one folder, cycling over a few unique generated phantoms (16-bit JPEG 2000
DICOMs at 2,048^2 and 8-bit PNGs at 1,024^2, half each, copied under distinct names) plus 5 bad
files (truncated DICOM, text, 32 px image, colour photo, empty file) that must be skipped.

Measured (a fresh child process, as a user runs it: ``radtriage.cli.main`` with the same argv, its
``predict_files`` loop timed from inside): wall time of the whole process including Python and
TensorFlow start-up and model load, the loop's own time (load + preprocess + batched forward of
every file), peak resident memory of the process, files predicted/skipped.

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


def run_cli(folder: Path, model_dir: Path, out: Path, batch_size: int) -> dict[str, Any]:
    import json

    import pandas as pd

    argv = ["predict", str(folder), "--model", str(model_dir), "--out", str(out), "--no-progress", "--studies", "no",
            "--batch-size", str(batch_size)]
    r = C.run_measured([sys.executable, "-c", CHILD, *argv])
    table = pd.read_csv(out) if out.exists() else pd.DataFrame(columns=["status"])
    r["predicted"] = int((table["status"] == "ok").sum())
    r["skipped"] = int((table["status"] == "error").sum())
    r["files"] = len(table)
    r.pop("stdout")
    lines = r.pop("stderr").strip().splitlines()
    timing = [json.loads(line.split(" ", 1)[1]) for line in lines if line.startswith("BENCH_TIMING ")]
    r.update(timing[-1] if timing else {})
    r["cli_message"] = [line for line in lines if line.startswith("predicted ")][-1:]
    return r


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200, help="files in the big run (incl. 5 bad)")
    parser.add_argument("--unique", type=int, default=20, help="distinct generated images the files cycle over")
    parser.add_argument("--batch-size", type=int, default=32, help="the CLI's --batch-size")
    parser.add_argument("--work-dir", help="reuse this folder for inputs and the stand-in model (kept)")
    parser.add_argument("--json", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="bench-throughput-"))
    try:
        model_dir, note = C.chest_model_dir(work)
        res: dict[str, Any] = {"machine": C.machine(), "model_note": note}
        folder = make_folder(work, args.n, args.unique, f"cli{args.n}")
        r = res["run"] = run_cli(folder, model_dir, work / f"cli{args.n}.csv", args.batch_size)
        shutil.rmtree(folder, ignore_errors=True)
        res["images_per_s"] = r["predicted"] / r["seconds"]
        res["loop_images_per_s"] = r["predicted"] / r["loop_s"] if r.get("loop_s") else float("nan")
        res["startup_s"] = r["seconds"] - r.get("loop_s", float("nan"))
        res["machine"]["loadavg_end"] = C.machine()["loadavg"]
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    r = res["run"]
    rows = [[args.n, r["files"], r["predicted"], r["skipped"], r["returncode"], r["seconds"], res["images_per_s"],
             r.get("loop_s", float("nan")), res["loop_images_per_s"], r["peak_rss_mib"]]]
    print("## 3. Batch CLI throughput (python -m radtriage predict)\n")
    print(f"Files: half 2,048^2 16-bit JPEG 2000 DICOM, half 1,024^2 8-bit PNG (copies of {args.unique} generated "
          f"phantoms) + {N_BAD} bad files; --batch-size {args.batch_size}; one fresh process (`cli.main` with the "
          f"predict loop timed from inside). Model: {note}.\n")
    print(C.md_table(["files given", "rows out", "predicted", "skipped", "exit code", "process wall s",
                      "images/s (whole process)", "predict loop s", "images/s (predict loop)", "peak RSS MiB"], rows))
    ok = res["images_per_s"] >= GOAL_IMAGES_PER_S
    print(f"\n- {args.n} files: {res['images_per_s']:.1f} images/s for the whole process, start-up (imports, "
          f"TensorFlow, model load) and CSV included (goal >= {GOAL_IMAGES_PER_S:.0f}: {'met' if ok else 'NOT met'}); "
          f"{res['loop_images_per_s']:.1f} images/s in the predict loop (load + preprocess + batched forward), "
          f"start-up + writing {res['startup_s']:.1f} s.")
    print(f"- CLI said: {' '.join(r['cli_message'])}")
    print(f"- Load average at start / end: {res['machine']['loadavg']} / {res['machine']['loadavg_end']}")
    C.write_json(args.json, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
