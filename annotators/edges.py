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


def darker_than_surroundings(x: np.ndarray, sigma: float, fine_sigma: float = 0.0) -> np.ndarray:
    """Difference of Gaussians: how much darker each pixel (blurred by `fine_sigma`) is than its
    surroundings (blurred by `sigma`), in the channel where it is least so: a line is darker in all."""
    fine = cv2.GaussianBlur(x, (0, 0), fine_sigma) if fine_sigma > 0 else x
    return np.min(cv2.GaussianBlur(x, (0, 0), sigma) - fine, axis=2)


@annotator(
    "lineart_standard", kind="lineart",
    description="Line art by difference of Gaussians (controlnet_aux's LineartStandardDetector): "
                "white lines on black, no weights.",
    params=(
        Param("gaussian_sigma", "float", 6.0, 0.5, 32.0, 0.1, help="blur that the picture is compared with"),
        Param("intensity_threshold", "int", 8, 0, 64, 1, help="darkening below this is ignored when normalising"),
        DETECT_RESOLUTION,
    ),
)
def lineart_standard(image: np.ndarray, gaussian_sigma: float, intensity_threshold: int,
                     detect_resolution: int) -> np.ndarray:
    x = resize_for_detection(image, detect_resolution).astype(np.float32)
    darker = darker_than_surroundings(x, gaussian_sigma).clip(0, 255)
    strong = darker[darker > intensity_threshold]
    median = float(np.median(strong)) if strong.size else 0.0
    darker /= max(16.0, median)
    return gray_to_rgb((darker * 127).clip(0, 255).astype(np.uint8))


@annotator(
    "scribble_xdog", kind="scribble",
    description="Scribble from a photo by extended difference of Gaussians: white lines on black.",
    params=(
        Param("threshold", "int", 32, 1, 64, 1, help="lower finds more, fainter lines"),
        DETECT_RESOLUTION,
    ),
)
def scribble_xdog(image: np.ndarray, threshold: int, detect_resolution: int) -> np.ndarray:
    x = resize_for_detection(image, detect_resolution).astype(np.float32)
    darker = darker_than_surroundings(x, 5.0, fine_sigma=0.5)
    return gray_to_rgb(((darker > threshold) * 255).astype(np.uint8))


@annotator(
    "binary", kind="scribble",
    description="Dark pixels white, light pixels black, at one gray threshold (0: Otsu's automatic one).",
    params=(
        Param("threshold", "int", 0, 0, 255, 1, help="gray level below which a pixel is ink; 0 picks it by Otsu"),
        DETECT_RESOLUTION,
    ),
)
def binary(image: np.ndarray, threshold: int, detect_resolution: int) -> np.ndarray:
    gray = cv2.cvtColor(resize_for_detection(image, detect_resolution), cv2.COLOR_RGB2GRAY)
    flags = cv2.THRESH_BINARY_INV | (cv2.THRESH_OTSU if threshold == 0 else 0)
    _, ink = cv2.threshold(gray, threshold, 255, flags)
    return gray_to_rgb(ink)


@annotator(
    "invert", kind="lineart",
    description="The picture inverted: black lines on white become white lines on black, "
                "as line art and scribble ControlNets read them.",
)
def invert(image: np.ndarray) -> np.ndarray:
    return 255 - image
