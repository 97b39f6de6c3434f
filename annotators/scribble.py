"""Scribble from a user's sketch: strokes found against the paper, redrawn white on black,
as scribble ControlNets read them."""
from __future__ import annotations

import cv2
import numpy as np

from .image import gray_to_rgb, resize_for_detection
from .registry import DETECT_RESOLUTION, Param, annotator

POLARITIES = ("auto", "dark_on_light", "light_on_dark")


def ink_mask(image: np.ndarray, polarity: str, threshold: int) -> np.ndarray:
    """Pixels that differ from the paper by more than `threshold` on the side the ink lies."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.int16)
    # The paper is what most of a sketch is, so its brightness is the median.
    paper = int(np.median(gray))
    if polarity == "auto":
        polarity = "dark_on_light" if paper >= 128 else "light_on_dark"
    if polarity == "dark_on_light":
        return (paper - gray) > threshold
    return (gray - paper) > threshold


def restroke(mask: np.ndarray, width: int) -> np.ndarray:
    """Strokes redrawn at `width` px: thinned to their centre lines, then widened again."""
    from skimage.morphology import skeletonize  # lazy: skimage costs ~0.4 s to import

    centre = skeletonize(mask).astype(np.uint8)
    if width <= 1:
        return centre.astype(bool)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (width, width))
    return cv2.dilate(centre, kernel).astype(bool)


@annotator(
    "scribble", kind="scribble",
    description="A user's sketch as a scribble map: strokes (dark on light or light on dark, "
                "found automatically) become white on black; optionally redrawn at one width.",
    params=(
        Param("polarity", "choice", "auto", choices=POLARITIES,
              help="auto: the paper is the image's median brightness; ink is darker on light paper"),
        Param("threshold", "int", 48, 1, 254, 1, help="how far from the paper's brightness a pixel must be to be ink"),
        Param("stroke_width", "int", 0, 0, 64, 1, help="0 keeps strokes as drawn; n thins or thickens them to n px"),
        DETECT_RESOLUTION,
    ),
)
def scribble(image: np.ndarray, polarity: str, threshold: int, stroke_width: int,
             detect_resolution: int) -> np.ndarray:
    x = resize_for_detection(image, detect_resolution)
    mask = ink_mask(x, polarity, threshold)
    if stroke_width > 0:
        mask = restroke(mask, stroke_width)
    return gray_to_rgb(mask.astype(np.uint8) * 255)
