"""A cold start with the Hub unreachable (issue 20): offline, refused, failing `HfApi` or silent, the app serves the
embedded fallbacks without hanging and tells the visitor so (top notice and 'About the detectors')."""

from __future__ import annotations

import os
import shutil
import socket
import threading
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest  # noqa: E402

import app  # noqa: E402
from udfd.catalog import fallback_notice  # noqa: E402
from udfd.config import FaceSettings, Settings  # noqa: E402
from udfd.errors import HubUnreachableError  # noqa: E402
from udfd.hub import reset_hub_state  # noqa: E402
from udfd.loader import clear_cache  # noqa: E402

PLAIN = HubUnreachableError.public  # what the visitor is told


@pytest.fixture(autouse=True)
def _fresh_hub_state():
    reset_hub_state()
    clear_cache()
    yield
    reset_hub_state()
    clear_cache()


def _hub_first(tmp_path: Path, tiny_vit_dir: Path, names: tuple[str, ...] = ("vit",), **kw: Any) -> Settings:
    models = {}
    for name in names:  # each its own embedded folder, as in space/detectors.json
        folder = tmp_path / f"models-{name}"
        shutil.copytree(tiny_vit_dir, folder)
        models[name] = f"hf-hub:udfd/udfd-{name} | local-dir:{folder}"
    return Settings(detectors=names, video_detectors=(), models=models, faces=FaceSettings(backend="haar"),
                    fast="off", **kw)


def _component(demo: Any, elem_id: str) -> dict[str, Any]:
    found = [c["props"] for c in demo.config["components"] if c.get("props", {}).get("elem_id") == elem_id]
    assert len(found) == 1, f"no single component {elem_id!r}"
    return found[0]


def _markdowns(demo: Any) -> str:
    return "\n".join(str(c["props"].get("value", "")) for c in demo.config["components"] if c.get("type") == "markdown")


def _load_within(settings: Settings, seconds: float = 120.0) -> tuple[dict, dict]:
    """load_models in a thread: a hung start-up fails the test instead of hanging the suite."""
    out: list[tuple[dict, dict]] = []
    worker = threading.Thread(target=lambda: out.append(app.load_models(settings)), daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), "start-up hung on the unreachable Hub"
    return out[0]


def _assert_says_so(settings: Settings, available: dict, unavailable: dict, tmp_path: Path) -> None:
    assert set(available) == set(settings.detectors) and not unavailable
    for det in available.values():
        assert det.loaded_from.startswith("local-dir:") and det.fallback_note == PLAIN
        assert any("hf-hub:udfd/udfd-" in r for r in det.fallback_reasons)
    demo = app.build_app(settings, available=available, unavailable=unavailable)
    notice = _component(demo, "fallback-notice")
    assert notice["visible"] is True
    assert PLAIN in notice["value"] and all(f"`{n}`" in notice["value"] for n in settings.detectors)
    text = _markdowns(demo)
    assert f"served from its embedded copy: {PLAIN}" in text  # the 'About the detectors' line
    assert str(tmp_path) not in text and "local-dir:" not in text  # names and reasons, no server paths


def test_offline_cold_start_serves_the_embedded_copy_and_says_so(tmp_path: Path, tiny_vit_dir: Path) -> None:
    settings = _hub_first(tmp_path, tiny_vit_dir)
    available, unavailable = _load_within(settings)
    _assert_says_so(settings, available, unavailable, tmp_path)


@pytest.fixture()
def online_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """huggingface_hub as if online, with an empty cache; the test points it at its own endpoint."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    return lambda endpoint: monkeypatch.setattr(constants, "ENDPOINT", endpoint)


def test_a_silent_hub_is_given_up_once_and_start_up_goes_on(online_hub, tmp_path: Path, tiny_vit_dir: Path) -> None:
    """A Hub that accepts connections and never answers: huggingface_hub alone would wait forever (repo_info has
    no timeout). The first reference waits `hub_timeout`; the second does not ask the Hub at all."""
    silent = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: [accepted.append(silent.accept()[0]) for _ in range(10)], daemon=True).start()
    online_hub(f"http://127.0.0.1:{silent.getsockname()[1]}")
    settings = _hub_first(tmp_path, tiny_vit_dir, names=("vit", "vit_b"), hub_timeout=0.5)
    try:
        available, unavailable = _load_within(settings)
        assert len(accepted) == 1, "the second Hub reference asked the silent Hub again"
    finally:
        for conn in accepted:
            conn.close()
        silent.close()
    _assert_says_so(settings, available, unavailable, tmp_path)
    assert any("no answer within 0.5 s" in r for r in available["vit"].fallback_reasons)


def test_a_refused_connection_falls_back(online_hub, tmp_path: Path, tiny_vit_dir: Path) -> None:
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there: connection refused
    online_hub(f"http://127.0.0.1:{port}")
    settings = _hub_first(tmp_path, tiny_vit_dir)
    _assert_says_so(settings, *_load_within(settings), tmp_path)


def test_a_failing_hfapi_falls_back(online_hub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                    tiny_vit_dir: Path) -> None:
    import httpx2
    from huggingface_hub import HfApi

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise httpx2.ConnectError("Temporary failure in name resolution")

    monkeypatch.setattr(HfApi, "repo_info", fail)
    settings = _hub_first(tmp_path, tiny_vit_dir)
    _assert_says_so(settings, *_load_within(settings), tmp_path)


def test_a_hub_that_answers_is_not_marked_unreachable(online_hub, tmp_path: Path, tiny_vit_dir: Path) -> None:
    """A Hub that answers 404 (the repo is not published yet) is reachable: the detector falls back with the
    generic reason, and the next Hub reference asks the Hub again."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from udfd.hub import hub_down

    asked: list[str] = []

    class NotFound(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            asked.append(self.path)
            body = b'{"error": "Repository not found"}'
            self.send_response(404)
            self.send_header("Content-Type", "application/json")
            self.send_header("X-Error-Code", "RepoNotFound")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    online_hub(f"http://127.0.0.1:{server.server_address[1]}")
    try:
        settings = _hub_first(tmp_path, tiny_vit_dir, names=("vit", "vit_b"))
        available, unavailable = _load_within(settings)
    finally:
        server.shutdown()
        server.server_close()
    assert set(available) == {"vit", "vit_b"} and not unavailable and hub_down() == ""
    assert {d.fallback_note for d in available.values()} == {"the preferred copy could not be loaded"}
    assert any("udfd-vit_b" in p for p in asked), "the second reference did not ask the Hub"


def test_the_notice_is_empty_when_every_detector_came_from_its_first_reference() -> None:
    class Det:
        fallback_reasons: tuple[str, ...] = ()

    class Fell(Det):
        fallback_reasons = ("hf-hub:org/udfd-cnn: no answer within 5 s",)
        fallback_note = PLAIN

    assert fallback_notice({"cnn": Det()}) == ""
    notice = fallback_notice({"cnn": Fell(), "vit": Det(), "ensemble": Fell()})
    assert "`cnn`, `ensemble`: " + PLAIN in notice and "`vit`" not in notice and "org/udfd-cnn" not in notice
