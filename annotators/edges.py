"""Weight-free edge and line maps: canny, lineart_standard, scribble_xdog, binary, invert."""
from __future__ import annotations

import cv2
import numpy as np

from .image import gray_to_rgb, resize_for_detection
from .registry import DETECT_RESOLUTION, Param, annotator


@annotator(
    "canny", kind="canny",
    description="Canny edges (OpenCV), as controlnet_aux's CannyDetector: white edges on black.",
    params=(
        Param("low_threshold", "int", 100, 1, 255, 1, help="weaker gradients than this are never edges"),
        Param("high_threshold", "int", 200, 1, 255, 1, help="stronger gradients than this always are"),
        DETECT_RESOLUTION,
    ),
)
def canny(image: np.ndarray, low_threshold: int, high_threshold: int, detect_resolution: int) -> np.ndarray:
    x = resize_for_detection(image, detect_resolution)
    return gray_to_rgb(cv2.Canny(x, low_threshold, high_threshold))
