"""pose_from_map on small maps: the keypoint circles keep their 4 px radius at every size, so on a
64-128 px map they cover the short limbs, the torso's limbs and most of the face."""
import numpy as np
import pytest

from annotators import pose_from_map, render_pose
from demo import draw, world

SEEDS = range(20)
# render_pose draws a keypoint at the pixel its coordinate truncates to, so up to sqrt(2) px of
# error is inherent. Measured on SEEDS: 1.35 / 1.37 / 1.37 / 1.34 px at most at 64 / 96 / 128 /
# 512 px, 0.79 / 0.77 / 0.75 / 0.73 px on average (on seeds 0-199: 1.40 px at most).
MAX_ERROR = 1.45
MEAN_ERROR = 0.85


def figure(seed: int, size: int) -> np.ndarray:
    """(18, 3) keypoints of the world's figure of this seed on a size x size canvas."""
    pose = draw.pose_json(world.scene(seed, kind="figure"), size)
    return np.reshape(pose["people"][0]["pose_keypoints_2d"], (18, 3))


def read_back(people: list[np.ndarray], size: int) -> list[np.ndarray]:
    pose = {"canvas_width": size, "canvas_height": size,
            "people": [{"pose_keypoints_2d": k.ravel().tolist()} for k in people]}
    back = pose_from_map(render_pose(pose, size, size))
    assert (back["canvas_width"], back["canvas_height"]) == (size, size)
    return [np.reshape(p["pose_keypoints_2d"], (18, 3)) for p in back["people"]]


def errors(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    seen = got[:, 2] > 0
    return np.hypot(*(got[seen, :2] - want[seen, :2]).T)


@pytest.mark.parametrize("size", [64, 96, 128, 512])
def test_each_figure_is_one_person_with_its_keypoints(size):
    errs = []
    for seed in SEEDS:
        want = figure(seed, size)
        people = read_back([want], size)
        assert len(people) == 1, f"seed {seed}: {len(people)} people"
        got = people[0]
        # At 64 px the eyes, ears and neck cover the nose's circle whole in 18 of these 20 figures.
        must = range(1 if size <= 64 else 0, 18)
        assert (got[list(must), 2] > 0).all(), f"seed {seed}: keypoints {np.nonzero(got[:, 2] <= 0)[0]} missing"
        errs.extend(errors(got, want))
    assert max(errs) <= MAX_ERROR < max(1.5, 0.02 * size)
    assert np.mean(errs) <= MEAN_ERROR


def test_two_figures_side_by_side_at_128_are_two_people():
    for seed in range(0, 20, 2):
        left, right = figure(seed, 64), figure(seed + 1, 64)
        left[:, 1] += 32
        right[:, 1] += 32
        right[:, 0] += 64
        people = read_back([left, right], 128)
        assert len(people) == 2, f"seeds {seed}, {seed + 1}: {len(people)} people"
        for got, want in zip(people, (left, right)):  # read back left to right
            assert (got[1:, 2] > 0).all()
            assert errors(got, want).max() <= MAX_ERROR


def test_eyes_and_ears_of_a_figure_without_nose_join_its_body():
    want = figure(3, 512)
    want[0] = 0.0  # no nose: no limb joins the eyes and ears to the body
    people = read_back([want], 512)
    assert len(people) == 1
    got = people[0]
    assert ((got[:, 2] > 0) == (want[:, 2] > 0)).all()
    assert errors(got, want).max() <= MAX_ERROR


@pytest.mark.parametrize("size", [64, 512])
def test_empty_map_has_no_people(size):
    assert pose_from_map(np.zeros((size, size, 3), np.uint8)) == {
        "canvas_width": size, "canvas_height": size, "people": []}
