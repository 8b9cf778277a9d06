"""The Image tab: analyse one uploaded image, draw the verdict, the per-face table, notes and explanations."""

from __future__ import annotations

import dataclasses
import html
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from udfd.catalog import describe
from udfd.config import PROJECT_ROOT, Settings
from udfd.detectors.base import Detector
from udfd.errors import MediaError, UdfdError
from udfd.faces import detect_faces, verdict_boxes
from udfd.heatmaps import colorize, fft_error_spectrum
from udfd.loader import current_detector, warm_up
from udfd.media import decode_image, image_limits, read_image
from udfd.pipeline import analyze_image, load_detectors
from udfd.plain import sentence
from udfd.provenance import read_provenance
from udfd.types import Heatmap, Verdict
from udfd.ui.about import build_about
from udfd.ui.compare import explanation_views, method_dropdown, method_update
from udfd.ui.draw import draw_verdict
from udfd.ui.evidence import evidence_markdown
from udfd.ui.feedback import feedback_row
from udfd.ui.glossary import key
from udfd.ui.public import failed, unreadable, visible
from udfd.ui.report import FileFacts, gather, write_report
from udfd.ui.uploads import read_upload

log = logging.getLogger("udfd.app")

# Plain words (the Verdict JSON keeps fake_prob, uncertain); udfd/ui/glossary.py explains them on hover.
TABLE_HEADERS = ["face", "box (x0, y0, x1, y1)", "scores", "verdict", "fake probability", "cannot tell", "face found"]
EXAMPLES = PROJECT_ROOT / "examples"  # FairFace photos and a face swap made by training/make_examples.py

def load_models(settings: Settings) -> tuple[dict[str, Detector], dict[str, str]]:
    """Load and warm up every configured detector: (available by name, unavailable name -> reason).

    The detectors in `settings.detectors` come first, so the first available one is the default choice.
    """
    names = list(dict.fromkeys([*settings.detectors, *settings.models]))
    available: dict[str, Detector] = {}
    unavailable: dict[str, str] = {}
    for name in names:
        try:
            det = load_detectors(settings, [name])[0]
            warm_up(det)
            available[name] = det
        except UdfdError as e:
            log.warning("detector %s unavailable: %s", name, e)
            unavailable[name] = str(e)
    try:
        detect_faces(np.zeros((64, 64, 3), np.uint8), settings.faces)  # creates the face-detector graphs
    except UdfdError as e:  # an unknown face backend or a missing YuNet file makes every detector unusable
        log.error("face detection unavailable: %s", e)
        unavailable |= {name: f"face detection unavailable: {e}" for name in available}
        available = {}
    return available, unavailable


def analyze(
    image_path: str | None,
    settings: Settings,
    detectors: Sequence[Detector] | None = None,
    *,
    data: bytes | None = None,
    explain: str | None = None,
) -> tuple[Any, ...]:
    """Analyse one image file (or raw `data`) -> (annotated image, overall label, per-face table, Verdict JSON,
    notes, gallery views, plain-language sentence, report file). Gallery views: with `explain` (a method name or
    "auto") the heat-maps of the first detector, then the reconstruction view of detectors that reconstruct their
    input. The sentence says what the verdict means (udfd.plain); the report is a self-contained HTML evidence
    report (udfd/ui/report.py: image, crops and heat-maps, scores, provenance, models, file hash) to download and
    attach to a fact-check.

    Every failure surfaces as a `gr.Error` with a message for the user, never a traceback.
    """
    if image_path is None and data is None:
        raise gr.Error("Upload an image first (or click one of the examples under the upload box)",
                       print_exception=False)
    name = Path(image_path).name if image_path else "webcam image"
    try:
        if data is not None:
            image = decode_image(data, name=name, **image_limits(settings))
        else:
            image = read_image(image_path, max_file_bytes=settings.max_file_bytes, **image_limits(settings))
        # What the file itself says (C2PA, watermark, metadata), read from the upload, not from the pixels.
        provenance = read_provenance(data if data is not None else image_path, max_bytes=settings.max_file_bytes,
                                     pixels=image.pixels)
        # Report the file by its own name, not by the server's temporary path.
        verdict = analyze_image(dataclasses.replace(image, source=name), settings=settings, detectors=detectors,
                                provenance=provenance)
        dets = list(detectors or load_detectors(settings))
        explained = dets[0] if explain else None
        heatmaps: list[Heatmap] = []
        views = explanation_views(explained, image.pixels, verdict, explain, out=heatmaps) \
            if explained is not None else []
    except MediaError as e:
        raise gr.Error(unreadable(name, e.reason), print_exception=False) from e
    except UdfdError as e:
        log.warning("analysis of %s failed: %s", name, e)
        raise gr.Error(failed(e), print_exception=False) from e
    thresholds = {d.name: d.threshold for d in dets}
    said = sentence(verdict, thresholds=thresholds, heatmaps=tuple(heatmaps))
    return (
        draw_verdict(image.pixels, verdict),
        verdict.overall.text,
        face_table(verdict),
        verdict.to_dict(),
        notes_markdown(verdict) + "\n\n" + evidence_markdown(verdict.provenance),
        views + reconstruction_views(detectors[0] if detectors else None, image.pixels, verdict),
        f"### {html.escape(said)}",
        _report(verdict, image, dets, said, heatmaps, size=len(data) if data is not None else None,
                path=image_path, method=None if explain in (None, "", "auto") else explain),
    )


def _report(verdict: Verdict, image: Any, dets: list[Detector], said: str, heatmaps: list[Heatmap], *,
            size: int | None, path: str | None, method: str | None) -> str | None:
    """The evidence report's file (udfd/ui/report.py); None, logged, when it cannot be written (the verdict stands)."""
    try:
        size = size if size is not None else Path(path or "").stat().st_size
        inputs = gather(verdict, image.pixels, dets[0] if dets else None, said=said,
                        detectors=[describe(d.name, d) for d in dets], when=datetime.now(UTC), heatmaps=heatmaps,
                        method=method, file=FileFacts(name=verdict.file, size_bytes=size, sha256=image.sha256))
        return write_report(inputs)
    except OSError as e:
        log.error("the evidence report for %s could not be written: %s", verdict.file, e)
        return None


def reconstruction_views(detector: Detector | None, pixels: np.ndarray, verdict: Verdict) -> list[tuple[Any, str]]:
    """For detectors that reconstruct their input (anomaly detectors): the most-fake face, its reconstruction,
    the per-pixel error map and the centred FFT amplitude of the error. Empty for every other detector."""
    if detector is None or not hasattr(detector, "reconstruct") or not hasattr(detector, "error_map"):
        return []
    import cv2

    boxes = verdict_boxes(verdict, pixels)
    k = max(range(len(verdict.faces)), key=lambda i: verdict.faces[i].fake_prob)
    x0, y0, x1, y1 = boxes[k]
    batch = detector.preprocess([np.ascontiguousarray(pixels[y0:y1, x0:x1])])
    error = detector.error_map(batch, relative=True)[0]

    reconstruction = detector.reconstruct(batch)[0]
    side = reconstruction.shape[0]
    crop = cv2.resize(np.ascontiguousarray(pixels[y0:y1, x0:x1]), (side, side), interpolation=cv2.INTER_AREA)
    return [(crop, "face (model input)"), (reconstruction, "reconstruction"),
            (colorize(error), "reconstruction error (relative)"), (colorize(fft_error_spectrum(error)), "FFT of the error")]


def face_table(verdict: Verdict) -> dict[str, Any]:
    rows = [
        [
            i,
            ", ".join(str(v) for v in face.box),
            ", ".join(f"{det}: {p:.4f}" for det, p in face.scores.items())
            + (" (" + ", ".join(f"{m} {p:.3f}" for m, p in face.members.items()) + ")" if face.members else ""),
            face.label,
            round(face.fake_prob, 4),
            face.uncertain,
            face.face_found,
        ]
        for i, face in enumerate(verdict.faces, start=1)
    ]
    return {"headers": TABLE_HEADERS, "data": rows}


def notes_markdown(verdict: Verdict) -> str:
    versions = ", ".join(f"`{name}` {version}" for name, version in verdict.model_versions.items())
    notes = "; ".join(verdict.notes) or f"{len(verdict.faces)} face(s) found"
    return f"**Notes:** {notes}. **Models:** {versions}."


def build_image_tab(settings: Settings, available: dict[str, Detector], unavailable: dict[str, str],
                    video_only: set[str]) -> Any:
    """The Image tab's controls and callbacks (inside an open `gr.Tab`); returns the flagging callback."""
    nothing = "; ".join(f"{k}: {v}" for k, v in unavailable.items()) if not available else ""

    def on_analyze(
        payload: dict[str, Any] | None, detector: str | None, explain: bool = False, method: str | None = None
    ) -> tuple[Any, ...]:
        if not available:
            raise gr.Error(f"Analysis is unavailable: {visible(nothing)}. The server's operator must make a detector "
                           "available (see the README, 'Models'); please try again later.", print_exception=False)
        name = detector or next(iter(available))
        if name not in available:
            reason = unavailable.get(name, "it scores videos only (use the Video tab)" if name in video_only
                                     else f"unknown detector; choose one of {sorted(available)}")
            raise gr.Error(f"Detector {visible(name)} is unavailable: {visible(reason)}. Choose another detector.",
                           print_exception=False)
        path, data = payload_file(payload, max_bytes=settings.max_file_bytes)
        return analyze(path, settings, [current_detector(name, available[name], settings=settings)], data=data,
                       explain=(method or "auto") if explain else None)

    infos = {name: describe(name, det, configured=settings.models.get(name, "")) for name, det in available.items()}
    with gr.Row():
        with gr.Column():
            image_in = gr.Image(sources=["upload", "webcam", "clipboard"], type="filepath", label="Image",
                                elem_id="image-in")
            examples = gr.Column(elem_id="examples")  # filled below, once the outputs exist: right under the upload
            choice = gr.Dropdown(
                choices=[(infos[n].title, n) for n in available], value=next(iter(available), None),
                label="Detector", info="The first one is the recommended default; see 'About the detectors'.",
                elem_id="detector",
            )
            explain_box = gr.Checkbox(value=False, label="Explain (heat-maps; slower)")
            method = method_dropdown(next(iter(available.values()), None))
            choice.change(lambda n: method_update(available.get(n)), inputs=choice, outputs=method,
                          api_visibility="private")
            button = gr.Button("Analyse", variant="primary", interactive=bool(available))
        with gr.Column():
            said = gr.Markdown(elem_id="verdict-sentence")  # the plain-language verdict comes first
            annotated = gr.Image(type="numpy", format="png", label="Faces found (box colour and text: the verdict)",
                                 interactive=False, elem_id="annotated",
                                 alt_text="The analysed image with a box around each face; the words on each box "
                                 "give its verdict and fake probability (also in the table below)")
            overall = gr.Label(label="Overall verdict (at the detector's threshold; each face's fake probability "
                               "is in the table)")
            report = gr.File(label="Evidence report (one HTML page with the image, scores and file hash, to attach "
                             "to a fact-check)", interactive=False, elem_id="report")
    table = gr.Dataframe(headers=TABLE_HEADERS, label="Per face", interactive=False, elem_id="face-table")
    gr.Markdown(key(["box", "scores", "fake probability", "threshold", "cannot tell", "face found"]),
                elem_classes="table-key", elem_id="face-table-key")
    notes = gr.Markdown()
    recon = gr.Gallery(label="Explanation (heat-maps when 'Explain' is on) and reconstruction view "
                       "(anomaly detectors such as ocvae)", columns=4, height="auto")
    with gr.Accordion("Verdict JSON", open=False):
        verdict_json = gr.JSON(label="Verdict JSON")
    with gr.Accordion("About the detectors", open=False):
        build_about(infos, available, unavailable)
    outputs = [annotated, overall, table, verdict_json, notes, recon, said, report]
    # preprocess=False: the upload reaches udfd.media untouched, so that bad files get udfd's clear
    # errors (Gradio's own preprocessing would open them with every Pillow plugin and fail opaquely).
    analysis = button.click(
        on_analyze,
        inputs=[image_in, choice, explain_box, method],
        outputs=outputs,
        api_name="analyze_image",
        preprocess=False,
        concurrency_limit=settings.concurrency,
    )
    # A new image (an upload or an example's click) cancels an analysis still running on the previous one:
    # otherwise its late answer replaced the example's, beside the example's picture (seen on a loaded machine).
    image_in.change(None, None, None, cancels=[analysis], queue=False, api_visibility="private")
    with examples:
        example_tab(image_in, outputs, settings, available)
    flagging = feedback_row(image_in, choice, settings, available)  # flag buttons + consent; api_name="flag"
    return flagging


def payload_file(payload: Any, *, max_bytes: int = Settings.max_file_bytes) -> tuple[str | None, bytes | None]:
    """The uploaded file's path (only this server's uploads), or the bytes of an inline `data:` URL (webcam
    snapshots may come that way), refused before decoding when larger than `max_bytes`. See udfd/ui/uploads.py."""
    return read_upload(payload, max_bytes=max_bytes)


def example_tab(image_in: Any, outputs: list[Any], settings: Settings, available: dict[str, Detector]) -> None:
    """Examples analysed once at start-up with the default detector, so that a click answers at once. The click
    handler only looks up these results by file name: it never opens a path sent by a client."""
    files = sorted(p for p in EXAMPLES.glob("*.jpg")) if EXAMPLES.is_dir() else []
    if not files or not available:
        return
    name, det = next(iter(available.items()))
    cached: dict[str, tuple[Any, ...]] = {}
    for f in files:
        try:
            cached[f.name] = analyze(str(f), settings, [det])
        except gr.Error as e:
            log.warning("example %s could not be analysed: %s", f.name, e)

    def show(path: str | None) -> tuple[Any, ...]:
        hit = cached.get(Path(path or "").name)
        if hit is None:
            raise gr.Error("Not one of the examples: click an example, or upload the image and press Analyse.",
                           print_exception=False)
        return hit

    gr.Examples(examples=[[str(f)] for f in files if f.name in cached], inputs=[image_in], outputs=outputs,
                fn=show, run_on_click=True, cache_examples=False, label=f"Examples (analysed with {name})",
                example_labels=[f.stem.replace("_", " ") for f in files if f.name in cached])
