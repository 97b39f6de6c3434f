"""A person mask from a photo with the selfie-segmentation model inside mediapipe's wheel: white
where a person is, black elsewhere. For a unit's mask ("act on the person only") or an inpaint
mask; no weight files."""
from __future__ import annotations

import cv2
import numpy as np

from . import bundled
from .image import gray_to_rgb
from .registry import Param, annotator

def person_probability(image: np.ndarray, landscape: bool) -> np.ndarray:
    """HxW float32 in [0, 1]: how likely each pixel is a person's (a fresh graph per photo, as
    pose_mediapipe does, so a photo always gives the same mask)."""
    mp = bundled.mediapipe()
    with mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=1 if landscape else 0) as model:
        found = model.process(np.ascontiguousarray(image)).segmentation_mask
    return np.clip(np.asarray(found, np.float32), 0.0, 1.0)


@annotator(
    "person_mask", kind="mask", bundled=bundled.MEDIAPIPE_SELFIE,
    description="Where the people in a photo are, white on black (mediapipe's bundled selfie "
                "segmentation): a unit's mask to act on the person only, or an inpaint mask.",
    params=(
        Param("threshold", "float", 0.5, 0.01, 0.99, 0.01, help="person probability a pixel needs"),
        Param("grow", "int", 0, 0, 128, 1, help="pixels the mask is widened by"),
        Param("landscape", "bool", False, help="mediapipe's landscape model (wide shots) instead of the general one"),
        Param("invert", "bool", False, help="everything but the person"),
    ),
)
def person_mask(image: np.ndarray, threshold: float, grow: int, landscape: bool, invert: bool) -> np.ndarray:
    mask = person_probability(image, landscape) >= threshold
    if invert:
        mask = ~mask
    out = mask.astype(np.uint8) * 255
    if grow > 0:
        out = cv2.dilate(out, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1)))
    return gray_to_rgb(out)
