"""Dashboard timings and memory, printed (not asserted).

Run: .venv/bin/python bench/bench_dashboard.py [--sessions 8] [--model-dir DIR]

Models: the shipped ones in model/ when present, else random-weight small_cnn models at 256 px
(the default architecture and preprocessing size) written to a temp dir; speed does not depend on
the weights. The 2,048 x 2,048 JPEG 2000 DICOM is app_images/chest_02_cardiomegaly.dcm; every
"warm" upload is a copy with one changed non-pixel tag, so it is a new file to every cache.

Prints:
1. in-process: what one uncached rerun paid (Predictor build + trace) vs the cached calls;
2. cold start: server launch -> health, and -> first render in Chromium;
3. upload -> probabilities and -> Grad-CAM in the browser, cold (first model load) and warm;
   switching the Grad-CAM class and moving the opacity slider;
4. N concurrent browser sessions uploading at once: errors, times, server RSS.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from dashboard_support import AppServer, build_models, launch_chromium, wait_until_idle  # noqa: E402

DICOM = REPO / "app_images" / "chest_02_cardiomegaly.dcm"
SIZE, WIDTH, DEPTH = 256, 32, 4  # architectures.small_cnn defaults at the default input size


def dicom_copy(index: int) -> bytes:
    """The 2,048 px JPEG 2000 phantom with SeriesDescription changed: same pixels, new hash."""
    import pydicom

    ds = pydicom.dcmread(DICOM)
    ds.SeriesDescription = f"benchmark copy {index}"
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def in_process(model_dir: Path) -> None:
    """The "1 s per rerun" diagnosis: rebuild + retrace per rerun vs warm compiled calls."""
    import numpy as np

    from radtriage import radiograph
    from radtriage.dashboard import settings
    from radtriage.inference import Predictor

    data = dicom_copy(0)
    t0 = time.perf_counter()
    rg = radiograph.load(data, min_side=settings.DECODE_MIN_SIDE)
    t_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    predictor = Predictor.from_dir(model_dir / "chest")
    t_build = time.perf_counter() - t0
    x = predictor.prepare_input(rg.pixels)
    t0 = time.perf_counter()
    predictor.predict_and_explain(x, None)
    t_first = time.perf_counter() - t0
    warm = []
    for c in range(10):
        t0 = time.perf_counter()
        predictor.predict_and_explain(x, c % 14)
        warm.append(time.perf_counter() - t0)
    print("in-process (2048^2 JPEG 2000 DICOM, chest model):")
    print(f"  decode at >= {settings.DECODE_MIN_SIDE} px: {t_load * 1e3:.0f} ms; preprocess -> {x.shape}")
    print(f"  uncached rerun: Predictor.from_dir {t_build * 1e3:.0f} ms + first (tracing) call {t_first * 1e3:.0f} ms")
    print(f"  cached Predictor, probs + Grad-CAM, other class each call: median {statistics.median(warm) * 1e3:.0f} ms "
          f"(min {min(warm) * 1e3:.0f}, max {max(warm) * 1e3:.0f})")
    from radtriage.dashboard import imaging

    heat = np.random.default_rng(0).random((1024, 1024), dtype=np.float32)
    rgb = imaging.colorize(heat, "jet")
    gray = (heat * 255).astype(np.uint8)
    t0 = time.perf_counter()
    for _ in range(10):
        imaging.blend(gray, rgb, heat, 0.5)
    print(f"  opacity slider re-blend at 1024^2: {(time.perf_counter() - t0) / 10 * 1e3:.0f} ms")


def upload_and_time(page, url: str, data: bytes, name: str) -> tuple[float, float]:
    """Seconds from choosing the file to (probabilities summary, Grad-CAM image) on the page.

    Each upload is in a fresh session (page reload), so the uploader holds only this file.
    """
    page.goto(url, wait_until="domcontentloaded")
    page.get_by_text("Bundled examples").wait_for(timeout=120_000)
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(
        files=[{"name": name, "mimeType": "application/dicom", "buffer": data}])
    t0 = time.perf_counter()
    page.get_by_text("above threshold").first.wait_for(timeout=180_000)
    t_probs = time.perf_counter() - t0
    page.get_by_text(f"— {name}").first.wait_for(timeout=180_000)
    t_cam = time.perf_counter() - t0
    wait_until_idle(page)
    return t_probs, t_cam


def browser(model_dir: Path, sessions: int) -> None:
    from playwright.sync_api import sync_playwright

    with AppServer(model_dir) as app, sync_playwright() as p:
        chromium = launch_chromium(p)
        page = chromium.new_page(viewport={"width": 1440, "height": 1400})
        t0 = time.perf_counter()
        page.goto(app.url, wait_until="domcontentloaded")
        page.get_by_text("Bundled examples").wait_for(timeout=120_000)
        t_render = time.perf_counter() - t0
        print(f"cold start: server up in {app.started_s:.1f} s; first render {t_render:.1f} s later "
              f"(total {app.started_s + t_render:.1f} s); RSS {app.rss_mb():.0f} MB")
        cold = upload_and_time(page, app.url, dicom_copy(1), "cold.dcm")
        print(f"upload 2048^2 J2K DICOM, cold (loads TensorFlow + model): probabilities {cold[0]:.2f} s, "
              f"Grad-CAM {cold[1]:.2f} s; RSS {app.rss_mb():.0f} MB")
        warm = [upload_and_time(page, app.url, dicom_copy(10 + i), f"warm{i}.dcm") for i in range(3)]
        print("upload 2048^2 J2K DICOM, warm (new file, model loaded): probabilities "
              + ", ".join(f"{w[0]:.2f}" for w in warm) + " s; Grad-CAM " + ", ".join(f"{w[1]:.2f}" for w in warm) + " s")
        # class switch: a new heatmap through the compiled Grad-CAM
        box = page.locator('[data-testid="stSelectbox"]').filter(has_text="Explain class")
        box.click()
        options = page.locator('[role="option"]')
        target = options.nth(options.count() - 1).inner_text()
        t0 = time.perf_counter()
        options.nth(options.count() - 1).click()
        page.get_by_text(f"Grad-CAM: {target} (p =").first.wait_for(timeout=60_000)
        wait_until_idle(page)
        print(f"switch Grad-CAM class: {time.perf_counter() - t0:.2f} s (includes browser round trip)")
        slider = page.get_by_role("slider").first
        slider.focus()
        t0 = time.perf_counter()
        page.keyboard.press("ArrowRight")
        page.wait_for_timeout(100)
        wait_until_idle(page)
        print(f"move opacity slider: {time.perf_counter() - t0:.2f} s (fragment rerun, re-blend only)")
        page.close()
        rss_before = app.rss_mb()
        results: list[tuple[float, float] | str] = [None] * sessions  # type: ignore[list-item]
        contexts = [chromium.new_context(viewport={"width": 1280, "height": 1200}) for _ in range(sessions)]
        pages = [c.new_page() for c in contexts]
        for pg in pages:
            pg.goto(app.url, wait_until="domcontentloaded")
        for pg in pages:
            pg.get_by_text("Bundled examples").wait_for(timeout=120_000)
        # Playwright's sync API is single-threaded: start all uploads, then wait for each.
        t0 = time.perf_counter()
        for i, pg in enumerate(pages):
            pg.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(
                files=[{"name": f"s{i}.dcm", "mimeType": "application/dicom", "buffer": dicom_copy(100 + i)}])
        for i, pg in enumerate(pages):
            try:
                pg.get_by_text(f"— s{i}.dcm").first.wait_for(timeout=300_000)
                wait_until_idle(pg)
                errors = pg.locator('[data-testid="stException"], [data-testid="stAlertContentError"]').filter(
                    has_not_text="above threshold").count()
                results[i] = (time.perf_counter() - t0, errors)
            except Exception as err:  # noqa: BLE001
                results[i] = f"{type(err).__name__}"
        done = [r for r in results if isinstance(r, tuple)]
        print(f"{sessions} concurrent sessions, each uploading a new 2048^2 J2K DICOM at once: "
              f"{len(done)} finished, {sum(r[1] for r in done)} error elements, "
              f"{sessions - len(done)} failed; all done after {max((r[0] for r in done), default=float('nan')):.1f} s; "
              f"server RSS {rss_before:.0f} -> {app.rss_mb():.0f} MB")
        for c in contexts:
            c.close()
        chromium.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--model-dir", type=Path, default=None)
    args = parser.parse_args()
    shipped = REPO / "model"
    with tempfile.TemporaryDirectory() as tmp:
        if args.model_dir:
            model_dir = args.model_dir
        elif (shipped / "chest" / "model.h5").is_file() and (shipped / "mura" / "model.h5").is_file():
            model_dir = shipped
        else:
            model_dir = build_models(Path(tmp), size=SIZE, width=WIDTH, depth=DEPTH)
            print(f"models: random-weight small_cnn {SIZE} px (width {WIDTH}, depth {DEPTH}); model/ has none yet")
        in_process(model_dir)
        browser(model_dir, args.sessions)


if __name__ == "__main__":
    main()
