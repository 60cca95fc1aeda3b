"""A real browser (Debian's chromium via Playwright) against the app served on 127.0.0.1.

Uploads a DICOM, waits for the run to finish, checks the summary, the probability chart and the
Grad-CAM image are drawn, and saves a screenshot (tmp path; also docs/dashboard.png when
RADTRIAGE_SAVE_SCREENSHOT=1, then with the shipped models when model/ holds them).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from dashboard_support import CHROMIUM, REPO, AppServer, build_models, launch_chromium, wait_until_idle

pytestmark = pytest.mark.browser

DICOM = REPO / "app_images" / "chest_02_cardiomegaly.dcm"  # 2048 x 2048 JPEG 2000 phantom


def require_a_browser() -> None:
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"{CHROMIUM} is absent: install Debian's chromium (scripts/setup.sh does as root)")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")


def open_and_upload(browser, url: str, path: Path, **page_options):  # noqa: ANN001, ANN201 - Playwright types
    """A new page on the app, the landing page drawn, ``path`` handed to the uploader."""
    page = browser.new_page(viewport={"width": 1440, "height": 1500}, **page_options)
    page.goto(url, wait_until="domcontentloaded")
    page.get_by_text("Bundled examples").wait_for(timeout=60_000)
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(path))
    return page


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    require_a_browser()
    shipped = REPO / "model"
    use_shipped = os.environ.get("RADTRIAGE_SAVE_SCREENSHOT") == "1" and (shipped / "chest" / "model.h5").is_file()
    model_dir = shipped if use_shipped else build_models(tmp_path_factory.mktemp("models"))
    with AppServer(model_dir) as app:
        yield app


def test_upload_dicom_shows_probabilities_and_heatmap(server: AppServer, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch_chromium(p)
        page = open_and_upload(browser, server.url, DICOM)
        page.get_by_text("Grad-CAM: ").first.wait_for(timeout=120_000)
        wait_until_idle(page)
        summary = page.locator('[data-testid="stAlertContentError"], [data-testid="stAlertContentSuccess"]')
        texts = " ".join(summary.all_inner_texts())
        assert "above threshold" in texts
        assert page.locator('[data-testid="stVegaLiteChart"]').count() == 1
        assert page.locator('[data-testid="stDataFrame"]').count() >= 1
        image = page.locator('[data-testid="stImage"] img').first
        image.wait_for()
        box = image.bounding_box()
        assert box is not None and box["width"] > 300 and box["height"] > 300
        assert page.locator('[data-testid="stException"]').count() == 0
        shot = tmp_path / "dashboard.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert shot.stat().st_size > 50_000
    if os.environ.get("RADTRIAGE_SAVE_SCREENSHOT") == "1":
        if server.model_dir == REPO / "model":
            (REPO / "docs").mkdir(exist_ok=True)
            shutil.copyfile(shot, REPO / "docs" / "dashboard.png")
        else:  # a random-weight stand-in would make a misleading documentation picture
            print("docs/dashboard.png not written: model/ holds no shipped models yet")
    print(f"screenshot: {shot}")


def test_plain_statement_detail_one_click_away_and_the_report_downloads(server: AppServer) -> None:
    """The model statement is one plain sentence with its technical detail in a closed expander, and the
    one-page report (drawn in Streamlit's deferred download thread, heatmap included) arrives as a PNG."""
    import io

    from PIL import Image
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch_chromium(p)
        page = open_and_upload(browser, server.url, DICOM, accept_downloads=True)
        page.get_by_text("Grad-CAM", exact=True).first.wait_for(timeout=120_000)
        wait_until_idle(page)
        statement = " ".join(page.locator('[data-testid="stAlertContentInfo"]').all_inner_texts())
        assert "Learnt from" in statement and "ECE" not in statement and "Youden" not in statement
        detail = page.locator('[data-testid="stExpander"]').filter(has_text="Technical detail")
        assert detail.count() == 1
        recorded = detail.get_by_text("split, as recorded", exact=False)
        assert not recorded.first.is_visible()  # closed: one click away
        detail.locator("summary").click()
        recorded.first.wait_for(state="visible", timeout=10_000)
        with page.expect_download(timeout=60_000) as info:
            page.get_by_role("button", name="One-page report (PNG)").click()
        download = info.value
        assert download.suggested_filename.startswith("radtriage_chest_02_cardiomegaly_")
        assert download.suggested_filename.endswith("_report.png")
        data = Path(download.path()).read_bytes()
        browser.close()
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "PNG" and im.size[1] > im.size[0] > 600


@pytest.fixture(scope="module")
def gated_server(tmp_path_factory: pytest.TempPathFactory):
    """Stand-in models with the shipped anatomy gate."""
    require_a_browser()
    root = build_models(tmp_path_factory.mktemp("gated"))
    shutil.copytree(REPO / "model" / "anatomy", root / "anatomy")
    with AppServer(root) as app:
        yield app


def test_the_gate_refuses_an_upper_limb_image_for_the_chest_model_until_overridden(gated_server: AppServer,
                                                                                  tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image
    from playwright.sync_api import sync_playwright

    from radtriage.phantoms import render_limb

    hand = tmp_path / "hand.png"
    Image.fromarray(np.round(render_limb("XR_HAND", 11, size=320).image * 255).astype(np.uint8)).save(hand)
    with sync_playwright() as p:
        browser = launch_chromium(p)
        page = open_and_upload(browser, gated_server.url, hand)
        page.get_by_text("Chosen from the pixels").wait_for(timeout=120_000)  # no click to pick the model
        wait_until_idle(page)
        page.get_by_text("Chest (14 findings)").click()
        page.get_by_text("the chest model does not read those").wait_for(timeout=60_000)
        wait_until_idle(page)
        assert page.locator('[data-testid="stVegaLiteChart"]').count() == 0  # no probabilities
        page.get_by_text("Show results the anatomy check refuses", exact=True).click()
        page.get_by_text("Shown because the check was overridden").first.wait_for(timeout=60_000)
        wait_until_idle(page)
        assert page.locator('[data-testid="stVegaLiteChart"]').count() == 1
        assert page.locator('[data-testid="stException"]').count() == 0
        browser.close()
