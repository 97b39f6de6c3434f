"""OpenPose JSON -> pose map, drawn the way the OpenPose ControlNets were trained on (pose_read
reads a map back).

Pose JSON (OpenPose format): {"canvas_width": W, "canvas_height": H, "people": [{
"pose_keypoints_2d": [x, y, c] * 18, optional "hand_left_keypoints_2d" / "hand_right_keypoints_2d"
([x, y, c] * 21) and "face_keypoints_2d" ([x, y, c] * 70)}]}, x and y in canvas pixels;
a keypoint with confidence 0 is missing and not drawn. Colours, limb order and sizes: REFERENCE.md.
"""
from __future__ import annotations

import colorsys
import math

import cv2
import numpy as np


KEYPOINT_NAMES = (
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
    "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
    "right_eye", "left_eye", "right_ear", "left_ear",
)
# Limbs as 0-based keypoint pairs, in drawing order (REFERENCE.md lists them 1-based).
LIMBS = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12),
    (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17),
)
COLORS = (
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0), (0, 255, 0),
    (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255), (0, 0, 255), (85, 0, 255),
    (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
)
LIMB_HALF_WIDTH = 4
KEYPOINT_RADIUS = 4
LIMB_SHADE = 0.6
HAND_EDGES = tuple((0 if j % 4 == 0 else j, j + 1) for j in range(20))
HAND_POINT_COLOR = (0, 0, 255)
FACE_POINT_COLOR = (255, 255, 255)
FACE_POINT_RADIUS = 3
PART_SIZES = {"pose_keypoints_2d": 18, "hand_left_keypoints_2d": 21, "hand_right_keypoints_2d": 21,
              "face_keypoints_2d": 70}


def pose_style() -> dict:
    """How poses are drawn, for an editor that draws them the same way: each keypoint's colour,
    the limbs as keypoint index pairs, the limbs' shade, the keypoints' names (COCO-18) and the
    hand's bones (21-point hands)."""
    return {"colors": [list(c) for c in COLORS], "limbs": [list(limb) for limb in LIMBS], "shade": LIMB_SHADE,
            "names": list(KEYPOINT_NAMES), "hand_edges": [list(e) for e in HAND_EDGES]}


def _limb_color(color: tuple[int, int, int]) -> list[int]:
    return [int(float(c) * LIMB_SHADE) for c in color]


def _points(person: dict, key: str, i: int) -> np.ndarray | None:
    """An (N, 3) array of one part's keypoints, or None when the person has none."""
    flat = person.get(key)
    if flat is None or len(flat) == 0:
        return None
    try:
        arr = np.asarray(flat, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"people[{i}].{key} must be a flat list of numbers [x, y, confidence, ...]") from None
    # Face models differ in point count (68 or 70), so only the triplet shape is required there.
    expected = PART_SIZES[key]
    if arr.ndim != 1 or arr.size % 3 or (key != "face_keypoints_2d" and arr.size != 3 * expected):
        raise ValueError(f"people[{i}].{key} has {arr.size} numbers; it needs {3 * expected} "
                         f"([x, y, confidence] for each of {expected} keypoints)")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"people[{i}].{key} holds a NaN or infinite number")
    return arr.reshape(-1, 3)


def parse_pose(pose: dict) -> tuple[float, float, list[dict[str, np.ndarray | None]]]:
    """(canvas width, canvas height, people as {part: (N, 3) array or None}); ValueError if malformed."""
    if not isinstance(pose, dict) or not isinstance(pose.get("people", None), list):
        raise ValueError('pose must be OpenPose JSON: {"canvas_width": W, "canvas_height": H, "people": [...]}')
    try:
        cw, ch = float(pose.get("canvas_width", 0) or 0), float(pose.get("canvas_height", 0) or 0)
    except (TypeError, ValueError):
        raise ValueError("canvas_width and canvas_height must be numbers of pixels") from None
    people = []
    for i, person in enumerate(pose["people"]):
        if not isinstance(person, dict):
            raise ValueError(f"people[{i}] must be an object with pose_keypoints_2d")
        people.append({key: _points(person, key, i) for key in PART_SIZES})
    return cw, ch, people


def _scaled(points: np.ndarray, cw: float, ch: float, width: int, height: int) -> list[tuple[float, float] | None]:
    """Points as pixel positions on the output; None where missing (confidence <= 0)."""
    return [None if c <= 0 else (x / cw * float(width), y / ch * float(height)) for x, y, c in points]


def _draw_body(canvas: np.ndarray, pts: list[tuple[float, float] | None]) -> None:
    for (a, b), color in zip(LIMBS, COLORS):
        if pts[a] is None or pts[b] is None:
            continue
        (x0, y0), (x1, y1) = pts[a], pts[b]
        length = math.hypot(x0 - x1, y0 - y1)
        angle = math.degrees(math.atan2(y0 - y1, x0 - x1))
        poly = cv2.ellipse2Poly((int((x0 + x1) / 2), int((y0 + y1) / 2)), (int(length / 2), LIMB_HALF_WIDTH),
                                int(angle), 0, 360, 1)
        cv2.fillConvexPoly(canvas, poly, _limb_color(color))
    for p, color in zip(pts, COLORS):
        if p is not None:
            cv2.circle(canvas, (int(p[0]), int(p[1])), KEYPOINT_RADIUS, color, thickness=-1)


def _draw_hand(canvas: np.ndarray, pts: list[tuple[float, float] | None]) -> None:
    for k, (a, b) in enumerate(HAND_EDGES):
        if pts[a] is None or pts[b] is None:
            continue
        color = [c * 255 for c in colorsys.hsv_to_rgb(k / len(HAND_EDGES), 1.0, 1.0)]
        cv2.line(canvas, (int(pts[a][0]), int(pts[a][1])), (int(pts[b][0]), int(pts[b][1])), color, thickness=2)
    for p in pts:
        if p is not None:
            cv2.circle(canvas, (int(p[0]), int(p[1])), KEYPOINT_RADIUS, HAND_POINT_COLOR, thickness=-1)


def render_pose(pose: dict, width: int, height: int, *, hands: bool = True, face: bool = True) -> np.ndarray:
    """The pose map (HxWx3 uint8, black background) of OpenPose JSON, scaled from its canvas to
    width x height. Each person is drawn in turn: limbs, keypoints, hands, face."""
    width, height = int(width), int(height)
    if width < 1 or height < 1:
        raise ValueError(f"render_pose needs a positive size, got {width}x{height}")
    cw, ch, people = parse_pose(pose)
    cw, ch = cw or float(width), ch or float(height)
    canvas = np.zeros((height, width, 3), np.uint8)
    for person in people:
        if person["pose_keypoints_2d"] is not None:
            _draw_body(canvas, _scaled(person["pose_keypoints_2d"], cw, ch, width, height))
        for key in ("hand_left_keypoints_2d", "hand_right_keypoints_2d") if hands else ():
            if person[key] is not None:
                _draw_hand(canvas, _scaled(person[key], cw, ch, width, height))
        if face and person["face_keypoints_2d"] is not None:
            for p in _scaled(person["face_keypoints_2d"], cw, ch, width, height):
                if p is not None:
                    cv2.circle(canvas, (int(p[0]), int(p[1])), FACE_POINT_RADIUS, FACE_POINT_COLOR, thickness=-1)
    return canvas
