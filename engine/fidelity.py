"""Condition fidelity: how closely a generated picture follows the control map it was made from.

`score(kind, image, control_map)` is a number in [0, 1] (higher follows better), or None where
no judge exists yet for that kind of condition. The GUI's fidelity meter, the training loop's
fidelity curve and the demo model's quality tests all call it, so they agree.

Edge kinds (scribble, canny, lineart, softedge, mlsd, ...): F1 between the picture's edges
and the map's lines, where a pixel counts as matched if the other side has an edge within
EDGE_TOLERANCE pixels (the usual boundary F1 of edge-detection benchmarks).

Other kinds register their judges here (`register`): the demo model's package registers its
world's seg, openpose and depth judges when it is imported (demo/__init__.py).
Maps are fitted to the picture's size first by the pictures module's rules (annotators.image.fit,
as the engine fitted them for the ControlNet), seg maps always by nearest neighbour (class colours
must not blend, however many there are). A judge registered with native_map=True gets the map at
its own size (a pose map's keypoints are read at its own size and scaled: a 512 px editor map
shrunk to a 128 px picture, even by nearest-neighbour, loses its keypoint circles).
"""
from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

from annotators.image import fit, to_rgb

EDGE_KINDS = ("scribble", "canny", "lineart", "lineart_anime", "softedge", "hed", "pidinet", "mlsd")
EDGE_TOLERANCE = 2.0
# Canny thresholds for the picture's edges: low enough for the soft edges of a decoded image.
PICTURE_CANNY = (50, 120)

# Maps whose colours are labels: resized without blending them.
LABEL_KINDS = ("seg",)

Judge = Callable[[np.ndarray, np.ndarray], "float | None"]
_JUDGES: dict[str, Judge] = {}
_NATIVE: set[str] = set()


def register(kind: str, judge: Judge, native_map: bool = False) -> None:
    """Add (or replace) the judge of one condition kind. native_map=True: the judge gets the
    map at its own size and fits it to the picture itself."""
    _JUDGES[kind] = judge
    (_NATIVE.add if native_map else _NATIVE.discard)(kind)


def kinds() -> list[str]:
    """Condition kinds that have a judge."""
    return sorted(_JUDGES)


def _rgb(image, name: str) -> np.ndarray:
    arr = to_rgb(image, name)
    if arr.shape[0] < 8 or arr.shape[1] < 8:
        raise ValueError(f"{name} must be an HxWx3 picture of at least 8x8 pixels, got {arr.shape[1]}x{arr.shape[0]}")
    return arr


def picture_edges(image: np.ndarray) -> np.ndarray:
    """The picture's edges as a boolean map (Canny on its gray levels, lightly smoothed)."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    gray = cv2.GaussianBlur(gray, (3, 3), 0)
    return cv2.Canny(gray, *PICTURE_CANNY) > 0


def map_lines(control_map: np.ndarray) -> np.ndarray:
    """The map's lines as a boolean map one pixel wide (strokes of any width thinned to their centre)."""
    gray = control_map.max(axis=2)
    if gray.max() == 0:
        return np.zeros(gray.shape, bool)
    ink = gray >= max(32, int(gray.max()) // 3)
    from skimage.morphology import skeletonize  # lazy: costs ~0.4 s to import
    return skeletonize(ink)


def edge_f1(found: np.ndarray, wanted: np.ndarray, tolerance: float = EDGE_TOLERANCE) -> float:
    """F1 of two boolean edge maps of one size, matching pixels within `tolerance` px."""
    if not found.any() or not wanted.any():
        return 0.0
    # Distance from every pixel to the nearest edge pixel of each map.
    to_wanted = cv2.distanceTransform((~wanted).astype(np.uint8), cv2.DIST_L2, 3)
    to_found = cv2.distanceTransform((~found).astype(np.uint8), cv2.DIST_L2, 3)
    precision = float((to_wanted[found] <= tolerance).mean())
    recall = float((to_found[wanted] <= tolerance).mean())
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def edge_score(image: np.ndarray, control_map: np.ndarray) -> float | None:
    """Edge F1 between the picture and a line map; None for a map with no lines (nothing to follow)."""
    lines = map_lines(control_map)
    if not lines.any():
        return None
    return edge_f1(picture_edges(image), lines)


def score(kind: str, image, control_map) -> float | None:
    """How well `image` (HxWx3) follows `control_map` (HxWx3, resized to the image if needed)
    for a ControlNet of condition `kind`; None where no judge exists for that kind."""
    judge = _JUDGES.get(kind)
    if judge is None:
        return None
    img, cmap = _rgb(image, "image"), _rgb(control_map, "control_map")
    if cmap.shape[:2] != img.shape[:2] and kind not in _NATIVE:
        cmap = fit(cmap, img.shape[1], img.shape[0], labels=kind in LABEL_KINDS)
    return judge(img, cmap)


for _kind in EDGE_KINDS:
    register(_kind, edge_score)
