"""What a file says about its own origin: C2PA Content Credentials, invisible watermarks, generator metadata.

Evidence is kept apart from the detectors' opinion. The parsers are pure (bytes in, frozen dataclasses out) and
fail soft: each reader that cannot run or cannot parse says so in its own `status`/`reason`, never raises.
`read_provenance` is the one edge function (reads a bounded amount of a file). `evidence` and `apply_evidence` are
the rule (README "Provenance"); the metadata readers live in `udfd.file_metadata`, the watermark decoder in
`udfd.watermarks`:

- strong: a C2PA manifest whose validation state is "Trusted" (signer chains to a trust anchor, nothing failed)
  and that declares AI generation (IPTC digital source type trainedAlgorithmicMedia or
  compositeWithTrainedAlgorithmicMedia), or a decoded Stable Diffusion / SDXL invisible watermark. Strong
  evidence makes the overall label "fake" with basis "provenance", whatever the detectors say.
- reported, not strong: generator metadata (PNG text chunks, EXIF/XMP Software, XMP DigitalSourceType) and a
  manifest that validates but whose signer is not trusted: anyone can write either into any file.
- a manifest that fails validation is reported as such and never counts as evidence of authenticity; absence of
  provenance is not evidence of anything.
"""

from __future__ import annotations

import io
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from udfd.file_metadata import (
    AI_SOURCE_TYPES,
    PIL_FORMATS,
    TRIM,
    Metadata,
    MetadataField,
    Status,
    header_exif,
    names_generator,
    read_metadata,
    source_types,
    trim,
)

__all__ = ["C2pa", "Metadata", "MetadataField", "Provenance", "Watermark", "apply_evidence", "evidence",
           "names_generator", "not_checked", "provenance_of", "read_provenance", "source_types"]
log = logging.getLogger(__name__)

T = TypeVar("T")
TIME_LIMIT_S = 5.0  # per reader; a native parser that runs past it is abandoned and reported as an error
VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm")
WATERMARK_MAX_PIXELS = 4096 * 4096  # beyond this the watermark is not checked (generators' outputs are smaller)
ABSENCE = "absence of provenance is not evidence of anything: most files carry none, and it is easily stripped"


@dataclass(frozen=True)
class C2pa:
    """The C2PA manifest store: present or not, and if present what its active manifest claims.

    `validation_state` is the library's own ("Trusted", "Valid", "Invalid"); `validation_failures` its failure
    codes with explanations (e.g. "signingCredential.untrusted: signing certificate untrusted").
    """

    status: Status
    reason: str = ""
    validation_state: str = ""
    validation_failures: tuple[str, ...] = ()
    claim_generator: str = ""
    title: str = ""
    actions: tuple[str, ...] = ()
    digital_source_types: tuple[str, ...] = ()
    signer: str = ""
    signing_time: str = ""
    declares_ai: bool = False

    @property
    def trusted(self) -> bool:
        return self.status == "found" and self.validation_state == "Trusted" and not self.validation_failures


@dataclass(frozen=True)
class Watermark:
    """Invisible watermarks: which known scheme was decoded (payload, bit errors), or why none was checked."""

    status: Status
    reason: str = ""
    scheme: str = ""
    payload: str = ""
    bit_errors: int | None = None
    checked: tuple[str, ...] = ()
    not_checked: tuple[str, ...] = ()


@dataclass(frozen=True)
class Provenance:
    """Everything the file says about itself, and the evidence drawn from it (`strong` decides the label)."""

    c2pa: C2pa
    watermark: Watermark
    metadata: Metadata
    strong: tuple[str, ...] = ()
    reported: tuple[str, ...] = ()
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def summary(self) -> str:
        if self.strong:
            return "strong provenance evidence: " + "; ".join(self.strong)
        if self.reported:
            return "provenance reported (not strong enough to decide): " + "; ".join(self.reported)
        return "no provenance found; " + ABSENCE

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["timings_ms"] = {k: round(v, 2) for k, v in self.timings_ms.items()}
        d["summary"] = self.summary
        return json.loads(json.dumps(d))  # tuples become lists: the same object as the JSON that is printed


def not_checked(reason: str) -> Provenance:
    """A Provenance where nothing was read, each part saying why."""
    return _with_evidence(Provenance(C2pa("not_checked", reason), Watermark("not_checked", reason),
                                     Metadata("not_checked", reason)))


# -- the rule ---------------------------------------------------------------------------------------------------
def evidence(c2pa: C2pa, watermark: Watermark, metadata: Metadata) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(strong, reported): the evidence named, in words. Pure."""
    strong: list[str] = []
    reported: list[str] = []
    if c2pa.status == "found":
        what = (f"C2PA manifest by {c2pa.claim_generator or 'an unnamed generator'}"
                + (f" declaring {', '.join(c2pa.digital_source_types)}" if c2pa.declares_ai else ""))
        if c2pa.declares_ai and c2pa.trusted:
            strong.append(f"{what}, signed by {c2pa.signer or 'an unnamed signer'} (validation: Trusted)")
        else:
            state = c2pa.validation_state or "unknown"
            fails = f"; {', '.join(f.split(':')[0] for f in c2pa.validation_failures)}" if c2pa.validation_failures \
                else ""
            why = ("failed validation, so it counts for nothing" if state == "Invalid"
                   else "not trusted, so not counted" if c2pa.declares_ai
                   else "no AI generation declared; not counted as evidence of authenticity")
            reported.append(f"{what} (validation: {state}{fails}; {why})")
    if watermark.status == "found":
        strong.append(f"invisible watermark {watermark.scheme} decoded ({watermark.bit_errors} bit errors)")
    for f in metadata.fields:
        if f.declares_ai:
            reported.append(f"{f.source} {f.name} written by {f.generator or 'a generator'}")
    return tuple(strong), tuple(reported)


def apply_evidence(overall: T, provenance: Provenance | None) -> T:
    """The overall verdict (`udfd.types.Overall`) after the rule: strong evidence makes it "fake" with basis
    "provenance" and names the evidence. Pure; typed generically so that this module need not import types.py
    (which refers to `Provenance`).

    Nothing else changes it: reported-only evidence, a failed manifest and absence leave the detectors' verdict.
    """
    if provenance is None or not provenance.strong:
        return overall
    return replace(overall, label="fake", uncertain=False, basis="provenance", evidence=provenance.strong)


def _with_evidence(p: Provenance) -> Provenance:
    strong, reported = evidence(p.c2pa, p.watermark, p.metadata)
    return replace(p, strong=strong, reported=reported)


# -- the edge ---------------------------------------------------------------------------------------------------
def read_provenance(source: str | os.PathLike | bytes, *, max_bytes: int, kind: str = "auto",
                    trust_anchors: str | None = None, max_pixels: int = WATERMARK_MAX_PIXELS,
                    pixels: Any = None) -> Provenance:
    """Read a file's (or bytes') provenance, reading at most `max_bytes` of it. Never raises for bad input.

    `kind` "video" (or a video suffix) checks C2PA only. `trust_anchors` is a PEM bundle of extra C2PA roots
    (default: the file named by $UDFD_C2PA_TRUST_ANCHORS, if set). `pixels`: the already decoded RGB pixels,
    reused by the watermark check when they are the file's own (`read_watermark`).
    """
    name = "<bytes>" if isinstance(source, bytes) else str(source)
    if trust_anchors is None and os.environ.get("UDFD_C2PA_TRUST_ANCHORS"):
        try:
            trust_anchors = Path(os.environ["UDFD_C2PA_TRUST_ANCHORS"]).read_text(encoding="utf-8")
        except OSError as e:
            log.warning("UDFD_C2PA_TRUST_ANCHORS cannot be read (%s): only the library's own anchors apply", e)
    video = kind == "video" or (kind == "auto" and Path(name).suffix.lower() in VIDEO_SUFFIXES)
    if isinstance(source, bytes):
        size = len(source)
    else:
        try:
            size = Path(source).stat().st_size
        except OSError as e:
            return not_checked(f"{name}: cannot be read: {e.strerror or e}")
    if size > max_bytes:
        return not_checked(f"file is {size} bytes, more than the limit of {max_bytes}")
    if size == 0:
        return not_checked("file is empty")
    if video and not isinstance(source, bytes):  # a video's manifest is read from the file, not copied to memory
        timings: dict[str, float] = {}

        def from_file() -> C2pa:
            with Path(source).open("rb") as f:
                return read_c2pa(f, trust_anchors=trust_anchors)

        c2pa = _timed(timings, "c2pa", from_file, lambda r: C2pa("error", r))
        why = "video: watermark and metadata checks cover still images only"
        return _with_evidence(Provenance(c2pa, Watermark("not_checked", why), Metadata("not_checked", why),
                                         timings_ms=timings))
    try:
        data = source if isinstance(source, bytes) else _read_bounded(Path(source), max_bytes)
    except OSError as e:
        return not_checked(f"{name}: cannot be read: {e.strerror or e}")
    if len(data) > max_bytes:  # grew since stat
        return not_checked(f"file is more than the limit of {max_bytes} bytes")
    return analyse_bytes(data, video=video, trust_anchors=trust_anchors, max_pixels=max_pixels, pixels=pixels)


def provenance_of(source: Any, *, max_bytes: int, kind: str = "auto", pixels: Any = None) -> Provenance:
    """`read_provenance` of a path or bytes; anything else (an already decoded image) is a not-checked record."""
    if isinstance(source, bytes | str | os.PathLike):
        return read_provenance(source, max_bytes=max_bytes, kind=kind, pixels=pixels)
    return not_checked("not checked: only decoded pixels were given (pass the file's path or bytes, or provenance=)")


def analyse_bytes(data: bytes, *, video: bool = False, trust_anchors: str | None = None,
                  max_pixels: int = WATERMARK_MAX_PIXELS, pixels: Any = None) -> Provenance:
    """Provenance of a file's bytes: every reader time-boxed, none raising."""
    timings: dict[str, float] = {}
    c2pa = _timed(timings, "c2pa", lambda: read_c2pa(data, trust_anchors=trust_anchors), lambda r: C2pa("error", r))
    if video:
        why = "video: watermark and metadata checks cover still images only"
        wm, meta = Watermark("not_checked", why), Metadata("not_checked", why)
    else:
        meta = _timed(timings, "metadata", lambda: read_metadata(data), lambda r: Metadata("error", r))
        wm = _timed(timings, "watermark", lambda: read_watermark(data, max_pixels=max_pixels, pixels=pixels),
                    lambda r: Watermark("error", r))
    return _with_evidence(Provenance(c2pa, wm, meta, timings_ms=timings))


def _read_bounded(path: Path, max_bytes: int) -> bytes:
    with path.open("rb") as f:
        return f.read(max_bytes + 1)  # one byte more tells "too large" without reading the rest


def _timed(timings: dict[str, float], what: str, fn: Callable[[], T], on_error: Callable[[str], T]) -> T:
    """`fn()` in a daemon thread, abandoned after TIME_LIMIT_S; any exception becomes `on_error(reason)`.

    A reader parses hostile bytes with native code that no signal can interrupt, so a stalled one is left to
    finish in the background rather than holding the request.
    """
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except Exception as e:  # noqa: BLE001 - a reader's failure on hostile bytes is reported, not raised
            log.info("provenance %s reader failed: %s", what, e, exc_info=True)
            box["error"] = f"{type(e).__name__}: {e}"

    t0 = time.perf_counter()
    worker = threading.Thread(target=run, name=f"udfd-provenance-{what}", daemon=True)
    worker.start()
    worker.join(TIME_LIMIT_S)
    timings[what] = (time.perf_counter() - t0) * 1000
    if worker.is_alive():
        log.warning("provenance %s reader still running after %.1f s: abandoned", what, TIME_LIMIT_S)
        return on_error(f"{what} reader did not finish within {TIME_LIMIT_S:g} s")
    if "error" in box:
        return on_error(box["error"][:TRIM])
    return box["value"]


def c2pa_from_json(store: dict[str, Any], *, state: str | None) -> C2pa:
    """The active manifest's claims from a manifest-store dict (`c2pa.Reader.json()`), as `C2pa`. Pure."""
    manifests = store.get("manifests") or {}
    active = manifests.get(store.get("active_manifest") or "") or {}
    actions: list[str] = []
    types: list[str] = []
    for manifest in manifests.values():  # ingredients' manifests too: AI made, then edited, is still AI made
        for assertion in manifest.get("assertions") or ():
            if str(assertion.get("label", "")).startswith("c2pa.actions"):
                for action in (assertion.get("data") or {}).get("actions") or ():
                    if manifest is active:
                        actions.append(str(action.get("action", "")))
                    if action.get("digitalSourceType"):
                        types.append(str(action["digitalSourceType"]).rsplit("/", 1)[-1])
    gen = active.get("claim_generator") or ", ".join(
        " ".join(str(v) for k, v in info.items() if k in ("name", "version"))
        for info in active.get("claim_generator_info") or ())
    sig = active.get("signature_info") or {}
    failures = tuple(trim(f"{s.get('code', '')}: {s.get('explanation', '')}")
                     for s in store.get("validation_status") or () if s.get("code"))
    types = list(dict.fromkeys(types))
    return C2pa(
        status="found", validation_state=state or store.get("validation_state") or "", validation_failures=failures,
        claim_generator=trim(gen), title=trim(active.get("title", "")), actions=tuple(dict.fromkeys(actions)),
        digital_source_types=tuple(types), signer=trim(sig.get("issuer") or sig.get("common_name") or ""),
        signing_time=str(sig.get("time") or ""), declares_ai=any(t in AI_SOURCE_TYPES for t in types),
    )


def parse_store_json(text: str, *, state: str | None = None) -> C2pa:
    """`c2pa_from_json` over the library's JSON text; unparseable JSON is an error entry. Pure."""
    try:
        store = json.loads(text)
    except ValueError as e:
        return C2pa("error", f"manifest store JSON unreadable: {e}")
    return c2pa_from_json(store if isinstance(store, dict) else {}, state=state)


# -- readers (bytes in; each returns its part, never raises for bad input; metadata: udfd.file_metadata) ------
def read_c2pa(data: bytes | io.IOBase, *, trust_anchors: str | None = None) -> C2pa:
    """The C2PA manifest store in `data` (bytes or a binary file) through c2pa-python, which detects the format
    from the bytes; remote manifests and OCSP responses are never fetched."""
    try:
        import c2pa
    except (ImportError, OSError) as e:  # OSError: the package is there but its native library will not load
        log.info("c2pa unavailable: %s", e)
        return C2pa("not_checked", "not checked: c2pa library unavailable")
    settings: dict[str, Any] = {"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}}
    if trust_anchors:
        settings["trust"] = {"user_anchors": trust_anchors}
    try:
        with c2pa.Context.from_dict(settings) as context:
            stream = io.BytesIO(data) if isinstance(data, bytes) else data
            reader = c2pa.Reader.try_create(stream, context=context)
            if reader is None:
                return C2pa("absent")
            with reader:
                return parse_store_json(reader.json(), state=reader.get_validation_state())
    except c2pa.C2paError as e:
        text = str(e)
        if "NotSupported" in type(e).__name__ or "not supported" in text.lower() or "unsupported" in text.lower():
            return C2pa("not_checked", trim(f"format not supported by the C2PA reader: {text}"))
        return C2pa("error", trim(f"manifest unreadable: {type(e).__name__}: {text}"))


def _chroma_subsampled(im: Any) -> bool:
    """A JPEG whose colour channels are stored at reduced resolution (Pillow's sampling 1 = 4:2:2, 2 = 4:2:0)."""
    if im.format not in ("JPEG", "MPO"):
        return False
    from PIL import JpegImagePlugin

    return JpegImagePlugin.get_sampling(im) in (1, 2)


def read_watermark(data: bytes, *, max_pixels: int = WATERMARK_MAX_PIXELS, pixels: Any = None) -> Watermark:
    """Known invisible watermarks (udfd.watermarks) in the first frame, at the file's own resolution.

    `pixels`: the file's RGB pixels if the caller has decoded them already; used (saving a second decode) only
    when they are exactly the stored pixels: an RGB file, no EXIF rotation, not reduced.
    """
    from udfd.watermarks import MIN_PIXELS, NOT_CHECKED, SCHEMES, match_schemes

    checked = tuple(s.name for s in SCHEMES)
    try:
        import cv2  # noqa: F401
    except ImportError as e:
        return Watermark("not_checked", f"not checked: {e.name} unavailable", not_checked=checked)
    import numpy as np
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    try:
        with PILImage.open(io.BytesIO(data), formats=PIL_FORMATS) as im:
            w, h = im.size
            if w * h < MIN_PIXELS:
                return Watermark("not_checked", f"image is {w}\N{MULTIPLICATION SIGN}{h}: the dwtDct schemes "
                                 "need at least 256\N{MULTIPLICATION SIGN}256 pixels", not_checked=checked)
            if w * h > max_pixels:
                return Watermark("not_checked", f"image has {w * h} pixels, more than the {max_pixels} checked for "
                                 "watermarks", not_checked=checked)
            if _chroma_subsampled(im):
                return Watermark("not_checked", "JPEG with chroma subsampling (4:2:0 / 4:2:2): it erases the dwtDct "
                                 "watermarks, which live in the colour (U) channel", not_checked=checked)
            same = (pixels is not None and im.mode == "RGB" and tuple(pixels.shape) == (h, w, 3)
                    and header_exif(im).get(0x0112, 1) == 1)
            rgb = pixels if same else np.asarray(im.convert("RGB"))
    except UnidentifiedImageError:
        return Watermark("not_checked", "not an image that can be decoded", not_checked=checked)
    matches = match_schemes(rgb)
    found = [m for m in matches if m.found]
    if found:
        m = min(found, key=lambda m: m.bit_errors / m.scheme.length)
        return Watermark("found", scheme=m.scheme.name, payload=m.payload, bit_errors=m.bit_errors,
                         checked=checked, not_checked=NOT_CHECKED)
    return Watermark("absent", checked=checked, not_checked=NOT_CHECKED)
