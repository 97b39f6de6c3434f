"""Control maps fitted to another size: a thin line map stays a line map (binary, every line
still there), other maps are averaged or interpolated as pictures."""
import numpy as np
import pytest

import annotators
from annotators.image import is_binary, scale_map
from annotators.image import fit as resize


def _square_outline(size: int, width: int = 1) -> np.ndarray:
    m = np.zeros((size, size, 3), np.uint8)
    a, b = size // 4, 3 * size // 4
    m[a:b, a:a + width] = m[a:b, b - width:b] = m[a:a + width, a:b] = m[b - width:b, a:b] = 255
    return m


@pytest.mark.parametrize("to", [128, 96, 61])
def test_a_one_pixel_line_map_shrunk_stays_binary_with_every_side(to):
    out = scale_map(_square_outline(512), to, to)
    assert out.shape == (to, to, 3) and set(np.unique(out)) == {0, 255}
    a, b = to // 4, 3 * to // 4
    for side in (out[a + 2:b - 2, a - 2:a + 3], out[a + 2:b - 2, b - 3:b + 2],
                 out[a - 2:a + 3, a + 2:b - 2], out[b - 3:b + 2, a + 2:b - 2]):
        assert (side.max(axis=1 if side.shape[0] > side.shape[1] else 0) == 255).mean() > 0.9


def test_the_engine_fits_a_canny_map_the_same_way():
    photo = np.full((512, 512, 3), 255, np.uint8)
    photo[128:384, 128:384] = (200, 40, 40)
    edges = annotators.run("canny", photo)
    fitted = resize(edges, 128, 128, "crop")
    assert is_binary(fitted) and (fitted > 0).mean() > 0.012    # 4 sides x 64 px of 128 x 128 is 0.0156


def test_a_small_photo_gets_a_canny_map_with_its_edges():
    photo = np.full((96, 96, 3), 255, np.uint8)
    photo[24:72, 24:72] = (200, 40, 40)
    edges = annotators.run("canny", photo)     # detected at 512, returned at 96
    assert edges.shape == (96, 96, 3) and (edges > 0).mean() > 0.02


def test_pictures_and_grey_maps_are_not_thresholded():
    grey = np.tile(np.linspace(0, 255, 256, dtype=np.uint8), (256, 1))[..., None].repeat(3, axis=2)
    out = scale_map(grey, 64, 64)
    assert len(np.unique(out)) > 30
    assert not is_binary(grey) and not is_binary(np.full((8, 8, 3), 255, np.uint8))

