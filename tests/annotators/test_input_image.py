import numpy as np
import pytest
from PIL import Image

from annotators.image import detect_size, resize_for_detection, to_rgb


def test_gray_becomes_three_equal_channels():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    out = to_rgb(gray)
    assert out.shape == (3, 4, 3) and out.dtype == np.uint8
    assert (out == gray[:, :, None]).all()


def test_rgba_is_composited_on_white():
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)   # opaque red stays red
    rgba[0, 1] = (0, 0, 0, 0)       # transparent becomes white
    rgba[1, 0] = (0, 0, 0, 128)     # half black is mid gray
    out = to_rgb(rgba)
    assert tuple(out[0, 0]) == (255, 0, 0)
    assert tuple(out[0, 1]) == (255, 255, 255)
    assert 124 <= out[1, 0, 0] <= 128
    assert (to_rgb(Image.fromarray(rgba, "RGBA")) == out).all()


def test_sixteen_bit_is_scaled_not_clipped():
    arr = np.array([[0, 257 * 100, 65535]], np.uint16)
    assert list(to_rgb(arr)[0, :, 0]) == [0, 100, 255]
    pil = Image.fromarray(arr)
    assert pil.mode.startswith("I;16")
    assert list(to_rgb(pil)[0, :, 1]) == [0, 100, 255]


def test_palette_with_transparency_is_converted():
    pal = Image.new("P", (3, 1))
    pal.putpalette([0, 0, 255] + [10, 200, 10] + [0, 0, 0] * 254)
    pal.putpixel((0, 0), 0)
    pal.putpixel((1, 0), 1)
    pal.putpixel((2, 0), 1)
    assert [tuple(p) for p in to_rgb(pal)[0]] == [(0, 0, 255), (10, 200, 10), (10, 200, 10)]
    pal.info["transparency"] = 1
    assert [tuple(p) for p in to_rgb(pal)[0]] == [(0, 0, 255), (255, 255, 255), (255, 255, 255)]


def test_float_and_bool_inputs():
    assert to_rgb(np.array([[0.0, 1.0]]))[0, 1, 0] == 255
    assert to_rgb(np.array([[False, True]]))[0, 1, 2] == 255


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="a PIL image or a numpy array"):
        to_rgb([[1, 2]])
    with pytest.raises(ValueError, match="empty"):
        to_rgb(np.zeros((5, 0), np.uint8))


def test_detection_size_follows_controlnet_aux():
    # Short side to the resolution, each side rounded to a multiple of 64.
    assert detect_size(512, 512, 512) == (512, 512)
    assert detect_size(320, 480, 512) == (512, 768)
    assert detect_size(300, 500, 512) == (512, 832)     # 853.3 -> 832
    assert detect_size(1000, 700, 384) == (576, 384)    # 548.6 -> 576
    assert resize_for_detection(np.zeros((300, 500, 3), np.uint8), 512).shape == (512, 832, 3)
