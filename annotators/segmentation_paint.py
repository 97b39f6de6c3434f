"""Segmentation from a painted colour map: every pixel snapped to the nearest class colour."""
from __future__ import annotations

import numpy as np

from .palettes import ADE20K, DEMO_WORLD, palette_array
from .registry import Param, annotator, extend_choices

_PALETTES: dict[str, np.ndarray] = {"ade20k": palette_array(ADE20K), "demo": palette_array(DEMO_WORLD)}


def add_palette(name: str, colors: object) -> None:
    """Make another palette (a user's own classes) available as `palette=name`."""
    arr = np.asarray(colors)
    if arr.ndim != 2 or arr.shape[1] != 3 or len(arr) == 0 or arr.min() < 0 or arr.max() > 255:
        raise ValueError(f"palette {name!r} must be a list of [R, G, B] colours (0..255), got shape {arr.shape}")
    _PALETTES[name] = arr.astype(np.uint8)
    extend_choices("segmentation_paint", "palette", name)


def snap_to_palette(image: np.ndarray, palette: object) -> np.ndarray:
    """Each pixel of an HxWx3 uint8 image replaced by the nearest colour of `palette` ((N, 3), RGB)."""
    from scipy.spatial import cKDTree  # lazy: only this annotator needs it

    palette = np.asarray(palette, np.uint8)
    packed = (image[..., 0].astype(np.int32) << 16) | (image[..., 1].astype(np.int32) << 8) | image[..., 2]
    # Painted maps hold few distinct colours: look those up, not every pixel.
    colors, inverse = np.unique(packed.ravel(), return_inverse=True)
    rgb = np.stack([(colors >> 16) & 255, (colors >> 8) & 255, colors & 255], axis=1)
    _, nearest = cKDTree(palette.astype(np.float64)).query(rgb.astype(np.float64))
    return palette[nearest[inverse]].reshape(image.shape)


@annotator(
    "segmentation_paint", kind="seg",
    description="A painted colour map made exact: every pixel snapped to the nearest class colour of "
                "the palette (ADE20K's 150 classes by default, as segmentation ControlNets read; demo: the demo "
                "model's classes).",
    params=(Param("palette", "choice", "ade20k", choices=tuple(_PALETTES), help="which class colours to snap to"),),
    interpolation="nearest",
)
def segmentation_paint(image: np.ndarray, palette: str) -> np.ndarray:
    return snap_to_palette(image, _PALETTES[palette])
