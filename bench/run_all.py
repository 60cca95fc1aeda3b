"""Run every benchmark in one go and write bench/RESULTS.md (machine, versions, date, tables, ratios).

Each benchmark runs as a child process of this interpreter (use the bench venv, which has the
project and the peers: ``.venv-bench/bin/python bench/run_all.py``); its printed markdown goes into
RESULTS.md as it is, its JSON (bench/out/, git-ignored) feeds the goals table. Inputs and the
stand-in model are generated once into one work dir shared by the scripts. Teammates' scripts
(bench_load.py, bench_gradcam.py, ...) are run too unless ``--no-team`` (the long ones, bench_dashboard.py and
bench_phantom_training.py, only with ``--team-all``); their output is included verbatim.

Figures from a shared machine drift: compare ratios within one run, not absolute times across runs.
The load average before and after each benchmark is recorded.

Usage:
    .venv-bench/bin/python bench/run_all.py                 # full run (~20-40 min on 2 busy cores)
    .venv-bench/bin/python bench/run_all.py --quick         # tiny settings: checks that everything runs
    .venv-bench/bin/python bench/run_all.py --only inference,export --scaling-sizes 100,1000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
OURS = ("inference", "export", "throughput", "training", "scaling")
# teammates' scripts: arguments in a full run; the last two are long (browser sessions, ~30 CPU-minute
# training) and run only with --team-all
TEAM = {"bench_load.py": ["--runs", "10"], "bench_gradcam.py": ["--runs", "10"], "bench_phantoms.py": ["--n", "50"], "bench_dashboard.py": [],
        "bench_phantom_training.py": []}
TEAM_LONG = ("bench_dashboard.py", "bench_phantom_training.py")
TEAM_QUICK = {"bench_load.py": ["--runs", "3"], "bench_gradcam.py": ["--runs", "3", "--skip-densenet"],
              "bench_phantoms.py": ["--n", "8", "--size", "256"], "bench_dashboard.py": ["--sessions", "2"]}


def ours_args(name: str, work: Path, args: argparse.Namespace) -> list[str]:
    """Command-line arguments of our benchmark ``name`` (full or --quick settings)."""
    common = ["--json", str(OUT / f"{name}.json")]
    shared = ["--work-dir", str(work)]
    if args.quick:
        return common + {
            "inference": shared + ["--n-dicom", "2", "--n-png", "2", "--dicom-side", "512", "--png-side", "256",
                                   "--render-side", "256", "--skip-densenet"],
            "export": shared + ["--n", "4", "--runs", "5", "--batch", "8"],
            "throughput": shared + ["--n", "30", "--unique", "4"],
            "training": ["--steps", "2", "--warmup-steps", "1", "--phantoms", "16", "--epochs", "1", "--nih-limit", "40"],
            "scaling": shared + ["--sizes", "20,60", "--unique", "6"],
        }[name]
    threads = ["--threads", str(args.threads)] if args.threads else []
    return common + {
        "inference": shared + ["--repeats", str(args.repeats)] + threads,
        "export": shared + ["--runs", "20"],
        "throughput": shared,
        "training": ["--epochs", str(args.epochs), "--steps", "4", "--warmup-steps", "1"],
        "scaling": shared + ["--sizes", args.scaling_sizes]
                   + (["--predict-sizes", args.scaling_predict_sizes] if args.scaling_predict_sizes else []),
    }[name]


def run_script(script: Path, argv: list[str], timeout: float) -> dict[str, Any]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
           "PYTHONWARNINGS": "ignore"}
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    try:
        p = subprocess.run([sys.executable, str(script), *argv], capture_output=True, text=True, timeout=timeout,
                           env=env, cwd=C.ROOT)
        code, out, err = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as e:
        code, out, err = "timeout", (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or ""), ""
    return {"script": script.name, "argv": argv, "returncode": code, "stdout": out, "stderr_tail": err[-3000:],
            "seconds": time.perf_counter() - start, "load_before": load_before, "load_after": os.getloadavg()[0]}


def goals(results: dict[str, dict[str, Any]]) -> list[list[Any]]:
    """The issue's goals, from the JSON of this run."""
    rows: list[list[Any]] = []
    inf = results.get("inference") or {}
    r = inf.get("ratios", {})
    if "ours_over_xrv" in r:
        rows.append(["ours end to end (load + preprocess + probs + Grad-CAM) / torchxrayvision end to end (+ saliency)",
                     "<= 0.25x", f"{r['ours_over_xrv']:.2f}x", "met" if r["ours_over_xrv"] <= 0.25 else "NOT met"])
    if "gradcam_over_forward" in r:
        rows.append(["Grad-CAM (predict_and_explain, top class) / forward (predict_batch), batch 1", "<= 1.5x",
                     f"{r['gradcam_over_forward']:.2f}x (given class: {r.get('gradcam_given_class_over_forward', 0):.2f}x)",
                     "met" if r["gradcam_over_forward"] <= 1.5 else "NOT met"])
    thr = results.get("throughput") or {}
    if "images_per_s" in thr:
        rows.append(["batch CLI images/s (200 mixed files), whole process incl. start-up, default settings "
                     "(LiteRT backend + decoding workers)", ">= 30",
                     f"{thr['images_per_s']:.1f} (predict loop alone: {thr['loop_images_per_s']:.1f})",
                     "met" if thr["images_per_s"] >= 30 else "NOT met"])
    return rows


def peer_ratios(results: dict[str, dict[str, Any]]) -> list[str]:
    inf = results.get("inference") or {}
    out = []
    for name, ratio in (inf.get("ratios") or {}).items():
        if name in ("ours_over_xrv", "gradcam_over_forward", "gradcam_given_class_over_forward"):
            continue
        out.append(f"- {name}: {ratio:.2f}x our end-to-end time")
    exp = results.get("export") or {}
    for name, b in (exp.get("backends") or {}).items():
        if "verdict" in b:
            out.append(f"- serving {name}: {b['verdict']} (max abs diff {b['max_abs_diff']:.1e})")
    return out


def write_results(path: Path, runs: list[dict[str, Any]], results: dict[str, dict[str, Any]], args: argparse.Namespace,
                  started: str, load_start: list[float]) -> None:
    m = C.machine()
    v = C.versions()
    lines = ["# Benchmark results", "",
             f"Generated by `bench/run_all.py{' --quick' if args.quick else ''}` on {started} "
             f"(finished {m['date']}); code at git {m['git_commit']}{' + uncommitted changes' if m['git_dirty'] else ''}.",
             "All figures below come from this one run on this machine. The machine is shared: absolute times drift "
             "between runs, the ratios between pipelines measured in the same run are what to compare.", "",
             f"Chest model measured by every benchmark of this run: {os.environ.get(C.PIN_NOTE_ENV, 'see each section')}.",
             "",
             "## Machine", "",
             C.md_table(["nproc", "CPU", "RAM GiB", "platform", "load average at start (1, 5, 15 min)",
                         "load average at end"],
                        [[m["nproc"], m["cpu"], m["ram_gib"], m["platform"], load_start, m["loadavg"]]]), "",
             "## Versions", "", C.md_table(["package", "version"], [[k, val] for k, val in v.items()]), "",
             "## Goals (issue)", ""]
    g = goals(results)
    lines += [C.md_table(["goal", "target", "measured", "verdict"], g) if g else "(no goal could be measured)", ""]
    pr = peer_ratios(results)
    if pr:
        lines += ["Other ratios:", ""] + pr + [""]
    lines += ["## Runs", "", C.md_table(["script", "exit code", "wall s", "load before", "load after"],
                                        [[r["script"], r["returncode"], r["seconds"], r["load_before"], r["load_after"]]
                                         for r in runs]), ""]
    for r in runs:
        if r["script"].startswith("bench_") and r["script"].removeprefix("bench_").removesuffix(".py") in OURS:
            lines += [r["stdout"].strip() or f"## {r['script']}\n\n(no output)", ""]
            if r["returncode"] != 0:
                lines += ["```", r["stderr_tail"].strip()[-1500:], "```", ""]
    team = [r for r in runs if r["script"] in TEAM]
    if team:
        lines += ["## Teammates' benchmarks (their printed output, verbatim)", ""]
        for r in team:
            lines += [f"### {r['script']} {' '.join(r['argv'])}".rstrip(), "", "```",
                      (r["stdout"].strip() or "(no output)") + ("" if r["returncode"] == 0 else
                                                                f"\n[exit {r['returncode']}] " + r["stderr_tail"][-800:]),
                      "```", ""]
    path.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny settings (smoke test; not for RESULTS)")
    parser.add_argument("--only", default=",".join(OURS), help=f"comma-separated subset of {', '.join(OURS)}")
    parser.add_argument("--no-team", action="store_true", help="skip teammates' bench scripts")
    parser.add_argument("--team-all", action="store_true",
                        help=f"also run the long teammates' scripts ({', '.join(TEAM_LONG)})")
    parser.add_argument("--repeats", type=int, default=1, help="inference: timed passes over the 20 inputs")
    parser.add_argument("--threads", type=int, default=0, help="inference: TF/torch intra-op threads (0: defaults)")
    parser.add_argument("--epochs", type=int, default=1, help="training: NIH epochs")
    parser.add_argument("--scaling-sizes", default="100,1000,5000", help="scaling: image counts")
    parser.add_argument("--scaling-predict-sizes", default="",
                        help="scaling: sizes at which predict runs too (default: all); predict is the slow part")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per script")
    parser.add_argument("--out", default=str(HERE / "RESULTS.md"), help="results file")
    parser.add_argument("--work-dir", help="shared inputs/model folder (default: a temp dir, removed)")
    args = parser.parse_args(argv)
    OUT.mkdir(exist_ok=True)
    started = C.machine()["date"]
    load_start = [round(x, 2) for x in os.getloadavg()]
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="bench-all-"))
    runs, results = [], {}
    try:
        # one model for the whole run: the shipped one copied now (a teammate may replace it mid-run)
        model_dir, note = C.chest_model_dir(work)
        if model_dir.resolve() == C.SHIPPED_CHEST.resolve():
            shutil.copytree(model_dir, work / "chest-pinned", dirs_exist_ok=True)
            model_dir, note = work / "chest-pinned", note + ", copied at run start"
        os.environ[C.PIN_ENV], os.environ[C.PIN_NOTE_ENV] = str(model_dir), note
        print(f"[run_all] model: {note}", file=sys.stderr, flush=True)
        for name in [n.strip() for n in args.only.split(",") if n.strip()]:
            if name not in OURS:
                parser.error(f"unknown benchmark {name!r}; known: {', '.join(OURS)}")
            print(f"[run_all] bench_{name}.py ...", file=sys.stderr, flush=True)
            (OUT / f"{name}.json").unlink(missing_ok=True)
            r = run_script(HERE / f"bench_{name}.py", ours_args(name, work, args), args.timeout)
            runs.append(r)
            print(r["stdout"], flush=True)
            print(f"[run_all] bench_{name}.py exit {r['returncode']} in {r['seconds']:.0f} s", file=sys.stderr)
            if r["returncode"] != 0:
                print(r["stderr_tail"], file=sys.stderr)
            js = OUT / f"{name}.json"
            results[name] = json.loads(js.read_text()) if js.is_file() else {}
        if not args.no_team:
            for script, extra in TEAM.items():
                if (HERE / script).is_file() and (args.team_all or script not in TEAM_LONG):
                    extra = TEAM_QUICK.get(script, []) if args.quick else extra
                    print(f"[run_all] {script} ...", file=sys.stderr, flush=True)
                    runs.append(run_script(HERE / script, extra, args.timeout))
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    write_results(Path(args.out), runs, results, args, started, load_start)
    print(f"[run_all] wrote {args.out}", file=sys.stderr)
    failed = [r["script"] for r in runs if r["returncode"] != 0]
    if failed:
        print(f"[run_all] non-zero exit: {', '.join(failed)}", file=sys.stderr)
    return 0 if not [f for f in failed if f.removeprefix("bench_").removesuffix(".py") in OURS] else 1


if __name__ == "__main__":
    sys.exit(main())
