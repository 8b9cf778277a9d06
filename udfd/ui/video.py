"""The app's Video tab: upload -> udfd.pipeline.run_video -> verdict per detector, score timeline, most
suspicious frames with face boxes, and the lip crops the lip_lstm detector saw.

Only drawing and Gradio wiring live here; every number comes from `udfd.pipeline`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
from PIL import Image as PILImage
from PIL import ImageDraw

from udfd.config import PROJECT_ROOT, Settings
from udfd.detectors.base import Detector
from udfd.errors import MediaError, UdfdError
from udfd.feedback.store import new_record
from udfd.pipeline import VideoAnalysis, run_video
from udfd.ui.evidence import evidence_markdown
from udfd.ui.feedback import CHOICES, StoreFlaggingCallback
from udfd.ui.glossary import key
from udfd.ui.public import failed, hide_paths, unreadable, visible
from udfd.ui.style import COLOURS, box_text
from udfd.ui.uploads import read_upload

log = logging.getLogger(__name__)

# Plain words (the Verdict JSON keeps fake_prob); udfd/ui/glossary.py explains them on hover.
TABLE_HEADERS = ["detector", "version", "video fake probability", "verdict", "frame mean", "frame max", "kind"]
VIDEO_WHAT_IS_STORED = (
    "**Feedback.** Tell us whether the video's verdict is right. We store your answer with the SHA-256 hash of the "
    "video, the models' scores and versions, and our protector's check of the answer. One face crop (the decisive "
    "face, middle frame of its track) is stored **only if you tick the box**, as PNG, to retrain the detector; "
    "the video itself is never stored."
)
GALLERY_FRAMES = 6
EXAMPLE_CLIPS = PROJECT_ROOT / "examples"  # clips made by training/make_examples.py from the example photos
LIP_TILES = 16


def video_table(analysis: VideoAnalysis, detectors: Sequence[Detector], band: float) -> dict[str, Any]:
    """One row per detector: its video-level score (most-fake track) and verdict at its own threshold."""
    rows = []
    summary = analysis.verdict.video
    for det in detectors:
        scores = summary.video_scores.get(det.name, {})
        score = scores.get("score")
        if score is None:
            verdict = "not applied (no face)"
        else:
            verdict = "fake" if score >= det.threshold else "real"
            verdict += " (uncertain)" if abs(score - det.threshold) < band else ""
        rows.append([det.name, det.version, None if score is None else round(score, 4), verdict,
                     _round(scores.get("frame_mean")), _round(scores.get("frame_max")),
                     "lip sequence per face track" if det.modality == "video" else "per-frame faces"])
    return {"headers": TABLE_HEADERS, "data": rows}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def timeline_figure(analysis: VideoAnalysis) -> Any:
    """Per-frame scores of the image detectors over the used frames, motion of every decoded frame below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = analysis.verdict.video
    fps = summary.fps or 1.0
    seconds = np.asarray(summary.frames_used) / fps
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 4.2), sharex=True, height_ratios=(3, 1))
    for name, values in summary.frame_scores.items():
        ys = np.asarray([np.nan if v is None else v for v in values], float)
        top.plot(seconds, ys, marker="o", markersize=3, linewidth=1.2, label=name)
    for name, scores in summary.video_scores.items():
        if name not in summary.frame_scores and "score" in scores:  # sequence detectors: one value per video
            top.axhline(scores["score"], linestyle="--", linewidth=1.2, label=f"{name} (whole track)", color="k")
    top.set_ylim(0, 1)
    top.set_ylabel("fake probability")
    top.legend(loc="upper right", fontsize=8)
    top.grid(alpha=0.3)
    all_t = np.arange(len(analysis.sample.magnitudes)) / fps
    bottom.plot(all_t, analysis.sample.magnitudes, color="0.5", linewidth=0.8)
    bottom.scatter(seconds, [analysis.sample.magnitudes[i] for i in summary.frames_used], s=6, color="C3",
                   label=f"used frames ({summary.selection})", zorder=3)
    bottom.set_ylabel("motion")
    bottom.set_xlabel("time (s)" if summary.fps else "frame")
    bottom.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    plt.close(fig)
    return fig


def suspicious_frames(analysis: VideoAnalysis, primary: str) -> list[tuple[np.ndarray, str]]:
    """The used frames with the highest per-frame score (first image detector), face tracks boxed."""
    summary = analysis.verdict.video
    name = primary if primary in summary.frame_scores else next(iter(summary.frame_scores), None)
    values = summary.frame_scores.get(name, ()) if name else ()
    order = [t for t in np.argsort([-(v if v is not None else -1) for v in values], kind="stable")][:GALLERY_FRAMES]
    if not order:
        order = list(range(min(GALLERY_FRAMES, len(analysis.sample.frames))))
    out = []
    for t in sorted(order):
        canvas = PILImage.fromarray(analysis.sample.frames[t].copy())
        draw = ImageDraw.Draw(canvas)
        width = max(2, round(min(canvas.size) / 200))
        for k, track in enumerate(analysis.tracks):
            for tt, j in track:
                if tt == t and analysis.faces[t][j].face_found:
                    face = analysis.verdict.faces[k]
                    colour = COLOURS["uncertain" if face.uncertain else face.label]
                    x0, y0, x1, y1 = analysis.faces[t][j].box
                    draw.rectangle((x0, y0, x1 - 1, y1 - 1), outline=colour, width=width)
                    draw.text((x0 + width, y0 + width), box_text(f"face {k + 1}", face.label, face.fake_prob,
                                                                  face.uncertain), fill=colour)
        frame_no = summary.frames_used[t]
        score = f", {name} {values[t]:.2f}" if name and values[t] is not None else ""
        seconds = f" ({frame_no / summary.fps:.1f} s)" if summary.fps else ""
        out.append((np.asarray(canvas), f"frame {frame_no}{seconds}{score}"))
    return out


def lip_montage(analysis: VideoAnalysis) -> np.ndarray | None:
    """Up to 16 of the main track's lip crops (the lip_lstm input), in time order, as one image."""
    lips = next((seq for seq in analysis.lips if seq is not None), None)
    if lips is None:
        return None
    pick = np.unique(np.linspace(0, len(lips) - 1, min(LIP_TILES, len(lips))).astype(int))
    tiles = [lips[i] for i in pick]
    cols = 8
    rows = [np.concatenate(tiles[r:r + cols] + [np.zeros_like(tiles[0])] * max(0, cols - len(tiles[r:r + cols])), 1)
            for r in range(0, len(tiles), cols)]
    return np.concatenate(rows, 0)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def notes_markdown(analysis: VideoAnalysis) -> str:
    v = analysis.verdict
    s = v.video
    declared = f" of {s.frames_declared} declared" if s.frames_declared > s.frames_decoded else ""
    facts = (f"{_count(s.frames_decoded, 'frame')}{declared} decoded ({s.duration_s:.1f} s at {s.fps:.2f} fps), "
             f"{len(s.frames_used)} used ({s.selection.replace('_', ' ')}), {_count(len(v.faces), 'face track')}, "
             f"lips placed by landmarks in {_count(s.lips_found, 'crop')}")
    notes = "; ".join(v.notes)
    timing = ", ".join(f"{k} {ms / 1000:.1f} s" for k, ms in v.timings_ms.items())
    return f"**Video:** {facts}.{' **Notes:** ' + notes + '.' if notes else ''} **Time:** {timing}."


def video_payload_path(payload: Any, *, max_bytes: int) -> str | None:
    """The uploaded video's path: only this server's uploads (udfd/ui/uploads.py); no inline data for videos."""
    return read_upload(payload, max_bytes=max_bytes, inline=False)[0]


def build_video_tab(settings: Settings, available: dict[str, Detector], unavailable: dict[str, str], *,
                    flagging: StoreFlaggingCallback | None = None) -> None:
    """Add the Video tab's components and its `analyze_video` endpoint to the enclosing Blocks; with `flagging`,
    the same feedback buttons as the Image tab (`api_name="flag_video"`)."""
    usable = list(available)
    wanted = [n for n in settings.video_detectors if n in available]
    default_primary = wanted[0] if wanted else next(iter(usable), None)
    missing = {n: unavailable[n] for n in settings.video_detectors if n in unavailable}

    def on_analyze(payload: Any, primary: str | None, others: list[str] | None,
                   progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:  # noqa: B008 (Gradio's idiom)
        path = video_payload_path(payload, max_bytes=settings.video.max_file_bytes)
        if not path:
            raise gr.Error("Upload a video first", print_exception=False)
        primary = primary or default_primary
        if primary not in available:
            why = visible(unavailable.get(primary, "unknown"))
            raise gr.Error(f"Detector {visible(primary)} is unavailable: {why}. Choose another detector.",
                           print_exception=False)
        dets = [available[primary]] + [available[n] for n in (others or []) if n in available and n != primary]
        analysis = run(path, settings, dets, progress=lambda f, what: progress(f, desc=what))
        return (*outputs(analysis, settings, dets), last_verdict(analysis, dets[0]))

    with gr.Row():
        with gr.Column():
            video_in = gr.Video(sources=["upload"], label="Video (mp4, avi, mov, webm, mkv)", elem_id="video-input")
            examples = gr.Column(elem_id="video-examples")  # filled below, once the outputs exist
            primary = gr.Dropdown(choices=usable, value=default_primary, label="Detector that decides",
                                  info=("Unavailable: " + ", ".join(f"{k} ({v})" for k, v in missing.items()))
                                  if missing else None)
            others = gr.CheckboxGroup(choices=usable, value=[n for n in wanted[1:]], label="Also show")
            button = gr.Button("Analyse video", variant="primary", interactive=bool(usable))
        with gr.Column():
            overall = gr.Label(label="Video verdict (most-fake face track, at the deciding detector's threshold)",
                             elem_id="video-verdict")
            table = gr.Dataframe(headers=TABLE_HEADERS, label="Per detector", interactive=False)
            gr.Markdown(key(["fake probability", "threshold", "cannot tell", "face track", "frame mean",
                             "frame max"]), elem_classes="table-key")
    notes = gr.Markdown(elem_id="video-notes")
    timeline = gr.Plot(label="Scores over time (used frames) and motion")
    gallery = gr.Gallery(label="Most suspicious frames", columns=3, height="auto")
    lips = gr.Image(label="Lip crops fed to lip_lstm (main face track)", interactive=False, format="png")
    verdict_json = gr.JSON(label="Verdict JSON")
    state = gr.State(None)  # the last verdict of this visitor, kept on the server for the feedback buttons
    tab_outputs = [overall, table, timeline, gallery, lips, verdict_json, notes, state]
    button.click(on_analyze, inputs=[video_in, primary, others], outputs=tab_outputs,
                 api_name="analyze_video", preprocess=False)
    if default_primary is not None:
        with examples:
            example_clips(video_in, tab_outputs, settings,
                          [available[default_primary]] + [available[n] for n in wanted if n != default_primary])
    if flagging is not None:
        _flag_row(flagging, state, available)


def example_clips(video_in: Any, tab_outputs: list[Any], settings: Settings,
                  dets: Sequence[Detector]) -> gr.Examples | None:
    """The example clips, analysed once at start-up with the default detectors (as the Image tab's examples), so
    that a click answers at once. The click handler only looks the result up by file name: it never opens a path
    sent by a client. A clip that cannot be analysed is left out, logged; None when no clip is left."""
    files = sorted(EXAMPLE_CLIPS.glob("*.mp4")) if EXAMPLE_CLIPS.is_dir() else []
    if not files:
        return None
    cached: dict[str, tuple[Any, ...]] = {}
    t0 = time.perf_counter()
    for f in files:
        try:
            analysis = run(str(f), settings, dets)
            cached[f.name] = (*outputs(analysis, settings, dets), last_verdict(analysis, dets[0]))
        except gr.Error as e:
            log.warning("example clip %s could not be analysed: %s", f.name, e)
    log.info("video examples analysed in %.1f s", time.perf_counter() - t0)

    def show(path: str | None) -> tuple[Any, ...]:
        hit = cached.get(Path(path or "").name)
        if hit is None:
            raise gr.Error("Not one of the example clips: click an example, or upload the video and press Analyse "
                           "video.", print_exception=False)
        return hit

    kept = [f for f in files if f.name in cached]
    if not kept:
        return None
    return gr.Examples(examples=[[str(f)] for f in kept], inputs=[video_in], outputs=tab_outputs, fn=show,
                run_on_click=True, cache_examples=False, label=f"Example clips (analysed with {dets[0].name})",
                example_labels=[f.stem.replace("_", " ") for f in kept])


def last_verdict(analysis: VideoAnalysis, decider: Detector) -> dict[str, Any]:
    """What a flag on this video records: hashes, scores and the decisive face (the most-fake track's
    middle frame), which is what the protector screens and what is stored with consent."""
    v = analysis.verdict
    k = next(i for i, f in enumerate(v.faces) if f.fake_prob == v.overall.fake_prob)
    t, j = analysis.tracks[k][len(analysis.tracks[k]) // 2]
    return {"sha256": analysis.sample.sha256, "detector": decider.name, "revision": decider.version,
            "scores": dict(v.faces[k].scores), "predicted": v.overall.label, "face": analysis.faces[t][j].pixels}


def screening_detector(flagging: StoreFlaggingCallback, available: dict[str, Detector], decider: str) -> Detector:
    """The detector whose features screen a video flag. The protector judges the face itself from the hidden
    states of the detector it was trained on (an image detector): that one when it is loaded, whichever detector
    decided the video; otherwise the decider (the flag is then stored unscreened, with the reason)."""
    reader = flagging.protector.config.detector if flagging.protector is not None else decider
    return available.get(reader, available[decider])


def _flag_row(flagging: StoreFlaggingCallback, state: gr.State, available: dict[str, Detector]) -> None:
    gr.Markdown(VIDEO_WHAT_IS_STORED)
    with gr.Row():
        buttons = {choice: gr.Button(choice, size="sm") for choice in CHOICES}
        consent = gr.Checkbox(value=False, label="Store the decisive face crop to improve the detector (optional)")
    message = gr.Markdown()

    def on_flag(last: dict[str, Any] | None, choice: str, agreed: bool, request: gr.Request) -> str:
        flagging.admit(request)  # the per-client rate limit, before any work
        if not last:
            raise gr.Error("Analyse a video first", print_exception=False)
        if choice not in CHOICES:
            raise gr.Error(f"unknown feedback {choice!r}; use one of {list(CHOICES)}", print_exception=False)
        record = new_record(media_sha256=last["sha256"], model=last["detector"], revision=last["revision"],
                            scores=last["scores"], predicted_label=last["predicted"],
                            user_label=CHOICES[choice] or last["predicted"], consent=bool(agreed))
        screen_with = screening_detector(flagging, available, last["detector"])
        stored = flagging.flag_face(record, screen_with, last["face"], consent=bool(agreed))
        kept = "the face crop was stored" if stored.image_file else "only scores and the video hash were stored"
        return (f"Thank you: recorded as **{stored.user_label}** (model said {stored.predicted_label}); "
                f"protector: {stored.protector_decision} — {hide_paths(stored.reason)}; {kept}.")

    for choice, button in buttons.items():
        button.click(_bind(on_flag, choice), inputs=[state, consent], outputs=message, api_visibility="private")
    choice_in = gr.Radio(list(CHOICES), value="Correct", visible=False, label="feedback")
    gr.Button(visible=False).click(on_flag, inputs=[state, choice_in, consent], outputs=message,
                                   api_name="flag_video")


def _bind(on_flag: Callable[..., str], choice: str) -> Callable[..., str]:
    """A button's callback (a real function, so that Gradio injects `request` by its type hint)."""

    def click(last: dict[str, Any] | None, agreed: bool, request: gr.Request) -> str:
        return on_flag(last, choice, agreed, request)

    return click


def analyze(path: str, settings: Settings, detectors: Sequence[Detector], *,
            progress: Callable[[float, str], None] | None = None) -> tuple[Any, ...]:
    """Run the video pipeline and turn the result into the tab's outputs; errors become gr.Error."""
    return outputs(run(path, settings, detectors, progress=progress), settings, detectors)


def run(path: str, settings: Settings, detectors: Sequence[Detector], *,
        progress: Callable[[float, str], None] | None = None) -> VideoAnalysis:
    name = Path(path).name
    try:
        return run_video(path, settings=settings, detectors=detectors, progress=progress)
    except MediaError as e:
        raise gr.Error(unreadable(name, e.reason, video=True), print_exception=False) from e
    except UdfdError as e:
        raise gr.Error(failed(e), print_exception=False) from e


def outputs(analysis: VideoAnalysis, settings: Settings, detectors: Sequence[Detector]) -> tuple[Any, ...]:
    v = analysis.verdict
    return (
        v.overall.text,
        video_table(analysis, detectors, settings.uncertain_band),
        timeline_figure(analysis),
        suspicious_frames(analysis, detectors[0].name),
        lip_montage(analysis),
        v.to_dict(),
        notes_markdown(analysis) + "\n\n" + evidence_markdown(v.provenance),
    )
