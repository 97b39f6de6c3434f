"""engine.fidelity: edge F1 with a 2-pixel tolerance, and None where no judge exists."""
import numpy as np
import pytest

import annotators
from engine import fidelity
from demo import draw, world


def test_a_picture_follows_its_own_maps_and_not_another_pictures():
    own_canny, own_scribble, other = [], [], []
    for seed in range(12):
        sc = world.scene(seed, two_tone_p=0.0)
        img = draw.image(sc)
        canny = annotators.run("canny", img, detect_resolution=128)
        scribble = annotators.run("scribble", draw.sketch(sc))
        own_canny.append(fidelity.score("canny", img, canny))
        own_scribble.append(fidelity.score("scribble", img, scribble))
        other.append(fidelity.score("scribble", draw.image(world.scene(seed + 500, two_tone_p=0.0)), scribble))
    assert np.mean(own_canny) > 0.7
    assert np.mean(own_scribble) > 0.6
    assert np.mean(other) < 0.2


def test_tolerance_is_two_pixels():
    wanted = np.zeros((64, 64), bool)
    wanted[32, 8:56] = True
    for shift, expected in ((2, 1.0), (3, 0.0)):
        found = np.zeros_like(wanted)
        found[32 + shift, 8:56] = True
        assert fidelity.edge_f1(found, wanted) == pytest.approx(expected)


def test_maps_resized_kinds_without_a_judge_and_bad_input():
    img = draw.image(world.scene(3))
    cmap = annotators.run("canny", img, detect_resolution=128)
    big = np.repeat(np.repeat(cmap, 2, 0), 2, 1)
    assert fidelity.score("canny", img, big) > 0.5
    assert fidelity.score("no-such-kind", img, cmap) is None
    assert fidelity.score("canny", img, np.zeros_like(cmap)) is None   # nothing to follow
    assert "scribble" in fidelity.kinds()
    with pytest.raises(ValueError, match="HxWx3"):
        fidelity.score("canny", np.zeros((4, 4, 3), np.uint8), cmap)
