"""Straight line segments with OpenCV's line segment detector (LSD), which needs no weights: the
stand-in for M-LSD (mlsd) when its weights are absent, drawing the same map (white 1 px
segments on black).

LSD traces edges, so a stroke 2 px or wider comes back as two segments, one along each side,
and a long line may come back in collinear pieces. Segments that run parallel within
MERGE_ANGLE degrees, lie within MERGE_DISTANCE px of each other's line and overlap or nearly
touch along it are merged into one, along their mean line: one segment per stroke, as M-LSD gives.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

MERGE_ANGLE = 6.0          # degrees
MERGE_DISTANCE = 8.0       # px across: the widest stroke merged into one segment (at detection size)
MERGE_GAP = 4.0            # px along: pieces of one line closer than this are joined


def detect_segments(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 4) segments x1, y1, x2, y2 and their (N,) scores, -log10(NFA) (LSD's own test of
    meaningfulness: above 0 a segment is unlikely to be noise)."""
    try:
        lsd = cv2.createLineSegmentDetector(cv2.LSD_REFINE_ADV)
        lines, _, _, nfa = lsd.detect(gray)
    except cv2.error:                     # builds without the refinement give no NFA
        lines, _, _, nfa = cv2.createLineSegmentDetector(cv2.LSD_REFINE_STD).detect(gray)
    if lines is None:
        return np.zeros((0, 4)), np.zeros(0)
    lines = lines.reshape(-1, 4).astype(np.float64)
    scores = nfa.reshape(-1).astype(np.float64) if nfa is not None else np.full(len(lines), np.inf)
    return lines, scores


def _direction(seg: np.ndarray) -> np.ndarray:
    d = seg[2:] - seg[:2]
    n = np.hypot(*d)
    return d / n if n else np.array([1.0, 0.0])


def _mergeable(a: np.ndarray, b: np.ndarray) -> bool:
    da, db = _direction(a), _direction(b)
    if abs(float(da @ db)) < math.cos(math.radians(MERGE_ANGLE)):
        return False
    normal = np.array([-da[1], da[0]])
    # b's end points, across and along a's line
    across = [abs(float((p - a[:2]) @ normal)) for p in (b[:2], b[2:])]
    if max(across) > MERGE_DISTANCE:
        return False
    ta = sorted([0.0, float((a[2:] - a[:2]) @ da)])
    tb = sorted(float((p - a[:2]) @ da) for p in (b[:2], b[2:]))
    return tb[0] <= ta[1] + MERGE_GAP and ta[0] <= tb[1] + MERGE_GAP


def _merged(group: list[np.ndarray]) -> np.ndarray:
    """One segment along the length-weighted mean line of the group, spanning all of it."""
    ref = _direction(group[0])
    dirs, weights, points = [], [], []
    for seg in group:
        d = _direction(seg)
        dirs.append(d if d @ ref >= 0 else -d)
        weights.append(np.hypot(*(seg[2:] - seg[:2])))
        points += [seg[:2], seg[2:]]
    w = np.asarray(weights)[:, None]
    d = (np.asarray(dirs) * w).sum(0)
    d /= np.hypot(*d)
    pts = np.asarray(points)
    centre = (pts * np.repeat(w, 2, axis=0)).sum(0) / (2 * w.sum())
    t = (pts - centre) @ d
    return np.concatenate([centre + t.min() * d, centre + t.max() * d])


def merge_segments(segments: np.ndarray) -> np.ndarray:
    """Segments merged until no two are mergeable (parallel, close across, overlapping along)."""
    segs = [s for s in np.asarray(segments, np.float64).reshape(-1, 4)]
    changed = True
    while changed:
        changed = False
        for i in range(len(segs)):
            for j in range(i + 1, len(segs)):
                if _mergeable(segs[i], segs[j]) or _mergeable(segs[j], segs[i]):
                    segs[i] = _merged([segs[i], segs[j]])
                    del segs[j]
                    changed = True
                    break
            if changed:
                break
    return np.asarray(segs).reshape(-1, 4)


def line_map(image: np.ndarray, min_score: float, min_length: float) -> np.ndarray:
    """White 1 px segments on black (HxWx3 uint8) of the straight lines in an HxWx3 picture:
    LSD's segments scoring at least `min_score`, merged, at least `min_length` px long."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    segments, scores = detect_segments(gray)
    merged = merge_segments(segments[scores >= min_score])
    out = np.zeros(gray.shape, np.uint8)
    for x1, y1, x2, y2 in merged:
        if math.hypot(x2 - x1, y2 - y1) >= min_length:
            cv2.line(out, (round(x1), round(y1)), (round(x2), round(y2)), 255, 1, cv2.LINE_8)
    return np.repeat(out[..., None], 3, axis=2)
