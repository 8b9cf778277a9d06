"""Issue 14 item 12: every refusal says what was wrong. Malformed payloads sent to the launched app over raw HTTP
got Gradio's bare `{"error": null}` (its input checks run before any handler); an empty image must say "empty";
counts agree with their nouns ("1 frame", never "1 frames")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import app
from tests.conftest import serve
from tests.test_security import _call, _file, _png, _settings, _upload
from udfd.plain import counted
from udfd.ui.uploads import NOT_AN_UPLOAD


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, tiny_vit_dir: Path):
    tmp = tmp_path_factory.mktemp("messages")
    settings = _settings(tiny_vit_dir, tmp / "fb", flags_per_minute=1000)
    with serve(app.build_app(settings), **app.launch_options(settings)) as url:  # as `python app.py` launches
        yield url


def _requests(payload: object) -> dict[str, list]:
    return {
        "analyze_image": [payload, "vit", False, "auto"],
        "compare": [payload, False],
        "flag": [payload, "vit", "Wrong — it is real", True],
        "analyze_video": [payload, "vit", []],
    }


def _message(value: object) -> str:
    assert isinstance(value, dict) and isinstance(value.get("error"), str) and value["error"], value
    return value["error"]


MALFORMED = [(12345, "int"), ("hello", "str"), (["a", "list"], "list"), ({"path": 7}, "keys path"),
             ({"foo": 1}, "")]


@pytest.mark.parametrize("api", ["analyze_image", "compare", "flag", "analyze_video"])
def test_a_malformed_file_payload_is_refused_with_what_was_wrong(served, api: str) -> None:
    for payload, kind in MALFORMED:
        event, value = _call(served, api, _requests(payload)[api])
        assert event == "error", (payload, value)
        message = _message(value)  # never {"error": null}
        assert "xpected a file" in message, (api, payload, message)
        assert kind in message, (api, payload, message)
    _still_serves(served)


def test_too_few_inputs_says_how_many_the_endpoint_takes(served) -> None:
    event, value = _call(served, "analyze_image", [12345])
    assert event == "error"
    assert "takes 4 input values" in _message(value) and "got 1" in _message(value)


def test_a_server_path_with_filedata_meta_gets_the_same_refusal_as_without(served, tmp_path: Path) -> None:
    secret = tmp_path / "secret.png"
    secret.write_bytes(_png(16, 16))
    for path in (str(secret), "/etc/passwd", str(tmp_path)):
        with_meta = _call(served, "analyze_image", [_file(path), "vit", False, "auto"])
        without = _call(served, "analyze_image", [_file(path, meta=False), "vit", False, "auto"])
        assert with_meta[0] == without[0] == "error"
        assert NOT_AN_UPLOAD in _message(with_meta[1]) and NOT_AN_UPLOAD in _message(without[1])
        assert str(tmp_path) not in json.dumps(with_meta[1])


def test_a_refusal_never_echoes_markup_sent_in_the_payload(served) -> None:
    event, value = _call(served, "analyze_video", [{"<img src=x onerror=alert(1)>": 1}, "vit", []])
    assert event == "error"
    assert "<img" not in _message(value) and "&lt;img" in _message(value)


def test_an_empty_image_says_empty(served) -> None:
    event, value = _call(served, "analyze_image", [_file(_upload(served, "empty.png", b"")), "vit", False, "auto"])
    assert event == "error"
    message = _message(value)
    assert "empty" in message and "not a supported image" not in message, message


def test_an_empty_filedata_is_nothing_sent_not_a_malformed_one(served) -> None:
    event, value = _call(served, "analyze_image", [_file(None, None), "vit", False, "auto"])
    assert event == "error" and "xpected a file" not in _message(value)  # "upload an image first"


def _still_serves(url: str) -> None:
    kind, out = _call(url, "analyze_image", [_file(_upload(url, "ok.png", _png(96, 72))), "vit", False, "auto"])
    assert kind == "complete", out


# -- counts agree with their nouns ---------------------------------------------------------------------------------
def test_counted_agrees_in_number() -> None:
    assert counted(1, "frame") == "1 frame"
    assert counted(0, "frame") == "0 frames"
    assert counted(2, "face") == "2 faces"
    assert counted(1, "file") == "1 file"


def test_video_notes_say_1_frame_not_1_frames() -> None:
    from types import SimpleNamespace

    from udfd.pipeline import _video_notes

    info = SimpleNamespace(frame_count=1, declared_frames=1, ended_early=False)
    sample = SimpleNamespace(truncated=True, info=info, selection="uniform_fallback", indices=(0,))
    notes = _video_notes(sample, [[(0, 0)]], [True], [], [0])
    assert any("only the first 1 frame was analysed" in n for n in notes), notes
    assert any("1 frame spread uniformly was used" in n for n in notes), notes
    assert not any("1 frames" in n for n in notes), notes


def test_scan_summary_counts_agree() -> None:
    from udfd.scan.summary import format_summary

    text = format_summary({"files": 1, "faces": 1, "models": {}, "per_verdict": {}, "per_source": {},
                           "primary": None, "agreement": {}})
    assert text.splitlines()[0] == "1 file, 1 face"
