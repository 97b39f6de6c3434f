"""The pictures module, at the bottom of every layer: what a picture is (to_rgb, to_mask) and
how a control map is fitted to a size (fit, the three resize modes). The engine, the annotators
and the fidelity meter all call these, so a picture means the same thing everywhere.

One rule for every input:
- PIL images of any mode; palette and CMYK pictures as their colours; 16-bit modes as 16-bit.
- uint8 as is; bool as 0/255; uint16, and any integer array with values above 255, as 16-bit
  (scaled by 1/257, so 65535 is white); floats in [0, 1] times 255, larger floats as 0..255.
- NaN or infinite values, negative integers and integers above 65535 are refused: no rule
  could say what colour they were meant to be.
- HxW grey, HxWx2 grey + alpha, HxWx3, HxWx4; alpha is composited on white, as an artist's
  transparent sketch is meant to be seen (controlnet_aux's HWC3 arithmetic, truncating, so
  maps match it bit for bit).

Maps are fitted as sd-webui-controlnet's `high_quality_resize` fits them (scripts/controlnet.py):
a binary line map (two grey levels, dark and light) by area or cubic then Otsu, so it stays
binary; a colour map of fewer than 200 colours (segmentation-like) by nearest neighbour, so
classes never blend; every other map, grey maps (depth, soft edges) always among them, by area
when shrinking and cubic when enlarging. Where the extension differs, on purpose: a map of two
colours that are not grey is a two-class map here (nearest), where the extension would average
its channels into grey; and a binary line map is thresholded without the extension's thinning.
"""
from __future__ import annotations

from enum import Enum
from typing import Any

import cv2
import numpy as np
from PIL import Image


class ResizeMode(Enum):
    """How a map of another shape is fitted to the picture; each value is AUTOMATIC1111's name."""

    just_resize = "Just Resize"        # stretched to the frame
    crop = "Crop and Resize"           # covers the frame, centre-cropped
    fill = "Resize and Fill"           # fits inside, padded with the map's border colour


RESIZE_MODES: tuple[str, ...] = tuple(m.name for m in ResizeMode)
MAX_LABEL_COLOURS = 200   # fewer distinct colours than this: a label map (the extension's bound)

_SHAPES = "HxW, HxWx1, HxWx2 (grey + alpha), HxWx3 or HxWx4"


def pil_array(image: Image.Image) -> np.ndarray:
    """A PIL image's pixels as an array to_rgb reads: palette, CMYK and other modes as RGB(A)
    colours, not raw indices or channels; 16-bit and 32-bit modes at their own depth."""
    if image.mode.startswith("I;16"):
        return np.asarray(image).astype(np.uint16)
    if image.mode in ("I", "F", "L", "RGB", "LA", "RGBA") and "transparency" not in image.info:
        return np.asarray(image)
    has_alpha = "A" in image.getbands() or "transparency" in image.info
    return np.asarray(image.convert("RGBA" if has_alpha else "RGB"))


def _to_uint8(a: np.ndarray, what: str) -> np.ndarray:
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * 255
    if np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise ValueError(f"{what} has NaN or infinite values; give finite pixel values")
        scale = 255.0 if a.max(initial=0) <= 1.0 else 1.0
        return (a.astype(np.float32) * scale).round().clip(0, 255).astype(np.uint8)
    if np.issubdtype(a.dtype, np.integer):
        lo, hi = int(a.min(initial=0)), int(a.max(initial=0))
        if lo < 0 or hi > 65535:
            raise ValueError(f"{what} has integer pixels from {lo} to {hi}; give 0..255 (8-bit) or 0..65535 (16-bit)")
        if a.dtype == np.uint16 or hi > 255:
            return (a.astype(np.float32) / 257.0).round().astype(np.uint8)
        return a.astype(np.uint8)
    raise ValueError(f"{what} has pixels of type {a.dtype}; give uint8, uint16, bool or float pixels")


def _composite_on_white(color: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    a = alpha.astype(np.float32)[..., None] / 255.0
    return (color.astype(np.float32) * a + 255.0 * (1.0 - a)).clip(0, 255).astype(np.uint8)


def _array(image: Any, what: str, max_side: int | None) -> np.ndarray:
    if isinstance(image, Image.Image):
        image = pil_array(image)
    if not isinstance(image, np.ndarray):
        raise ValueError(f"{what} must be a picture (a PIL image or a numpy array), not {type(image).__name__}")
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 2, 3, 4)):
        raise ValueError(f"{what} must be {_SHAPES}; got shape {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"{what} is empty ({image.shape[0]}x{image.shape[1]} pixels); give a picture at least 1x1")
    if max_side is not None and max(image.shape[:2]) > max_side:
        raise ValueError(f"{what} is {image.shape[1]}x{image.shape[0]}; the largest side allowed is {max_side} px")
    return image


def to_rgb(image: Any, what: str = "image", max_side: int | None = None) -> np.ndarray:
    """Any picture (module docstring) as a new HxWx3 uint8 array the caller owns."""
    a = _to_uint8(_array(image, what, max_side), what)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.shape[2] == 2:
        return _composite_on_white(np.repeat(a[:, :, :1], 3, axis=2), a[:, :, 1])
    if a.shape[2] == 4:
        return _composite_on_white(a[:, :, :3], a[:, :, 3])
    return np.array(np.broadcast_to(a, a.shape[:2] + (3,)), order="C")


def to_mask(mask: Any, what: str = "mask", max_side: int | None = None) -> np.ndarray:
    """A mask as a new HxW uint8 array (255 = act here). A layer whose alpha varies (a painted
    layer) is read by its alpha; otherwise by brightness, its brightest channel."""
    a = _array(mask, what, max_side)
    if a.ndim == 3 and a.shape[2] in (2, 4) and a[..., -1].min() != a[..., -1].max():
        return np.array(_to_uint8(a[..., -1], what), order="C")
    a = _to_uint8(a, what)
    if a.ndim == 3:
        a = a[..., :3].max(axis=2) if a.shape[2] >= 3 else a[..., 0]
    return np.array(a, order="C")


def gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))


def detect_size(height: int, width: int, resolution: int) -> tuple[int, int]:
    """(height, width) after controlnet_aux's resize_image: short side to `resolution`, each side
    rounded to the nearest multiple of 64."""
    k = float(resolution) / min(height, width)
    return int(np.round(height * k / 64.0)) * 64, int(np.round(width * k / 64.0)) * 64


def resize_for_detection(image: np.ndarray, resolution: int) -> np.ndarray:
    """controlnet_aux's resize_image: Lanczos when enlarging, area when shrinking."""
    height, width = image.shape[:2]
    new_h, new_w = detect_size(height, width, resolution)
    k = float(resolution) / min(height, width)
    return cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LANCZOS4 if k > 1 else cv2.INTER_AREA)


def resize_map(control_map: np.ndarray, width: int, height: int, interpolation: str = "linear") -> np.ndarray:
    """An annotator's finished map at the size its caller asked for; HxWx3 uint8. Linear, as
    controlnet_aux does, while the factor is under 2 (so maps match it at the sizes it makes);
    past it linear sampling skips pixels and thin lines vanish, so the map is fitted instead."""
    out = to_rgb(control_map, "annotator output")
    if out.shape[:2] == (height, width):
        return out
    if interpolation == "nearest":
        return fit(out, width, height, labels=True)
    if out.shape[1] >= 2 * width or out.shape[0] >= 2 * height:
        return fit(out, width, height)
    return np.ascontiguousarray(cv2.resize(out, (width, height), interpolation=cv2.INTER_LINEAR))


def _is_grey(x: np.ndarray) -> bool:
    return x.ndim == 2 or bool((x[..., 0] == x[..., 1]).all() and (x[..., 0] == x[..., 2]).all())


def is_binary(x: np.ndarray) -> bool:
    """Two grey levels, dark and light: an edge, scribble or line map (sd-webui-controlnet's test)."""
    if not _is_grey(x):
        return False
    grey = x if x.ndim == 2 else x[..., 0]
    lo, hi = int(grey.min()), int(grey.max())
    return lo < 16 and hi > 240 and bool(((grey == lo) | (grey == hi)).all())


def colour_count(x: np.ndarray, stop_at: int = MAX_LABEL_COLOURS) -> int:
    """Distinct colours of a uint8 map, counted up to `stop_at` (more is "many")."""
    flat = x.reshape(-1) if x.ndim == 2 else (
        x[..., 0].astype(np.uint32) << 16 | x[..., 1].astype(np.uint32) << 8 | x[..., 2]).reshape(-1)
    # A strided sample finds "many" cheaply for photos and soft maps; only few-colour maps are counted in full.
    if len(np.unique(flat[::97])) >= stop_at:
        return stop_at
    return min(len(np.unique(flat)), stop_at)


def scale_map(x: np.ndarray, width: int, height: int, labels: bool = False) -> np.ndarray:
    """A control map (HxW or HxWx3 uint8) at width x height by the rules in the module docstring.
    labels=True: its colours are classes whatever their number (nearest neighbour)."""
    h, w = x.shape[:2]
    if (w, h) == (width, height):
        return np.ascontiguousarray(x)
    shrinking = width * height < w * h
    smooth = cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
    binary = not labels and is_binary(x)
    if labels or (not binary and not _is_grey(x) and colour_count(x) < MAX_LABEL_COLOURS):
        return np.ascontiguousarray(cv2.resize(x, (width, height), interpolation=cv2.INTER_NEAREST))
    y = cv2.resize(x, (width, height), interpolation=smooth)
    if not binary:
        return np.ascontiguousarray(y)
    grey = np.ascontiguousarray(y if y.ndim == 2 else y[..., 0])
    if grey.max() == grey.min():
        return np.ascontiguousarray(y)
    _, line = cv2.threshold(grey, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return np.ascontiguousarray(line if x.ndim == 2 else np.repeat(line[..., None], 3, axis=2))


def border_colour(x: np.ndarray) -> np.ndarray:
    """The median of a map's four borders, per channel: what "fill" pads with (the extension's
    rule), so a depth map is padded with the depth at its edge, not with "infinitely far"."""
    borders = np.concatenate([x[0], x[-1], x[:, 0], x[:, -1]], axis=0)
    return np.median(borders, axis=0).astype(x.dtype)


def fit(image: np.ndarray, width: int, height: int, mode: str = "just_resize", labels: bool = False) -> np.ndarray:
    """A map (HxW or HxWx3 uint8) fitted to width x height in one of RESIZE_MODES, as AUTOMATIC1111's
    ControlNet extension fits it: stretch (just_resize); cover and centre-crop (crop); fit inside
    and pad with the border's median colour (fill)."""
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize_mode {mode!r} is not one of {', '.join(RESIZE_MODES)}")
    x = np.asarray(image)
    if x.dtype != np.uint8 or x.ndim not in (2, 3) or (x.ndim == 3 and x.shape[2] != 3):
        raise ValueError(f"a map to fit must be HxW or HxWx3 uint8 (see to_rgb / to_mask); got {x.dtype} {x.shape}")
    h, w = x.shape[:2]
    if (w, h) == (width, height):
        return np.ascontiguousarray(x)
    if mode == "just_resize":
        return scale_map(x, width, height, labels)
    k = max(width / w, height / h) if mode == "crop" else min(width / w, height / h)
    nw, nh = max(1, int(np.round(w * k))), max(1, int(np.round(h * k)))
    scaled = scale_map(x, nw, nh, labels)
    if mode == "crop":
        y0, x0 = max(0, (nh - height) // 2), max(0, (nw - width) // 2)
        return np.ascontiguousarray(scaled[y0:y0 + height, x0:x0 + width])
    out = np.empty((height, width) + x.shape[2:], dtype=x.dtype)
    out[...] = border_colour(x)
    y0, x0 = max(0, (height - nh) // 2), max(0, (width - nw) // 2)
    out[y0:y0 + nh, x0:x0 + nw] = scaled[:height, :width]
    return out
