"""The synthetic world: determinism, captions that say what is drawn, exact maps."""
import numpy as np
import pytest

from demo import draw, figure, world

SIZE = 96


def test_same_seed_same_scene_and_pixels():
    for seed in (0, 7, 123):
        a, b = world.scene(seed), world.scene(seed)
        assert a == b
        for f in (draw.image, draw.segmentation, draw.depth):
            assert np.array_equal(f(a, SIZE), f(b, SIZE))
        assert np.array_equal(draw.sketch(a, SIZE, seed=3), draw.sketch(b, SIZE, seed=3))
    assert world.scene(1).caption != world.scene(2).caption or not np.array_equal(
        draw.image(world.scene(1), SIZE), draw.image(world.scene(2), SIZE))


def test_captions_use_only_the_vocabulary_and_name_every_object():
    words = set(world.vocabulary())
    for seed in range(300):
        sc = world.scene(seed)
        assert set(sc.caption.split()) <= words, sc.caption
        for s in sc.shapes:
            phrase = " ".join(w for w in (s.size, s.colour, s.kind) if w)
            assert phrase in sc.caption
        for f in sc.figures:
            assert f"{f.shirt} shirt" in sc.caption and f.pose in sc.caption
        assert sc.caption.endswith(" ".join(sc.background.colours[-1:]) + " background")
        assert not ({s.colour for s in sc.shapes} & set(sc.background.colours))


def test_caption_example_reads_naturally():
    sc = world.single_shape_scene(0, "star", "red", "yellow")
    assert sc.caption == "a red star on a yellow background"
    sc = world.single_shape_scene(0, "circle", "orange", "white", size="small", position="on the left")
    assert sc.caption == "a small orange circle on the left on a white background"


def test_the_mix_holds_every_kind_of_scene():
    scenes = [world.scene(s) for s in range(200)]
    assert sum(bool(s.figures) for s in scenes) > 20
    assert sum(len(s.shapes) > 1 for s in scenes) > 20
    assert sum(bool(s.background.split) for s in scenes) > 20
    assert {k for s in scenes for k in (x.kind for x in s.shapes)} == set(world.SHAPES)
    with pytest.raises(ValueError, match="scene kind"):
        world.scene(0, kind="dragon")


def test_picture_colours_and_segmentation_agree():
    sc = world.single_shape_scene(4, "heart", "blue", "white", size="large")
    img, seg = draw.image(sc, SIZE), draw.segmentation(sc, SIZE)
    inside = np.all(seg == draw.SEG_COLOURS["heart"], axis=2)
    assert inside.mean() > 0.05
    assert np.abs(img[inside].mean(0) - world.COLOURS["blue"]).max() < 20
    assert np.abs(img[~inside].mean(0) - world.COLOURS["white"]).max() < 20


def test_depth_is_near_bright():
    sc = world.scene(11, kind="shapes")
    d, seg = draw.depth(sc, SIZE)[..., 0], draw.segmentation(sc, SIZE)
    objects = ~np.all(seg == draw.SEG_COLOURS["background"], axis=2)
    assert d[objects].min() > d[~objects].max()
    bg = np.where(objects, np.nan, d.astype(float))
    assert np.nanmean(bg[-5:]) > np.nanmean(bg[:5])   # the floor comes nearer downwards


def test_pose_keypoints_follow_the_caption():
    for seed in range(40):
        sc = world.scene(seed, kind="figure")
        f = sc.figures[0]
        pose = draw.pose_json(sc, SIZE)
        k = np.array(pose["people"][0]["pose_keypoints_2d"]).reshape(18, 3)
        assert np.allclose(k[:, :2], np.array(f.keypoints) * SIZE, atol=0.01)
        assert k[2, 0] < k[5, 0]          # the person's right shoulder is on the image's left
        above = lambda wrist: k[wrist, 1] < k[0, 1]   # wrist above the nose
        if f.pose == "raising the right arm":
            assert above(4) and not above(7)
        if f.pose == "raising the left arm":
            assert above(7) and not above(4)
        if f.pose == "raising both arms":
            assert above(4) and above(7)
        assert k[:, :2].min() >= 0 and k[:, :2].max() <= SIZE


def test_figure_is_drawn_where_its_keypoints_are():
    sc = world.scene(5, kind="figure")
    seg = draw.segmentation(sc, SIZE)
    person = np.all(seg == draw.SEG_COLOURS["person"], axis=2)
    for x, y in np.array(sc.figures[0].keypoints) * SIZE:
        xi, yi = int(np.clip(x, 0, SIZE - 1)), int(np.clip(y, 0, SIZE - 1))
        assert person[max(0, yi - 2):yi + 3, max(0, xi - 2):xi + 3].any()
    assert figure.unit_length(sc.figures[0].keypoints) > 0


def test_sketch_traces_the_outlines():
    sc = world.single_shape_scene(2, "square", "green", "pink", size="large")
    ink = draw.sketch(sc, SIZE)[..., 0] < 128
    seg = draw.segmentation(sc, SIZE)
    inside = np.all(seg == draw.SEG_COLOURS["square"], axis=2).astype(np.uint8)
    import cv2
    edge = cv2.morphologyEx(inside, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)).astype(bool)
    dist = cv2.distanceTransform((~edge).astype(np.uint8), cv2.DIST_L2, 3)
    assert ink.sum() > 50
    assert np.median(dist[ink]) <= 3
