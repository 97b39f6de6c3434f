"""Fidelity judges for segmentation and pose maps (demo/__init__.py registers them with engine.fidelity).

- Segmentation: the picture is cut into colour regions (colours clustered, then connected
  pieces of one cluster; specks merged into their nearest region). Each region takes the map
  class it mostly covers, and the score is the mean IoU of the map's classes. Regions, not
  colours, are matched because one class may hold several colours (a person's shirt, skin and
  pants; a two-tone background) and one colour several classes (two red shapes).
- Pose: the silhouette of the figures in the picture (pixels unlike the background) against the
  silhouette the world's renderer draws for the keypoints read back from the pose map.
"""
from __future__ import annotations

import cv2
import numpy as np

import annotators

from . import draw, figure, world

# A map colour is a class when it covers at least this share of the map; rarer colours are
# treated as blending at class edges (a resized map) and left out of the score.
MIN_CLASS_FRACTION = 0.001
MAX_BLENDED_FRACTION = 0.05
MAX_CLASSES = 64
# Colour histogram bins and the least distance between two picture colours (CIELAB units; the
# world's colours lie 25 or more apart, a picture's noise spreads a colour over ~10).
COLOUR_BIN, COLOUR_MERGE = 8.0, 20.0
MAX_COLOURS = 16
# Regions smaller than this share of the picture are specks (noise, antialiased edges).
MIN_REGION_FRACTION = 0.002
# How many colour regions may make up one connected part of a class: a world shape is one
# colour (2 leaves room for a shading split), a world figure five (shirt, pants, head, two
# forearms); other palettes' classes get 3.
REGIONS_PER_PART = {"person": 6, "": 3}
REGIONS_PER_SHAPE = 2
FOREGROUND_DISTANCE = 60.0          # as demo.judges: RGB distance that makes a pixel "object"
BACKGROUND_TONE_SHARE = 0.1         # a border colour this common is a background tone
# Keypoints the renderer needs to draw a figure (ears are not drawn; eyes default to the nose,
# and the nose, which a small map's eye and ear circles may hide, to its place above the neck).
FIGURE_KEYPOINTS = tuple(range(1, 14))


def map_classes(control_map: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(HxW class index per pixel, -1 where left out; (n classes, 3) class colours) of a
    segmentation map."""
    flat = control_map.reshape(-1, 3).astype(np.int32)
    keys = (flat[:, 0] << 16) | (flat[:, 1] << 8) | flat[:, 2]
    colours, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    is_class = counts >= max(4, MIN_CLASS_FRACTION * keys.size)
    blended = counts[~is_class].sum() / keys.size
    if blended > MAX_BLENDED_FRACTION or is_class.sum() > MAX_CLASSES:
        raise ValueError(
            f"the control map is not a segmentation map: {len(colours)} distinct colours, "
            f"{blended:.0%} of pixels in colours too rare to be classes; a segmentation map paints "
            "each class in one flat colour (resize it with nearest-neighbour, not smoothly)")
    index = np.full(len(colours), -1, np.int64)
    index[is_class] = np.arange(int(is_class.sum()))
    keys = colours[is_class]
    rgb = np.stack([(keys >> 16) & 255, (keys >> 8) & 255, keys & 255], axis=1)
    return index[inverse].reshape(control_map.shape[:2]), rgb.astype(np.uint8)


def scored_classes(colours: np.ndarray) -> list[int]:
    """The classes averaged into the score. A map drawn in the demo world's palette leaves its
    "background" class out (as ADE20K's benchmark leaves out "other"): it holds most of every map,
    so any picture with a plain backdrop would match it well whether or not it followed the map.
    Its pixels still count against whatever class a picture puts there."""
    palette = {tuple(c) for c in draw.SEG_COLOURS.values()}
    demo = all(tuple(int(v) for v in c) in palette for c in colours)
    skip = tuple(draw.SEG_COLOURS["background"])
    return [i for i, c in enumerate(colours) if not (demo and tuple(int(v) for v in c) == skip)]


def _palette(lab: np.ndarray) -> np.ndarray:
    """Cluster centres of the picture's colours: the most common colours (histogram peaks, each
    at least COLOUR_MERGE from the others, so noise around one colour stays one colour), refined
    by a few k-means steps. Colours too rare to be peaks (antialiased edges) join their nearest."""
    sample = lab[:: max(1, len(lab) // 20000)]
    bins = np.floor(sample / COLOUR_BIN).astype(np.int64)
    keys = (bins[:, 0] * 1000 + bins[:, 1] + 500) * 1000 + bins[:, 2] + 500
    uniq, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    means = np.zeros((len(uniq), 3))
    np.add.at(means, inverse, sample)
    means /= counts[:, None]
    centres: list[np.ndarray] = []
    for i in np.argsort(-counts, kind="stable"):
        if counts[i] < MIN_REGION_FRACTION * len(sample) or len(centres) == MAX_COLOURS:
            break
        if all(np.linalg.norm(means[i] - c) > COLOUR_MERGE for c in centres):
            centres.append(means[i])
    c = np.array(centres) if centres else sample.mean(0, keepdims=True)
    for _ in range(5):
        nearest = np.argmin(((sample[:, None, :] - c[None]) ** 2).sum(-1), axis=1)
        for k in range(len(c)):
            members = sample[nearest == k]
            if len(members):
                c[k] = members.mean(axis=0)
    return c


def colour_regions(image: np.ndarray) -> np.ndarray:
    """HxW region ids (0..n-1): connected pieces of one colour cluster, specks merged away."""
    h, w = image.shape[:2]
    smooth = cv2.medianBlur(image, 3)
    lab = cv2.cvtColor(smooth.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB).reshape(-1, 3)
    centres = _palette(lab)
    cluster = np.empty(len(lab), np.int64)
    for start in range(0, len(lab), 65536):   # bounded memory for large pictures
        part = lab[start:start + 65536]
        cluster[start:start + 65536] = np.argmin(((part[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
    cluster = cluster.reshape(h, w)
    regions = np.full((h, w), -1, np.int64)
    min_area = max(4, int(MIN_REGION_FRACTION * h * w))
    n = 0
    for k in range(len(centres)):
        count, comp, stats, _ = cv2.connectedComponentsWithStats((cluster == k).astype(np.uint8), connectivity=4)
        for c in range(1, count):
            if stats[c, cv2.CC_STAT_AREA] >= min_area:
                regions[comp == c] = n
                n += 1
    if n == 0:
        return np.zeros((h, w), np.int64)
    specks = regions < 0
    if specks.any():
        from scipy import ndimage
        # Each speck pixel joins the region of the nearest pixel that belongs to one.
        _, (iy, ix) = ndimage.distance_transform_edt(specks, return_indices=True)
        regions = regions[iy, ix]
    return regions


def _regions_per_part(colour: np.ndarray) -> int:
    names = {v: k for k, v in draw.SEG_COLOURS.items()}
    name = names.get(tuple(int(v) for v in colour), "")
    if name in REGIONS_PER_PART:
        return REGIONS_PER_PART[name]
    return REGIONS_PER_SHAPE if name else REGIONS_PER_PART[""]


def _parts(mask: np.ndarray) -> int:
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    min_area = max(4, int(MIN_REGION_FRACTION * mask.size))
    return max(1, int((stats[1:, cv2.CC_STAT_AREA] >= min_area).sum()))


def seg_score(image: np.ndarray, control_map: np.ndarray) -> float | None:
    """Mean IoU between the picture's colour regions (each labelled with the map class it mostly
    covers) and the map's classes (see scored_classes); None for a map of one class (no layout
    to follow)."""
    truth, colours = map_classes(control_map)
    n_classes, wanted = len(colours), scored_classes(colours)
    if n_classes < 2 or not wanted:
        return None
    regions = colour_regions(image)
    n_regions = int(regions.max()) + 1
    valid = truth >= 0
    overlap = np.bincount(regions[valid] * n_classes + truth[valid],
                          minlength=n_regions * n_classes).reshape(n_regions, n_classes)
    label = np.where(overlap.sum(1) > 0, overlap.argmax(1), -1)
    # A class takes only its largest few regions per connected part of it in the map: a picture
    # broken into many small patches (texture, blotches) could otherwise trace any map by
    # labelling each patch after the class under it.
    for c in range(n_classes):
        mine = np.flatnonzero(label == c)
        keep = _regions_per_part(colours[c]) * _parts(truth == c)
        if len(mine) > keep:
            label[mine[np.argsort(-overlap[mine, c], kind="stable")[keep:]]] = -1
    pred = label[regions][valid]
    t = truth[valid]
    ious = []
    for c in wanted:
        p, q = pred == c, t == c
        ious.append((p & q).sum() / max(1, (p | q).sum()))
    return float(np.mean(ious))


def background_tones(image: np.ndarray) -> np.ndarray:
    """(n, 3) colours of the picture's border common enough to be background (a two-tone
    background has two): the densest border colour, then the densest of what is left, ..."""
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]]).astype(np.float32)
    border = border[:: max(1, len(border) // 1024)]
    left, tones = border, []
    while len(left) >= BACKGROUND_TONE_SHARE * len(border) and len(tones) < 3:
        d = np.linalg.norm(left[:, None] - left[None], axis=2)
        peak = int(np.argmax((d < 30).sum(1)))
        tones.append(left[d[peak] < 30].mean(axis=0))
        left = left[d[peak] >= FOREGROUND_DISTANCE]
    return np.array(tones, np.float32)


def foreground(image: np.ndarray) -> np.ndarray:
    """Boolean mask of the pixels unlike every background tone, specks and one-pixel lines
    (the antialiased seam of a two-tone background) removed."""
    tones = background_tones(image)
    px = image.astype(np.float32)
    dist = np.min([np.linalg.norm(px - t, axis=2) for t in tones], axis=0)
    fg = (dist > FOREGROUND_DISTANCE).astype(np.uint8)
    return cv2.morphologyEx(fg, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)).astype(bool)


def pose_people(control_map: np.ndarray) -> list[np.ndarray]:
    """(18, 3) keypoints (x, y in the map's pixels, confidence) of each person in a pose map."""
    pose = annotators.pose_from_map(control_map)
    return [np.asarray(p["pose_keypoints_2d"], np.float64).reshape(18, 3) for p in pose["people"]]


def figure_silhouette(people: list[np.ndarray], height: int, width: int,
                      scale: tuple[float, float] = (1.0, 1.0)) -> np.ndarray | None:
    """The silhouette the world's renderer draws for these keypoints (map pixels, times `scale`
    (x, y) to reach the picture's) as an HxW bool mask, or None when no person has the
    keypoints a figure needs."""
    side = max(height, width)
    figures = []
    for k in people:
        if not (k[list(FIGURE_KEYPOINTS), 2] > 0).all():
            continue
        xy = k[:, :2].copy()
        if k[0, 2] <= 0:
            u = figure.unit_length(xy)
            xy[0] = xy[1] - [0.0, figure.NECK_TO_NOSE * u]
        for eye in (14, 15):
            if k[eye, 2] <= 0:
                xy[eye] = xy[0]
        # render_pose draws a point at the pixel its coordinate truncates to; its centre is half
        # a pixel further on average. Fractions of a square canvas keep the aspect.
        frac = tuple((float(x), float(y)) for x, y in (xy + 0.5) * scale / side)
        figures.append(world.Figure("", "", "", False, frac, 0.0, (0, 0, 0), (0, 0, 0)))
    if not figures:
        return None
    bg = world.Background(("black",), "", 0.5, ((0, 0, 0),))
    scene = world.Scene(0, bg, (), tuple(figures), "")
    mask = np.zeros((side, side), bool)
    for layer in draw.layers(scene, side):
        mask |= layer.alpha >= 0.5
    return mask[:height, :width]


def pose_score(image: np.ndarray, control_map: np.ndarray) -> float | None:
    """IoU between the picture's foreground and the silhouette drawn for the map's pose; None for
    an empty map (nothing to follow). The map may have any size: keypoints are read at the map's
    own size (shrunk maps lose their small keypoint circles) and scaled to the picture."""
    if control_map.max() < 32:
        return None
    people = pose_people(control_map)
    if not people:
        raise ValueError("the control map is not an OpenPose map: no skeleton (keypoints in OpenPose's "
                         "colours joined by limbs) could be read from it")
    h, w = image.shape[:2]
    wanted = figure_silhouette(people, h, w, (w / control_map.shape[1], h / control_map.shape[0]))
    if wanted is None:
        return None
    found = foreground(image)
    union = (found | wanted).sum()
    return float((found & wanted).sum() / union) if union else None
