"""Body pose from a photo: people found by an RT-DETR detector, their keypoints by ViTPose (both via
transformers, top-down as in its ViTPose recipe), returned as the OpenPose JSON the pose editor edits."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from . import hf_models
from .image import to_rgb
from .pose import render_pose
from .registry import Param, annotator, get
from .weights import ModelFolder, require

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


def _detect(image: np.ndarray, paths: list[Path], person_threshold: float, keypoint_threshold: float,
            max_people: int) -> dict:
    pose_folder, detector_folder = paths
    boxes = person_boxes(image, detector_folder, person_threshold, max_people)
    people = [{"pose_keypoints_2d": coco17_to_openpose18(k, s, keypoint_threshold)}
              for k, s in body_keypoints(image, pose_folder, boxes)]
    return {"canvas_width": int(image.shape[1]), "canvas_height": int(image.shape[0]), "people": people}


@annotator(
    "openpose", kind="openpose", weights=(POSE_MODEL, PERSON_DETECTOR),
    description="Body pose of every person in a photo (RT-DETR + ViTPose), drawn as an OpenPose map; "
                "detect_pose gives the same as editable JSON.",
    params=(
        Param("person_threshold", "float", 0.3, 0.0, 1.0, 0.01, help="detector score a person needs"),
        Param("keypoint_threshold", "float", 0.3, 0.0, 1.0, 0.01, help="score below which a keypoint is missing"),
        Param("max_people", "int", 10, 1, 100, 1, help="at most this many people, the most confident first"),
    ),
)
def openpose(image: np.ndarray, paths: list[Path], person_threshold: float, keypoint_threshold: float,
             max_people: int) -> np.ndarray:
    pose = _detect(image, paths, person_threshold, keypoint_threshold, max_people)
    return render_pose(pose, image.shape[1], image.shape[0])


def detect_pose(image: Any, **params: Any) -> dict:
    """OpenPose JSON (COCO-18 body, several people, canvas = the image's size) of a photo; takes
    the `openpose` annotator's parameters. `run("openpose", img)` is `render_pose(detect_pose(img))`."""
    entry = get("openpose")
    values = entry.resolve(params)
    paths = require("openpose", entry.weights)
    return _detect(to_rgb(image), paths, **values)
