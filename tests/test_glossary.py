"""No jargon without an explanation (issue 18): the tables' headers are plain words the glossary explains, the
detectors' skill lines and the About text explain AUC, leave-one-source-out, threshold, cannot tell on hover, and
every detector's model card can be read from the page (a Hub link, or the embedded card's summary), never a path."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import pytest

import app
from udfd.catalog import card_summary, describe, hub_card
from udfd.config import PROJECT_ROOT
from udfd.ui.about import build_about, detector_lines
from udfd.ui.compare import COMPARE_HEADERS
from udfd.ui.glossary import GLOSSARY, TABLE_ONLY, explain, glossary_markdown, key
from udfd.ui.image import TABLE_HEADERS as FACE_HEADERS
from udfd.ui.video import TABLE_HEADERS as VIDEO_HEADERS

PLAIN = {"face", "detector", "version", "verdict", "kind", "time (ms)"}  # words every visitor knows
JARGON = ("AUC", "LOSO", "leave-one-source-out", "held-out sources", "chance", "threshold", "uncertain",
          "cannot tell", "pooled AUC", "dev faces")
MODELS = sorted(p for p in (PROJECT_ROOT / "models").iterdir() if (p / "config.json").is_file())


class _Abbrs(HTMLParser):
    """(text, title) of every <abbr> in an HTML/Markdown string."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str]] = []
        self._title: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "abbr":
            self._title = dict(attrs).get("title") or ""

    def handle_data(self, data: str) -> None:
        if self._title is not None:
            self.found.append((data, self._title))
            self._title = None


def abbrs(text: str) -> dict[str, str]:
    parser = _Abbrs()
    parser.feed(text)
    return {t.lower(): title for t, title in parser.found}


@pytest.mark.parametrize("headers", [FACE_HEADERS, VIDEO_HEADERS, COMPARE_HEADERS], ids=["face", "video", "compare"])
def test_every_table_header_is_a_plain_word_or_in_the_glossary(headers: list[str]) -> None:
    assert not [h for h in headers if "_" in h], "a JSON field name is shown as a column header"
    unexplained = [h for h in headers if h not in PLAIN and not any(t.lower() in h.lower() for t in GLOSSARY)]
    assert not unexplained


def test_explain_wraps_the_first_use_of_each_term_with_its_explanation() -> None:
    text = "pooled AUC 0.27; AUC again; a `threshold` in code; [AUC](https://x/AUC); Cannot tell, uncertain"
    out = explain(text)
    found = abbrs(out)
    assert found["pooled auc"] == GLOSSARY["pooled AUC"]  # the longer term wins over AUC, and explains it
    assert GLOSSARY["AUC"] in found["pooled auc"]
    assert found["auc"] == GLOSSARY["AUC"] and out.count(">AUC</abbr>") == 1  # only the first use
    assert "`threshold`" in out and "threshold" not in found  # code spans are left alone
    assert "(https://x/AUC)" in out  # so are link targets
    assert found["cannot tell"] == GLOSSARY["cannot tell"] and "uncertain" not in found  # synonyms once
    assert explain("scores reconstruction error") == "scores reconstruction error"  # column names stay columns
    assert explain("sharpness, chances") == "sharpness, chances"  # whole words only


def test_explanations_are_escaped_attributes() -> None:
    out = explain("the detector's threshold")
    assert abbrs(out)["threshold"] == GLOSSARY["threshold"]
    assert all('"' not in title for title in re.findall(r'title="([^"]*)"', out))


def test_table_key_and_glossary_list_every_term() -> None:
    line = key(["fake probability", "frame max"])
    assert abbrs(line) == {"fake probability": GLOSSARY["fake probability"], "frame max": GLOSSARY["frame max"]}
    listed = glossary_markdown()
    assert all(f"**{t}**" in listed or f"{t})" in listed or f"{t}," in listed for t in GLOSSARY)
    assert all(e in listed for e in GLOSSARY.values())


@pytest.mark.parametrize("folder", MODELS, ids=lambda p: p.name)
def test_each_embedded_detectors_line_explains_its_jargon(folder: Path) -> None:
    meta = json.loads((folder / "config.json").read_text(encoding="utf-8"))["udfd"]
    info = describe(folder.name, SimpleNamespace(meta=meta, family=meta.get("family", ""),
                                                 loaded_from=f"local-dir:{folder}"))
    line = explain(info.line)
    found = abbrs(line)
    used = [t for t in JARGON if t not in TABLE_ONLY and re.search(rf"(?<![\w-]){re.escape(t)}(?![\w-])",
                                                                    info.line, re.I)]
    missing = [t for t in used if not any(t.lower() in shown for shown in found)]  # "AUC" in "pooled AUC"
    assert not missing, f"{folder.name}: {missing} not explained in {line}"
    assert str(PROJECT_ROOT) not in line and not info.card  # embedded, no Hub reference configured


def test_the_about_text_explains_cannot_tell_and_threshold() -> None:
    found = abbrs(explain(app.ABOUT))
    assert found["cannot tell"] == GLOSSARY["cannot tell"] and found["threshold"] == GLOSSARY["threshold"]


# -- model cards -------------------------------------------------------------------------------------------------
def test_hub_card_comes_from_the_served_or_the_configured_reference() -> None:
    assert hub_card("hf-hub:org/udfd-x@abc | local-dir:models/udfd-x") == "https://huggingface.co/org/udfd-x"
    assert hub_card(["local-dir:models/udfd-x"]) == ""
    local = SimpleNamespace(meta={}, family="timm", loaded_from="local-dir:/srv/models/udfd-x")
    assert describe("x", local).card == ""
    # Served from the embedded copy (the Hub was unreachable, or the Space lists the published repo first).
    assert describe("x", local, configured="hf-hub:org/udfd-x | local-dir:/srv/models/udfd-x").card == \
        "https://huggingface.co/org/udfd-x"


@pytest.mark.parametrize("folder", [p for p in MODELS if (p / "README.md").is_file()], ids=lambda p: p.name)
def test_card_summary_is_the_readable_start_of_each_card(folder: Path) -> None:
    card = (folder / "README.md").read_text(encoding="utf-8")
    summary = card_summary(card)
    assert summary, f"{folder.name}: nothing to show"
    assert "model-index" not in summary and not summary.startswith("---") and "|---" not in summary
    assert "<!--" not in summary
    if "## Intended use and limitations" in card:
        assert "**Intended use and limitations**" in summary


def test_card_summary_of_a_made_up_card() -> None:
    card = "---\nlicense: mit\n---\n\n# m\n\nWhat it is.\n\n| a | b |\n\n## Training data\n\nsecret\n\n## Limits\n\n- weak\n"
    assert card_summary(card) == "What it is.\n\n**Limits**\n\n- weak"
    assert card_summary("no headings at all") == ""


def _markdown_values(blocks: gr.Blocks) -> list[str]:
    return [str(b.value) for b in blocks.blocks.values() if isinstance(b, gr.Markdown)]


def test_about_links_hub_cards_and_shows_embedded_ones_in_place_without_paths() -> None:
    folder = PROJECT_ROOT / "models" / "udfd-effnet-lite0"
    meta = json.loads((folder / "config.json").read_text(encoding="utf-8"))["udfd"]
    local = SimpleNamespace(meta=meta, family="timm", loaded_from=f"local-dir:{folder}")
    hub = SimpleNamespace(meta={"display": {"title": "Hub one"}}, family="vit", loaded_from="hf-hub:org/udfd-vit@r1")
    dets = {"effnet_lite0": local, "vit": hub}
    infos = {n: describe(n, d) for n, d in dets.items()}
    assert "[model card](https://huggingface.co/org/udfd-vit)" in detector_lines(infos, {})
    with gr.Blocks() as blocks:
        build_about(infos, dets, {"clip": "model folder udfd-clip does not exist"})
    accordions = [b.label for b in blocks.blocks.values() if isinstance(b, gr.Accordion)]
    assert accordions == [f"Model card: {infos['effnet_lite0'].title}"]  # the Hub one is a link, not a copy
    texts = "\n".join(_markdown_values(blocks))
    assert "Intended use and limitations" in texts and "clip** — unavailable" in texts
    assert str(PROJECT_ROOT) not in texts and "/work/" not in texts
