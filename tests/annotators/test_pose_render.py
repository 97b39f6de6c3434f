import numpy as np
import pytest

from annotators import pose_from_map, render_pose
from annotators._aux import aux_module
from annotators.pose import COLORS, LIMBS

# A standing figure on a 512x512 canvas, COCO-18 order, integer pixels.
FIGURE = [
    (256, 90), (256, 150), (206, 150), (186, 230), (176, 300), (306, 150), (326, 230), (336, 300),
    (226, 300), (221, 390), (216, 480), (286, 300), (291, 390), (296, 480), (240, 78), (272, 78),
    (226, 88), (286, 88),
]


def person(points, missing=()):
    flat = []
    for i, (x, y) in enumerate(points):
        flat += [0.0, 0.0, 0.0] if i in missing else [float(x), float(y), 1.0]
    return {"pose_keypoints_2d": flat}


def shifted(points, dx):
    return [(x + dx, y) for x, y in points]


def pose_json(*people, size=512):
    return {"canvas_width": size, "canvas_height": size, "people": list(people)}


def test_limbs_and_keypoints_have_their_colours():
    out = render_pose(pose_json(person(FIGURE)), 512, 512)
    assert out.shape == (512, 512, 3) and out.dtype == np.uint8
    for (x, y), color in zip(FIGURE, COLORS):
        assert tuple(out[y, x]) == color
    for (a, b), color in zip(LIMBS, COLORS):
        (xa, ya), (xb, yb) = FIGURE[a], FIGURE[b]
        if np.hypot(xa - xb, ya - yb) > 40:  # long limbs: their middles are not under any circle
            mid = out[(ya + yb) // 2, (xa + xb) // 2]
            assert tuple(mid) == tuple(int(c * 0.6) for c in color), (a, b)
    assert tuple(out[5, 5]) == (0, 0, 0)


def test_missing_keypoints_and_their_limbs_are_not_drawn():
    out = render_pose(pose_json(person(FIGURE, missing={4})), 512, 512)
    assert tuple(out[300, 176]) == (0, 0, 0)          # right wrist gone
    assert tuple(out[265, 181]) == (0, 0, 0)          # and the forearm with it
    assert tuple(out[230, 186]) == COLORS[3]          # the elbow stays


def test_canvas_is_scaled_to_the_output_size():
    small = pose_json(person([(x / 2, y / 2) for x, y in FIGURE]), size=256)
    assert (render_pose(small, 512, 512) == render_pose(pose_json(person(FIGURE)), 512, 512)).mean() > 0.998


def test_equals_controlnet_aux_drawing():
    util = aux_module("open_pose.util")
    body = aux_module("open_pose.body")
    people = [FIGURE, shifted(FIGURE, 97.5)]
    theirs = np.zeros((384, 640, 3), np.uint8)
    for pts in people:
        kps = [body.Keypoint(x / 512, y / 512) for x, y in pts]
        kps[7] = None
        theirs = util.draw_bodypose(theirs, kps)
    ours = render_pose(pose_json(*(person(p, missing={7}) for p in people)), 640, 384)
    assert (ours == theirs).all()


def test_hands_equal_controlnet_aux_drawing():
    # controlnet_aux colours hand limbs through matplotlib (a test requirement): no skip here,
    # so CI fails rather than passes without the comparison.
    util = aux_module("open_pose.util")
    body = aux_module("open_pose.body")
    hand = [(100 + 6 * (j % 5) + j, 200 + 5 * j) for j in range(21)]
    theirs = util.draw_handpose(np.zeros((512, 512, 3), np.uint8), [body.Keypoint(x / 512, y / 512) for x, y in hand])
    flat = [v for x, y in hand for v in (x, y, 1.0)]
    ours = render_pose(pose_json({"pose_keypoints_2d": [], "hand_left_keypoints_2d": flat}), 512, 512)
    assert (ours == theirs).all()


def test_face_points_are_white_dots():
    face = [v for j in range(70) for v in (100 + 4 * j, 50.0, 1.0)]
    out = render_pose(pose_json({"face_keypoints_2d": face}), 512, 512)
    assert tuple(out[50, 104]) == (255, 255, 255) and tuple(out[60, 104]) == (0, 0, 0)
    assert render_pose(pose_json({"face_keypoints_2d": face}), 512, 512, face=False).max() == 0


def test_map_round_trips_to_json():
    people = [person(FIGURE, missing={16}), person(shifted(FIGURE, -170)), person(shifted(FIGURE, 170))]
    back = pose_from_map(render_pose(pose_json(*people), 512, 512))
    assert (back["canvas_width"], back["canvas_height"]) == (512, 512)
    assert len(back["people"]) == 3
    expected = sorted(people, key=lambda p: p["pose_keypoints_2d"][6])  # left to right
    for got, want in zip(back["people"], expected):
        got, want = np.reshape(got["pose_keypoints_2d"], (18, 3)), np.reshape(want["pose_keypoints_2d"], (18, 3))
        assert ((got[:, 2] > 0) == (want[:, 2] > 0)).all()
        seen = want[:, 2] > 0
        assert np.abs(got[seen, :2] - want[seen, :2]).max() <= 1.0


@pytest.mark.parametrize("bad, match", [
    ([], "OpenPose JSON"),
    ({"people": [{"pose_keypoints_2d": [1, 2, 3]}]}, "needs 54"),
    ({"people": [{"pose_keypoints_2d": ["a"] * 54}]}, "flat list of numbers"),
    ({"people": ["x"]}, r"people\[0\]"),
])
def test_malformed_pose_is_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        render_pose(bad, 64, 64)


def test_hand_is_rainbow_lines_and_blue_dots():
    hand = [(60 + 20 * (j // 4), 400 - 20 * (j % 4) - (0 if j == 0 else 20)) for j in range(21)]
    flat = [v for x, y in hand for v in (x, y, 1.0)]
    out = render_pose(pose_json({"hand_right_keypoints_2d": flat}), 512, 512)
    for x, y in hand[1:]:
        assert tuple(out[y, x]) == (0, 0, 255)
    # Edge 1 (points 1-2) is the first finger's second bone, hue 1/20: red with a little green.
    (x1, y1), (x2, y2) = hand[1], hand[2]
    r, g, b = out[(y1 + y2) // 2, x1]
    assert r == 255 and 60 <= g <= 90 and b == 0
