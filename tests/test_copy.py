"""What visitors read (udfd/ui, app.py): every error message says what to do next, and the spelling is one
(British: analyse, colour, centre, grey), checked on the source so that a new message cannot slip past."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import gradio as gr
import pytest

from udfd.ui.public import failed, unreadable
from udfd.ui.uploads import decode_data_url, read_upload

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted((ROOT / "udfd" / "ui").glob("*.py")) + [ROOT / "app.py"]
NEXT_STEP = re.compile(r"\b(upload|try|choose|send|click|press|save|convert|use|analyse|wait)\b", re.I)
# Prose only (a string with a space); identifiers such as api_name="analyze_image" and the report's CSS are code.
AMERICAN = re.compile(r"\b(analyz(e|es|ed|ing)|colors?|colored|center(ed)?|gray|labeled|behaviors?)\b", re.I)


def _error_texts(path: Path) -> list[tuple[int, str | None]]:
    """(line, literal text) of every `gr.Error(...)` message in a file; None for a message built by a call to
    `unreadable`/`failed` (which add the next step themselves)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    constants = {t.id: n.value.value for n in tree.body if isinstance(n, ast.Assign)
                 and isinstance(n.value, ast.Constant) for t in n.targets if isinstance(t, ast.Name)}
    constants |= {t.id: "".join(c.value for c in n.value.values if isinstance(c, ast.Constant))
                  for n in tree.body if isinstance(n, ast.Assign) and isinstance(n.value, ast.JoinedStr)
                  for t in n.targets if isinstance(t, ast.Name)}
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "Error"
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "gr" and node.args):
            continue
        arg = node.args[0]
        if isinstance(arg, ast.Constant):
            found.append((node.lineno, str(arg.value)))
        elif isinstance(arg, ast.JoinedStr):
            found.append((node.lineno, "".join(str(c.value) for c in arg.values if isinstance(c, ast.Constant))))
        elif isinstance(arg, ast.Name):
            found.append((node.lineno, constants.get(arg.id, f"<unresolved name {arg.id}>")))
        elif isinstance(arg, ast.Call) and isinstance(arg.func, ast.Name) and arg.func.id in ("unreadable", "failed"):
            found.append((node.lineno, None))
        else:
            found.append((node.lineno, f"<message built by {ast.dump(arg)[:60]}>"))
    return found


# Messages built at run time from the request itself, which this walk cannot read: API refusals of malformed
# requests (a browser never sends them), each saying what the input takes; tests/test_messages.py drives them.
DYNAMIC = {"udfd/ui/malformed.py"}


def test_every_visitor_error_says_what_to_do_next() -> None:
    silent = [f"{p.relative_to(ROOT)}:{line}: {text!r}" for p in SOURCES for line, text in _error_texts(p)
              if text is not None and not NEXT_STEP.search(text)
              and not (str(p.relative_to(ROOT)) in DYNAMIC and text.startswith("<unresolved name"))]
    assert not silent, "messages that do not say what to do next:\n" + "\n".join(silent)
    assert sum(len(_error_texts(p)) for p in SOURCES) > 20  # the walk finds the messages at all


def test_file_and_failure_messages_name_the_next_step_and_escape() -> None:
    text = unreadable("<b>x</b>.jpg", "not a supported image (JPEG, PNG, WebP, BMP, GIF, TIFF)")
    assert text.startswith("&lt;b&gt;x&lt;/b&gt;.jpg: not a supported image") and "Try another image" in text
    assert "Try another video" in unreadable("c.mp4", "cannot decode", video=True)
    text = failed("model folder /srv/models/udfd-clip does not exist")
    assert "/srv" not in text and "udfd-clip" in text and "Try again" in text


@pytest.mark.parametrize(("call", "expected"), [
    (lambda: decode_data_url("data:image/png;base64,@@@@", max_bytes=100), "upload the file itself"),
    (lambda: decode_data_url("data:image/png;base64,", max_bytes=100), "upload the file itself"),
    (lambda: decode_data_url("data:image/png;base64," + "A" * 400, max_bytes=100), "send a smaller image"),
    (lambda: read_upload(42, max_bytes=100), "handle_file(path)"),
])
def test_upload_errors_say_what_to_send(call, expected) -> None:
    with pytest.raises(gr.Error, match=re.escape(expected)):
        call()


def test_spelling_is_one_in_what_visitors_read() -> None:
    found = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and " " in node.value \
                    and "{" not in node.value:  # a style sheet is code
                found += [f"{path.relative_to(ROOT)}:{node.lineno}: {m.group(0)}"
                          for m in AMERICAN.finditer(node.value)]
    assert not found, found
