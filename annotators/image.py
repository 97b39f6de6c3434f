"""Pictures in, pictures out: normalising inputs to HxWx3 uint8 and controlnet_aux's resize rules."""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from PIL import Image


def _composite_on_white(color: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    # Same arithmetic as controlnet_aux's HWC3 (truncating), so maps match it bit for bit.
    a = alpha.astype(np.float32)[..., None] / 255.0
    y = color.astype(np.float32) * a + 255.0 * (1.0 - a)
    return y.clip(0, 255).astype(np.uint8)


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if arr.dtype == np.uint16:
        return ((arr.astype(np.float32) + 128.0) / 257.0).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        a = np.nan_to_num(arr.astype(np.float32))
        # Floats in [0, 1] are the usual convention (PIL "F", skimage); larger ones are 0..255.
        scale = 255.0 if a.size and a.max() <= 1.0 else 1.0
        return (a * scale).round().clip(0, 255).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.integer):
        if arr.size and arr.max() > 255:
            return ((arr.astype(np.float64).clip(0, 65535) + 128.0) / 257.0).astype(np.uint8)
        return arr.clip(0, 255).astype(np.uint8)
    raise ValueError(f"image dtype {arr.dtype} is not supported; pass uint8, uint16, bool or float pixels")


def _pil_to_array(img: Image.Image) -> np.ndarray:
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        return np.asarray(img).astype(np.uint16 if img.mode.startswith("I;16") else np.int64)
    has_alpha = "A" in img.getbands() or "transparency" in img.info
    if img.mode in ("L", "RGB") and not has_alpha:
        return np.asarray(img)
    if img.mode == "F":
        return np.asarray(img)
    return np.asarray(img.convert("RGBA" if has_alpha else "RGB"))


def to_rgb_uint8(image: Any) -> np.ndarray:
    """Any picture (PIL image, or array: gray, gray+alpha, RGB, RGBA; uint8, uint16, bool, float)
    as HxWx3 uint8, alpha composited on white."""
    if isinstance(image, Image.Image):
        arr = _pil_to_array(image)
    elif isinstance(image, np.ndarray):
        arr = image
    else:
        raise ValueError(f"image must be a numpy array or a PIL image, got {type(image).__name__}")
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 2, 3, 4)):
        raise ValueError(f"image shape {arr.shape} is not a picture; pass HxW, HxWx1, HxWx2, HxWx3 or HxWx4")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"image is empty ({arr.shape[0]}x{arr.shape[1]} pixels); pass a picture at least 1x1")
    arr = _to_uint8(arr)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    channels = arr.shape[2]
    if channels == 1:
        return np.ascontiguousarray(np.repeat(arr, 3, axis=2))
    if channels == 2:
        return _composite_on_white(np.repeat(arr[:, :, :1], 3, axis=2), arr[:, :, 1])
    if channels == 4:
        return _composite_on_white(arr[:, :, :3], arr[:, :, 3])
    return np.ascontiguousarray(arr)


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
    """A finished map at the size the caller asked for; HxWx3 uint8."""
    out = to_rgb_uint8(control_map)
    if out.shape[:2] == (height, width):
        return out
    if interpolation == "linear" and (out.shape[1] >= 2 * width or out.shape[0] >= 2 * height):
        # Linear sampling reads every source pixel only while the factor is under 2; past it,
        # thin lines fall between the samples and vanish.
        return scale_map(out, width, height)
    # Otherwise controlnet_aux's own (linear), so maps match it at the sizes it makes.
    flag = cv2.INTER_NEAREST if interpolation == "nearest" else cv2.INTER_LINEAR
    return np.ascontiguousarray(cv2.resize(out, (width, height), interpolation=flag))


def is_binary(x: np.ndarray) -> bool:
    """Two grey levels, dark and light: an edge, scribble or line map (sd-webui-controlnet's test)."""
    if x.ndim == 3 and not ((x[..., 0] == x[..., 1]).all() and (x[..., 0] == x[..., 2]).all()):
        return False
    grey = x[..., 0] if x.ndim == 3 else x
    lo, hi = int(grey.min()), int(grey.max())
    return lo < 16 and hi > 240 and bool(((grey == lo) | (grey == hi)).all())


def scale_map(x: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize a control map. Shrinking averages (area), enlarging is Lanczos. A binary line map
    shrunk stays binary: averaged, then split by Otsu's threshold, so a 1-pixel line shrunk 4x
    is still a white line instead of fading to a grey the ControlNet barely reads (what
    sd-webui-controlnet's high_quality_resize does for such maps)."""
    h, w = x.shape[:2]
    shrinking = width * height < w * h
    y = cv2.resize(x, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LANCZOS4)
    if not shrinking or not is_binary(x):
        return np.ascontiguousarray(y)
    grey = y if y.ndim == 2 else y[..., 0]
    if grey.max() == grey.min():
        return np.ascontiguousarray(y)
    _, line = cv2.threshold(np.ascontiguousarray(grey), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return np.ascontiguousarray(np.repeat(line[..., None], 3, axis=2) if x.ndim == 3 else line)
