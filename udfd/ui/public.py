"""What visitors may read: messages shown in the app name files and models, never server paths.

Operators get the full text in the log (every caller logs the original before showing `visible(...)` of it).
"""

from __future__ import annotations

import html
import re

# An absolute path (POSIX, or a Windows drive), not part of a word or a URL ("hf-hub:org/repo" is kept).
_PATH = re.compile(r"(?<![\w./:])(?:[A-Za-z]:)?(?:[/\\][^\s/\\'\"`,;()<>]+)+[/\\]?|(?<=[\w-]:)(?:/[^\s/'\"`,;()<>]+)+")


def hide_paths(text: str) -> str:
    """`text` with every absolute path replaced by its last part (`/srv/models/udfd-clip` -> `udfd-clip`)."""
    def last(match: re.Match[str]) -> str:
        parts = [p for p in re.split(r"[/\\]", match.group(0)) if p]
        return parts[-1] if parts else "…"

    return _PATH.sub(last, text)


def visible(text: object) -> str:
    """A message for a visitor: paths hidden, HTML escaped."""
    return html.escape(hide_paths(str(text)), quote=False)


# What to do next, said after every message a visitor gets for a file or a failed analysis.
NEXT_IMAGE = "Try another image (JPEG, PNG, WebP, BMP, GIF or TIFF), or save this one again as JPEG or PNG."
NEXT_VIDEO = "Try another video (mp4, avi, mov, webm or mkv), or convert this one to mp4."
NEXT_RETRY = "Try again; if it keeps failing, choose another detector or another file."


def unreadable(name: str, reason: str, *, video: bool = False) -> str:
    """A file that could not be read: its name, why, and what to do next (HTML escaped)."""
    return f"{html.escape(name)}: {visible(reason).rstrip('.')}. {NEXT_VIDEO if video else NEXT_IMAGE}"


def failed(error: object) -> str:
    """An analysis that failed: what happened (paths hidden, escaped) and what to do next."""
    return f"{visible(error).rstrip('.')}. {NEXT_RETRY}"
