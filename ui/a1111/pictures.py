"""Base64 pictures in and out of the REST API. A picture is read only after its header says it
is within the pixel cap, so a small file that would inflate to gigabytes (a decompression bomb)
is refused before it is decoded."""
from __future__ import annotations

import base64
import binascii
import io
import warnings

import numpy as np
from PIL import Image

from engine import limits

MAX_PIXELS = limits.MAX_IMAGE_SIDE * limits.MAX_IMAGE_SIDE // 4   # 16.7 megapixels


def decode(value, what: str) -> np.ndarray:
    """A base64 picture (with or without a `data:image/...;base64,` prefix) as HxWx3 or HxWx4 uint8."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must be a base64-encoded picture (PNG, JPEG or WebP), not {_short(value)}")
    text = value.strip()
    if text.startswith("data:"):
        _, sep, text = text.partition(",")
        if not sep:
            raise ValueError(f"{what} starts with 'data:' but has no ',' before the base64 data")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        # A1111 also takes base64 with line breaks and without its '=' padding
        try:
            raw = base64.b64decode("".join(text.split()) + "=" * (-len(text) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"{what} is not valid base64; send the picture's bytes base64-encoded") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            picture = Image.open(io.BytesIO(raw))
            w, h = picture.size
            if w * h > MAX_PIXELS or max(w, h) > limits.MAX_IMAGE_SIDE:
                raise ValueError(f"{what} is {w}x{h} pixels; the limit is {limits.MAX_IMAGE_SIDE} per side and "
                                 f"{MAX_PIXELS // 1_000_000} megapixels. Send a smaller picture")
            picture.load()
    except ValueError:
        raise
    except (OSError, Image.DecompressionBombError, Image.DecompressionBombWarning, SyntaxError) as e:
        raise ValueError(f"{what} is not a picture this studio can read ({type(e).__name__}: {e}); "
                         "send a PNG, JPEG or WebP") from None
    if picture.mode in ("RGBA", "LA", "PA") or (picture.mode == "P" and "transparency" in picture.info):
        return np.asarray(picture.convert("RGBA"))
    return np.asarray(picture.convert("RGB"))


def encode(picture) -> str:
    """A plain PNG, base64 (no `data:` prefix, as A1111 answers)."""
    image = picture if isinstance(picture, Image.Image) else Image.fromarray(np.asarray(picture, dtype=np.uint8))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode("ascii")


def encode_bytes(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
