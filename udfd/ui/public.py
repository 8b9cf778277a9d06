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
