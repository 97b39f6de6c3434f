"""Picture conversions the engine shares: to RGB uint8, resize modes, PNG <-> base64."""
from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

from .limits import MAX_IMAGE_SIDE

RESIZE_MODES = ("just_resize", "crop", "fill")


def to_rgb(image, what: str = "image") -> np.ndarray:
    """Any picture a user may hand us (PIL, uint8/uint16/float/bool array, gray, RGBA, palette) as
    a read-only HxWx3 uint8 array. RGBA is composited on white, as an artist's transparent
    sketch is meant to be seen."""
    if isinstance(image, Image.Image):
        image = _pil_to_array(image)
    if not isinstance(image, np.ndarray):
        raise ValueError(f"{what} must be a picture (PIL image or HxWx3 array), not {type(image).__name__}")
    a = image
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise ValueError(f"{what} must be HxW, HxWx3 or HxWx4; got shape {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"{what} is empty (shape {a.shape}); give a picture at least 1x1")
    if max(a.shape[:2]) > MAX_IMAGE_SIDE:
        raise ValueError(f"{what} is {a.shape[1]}x{a.shape[0]}; the largest side allowed is {MAX_IMAGE_SIDE} px")
    a = _to_uint8(a, what)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    elif a.shape[2] == 4:
        alpha = a[:, :, 3:4].astype(np.float32) / 255.0
        a = (a[:, :, :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)).round().astype(np.uint8)
    a = np.array(a, order="C")  # a copy: the caller's later edits must not reach the value
    a.flags.writeable = False
    return a


def to_mask(mask, what: str = "mask") -> np.ndarray:
    """A mask as a read-only HxW uint8 array (255 = act here). Colour masks use their brightness;
    RGBA masks (a painted layer) use alpha where it varies."""
    if isinstance(mask, Image.Image):
        mask = _pil_to_array(mask)
    if not isinstance(mask, np.ndarray):
        raise ValueError(f"{what} must be an HxW array or picture, not {type(mask).__name__}")
    m = mask
    if m.ndim == 3 and m.shape[2] == 4 and m[:, :, 3].min() != m[:, :, 3].max():
        m = m[:, :, 3]
    elif m.ndim == 3:
        m = _to_uint8(m[:, :, :3], what).max(axis=2)
    if m.ndim != 2 or m.shape[0] == 0 or m.shape[1] == 0:
        raise ValueError(f"{what} must be a non-empty HxW array; got shape {mask.shape}")
    m = np.array(_to_uint8(m, what), order="C")
    m.flags.writeable = False
    return m


def _pil_to_array(im: Image.Image) -> np.ndarray:
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        return np.asarray(im).astype(np.float64) / 65535.0
    if im.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "1", "LA", "F"):
        im = im.convert("RGBA" if "A" in im.mode or "transparency" in im.info else "RGB")
    return np.asarray(im)


def _to_uint8(a: np.ndarray, what: str) -> np.ndarray:
    if a.dtype == np.uint8:
        return a
    if a.dtype == bool:
        return a.astype(np.uint8) * 255
    if a.dtype == np.uint16:
        return (a.astype(np.float32) / 257.0).round().astype(np.uint8)
    if np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise ValueError(f"{what} has NaN or infinite values")
        scale = 255.0 if a.max(initial=0) <= 1.0 else 1.0
        return np.clip(a * scale, 0, 255).round().astype(np.uint8)
    if np.issubdtype(a.dtype, np.integer):
        return np.clip(a, 0, 255).astype(np.uint8)
    raise ValueError(f"{what} has an unsupported pixel type {a.dtype}")


def resize(image: np.ndarray, width: int, height: int, mode: str) -> np.ndarray:
    """Fit a map to width x height the way AUTOMATIC1111's resize modes do: stretch
    (just_resize), cover and centre-crop (crop), or fit inside and pad with black (fill),
    black being "no control" for edge and pose maps."""
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize_mode {mode!r} is not one of {', '.join(RESIZE_MODES)}")
    h, w = image.shape[:2]
    if (w, h) == (width, height):
        return image
    if mode == "just_resize":
        return _scaled(image, width, height)
    cover = mode == "crop"
    k = max(width / w, height / h) if cover else min(width / w, height / h)
    nw, nh = max(1, round(w * k)), max(1, round(h * k))
    scaled = _scaled(image, nw, nh)
    if cover:
        y0, x0 = (nh - height) // 2, (nw - width) // 2
        return np.ascontiguousarray(scaled[y0:y0 + height, x0:x0 + width])
    out = np.zeros((height, width) + image.shape[2:], dtype=image.dtype)
    y0, x0 = (height - nh) // 2, (width - nw) // 2
    out[y0:y0 + nh, x0:x0 + nw] = scaled
    return out


def _scaled(image: np.ndarray, width: int, height: int) -> np.ndarray:
    from annotators.image import scale_map   # line maps stay lines when a map is fitted to the size
    return scale_map(image, width, height)


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
            # palette, CMYK and 16-bit pictures as colours, not as raw indices or channels
            return _pil_to_array(im)
    except _TooLarge:
        raise
    except Exception as e:  # any decoding failure means the same thing to the user
        raise ValueError(f"{what} in the recipe is not a readable base64 PNG ({e})") from None
