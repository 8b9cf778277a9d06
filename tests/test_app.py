"""The Gradio app: `analyze` called directly, and the served API through gradio_client (marked slow)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image as PILImage  # noqa: E402

import app  # noqa: E402
from tests.conftest import serve  # noqa: E402
from udfd.config import FaceSettings  # noqa: E402


def _check_verdict_schema(d: dict, *, file: str) -> None:
    assert d["file"] == file
    assert d["kind"] == "image"
    assert d["faces"], "at least one face entry (the whole image when no face is found)"
    for face in d["faces"]:
        assert len(face["box"]) == 4 and all(isinstance(v, int) for v in face["box"])
        assert set(face["scores"]) == {"vit"}
        assert 0.0 <= face["scores"]["vit"] <= 1.0
        assert face["verdict"]["label"] in {"real", "fake"}
    assert d["overall"]["label"] in {"real", "fake"}
    assert 0.0 <= d["overall"]["fake_prob"] <= 1.0
    assert set(d["model_versions"]) == {"vit"}
    assert d["timings_ms"]["total"] >= 0


def test_analyze_image_without_face(tiny_settings, tmp_path: Path) -> None:
    path = tmp_path / "gradient.png"
    ramp = np.linspace(0, 255, 96, dtype=np.uint8)
    PILImage.fromarray(np.stack([np.tile(ramp, (80, 1))] * 3, axis=-1)).save(path)
    annotated, label, table, verdict, notes, views, said, report = app.analyze(str(path), tiny_settings)
    assert views == []  # a classifier has no reconstruction view
    _check_verdict_schema(verdict, file="gradient.png")
    assert verdict["faces"][0]["face_found"] is False
    assert verdict["faces"][0]["box"] == [0, 0, 96, 80]
    assert "no face found" in notes
    assert annotated.shape == (80, 96, 3) and annotated.dtype == np.uint8
    o = verdict["overall"]
    assert label == o["label"] + (" (uncertain)" if o["uncertain"] else "")
    assert len(table["data"]) == 1 and table["data"][0][-1] is False
    assert len(table["headers"]) == len(table["data"][0])


def test_analyze_rgba_png_draws_on_a_copy(tiny_settings, tmp_path: Path) -> None:
    path = tmp_path / "alpha.png"
    rgba = np.zeros((40, 50, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = 0  # fully transparent: udfd.media composites it on white
    PILImage.fromarray(rgba, mode="RGBA").save(path)
    annotated, _, _, verdict, *_ = app.analyze(str(path), tiny_settings)
    _check_verdict_schema(verdict, file="alpha.png")
    assert annotated.shape == (40, 50, 3)
    assert (annotated[20, 25] == 255).all(), "transparent pixels were composited on white, not drawn over"
    assert tuple(annotated[0, 0]) != (255, 255, 255), "the whole-image box was drawn on the border"


def test_analyze_errors_are_user_messages(tiny_settings, tmp_path: Path) -> None:
    with pytest.raises(gr.Error, match="Upload an image first"):
        app.analyze(None, tiny_settings)
    bogus = tmp_path / "notes.jpg"
    bogus.write_text("this is text, not a picture\n")
    with pytest.raises(gr.Error) as err:
        app.analyze(str(bogus), tiny_settings)
    assert "notes.jpg" in err.value.message and "not a supported image" in err.value.message
    assert str(tmp_path) not in err.value.message, "server paths are not shown to the user"


def test_unavailable_model_is_reported_not_raised(tmp_path: Path) -> None:
    from udfd.config import Settings

    settings = Settings(models={"vit": f"local-dir:{tmp_path / 'missing'}"}, faces=FaceSettings(backend="haar"))
    available, unavailable = app.load_models(settings)
    assert available == {} and "does not exist" in unavailable["vit"]
    demo = app.build_app(settings, available=available, unavailable=unavailable)
    assert isinstance(demo, gr.Blocks)


@pytest.fixture()
def served(tiny_settings):
    demo = app.build_app(tiny_settings)
    with serve(demo, max_file_size=tiny_settings.max_file_bytes) as url:
        yield url


@pytest.mark.slow
@pytest.mark.integration
def test_served_api(served: str, face_image_path: Path, tmp_path: Path) -> None:
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    client = Client(served, verbose=False, analytics_enabled=False, download_files=str(tmp_path / "dl"))

    annotated, label, table, verdict, notes, views, said, report = client.predict(
        handle_file(face_image_path), api_name="/analyze_image")
    _check_verdict_schema(verdict, file=face_image_path.name)
    assert verdict["faces"][0]["face_found"] is True
    assert Path(annotated).is_file()
    assert label["label"].split()[0] in {"real", "fake"}
    assert len(table["data"]) == len(verdict["faces"])
    assert "vit" in notes

    bogus = tmp_path / "holiday.jpg"
    bogus.write_text("just some text\n")
    with pytest.raises(AppError, match="not a supported image"):
        client.predict(handle_file(bogus), api_name="/analyze_image")
    with pytest.raises(AppError, match="Upload an image first"):
        client.predict(None, api_name="/analyze_image")
    with pytest.raises(AppError, match="Detector nope is unavailable"):
        client.predict(handle_file(face_image_path), "nope", api_name="/analyze_image")
    named = client.predict(handle_file(face_image_path), "vit", api_name="/analyze_image")[3]
    assert named["overall"] == verdict["overall"]
    # The app keeps serving after a bad upload.
    assert client.predict(handle_file(face_image_path), api_name="/analyze_image")[3]["kind"] == "image"

    def call(_: int) -> dict:
        return client.predict(handle_file(face_image_path), api_name="/analyze_image")[3]

    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(call, range(3)))
    assert [r["overall"] for r in results] == [verdict["overall"]] * 3


def test_reconstruction_view_for_a_detector_that_reconstructs(face_image_path: Path) -> None:
    import torch

    from udfd.config import Settings
    from udfd.detectors.ocvae import OCVAEDetector

    torch.manual_seed(0)
    det = OCVAEDetector.create(OCVAEDetector.tiny_arch)
    views = app.analyze(str(face_image_path), Settings(), [det])[5]
    assert [caption for _, caption in views] == ["face (model input)", "reconstruction",
                                                 "reconstruction error (relative)", "FFT of the error"]
    side = OCVAEDetector.tiny_arch["image_size"]
    for img, _ in views:
        assert img.shape == (side, side, 3) and img.dtype == np.uint8


def test_a_new_image_cancels_the_analysis_of_the_previous_one(tiny_settings) -> None:
    """An upload or an example's click changes the Image tab's input; an analysis still running on the previous
    image is cancelled, so its late answer cannot replace the new one (seen in the browser on a loaded machine)."""
    demo = app.build_app(tiny_settings)
    deps = demo.config["dependencies"]
    analyse = next(d for d in deps if d.get("api_name") == "analyze_image")
    cancelling = [d for d in deps if analyse["id"] in (d.get("cancels") or [])]
    assert cancelling, "nothing cancels a running analysis"
    image_in = {c["id"]: c for c in demo.config["components"]}[analyse["inputs"][0]]
    assert image_in["type"] == "image"
    assert any(t == [image_in["id"], "change"] or tuple(t) == (image_in["id"], "change")
               for d in cancelling for t in d["targets"]), "the cancel is not tied to the image input's change"
