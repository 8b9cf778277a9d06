"""End to end in a real headless browser: Debian's chromium driven by Playwright (`executable_path`).

`.ci/run` installs both (apt `chromium`, pip `playwright`); Playwright's own browser download cannot work here.
The app runs with the embedded models on a free port; the screenshot is written to outputs/browser/ and its path
printed in the log. Set UDFD_CHROMIUM to use another Chromium binary.
"""

from __future__ import annotations

import hashlib
import html
import os
import re
import shutil
from pathlib import Path

import pytest

import app
from tests.conftest import serve  # noqa: E402
from udfd.config import Settings
from udfd.ui.image import EXAMPLES

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WAIT_MS = 120_000  # a generous bound for a loaded 2-core machine, not a timing assertion
SHARED_VIDEOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "videos"
ARTIFACTS = Path(__file__).resolve().parents[1] / "outputs" / "browser"
EXAMPLE = EXAMPLES / "fake_faceswap_fairface_0175_on_0085.jpg"  # the example the test clicks
# As root and on a closed network: no sandbox, and none of Chromium's background calls home.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def chromium() -> str:
    """The browser binary; skips (with what to install) before any server starts when it is missing."""
    pytest.importorskip("playwright.sync_api", reason="pip install playwright (requirements-dev.txt)")
    path = os.environ.get("UDFD_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.skip(
            "no Chromium binary: install Debian's `chromium` (apt-get install chromium; .ci/run does) "
            "or set UDFD_CHROMIUM"
        )
    return path



@pytest.fixture(scope="module")
def served_app():
    settings = Settings()  # the embedded models, as `python app.py` runs them offline
    available, unavailable = app.load_models(settings)
    if not available:
        pytest.fail(f"no embedded detector could be loaded: {unavailable}")
    demo = app.build_app(settings, available=available, unavailable=unavailable)
    with serve(demo, max_file_size=settings.max_file_bytes) as url:
        yield url, available


def test_upload_verdict_and_compare_in_a_real_browser(chromium: str, served_app, face_image_path: Path, capsys) -> None:
    from playwright import sync_api

    url, loaded = served_app
    clip = SHARED_VIDEOS / "real" / "ffpp_youtube" / "519.mp4"
    if not clip.is_file():
        pytest.skip(f"shared dev clip not found: {clip}")
    available = {k: d for k, d in loaded.items() if d.modality == "image"}  # Compare runs image detectors
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1400})
            page.set_default_timeout(WAIT_MS)
            page.goto(url, wait_until="domcontentloaded")
            # The examples sit right under the upload box, above the detector choice.
            sync_api.expect(page.locator("#examples").get_by_text("real fairface 0098")).to_be_visible()
            upload, examples, detector = (page.locator(sel).first.bounding_box() for sel in
                                          ("#image-in", "#examples", "#detector"))

            # Image tab: upload a real face, analyse, wait for the verdict.
            page.locator("input[type=file]").first.set_input_files(str(face_image_path))
            page.get_by_role("button", name="Analyse", exact=True).click()
            label = page.locator(".output-class").first
            sync_api.expect(label).to_have_text(re.compile(r"^\s*(fake|real)( \(uncertain\))?\s*$"), timeout=WAIT_MS)
            # the face's fake_prob in the per-face table (4 decimals)
            face_row = page.locator("#face-table [role=row][data-index]").first
            sync_api.expect(face_row).to_contain_text(re.compile(r"\b[01]\.\d{2,4}\b"))
            verdict = label.inner_text().strip().split()[0]
            # The table's words are explained on hover (<abbr title>), and all of them in the glossary accordion.
            tips = page.locator("#face-table-key abbr[title]")
            sync_api.expect(tips.first).to_be_visible()
            tip_words = [tips.nth(i).inner_text() for i in range(tips.count())]
            page.get_by_text("What the words mean", exact=True).first.click()
            sync_api.expect(page.locator("#glossary").get_by_text("leave-one-source-out").first).to_be_visible()
            # The plain-language verdict comes first, in words.
            sync_api.expect(page.locator("#verdict-sentence")).to_contain_text(
                re.compile(r"Likely manipulated|Cannot tell|No sign of manipulation"))
            page.screenshot(path=str(ARTIFACTS / "image_tab.png"), full_page=True)

            # Keyboard only: focus Analyse and press Enter; an example answers from the start-up cache.
            link = page.locator("#report a[href]").first
            sync_api.expect(link).to_have_attribute("href", re.compile(r"udfd-report-.*\.html"), timeout=WAIT_MS)
            clicked = link.get_attribute("href")  # the click's report; Enter's analysis writes a new one (uuid)
            page.get_by_role("button", name="Analyse", exact=True).focus()
            page.keyboard.press("Enter")
            sync_api.expect(page.locator("#verdict-sentence")).to_contain_text(re.compile(r"\S"), timeout=WAIT_MS)
            # Wait for Enter's answer before clicking the example: on a loaded machine it arrived after the
            # example's and replaced it (the downloaded report then carried the upload's SHA-256).
            sync_api.expect(link).not_to_have_attribute("href", clicked, timeout=WAIT_MS)
            before = link.get_attribute("href")  # the upload's report: the example's must replace it
            page.get_by_text("fake faceswap fairface 0175 on 0085").first.click()
            sync_api.expect(page.get_by_text(re.compile(r"processing \|"))).to_have_count(0, timeout=WAIT_MS)
            sync_api.expect(page.locator("#verdict-sentence")).to_contain_text(
                re.compile(r"Likely manipulated|Cannot tell|No sign of manipulation"), timeout=WAIT_MS)
            # Wait for the example's answer before clicking the accordion: in one CI run the click opened nothing,
            # most likely because the answer arrived during it and moved the page's layout under the pointer.
            sync_api.expect(link).not_to_have_attribute("href", before, timeout=WAIT_MS)
            # The Verdict JSON is collapsed until opened (Gradio marks the open accordion's button "open").
            toggle = page.locator("button.label-wrap", has_text="Verdict JSON").first
            sync_api.expect(toggle).not_to_have_class(re.compile(r"\bopen\b"))
            toggle.click()
            sync_api.expect(toggle).to_have_class(re.compile(r"\bopen\b"), timeout=WAIT_MS)
            sync_api.expect(page.get_by_text('"overall"').first).to_be_visible(timeout=WAIT_MS)
            sync_api.expect(link).to_have_attribute("href", re.compile(r"udfd-report-.*\.html"), timeout=WAIT_MS)
            said = page.locator("#verdict-sentence").inner_text().strip()
            with page.expect_download(timeout=WAIT_MS) as download:  # a click on the link downloads the page
                link.click()
            report = Path(download.value.path()).read_text(encoding="utf-8")
            # The annotated image is described for screen readers.
            alt = page.locator("#annotated img").first.get_attribute("alt") or ""
            page.set_viewport_size({"width": 390, "height": 844})  # a phone
            page.screenshot(path=str(ARTIFACTS / "image_tab_phone.png"), full_page=True)
            phone_width = page.evaluate("document.documentElement.scrollWidth")
            page.set_viewport_size({"width": 1280, "height": 1400})
            page.screenshot(path=str(ARTIFACTS / "image_tab_desktop.png"), full_page=True)

            # Compare tab: one row per available detector (the image holds one face).
            page.get_by_role("tab", name="Compare").click()
            page.locator("#compare-image input[type=file]").set_input_files(str(face_image_path))
            page.get_by_role("button", name="Compare all detectors").click()
            sync_api.expect(page.locator("#compare-summary")).to_contain_text("detectors say fake", timeout=WAIT_MS)
            # Gradio 6 draws the body of a Dataframe as a virtual list of role="row" elements.
            rows = page.locator("#compare-table [role=row][data-index]")
            sync_api.expect(rows).to_have_count(len(available))
            names = sorted(rows.nth(i).inner_text().split()[1] for i in range(len(available)))
            shot = ARTIFACTS / "compare_tab.png"
            page.screenshot(path=str(shot), full_page=True)

            # Video tab: a real clip, analysed through the whole video pipeline.
            page.get_by_role("tab", name="Video").click()
            page.locator("#video-input input[type=file]").set_input_files(str(clip))
            page.get_by_role("button", name="Analyse video").click()
            video_label = page.locator("#video-verdict .output-class").first
            sync_api.expect(video_label).to_have_text(re.compile(r"^\s*(fake|real)( \(uncertain\))?\s*$"),
                                                      timeout=WAIT_MS)
            sync_api.expect(page.locator("#video-notes")).to_contain_text("frames decoded", timeout=WAIT_MS)
            page.screenshot(path=str(ARTIFACTS / "video_tab.png"), full_page=True)
            # An example clip answers from the start-up cache, and the browser can play it (VP9 in MP4).
            page.locator("#video-examples").get_by_text("real fairface 0098 zoom").first.click()
            sync_api.expect(page.locator("#video-notes")).to_contain_text("45 frames decoded", timeout=WAIT_MS)
            sync_api.expect(video_label).to_have_text(re.compile(r"^\s*(fake|real)( \(uncertain\))?\s*$"))
            player = page.locator("#video-input video").first
            sync_api.expect(player).to_have_attribute("src", re.compile(r"\S"), timeout=WAIT_MS)
            page.wait_for_function("v => v.readyState >= 1 && v.videoWidth > 0", arg=player.element_handle(),
                                   timeout=WAIT_MS)
            clip_width = player.evaluate("v => v.videoWidth")
        finally:
            browser.close()
    assert verdict in {"fake", "real"}
    assert upload["y"] + upload["height"] <= examples["y"] + 1 and examples["y"] + examples["height"] <= detector["y"] + 1
    assert alt.strip(), "the annotated image has alt text"
    # The report is the HTML page of the example just shown: its sentence, and the SHA-256 of the example's bytes.
    assert report.startswith("<!DOCTYPE html>") and "UDFD evidence report" in report and "not proof" in report
    assert said and said in html.unescape(report), said
    assert hashlib.sha256(EXAMPLE.read_bytes()).hexdigest() in report
    assert phone_width <= 400, f"the page scrolls sideways at phone width ({phone_width} px)"
    assert names == sorted(available)
    assert {"fake probability", "threshold", "cannot tell"} <= set(tip_words), tip_words
    assert clip_width == 320
    with capsys.disabled():
        print(f"\nbrowser screenshots: {shot}, {ARTIFACTS / 'image_tab.png'} and {ARTIFACTS / 'video_tab.png'}")
