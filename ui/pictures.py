"""Picture inputs whose unreadable uploads become page messages.

Gradio decodes an upload before any handler runs, so a truncated file or a text file named
.png fails inside Gradio, out of reach of `errors.shown`: the page then shows nothing and the
artist is left waiting. These components are Gradio's own (same widget in the browser) with
that decoding step turned into a `gr.Error` that says what to do.
"""
from __future__ import annotations

import logging

import gradio as gr

log = logging.getLogger("ui")


def unreadable(payload, error: Exception) -> gr.Error:
    name = getattr(payload, "orig_name", None)
    if name is None and isinstance(payload, dict):
        name = payload.get("orig_name")
    what = f"'{name}'" if name else "the uploaded file"
    # The error's own text names a temporary path on the server: the artist needs only its kind.
    log.warning("upload %s could not be read as a picture", what, exc_info=error)
    return gr.Error(f"{what} could not be read as a picture ({type(error).__name__}): it is truncated, damaged "
                    "or not an image. Save it again as PNG or JPEG and upload that.", print_exception=False)


class _ReadableUploads:
    """Turns a failure to decode the upload into a message; the background's, for an editor."""

    def preprocess(self, payload):
        try:
            return super().preprocess(payload)
        except gr.Error:
            raise
        except Exception as e:  # noqa: BLE001  (any decoding failure is the file's, told to the artist)
            raise unreadable(getattr(payload, "background", None) or payload, e) from None


class Picture(_ReadableUploads, gr.Image):
    """gr.Image with readable upload errors."""

    def get_block_name(self) -> str:
        return "image"


class Canvas(_ReadableUploads, gr.ImageEditor):
    """gr.ImageEditor with readable errors for an unreadable background upload."""

    def get_block_name(self) -> str:
        return "imageeditor"


class Unreadable:
    """What a UnitMap holds for an upload that is no picture: the message to show."""

    def __init__(self, message: str):
        self.message = message


class UnitMap(Picture):
    """A unit's map: an unreadable upload comes to the handlers as `Unreadable` (not an error
    that stops them), so the unit's upload handler can say so at once and put back the map the
    unit had, rather than leaving it enabled with a broken thumbnail."""

    def preprocess(self, payload):
        try:
            return super().preprocess(payload)
        except gr.Error as e:
            return Unreadable(str(e.message))
