"""Gradio pieces for explanations (Image tab) and the Compare tab. app.py places and wires them.

UI only: the callbacks call `udfd.pipeline` / `udfd.explain` / `udfd.compare` and turn their records into what
Gradio shows. Imported by the app, never by the library.
"""

from __future__ import annotations

import dataclasses
import html
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import pandas as pd

from udfd.compare import Comparison, agreement_markdown
from udfd.config import Settings
from udfd.detectors.base import Detector
from udfd.errors import MediaError, UdfdError
from udfd.explain import METHOD_LABELS, explain_methods, explain_note, explain_verdict, overlay
from udfd.media import decode_image, image_limits, read_image
from udfd.pipeline import compare_image
from udfd.provenance import read_provenance
from udfd.types import Heatmap, Image, Verdict
from udfd.ui.evidence import evidence_markdown
from udfd.ui.glossary import key
from udfd.ui.public import failed, unreadable, visible

AUTO = "auto"
EXPLAIN_INFO = (
    "Heat-maps cost time on a CPU (FullGrad on MobileNetV2: seconds per face). FullGrad is offered on "
    "CNNs only: on a ViT it is not meaningful (it only sees the patch-embedding bias), so ViTs use "
    "Grad-CAM or EigenCAM on the last block's tokens."
)
# Plain words (the Verdict JSON keeps its field names: fake_prob, latency_ms); udfd/ui/glossary.py explains them.
COMPARE_HEADERS = ["face", "detector", "version", "fake probability", "verdict", "threshold", "time (ms)"]
COMPARE_INTRO = (
    "Runs **every available detector** on every face of one upload: their scores side by side, "
    "their heat-maps (each detector's default method), and how far they agree. The overall verdict "
    "in the JSON is decided by the first detector, as in the Image tab."
)

ReadUpload = Callable[[dict[str, Any] | None], tuple[str | None, bytes | None]]


# -- Image tab: explanation controls and views ------------------------------------------------------------
def method_dropdown(detector: Detector | None) -> gr.Dropdown:
    """The explanation method choice for `detector` (its default first, behind "auto")."""
    return gr.Dropdown(label="Explanation method", **_method_choices(detector))


def method_update(detector: Detector | None) -> gr.Dropdown:
    """Same choices as an update, for when the detector changes."""
    return gr.Dropdown(**_method_choices(detector))


def _method_choices(detector: Detector | None) -> dict[str, Any]:
    methods = explain_methods(detector) if detector is not None else ()
    choices = [(f"detector default ({METHOD_LABELS[methods[0]]})" if methods else "not explainable", AUTO)]
    choices += [(METHOD_LABELS.get(m, m), m) for m in methods]
    note = explain_note(detector) if detector is not None else ""
    return {"choices": choices, "value": AUTO, "info": note or EXPLAIN_INFO}


def explanation_views(detector: Detector, pixels: np.ndarray, verdict: Verdict, method: str | None,
                      *, out: list[Any] | None = None) -> list[Any]:
    """Gallery items: the whole image with every face's heat-map, then each face with its own map. The maps
    themselves are appended to `out` when given (one per face, in the verdict's order)."""
    chosen = None if method in (None, "", AUTO) else method
    heatmaps = explain_verdict(pixels, verdict, detector, method=chosen)
    if out is not None:
        out.extend(heatmaps)
    label = METHOD_LABELS.get(heatmaps[0].method, heatmaps[0].method)
    views: list[Any] = [(overlay(pixels, heatmaps), f"{label} overlay ({detector.name}, evidence for 'fake')")]
    for i, hm in enumerate(heatmaps, start=1):
        x0, y0, x1, y1 = hm.box
        face = np.ascontiguousarray(pixels[y0:y1, x0:x1])
        views.append((overlay(face, [dataclasses.replace(hm, box=(0, 0, x1 - x0, y1 - y0))]), f"face {i}: {label}"))
    return views


# -- Compare tab ---------------------------------------------------------------------------------------------
def decode_upload(path: str | None, data: bytes | None, settings: Settings, name: str) -> Image:
    """The uploaded image, decoded by udfd.media; a bad file becomes a `gr.Error` naming it (not the server path)."""
    try:
        if data is not None:
            image = decode_image(data, name=name, **image_limits(settings))
        else:
            image = read_image(path, max_file_bytes=settings.max_file_bytes, **image_limits(settings))
    except MediaError as e:
        raise gr.Error(unreadable(name, e.reason), print_exception=False) from e
    return dataclasses.replace(image, source=name)


def comparison_table(comparison: Comparison) -> dict[str, Any]:
    rows = [
        [r.face, r.detector, r.version, round(r.fake_prob, 4), r.label, round(r.threshold, 4), round(r.latency_ms, 1)]
        for r in comparison.rows
    ]
    return {"headers": COMPARE_HEADERS, "data": rows}


def comparison_bars(comparison: Comparison) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "detector": [r.detector for r in comparison.rows],
            "fake probability": [r.fake_prob for r in comparison.rows],
            "face": [f"face {r.face}" for r in comparison.rows],
        }
    )


def comparison_gallery(comparison: Comparison, pixels: np.ndarray) -> list[tuple[np.ndarray, str]]:
    """One image per explained detector: every face's heat-map over the whole image."""
    by_detector: dict[str, list[Heatmap]] = {}
    for hm in comparison.heatmaps:
        by_detector.setdefault(hm.detector, []).append(hm)
    return [
        (overlay(pixels, maps), f"{name}: {METHOD_LABELS.get(maps[0].method, maps[0].method)}")
        for name, maps in by_detector.items()
    ]


def no_heatmap_note(detectors: Mapping[str, Detector]) -> str:
    """A line naming the detectors the gallery has no heat-map from (they declare no explanation method)."""
    names = [n for n, d in detectors.items() if not explain_methods(d)]
    if not names:
        return ""
    return ("\n\nNo heat-map from " + ", ".join(f"`{html.escape(n)}`" for n in names)
            + ": it reads no pixel map it could point at (its model card says what it reads).")


def build_compare_tab(
    *, available: Mapping[str, Detector], unavailable: Mapping[str, str], settings: Settings, read_upload: ReadUpload
) -> None:
    """Lay out the Compare tab's content inside the current `gr.Tab` and wire `api_name="compare"`."""
    left_out = "".join(f"\n- `{html.escape(k)}`: {html.escape(v)}" for k, v in unavailable.items())
    gr.Markdown(COMPARE_INTRO + (f"\n\n**Unavailable detectors:**{left_out}" if left_out else ""))
    with gr.Row():
        with gr.Column():
            image_in = gr.Image(
                sources=["upload", "clipboard"], type="filepath", label="Image", elem_id="compare-image"
            )
            heat = gr.Checkbox(value=True, label="Heat-maps", info=EXPLAIN_INFO)
            button = gr.Button("Compare all detectors", variant="primary", interactive=bool(available))
        with gr.Column():
            bars = gr.BarPlot(x="detector", y="fake probability", color="face", y_lim=[0, 1],
                              label="Fake probability by detector")
            summary = gr.Markdown(elem_id="compare-summary")
    table = gr.Dataframe(
        headers=COMPARE_HEADERS, label="Every detector on every face", interactive=False, elem_id="compare-table"
    )
    gr.Markdown(key(["fake probability", "threshold"]), elem_classes="table-key")
    gallery = gr.Gallery(label="Heat-maps side by side", columns=max(1, len(available)), height="auto")
    verdict_json = gr.JSON(label="Verdict JSON with the comparison")

    def on_compare(payload: dict[str, Any] | None, heatmaps: bool = True) -> tuple[Any, ...]:
        if not available:
            reasons = "; ".join(f"{k}: {v}" for k, v in unavailable.items())
            raise gr.Error(f"Comparison is unavailable: {visible(reasons)}. The server's operator must make a detector "
                           "available (see the README, 'Models'); please try again later.", print_exception=False)
        path, data = read_upload(payload)
        if path is None and data is None:
            raise gr.Error("Upload an image first, then press Compare all detectors", print_exception=False)
        name = Path(path).name if path else "webcam image"
        image = decode_upload(path, data, settings, name)
        provenance = read_provenance(data if data is not None else path, max_bytes=settings.max_file_bytes,
                                     pixels=image.pixels)
        try:
            comparison = compare_image(
                image,
                detectors=list(available.values()),
                settings=settings,
                unavailable=unavailable,
                explain=bool(heatmaps),
                provenance=provenance,
            )
        except UdfdError as e:
            raise gr.Error(failed(e), print_exception=False) from e
        return (
            comparison_table(comparison),
            comparison_bars(comparison),
            evidence_markdown(comparison.verdict.provenance) + "\n\n" + agreement_markdown(comparison)
            + (no_heatmap_note(available) if heatmaps else ""),
            comparison_gallery(comparison, image.pixels),
            comparison.to_dict(),
        )

    # preprocess=False, as in the Image tab: the upload reaches udfd.media untouched (clear errors on bad files).
    button.click(
        on_compare,
        inputs=[image_in, heat],
        outputs=[table, bars, summary, gallery, verdict_json],
        api_name="compare",
        preprocess=False,
    )
