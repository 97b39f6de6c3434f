"""Annotators that work on a fresh machine with no weight files, on real photos nobody here made
(scikit-image's bundled samples): poses with hands and faces and person masks from the models
inside mediapipe's wheel, straight lines from OpenCV's LSD."""
import cv2
import numpy as np
import pytest
import skimage.data

import annotators
from annotators import bundled, lines, pose_mediapipe
from annotators._aux import aux_module
from annotators.pose import KEYPOINT_NAMES

needs_mediapipe = pytest.mark.skipif(bundled.MEDIAPIPE_POSE.problem() is not None,
                                     reason=str(bundled.MEDIAPIPE_POSE.problem()))

# By eye, on skimage.data.astronaut() (512x512): the face (forehead to chin, cheek to cheek) as an
# ellipse, and the person's outline as a polygon (hair, suit and arms, not the helmet she holds).
FACE_ELLIPSE = ((227, 122), (60, 70))
PERSON_OUTLINE = [(225, 12), (270, 20), (298, 55), (300, 110), (282, 158), (302, 182), (332, 230),
                  (355, 282), (362, 340), (292, 360), (280, 511), (18, 511), (22, 330), (35, 262), (80, 215),
                  (118, 190), (150, 165), (160, 122), (152, 60), (185, 22)]


def _inside_ellipse(points: np.ndarray, ellipse) -> np.ndarray:
    (cx, cy), (ax, ay) = ellipse
    return ((points[:, 0] - cx) / ax) ** 2 + ((points[:, 1] - cy) / ay) ** 2 <= 1.0


@pytest.fixture(scope="module")
def astronaut_pose(empty_weights_module):
    return annotators.detect_pose(skimage.data.astronaut())


@pytest.fixture(scope="module")
def empty_weights_module(tmp_path_factory):
    folder = tmp_path_factory.mktemp("no-annotator-weights")
    annotators.set_weights_dir(folder)
    yield folder
    annotators.set_weights_dir(None)


@needs_mediapipe
def test_the_astronaut_is_one_person_facing_us_with_her_face(astronaut_pose):
    assert annotators.spec("openpose")["uses"] == "bundled"
    (person,) = astronaut_pose["people"]
    body = np.reshape(person["pose_keypoints_2d"], (18, 3))
    nose, neck = body[KEYPOINT_NAMES.index("nose")], body[KEYPOINT_NAMES.index("neck")]
    right, left = body[KEYPOINT_NAMES.index("right_shoulder")], body[KEYPOINT_NAMES.index("left_shoulder")]
    assert nose[2] > 0 and _inside_ellipse(nose[None, :2], FACE_ELLIPSE)[0]
    assert neck[2] > 0 and neck[1] > nose[1] + 40                 # the neck below the face
    assert right[2] > 0 and left[2] > 0 and right[0] < left[0]    # her right shoulder on the picture's left
    face = np.reshape(person["face_keypoints_2d"], (70, 3))
    assert _inside_ellipse(face[:, :2], FACE_ELLIPSE).sum() >= 60
    # the pupils sit between the eyes' corners (right eye: points 36-41, on the picture's left)
    assert face[36:42, 0].min() < face[68, 0] < face[36:42, 0].max()
    assert face[42:48, 0].min() < face[69, 0] < face[42:48, 0].max()
    assert "most prominent person" in astronaut_pose["notes"][0]


@needs_mediapipe
def test_the_maps_are_render_pose_of_the_json(astronaut_pose):
    photo = skimage.data.astronaut()
    full = annotators.run("openpose_full", photo)
    assert (full == annotators.render_pose(astronaut_pose, 512, 512)).all()
    body_only = annotators.run("openpose", photo)
    assert (body_only == annotators.render_pose(astronaut_pose, 512, 512, hands=False, face=False)).all()
    face_dots = (full == 255).all(axis=2) & ~(body_only == 255).all(axis=2)
    assert face_dots.sum() > 200                                    # the face is drawn in openpose_full only


@needs_mediapipe
def test_a_photo_with_no_person_gives_no_people_and_says_so(empty_weights_module):
    coffee = skimage.data.coffee()
    pose = annotators.detect_pose(coffee)
    assert pose["people"] == [] and (pose["canvas_width"], pose["canvas_height"]) == (600, 400)
    assert pose["notes"] == ["no person found in this photo"]
    assert annotators.run("openpose", coffee).max() == 0


def test_body_landmarks_map_to_openpose_by_their_names():
    mp = bundled.mediapipe() if bundled.MEDIAPIPE_POSE.problem() is None else pytest.skip("no mediapipe")
    names = {lm.name.lower(): lm.value for lm in mp.solutions.pose.PoseLandmark}
    landmarks = np.array([[10.0 + 7 * i, 300.0 - 5 * i, 0.9] for i in range(33)])
    landmarks[names["left_ankle"], 2] = 0.1                       # barely visible: missing
    got = pose_mediapipe.body_to_openpose(landmarks, threshold=0.3)
    for k, name in enumerate(KEYPOINT_NAMES):
        if name == "neck":
            want = (landmarks[names["left_shoulder"]] + landmarks[names["right_shoulder"]]) / 2
        elif name == "left_ankle":
            assert got[k, 2] == 0
            continue
        else:
            want = landmarks[names[name]]
        assert np.allclose(got[k, :2], want[:2]), name


def test_each_hand_goes_to_the_nearer_wrist_whatever_its_label():
    body = np.zeros((18, 3))
    body[KEYPOINT_NAMES.index("right_wrist")] = (100, 300, 1)
    body[KEYPOINT_NAMES.index("left_wrist")] = (400, 310, 1)
    near_left = np.array([[395.0 + j, 320.0 + j, 1.0] for j in range(21)])
    near_right = np.array([[105.0 - j, 310.0 + j, 1.0] for j in range(21)])
    # a selfie-minded labeller would call the first "right": the wrists decide instead
    got = pose_mediapipe.pair_hands(body, [near_left, near_right])
    assert got["hand_left_keypoints_2d"] is near_left and got["hand_right_keypoints_2d"] is near_right
    only_one = pose_mediapipe.pair_hands(body, [near_right])
    assert list(only_one) == ["hand_right_keypoints_2d"]


def test_a_mapped_hand_is_drawn_as_controlnet_aux_draws_it():
    util, body_mod = aux_module("open_pose.util"), aux_module("open_pose.body")
    body = np.zeros((18, 3))
    body[KEYPOINT_NAMES.index("right_wrist")] = (200, 300, 1)
    hand = np.array([[200.0 + 9 * (j % 5) + 3 * j, 300.0 - 8 * j, 1.0] for j in range(21)])
    person = {"pose_keypoints_2d": [0.0] * 54,
              **{k: v.ravel().tolist() for k, v in pose_mediapipe.pair_hands(body, [hand]).items()}}
    ours = annotators.render_pose({"canvas_width": 512, "canvas_height": 512, "people": [person]}, 512, 512)
    theirs = util.draw_handpose(np.zeros((512, 512, 3), np.uint8),
                                [body_mod.Keypoint(x / 512, y / 512) for x, y, _ in hand])
    assert (ours == theirs).all() and ours.max() > 0


def test_face_mesh_indices_are_distinct_and_inside_the_refined_mesh():
    assert len(pose_mediapipe.FACE_FROM_MESH) == 70 and len(set(pose_mediapipe.FACE_FROM_MESH)) == 70
    assert max(pose_mediapipe.FACE_FROM_MESH) < 478


def _lines_picture() -> tuple[np.ndarray, list]:
    img = np.zeros((300, 300, 3), np.uint8)
    truth = [((20, 40), (280, 70), 1), ((30, 140), (270, 120), 3), ((40, 260), (260, 200), 6)]
    for a, b, width in truth:
        cv2.line(img, a, b, (255, 255, 255), width)
    return img, truth


def _distance_to_line(points: np.ndarray, a, b) -> np.ndarray:
    a, b = np.asarray(a, float), np.asarray(b, float)
    d = (b - a) / np.hypot(*(b - a))
    rel = points - a
    return np.abs(rel[:, 0] * d[1] - rel[:, 1] * d[0])


def test_lsd_finds_each_straight_line_once_whatever_its_width():
    img, truth = _lines_picture()
    found = lines.merge_segments(lines.detect_segments(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY))[0])
    assert len(found) == len(truth)
    for a, b, width in truth:
        ends = found.reshape(-1, 2, 2)
        near = [s for s in ends if _distance_to_line(s, a, b).max() <= 2.0]
        assert len(near) == 1, (width, found)
        span = np.hypot(*(near[0][1] - near[0][0]))
        assert abs(span - np.hypot(b[0] - a[0], b[1] - a[1])) <= 2 + width


def test_mlsd_without_its_weights_draws_lsd_lines_as_mlsds_map(empty_weights):
    img, truth = _lines_picture()
    spec = annotators.spec("mlsd")
    assert spec["weights_present"] is False and spec["uses"] == "bundled"
    out = annotators.run("mlsd", img, detect_resolution=320, size=(300, 300))
    ink = np.argwhere(out[..., 0] > 127)[:, ::-1].astype(float)
    assert len(ink) > 500 and set(np.unique(out)) <= set(range(256))
    nearest = np.min([_distance_to_line(ink, a, b) for a, b, _ in truth], axis=0)
    assert np.percentile(nearest, 99) <= 2.5                       # every line drawn where a stroke is


@needs_mediapipe
def test_the_person_mask_covers_the_astronaut():
    photo = skimage.data.astronaut()
    mask = annotators.run("person_mask", photo)[..., 0] > 127
    drawn = np.zeros((512, 512), np.uint8)
    cv2.fillPoly(drawn, [np.array(PERSON_OUTLINE, np.int32)], 1)
    truth = drawn.astype(bool)
    iou = (mask & truth).sum() / (mask | truth).sum()
    assert iou >= 0.6, iou
    assert not (annotators.run("person_mask", photo, invert=True)[..., 0] > 127)[mask].any()


def test_without_mediapipe_the_error_names_the_weights_and_why_the_bundled_model_cannot_serve(
        empty_weights, monkeypatch):
    monkeypatch.setattr(bundled, "_mediapipe_problem", lambda: "mediapipe is not installed: pip install it")
    assert annotators.spec("openpose")["uses"] == "none"
    with pytest.raises(ValueError) as err:
        annotators.run("openpose", np.zeros((64, 64, 3), np.uint8))
    assert "vitpose-base-simple" in str(err.value) and "mediapipe is not installed" in str(err.value)
    with pytest.raises(ValueError, match="mediapipe is not installed"):
        annotators.run("person_mask", np.zeros((64, 64, 3), np.uint8))
