"""Flagging in the app: a `gr.FlaggingCallback` over the feedback store and the row of flag buttons.

The flag is recomputed on the server from the uploaded image (verdict, scores, protector features), so an
API caller cannot store scores the model never gave. `feedback_row(...)` adds the buttons to the current
Blocks context; the same work is callable as `api_name="flag"`:

    client.predict(handle_file(path), "vit", "Wrong — it is real", False, api_name="/flag")
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from udfd.config import Settings
from udfd.detectors.base import Detector
from udfd.errors import MediaError, UdfdError
from udfd.faces import verdict_boxes
from udfd.feedback.protector import Protector, load_protector
from udfd.feedback.ratelimit import RateLimiter
from udfd.feedback.store import FeedbackStore, FeedbackStoreError, StoreStatus, new_record, open_store
from udfd.loader import current_detector
from udfd.media import decode_image, image_limits, read_image
from udfd.pipeline import analyze_image
from udfd.types import FeedbackRecord, Label
from udfd.ui.public import failed, hide_paths, unreadable
from udfd.ui.uploads import decode_data_url, read_upload

log = logging.getLogger(__name__)

CHOICES: dict[str, Label | None] = {"Correct": None, "Wrong — it is real": "real", "Wrong — it is fake": "fake"}
WHAT_IS_STORED = (
    "**Feedback.** Tell us whether the verdict is right. We store your answer with the SHA-256 hash of the "
    "image, the models' scores and versions, and our protector's check of the answer (flags are screened "
    "against deliberate mislabelling). The image itself is stored **only if you tick the box**, re-encoded "
    "as PNG without its file metadata, to retrain the detector; without consent only scores and hashes are kept."
)
CONSENT_LABEL = "Store this image to improve the detector (optional)"
STORE_FAILED = ("Your feedback could not be stored: the server cannot write its feedback store right now. "
                "Nothing was recorded; please try again later.")
FLAG_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")


class StoreFlaggingCallback(gr.FlaggingCallback):
    """Screens a flag with the protector and appends it to the feedback store.

    `flag_data` is `[image payload (FileData dict or path), detector name, consent]`; `flag_option` is one of
    `CHOICES`. `flag` returns the number of flags this process has stored; `flag_record` returns the record.
    """

    def __init__(self, settings: Settings, detectors: dict[str, Detector], *, store: FeedbackStore,
                 protector: Protector | None, protector_problem: str = "") -> None:
        self.settings, self.detectors, self.store = settings, detectors, store
        self.protector, self.protector_problem = protector, protector_problem
        self.count = 0
        self._count_lock = threading.Lock()
        self.limiter = RateLimiter(settings.feedback.flags_per_minute)

    def setup(self, components: Sequence[Any], flagging_dir: str) -> None:
        # The store's folder comes from Settings (UDFD_FEEDBACK_DIR); Gradio's flagging_dir is not used.
        self.components = list(components)

    def flag(self, flag_data: list[Any], flag_option: str | None = None, username: str | None = None) -> int:
        self.flag_record(flag_data, flag_option)
        return self.count

    def flag_record(self, flag_data: list[Any], flag_option: str | None, *, flag_id: str | None = None
                    ) -> FeedbackRecord:
        payload, detector_name, consent = (list(flag_data) + [None, None, False])[:3]
        if flag_option not in CHOICES:
            raise gr.Error(f"unknown feedback {flag_option!r}; use one of {list(CHOICES)}", print_exception=False)
        if not self.detectors:
            raise gr.Error("Feedback is unavailable: no detector is loaded, so nothing was recorded; please try again "
                           "later", print_exception=False)
        name = detector_name or next(iter(self.detectors))
        if name not in self.detectors:
            raise gr.Error(f"unknown detector {name!r}; choose one of {sorted(self.detectors)}", print_exception=False)
        det = current_detector(name, self.detectors[name], settings=self.settings)  # a promoted version
        image = _decode_payload(payload, self.settings)
        try:
            verdict = analyze_image(image, settings=self.settings, detectors=[det])
        except UdfdError as e:
            raise gr.Error(failed(e), print_exception=False) from e
        k = max(range(len(verdict.faces)), key=lambda i: verdict.faces[i].fake_prob)
        face = verdict.faces[k]
        predicted: Label = verdict.overall.label
        user_label = CHOICES[flag_option] or predicted
        record = new_record(media_sha256=image.sha256, model=name, revision=det.version, scores=face.scores,
                            predicted_label=predicted, user_label=user_label, consent=bool(consent), id=flag_id)
        record = self._screen(record, det, image.pixels, verdict_boxes(verdict, image.pixels)[k])
        return self.store_flag(record, image=image.pixels if consent else None)

    def flag_face(self, record: FeedbackRecord, det: Detector, face: np.ndarray, *, consent: bool) -> FeedbackRecord:
        """Screen and store a flag whose verdict was computed elsewhere (the Video tab: the decisive face)."""
        record = self._screen(record, det, face, (0, 0, face.shape[1], face.shape[0]))
        return self.store_flag(record, image=face if consent else None)

    def store_flag(self, record: FeedbackRecord, *, image: np.ndarray | None) -> FeedbackRecord:
        """Append to the store; a record whose id is already stored is not stored again (the stored one is
        returned). A store that cannot be written is a `gr.Error` for the visitor; the path goes to the log."""
        try:
            stored = self.store.append(record, image=image)
        except FeedbackStoreError as e:
            log.error("flag %s lost: %s", record.id, e)
            raise gr.Error(STORE_FAILED, print_exception=False) from e
        if stored.time != record.time:
            log.info("flag %s was already stored: not stored again", record.id)
            return stored
        with self._count_lock:
            self.count += 1
        log.info("flag %s: %s -> %s (%s)", stored.id, record.predicted_label, record.user_label,
                 stored.protector_decision)
        return stored

    def admit(self, request: gr.Request | None, flag_id: str | None = None) -> str | None:
        """Before any work on an HTTP flag: the per-client rate limit, and the client's idempotency key (None
        when it sent none). Refusals are `gr.Error`s that say why."""
        client = getattr(getattr(request, "client", None), "host", None) or "unknown"
        if not self.limiter.allow(client):
            wait = self.limiter.retry_after(client)
            log.warning("flag from %s refused: more than %g flags per minute", client, self.limiter.rate * 60)
            raise gr.Error(f"too many flags from this address: at most {self.limiter.rate * 60:g} per minute; "
                           f"try again in {max(1, round(wait))} s", print_exception=False)
        if not flag_id:
            return None
        if not isinstance(flag_id, str) or not FLAG_ID.fullmatch(flag_id):
            raise gr.Error("flag_id must be 8 to 64 letters, digits, '-' or '_': send one such as a UUID",
                           print_exception=False)
        return flag_id

    def _screen(self, record: FeedbackRecord, det: Detector, pixels: np.ndarray, box: tuple) -> FeedbackRecord:
        self._refresh_protector(det.version)
        if self.protector is None:
            return dataclasses.replace(record, reason=f"not screened: {self.protector_problem or 'no protector'}")
        x0, y0, x1, y1 = box
        low, high = det.features(det.preprocess([np.ascontiguousarray(pixels[y0:y1, x0:x1])]))
        problem = self.protector.accepts_detector(det.name, low.shape[1], high.shape[1], version=det.version)
        if problem:
            return dataclasses.replace(record, reason=f"not screened: {problem}")
        s = self.protector.screen(low, high, [record.user_label])[0]
        return dataclasses.replace(record, protector_decision=s.decision, protector_score=round(s.fake_prob, 6),
                                   reason=s.reason)


    def _refresh_protector(self, detector_version: str) -> None:
        """After a promotion the detector has a new version; load the protector again when it was retrained
        for that version too (otherwise flags are stored unscreened, with the reason)."""
        p = self.protector
        if p is None or not p.config.detector_version or p.config.detector_version == detector_version:
            return
        try:
            fresh = load_protector(self.settings.feedback.protector)
        except UdfdError as e:
            log.error("protector reload failed: %s", e)
            return
        if fresh.config.detector_version == detector_version:
            log.info("protector %s for %s loaded", fresh.version, detector_version)
            self.protector = fresh


def _decode_payload(payload: Any, settings: Settings):
    """The image to flag: raw bytes, a path, or a FileData payload (path or inline data URL). Paths are not
    checked here: the HTTP handler (`feedback_row`) lets only this server's uploads through (udfd/ui/uploads.py)."""
    if isinstance(payload, dict):
        url = payload.get("url") or ""
        inline = not payload.get("path") and isinstance(url, str) and url.startswith("data:")
        payload = decode_data_url(url, max_bytes=settings.max_file_bytes) if inline else payload.get("path")
    if isinstance(payload, bytes):
        return _guard(lambda: decode_image(payload, name="webcam image", **image_limits(settings)))
    if not payload:
        raise gr.Error("Upload and analyse an image first", print_exception=False)
    name = Path(str(payload)).name
    image = _guard(lambda: read_image(str(payload), max_file_bytes=settings.max_file_bytes, **image_limits(settings)))
    return dataclasses.replace(image, source=name)


def _guard(fn: Any) -> Any:
    try:
        return fn()
    except MediaError as e:
        raise gr.Error(unreadable(Path(e.file).name, e.reason), print_exception=False) from e


def make_callback(settings: Settings, detectors: dict[str, Detector], *,
                  hf_api: Any = None) -> tuple[StoreFlaggingCallback, StoreStatus]:
    """Open the store (and its Hub push when configured) and load the protector; problems are logged."""
    store, _scheduler, status = open_store(settings.feedback, hf_api=hf_api)
    protector, problem = None, ""
    try:
        protector = load_protector(settings.feedback.protector)
    except UdfdError as e:
        problem = f"protector unavailable ({e})"
        log.warning("flags will be stored unscreened: %s", problem)
    return StoreFlaggingCallback(settings, detectors, store=store, protector=protector,
                                 protector_problem=problem), status


def feedback_row(image: gr.components.Component, detector: gr.components.Component, settings: Settings,
                 detectors: dict[str, Detector], *, hf_api: Any = None) -> StoreFlaggingCallback:
    """Add the flag buttons, consent box and status to the current Blocks; register `api_name="flag"`."""
    callback, status = make_callback(settings, detectors, hf_api=hf_api)
    gr.Markdown(WHAT_IS_STORED)
    with gr.Row():
        buttons = {choice: gr.Button(choice, size="sm", interactive=bool(detectors)) for choice in CHOICES}
        consent = gr.Checkbox(value=False, label=CONSENT_LABEL)
    message = gr.Markdown()
    callback.setup([image, detector, consent], str(settings.feedback.dir))

    def on_flag(payload: Any, name: str | None, choice: str, agreed: bool, flag_id: str | None = None,
                request: gr.Request | None = None) -> dict[str, Any]:
        key = callback.admit(request, flag_id)  # rate limit, before any work
        path, data = read_upload(payload, max_bytes=settings.max_file_bytes)  # only this server's uploads
        duplicate = key is not None and _contains(callback.store, key)
        rec = callback.flag_record([data if data is not None else path, name, agreed], choice, flag_id=key)
        return {"id": rec.id, "user_label": rec.user_label, "predicted_label": rec.predicted_label,
                "protector_decision": rec.protector_decision, "protector_score": rec.protector_score,
                "reason": hide_paths(rec.reason), "image_stored": rec.image_file is not None, "already_stored": duplicate}

    def on_button(payload: Any, name: str | None, agreed: bool, choice: str, request: gr.Request | None) -> str:
        return _thanks(on_flag(payload, name, choice, agreed, request=request))

    for choice, button in buttons.items():
        button.click(_bind(on_button, choice), inputs=[image, detector, consent], outputs=message, preprocess=False,
                     api_visibility="private")
    # The API endpoints: the choice is an input here (hidden in the UI, where each button carries its own).
    # "flag_with_id" adds the caller's flag_id: the same id sent twice (a retry after a lost answer) is stored once.
    # (A separate endpoint: raw HTTP calls must send every input, so a fifth one on "flag" would break callers.)
    choice_in = gr.Radio(list(CHOICES), value="Correct", visible=False, label="feedback")
    id_in = gr.Textbox(value="", visible=False, label="flag_id")
    result = gr.JSON(visible=False)
    gr.Button(visible=False).click(on_flag, inputs=[image, detector, choice_in, consent], outputs=result,
                                   preprocess=False, api_name="flag")
    gr.Button(visible=False).click(on_flag, inputs=[image, detector, choice_in, consent, id_in], outputs=result,
                                   preprocess=False, api_name="flag_with_id")
    log.info("%s", status.message)
    return callback


def _bind(on_button: Any, choice: str) -> Any:
    """A button's callback: Gradio injects `request` by the type hint, so it must be a real function."""

    def click(payload: Any, name: str | None, agreed: bool, request: gr.Request) -> str:
        return on_button(payload, name, agreed, choice, request)

    return click


def _contains(store: FeedbackStore, record_id: str) -> bool:
    try:
        return store.contains(record_id)
    except FeedbackStoreError as e:
        log.error("%s", e)
        raise gr.Error(STORE_FAILED, print_exception=False) from e


def _thanks(r: dict[str, Any]) -> str:
    kept = "the image was stored" if r["image_stored"] else "only scores and the image hash were stored"
    return (f"Thank you: recorded as **{r['user_label']}** (model said {r['predicted_label']}); protector:"
            f" {r['protector_decision']} — {r['reason']}; {kept}.")
