"""The served app's named endpoints through gradio_client and plain HTTP (the README's curl flow), on a free port.

Every registered family runs as a tiny random network, plus one detector reported unavailable.
"""

from __future__ import annotations

import json
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

import app
from tests.conftest import serve  # noqa: E402
from udfd.config import Settings
from udfd.detectors import families
from udfd.explain import explain_methods

pytestmark = pytest.mark.slow

# `clip` is a registered family and runs here as a tiny network; the unavailable one is a Hub model offline.
UNAVAILABLE = {"vit_hub": "hf-hub:org/vit is not in the local cache (set UDFD_MODEL_VIT_HUB)"}



@pytest.fixture(scope="module")
def served() -> str:
    available = {}
    for fam, cls in sorted(families().items()):
        torch.manual_seed(0)
        det = cls.create(cls.tiny_arch)
        det.name = fam
        available[fam] = det
    settings = Settings(detectors=("cnn",))
    demo = app.build_app(settings, available=available, unavailable=dict(UNAVAILABLE))
    with serve(demo, max_file_size=settings.max_file_bytes) as url:
        yield url


@pytest.fixture()
def client(served: str, tmp_path: Path):
    from gradio_client import Client

    return Client(served, verbose=False, analytics_enabled=False, download_files=str(tmp_path / "dl"))


@pytest.fixture()
def picture(tmp_path: Path) -> Path:
    path = tmp_path / "picture.png"
    PILImage.fromarray(np.random.default_rng(0).integers(0, 256, size=(72, 96, 3), dtype=np.uint8)).save(path)
    return path


def test_endpoints_are_named(client) -> None:
    names = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {"/analyze_image", "/compare"} <= names
    assert not any("lambda" in n for n in names), "UI-only callbacks stay out of the API"


def test_analyze_image_with_explanation(client, picture: Path) -> None:
    from gradio_client import handle_file

    annotated, label, table, verdict, notes, views, said, report = client.predict(
        handle_file(picture), "cnn", True, "gradcam", api_name="/analyze_image"
    )
    assert verdict["file"] == "picture.png" and set(verdict["model_versions"]) == {"cnn"}
    assert Path(annotated).is_file() and label["label"].split()[0] in {"real", "fake"}
    assert len(views) == 1 + len(verdict["faces"])
    assert "Grad-CAM overlay (cnn" in views[0]["caption"] and Path(views[0]["image"]).is_file()
    # Explanation off (the default): no heat-maps.
    assert client.predict(handle_file(picture), "cnn", api_name="/analyze_image")[5] == []


IMAGE_FAMILIES = {name for name, cls in families().items() if cls.modality == "image"}


def test_compare_lists_every_available_detector(client, picture: Path) -> None:
    from gradio_client import handle_file

    table, bars, summary, gallery, verdict = client.predict(handle_file(picture), True, api_name="/compare")
    names = sorted(IMAGE_FAMILIES)  # video families are listed as unavailable: they belong to the Video tab
    n_faces = len(verdict["faces"])
    assert sorted({row[1] for row in table["data"]}) == names and len(table["data"]) == len(names) * n_faces
    assert table["headers"][:5] == ["face", "detector", "version", "fake probability", "verdict"]
    assert {row["detector"] for row in verdict["comparison"]} == set(names)
    video_only = {name: "scores videos only: see the Video tab" for name, cls in families().items()
                  if cls.modality == "video"}
    assert verdict["unavailable"] == UNAVAILABLE | video_only and "`vit_hub`" in summary
    assert set(verdict["faces"][0]["scores"]) == set(names) and verdict["kind"] == "image"
    explained = [n for n in names if explain_methods(families()[n].create(families()[n].tiny_arch))]
    assert [item["caption"].split(":")[0] for item in gallery] == explained
    assert all(f"`{n}`" in summary.split("No heat-map from", 1)[1] for n in set(names) - set(explained))
    assert bars is not None


def test_bad_input_is_a_clear_error_and_the_app_keeps_serving(client, picture: Path, tmp_path: Path) -> None:
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    bogus = tmp_path / "holiday.jpg"
    bogus.write_text("this is a text file, not a photo\n")
    for api in ("/analyze_image", "/compare"):
        with pytest.raises(AppError, match="holiday.jpg: .*not a supported image"):
            client.predict(handle_file(bogus), api_name=api)
        with pytest.raises(AppError, match="Upload an image first"):
            client.predict(None, api_name=api)
    with pytest.raises(AppError, match="supports fullgrad, gradcam, not 'eigencam'"):
        client.predict(handle_file(picture), "cnn", True, "eigencam", api_name="/analyze_image")
    assert client.predict(handle_file(picture), api_name="/compare")[4]["kind"] == "image"


def test_rest_flow_documented_in_readme(served: str, picture: Path) -> None:
    """POST /gradio_api/upload, POST /gradio_api/call/compare, then read the event stream (what curl does)."""
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="picture.png"\r\n'
            f"Content-Type: image/png\r\n\r\n"
        ).encode()
        + picture.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    req = urllib.request.Request(
        f"{served}gradio_api/upload", data=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        uploaded = json.load(r)[0]
    payload = {"data": [{"path": uploaded, "meta": {"_type": "gradio.FileData"}}, True]}
    req = urllib.request.Request(
        f"{served}gradio_api/call/compare",
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        event_id = json.load(r)["event_id"]
    with urllib.request.urlopen(f"{served}gradio_api/call/compare/{event_id}", timeout=120) as r:
        stream = r.read().decode()
    event, data = [line for line in stream.splitlines() if line.startswith(("event:", "data:"))][-2:]
    assert event == "event: complete", stream[:500]
    verdict = json.loads(data.removeprefix("data:"))[4]
    assert verdict["file"] == "picture.png" and {row["detector"] for row in verdict["comparison"]} == IMAGE_FAMILIES
