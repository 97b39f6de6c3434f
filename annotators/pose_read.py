"""OpenPose JSON read back from a body pose map (the inverse of pose.render_pose), for editing a
map made elsewhere and for judging how well a picture follows one.

Keypoints are the circles of each keypoint's colour; limbs, drawn first at 60% of their colour,
tell which keypoints belong to one person. On small maps (128 px and less) the circles, whose
radius does not scale, cover most of that: eyes and ears hide the nose and their own limbs, the
shoulders hide the neck and the torso's limbs. So each circle's centre is fitted to what shows
of it, and besides the visible limbs a limb that would lie wholly under drawn pixels joins its
keypoints, and face keypoints go to the nearest neck. Deterministic, numpy and OpenCV only.
"""
from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

from .image import to_rgb
from .pose import COLORS, KEYPOINT_RADIUS, LIMB_HALF_WIDTH, LIMBS, _limb_color

FACE = frozenset((0, 14, 15, 16, 17))  # nose, eyes, ears
_DISC = np.zeros((2 * KEYPOINT_RADIUS + 1,) * 2, np.uint8)
cv2.circle(_DISC, (KEYPOINT_RADIUS, KEYPOINT_RADIUS), KEYPOINT_RADIUS, 1, thickness=-1)
_DISC = _DISC.astype(bool)
# A piece of a circle too small for min_area still counts when every circle that explains it has
# its centre within this many pixels of their mean.
_SPREAD = 2.0


def _color_mask(image: np.ndarray, color: Any, tolerance: int) -> np.ndarray:
    """Pixels within `tolerance` of `color` in every channel."""
    c = np.asarray(color, np.int32)
    lo, hi = np.clip(c - tolerance, 0, 255), np.clip(c + tolerance, 0, 255)
    return cv2.inRange(image, lo.astype(np.float64), hi.astype(np.float64)) > 0


def _fit_disc(xs: np.ndarray, ys: np.ndarray, clear: np.ndarray) -> tuple[float, float, float] | None:
    """Centre (x, y, spread) of a keypoint circle of which only pixels xs, ys show: the mean of the
    integer centres on the image whose circle holds them all and is `clear` (lies, elsewhere, on
    pixels that may be drawn over it). None if no circle fits: not our drawing (resized, another
    radius) or covered by something other than later keypoints; its centroid is then the best
    guess."""
    r = KEYPOINT_RADIUS
    x0, x1, y0, y1 = int(xs.min()), int(xs.max()), int(ys.min()), int(ys.max())
    h, w = clear.shape
    # Centres within r of every pixel shown, and on the map: one off it is no keypoint to edit.
    cx0, cy0, cx1, cy1 = max(x1 - r, 0), max(y1 - r, 0), min(x0 + r, w - 1), min(y0 + r, h - 1)
    if cx1 < cx0 or cy1 < cy0:
        return None
    cy, cx = np.nonzero(clear[cy0:cy1 + 1, cx0:cx1 + 1])
    cx, cy = cx + cx0, cy + cy0
    holds = _DISC[ys[None, :] - cy[:, None] + r, xs[None, :] - cx[:, None] + r].all(axis=1)
    cx, cy = cx[holds], cy[holds]
    if len(cx) == 0:
        return None
    mx, my = cx.mean(), cy.mean()
    return float(mx), float(my), float(np.hypot(cx - mx, cy - my).max())


class _Blob:
    """One keypoint circle as seen on the map: keypoint index, centre, visible area and pixels."""
    __slots__ = ("k", "x", "y", "area", "ys", "xs")

    def __init__(self, k: int, x: float, y: float, ys: np.ndarray, xs: np.ndarray):
        self.k, self.x, self.y, self.area, self.ys, self.xs = k, x, y, len(xs), ys, xs


def _keypoint_blobs(image: np.ndarray, tolerance: int, min_area: int) -> list[_Blob]:
    """The keypoint circles of each colour. Pieces of one colour that one circle explains (an ear
    cutting an eye in two) are one blob."""
    masks = [_color_mask(image, color, tolerance) for color in COLORS]
    # Keypoints are drawn in index order, over all limbs: only later keypoints can hide one.
    later = [np.zeros(image.shape[:2], bool)] * len(COLORS)
    for k in range(len(COLORS) - 2, -1, -1):
        later[k] = later[k + 1] | masks[k + 1]
    blobs: list[_Blob] = []
    r = KEYPOINT_RADIUS
    for k, mask in enumerate(masks):
        n, comp, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
        order = np.array(sorted(range(1, n), key=lambda c: -stats[c, cv2.CC_STAT_AREA]), int)
        x0, y0 = stats[order, 0], stats[order, 1]
        x1, y1 = x0 + stats[order, 2] - 1, y0 + stats[order, 3] - 1
        # Where a circle may be centred: all of it on this colour or on later keypoints (or off the map).
        clear = cv2.erode((mask | later[k]).astype(np.uint8), _DISC.astype(np.uint8),
                          borderType=cv2.BORDER_CONSTANT, borderValue=1)
        # A piece with no such centre within reach is no circle's; below min_area it is noise
        # (a busy picture has thousands), skipped without looking at its pixels.
        sums = cv2.integral(clear)
        h, w = clear.shape
        cx0, cy0 = np.maximum(x1 - r, 0), np.maximum(y1 - r, 0)
        cx1, cy1 = np.minimum(x0 + r, w - 1), np.minimum(y0 + r, h - 1)
        ok = (cx1 >= cx0) & (cy1 >= cy0)
        cx1, cy1 = np.maximum(cx1, cx0), np.maximum(cy1, cy0)
        centred = ok & (sums[cy1 + 1, cx1 + 1] - sums[cy0, cx1 + 1] - sums[cy1 + 1, cx0] + sums[cy0, cx0] > 0)
        clear = clear > 0
        used = ~(centred | (stats[order, cv2.CC_STAT_AREA] >= min_area))
        for i, c in enumerate(order):
            if used[i]:
                continue
            ys, xs = np.nonzero(comp[y0[i]:y1[i] + 1, x0[i]:x1[i] + 1] == c)
            ys, xs = ys + y0[i], xs + x0[i]
            fit = _fit_disc(xs, ys, clear) if centred[i] else None
            if fit is not None:
                near = np.nonzero(~used & centred & (np.arange(len(order)) > i)
                                  & (np.maximum(x1, xs.max()) - np.minimum(x0, xs.min()) <= 2 * r)
                                  & (np.maximum(y1, ys.max()) - np.minimum(y0, ys.min()) <= 2 * r))[0]
                for j in near:
                    jy, jx = np.nonzero(comp[y0[j]:y1[j] + 1, x0[j]:x1[j] + 1] == order[j])
                    uy, ux = np.concatenate([ys, jy + y0[j]]), np.concatenate([xs, jx + x0[j]])
                    both = _fit_disc(ux, uy, clear) if np.ptp(ux) <= 2 * r and np.ptp(uy) <= 2 * r else None
                    if both is not None:
                        ys, xs, fit, used[j] = uy, ux, both, True
            if len(xs) < min_area and (fit is None or fit[2] > _SPREAD):
                continue
            x, y = (fit[0], fit[1]) if fit is not None else (float(xs.mean()), float(ys.mean()))
            blobs.append(_Blob(k, x, y, ys, xs))
    return blobs


class _Groups:
    """Union-find over blobs that knows which keypoints each group holds."""

    def __init__(self, blobs: list[_Blob]):
        self.parent = list(range(len(blobs)))
        self.keys = {i: {b.k} for i, b in enumerate(blobs)}

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def apart(self, i: int, j: int) -> bool:
        """Whether i and j are in different groups that share no keypoint (two of one keypoint in
        a group would be two people)."""
        ri, rj = self.find(i), self.find(j)
        return ri != rj and not self.keys[ri] & self.keys[rj]

    def join(self, i: int, j: int) -> None:
        ri, rj = self.find(i), self.find(j)
        if ri != rj:
            ri, rj = min(ri, rj), max(ri, rj)
            self.parent[rj] = ri
            self.keys[ri] |= self.keys.pop(rj)

    def members(self) -> list[list[int]]:
        out: dict[int, list[int]] = {}
        for i in range(len(self.parent)):
            out.setdefault(self.find(i), []).append(i)
        return list(out.values())


def _join_by_limbs(image: np.ndarray, blobs: list[_Blob], groups: _Groups, tolerance: int) -> None:
    """Join the keypoints each visible piece of limb touches (within 2 px)."""
    height, width = image.shape[:2]
    labels = np.zeros((height, width), np.int32)  # 0: no keypoint; i: blob i-1
    for i, b in enumerate(blobs):
        labels[b.ys, b.xs] = i + 1
    kernel = np.ones((5, 5), np.uint8)
    for (a, b), color in zip(LIMBS, COLORS):
        n, comp, stats, _ = cv2.connectedComponentsWithStats(
            _color_mask(image, _limb_color(color), tolerance).astype(np.uint8))
        for c in range(1, n):
            x, y, w, h = stats[c, :4]
            x0, y0, x1, y1 = max(x - 2, 0), max(y - 2, 0), min(x + w + 2, width), min(y + h + 2, height)
            near = cv2.dilate((comp[y0:y1, x0:x1] == c).astype(np.uint8), kernel).astype(bool)
            ends = [i - 1 for i in np.unique(labels[y0:y1, x0:x1][near]) if i > 0 and blobs[i - 1].k in (a, b)]
            for i in ends[1:]:
                groups.join(ends[0], i)


def _join_hidden_limbs(drawn: np.ndarray, blobs: list[_Blob], groups: _Groups) -> None:
    """Join a limb's two keypoints when that limb, drawn between their centres (less its edge,
    for the centres' rounding), would lie wholly on drawn pixels: small maps' circles can cover
    a limb entirely, the torso's included. Shortest first."""
    height, width = drawn.shape
    offers = []
    for a, b in LIMBS:
        for i in (m for m, blob in enumerate(blobs) if blob.k == a):
            for j in (m for m, blob in enumerate(blobs) if blob.k == b):
                offers.append((math.dist((blobs[i].x, blobs[i].y), (blobs[j].x, blobs[j].y)), i, j))
    for _, i, j in sorted(offers):
        if not groups.apart(i, j):
            continue
        (x0, y0), (x1, y1) = (blobs[i].x, blobs[i].y), (blobs[j].x, blobs[j].y)
        poly = cv2.ellipse2Poly((int((x0 + x1) / 2), int((y0 + y1) / 2)),
                                (int(math.hypot(x0 - x1, y0 - y1) / 2), LIMB_HALF_WIDTH),
                                int(math.degrees(math.atan2(y0 - y1, x0 - x1))), 0, 360, 1)
        lo = np.maximum(poly.min(axis=0) - 1, 0)
        hi = np.minimum(poly.max(axis=0) + 2, (width, height))
        if (hi <= lo).any():
            continue
        limb = np.zeros((hi[1] - lo[1], hi[0] - lo[0]), np.uint8)
        cv2.fillConvexPoly(limb, poly - lo, 1)
        core = cv2.erode(limb, np.ones((3, 3), np.uint8)) > 0
        if drawn[lo[1]:hi[1], lo[0]:hi[0]][core].all():
            groups.join(i, j)


def _attach_faces(drawn: np.ndarray, blobs: list[_Blob], groups: _Groups) -> None:
    """Give each group of only face keypoints (without a nose nothing joins eyes and ears to the
    body) to the nearest neck whose group lacks them and is drawn joined to it or reaches it
    within a torso's length (its longest limb from the neck)."""
    _, parts = cv2.connectedComponents(drawn.astype(np.uint8), connectivity=8)
    part = [int(parts[b.ys[0], b.xs[0]]) for b in blobs]
    faces = [m for m in groups.members() if all(blobs[i].k in FACE for i in m)]
    bodies = [m for m in groups.members() if any(blobs[i].k == 1 for i in m)]
    offers = []
    for face in faces:
        face_xy = np.array([(blobs[i].x, blobs[i].y) for i in face])
        for body in bodies:
            at = {blobs[i].k: (blobs[i].x, blobs[i].y) for i in body}
            reach = max((math.dist(at[1], at[b]) for a, b in LIMBS if a == 1 and b in at), default=0.0)
            d = float(np.hypot(*(face_xy - at[1]).T).min())
            if d <= reach or {part[i] for i in face} & {part[i] for i in body}:
                offers.append((d, face[0], body[0]))
    placed: set[int] = set()
    for _, i, j in sorted(offers):
        if i not in placed and groups.apart(i, j):
            groups.join(i, j)
            placed.add(i)


def _read_people(image: np.ndarray, tolerance: int, min_area: int) -> list[list[float]]:
    """Flat keypoint lists of the people drawn on `image`."""
    blobs = _keypoint_blobs(image, tolerance, min_area)
    drawn = (image > tolerance).any(axis=2)
    groups = _Groups(blobs)
    _join_by_limbs(image, blobs, groups, tolerance)
    _join_hidden_limbs(drawn, blobs, groups)
    _attach_faces(drawn, blobs, groups)
    people = []
    for members in groups.members():
        if len(members) < 2:
            continue
        flat = [0.0] * (3 * len(COLORS))
        # Where a group holds two blobs of one keypoint, the larger (less hidden) one wins.
        for i in sorted(members, key=lambda i: blobs[i].area):
            b = blobs[i]
            flat[3 * b.k:3 * b.k + 3] = [b.x, b.y, 1.0]
        people.append(flat)
    return people


def pose_from_map(control_map: Any, *, tolerance: int = 10, min_area: int = 4) -> dict:
    """OpenPose JSON (body keypoints; hands and faces are not read back) of a pose map drawn with
    the OpenPose ControlNets' colours and limb order, people from left to right. A keypoint is
    the centre of the circle that fits what shows of its colour (within `tolerance` per channel;
    a piece smaller than `min_area` pixels only where placed within 2 px); a person needs two
    keypoints. See the module's docstring for how keypoints are grouped into people."""
    image = to_rgb(control_map)
    height, width = image.shape[:2]
    drawn = (image > tolerance).any(axis=2)
    rows, cols = np.nonzero(drawn.any(axis=1))[0], np.nonzero(drawn.any(axis=0))[0]
    people = []
    if len(rows):
        # Only the drawing's box is read (most of a map is black), with black room around it so
        # that circle fits meet the crop's edge only where the map ends.
        pad = 2 * KEYPOINT_RADIUS + 1
        y0, x0 = max(int(rows[0]) - pad, 0), max(int(cols[0]) - pad, 0)
        y1, x1 = min(int(rows[-1]) + pad + 1, height), min(int(cols[-1]) + pad + 1, width)
        for flat in _read_people(np.ascontiguousarray(image[y0:y1, x0:x1]), tolerance, min_area):
            for k in range(len(COLORS)):
                if flat[3 * k + 2] > 0:
                    flat[3 * k:3 * k + 2] = [round(flat[3 * k] + x0, 2), round(flat[3 * k + 1] + y0, 2)]
            people.append(flat)
    people.sort(key=lambda f: min(f[3 * k] for k in range(len(COLORS)) if f[3 * k + 2] > 0))
    return {"canvas_width": width, "canvas_height": height,
            "people": [{"pose_keypoints_2d": flat} for flat in people]}
