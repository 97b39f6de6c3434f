"""A simple front-facing articulated figure: COCO-18 keypoints from joint angles.

Arm and leg angles are degrees from hanging straight down, positive away from the body; a
bend turns the lower limb further the same way. The person's right side is on the image's
left, as OpenPose labels a figure that faces the viewer.
"""
from __future__ import annotations

import math

import numpy as np

# Pose phrase -> angle ranges: (right arm, right elbow bend, left arm, left elbow bend, legs, knee bend)
_DOWN, _UP, _OUT = (8, 25), (145, 170), (80, 100)
_STRAIGHT, _LEGS = (0, 15), (4, 10)
POSES: dict[str, tuple[tuple[float, float], ...]] = {
    "standing": (_DOWN, _STRAIGHT, _DOWN, _STRAIGHT, _LEGS, (0, 3)),
    "raising both arms": (_UP, _STRAIGHT, _UP, _STRAIGHT, _LEGS, (0, 3)),
    "raising the left arm": (_DOWN, _STRAIGHT, _UP, _STRAIGHT, _LEGS, (0, 3)),
    "raising the right arm": (_UP, _STRAIGHT, _DOWN, _STRAIGHT, _LEGS, (0, 3)),
    "with arms out": (_OUT, (-10, 10), _OUT, (-10, 10), _LEGS, (0, 3)),
    "jumping": ((115, 145), (0, 20), (115, 145), (0, 20), (18, 28), (-22, -10)),
    "waving": ((70, 100), (60, 90), _DOWN, _STRAIGHT, _LEGS, (0, 3)),
}
# Proportions, in units of u (the figure is about 0.93 u from the top of its head to its ankles).
TORSO, SHOULDER_W, HIP_W, NECK_TO_NOSE = 0.30, 0.10, 0.06, 0.11
UPPER_ARM, FOREARM, THIGH, SHIN = 0.16, 0.15, 0.22, 0.22
HEAD_R = 0.075
HEAD_SPAN = 0.93


def _dir(angle: float, side: int) -> np.ndarray:
    """Unit vector `angle` degrees from straight down, turned outward to `side` (-1 image-left)."""
    a = math.radians(angle)
    return np.array([side * math.sin(a), math.cos(a)])


def _limb(root: np.ndarray, side: int, a: float, bend: float, l1: float, l2: float):
    mid = root + l1 * _dir(a, side)
    return mid, mid + l2 * _dir(a + bend, side)


def skeleton(angles: tuple[float, ...], u: float = 1.0) -> np.ndarray:
    """(18, 2) COCO-18 keypoints of a figure whose hips' centre is at the origin."""
    ra, rb, la, lb, legs, knee = angles
    k = np.zeros((18, 2))
    neck = np.array([0.0, -TORSO * u])
    k[1] = neck
    k[2], k[5] = neck + [-SHOULDER_W * u, 0.02 * u], neck + [SHOULDER_W * u, 0.02 * u]
    k[8], k[11] = np.array([-HIP_W * u, 0.0]), np.array([HIP_W * u, 0.0])
    k[0] = neck + [0.0, -NECK_TO_NOSE * u]
    k[14], k[15] = k[0] + [-0.025 * u, -0.025 * u], k[0] + [0.025 * u, -0.025 * u]
    k[16], k[17] = k[0] + [-0.055 * u, -0.01 * u], k[0] + [0.055 * u, -0.01 * u]
    k[3], k[4] = _limb(k[2], -1, ra, rb, UPPER_ARM * u, FOREARM * u)
    k[6], k[7] = _limb(k[5], 1, la, lb, UPPER_ARM * u, FOREARM * u)
    k[9], k[10] = _limb(k[8], -1, legs, knee, THIGH * u, SHIN * u)
    k[12], k[13] = _limb(k[11], 1, legs, knee, THIGH * u, SHIN * u)
    return k


def head_centre(k: np.ndarray, u: float) -> np.ndarray:
    return k[0] + [0.0, -0.01 * u]


def extent(k: np.ndarray, u: float) -> tuple[np.ndarray, np.ndarray]:
    """(min xy, max xy) of the figure including its head and limb thickness."""
    head = head_centre(k, u)
    pad = 0.04 * u
    lo = np.minimum(k.min(0) - pad, head - HEAD_R * u)
    hi = np.maximum(k.max(0) + pad, head + HEAD_R * u)
    return lo, hi


def pose_keypoints(rng: np.random.Generator, pose: str, height: float) -> tuple[tuple[float, float], ...]:
    """Keypoints (fractions of the canvas) of a figure `height` tall in the named pose, placed
    at random where the whole figure fits in the canvas."""
    if pose not in POSES:
        raise ValueError(f"unknown pose {pose!r}; known poses: {', '.join(POSES)}")
    angles = [float(rng.uniform(lo, hi)) for lo, hi in POSES[pose]]
    if pose == "waving" and rng.random() < 0.5:
        angles = angles[2:4] + angles[0:2] + angles[4:]   # the left hand waves instead
    u = height / HEAD_SPAN
    k = skeleton(tuple(angles), u)
    lo, hi = extent(k, u)
    span = float(max(hi - lo))
    if span > 0.92:
        scale = 0.92 / span
        u *= scale
        k, lo, hi = k * scale, lo * scale, hi * scale
    offset = np.array([rng.uniform(0.03 - lo[0], max(0.03 - lo[0], 0.97 - hi[0])),
                       rng.uniform(0.03 - lo[1], max(0.03 - lo[1], 0.97 - hi[1]))])
    k = k + offset
    return tuple((float(x), float(y)) for x, y in k)


def unit_length(keypoints) -> float:
    """u of a figure, recovered from its keypoints (neck to hips' centre is TORSO u)."""
    k = np.asarray(keypoints)
    hips = (k[8] + k[11]) / 2
    return float(np.linalg.norm(k[1] - hips) / TORSO)
