"""Pictures in recipes: PNG bytes and base64 text. What a picture is and how a map is fitted
live in annotators.image, the one pictures module every layer shares."""
from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

from annotators.image import pil_array

from .limits import MAX_IMAGE_SIDE


def png_bytes(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(image)).save(buf, format="PNG")
    return buf.getvalue()


def to_b64(image: np.ndarray) -> str:
    return base64.b64encode(png_bytes(image)).decode("ascii")


class _TooLarge(ValueError):
    """A picture refused for its size, told as such rather than as unreadable."""


def from_b64(text: str, what: str = "image") -> np.ndarray:
    if not isinstance(text, str):
        raise ValueError(f"{what} in a recipe must be base64 PNG text, not {type(text).__name__}")
    try:
        raw = base64.b64decode(text, validate=True)
        with Image.open(io.BytesIO(raw)) as im:
            if max(im.size) > MAX_IMAGE_SIDE:
                raise _TooLarge(f"{what} is {im.width}x{im.height}; the largest side allowed is {MAX_IMAGE_SIDE} px")
            im.load()
            return pil_array(im)
    except _TooLarge:
        raise
    except Exception as e:  # any decoding failure means the same thing to the user
        raise ValueError(f"{what} in the recipe is not a readable base64 PNG ({e})") from None
