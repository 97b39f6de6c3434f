"""Pose from a photo, as the OpenPose JSON the pose editor edits and the maps the OpenPose
ControlNets read: openpose (body), openpose_hand (+ hands), openpose_face (+ face), openpose_full.

With its weights present, bodies come from an RT-DETR person detector and ViTPose (both via
transformers, top-down as in its ViTPose recipe): every person in the photo. Without them, the
model inside mediapipe's wheel (pose_mediapipe) reads the most prominent person. Hands and faces
always come from mediapipe (ViTPose has neither), attached to the body whose wrists and nose they
sit at."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from . import bundled, hf_models, pose_mediapipe
from .image import to_rgb
from .pose import render_pose
from .registry import Param, annotator, get
from .weights import ModelFolder

POSE_MODEL = ModelFolder(("usyd-community/vitpose-base-simple",), "ViTPose body keypoints (COCO-17)")
PERSON_DETECTOR = ModelFolder(("PekingU/rtdetr_r50vd_coco_o365", "PekingU/rtdetr_r50vd"),
                              "RT-DETR person detector (COCO classes)")

# COCO-17 index for each OpenPose COCO-18 keypoint; the neck (None) is the shoulders' midpoint.
COCO17_FOR_OPENPOSE18 = (0, None, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3)
NECK_FROM = (5, 6)


def coco17_to_openpose18(keypoints: np.ndarray, scores: np.ndarray, threshold: float) -> list[float]:
    """A flat [x, y, c] * 18 list; keypoints scoring below `threshold` are missing (0, 0, 0)."""
    flat: list[float] = []
    for source in COCO17_FOR_OPENPOSE18:
        if source is None:
            a, b = NECK_FROM
            ok = scores[a] >= threshold and scores[b] >= threshold
            x, y = (keypoints[a] + keypoints[b]) / 2.0
            c = min(scores[a], scores[b])
        else:
            ok = scores[source] >= threshold
            (x, y), c = keypoints[source], scores[source]
        flat += [float(x), float(y), float(c)] if ok else [0.0, 0.0, 0.0]
    return flat


def _person_label(config: Any) -> int:
    for i, name in (getattr(config, "id2label", None) or {}).items():
        if str(name).lower() == "person":
            return int(i)
    return 0  # COCO's first class


def person_boxes(image: np.ndarray, folder: Path, threshold: float, max_people: int) -> np.ndarray:
    """(N, 4) boxes (x, y, width, height) of the most confident people, best first."""
    import torch
    from PIL import Image

    model, processor = hf_models.load("detection", folder)
    inputs = processor(images=Image.fromarray(image), return_tensors="pt").to(model.device)
    with torch.no_grad():
        outputs = model(**inputs)
    found = processor.post_process_object_detection(outputs, target_sizes=[image.shape[:2]], threshold=threshold)[0]
    people = (found["labels"] == _person_label(model.config)).cpu().numpy()
    boxes, scores = found["boxes"].cpu().numpy()[people], found["scores"].cpu().numpy()[people]
    boxes = boxes[np.argsort(-scores, kind="stable")][:max_people].astype(np.float32)
    boxes[:, 2:] -= boxes[:, :2]
    return boxes


def body_keypoints(image: np.ndarray, folder: Path, boxes: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """ViTPose's (keypoints (17, 2), scores (17,)) for each box, in image pixels."""
    import torch
    from PIL import Image

    if len(boxes) == 0:
        return []
    model, processor = hf_models.load("pose", folder)
    inputs = processor(Image.fromarray(image), boxes=[boxes], return_tensors="pt").to(model.device)
    with torch.no_grad():
        outputs = model(**inputs)
    results = processor.post_process_pose_estimation(outputs, boxes=[boxes])[0]
    return [(r["keypoints"].cpu().numpy(), r["scores"].cpu().numpy()) for r in results]


def _vitpose(image: np.ndarray, paths: list[Path], person_threshold: float, keypoint_threshold: float,
             max_people: int) -> list[dict]:
    pose_folder, detector_folder = paths
    boxes = person_boxes(image, detector_folder, person_threshold, max_people)
    return [{"pose_keypoints_2d": coco17_to_openpose18(k, s, keypoint_threshold)}
            for k, s in body_keypoints(image, pose_folder, boxes)]


def _nearest(people: list[dict], found: dict) -> dict | None:
    """The ViTPose person whose head and wrists are nearest the mediapipe person's."""
    mine = np.asarray(found["pose_keypoints_2d"]).reshape(18, 3)

    def distance(person: dict) -> float:
        theirs = np.asarray(person["pose_keypoints_2d"]).reshape(18, 3)
        both = (mine[:, 2] > 0) & (theirs[:, 2] > 0)
        return float(np.hypot(*(mine[both, :2] - theirs[both, :2]).T).mean()) if both.any() else float("inf")

    best = min(people, key=distance, default=None)
    return best if best is not None and np.isfinite(distance(best)) else None


def _detect(image: np.ndarray, paths: list[Path] | None, person_threshold: float, keypoint_threshold: float,
            max_people: int, hands: bool = False, face: bool = False) -> dict:
    height, width = image.shape[:2]
    pose = {"canvas_width": int(width), "canvas_height": int(height), "people": []}
    bundled_too = (hands or face or paths is None) and bundled.MEDIAPIPE_POSE.problem() is None
    found = pose_mediapipe.detect(image, keypoint_threshold, hands, face) if bundled_too else None
    if paths is not None:
        pose["people"] = _vitpose(image, paths, person_threshold, keypoint_threshold, max_people)
        if found and found["people"]:
            target = _nearest(pose["people"], found["people"][0])
            if target is not None:
                target.update({k: v for k, v in found["people"][0].items() if k != "pose_keypoints_2d"})
    elif found is not None:
        pose["people"] = found["people"][:max_people]
    if not pose["people"]:
        pose["notes"] = ["no person found in this photo"]
    elif paths is None:
        pose["notes"] = [f"read with {bundled.MEDIAPIPE_POSE.what}: only the most prominent person is found"]
    return pose


POSE_PARAMS = (
    Param("person_threshold", "float", 0.3, 0.0, 1.0, 0.01, help="detector score a person needs (ViTPose)"),
    Param("keypoint_threshold", "float", 0.3, 0.0, 1.0, 0.01, help="score below which a keypoint is missing"),
    Param("max_people", "int", 10, 1, 100, 1, help="at most this many people, the most confident first"),
)
ONE_PERSON = (" Without the ViTPose weights, mediapipe's bundled model reads the most prominent person only.")
# name -> (hands, face, what it draws)
VARIANTS = {"openpose": (False, False, "Body pose"), "openpose_hand": (True, False, "Body pose and hands"),
            "openpose_face": (False, True, "Body pose and face"),
            "openpose_full": (True, True, "Body pose, hands and face")}


def _declare(name: str, hands: bool, face: bool, what: str) -> None:
    @annotator(name, kind="openpose", weights=(POSE_MODEL, PERSON_DETECTOR), bundled=bundled.MEDIAPIPE_POSE,
               description=f"{what} of the people in a photo (RT-DETR + ViTPose; hands and faces from "
                           f"mediapipe), drawn as an OpenPose map; detect_pose gives it as editable JSON."
                           + ONE_PERSON,
               params=POSE_PARAMS)
    def openpose(image: np.ndarray, paths: list[Path] | None, person_threshold: float, keypoint_threshold: float,
                 max_people: int) -> np.ndarray:
        pose = _detect(image, paths, person_threshold, keypoint_threshold, max_people, hands, face)
        return render_pose(pose, image.shape[1], image.shape[0], hands=hands, face=face)


for _name, (_hands, _face, _what) in VARIANTS.items():
    _declare(_name, _hands, _face, _what)


def detect_pose(image: Any, hands: bool = True, face: bool = True, **params: Any) -> dict:
    """OpenPose JSON (COCO-18 body, with hands and face where found; canvas = the image's size) of
    a photo; takes the `openpose` annotator's parameters. A photo with no person gives no people
    and a `notes` entry saying so; `notes` also says when only one person could be read.
    `run("openpose_full", img)` is `render_pose(detect_pose(img))`."""
    entry = get("openpose")
    values = entry.resolve(params)
    return _detect(to_rgb(image), entry.paths(), **values, hands=hands, face=face)
