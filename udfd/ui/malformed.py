"""Refusals that say what was wrong with a malformed API request, instead of Gradio's bare `{"error": null}`.

Gradio checks a request's inputs before any handler runs: the number of values, each value against its
component's data model (a FileData for an image or video), and file paths against its allowed folders. It
raises plain exceptions there, and sends their text to the client only with `show_error=True`, which would also
send the text of every internal error. `StrictBlocks` turns just those checks' failures into `gr.Error`s that
name the input and what it should be (never echoing the value sent, never a server path); everything else goes
through unchanged. It overrides `gr.Blocks.preprocess_data`, the one place these checks run (Gradio 6): the
tests in tests/test_messages.py drive the launched app over HTTP, so an upgrade that moves them fails there.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import gradio as gr
from gradio.exceptions import InvalidPathError
from pydantic import ValidationError

from udfd.ui.public import visible
from udfd.ui.uploads import NOT_AN_UPLOAD

log = logging.getLogger(__name__)

_FILE = 'a file: {"path": <the path /gradio_api/upload returned>, "meta": {"_type": "gradio.FileData"}}'
# What each kind of input takes, by the name of its Gradio data model (gr.Image: ImageData, gr.Video: FileData).
EXPECTED = {"FileData": _FILE, "ImageData": _FILE}
_CLIENT = " (gradio_client: handle_file(path))"


def _name(component: Any) -> str:
    label = getattr(component, "label", None)
    return f"{label!r} ({type(component).__name__})" if label else type(component).__name__


def _invalid_input(components: Sequence[Any], values: Sequence[Any], error: ValidationError) -> str:
    """Which input failed its data model and what it takes; the value itself is described by its type only."""
    for i, (component, value) in enumerate(zip(components, values, strict=False)):
        model = getattr(component, "data_model", None)
        if model is None or value is None:
            continue
        try:
            model.model_validate(value, context={"validate_meta": True})
        except ValidationError:
            expected = EXPECTED.get(model.__name__)
            what = f"{expected}{_CLIENT}" if expected else f"a valid {model.__name__}"
            return f"Input {i + 1}, {_name(component)}, is not valid: expected {what}, got {_kind(value)}"
        except (TypeError, ValueError):
            continue
    first = error.errors()[0] if error.errors() else {}
    return f"An input is not valid ({visible(first.get('msg', error.title))})"


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        keys = ", ".join(sorted(str(k) for k in value)[:6])
        return f"an object with {'keys ' + visible(keys) if keys else 'no keys'}"
    return f"a value of type {type(value).__name__}"


def unknown_fields(components: Sequence[Any], values: Sequence[Any]) -> str | None:
    """The refusal for an object that has none of its input's fields (e.g. `{"foo": 1}` for an image), or None.

    Gradio's data models have only optional fields, so such an object would pass as an empty file and be
    answered "upload an image first", as if nothing had been sent."""
    for i, (component, value) in enumerate(zip(components, values, strict=False)):
        model = getattr(component, "data_model", None)
        fields = getattr(model, "model_fields", None)
        if isinstance(value, dict) and value and fields and not set(value) & set(fields):
            expected = EXPECTED.get(model.__name__, f"a valid {model.__name__}")
            return f"Input {i + 1}, {_name(component)}, is not valid: expected {expected}{_CLIENT}, got {_kind(value)}"
    return None


def describe_refusal(components: Sequence[Any], values: Sequence[Any], error: Exception) -> str | None:
    """The message for a request that failed Gradio's input checks, or None when `error` is not one of those."""
    if isinstance(error, InvalidPathError):
        return NOT_AN_UPLOAD
    if isinstance(error, ValidationError):
        return _invalid_input(components, values, error)
    if isinstance(error, ValueError) and len(values) < len(components):
        return (f"This endpoint takes {len(components)} input values ("
                + ", ".join(_name(c) for c in components) + f"), got {len(values)}")
    return None


class StrictBlocks(gr.Blocks):
    """`gr.Blocks` whose malformed requests are refused with a message saying what was wrong."""

    async def preprocess_data(self, block_fn: Any, inputs: list[Any], state: Any, explicit_call: bool = False):
        message = unknown_fields(block_fn.inputs, inputs)
        if message is not None:
            log.info("refused a malformed request to %s: %s", getattr(block_fn, "api_name", None) or "?", message)
            raise gr.Error(message, print_exception=False)
        try:
            return await super().preprocess_data(block_fn, inputs, state, explicit_call=explicit_call)
        except ValueError as e:  # pydantic's ValidationError and InvalidPathError are ValueErrors; gr.Error is not
            message = describe_refusal(block_fn.inputs, inputs, e)
            if message is None:
                raise
            log.info("refused a malformed request to %s: %s", getattr(block_fn, "api_name", None) or "?", message)
            raise gr.Error(message, print_exception=False) from e
