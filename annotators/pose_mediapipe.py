"""OpenPose JSON from mediapipe's Holistic model, which ships inside mediapipe 0.10.21's wheel:
one person (the most prominent), their body, hands and face, with no weight files.

Body: mediapipe's 33 pose landmarks -> OpenPose COCO-18. Its left and right are the person's own
(a person facing the camera has their right shoulder on the picture's left), as OpenPose's are;
the neck is the shoulders' midpoint. A landmark whose visibility is below the threshold is missing.
Hands: 21 points in the same order as OpenPose's hand (wrist, then thumb to little finger, base
to tip). Holistic's left/right labels assume a mirrored selfie, so each hand goes to the side of
the body wrist it is nearer to.
Face: the 478-point face mesh (with irises) -> OpenPose's 70 points (dlib's 68 plus the pupils);
FACE_FROM_MESH says which mesh landmark feeds each point.
"""
from __future__ import annotations

import numpy as np

from . import bundled

# mediapipe pose landmark for each OpenPose COCO-18 keypoint; None: the neck (shoulders' midpoint)
BODY_FROM_MEDIAPIPE = (0, None, 12, 14, 16, 11, 13, 15, 24, 26, 28, 23, 25, 27, 5, 2, 8, 7)
NECK_FROM = (11, 12)
RIGHT_WRIST, LEFT_WRIST = 4, 7           # COCO-18 indices

# Face mesh landmark for each of OpenPose's 70 face points, in OpenPose's (dlib's) order, picture
# left to right where a part has sides (the person's right side first):
FACE_FROM_MESH = (
    # 0-16 jaw line, from beside the person's right eye round the chin (8) to the left
    127, 234, 93, 58, 172, 136, 150, 176, 152, 400, 379, 365, 397, 288, 323, 454, 356,
    # 17-21 right eyebrow, outer to inner; 22-26 left eyebrow, inner to outer
    70, 63, 105, 66, 107, 336, 296, 334, 293, 300,
    # 27-30 nose bridge, top to tip; 31-35 nostrils' base, right to left
    168, 197, 5, 4, 75, 97, 2, 326, 305,
    # 36-41 right eye from its outer corner, upper lid first; 42-47 left eye from its inner corner
    33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,
    # 48-59 outer lip from the right corner, over the top, back along the bottom
    61, 40, 37, 0, 267, 270, 291, 321, 314, 17, 84, 91,
    # 60-67 inner lip from the right corner, over the top, back along the bottom
    78, 81, 13, 311, 308, 402, 14, 178,
    # 68-69 pupils: the right iris' centre, then the left's (refined landmarks 468 and 473)
    468, 473,
)



def _process(image: np.ndarray):
    # A fresh graph per photo (~0.3 s): a reused one, even in static-image mode, carries its face
    # region over and moves the face points by ~2 px from call to call; a recipe must redraw alike.
    mp = bundled.mediapipe()
    with mp.solutions.holistic.Holistic(static_image_mode=True, model_complexity=1,
                                        refine_face_landmarks=True) as holistic:
        return holistic.process(np.ascontiguousarray(image))


def _flat(points: np.ndarray, ok: np.ndarray) -> list[float]:
    out: list[float] = []
    for (x, y, c), good in zip(points, ok):
        out += [round(float(x), 2), round(float(y), 2), round(float(c), 3)] if good else [0.0, 0.0, 0.0]
    return out


def body_to_openpose(landmarks: np.ndarray, threshold: float) -> np.ndarray:
    """(33, 3) mediapipe landmarks (x, y in pixels, visibility) -> (18, 3) COCO-18 keypoints,
    confidence 0 where missing."""
    out = np.zeros((18, 3), np.float64)
    for k, source in enumerate(BODY_FROM_MEDIAPIPE):
        if source is None:
            a, b = landmarks[NECK_FROM[0]], landmarks[NECK_FROM[1]]
            point = np.array([(a[0] + b[0]) / 2, (a[1] + b[1]) / 2, min(a[2], b[2])])
        else:
            point = landmarks[source]
        if point[2] >= threshold:
            out[k] = point
    return out


def pair_hands(body: np.ndarray, hands: list[np.ndarray]) -> dict[str, np.ndarray]:
    """{"hand_right_keypoints_2d": (21, 3), "hand_left_keypoints_2d": ...}: each found hand goes to
    the side whose body wrist is nearer its own wrist (a hand with no body wrist to go by keeps
    the order given: right first)."""
    sides = {"hand_right_keypoints_2d": body[RIGHT_WRIST], "hand_left_keypoints_2d": body[LEFT_WRIST]}
    out: dict[str, np.ndarray] = {}
    for hand in hands:
        free = [s for s in sides if s not in out]
        if not free:
            break
        known = [s for s in free if sides[s][2] > 0]
        side = min(known, key=lambda s: float(np.hypot(*(sides[s][:2] - hand[0, :2])))) if known else free[0]
        out[side] = hand
    return out


def face_to_openpose(mesh: np.ndarray) -> np.ndarray:
    """(478, 2) face mesh points in pixels -> (70, 3) OpenPose face keypoints (confidence 1)."""
    points = mesh[list(FACE_FROM_MESH)]
    return np.concatenate([points, np.ones((70, 1))], axis=1)


def _landmarks(found, width: int, height: int, visibility: bool) -> np.ndarray:
    return np.array([[p.x * width, p.y * height, p.visibility if visibility else 1.0] for p in found.landmark])


def detect(image: np.ndarray, threshold: float, hands: bool, face: bool) -> dict:
    """OpenPose JSON of the most prominent person in an HxWx3 uint8 photo (no person: no people)."""
    height, width = image.shape[:2]
    result = _process(image)
    pose = {"canvas_width": int(width), "canvas_height": int(height), "people": []}
    if result.pose_landmarks is None:
        return pose
    body = body_to_openpose(_landmarks(result.pose_landmarks, width, height, True), threshold)
    if not (body[:, 2] > 0).any():
        return pose
    person = {"pose_keypoints_2d": _flat(body, body[:, 2] > 0)}
    if hands:
        found = [_landmarks(h, width, height, False) for h in (result.right_hand_landmarks, result.left_hand_landmarks)
                 if h is not None]
        for side, hand in pair_hands(body, found).items():
            person[side] = _flat(hand, np.ones(21, bool))
    if face and result.face_landmarks is not None:
        mesh = _landmarks(result.face_landmarks, width, height, False)[:, :2]
        if len(mesh) >= 478:
            person["face_keypoints_2d"] = _flat(face_to_openpose(mesh), np.ones(70, bool))
    pose["people"].append(person)
    return pose
