"""One rule for what a picture is, whichever entry point reads it: a control unit (engine), an
annotator, the fidelity meter and a recipe's base64 PNG."""
import base64
import io

import numpy as np
import pytest
from PIL import Image

import annotators
from engine import ControlUnit, fidelity
from engine.images import from_b64


def _b64(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _scene() -> np.ndarray:
    rgb = np.full((64, 64, 3), 250, np.uint8)
    rgb[16:48, 20:44] = (30, 30, 30)
    return rgb


def _sixteen_bit_grey() -> tuple[object, np.ndarray]:
    """A 16-bit grey picture (as PIL opens a 16-bit PNG: mode I, 32-bit integers above 255) and
    the 8-bit picture it shows."""
    grey8 = _scene()[..., 0]
    return Image.fromarray(grey8.astype(np.int32) * 257, "I"), np.repeat(grey8[..., None], 3, axis=2)


def _palette() -> tuple[object, np.ndarray]:
    rgb = _scene()
    return Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=4), rgb


def _through_every_entry_point(picture) -> list[np.ndarray]:
    """The 8-bit RGB each entry point makes of `picture`."""
    arrays = [ControlUnit("demo:scribble", picture).image]
    as_png = picture if isinstance(picture, Image.Image) else Image.fromarray(picture)
    arrays.append(ControlUnit("demo:scribble", from_b64(_b64(as_png))).image)
    arrays.append(annotators.run("invert", annotators.run("invert", picture)))
    return arrays


@pytest.mark.parametrize("make", [_sixteen_bit_grey, _palette], ids=["16-bit", "palette"])
def test_every_entry_point_reads_a_picture_alike(make):
    picture, shown = make()
    for got in _through_every_entry_point(picture):
        assert got.shape == shown.shape and np.abs(got.astype(int) - shown).max() <= 1
    # the meter scores the 16-bit picture as the 8-bit one it shows
    lines = np.zeros((64, 64, 3), np.uint8)
    lines[16:48, 20] = lines[16:48, 43] = 255
    assert fidelity.score("scribble", picture, lines) == fidelity.score("scribble", shown, lines)


def test_sixteen_bit_arrays_are_scaled_everywhere():
    wide = np.array([[0, 257 * 100, 65535]], np.uint16)
    as_int = wide.astype(np.int64)              # integer pixels above 255 are 16-bit too
    for picture in (wide, as_int):
        assert ControlUnit("m", picture).image[0, :, 0].tolist() == [0, 100, 255]
        assert annotators.run("invert", picture)[0, :, 0].tolist() == [255, 155, 0]


def test_nan_is_refused_the_same_way_everywhere():
    bad = np.full((16, 16, 3), np.nan, np.float32)
    calls = [lambda: ControlUnit("m", bad), lambda: annotators.run("invert", bad),
             lambda: fidelity.score("scribble", bad, np.zeros((16, 16, 3), np.uint8)),
             lambda: annotators.fit(bad, 8, 8)]
    for call in calls:
        with pytest.raises(ValueError, match="NaN|uint8"):
            call()
    for call in calls[:3]:
        with pytest.raises(ValueError, match="NaN or infinite"):
            call()


def test_grey_and_alpha_is_composited_on_white():
    la = np.zeros((2, 2, 2), np.uint8)
    la[0, 0] = (0, 255)            # opaque black
    out = annotators.to_rgb(la)
    assert out[0, 0].tolist() == [0, 0, 0] and out[1, 1].tolist() == [255, 255, 255]
    assert (ControlUnit("m", la).image == out).all()
