"""Exceptions with context. Each carries a message meant for the person using the tool."""

from __future__ import annotations


class UdfdError(Exception):
    """Base class for every error UDFD raises on purpose."""


class MediaError(UdfdError):
    """A user file could not be used (corrupt, unsupported, too large, not an image)."""

    def __init__(self, file: str, reason: str) -> None:
        super().__init__(f"{file}: {reason}")
        self.file = file
        self.reason = reason


class ModelRefError(UdfdError):
    """A model reference string is malformed or ambiguous."""


class ModelUnavailableError(UdfdError):
    """A model cannot be loaded here (offline, missing folder, bad checkpoint)."""


class HubUnreachableError(ModelUnavailableError):
    """The Hugging Face Hub did not answer (offline mode, no network, a timeout) and the model is not cached.
    `public` says so in plain words for a visitor, without paths."""

    public = "the Hugging Face Hub was unreachable"
