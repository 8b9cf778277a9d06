"""The one rule for files that reach the app's handlers: only this server's own uploads are opened.

Handlers registered with `preprocess=False` receive the raw JSON a caller sent. A FileData's `path` is then
whatever the caller wrote, so it is accepted only when it resolves (symlinks followed) to a regular file inside
Gradio's upload folder; every other path gets the same message, so that answers never tell which server paths
exist. Inline `data:` URLs are measured before they are decoded, against the same byte limit as uploads.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import os
import stat
from typing import Any

import gradio as gr
from gradio.utils import get_upload_folder

log = logging.getLogger(__name__)

NOT_AN_UPLOAD = "the file is not an upload received by this server: upload it again"
_MEGABYTE = 1024 * 1024


def upload_folder() -> str:
    """Where Gradio stores uploads (GRADIO_TEMP_DIR, default <tmp>/gradio), symlinks resolved."""
    return os.path.realpath(get_upload_folder())


def uploaded_path(path: Any) -> str:
    """`path` resolved, if it is a regular file inside the upload folder; otherwise a `gr.Error` that says the
    same whatever the reason (missing, a folder, outside the folder), so that it reveals nothing."""
    real = os.path.realpath(path) if isinstance(path, str) and path and "\x00" not in path else ""
    root = upload_folder()
    try:
        ok = bool(real) and os.path.commonpath([real, root]) == root and real != root
        ok = ok and stat.S_ISREG(os.stat(real).st_mode)
    except (OSError, ValueError):
        ok = False
    if not ok:
        log.warning("refused a file path that is not an upload: %r", path)  # operators see the path; callers do not
        raise gr.Error(NOT_AN_UPLOAD, print_exception=False)
    return real


def inline_limit(max_bytes: int) -> int:
    """The longest base64 text that can decode to at most `max_bytes` bytes."""
    return 4 * math.ceil(max_bytes / 3)


def decoded_length(text: str) -> int:
    """How many bytes base64 `text` decodes to (valid text), computed from its length alone."""
    return len(text) // 4 * 3 - (text[-2:].count("=") if len(text) % 4 == 0 else 0)


def decode_data_url(url: str, *, max_bytes: int) -> bytes:
    """The bytes of a `data:...;base64,` URL; refused before decoding when longer than the upload limit."""
    text = url.split(",", 1)[1] if "," in url else ""
    if len(text) > inline_limit(max_bytes) or decoded_length(text) > max_bytes:
        raise gr.Error(f"The inline data sent is larger than the limit of {max_bytes // _MEGABYTE} MB for uploads: "
                       "send a smaller image",
                       print_exception=False)
    try:
        data = base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error) as e:
        raise gr.Error("The image data sent is not valid base64: upload the file itself", print_exception=False) from e
    if not data:
        raise gr.Error("The inline data sent is empty: upload the file itself", print_exception=False)
    return data


def read_upload(payload: Any, *, max_bytes: int, inline: bool = True) -> tuple[str | None, bytes | None]:
    """(path, None) for an upload, (None, bytes) for an inline `data:` URL (when `inline`), (None, None) when
    nothing was sent. A path that is not this server's upload, a URL to fetch, or a malformed payload is refused
    with a `gr.Error` saying so."""
    if payload is None or payload == "" or payload == {}:
        return None, None
    if isinstance(payload, str):
        return uploaded_path(payload), None
    if not isinstance(payload, dict):
        raise gr.Error(f"Expected a file (a FileData object with a path), got {type(payload).__name__}: send the "
                       "upload as a file (gradio_client: handle_file(path))",
                       print_exception=False)
    if isinstance(payload.get("video"), dict):  # gr.Video sends {"video": FileData, "subtitles": ...}
        return read_upload(payload["video"], max_bytes=max_bytes, inline=inline)
    if payload.get("path"):
        return uploaded_path(payload["path"]), None
    url = payload.get("url")
    if isinstance(url, str) and url.startswith("data:"):
        if not inline:
            raise gr.Error("inline data is not accepted here: upload the file", print_exception=False)
        return None, decode_data_url(url, max_bytes=max_bytes)
    if url:
        raise gr.Error("files are not fetched from URLs: upload the file", print_exception=False)
    return None, None


class BodyLimit:
    """ASGI middleware: a request body larger than its route's limit is answered 413 before the app reads it.

    Uploads (`.../upload`) may be `upload_bytes` (plus multipart framing); every other request, whose JSON can
    carry an inline `data:` URL, `other_bytes`. A body without Content-Length is counted as it arrives and cut off
    (the app sees the client disconnect) once it passes the limit.
    """

    def __init__(self, app: Any, *, upload_bytes: int, other_bytes: int) -> None:
        self.app, self.upload_bytes, self.other_bytes = app, upload_bytes, other_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.upload_bytes if scope.get("path", "").rstrip("/").endswith("/upload") else self.other_bytes
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            log.warning("refused a %s-byte request to %s (limit %d)", declared.decode(), scope.get("path"), limit)
            await _too_large(send, limit)
            return
        seen = 0

        async def counted() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    log.warning("cut off a request to %s after %d bytes (limit %d)", scope.get("path"), seen, limit)
                    return {"type": "http.disconnect"}
            return message

        await self.app(scope, counted, send)


async def _too_large(send: Any, limit: int) -> None:
    body = json.dumps({"error": f"the request is larger than the limit of {max(1, limit // _MEGABYTE)} MB"}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
