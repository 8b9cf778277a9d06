"""Generator metadata in an image file's header: PNG text chunks, EXIF, XMP, JPEG comments (pixels never decoded).

Pure parsing over Pillow's lazily opened header; `read_metadata` never raises for bad bytes that Pillow reports as
unidentified (the caller, `udfd.provenance`, turns any other failure into an error entry).
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from typing import Any, Literal

Status = Literal["found", "absent", "not_checked", "error"]
TRIM = 200  # characters kept of any metadata value
SCAN_LIMIT = 1 << 20  # characters of one metadata field searched for markers (a hostile 50 MB XMP stays cheap)
AI_SOURCE_TYPES = ("trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia")
# Lower-case substrings of a Software / generator value that name an image generator.
GENERATORS = ("stable diffusion", "stablediffusion", "automatic1111", "comfyui", "novelai", "midjourney",
              "dall-e", "dall·e", "firefly", "imagen", "invokeai", "fooocus", "flux", "leonardo", "ideogram")
_SOURCE_TYPE_RE = re.compile(r"DigitalSourceType\W{0,8}(?:[^\s\"'<>]*?/)?([A-Za-z]+Media|[A-Za-z]+Capture|"
                             r"[A-Za-z]+Creation|[A-Za-z]+Edits|[A-Za-z]+Film|print|composite\w*)")


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


def trim(value: Any, n: int = TRIM) -> str:
    """A metadata value as one line of at most `n` characters (an ellipsis marks the cut). Pure."""
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    text = " ".join(text[: n * 4].split())
    return text if len(text) <= n else text[: n - 1] + "\N{HORIZONTAL ELLIPSIS}"


def source_types(text: str) -> tuple[str, ...]:
    """The IPTC digital source types named in an XMP packet or JSON text (first SCAN_LIMIT characters). Pure."""
    return tuple(dict.fromkeys(m.group(1) for m in _SOURCE_TYPE_RE.finditer(text[:SCAN_LIMIT])))


def names_generator(value: str) -> str:
    """The generator a Software-like value names as a whole word ("Imagen 3", not "Imagenomic"), or "". Pure."""
    low = value.lower()
    return next((g for g in GENERATORS if re.search(rf"(?<![a-z0-9]){re.escape(g)}(?![a-z0-9])", low)), "")


PIL_FORMATS = ("JPEG", "PNG", "WEBP", "TIFF", "GIF", "BMP")  # as udfd.media: no other plugin sees user bytes
_PNG_GENERATOR_KEYS = {"parameters": "AUTOMATIC1111 / SD WebUI", "prompt": "ComfyUI", "workflow": "ComfyUI",
                       "invokeai_metadata": "InvokeAI", "Dream": "InvokeAI", "sd-metadata": "InvokeAI"}
_NOVELAI_KEYS = ("Software", "Comment", "Source", "Description", "Title")
_XMP_KEYS = ("xmp", "XML:com.adobe.xmp")


def read_metadata(data: bytes) -> Metadata:
    """Generator metadata from the file's header (PNG text chunks, EXIF, XMP, JPEG comment); no pixels decoded."""
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    try:
        with PILImage.open(io.BytesIO(data), formats=PIL_FORMATS) as im:
            fmt, info = im.format, dict(im.info)
            exif = header_exif(im)
            user_comment = exif.get_ifd(0x8769).get(0x9286)
    except UnidentifiedImageError:
        return Metadata("not_checked", "not an image whose metadata can be read (JPEG, PNG, WebP, TIFF, GIF, BMP)")
    fields = [*(png_text_fields(info) if fmt == "PNG" else []), *exif_fields(exif, user_comment), *xmp_fields(info)]
    if fmt != "PNG" and info.get("comment"):
        fields += _text_field("JPEG comment", "COM", info["comment"])
    return Metadata("found" if fields else "absent", fields=tuple(fields))


def header_exif(im: Any) -> Any:
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
