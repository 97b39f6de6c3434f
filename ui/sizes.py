"""Canvas sizes offered by the sketch and pose tabs, as "WxH" text."""
from __future__ import annotations

from engine import limits

SIZES = ["512x512", "768x512", "512x768", "640x640", "768x768", "1024x1024", "256x256"]


def parse_size(text: str) -> tuple[int, int]:
    """(width, height) of "WxH"; ValueError saying what is allowed."""
    try:
        w, h = (int(v) for v in str(text).lower().replace(" ", "").split("x"))
    except ValueError:
        raise ValueError(f"canvas size {text!r} is not WIDTHxHEIGHT, e.g. 512x768") from None
    for v in (w, h):
        if not limits.MIN_SIZE <= v <= limits.MAX_SIZE:
            raise ValueError(f"canvas size {text!r}: each side must be {limits.MIN_SIZE} to {limits.MAX_SIZE} px")
    return w, h
