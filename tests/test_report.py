"""The evidence report (udfd/ui/report.py, udfd/ui/report_html.py): one self-contained HTML page per analysis.

Checked on the page itself with an HTML parser: only known tags, no script, no event-handler attribute, every
image inlined, nothing fetched; the file name and metadata of a hostile file arrive escaped; the images are
downscaled; the app's folder stays bounded; `udfd predict --report DIR` writes one page per good file.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import subprocess
import sys
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from PIL import PngImagePlugin

from udfd.catalog import DetectorInfo
from udfd.file_metadata import Metadata, MetadataField
from udfd.provenance import C2pa, Provenance, Watermark
from udfd.types import FaceVerdict, Heatmap, Overall, Verdict
from udfd.ui.report import FaceImages, FileFacts, ReportInputs, gather, report_html, report_name, write_report

HOSTILE_NAME = "<img src=x onerror=alert(1)>.png"
HOSTILE_TEXT = '<script>alert("meta")</script><b onmouseover=alert(2)>x</b>'
TAGS = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "p", "strong", "table", "tr", "th", "td",
        "code", "figure", "img", "figcaption", "div", "ul", "li", "footer", "br", "a"}


class _Page(HTMLParser):
    """Every tag and attribute of a page, and the text (unescaped) it shows."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def images(self) -> list[PILImage.Image]:
        out = []
        for tag, attrs in self.tags:
            if tag == "img":
                head, _, b64 = (attrs["src"] or "").partition(",")
                assert head == "data:image/jpeg;base64"
                out.append(PILImage.open(io.BytesIO(base64.b64decode(b64))))
        return out


def assert_inert(page: _Page) -> None:
    """Only the report's own tags; no script, no handler, no external resource."""
    assert {t for t, _ in page.tags} <= TAGS, {t for t, _ in page.tags} - TAGS
    for tag, attrs in page.tags:
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
        if tag == "img":
            assert (attrs["src"] or "").startswith("data:image/")
        if tag == "a":
            assert (attrs["href"] or "").startswith("https://")
    assert any(t == "meta" and a.get("http-equiv") == "Content-Security-Policy" for t, a in page.tags)


def _face(p: float, box=(10, 10, 74, 74), **kw) -> FaceVerdict:
    return FaceVerdict(box=box, face_found=True, confidence=0.9, scores={"ens": p}, label="fake" if p >= 0.5
                       else "real", fake_prob=p, uncertain=False, **kw)


def _hostile_provenance() -> Provenance:
    field = MetadataField("PNG text", "parameters", HOSTILE_TEXT, generator="AUTOMATIC1111 / SD WebUI",
                          declares_ai=True)
    return Provenance(c2pa=C2pa("absent"), watermark=Watermark("absent", checked=("dwtDct",)),
                      metadata=Metadata("found", fields=(field,)), reported=(f"PNG text parameters: {HOSTILE_TEXT}",))


def _inputs(provenance: Provenance | None | str = "hostile", **kw) -> ReportInputs:
    face = _face(0.91, members={"lite0": 0.8, "meso": 0.95})
    verdict = Verdict(file=HOSTILE_NAME, kind="image", faces=(face,), overall=Overall("fake", 0.91, False, 0.5),
                      model_versions={"ens": "udfd-ensemble@1.0"}, timings_ms={}, width=96, height=80,
                      notes=(HOSTILE_TEXT,),
                      provenance=_hostile_provenance() if provenance == "hostile" else provenance)
    info = DetectorInfo("ens", "UDFD ensemble", "two members", "mean AUC on held-out sources 0.69",
                        "https://huggingface.co/org/udfd-ensemble")
    rgb = np.full((64, 64, 3), 128, np.uint8)
    args = dict(verdict=verdict, said="Likely manipulated — fake probability 0.91; not proof.", detectors=(info,),
                file=FileFacts(HOSTILE_NAME, 1234, "ab" * 32), when=datetime(2026, 12, 1, 9, 30, tzinfo=UTC),
                annotated=np.zeros((80, 96, 3), np.uint8), faces=(FaceImages(rgb, rgb),), explanation="Heat-maps: x.")
    return ReportInputs(**(args | kw))


def test_the_page_says_the_verdict_first_and_everything_a_fact_check_needs() -> None:
    text = report_html(_inputs())
    page = _Page(text)
    assert_inert(page)
    shown = " ".join(page.text)
    said = shown.index("Likely manipulated")
    assert said < shown.index("A probability is not proof") < shown.index("What was analysed") < shown.index("Face 1")
    for needed in ("1,234 bytes", "ab" * 32, "2026-12-01 09:30:00 UTC", "likely fake", "0.910", "lite0", "0.800",
                   "UDFD ensemble", "udfd-ensemble@1.0", "mean AUC on held-out sources 0.69", "Heat-maps: x."):
        assert needed in shown, needed
    assert len(page.images()) == 3  # annotated image, crop, heat-map
    assert ("a", {"href": "https://huggingface.co/org/udfd-ensemble"}) in page.tags


def test_a_hostile_file_name_and_metadata_arrive_as_text() -> None:
    text = report_html(_inputs())
    assert "<img src=x" not in text and "<script>" not in text and "<b onmouseover" not in text  # no raw tag
    page = _Page(text)
    assert_inert(page)
    shown = "".join(page.text)
    assert HOSTILE_NAME in shown and HOSTILE_TEXT in shown  # shown to the reader, literally
    assert "written by AUTOMATIC1111" in shown and "Reported, but not strong enough" in shown


def test_no_images_for_a_video_and_a_missing_heatmap_is_explained() -> None:
    page = _Page(report_html(_inputs(annotated=None, faces=(), explanation="Images and heat-maps are not included "
                                     "for videos.")))
    assert_inert(page)
    assert page.images() == [] and "not included for videos" in " ".join(page.text)
    shown = " ".join(_Page(report_html(_inputs(provenance=None))).text)
    assert "Face 1" in shown and "Not checked for this file." in shown


class _Opaque:
    """A detector that cannot explain itself."""

    name, threshold = "opaque", 0.5

    def explain_target(self):
        return None


def test_gather_downscales_and_says_when_a_detector_cannot_explain() -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (1500, 2000, 3), dtype=np.uint8)
    face = _face(0.3, box=(100, 100, 900, 900))
    verdict = Verdict(file="big.png", kind="image", faces=(face,), overall=Overall("real", 0.3, False, 0.5),
                      model_versions={}, timings_ms={}, width=2000, height=1500)
    facts = FileFacts("big.png", 10, "0" * 64)
    r = gather(verdict, pixels, _Opaque(), said="s", detectors=[], file=facts, when=datetime.now(UTC))
    assert max(r.annotated.shape[:2]) == 1024 and r.faces[0].heatmap is None
    assert max(r.faces[0].crop.shape[:2]) == 224 and "opaque cannot explain its score" in r.explanation
    hm = Heatmap("x", "gradcam", np.linspace(0, 1, 800 * 800, dtype=np.float32).reshape(800, 800), face.box)
    r = gather(verdict, pixels, None, said="s", detectors=[], file=facts, when=datetime.now(UTC), heatmaps=[hm])
    assert r.faces[0].heatmap.shape == (224, 224, 3) and "Grad-CAM of x" in r.explanation
    text = report_html(r)
    # Incompressible noise, the worst case for JPEG, at 2000 x 1500: still under 1 MB (photos: ~60-120 KB).
    assert len(text) < 1_000_000, len(text)
    assert [im.size for im in _Page(text).images()] == [(1024, 768), (224, 224), (224, 224)]


def test_report_names_are_safe_and_numbered_within_a_run() -> None:
    taken: set[str] = set()
    assert report_name(Path("/a") / HOSTILE_NAME, taken) == "_img_src_x_onerror_alert_1__.png.html"
    assert report_name(Path("/a/face.jpg"), taken) == "face.jpg.html"
    assert report_name(Path("/b/face.jpg"), taken) == "face.jpg-2.html"


def test_the_apps_folder_keeps_the_newest(tmp_path, monkeypatch) -> None:
    import udfd.ui.report as report

    monkeypatch.setattr(report, "_DIR", tmp_path)
    monkeypatch.setattr(report, "KEEP", 3)
    paths = [write_report(_inputs()) for _ in range(5)]
    kept = sorted(str(p) for p in tmp_path.iterdir())
    assert len(kept) == 3 and set(kept) <= set(paths)
    assert all(p.endswith(".html") and "udfd-report-_img_src" in p for p in paths)


def test_the_report_module_does_not_import_gradio() -> None:
    code = "import sys, udfd.ui.report; assert 'gradio' not in sys.modules, 'gradio imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# -- udfd predict --report DIR -------------------------------------------------------------------------------
@pytest.fixture()
def _tiny_cli(monkeypatch, tiny_vit_dir):
    from udfd.loader import clear_cache

    monkeypatch.setenv("UDFD_MODEL_VIT", f"local-dir:{tiny_vit_dir}")
    monkeypatch.setenv("UDFD_DETECTORS", "vit")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    clear_cache()


def test_predict_report_writes_one_page_per_good_file(tmp_path, face_rgb, capsys, caplog, _tiny_cli) -> None:
    from udfd.cli.main import main

    inputs = tmp_path / "in"
    inputs.mkdir()
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", HOSTILE_TEXT + "\nSteps: 20, Sampler: Euler a")
    hostile = inputs / HOSTILE_NAME
    PILImage.fromarray(face_rgb).save(hostile, pnginfo=info)
    PILImage.fromarray(face_rgb).save(inputs / "plain.jpg", quality=90)
    (inputs / "broken.png").write_text("this is not an image")
    out = tmp_path / "reports" / "deeper"  # created on demand

    assert main(["predict", str(inputs), "--json", "--report", str(out)]) == 1
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert sorted("error" in x for x in lines) == [False, False, True]
    assert any("broken.png" in r.getMessage() for r in caplog.records if r.levelname == "ERROR")
    written = sorted(p.name for p in out.iterdir())
    assert written == ["_img_src_x_onerror_alert_1__.png.html", "plain.jpg.html"]  # none for the broken file

    text = (out / written[0]).read_text(encoding="utf-8")
    page = _Page(text)
    assert_inert(page)
    shown = " ".join(page.text)
    data = hostile.read_bytes()
    assert hashlib.sha256(data).hexdigest() in shown and f"{len(data):,} bytes" in shown
    assert HOSTILE_NAME in shown and "<script>alert" in shown and "<script>" not in text
    assert shown.index("not proof") < shown.index("Face 1") and "Grad-CAM" in shown  # tiny ViT: Grad-CAM default
    assert len(page.images()) == 3  # annotated image, the face's crop and its heat-map


def test_the_image_tab_serves_the_html_report(tiny_settings, face_rgb, tmp_path) -> None:
    from udfd.ui.image import analyze

    path = tmp_path / "face.png"
    PILImage.fromarray(face_rgb).save(path)
    *_, said, report = analyze(str(path), tiny_settings, explain="auto")
    text = Path(report).read_text(encoding="utf-8")
    page = _Page(text)
    assert_inert(page)
    shown = " ".join(page.text)
    assert report.endswith(".html") and html.unescape(said.removeprefix("### ")) in shown
    assert hashlib.sha256(path.read_bytes()).hexdigest() in shown and "face.png" in shown
    assert len(page.images()) == 3 and "Heat-maps:" in shown  # the Explain maps, reused


def test_a_video_report_has_its_hash_and_frames_but_no_images(tmp_path) -> None:
    import torch

    from tests.conftest import write_video
    from udfd.config import Settings, VideoSettings
    from udfd.detectors.vit import ViTDetector
    from udfd.pipeline import analyze_video
    from udfd.ui.report import save_report

    torch.manual_seed(0)
    det = ViTDetector.create(ViTDetector.tiny_arch)
    det.module().eval()
    rng = np.random.default_rng(0)
    clip = write_video(tmp_path / "clip.mp4", [rng.integers(0, 256, (96, 128, 3), np.uint8) for _ in range(8)])
    verdict = analyze_video(clip, settings=Settings(video=VideoSettings(frames=4, selection="uniform")),
                            detectors=[det])
    out = save_report(tmp_path / "reports", clip, verdict, [det])
    page = _Page(out.read_text(encoding="utf-8"))
    assert_inert(page)
    shown = " ".join(page.text)
    assert out.name == "clip.mp4.html" and page.images() == []
    assert hashlib.sha256(clip.read_bytes()).hexdigest() in shown and "decoded frames scored" in shown
    assert "not included for videos" in shown
