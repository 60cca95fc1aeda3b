"""How the cost of ``prepare`` and ``predict`` grows with the number of images (time and peak memory).

Images: ``--unique`` chest phantoms rendered once at ``--side``^2 (8-bit PNG), then each size N is a
folder of N symbolic links cycling over them (generation would otherwise dominate; decoding cost
per file is unchanged, the page cache holds the few unique files either way).

Each measurement is a fresh child process (peak resident memory of its whole process tree,
sampled every 50 ms, includes prepare's worker processes):

- prepare: ``radtriage.prepare.prepare(table of N files, PreprocessConfig of the model, cache,
  workers=--workers)`` into an empty cache (the same call ``radtriage prepare`` makes);
- predict: ``python -m radtriage predict <folder> --model M --out results.csv``.

Run: ``.venv-bench/bin/python bench/bench_scaling.py [--sizes 100,1000,5000]``
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

C.quiet_tf()

PREPARE_CHILD = """
import sys, json, pandas as pd
from pathlib import Path
from radtriage.prepare import prepare
from radtriage.preprocess import PreprocessConfig
folder, cache, config, workers = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])
paths = sorted(Path(folder).iterdir())
table = pd.DataFrame({"image_id": [p.stem for p in paths], "path": [str(p) for p in paths]})
index = prepare(table, PreprocessConfig.from_dict(config), cache, workers, progress=False)
print(json.dumps({"cached": len(index.image_ids), "failed": len(index.failures)}))
"""


def make_folder(unique: list[Path], n: int, folder: Path) -> Path:
    folder.mkdir(parents=True)
    for i in range(n):
        (folder / f"img{i:06d}.png").symlink_to(unique[i % len(unique)])
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100,1000,5000", help="comma-separated image counts")
    parser.add_argument("--predict-sizes", default="", help="sizes at which predict runs too (default: all --sizes)")
    parser.add_argument("--unique", type=int, default=50, help="distinct phantoms rendered")
    parser.add_argument("--side", type=int, default=256, help="phantom side in pixels")
    parser.add_argument("--workers", type=int, default=2, help="prepare worker processes")
    parser.add_argument("--work-dir", help="reuse this folder for the unique phantoms and the stand-in model (kept)")
    parser.add_argument("--json", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    predict_sizes = [int(s) for s in args.predict_sizes.split(",") if s.strip()] or sizes
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="bench-scaling-"))
    scratch = Path(tempfile.mkdtemp(prefix="bench-scaling-runs-"))
    res: dict[str, Any] = {"machine": C.machine(), "sizes": {}}
    try:
        import json

        from radtriage.artifact import read_metadata

        model_dir, res["model_note"] = C.chest_model_dir(work)
        config = read_metadata(model_dir).preprocess
        unique_dir = work / f"scaling-unique-{args.side}"
        have = sorted(unique_dir.glob("*.png"))
        if len(have) < args.unique:
            images = C.render([5000 + i for i in range(args.unique)], args.side)
            have = [C.save_png(unique_dir / f"u{i:04d}.png", im) for i, im in enumerate(images)]
        unique = have[: args.unique]
        for n in sizes:
            folder = make_folder(unique, n, scratch / f"n{n}")
            prep = C.run_measured([sys.executable, "-c", PREPARE_CHILD, str(folder), str(scratch / f"cache{n}"),
                                   json.dumps(config.to_dict()), str(args.workers)])
            res["sizes"][n] = {"prepare": {k: prep[k] for k in ("seconds", "peak_tree_mib", "peak_rss_mib", "returncode")}
                               | {"out": prep["stdout"].strip()[-200:]}}
            if n in predict_sizes:
                pred = C.run_measured([sys.executable, "-m", "radtriage", "predict", str(folder), "--model",
                                       str(model_dir), "--out", str(scratch / f"pred{n}.csv"), "--no-progress",
                                       "--studies", "no"])
                res["sizes"][n]["predict"] = ({k: pred[k] for k in ("seconds", "peak_tree_mib", "peak_rss_mib",
                                                                     "returncode")}
                                              | {"out": pred["stderr"].strip().splitlines()[-1:]})
            shutil.rmtree(folder)
            shutil.rmtree(scratch / f"cache{n}", ignore_errors=True)
        res["machine"]["loadavg_end"] = C.machine()["loadavg"]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    rows = []
    for n, r in res["sizes"].items():
        p, q = r["prepare"], r.get("predict")
        rows.append([n, p["seconds"], 1000 * p["seconds"] / n, p["peak_tree_mib"], p["returncode"]]
                    + ([q["seconds"], 1000 * q["seconds"] / n, q["peak_rss_mib"], q["peak_tree_mib"], q["returncode"]] if q
                       else ["not run (--predict-sizes)", "-", "-", "-", "-"]))
    print("## 5. Scaling: prepare and predict vs number of images\n")
    print(f"{args.unique} distinct {args.side}^2 8-bit PNG phantoms rendered once; size N = N symbolic links cycling "
          f"over them. prepare: {args.workers} workers into an empty cache, preprocessing of the model "
          f"(size {config.size}); predict: the batch CLI. Model: {res['model_note']}. Each cell is one fresh "
          "process (times include Python/TensorFlow start-up).\n")
    print(C.md_table(["images", "prepare s", "prepare ms/image", "prepare peak MiB (all processes)", "exit",
                      "predict s", "predict ms/image", "predict peak MiB (main process)",
                      "predict peak MiB (with decoding workers)", "exit"], rows))
    print()
    for what in ("prepare", "predict"):
        done = [n for n in sizes if what in res["sizes"].get(n, {})]
        if len(done) < 2:
            continue
        a, b = res["sizes"][done[0]][what], res["sizes"][done[-1]][what]
        growth = (b["seconds"] - a["seconds"]) / (done[-1] - done[0])
        print(f"- {what}: {1000 * growth:.1f} ms per extra image between {done[0]} and {done[-1]} images "
              f"(time x{b['seconds'] / a['seconds']:.1f} for x{done[-1] / done[0]:.0f} images); peak memory "
              f"{a['peak_tree_mib']:.0f} -> {b['peak_tree_mib']:.0f} MiB ({b['peak_tree_mib'] - a['peak_tree_mib']:+.0f} MiB).")
    skipped = [n for n in sizes if n not in predict_sizes]
    if skipped:
        print(f"- predict not run at {', '.join(map(str, skipped))} images (--predict-sizes), for run time on this machine.")
    print(f"- Load average at start / end: {res['machine']['loadavg']} / {res['machine']['loadavg_end']}")
    C.write_json(args.json, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
