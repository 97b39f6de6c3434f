"""Weight-free maps that keep the picture's colours: content shuffle, tile, colour grid."""
from __future__ import annotations

import cv2
import numpy as np

from .image import resize_for_detection
from .registry import DETECT_RESOLUTION, Param, annotator


def _smooth_noise(rng: np.random.Generator, height: int, width: int, scale: int) -> np.ndarray:
    """Noise in [0, 1] that varies over about `scale` pixels: coarse uniform noise, upsampled
    cubically with a margin so the borders are as smooth as the middle."""
    coarse = rng.uniform(0.0, 1.0, (height // scale + 2, width // scale + 2)).astype(np.float32)
    big = cv2.resize(coarse, (width + 2 * scale, height + 2 * scale), interpolation=cv2.INTER_CUBIC)
    noise = big[scale:scale + height, scale:scale + width]
    noise -= noise.min()
    return noise / max(float(noise.max()), 1e-5)


@annotator(
    "shuffle", kind="shuffle",
    description="Content shuffle: the picture's pixels moved along a smooth random flow, keeping "
                "its colours and textures but not its layout. The seed makes it repeatable.",
    params=(
        Param("seed", "int", 0, 0, 2**31 - 1, 1, help="which random flow"),
        Param("flow_scale", "int", 256, 16, 2048, 16, help="pixels over which the flow varies; larger is smoother"),
        DETECT_RESOLUTION,
    ),
)
def shuffle(image: np.ndarray, seed: int, flow_scale: int, detect_resolution: int) -> np.ndarray:
    x = resize_for_detection(image, detect_resolution)
    height, width = x.shape[:2]
    rng = np.random.default_rng(seed)
    map_x = _smooth_noise(rng, height, width, flow_scale) * float(width - 1)
    map_y = _smooth_noise(rng, height, width, flow_scale) * float(height - 1)
    return cv2.remap(x, map_x, map_y, cv2.INTER_LINEAR)


@annotator(
    "tile", kind="tile",
    description="The picture itself, down-sampled and optionally blurred: the tile ControlNet adds "
                "the detail back.",
    params=(
        Param("down_sampling_rate", "float", 1.0, 1.0, 8.0, 0.1, help="how many times smaller the map is made"),
        Param("blur_sigma", "float", 0.0, 0.0, 16.0, 0.1, help="Gaussian blur in pixels of the result; 0: none"),
    ),
)
def tile(image: np.ndarray, down_sampling_rate: float, blur_sigma: float) -> np.ndarray:
    height, width = image.shape[:2]
    small = (max(1, round(width / down_sampling_rate)), max(1, round(height / down_sampling_rate)))
    x = cv2.resize(image, small, interpolation=cv2.INTER_AREA) if small != (width, height) else image
    return cv2.GaussianBlur(x, (0, 0), blur_sigma) if blur_sigma > 0 else x


@annotator(
    "color_grid", kind="color",
    description="Colour grid: the picture's average colour in square cells, for colour/T2I-adapter "
                "style control.",
    params=(
        Param("grid_size", "int", 64, 4, 512, 4, help="cell size in pixels at the detection resolution"),
        DETECT_RESOLUTION,
    ),
    interpolation="nearest",
)
def color_grid(image: np.ndarray, grid_size: int, detect_resolution: int) -> np.ndarray:
    x = resize_for_detection(image, detect_resolution)
    height, width = x.shape[:2]
    cells = (max(1, width // grid_size), max(1, height // grid_size))
    small = cv2.resize(x, cells, interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_NEAREST)
