"""Inpaint mask: a painted mask made clean, grown and feathered."""
from __future__ import annotations

import cv2
import numpy as np

from .image import gray_to_rgb
from .registry import Param, annotator


@annotator(
    "inpaint_mask", kind="inpaint",
    description="A painted mask (light = repaint) as white-on-black: thresholded, optionally grown, "
                "feathered or inverted. The engine marks these pixels for the inpaint ControlNet.",
    params=(
        Param("threshold", "int", 127, 0, 254, 1, help="gray level above which a pixel is to be repainted"),
        Param("grow", "int", 0, 0, 128, 1, help="pixels the mask is widened by"),
        Param("feather", "float", 0.0, 0.0, 64.0, 0.5, help="Gaussian softening of the mask's edge, in pixels"),
        Param("invert", "bool", False, help="repaint the dark part instead"),
    ),
)
def inpaint_mask(image: np.ndarray, threshold: int, grow: int, feather: float, invert: bool) -> np.ndarray:
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    mask = ((gray <= threshold) if invert else (gray > threshold)).astype(np.uint8) * 255
    if grow > 0:
        mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1)))
    if feather > 0:
        mask = cv2.GaussianBlur(mask, (0, 0), feather)
    return gray_to_rgb(mask)
