"""What a file says about its own origin: C2PA Content Credentials, invisible watermarks, generator metadata.

Evidence is kept apart from the detectors' opinion. The parsers are pure (bytes in, frozen dataclasses out) and
fail soft: each reader that cannot run or cannot parse says so in its own `status`/`reason`, never raises.
`read_provenance` is the one edge function (reads a bounded amount of a file). `strong_evidence` and
`apply_evidence` are the rule (README "Provenance"):

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
import re
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
Status = Literal["found", "absent", "not_checked", "error"]
TRIM = 200  # characters kept of any metadata value
SCAN_LIMIT = 1 << 20  # characters of one metadata field searched for markers (a hostile 50 MB XMP stays cheap)
TIME_LIMIT_S = 5.0  # per reader; a native parser that runs past it is abandoned and reported as an error
VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm")
WATERMARK_MAX_PIXELS = 4096 * 4096  # beyond this the watermark is not checked (generators' outputs are smaller)
AI_SOURCE_TYPES = ("trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia")
ABSENCE = "absence of provenance is not evidence of anything: most files carry none, and it is easily stripped"
# Lower-case substrings of a Software / generator value that name an image generator.
GENERATORS = ("stable diffusion", "stablediffusion", "automatic1111", "comfyui", "novelai", "midjourney",
              "dall-e", "dall·e", "firefly", "imagen", "invokeai", "fooocus", "flux", "leonardo", "ideogram")
_SOURCE_TYPE_RE = re.compile(r"DigitalSourceType\W{0,8}(?:[^\s\"'<>]*?/)?([A-Za-z]+Media|[A-Za-z]+Capture|"
                             r"[A-Za-z]+Creation|[A-Za-z]+Edits|[A-Za-z]+Film|print|composite\w*)")


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
class MetadataField:
    """One metadata field that speaks to provenance: where it sits, its name, its (trimmed) value."""

    source: str  # "PNG text", "EXIF", "XMP", "JPEG comment"
    name: str
    value: str
    generator: str = ""  # who wrote it, when the field says ("AUTOMATIC1111", "ComfyUI", "NovelAI", ...)
    declares_ai: bool = False


@dataclass(frozen=True)
class Metadata:
    status: Status
    reason: str = ""
    fields: tuple[MetadataField, ...] = ()


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
            reported.append(f"{what} (validation: {state}{fails}"
                            + ("; not trusted, so not counted" if not c2pa.trusted else "") + ")")
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
                    trust_anchors: str | None = None, max_pixels: int = WATERMARK_MAX_PIXELS) -> Provenance:
    """Read a file's (or bytes') provenance, reading at most `max_bytes` of it. Never raises for bad input.

    `kind` "video" (or a video suffix) checks C2PA only. `trust_anchors` is a PEM bundle of extra C2PA roots
    (default: the file named by $UDFD_C2PA_TRUST_ANCHORS, if set).
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
    return analyse_bytes(data, video=video, trust_anchors=trust_anchors, max_pixels=max_pixels)


def provenance_of(source: Any, *, max_bytes: int, kind: str = "auto") -> Provenance:
    """`read_provenance` of a path or bytes; anything else (an already decoded image) is a not-checked record."""
    if isinstance(source, bytes | str | os.PathLike):
        return read_provenance(source, max_bytes=max_bytes, kind=kind)
    return not_checked("not checked: only decoded pixels were given (pass the file's path or bytes, or provenance=)")


def analyse_bytes(data: bytes, *, video: bool = False, trust_anchors: str | None = None,
                  max_pixels: int = WATERMARK_MAX_PIXELS) -> Provenance:
    """Provenance of a file's bytes: every reader time-boxed, none raising."""
    timings: dict[str, float] = {}
    c2pa = _timed(timings, "c2pa", lambda: read_c2pa(data, trust_anchors=trust_anchors), lambda r: C2pa("error", r))
    if video:
        why = "video: watermark and metadata checks cover still images only"
        wm, meta = Watermark("not_checked", why), Metadata("not_checked", why)
    else:
        meta = _timed(timings, "metadata", lambda: read_metadata(data), lambda r: Metadata("error", r))
        wm = _timed(timings, "watermark", lambda: read_watermark(data, max_pixels=max_pixels),
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


def trim(value: Any, n: int = TRIM) -> str:
    """A metadata value as one line of at most `n` characters (an ellipsis marks the cut). Pure."""
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    text = " ".join(text[: n * 4].split())
    return text if len(text) <= n else text[: n - 1] + "\N{HORIZONTAL ELLIPSIS}"


def source_types(text: str) -> tuple[str, ...]:
    """The IPTC digital source types named in an XMP packet or JSON text (first SCAN_LIMIT characters). Pure."""
    return tuple(dict.fromkeys(m.group(1) for m in _SOURCE_TYPE_RE.finditer(text[:SCAN_LIMIT])))


def names_generator(value: str) -> str:
    """The generator a Software-like value names, or "". Pure."""
    low = value.lower()
    return next((g for g in GENERATORS if g in low), "")


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


# -- readers (bytes in; each returns its part, never raises for bad input) -----------------------------------
_PIL_FORMATS = ("JPEG", "PNG", "WEBP", "TIFF", "GIF", "BMP")  # as udfd.media: no other plugin sees user bytes
_PNG_GENERATOR_KEYS = {"parameters": "AUTOMATIC1111 / SD WebUI", "prompt": "ComfyUI", "workflow": "ComfyUI",
                       "invokeai_metadata": "InvokeAI", "Dream": "InvokeAI", "sd-metadata": "InvokeAI"}
_NOVELAI_KEYS = ("Software", "Comment", "Source", "Description", "Title")
_XMP_KEYS = ("xmp", "XML:com.adobe.xmp")


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


def read_metadata(data: bytes) -> Metadata:
    """Generator metadata from the file's header (PNG text chunks, EXIF, XMP, JPEG comment); no pixels decoded."""
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    try:
        with PILImage.open(io.BytesIO(data), formats=_PIL_FORMATS) as im:
            fmt, info = im.format, dict(im.info)
            exif = _header_exif(im)
            user_comment = exif.get_ifd(0x8769).get(0x9286)
    except UnidentifiedImageError:
        return Metadata("not_checked", "not an image whose metadata can be read (JPEG, PNG, WebP, TIFF, GIF, BMP)")
    fields = [*(png_text_fields(info) if fmt == "PNG" else []), *exif_fields(exif, user_comment), *xmp_fields(info)]
    if fmt != "PNG" and info.get("comment"):
        fields += _text_field("JPEG comment", "COM", info["comment"])
    return Metadata("found" if fields else "absent", fields=tuple(fields))


def _header_exif(im: Any) -> Any:
    """EXIF without decoding pixels: Pillow's PNG `getexif()` loads the image when no eXIf chunk precedes IDAT."""
    from PIL import Image as PILImage

    if im.format != "PNG":
        return im.getexif()
    exif = PILImage.Exif()
    if im.info.get("exif"):
        exif.load(im.info["exif"])
    return exif


def png_text_fields(info: dict[str, Any]) -> list[MetadataField]:
    """PNG tEXt/zTXt/iTXt chunks written by generators (AUTOMATIC1111, ComfyUI, NovelAI, InvokeAI). Pure."""
    out = [MetadataField("PNG text", k, trim(info[k]), gen, True)
           for k, gen in _PNG_GENERATOR_KEYS.items() if isinstance(info.get(k), str | bytes) and info[k]]
    novelai = "novelai" in str(info.get("Software", "")).lower()
    for key in _NOVELAI_KEYS:
        if novelai and info.get(key):
            out.append(MetadataField("PNG text", key, trim(info[key]), "NovelAI", True))
    if not novelai and info.get("Software"):
        out += _text_field("PNG text", "Software", info["Software"])
    return out


def exif_fields(exif: Any, user_comment: Any = None) -> list[MetadataField]:
    """EXIF Software (always reported) and an A1111-style UserComment (generation parameters). Pure."""
    out = []
    if exif.get(0x0131):
        out += _text_field("EXIF", "Software", exif[0x0131], always=True)
    comment = _user_comment(user_comment)
    if comment and ("Steps:" in comment and "Sampler:" in comment or names_generator(comment)):
        out.append(MetadataField("EXIF", "UserComment", trim(comment), names_generator(comment) or
                                 "AUTOMATIC1111 / SD WebUI", True))
    return out


def xmp_fields(info: dict[str, Any]) -> list[MetadataField]:
    """XMP DigitalSourceType (IPTC Extension) and CreatorTool, searched in the packet's first SCAN_LIMIT. Pure."""
    packet = next((info[k] for k in _XMP_KEYS if info.get(k)), None)
    if packet is None:
        return []
    text = packet[:SCAN_LIMIT].decode("utf-8", "replace") if isinstance(packet, bytes) else str(packet)[:SCAN_LIMIT]
    out = [MetadataField("XMP", "DigitalSourceType", t, "", t in AI_SOURCE_TYPES) for t in source_types(text)]
    tool = re.search(r"CreatorTool\W{0,4}([^\"'<>]{1,400})", text)
    if tool:
        out += _text_field("XMP", "CreatorTool", tool.group(1), always=True)
    return out


def _text_field(source: str, name: str, value: Any, *, always: bool = False) -> list[MetadataField]:
    text = trim(value)
    gen = names_generator(text)
    return [MetadataField(source, name, text, gen, bool(gen))] if gen or always else []


def _user_comment(raw: Any) -> str:
    """EXIF UserComment: 8 bytes naming the charset, then the text (A1111 writes UTF-16 big-endian)."""
    if not isinstance(raw, bytes):
        return str(raw or "")
    head, body = raw[:8], raw[8:]
    if head.startswith(b"UNICODE"):
        be = body.decode("utf-16-be", "replace")
        return be if sum(c.isprintable() for c in be) >= 0.9 * max(len(be), 1) else body.decode("utf-16-le", "replace")
    return body.decode("utf-8", "replace") if head.startswith(b"ASCII") else raw.decode("utf-8", "replace")


def read_watermark(data: bytes, *, max_pixels: int = WATERMARK_MAX_PIXELS) -> Watermark:
    """Known invisible watermarks (udfd.watermarks) in the first frame, at the file's own resolution."""
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
        with PILImage.open(io.BytesIO(data), formats=_PIL_FORMATS) as im:
            w, h = im.size
            if w * h < MIN_PIXELS:
                return Watermark("not_checked", f"image is {w}\N{MULTIPLICATION SIGN}{h}: the dwtDct schemes "
                                 "need at least 256\N{MULTIPLICATION SIGN}256 pixels", not_checked=checked)
            if w * h > max_pixels:
                return Watermark("not_checked", f"image has {w * h} pixels, more than the {max_pixels} checked for "
                                 "watermarks", not_checked=checked)
            rgb = np.asarray(im.convert("RGB"))
    except UnidentifiedImageError:
        return Watermark("not_checked", "not an image that can be decoded", not_checked=checked)
    matches = match_schemes(np.ascontiguousarray(rgb[:, :, ::-1]))  # the embedder works in BGR
    found = [m for m in matches if m.found]
    if found:
        m = min(found, key=lambda m: m.bit_errors / m.scheme.length)
        return Watermark("found", scheme=m.scheme.name, payload=m.payload, bit_errors=m.bit_errors,
                         checked=checked, not_checked=NOT_CHECKED)
    return Watermark("absent", checked=checked, not_checked=NOT_CHECKED)
