"""UDFD Gradio app: assembles the Image | Video | Compare tabs of `udfd.ui`; nothing heavy runs at import.

Run `python app.py` (env: UDFD_HOST, UDFD_PORT / GRADIO_SERVER_PORT, UDFD_MODEL_<NAME>, see udfd/config.py).
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP: see README "Speed"

# Optional packages that a dependency imports whenever they are installed and that the server never uses (README
# "Memory and cold start"): Triton, the GPU kernel compiler (75 MB resident; torch._dynamo imports it, and
# torchvision imports torch._dynamo), as with torch's CPU wheel, which has no Triton: the app runs its models on the
# CPU; PyArrow (35 MB; pandas, imported by Gradio, imports it): only `udfd scan` writes Parquet. Kept out only when
# this file runs as the server, before Gradio is imported; a process that imports it (the tests) keeps them.
UNUSED_PACKAGES = ("triton", "pyarrow")
if __name__ == "__main__":
    from udfd.memory import keep_out

    keep_out(*UNUSED_PACKAGES)

import gradio as gr  # noqa: E402

from udfd.catalog import fallback_notice  # noqa: E402
from udfd.config import Settings  # noqa: E402
from udfd.detectors.base import Detector  # noqa: E402
from udfd.fast import set_threads  # noqa: E402
from udfd.memory import release_memory, trim_periodically, tune_malloc  # noqa: E402
from udfd.ui.compare import build_compare_tab  # noqa: E402
from udfd.ui.glossary import explain, glossary_markdown  # noqa: E402
from udfd.ui.image import analyze, build_image_tab, load_models, payload_file  # noqa: E402,F401  (analyze: API)
from udfd.ui.image_cache import install as install_atomic_image_cache  # noqa: E402
from udfd.ui.malformed import StrictBlocks  # noqa: E402
from udfd.ui.public import hide_paths  # noqa: E402
from udfd.ui.uploads import BodyLimit, inline_limit  # noqa: E402
from udfd.ui.video import build_video_tab  # noqa: E402

log = logging.getLogger("udfd.app")

# Gradio's cache (uploads, annotated images, heat-maps): every 30 min, files older than 1 h are deleted (and all of
# them when the server restarts), so that the folder does not grow without limit.
CACHE_CLEANUP = (1800, 3600)
_FRAMING = 1024 * 1024  # bytes a request may carry beyond its payload (multipart headers, JSON around the data)

ABOUT = """
**About.** UDFD is a research tool. Its probabilities are a model's opinion, not proof that an image was or
was not manipulated: detectors miss new generators and can be fooled by compression, filters or unusual faces.
A face is marked **cannot tell** (yellow) when its fake probability lies within the uncertain band around the
detector's threshold (`UDFD_UNCERTAIN_BAND`), when no face or only a tiny one was found, and optionally when
detectors disagree strongly (`UDFD_DISAGREEMENT`) or its score moves under a flip / mild JPEG (`UDFD_TTA=1`); the
Verdict JSON says which (`uncertain_reason`). Vermillion = likely fake, blue = no sign of fake; every box also says
it in words. A file's own provenance (C2PA, watermark, generator metadata) is evidence; its absence is not.
"""


def build_app(
    settings: Settings | None = None,
    *,
    available: dict[str, Detector] | None = None,
    unavailable: dict[str, str] | None = None,
) -> gr.Blocks:
    """Build the Blocks UI. Without `available` the configured detectors are loaded (see `load_models`)."""
    settings = settings or Settings.from_env()
    install_atomic_image_cache()  # identical answers served at once are never truncated (udfd/ui/image_cache.py)
    if available is None:
        available, unavailable = load_models(settings)
    # Visitors see model names and reasons without server paths (the log has them: see load_models).
    unavailable = {name: hide_paths(reason) for name, reason in (unavailable or {}).items()}
    nothing = "; ".join(f"{k}: {v}" for k, v in unavailable.items()) if not available else ""
    video_only = {k for k, d in available.items() if d.modality != "image"}
    all_detectors, available = available, {k: d for k, d in available.items() if k not in video_only}

    # StrictBlocks: a malformed API request is refused with what was wrong, not Gradio's bare {"error": null}.
    with StrictBlocks(title="UDFD deepfake detector", delete_cache=CACHE_CLEANUP) as demo:
        gr.Markdown("# UDFD: deepfake detector for faces in images and videos")
        gr.Markdown(
            f"**Model unavailable, analysis is switched off:** {nothing}" if nothing else "", visible=bool(nothing)
        )
        served_from = fallback_notice(all_detectors)  # e.g. the Hub was unreachable at start-up
        gr.Markdown(served_from, visible=bool(served_from), elem_id="fallback-notice")
        with gr.Tab("Image"):
            flagging = build_image_tab(settings, available, unavailable, video_only)
        with gr.Tab("Video"):
            build_video_tab(settings, all_detectors, unavailable, flagging=flagging)
        with gr.Tab("Compare"):
            video_reason = dict.fromkeys(video_only, "scores videos only: see the Video tab")
            build_compare_tab(available=available, unavailable=unavailable | video_reason, settings=settings,
                              read_upload=lambda p: payload_file(p, max_bytes=settings.max_file_bytes))
        gr.Markdown(explain(ABOUT))  # its jargon explained on hover, and all of it in the accordion below
        with gr.Accordion("What the words mean", open=False, elem_id="glossary"):
            gr.Markdown(glossary_markdown())
    return demo


def upload_limit(settings: Settings) -> int:
    """The largest upload the server accepts: the video limit or the image limit, whichever is larger."""
    return max(settings.max_file_bytes, settings.video.max_file_bytes)


# Gradio keeps the last state of this many sessions in memory (default 10,000); every API call without a session is a
# new one, and each held ~0.2 MB here (the server crept by 190 MB per 1,000 requests). A visitor's Video tab state
# (what the feedback buttons flag) survives the next SESSION_CAPACITY sessions.
SESSION_CAPACITY = 200


def launch_options(settings: Settings) -> dict[str, Any]:
    """`demo.launch` keywords that bound what one request may send: uploads up to `upload_limit` (each handler
    then applies its own kind's limit), and request bodies up to that (uploads) or to the inline-data limit of
    images (every other request), plus 1 MB of framing."""
    from starlette.middleware import Middleware

    body = Middleware(BodyLimit, upload_bytes=upload_limit(settings) + _FRAMING,
                      other_bytes=inline_limit(settings.max_file_bytes) + _FRAMING)
    return {"max_file_size": upload_limit(settings), "app_kwargs": {"middleware": [body]},
            "state_session_capacity": SESSION_CAPACITY}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    env = os.environ
    parser = argparse.ArgumentParser(description="Run the UDFD Gradio app.")
    # GRADIO_SERVER_NAME: Hugging Face Spaces set it to 0.0.0.0.
    parser.add_argument("--host", default=env.get("UDFD_HOST") or env.get("GRADIO_SERVER_NAME") or "127.0.0.1",
                        help="default: $UDFD_HOST, $GRADIO_SERVER_NAME or 127.0.0.1")
    parser.add_argument(
        "--port",
        type=int,
        default=int(env.get("UDFD_PORT") or env.get("GRADIO_SERVER_PORT") or 7860),
        help="default: $UDFD_PORT, $GRADIO_SERVER_PORT or 7860",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    tune_malloc()  # before the models load: large buffers go back to the OS when freed (udfd/memory.py)
    trim_periodically()
    settings = Settings.from_env()
    set_threads(settings.threads)
    demo = build_app(settings)
    release_memory()  # what loading and the examples freed goes back before the first visitor (README "Memory")
    # Every endpoint runs at most `concurrency` requests at once; at most `queue_size` wait (UDFD_CONCURRENCY,
    # UDFD_QUEUE_SIZE). Bounded memory: one model copy per process, at most `concurrency` batches in flight.
    demo.queue(default_concurrency_limit=settings.concurrency, max_size=settings.queue_size)
    demo.launch(server_name=args.host, server_port=args.port, **launch_options(settings))


if __name__ == "__main__":
    main()
