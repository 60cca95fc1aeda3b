"""Dashboard speed and memory (issue 17, step 6), printed (never asserted).

Run: .venv/bin/python bench/bench_dashboard.py [--runs 7] [--cold-runs 3] [--sessions 16] [--results bench/RESULTS.md]

Models: the shipped ones in model/ (chest, mura, the anatomy gate) when present, else random-weight
small_cnn stand-ins (no gate) written to a temp dir. Inputs: a real NIH chest radiograph from
../shared/data (it is flagged and not refused, so its Grad-CAM caption appears) made into a
1,024 px 12-bit DICOM, a 2,048 px 14-bit JPEG 2000 DICOM and a 1,024 px 8-bit PNG; without that
folder, the 2,048 px JPEG 2000 phantom of app_images (refused by the shipped gate: the timed end is
then the refusal). Every upload is a new copy (one changed non-pixel tag or PNG text chunk), so it
is a new file to every cache.

Prints:
1. where the time of one upload goes, stage by stage, measured in this process with the engine's
   own functions (decode, display image, gate, model input, probabilities + Grad-CAM + OOD, heatmap
   onto the display image, image encoding as st.image does it, results table and chart spec);
2. a new session on a warm server, in Chromium: from handing the file to the uploader to the
   end marker on screen (the Grad-CAM caption when something is flagged), median and range of N;
   what is left beside the server-side stages is Streamlit's rerun, the websocket and the browser;
3. the first upload after the server starts (each run a new server);
4. concurrent sessions uploading at once: errors, wall time, server RSS.
With --results, the printed text replaces this script's section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))

import _common as C  # noqa: E402
from dashboard_support import AppServer, build_models, launch_chromium, wait_until_idle  # noqa: E402

PHANTOM = REPO / "app_images" / "chest_02_cardiomegaly.dcm"  # 2,048 px JPEG 2000
NIH = REPO.parent / "shared" / "data" / "nih-cxr-sample" / "images" / "00000100_000.png"  # effusion, atelectasis
SIZE, WIDTH, DEPTH = 256, 32, 4  # stand-in small_cnn when model/ is empty
KINDS = ("1024^2 DICOM", "2048^2 J2K DICOM", "1024^2 PNG")
SECTION = "### bench_dashboard.py"
SUB = "- "  # a part of the stage above it (not added again into the sum)
GRAPH_CALLS: list[int] = []  # Grad-CAM graph calls per examined file
LINES: list[str] = []


def say(text: str = "") -> None:
    """Print a line and keep it for RESULTS.md."""
    print(text, flush=True)
    LINES.append(text)


# --- inputs ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Source:
    """The pixels every input is made from, and what they are."""

    pixels: np.ndarray  # float32 (H, W) in [0, 1]
    note: str


def source() -> Source:
    """A real NIH radiograph when ../shared/data is present, else the JPEG 2000 phantom."""
    from radtriage import radiograph

    if NIH.is_file():
        return Source(radiograph.load(NIH).pixels, f"real NIH chest radiograph {NIH.name} (512 px, upsampled)")
    return Source(radiograph.load(PHANTOM).pixels, f"synthetic phantom {PHANTOM.name} (../shared/data is absent)")


def _resized(pixels: np.ndarray, side: int) -> np.ndarray:
    from PIL import Image

    img = Image.fromarray(np.asarray(pixels, np.float32), mode="F").resize((side, side), Image.Resampling.LANCZOS)
    return np.clip(np.asarray(img, np.float32), 0.0, 1.0)


class Inputs:
    """Uploadable copies of one image in the three formats; every copy is new bytes, same pixels."""

    def __init__(self, src: Source, scratch: Path) -> None:
        from radtriage.phantoms.dicom_writer import write_dicom

        self.base: dict[str, bytes] = {}
        p1024 = _resized(src.pixels, 1024)
        self.base[KINDS[0]] = write_dicom(scratch / "a.dcm", p1024, uid_key="bench-1024", bits_stored=12).read_bytes()
        if src.pixels.shape == (2048, 2048) and not NIH.is_file():
            self.base[KINDS[1]] = PHANTOM.read_bytes()
        else:
            self.base[KINDS[1]] = write_dicom(scratch / "b.dcm", _resized(src.pixels, 2048), uid_key="bench-2048",
                                              bits_stored=14, jpeg2000=True).read_bytes()
        self.png_pixels = np.rint(p1024 * 255).astype(np.uint8)

    def copy(self, kind: str, index: int) -> tuple[str, bytes, str]:
        """(file name, bytes, MIME type) of copy ``index`` of ``kind``."""
        if kind == KINDS[2]:
            from PIL import Image, PngImagePlugin

            info = PngImagePlugin.PngInfo()
            info.add_text("Comment", f"benchmark copy {index}")
            buf = io.BytesIO()
            Image.fromarray(self.png_pixels).save(buf, "PNG", pnginfo=info)
            return f"png{index}.png", buf.getvalue(), "image/png"
        import pydicom

        ds = pydicom.dcmread(io.BytesIO(self.base[kind]))
        ds.SeriesDescription = f"benchmark copy {index}"
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        tag = "d1024" if kind == KINDS[0] else "d2048"
        return f"{tag}_{index}.dcm", buf.getvalue(), "application/dicom"


# --- 1. where the time goes, in this process --------------------------------------------------
def _timed(stages: dict[str, list[float]], label: str, fn: Callable, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    stages.setdefault(label, []).append(time.perf_counter() - t0)
    return out


def _st_image_bytes(image: np.ndarray, output_format: str) -> bytes:
    """What st.image does to a NumPy image before sending it (Streamlit's own encoder)."""
    from streamlit.elements.lib import image_utils as iu
    from streamlit.elements.lib.layout_utils import LayoutConfig

    data = iu._np_array_to_bytes(image, output_format)
    return iu._ensure_image_size_and_format(data, LayoutConfig(width="stretch"),
                                            iu._validate_image_format_string(data, output_format))


@dataclass(frozen=True)
class Expected:
    """What the page shows at the end of an upload's run, found in this process."""

    marker: str  # text on screen that ends the timing ("{name}" stands for the file name)
    what: str


def stage_breakdown(model_dir: Path, inputs: Inputs, runs: int) -> dict[str, Expected]:
    """Time each server-side stage of one upload with the engine's own calls; returns the end markers."""
    from radtriage import contract, locations, radiograph, tasks, triage
    from radtriage.dashboard import engine, imaging, settings, tables, views
    from radtriage.preprocess import model_input

    os.environ[locations.MODEL_DIR_ENV] = str(model_dir)
    t0 = time.perf_counter()
    model = engine.get_model(tasks.get("chest"))
    t_load = time.perf_counter() - t0
    gate = engine.get_gate()
    facts = model.facts
    expected, per_kind = {}, {}
    for kind in KINDS:
        stages: dict[str, list[float]] = {}
        for i in range(runs + 1):  # the first run traces the graphs: not counted
            name, data, _ = inputs.copy(kind, 900 + i)
            rg = _timed(stages, "decode", radiograph.load, data, min_side=settings.DECODE_MIN_SIDE, name=name)
            display = _timed(stages, "display image (downsample)", imaging.to_display, rg.pixels, settings.DISPLAY_SIDE)
            decoded = engine.Decoded(name=name, digest=f"{kind}{i}", radiograph=rg, display=display, data=data)
            verdict = None
            if gate is not None:
                shared = getattr(engine, "input_for", None)  # one input for the gate and the model
                xg = _timed(stages, "anatomy gate: input", shared or model_input, *((decoded, gate.preprocess_config)
                                                                                   if shared else (rg, gate.preprocess_config, data)))
                verdict = _timed(stages, "anatomy gate: LiteRT", gate.assess, xg[None])[0]
            exam, ratio = _timed(stages, "examination + OOD, total", _examine, stages, engine, model, decoded)
            _timed(stages, "preview image encode (st.image)", _st_image_bytes, display, "auto")
            status, _ = triage.decide(verdict, model.task, ratio, False)
            index = contract.heatmap_class(facts.classes, exam.probs, facts.thresholds, facts.flaggable)
            if status == triage.REFUSED:
                marker = Expected("Turn on 'Show results the anatomy check refuses'", "the refusal (image refused)")
                _timed(stages, "result image encode (st.image)", _st_image_bytes, display, "JPEG")
            elif index is None:
                note = contract.heatmap_note(facts.classes, exam.probs, facts.thresholds, facts.flaggable)
                marker = Expected(note[:60], "the 'no heatmap' note (nothing flagged)")
                _timed(stages, "result image encode (st.image)", _st_image_bytes, display, "JPEG")
            else:
                heat, _ = _timed(stages, "Grad-CAM of the flagged class (when not computed above)", _heatmap, engine,
                                 model, decoded, exam, index)
                hd = _timed(stages, "heatmap onto display + colour", _display_heat, heat, display, model)
                overlay = _timed(stages, "blend", imaging.blend, display, hd[1], hd[0], settings.DEFAULT_OPACITY)
                _timed(stages, "result image encode (st.image)", _st_image_bytes, overlay, "JPEG")
                marker = Expected(f"Grad-CAM: {facts.classes[index]} (p = {exam.probs[index]:.2f}) — {{name}}",
                                  "the Grad-CAM caption (a class is flagged)")
            table = _timed(stages, "results table + chart spec", _table_and_chart, tables, views, exam, facts)
            del table
        expected[kind] = marker
        per_kind[kind] = {k: v[1:] for k, v in stages.items()}
    say(f"## 1. Server-side stages of one upload (in-process, engine calls, median of {runs} new files; ms)")
    say()
    say(f"chest model loaded in {t_load:.1f} s; anatomy gate: "
        f"{'absent' if gate is None else gate.backend}")
    names = list(dict.fromkeys(k for s in per_kind.values() for k in s))
    say(C.md_table(["stage", *KINDS], [[n, *(_med_range(per_kind[k].get(n)) for k in KINDS)] for n in names]
                   + [["sum of stages", *(f"{sum(statistics.median(v) for n, v in per_kind[k].items() if not n.startswith(SUB)) * 1e3:.0f}"
                                          for k in KINDS)]]))
    say(f"Grad-CAM graph calls per examined file ({model.predictor.backend} backend): {sorted(set(GRAPH_CALLS))} "
        f"(the OOD pass is separate "
        "when listed)")
    say()
    return expected


def _med_range(values: list[float] | None) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values) * 1e3:.1f} ({min(values) * 1e3:.0f}-{max(values) * 1e3:.0f})"


def _examine(stages, engine, model, decoded):
    """The engine's uncached examination and OOD ratio of one file (what a new file costs), its inner
    calls timed by wrapping the engine's own ``model_input`` and ``_explain``."""
    real = {n: getattr(engine, n) for n in ("model_input", "_explain")}
    calls = []

    def wrap(n):
        def timed(*args, **kwargs):
            calls.append(n)
            return _timed(stages, {"model_input": SUB + "model input", "_explain": SUB + "probabilities + Grad-CAM (graph calls)"}[n],
                          real[n], *args, **kwargs)
        return timed

    try:
        for n in real:
            setattr(engine, n, wrap(n))
        exam = engine._examine.__wrapped__(model.key, decoded.digest, model, decoded)
    finally:
        for n, f in real.items():
            setattr(engine, n, f)
    GRAPH_CALLS.append(calls.count("_explain"))
    if hasattr(engine, "_ood_ratio"):  # before the OOD features came out of the Grad-CAM call
        return exam, _timed(stages, SUB + "OOD ratio (separate pass)", engine._ood_ratio.__wrapped__, model.key,
                            decoded.digest, model, exam.x)
    return exam, exam.ood_ratio


def _heatmap(engine, model, decoded, exam, index):
    if index == exam.default_class and exam.heatmap is not None:
        return exam.heatmap, exam.degenerate
    return engine._heatmap.__wrapped__(model.key, decoded.digest, index, model, exam.x)


def _display_heat(heat, display, model):
    from radtriage.dashboard import imaging, settings
    from radtriage.heatmap import heatmap_for_original

    h = heatmap_for_original(heat, display.shape, model.preprocess)
    return h, imaging.colorize(h, settings.HEATMAP_CMAP)


def _table_and_chart(tables, views, exam, facts):
    import json

    everything = tables.probability_table(exam.prediction, facts)
    findings = everything[everything["Reliable"]]
    spec = views.probability_chart(findings)
    return json.dumps(spec), findings.to_dict("records"), tables.summary_sentence(findings)


# --- 2-4. in a real browser -------------------------------------------------------------------
UPLOADER = '[data-testid="stFileUploader"] input[type="file"]'


def give_file(page, name: str, data: bytes) -> None:
    """Hand a file to the page's uploader as a user picking it on disk does (a path, not a buffer sent
    through the DevTools protocol, which alone took up to 0.5 s for a few MB)."""
    path = Path(tempfile.gettempdir()) / "radtriage-bench" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    page.locator(UPLOADER).set_input_files(str(path))


WATCH = """marker => {
  // In the page: when the uploader's input gets the file, and when the marker's text enters the DOM.
  // Only added nodes are read (textContent: no layout), so watching costs the page next to nothing.
  window.__bench = {};
  const input = document.querySelector('[data-testid="stFileUploader"] input[type="file"]');
  input.addEventListener('change', () => { window.__bench.change = performance.now(); }, {once: true, capture: true});
  const seen = node => (node.textContent || '').includes(marker);
  const observer = new MutationObserver(records => {
    for (const r of records) {
      if ([...r.addedNodes].some(seen) || (r.type === 'characterData' && seen(r.target))) {
        window.__bench.marker = performance.now(); observer.disconnect(); return;
      }
    }
  });
  observer.observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


def upload_and_time(page, url: str, name: str, data: bytes, mime: str, marker: str) -> tuple[float, float]:
    """Seconds from handing ``name`` to the uploader of a new session until ``marker`` is on screen:
    (Playwright's wall time from the set_input_files call until the page has seen the marker, which
    includes its own ~0.1 s of file handling; the page's own time from the input's change event until
    the marker's text is in the DOM)."""
    page.goto(url, wait_until="domcontentloaded")
    page.get_by_text("Bundled examples").wait_for(timeout=120_000)
    page.locator(UPLOADER).wait_for(state="attached", timeout=120_000)
    wait_until_idle(page, quiet_ms=300)  # the landing page's run is over: the upload starts a new one
    text = marker.format(name=name)
    page.evaluate(WATCH, text)
    t0 = time.perf_counter()
    give_file(page, name, data)
    # polled on every animation frame: a locator's wait_for polls every 500 ms after its first tries,
    # which added a median 0.23 s after the marker was already on screen
    page.wait_for_function("() => window.__bench && window.__bench.marker", polling="raf", timeout=300_000)
    elapsed = time.perf_counter() - t0
    marks = page.evaluate("() => window.__bench") or {}
    wait_until_idle(page)
    return elapsed, (marks.get("marker", float("nan")) - marks.get("change", float("nan"))) / 1e3


def spread(values: list[float]) -> str:
    return (f"median {statistics.median(values):.2f} s (min {min(values):.2f}, max {max(values):.2f}, "
            f"n = {len(values)})")


def warm_sessions(model_dir: Path, inputs: Inputs, expected: dict[str, Expected], runs: int) -> None:
    from playwright.sync_api import sync_playwright

    say("## 2. A new session on a warm server: file handed to the uploader -> end marker on screen (Chromium)")
    say()
    with AppServer(model_dir) as app, sync_playwright() as p:
        chromium = launch_chromium(p)
        page = chromium.new_page(viewport={"width": 1440, "height": 1400})
        name, data, mime = inputs.copy(KINDS[0], 0)
        upload_and_time(page, app.url, name, data, mime, expected[KINDS[0]].marker)  # warms the server
        rows = []
        for kind in KINDS:
            times, in_page = [], []
            for i in range(runs):
                name, data, mime = inputs.copy(kind, 10 + i)
                wall, own = upload_and_time(page, app.url, name, data, mime, expected[kind].marker)
                times.append(wall)
                in_page.append(own)
            rows.append([kind, f"{statistics.median(times):.3f}", f"{min(times):.3f}-{max(times):.3f}",
                         f"{statistics.median(in_page):.3f}", f"{min(in_page):.3f}-{max(in_page):.3f}", len(times),
                         expected[kind].what])
        say(C.md_table(["input", "median s", "range s", "in the page: median s", "range s", "runs", "timed until"],
                       rows))
        say("median s: Playwright's set_input_files call -> the page has seen the end marker (polled every animation "
            "frame); in the page: the uploader's change event -> the marker's text in the DOM (performance.now())")
        say(f"server RSS after these uploads: {app.rss_mb():.0f} MB")
        say()
        chromium.close()


def cold_starts(model_dir: Path, inputs: Inputs, expected: dict[str, Expected], runs: int) -> None:
    from playwright.sync_api import sync_playwright

    say("## 3. The first upload after the server starts (a new server each run; 2048^2 J2K DICOM)")
    say()
    rows = []
    with sync_playwright() as p:
        chromium = launch_chromium(p)
        for i in range(runs):
            with AppServer(model_dir) as app:
                page = chromium.new_page(viewport={"width": 1440, "height": 1400})
                t0 = time.perf_counter()
                page.goto(app.url, wait_until="domcontentloaded")
                page.get_by_text("Bundled examples").wait_for(timeout=120_000)
                t_render = time.perf_counter() - t0
                name, data, mime = inputs.copy(KINDS[1], 500 + i)
                t0 = time.perf_counter()
                give_file(page, name, data)
                page.get_by_text(expected[KINDS[1]].marker.format(name=name)).first.wait_for(timeout=300_000)
                t_first = time.perf_counter() - t0
                wait_until_idle(page)
                rows.append([i + 1, f"{app.started_s:.1f}", f"{t_render:.1f}", f"{t_first:.2f}", f"{app.rss_mb():.0f}"])
                page.close()
        chromium.close()
    firsts = [float(r[3]) for r in rows]
    say(C.md_table(["run", "server up s", "first render s", "first upload -> end marker s", "RSS MB"], rows))
    say(f"first upload: {spread(firsts)}")
    say()


def concurrent(model_dir: Path, inputs: Inputs, expected: dict[str, Expected], sessions: int) -> None:
    from playwright.sync_api import sync_playwright

    say(f"## 4. {sessions} concurrent sessions, each uploading a new 2048^2 J2K DICOM at once")
    say()
    with AppServer(model_dir) as app, sync_playwright() as p:
        chromium = launch_chromium(p)
        page = chromium.new_page()
        name, data, mime = inputs.copy(KINDS[1], 1)
        upload_and_time(page, app.url, name, data, mime, expected[KINDS[1]].marker)  # a warm server
        page.close()
        rss_before = app.rss_mb()
        contexts = [chromium.new_context(viewport={"width": 1280, "height": 1200}) for _ in range(sessions)]
        pages = [c.new_page() for c in contexts]
        for pg in pages:
            pg.goto(app.url, wait_until="domcontentloaded")
        for pg in pages:
            pg.get_by_text("Bundled examples").wait_for(timeout=120_000)
        files = [inputs.copy(KINDS[1], 100 + i) for i in range(sessions)]
        # Playwright's sync API is single-threaded: start every upload, then wait for each.
        t0 = time.perf_counter()
        for pg, (name, data, _) in zip(pages, files):
            give_file(pg, name, data)
        done, failed, errors, peak = [], [], 0, rss_before
        deadline = t0 + 300  # seconds for all sessions together
        for pg, (name, _, _) in zip(pages, files):
            try:
                pg.get_by_text(expected[KINDS[1]].marker.format(name=name)).first.wait_for(
                    timeout=max(1_000, (deadline - time.perf_counter()) * 1e3))
                done.append(time.perf_counter() - t0)
                peak = max(peak, app.rss_mb())
                wait_until_idle(pg)
                errors += pg.locator('[data-testid="stException"]').count()
            except Exception as err:  # noqa: BLE001 - a failed session is a result
                failed.append(type(err).__name__)
        say(f"{len(done)} of {sessions} sessions showed their result, {len(failed)} failed {failed or ''}, "
            f"{errors} exception elements; all done after {max(done, default=float('nan')):.1f} s "
            f"(per session: median {statistics.median(done) if done else float('nan'):.1f} s)")
        say(f"server RSS: {rss_before:.0f} MB warm with one session -> {peak:.0f} MB peak while serving, "
            f"{app.rss_mb():.0f} MB after")
        say()
        for c in contexts:
            c.close()
        chromium.close()


# --- RESULTS.md --------------------------------------------------------------------------------
def write_results(path: Path, argv: list[str]) -> None:
    """Replace (or add) this script's section of bench/RESULTS.md with the printed text, as run_all does."""
    heading = f"{SECTION} {' '.join(argv)}".rstrip()
    block = "\n".join([heading, "", "```", "\n".join(LINES).strip(), "```", ""])
    text = path.read_text() if path.is_file() else "# Benchmark results\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}[^\n]*\n\n```\n.*?^```\n", re.S | re.M)  # heading + its block
    if pattern.search(text):
        text = pattern.sub(lambda _: block + "\n", text, count=1)
    else:
        marker = "## Teammates' benchmarks (their printed output, verbatim)"
        if marker not in text:
            text = text.rstrip() + f"\n\n{marker}\n\n"
        text = text.rstrip() + "\n\n" + block
    path.write_text(text.rstrip() + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7, help="warm uploads per input kind")
    parser.add_argument("--cold-runs", type=int, default=3, help="server starts for the first-upload time")
    parser.add_argument("--sessions", type=int, default=16)
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--results", type=Path, default=None, help="write the output into this RESULTS.md")
    parser.add_argument("--parts", default="stages,warm,cold,concurrent", help="comma-separated subset to run")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    C.quiet_tf()
    m = C.machine()
    say(f"{m['date']}; git {m['git_commit']}{' + uncommitted changes' if m['git_dirty'] else ''}; {m['nproc']} cores "
        f"{m['cpu']}; load average at start {m['loadavg']}")
    shipped = REPO / "model"
    with tempfile.TemporaryDirectory() as tmp:
        if args.model_dir:
            model_dir = args.model_dir
        elif (shipped / "chest" / "model.h5").is_file() and (shipped / "mura" / "model.h5").is_file():
            model_dir = shipped
        else:
            model_dir = build_models(Path(tmp), size=SIZE, width=WIDTH, depth=DEPTH)
        say(f"models: {model_dir if model_dir == shipped else 'random-weight small_cnn stand-ins'}")
        src = source()
        say(f"input: {src.note}")
        inputs = Inputs(src, Path(tmp))
        say()
        expected = stage_breakdown(model_dir, inputs, args.runs)  # always: it finds the end markers
        if "warm" in parts:
            warm_sessions(model_dir, inputs, expected, args.runs)
        if "cold" in parts:
            cold_starts(model_dir, inputs, expected, args.cold_runs)
        if "concurrent" in parts:
            concurrent(model_dir, inputs, expected, args.sessions)
    say(f"load average at end {[round(v, 2) for v in os.getloadavg()]}")
    if args.results:
        shown = [a for a in sys.argv[1:] if a != "--results" and a != str(args.results)]
        write_results(args.results, shown)


if __name__ == "__main__":
    main()
