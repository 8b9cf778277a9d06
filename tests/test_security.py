"""Issue 14: the attacks that crashed, read or flooded the server, each asserting the refusal and that the server
still serves afterwards. The app is driven over raw HTTP as an attacker would (`/gradio_api/upload`, then
`/gradio_api/call/<api_name>` and its event stream); crash-prone inputs run in a child process, so that an abort
(exit 134) fails the test instead of killing pytest.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

import app
from tests.conftest import serve
from udfd.config import FeedbackSettings
from udfd.feedback.store import read_records
from udfd.ui.uploads import NOT_AN_UPLOAD

SMALL_LIMIT = 300_000  # bytes: the served app's image limit here, so that "too large" payloads stay small


def _png(width: int, height: int, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    PILImage.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _flat_png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    PILImage.fromarray(np.full((height, width, 3), 128, np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _child_env(tiny_vit_dir: Path) -> dict[str, str]:
    return {**os.environ, "UDFD_MODEL_VIT": f"local-dir:{tiny_vit_dir}", "HF_HUB_OFFLINE": "1",
            "UDFD_DETECTORS": "vit"}


# -- 1. one image must not abort the process ---------------------------------------------------------------
def test_predict_on_a_folder_with_a_60x32767_png_refuses_it_and_scores_the_rest(tmp_path: Path,
                                                                                 tiny_vit_dir: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "tall.png").write_bytes(_flat_png(60, 32767))  # a valid ~30 KB PNG; aborted MediaPipe before
    (folder / "good.png").write_bytes(_png(96, 72))
    out = subprocess.run([sys.executable, "-m", "udfd", "predict", str(folder), "--json"], capture_output=True,
                         text=True, timeout=300, env=_child_env(tiny_vit_dir))
    assert out.returncode == 1, (out.returncode, out.stderr[-2000:])  # 1: one file failed (134 was the abort)
    lines = {Path(r["file"]).name: r for r in map(json.loads, out.stdout.splitlines())}
    assert set(lines) == {"tall.png", "good.png"}
    assert "a side is longer than the limit of 16384 (UDFD_MAX_SIDE)" in lines["tall.png"]["error"]
    assert lines["good.png"]["overall"]["label"] in ("real", "fake")


def test_an_accepted_long_image_is_reduced_before_face_detection(tmp_path: Path, tiny_vit_dir: Path) -> None:
    path = tmp_path / "panorama.png"
    path.write_bytes(_flat_png(16000, 1000))
    out = subprocess.run([sys.executable, "-m", "udfd", "predict", str(path), "--json"], capture_output=True,
                         text=True, timeout=300, env=_child_env(tiny_vit_dir))
    assert out.returncode == 0, (out.returncode, out.stderr[-2000:])
    verdict = json.loads(out.stdout)
    assert (verdict["width"], verdict["height"]) == (16000, 1000)  # the file's own size ...
    assert verdict["faces"][0]["box"] == [0, 0, 16000, 1000]  # ... and boxes in its pixels
    assert any("reduced from the file's 16000" in n for n in verdict["notes"])


def test_python_api_with_a_32767_pixel_array_does_not_abort(tiny_vit_dir: Path) -> None:
    """An `Image` built by a caller skips decoding: face detection itself works on a bounded copy."""
    code = (
        "import numpy as np\n"
        "from udfd.config import Settings\n"
        "from udfd.pipeline import analyze_image\n"
        "from udfd.types import Image\n"
        "px = np.full((32767, 60, 3), 128, np.uint8)\n"
        "v = analyze_image(Image(px, 'tall', '0', 'PNG', 'RGB'), settings=Settings.from_env())\n"
        "print(v.faces[0].box, v.width, v.height)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env=_child_env(tiny_vit_dir))
    assert out.returncode == 0, (out.returncode, out.stderr[-2000:])
    assert out.stdout.split() == ["(0,", "0,", "60,", "32767)", "60", "32767"]


# -- 2. the one rule for paths, directly ---------------------------------------------------------------------
def test_read_upload_lets_only_regular_files_inside_the_upload_folder_through(tmp_path: Path, monkeypatch) -> None:
    import gradio as gr

    from udfd.ui.uploads import read_upload

    root = tmp_path / "uploads"
    (root / "abc").mkdir(parents=True)
    good = root / "abc" / "face.png"
    good.write_bytes(_png(8, 8))
    outside = tmp_path / "secret.png"
    outside.write_bytes(_png(8, 8))
    (root / "abc" / "link.png").symlink_to(outside)
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(root))
    assert read_upload({"path": str(good)}, max_bytes=10**6) == (str(good), None)
    assert read_upload(str(good), max_bytes=10**6) == (str(good), None)
    assert read_upload({"video": {"path": str(good)}}, max_bytes=10**6, inline=False) == (str(good), None)
    assert read_upload(None, max_bytes=1) == (None, None)
    bad = [str(outside), str(root), str(root / "abc"), str(root / "abc" / "link.png"), str(root / "nope.png"),
           str(root / "abc" / ".." / ".." / "secret.png"), str(root) + "-sibling/x.png", "face.png", "/etc/passwd",
           "a\x00b"]
    for path in bad:
        with pytest.raises(gr.Error, match=NOT_AN_UPLOAD):
            read_upload({"path": path}, max_bytes=10**6)
        with pytest.raises(gr.Error, match=NOT_AN_UPLOAD):
            read_upload(path, max_bytes=10**6)
    with pytest.raises(gr.Error, match="inline data is not accepted"):
        read_upload({"url": "data:video/mp4;base64,AAAA"}, max_bytes=10**6, inline=False)


def test_inline_limit_is_checked_on_the_text_before_decoding(monkeypatch) -> None:
    import gradio as gr

    from udfd.ui import uploads

    data = os.urandom(3000)
    url = "data:image/png;base64," + base64.b64encode(data).decode()
    assert uploads.decode_data_url(url, max_bytes=3000) == data

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although too long")

    monkeypatch.setattr(uploads.base64, "b64decode", no_decoding)
    with pytest.raises(gr.Error, match="larger than the limit"):
        uploads.decode_data_url(url, max_bytes=2999)


# -- the served app, attacked over raw HTTP ----------------------------------------------------------------
@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, tiny_vit_dir: Path):
    tmp = tmp_path_factory.mktemp("security")
    settings = _settings(tiny_vit_dir, tmp / "fb", flags_per_minute=1000)  # the limit has its own test
    with serve(app.build_app(settings), **app.launch_options(settings)) as url:  # as `python app.py` launches
        yield url, settings


def _settings(tiny_vit_dir: Path, feedback_dir: Path, *, flags_per_minute: float):
    from udfd.config import Settings

    return Settings(detectors=("vit",), video_detectors=("vit",), models={"vit": f"local-dir:{tiny_vit_dir}"},
                    max_file_bytes=SMALL_LIMIT,
                    feedback=FeedbackSettings(dir=feedback_dir, protector=f"local-dir:{feedback_dir}-no-protector",
                                              flags_per_minute=flags_per_minute))


def _upload(url: str, name: str, data: bytes) -> str:
    boundary = uuid.uuid4().hex
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(f"{url}gradio_api/upload", data=body,
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.load(r)[0]


def _file(path: str | None = None, url: str | None = None, *, meta: bool = True) -> dict:
    """A FileData as JSON. Without `meta` Gradio does not recognise it as a file and skips its own path check:
    the raw dict reaches the handlers (registered with preprocess=False), which must then refuse it."""
    return {"path": path, "url": url} | ({"meta": {"_type": "gradio.FileData"}} if meta else {})


def _call(url: str, api: str, data: list) -> tuple[str, object]:
    """POST the call, read its event stream: ("complete", outputs) or ("error", message)."""
    req = urllib.request.Request(f"{url}gradio_api/call/{api}", data=json.dumps({"data": data}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        event_id = json.load(r)["event_id"]
    with urllib.request.urlopen(f"{url}gradio_api/call/{api}/{event_id}", timeout=180) as r:
        stream = r.read().decode()
    event, payload = [line for line in stream.splitlines() if line.startswith(("event:", "data:"))][-2:]
    kind = event.removeprefix("event:").strip()
    value = json.loads(payload.removeprefix("data:"))
    return kind, value


def _still_serves(url: str) -> None:
    kind, out = _call(url, "analyze_image", [_file(_upload(url, "ok.png", _png(96, 72))), "vit", False, "auto"])
    assert kind == "complete", out
    assert out[3]["file"] == "ok.png"


def _error_text(value: object) -> str:
    return json.dumps(value)


def _requests_for(path: str, *, meta: bool = True) -> dict[str, list]:
    file = _file(path, meta=meta)
    return {
        "analyze_image": [file, "vit", False, "auto"],
        "compare": [file, False],
        "flag": [file, "vit", "Wrong — it is real", True],
        "analyze_video": [{"video": file, "subtitles": None}, "vit", []],
    }


@pytest.mark.parametrize("api", ["analyze_image", "compare", "flag", "analyze_video"])
def test_server_files_cannot_be_read_and_their_existence_is_not_revealed(served, tmp_path: Path, api: str) -> None:
    url, settings = served
    secret = tmp_path / "secret.png"  # a real image on the server, outside Gradio's upload folder
    secret.write_bytes(_png(64, 64))
    answers = []
    for path in (str(secret), str(tmp_path), str(tmp_path / "missing.png"), "/etc/passwd", "../../etc/hosts"):
        kind, value = _call(url, api, _requests_for(path)[api])  # with meta: Gradio's own check refuses it
        assert kind == "error", (path, value)
        kind, value = _call(url, api, _requests_for(path, meta=False)[api])  # without: ours must
        assert kind == "error", (path, value)
        answers.append(_error_text(value))
    if api != "analyze_video":  # gr.Video validates its FileData even with preprocess=False: Gradio refuses first
        assert all(NOT_AN_UPLOAD in a for a in answers), answers
    assert len(set(answers)) == 1  # one message whatever the path: nothing about existence or type
    assert not any(w in answers[0] for w in ("not found", "folder", str(tmp_path)))
    assert not list((settings.feedback.dir).rglob("*.png"))  # nothing copied into the feedback store
    _still_serves(url)


def test_a_symlink_in_the_upload_folder_to_a_server_file_is_refused(served, tmp_path: Path) -> None:
    url, _ = served
    uploaded = Path(_upload(url, "link.png", _png(32, 32)))
    secret = tmp_path / "secret.png"
    secret.write_bytes(_png(64, 64))
    link = uploaded.parent / f"evil-{uuid.uuid4().hex}.png"
    link.symlink_to(secret)
    try:
        kind, value = _call(url, "analyze_image", [_file(str(link), meta=False), "vit", False, "auto"])
    finally:
        link.unlink()
    assert kind == "error" and NOT_AN_UPLOAD in _error_text(value)


@pytest.mark.parametrize("api", ["analyze_image", "compare", "flag"])
def test_inline_data_over_the_upload_limit_is_refused_before_decoding(served, api: str) -> None:
    url, settings = served
    big = base64.b64encode(os.urandom(SMALL_LIMIT + 3000)).decode()
    data = _requests_for("")[api]
    data[0] = _file(url=f"data:image/png;base64,{big}")
    kind, value = _call(url, api, data)
    assert kind == "error" and "larger than the limit" in _error_text(value), value
    _still_serves(url)


def test_a_request_body_over_the_limit_is_refused_before_it_is_read(served) -> None:
    """Only the headers are sent: the server must answer 413 without waiting for (or reading) the 3 MB body."""
    import socket
    from urllib.parse import urlsplit

    url, _ = served
    host, port = urlsplit(url).hostname, urlsplit(url).port
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall((f"POST /gradio_api/call/analyze_image HTTP/1.1\r\nHost: {host}\r\n"
                      "Content-Type: application/json\r\nContent-Length: 3000000\r\n\r\n").encode())
        answer = sock.recv(65536).decode(errors="replace")
        # Headers and body may come in separate packets: read until the announced body is there.
        head, _, body = answer.partition("\r\n\r\n")
        length = int(next((h.split(":", 1)[1] for h in head.split("\r\n") if h.lower().startswith("content-length:")),
                          "0"))
        while len(body.encode()) < length:
            more = sock.recv(65536).decode(errors="replace")
            if not more:
                break
            body += more
        answer = f"{head}\r\n\r\n{body}"
    assert answer.startswith("HTTP/1.1 413"), answer[:200]
    assert "larger than the limit" in answer
    _still_serves(url)


def test_inline_data_under_the_limit_is_still_analysed(served) -> None:
    url, _ = served
    small = base64.b64encode(_png(96, 72)).decode()
    kind, out = _call(url, "analyze_image", [_file(url=f"data:image/png;base64,{small}"), "vit", False, "auto"])
    assert kind == "complete", out


def test_a_60x32767_upload_is_refused_and_the_server_keeps_serving(served) -> None:
    url, _ = served
    kind, value = _call(url, "analyze_image", [_file(_upload(url, "tall.png", _flat_png(60, 32767))), "vit", False,
                                               "auto"])
    assert kind == "error" and "UDFD_MAX_SIDE" in _error_text(value), value
    _still_serves(url)


def test_file_names_in_errors_are_escaped(served) -> None:
    url, _ = served
    name = "<img src=x onerror=alert(1)>.png"
    path = _upload(url, name, b"not an image at all")
    for api in ("analyze_image", "flag", "compare"):
        kind, value = _call(url, api, _requests_for(path)[api])
        assert kind == "error"
        assert "<img" not in _error_text(value), (api, value)


def test_a_malformed_payload_is_refused_and_the_server_keeps_serving(served) -> None:
    url, _ = served
    for payload in (12345, ["a", "list"], "/etc/passwd", {"path": 7}):
        kind, _value = _call(url, "analyze_image", [payload, "vit", False, "auto"])
        assert kind == "error", payload
    kind, value = _call(url, "analyze_image", [_file(url="https://example.com/x.png"), "vit", False, "auto"])
    assert kind == "error" and "not fetched from URLs" in _error_text(value), value
    _still_serves(url)


def test_uploaded_images_still_flag(served) -> None:
    url, settings = served
    kind, out = _call(url, "flag", [_file(_upload(url, "ok.png", _png(96, 72))), "vit", "Correct", False])
    assert kind == "complete", out
    assert out[0]["id"] in {r.id for r in read_records(settings.feedback.dir).records}


# -- 7. flags: idempotent by id, a clear message when the store cannot be written ------------------------------
def test_the_same_flag_id_twice_is_stored_once(served) -> None:
    url, settings = served
    path = _upload(url, "ok.png", _png(96, 72))
    flag_id = uuid.uuid4().hex
    first = _call(url, "flag_with_id", [_file(path), "vit", "Wrong — it is fake", False, flag_id])
    again = _call(url, "flag_with_id", [_file(path), "vit", "Wrong — it is fake", False, flag_id])
    assert first[0] == again[0] == "complete", (first, again)
    assert first[1][0]["id"] == again[1][0]["id"] == flag_id
    assert (first[1][0]["already_stored"], again[1][0]["already_stored"]) == (False, True)
    assert [r.id for r in read_records(settings.feedback.dir).records].count(flag_id) == 1
    kind, value = _call(url, "flag_with_id", [_file(path), "vit", "Correct", False, "../../x"])
    assert kind == "error" and "flag_id must be" in _error_text(value)


def test_a_flag_that_cannot_be_stored_says_so(tmp_path: Path, tiny_vit_dir: Path) -> None:
    blocked = tmp_path / "fb"
    blocked.write_text("a file where the store's folder should be")  # every write into it fails
    settings = _settings(tiny_vit_dir, blocked, flags_per_minute=1000)
    with serve(app.build_app(settings), max_file_size=app.upload_limit(settings)) as url:
        kind, value = _call(url, "flag", [_file(_upload(url, "ok.png", _png(96, 72))), "vit", "Correct", False])
        assert kind == "error", value
        text = _error_text(value)
        assert "could not be stored" in text and "Nothing was recorded" in text
        assert str(tmp_path) not in text  # the path is for the log, not the visitor
        _still_serves(url)


# -- 9. flags are rate-limited per client ----------------------------------------------------------------------
def test_flags_are_rate_limited_per_client(tmp_path: Path, tiny_vit_dir: Path) -> None:
    settings = _settings(tiny_vit_dir, tmp_path / "fb", flags_per_minute=3)
    with serve(app.build_app(settings), max_file_size=app.upload_limit(settings)) as url:
        path = _upload(url, "ok.png", _png(96, 72))
        answers = [_call(url, "flag", [_file(path), "vit", "Correct", False]) for _ in range(5)]
        assert [kind for kind, _ in answers] == ["complete"] * 3 + ["error"] * 2, answers
        assert "too many flags from this address: at most 3 per minute" in _error_text(answers[3][1])
        assert len(read_records(settings.feedback.dir).records) == 3
        _still_serves(url)  # analysis is not limited


def test_the_upload_limit_admits_videos_up_to_their_own_limit(served) -> None:
    """Item 5: the server's upload limit was the image limit, so videos over 50 MB could not be uploaded."""
    _, settings = served
    assert app.upload_limit(settings) == settings.video.max_file_bytes > settings.max_file_bytes
    assert app.upload_limit(dataclasses.replace(settings, max_file_bytes=10**10)) == 10**10


# -- fuzzing the image decoder ----------------------------------------------------------------------------
FUZZ_SECONDS = 20.0


def _seeds() -> list[bytes]:
    """Small real encodings of a face-like gradient in every supported format (and a few modes)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:48, 0:64]
    rgb = np.stack([x * 4, y * 5, (x + y) * 2], axis=2).astype(np.uint8) + rng.integers(0, 8, (48, 64, 3), np.uint8)
    out = []
    for fmt, mode in [("PNG", "RGB"), ("PNG", "RGBA"), ("PNG", "P"), ("PNG", "I;16"), ("JPEG", "RGB"),
                      ("JPEG", "L"), ("GIF", "P"), ("BMP", "RGB"), ("TIFF", "RGB"), ("WEBP", "RGB")]:
        im = PILImage.fromarray(rgb)
        im = im.convert("L").convert("I;16") if mode == "I;16" else im.convert(mode)
        buf = io.BytesIO()
        im.save(buf, fmt)
        out.append(buf.getvalue())
    return out


def _set_png_size(data: bytearray, width: int, height: int) -> bytearray:
    """Rewrite a PNG's IHDR size and fix its CRC, so that Pillow reads the claim instead of rejecting the chunk."""
    import zlib

    data[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    return data


def _mutate(rng: np.random.Generator, seed: bytes) -> bytes:
    data = bytearray(seed)
    how = int(rng.integers(0, 7))
    if how == 0:  # flip random bytes
        for i in rng.integers(0, len(data), int(rng.integers(1, 12))):
            data[i] = int(rng.integers(0, 256))
    elif how == 1:  # truncate
        data = data[: int(rng.integers(0, len(data)))]
    elif how == 2:  # random header claims (PNG: any size up to 2^31; JPEG SOF: up to 65535)
        side = lambda: int(rng.choice([0, 1, 2, 60, 4097, 16385, 32767, 32768, 65535, 2**31 - 1]))  # noqa: E731
        if data.startswith(b"\x89PNG"):
            data = _set_png_size(data, side(), side())
        elif b"\xff\xc0" in data:
            sof = data.index(b"\xff\xc0")
            data[sof + 5:sof + 9] = min(side(), 65535).to_bytes(2, "big") + min(side(), 65535).to_bytes(2, "big")
    elif how == 3:  # insert random bytes
        at = int(rng.integers(0, len(data) + 1))
        data[at:at] = rng.integers(0, 256, int(rng.integers(1, 64)), np.uint8).tobytes()
    elif how == 4:  # duplicate a slice (repeated chunks / markers)
        a = int(rng.integers(0, len(data)))
        b = min(len(data), a + int(rng.integers(1, 200)))
        data[b:b] = data[a:b] * int(rng.integers(1, 4))
    elif how == 5:  # a known magic number followed by noise
        magic = [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"BM", b"II*\x00", b"RIFF\x00\x00\x00\x00WEBP"]
        data = bytearray(magic[int(rng.integers(0, len(magic)))]) + rng.integers(
            0, 256, int(rng.integers(0, 300)), np.uint8).tobytes()
    else:  # pure noise
        data = bytearray(rng.integers(0, 256, int(rng.integers(0, 400)), np.uint8).tobytes())
    return bytes(data)


def fuzz_decoder(seed: int, seconds: float) -> dict[str, int]:
    """Mutated files through `decode_image` and, when they decode, face detection (the native code that used to
    abort). Every outcome must be an `Image` or a `UdfdError`; anything else propagates. Returns counts."""
    import time

    from udfd.config import FaceSettings
    from udfd.errors import UdfdError
    from udfd.faces import detect_faces
    from udfd.media import decode_image

    rng = np.random.default_rng(seed)
    seeds = _seeds()
    counts = {"decoded": 0, "refused": 0}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        data = _mutate(rng, seeds[int(rng.integers(0, len(seeds)))])
        try:
            image = decode_image(data, name="fuzz")
        except UdfdError:
            counts["refused"] += 1
            continue
        counts["decoded"] += 1
        assert image.pixels.dtype == np.uint8 and image.pixels.ndim == 3 and image.pixels.shape[2] == 3
        assert max(image.pixels.shape[:2]) <= 4096
        detect_faces(image.pixels, FaceSettings())
    return counts


def test_fuzzed_images_give_a_clear_error_or_an_image_never_a_crash() -> None:
    """In a child process: an abort inside native code must fail this test, not end the test run."""
    code = ("import json\nfrom tests.test_security import fuzz_decoder\n"
            f"print(json.dumps(fuzz_decoder(14, {FUZZ_SECONDS})))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=FUZZ_SECONDS + 120,
                         cwd=Path(__file__).resolve().parents[1], env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, (out.returncode, out.stderr[-3000:])
    counts = json.loads(out.stdout.splitlines()[-1])
    assert counts["decoded"] > 20 and counts["refused"] > 20, counts  # both paths were exercised


# -- 8. verdicts with nothing behind them are "cannot tell" ------------------------------------------------------
def test_a_1x1_image_is_uncertain_with_the_reason(tiny_settings) -> None:
    from udfd.pipeline import analyze_image

    settings = dataclasses.replace(tiny_settings, uncertain_band=0.0)  # the score alone never makes it uncertain
    v = analyze_image(_png(1, 1), settings=settings, name="dot.png")
    assert (v.width, v.height) == (1, 1)
    assert v.overall.uncertain and v.overall.text.endswith("(uncertain)")
    assert v.faces[0].uncertain_reason == "no_face"
    assert any("cannot tell" in n for n in v.notes)


def test_input_reason_marks_whole_image_fallbacks_and_tiny_faces() -> None:
    from udfd.pipeline import MIN_FACE_SIDE, input_reason
    from udfd.types import FaceCrop

    def crop(side: int, found: bool = True) -> FaceCrop:
        return FaceCrop(np.zeros((side, side, 3), np.uint8), (0, 0, side, side), 0.9 if found else 0.0, found)

    assert input_reason(crop(200, found=False)) == "no_face"
    assert input_reason(crop(MIN_FACE_SIDE - 1)) == "small_face"
    assert input_reason(crop(MIN_FACE_SIDE)) == ""


def test_a_capped_face_count_is_said(tiny_settings) -> None:
    from udfd.pipeline import analyze_image
    from udfd.types import FaceCrop

    class Many:
        def detect(self, pixels):  # 30 "faces" on a grid
            return [FaceCrop(pixels[y:y + 40, x:x + 40].copy(), (x, y, x + 40, y + 40), 0.9)
                    for y in range(0, 240, 48) for x in range(0, 288, 48)]

    from unittest import mock

    with mock.patch("udfd.pipeline.get_face_detector", return_value=Many()):
        v = analyze_image(_png(320, 256), settings=tiny_settings)
    assert len(v.faces) == tiny_settings.faces.max_faces == 20
    assert any("only the 20 largest faces were analysed" in n for n in v.notes)


# -- 10, 11. the cache is cleaned; visitors never see server paths ------------------------------------------------
def test_visitors_see_model_names_not_server_paths(tmp_path: Path, tiny_vit_dir: Path) -> None:
    from udfd.config import PROJECT_ROOT
    from udfd.detectors import families

    settings = _settings(tiny_vit_dir, tmp_path / "fb", flags_per_minute=10)
    secret = f"model folder {PROJECT_ROOT}/models/udfd-clip does not exist"
    det = families()["vit"].create(families()["vit"].tiny_arch)
    det.name = "vit"
    demo = app.build_app(settings, available={"vit": det}, unavailable={"clip": secret})
    assert demo.delete_cache == app.CACHE_CLEANUP  # Gradio deletes old cache files (issue 14, item 10)
    with serve(demo, max_file_size=app.upload_limit(settings)) as url:
        with urllib.request.urlopen(f"{url}config", timeout=30) as r:
            config = r.read().decode()
        assert "udfd-clip does not exist" in config  # the reason is shown ...
        assert str(PROJECT_ROOT) not in config and str(tmp_path) not in config  # ... without any server path
        _still_serves(url)


def test_hide_paths_keeps_names_and_model_references() -> None:
    from udfd.ui.public import hide_paths

    assert hide_paths("model folder /srv/udfd/models/udfd-clip does not exist") == \
        "model folder udfd-clip does not exist"
    assert hide_paths("local-dir:/srv/m/udfd-vit: no config.json") == "local-dir:udfd-vit: no config.json"
    assert hide_paths("YuNet model not found at '/opt/yunet.onnx'") == "YuNet model not found at 'yunet.onnx'"
    assert hide_paths("hf-hub:org/repo is not cached; ratio 1/2") == "hf-hub:org/repo is not cached; ratio 1/2"


# -- 6. a damaged video says how much of it was analysed; a video without a face is "cannot tell" ---------------
def _mjpeg_avi(path: Path, frames: list[np.ndarray]) -> Path:
    import cv2

    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (w, h))
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


@pytest.fixture(scope="module")
def tiny_video_vit():
    import torch

    from udfd.detectors.vit import ViTDetector

    torch.manual_seed(0)
    det = ViTDetector.create(ViTDetector.tiny_arch)
    det.module().eval()
    return det


def test_a_cut_video_reports_decoded_and_declared_frames(tmp_path: Path, tiny_video_vit) -> None:
    from udfd.config import Settings, VideoSettings
    from udfd.pipeline import analyze_video

    rng = np.random.default_rng(0)
    whole = _mjpeg_avi(tmp_path / "whole.avi", [rng.integers(0, 256, (96, 128, 3), np.uint8) for _ in range(30)])
    cut = tmp_path / "cut.avi"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])  # the header still declares 30 frames
    settings = Settings(video=VideoSettings(frames=4, selection="uniform"))
    v = analyze_video(cut, settings=settings, detectors=[tiny_video_vit])
    assert v.video.frames_declared == 30 and 0 < v.video.frames_decoded < 30
    assert any(f"{v.video.frames_decoded} of the 30 frames it declares" in n for n in v.notes), v.notes
    assert v.to_dict()["video"]["frames_declared"] == 30
    full = analyze_video(whole, settings=settings, detectors=[tiny_video_vit])
    assert full.video.frames_decoded == 30 and not any("ended early" in n for n in full.notes)
    # no face in any frame: whole frames were scored, so the verdict is uncertain (item 8)
    assert full.overall.uncertain and full.faces[0].uncertain_reason in ("no_face", "band")


def test_video_frames_beyond_the_side_or_aspect_limits_are_refused(tmp_path: Path, tiny_video_vit) -> None:
    from udfd.config import Settings
    from udfd.errors import MediaError
    from udfd.pipeline import analyze_video

    path = _mjpeg_avi(tmp_path / "strip.avi", [np.full((16, 672, 3), 128, np.uint8)] * 3)  # 42 : 1
    with pytest.raises(MediaError, match="video frame is 672\N{MULTIPLICATION SIGN}16 pixels: one side is more"):
        analyze_video(path, settings=Settings(), detectors=[tiny_video_vit])


def test_the_server_keeps_a_bounded_number_of_sessions(tiny_vit_dir: Path, tmp_path: Path):
    """Gradio holds the last state of every session (10,000 by default); each API call without a session is a new
    one, so the server crept by ~0.2 MB per request. `python app.py` caps them at app.SESSION_CAPACITY."""
    settings = _settings(tiny_vit_dir, tmp_path / "fb", flags_per_minute=1000)
    demo = app.build_app(settings)
    with serve(demo, **app.launch_options(settings)):
        assert demo.state_holder.capacity == app.SESSION_CAPACITY <= 1000
