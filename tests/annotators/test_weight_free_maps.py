import cv2
import numpy as np
import pytest

import annotators
from annotators._aux import aux_module
from annotators.palettes import ADE20K, palette_array


@pytest.fixture
def drawn_line() -> np.ndarray:
    """A 4 px black horizontal line (rows 254..257) on white, 512x512."""
    img = np.full((512, 512, 3), 255, np.uint8)
    img[254:258, 64:448] = 0
    return img


def test_lineart_standard_marks_the_line(drawn_line):
    out = annotators.run("lineart_standard", drawn_line)[:, :, 0]
    assert out[254:258, 100:400].min() > 100
    assert out[:200].max() == 0 and out[320:].max() == 0


def test_lineart_standard_equals_controlnet_aux(photo):
    img = cv2.resize(photo, (512, 512))
    theirs = aux_module("lineart_standard").LineartStandardDetector()(img, 6.0, 8, 512, output_type="np")
    assert (annotators.run("lineart_standard", img) == theirs).all()
    theirs = aux_module("lineart_standard").LineartStandardDetector()(img, 2.5, 20, 512, output_type="np")
    assert (annotators.run("lineart_standard", img, gaussian_sigma=2.5, intensity_threshold=20) == theirs).all()


def test_scribble_xdog_finds_the_line_only(drawn_line):
    out = annotators.run("scribble_xdog", drawn_line)[:, :, 0]
    assert (out[250:262, 100:400].max(axis=0) == 255).all()
    assert out[:240].max() == 0 and out[272:].max() == 0
    assert annotators.run("scribble_xdog", drawn_line * 0 + 128).max() == 0


def test_binary_threshold_and_otsu():
    img = np.zeros((64, 64, 3), np.uint8)
    img[:, :32] = 40
    img[:, 32:] = 180
    assert annotators.run("binary", img, threshold=100)[0, 0, 0] == 255
    assert annotators.run("binary", img, threshold=100)[0, 40, 0] == 0
    assert annotators.run("binary", img, threshold=200).min() == 255
    otsu = annotators.run("binary", img)[:, :, 0]
    assert (otsu[:, :32] == 255).all() and (otsu[:, 32:] == 0).all()


def test_invert(photo):
    assert (annotators.run("invert", photo).astype(int) + photo == 255).all()


def test_shuffle_is_repeatable_keeps_colours_and_moves_layout(photo):
    a = annotators.run("shuffle", photo, seed=3)
    assert (a == annotators.run("shuffle", photo, seed=3)).all()
    assert (a != annotators.run("shuffle", photo, seed=4)).any()
    assert np.abs(a.astype(float) - photo).mean() > 20              # moved
    palette = {tuple(c) for c in photo[::4, ::4].reshape(-1, 3).tolist()}
    sampled = [tuple(c) for c in a[::37, ::41].reshape(-1, 3).tolist()]
    # Pixels come from the picture (bilinear mixing of neighbours aside).
    near = [min(np.abs(np.subtract(c, p)).max() for p in palette) for c in sampled]
    assert np.median(near) <= 6


def test_tile_down_samples():
    checker = (np.indices((256, 256)).sum(axis=0) % 2 * 255).astype(np.uint8)
    out = annotators.run("tile", checker, down_sampling_rate=4.0)
    assert out.shape == (256, 256, 3)
    assert np.abs(out.astype(int) - 127).max() <= 2           # the fine pattern is gone
    assert (annotators.run("tile", checker) == checker[:, :, None]).all()
    blurred = annotators.run("tile", checker, blur_sigma=2.0)
    assert np.abs(blurred.astype(int) - 127).max() <= 3


def test_color_grid_cells_are_their_mean_colour(photo):
    img = cv2.resize(photo, (512, 512))
    out = annotators.run("color_grid", img, grid_size=64)
    for r in range(0, 512, 64):
        for c in range(0, 512, 64):
            cell = out[r:r + 64, c:c + 64].reshape(-1, 3)
            assert (cell == cell[0]).all()
            assert np.abs(cell[0].astype(float) - img[r:r + 64, c:c + 64].reshape(-1, 3).mean(axis=0)).max() <= 1


def test_segmentation_paint_snaps_to_ade20k():
    ade = palette_array(ADE20K)
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 150, (8, 8))
    painted = np.repeat(np.repeat(ade[truth], 16, axis=0), 16, axis=1).astype(int)
    # ADE20K colours lie 7.07 apart at the closest: noise of 2 per channel (3.5 in all) stays nearest.
    painted = (painted + rng.integers(-2, 3, painted.shape)).clip(0, 255).astype(np.uint8)
    out = annotators.run("segmentation_paint", painted)
    expected = np.repeat(np.repeat(ade[truth], 16, axis=0), 16, axis=1)
    assert (out == expected).all()


def test_segmentation_paint_with_another_palette():
    annotators.add_palette("two_tone", [[0, 0, 0], [250, 10, 10]])
    img = np.zeros((4, 4, 3), np.uint8)
    img[:2] = (200, 60, 40)
    out = annotators.run("segmentation_paint", img, palette="two_tone")
    assert out[0, 0].tolist() == [250, 10, 10] and out[3, 3].tolist() == [0, 0, 0]
    assert "two_tone" in {p["name"]: p for p in annotators.spec("segmentation_paint")["params"]}["palette"]["choices"]
    with pytest.raises(ValueError, match="palette.*'ade20k'"):
        annotators.run("segmentation_paint", img, palette="nope")
    with pytest.raises(ValueError, match="R, G, B"):
        annotators.add_palette("bad", [[1, 2]])


def test_inpaint_mask_threshold_grow_feather_invert():
    paint = np.zeros((128, 128, 3), np.uint8)
    cv2.circle(paint, (64, 64), 20, (255, 255, 255), -1)
    mask = annotators.run("inpaint_mask", paint)[:, :, 0]
    assert mask[64, 64] == 255 and mask[64, 90] == 0 and set(np.unique(mask)) == {0, 255}
    grown = annotators.run("inpaint_mask", paint, grow=10)[:, :, 0]
    assert grown[64, 90] == 255 and grown[64, 96] == 0
    soft = annotators.run("inpaint_mask", paint, feather=4.0)[:, :, 0]
    assert 0 < soft[64, 84] < 255
    inv = annotators.run("inpaint_mask", paint, invert=True)[:, :, 0]
    assert (inv == 255 - mask).all()


def test_snap_to_palette_picks_a_nearest_colour_for_any_pixel():
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    ade = palette_array(ADE20K).astype(int)
    out = annotators.snap_to_palette(img, palette_array(ADE20K)).reshape(-1, 3).astype(int)
    pixels = img.reshape(-1, 3).astype(int)
    brute = ((pixels[:, None, :] - ade[None]) ** 2).sum(axis=2).min(axis=1)
    assert (((out - pixels) ** 2).sum(axis=1) == brute).all()
    assert {tuple(c) for c in out} <= {tuple(c) for c in ade}
