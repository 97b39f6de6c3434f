"""Condition fidelity: how closely a generated picture follows the control map it was made from.

`score(kind, image, control_map, model=None, annotator=None, annotator_params=None)` is a number
in [0, 1] (higher follows better), or None where no judge applies. The GUI's fidelity meter, the
training loop's fidelity curve and the demo model's quality tests all call it, so they agree.

Which judge depends on the model:
- The demo's models (`demo`, `demo:<kind>`; model=None: the caller scores pictures of the demo's
  own world, as training on it and its studies do): the registered judges. Edge kinds (scribble,
  canny, lineart, softedge, mlsd, ...) get F1 between the picture's edges and the map's lines, a
  pixel counting as matched if the other side has an edge within EDGE_TOLERANCE pixels (the usual
  boundary F1 of edge-detection benchmarks); the demo package registers its world's seg, openpose
  and depth judges (demo/__init__.py), which apply to demo models only.
- Any other model: judges built from annotators only. The picture is annotated again, with the
  unit's own annotator where it makes maps of that kind and its weights are present, else with
  the weight-free annotator of that kind, and the two maps are compared with one measure per map
  type (`compare_maps`): line F1 for line maps and poses, label agreement for segmentation,
  correlation for depth and normals. No annotator of the kind, or no measure: None.

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

# Map kinds compared as lines (an OpenPose map's limbs are lines too).
LINE_KINDS = EDGE_KINDS + ("openpose",)
FIELD_KINDS = ("depth", "normal")

Judge = Callable[[np.ndarray, np.ndarray], "float | None"]
_JUDGES: dict[str, Judge] = {}
_NATIVE: set[str] = set()


def register(kind: str, judge: Judge, native_map: bool = False) -> None:
    """Add (or replace) the judge of one condition kind for the demo's models. native_map=True:
    the judge gets the map at its own size and fits it to the picture itself."""
    _JUDGES[kind] = judge
    (_NATIVE.add if native_map else _NATIVE.discard)(kind)


def kinds() -> list[str]:
    """Condition kinds that have a judge for the demo's models."""
    return sorted(_JUDGES)


def is_demo(model: str | None) -> bool:
    """Whether the registered (demo world) judges apply: the demo's models, or None (the demo's world)."""
    return model is None or model == "demo" or model.startswith("demo:")


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


def score(kind: str, image, control_map, model: str | None = None, annotator: str | None = None,
          annotator_params: dict | None = None) -> float | None:
    """How well `image` (HxWx3) follows `control_map` (HxWx3, resized to the image if needed)
    for a ControlNet `model` of condition `kind` (None: a model of the demo's world); `annotator`
    and its params: what made the map. None where no judge applies."""
    img, cmap = _rgb(image, "image"), _rgb(control_map, "control_map")
    demo = is_demo(model)
    judge = _JUDGES.get(kind) if demo else None
    if demo and judge is None:
        return None
    if cmap.shape[:2] != img.shape[:2] and not (demo and kind in _NATIVE):
        cmap = fit(cmap, img.shape[1], img.shape[0], labels=kind in LABEL_KINDS)
    if demo:
        return judge(img, cmap)
    return annotator_score(kind, img, cmap, annotator, annotator_params)


def judge_annotator(kind: str, annotator: str | None = None) -> str | None:
    """The annotator that re-reads pictures for a non-demo model of `kind`: the unit's own where
    it makes `kind` maps and its weights are present, else a weight-free one of `kind` (the one
    named like the kind first); None where there is none."""
    import annotators
    if annotator and annotator in annotators.names():
        spec = annotators.spec(annotator)
        if spec["kind"] == kind and spec["weights_present"]:
            return annotator
    free = [n for n in annotators.names() if annotators.spec(n)["kind"] == kind and not annotators.spec(n)["learned"]]
    return kind if kind in free else (free[0] if free else None)


def annotator_score(kind: str, image: np.ndarray, control_map: np.ndarray, annotator: str | None = None,
                    annotator_params: dict | None = None) -> float | None:
    """The picture annotated again (judge_annotator) and compared with the map (compare_maps)."""
    if kind not in LINE_KINDS + LABEL_KINDS + FIELD_KINDS:
        return None
    name = judge_annotator(kind, annotator)
    if name is None:
        return None
    import annotators
    params = dict(annotator_params or {}) if name == annotator else {}
    return compare_maps(kind, annotators.run(name, image, **params), control_map)


def compare_maps(kind: str, found: np.ndarray, wanted: np.ndarray) -> float | None:
    """Agreement of two maps of one kind and size, in [0, 1]: line F1 for line maps, the share of
    pixels with the same label for segmentation, the (non-negative) correlation for depth and
    normals. None for a wanted map with nothing to follow, or a kind without a measure."""
    if kind in LINE_KINDS:
        wanted_lines = map_lines(wanted)
        return edge_f1(map_lines(found), wanted_lines) if wanted_lines.any() else None
    if kind in LABEL_KINDS:
        return float(np.all(found == wanted, axis=2).mean())
    if kind in FIELD_KINDS:
        a, b = found.astype(np.float64).ravel(), wanted.astype(np.float64).ravel()
        if a.std() == 0 or b.std() == 0:
            return None
        return max(0.0, float(np.corrcoef(a, b)[0, 1]))
    return None


for _kind in EDGE_KINDS:
    register(_kind, edge_score)
