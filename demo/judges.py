"""Judges of the world's pictures, built from the world's own renderer: what colour and what
shape the main object of a picture is. The demo's quality tests fit them on renders, check
them on held-out renders, then trust them on generated pictures."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from . import draw, world

MASK_SIZE = 24
FOREGROUND_DISTANCE = 60.0      # RGB distance from the background that makes a pixel "object"


def background_colour(image: np.ndarray) -> np.ndarray:
    """The median colour of the picture's border (the world's backgrounds fill the border)."""
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]]).astype(np.float32)
    return np.median(border, axis=0)


def main_object(image: np.ndarray, min_area: int = 20) -> np.ndarray | None:
    """Boolean mask of the largest region that differs from the background, or None."""
    dist = np.linalg.norm(image.astype(np.float32) - background_colour(image), axis=2)
    fg = (dist > FOREGROUND_DISTANCE).astype(np.uint8)
    fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
    if n <= 1:
        return None
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    if stats[best, cv2.CC_STAT_AREA] < min_area:
        return None
    return labels == best


def mask_features(mask: np.ndarray) -> np.ndarray:
    """The mask cut to its box, centred on a square (aspect kept), at MASK_SIZE^2, flattened."""
    ys, xs = np.nonzero(mask)
    crop = mask[ys.min():ys.max() + 1, xs.min():xs.max() + 1].astype(np.float32)
    h, w = crop.shape
    side = max(h, w)
    square = np.zeros((side, side), np.float32)
    square[(side - h) // 2:(side - h) // 2 + h, (side - w) // 2:(side - w) // 2 + w] = crop
    return cv2.resize(square, (MASK_SIZE, MASK_SIZE), interpolation=cv2.INTER_AREA).ravel()


@dataclass(frozen=True)
class Judges:
    colour_names: tuple[str, ...]
    colour_centroids: np.ndarray          # (n colours, 3)
    shape_labels: tuple[str, ...]         # one per training example
    shape_features: np.ndarray            # (n examples, MASK_SIZE^2)

    def colour(self, image: np.ndarray, mask: np.ndarray | None = None) -> str | None:
        mask = main_object(image) if mask is None else mask
        if mask is None:
            return None
        core = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        rgb = np.median(image[core if core.sum() >= 5 else mask].astype(np.float32), axis=0)
        return self.colour_names[int(np.argmin(np.linalg.norm(self.colour_centroids - rgb, axis=1)))]

    def shape(self, image: np.ndarray, mask: np.ndarray | None = None, k: int = 5) -> str | None:
        mask = main_object(image) if mask is None else mask
        if mask is None:
            return None
        d = np.abs(self.shape_features - mask_features(mask)).sum(axis=1)
        votes: dict[str, float] = {}
        for i in np.argsort(d)[:k]:
            votes[self.shape_labels[i]] = votes.get(self.shape_labels[i], 0.0) + 1.0 / (1.0 + d[i])
        return max(votes, key=votes.get)


def training_scene(seed: int) -> world.Scene:
    """A single shape of any colour, size and place, on a plain background of another colour."""
    rng = np.random.default_rng([seed, 0x10D6])
    colour, bg = (str(c) for c in rng.choice(list(world.COLOURS), size=2, replace=False))
    return world.single_shape_scene(seed, str(rng.choice(world.SHAPES)), colour, bg,
                                    size=str(rng.choice(list(world.SIZES))), position=str(rng.choice(list(world.POSITIONS))))


def fit(seeds: range = range(600), size: int = 128) -> Judges:
    """Fit both judges on renders: colour centroids from the shapes' pixels, shape examples
    from their masks."""
    sums = {c: [] for c in world.COLOURS}
    labels, feats = [], []
    for seed in seeds:
        sc = training_scene(seed)
        s = sc.shapes[0]
        img = draw.image(sc, size)
        mask = main_object(img)
        truth = np.all(draw.segmentation(sc, size) == draw.SEG_COLOURS[s.kind], axis=2)
        if mask is None:
            mask = truth
        sums[s.colour].append(img[cv2.erode(truth.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)].mean(0))
        labels.append(s.kind)
        feats.append(mask_features(mask))
    names = tuple(c for c in world.COLOURS if sums[c])
    centroids = np.array([np.mean(sums[c], axis=0) for c in names], np.float32)
    return Judges(names, centroids, tuple(labels), np.array(feats, np.float32))


def accuracy(judges: Judges, seeds: range, size: int = 128) -> tuple[float, float]:
    """(colour accuracy, shape accuracy) on the renders of `seeds` (held out from fitting)."""
    colour_ok = shape_ok = 0
    for seed in seeds:
        sc = training_scene(seed)
        img = draw.image(sc, size)
        colour_ok += judges.colour(img) == sc.shapes[0].colour
        shape_ok += judges.shape(img) == sc.shapes[0].kind
    return colour_ok / len(seeds), shape_ok / len(seeds)
