"""A reference unit on the page: an artist picks reference_adain+attn as a unit's model, the unit
shows its style-fidelity slider and calls its picture a reference, a dropped photo is used as it
is, the run differs from one without it, and the saved PNG brings the unit back."""

import numpy as np
import pytest
from PIL import Image

from engine import read_recipe
from tests.browser.studio_page import (choose, drop_file, generate_and_download, image,
                                         png_bytes, set_number, src, wait_new_image)

pytestmark = pytest.mark.browser




def test_a_reference_unit_carries_a_picture_and_comes_back_from_itspng_bytes(page, tmp_path):
    slider = page.locator("#unit1-style-fidelity")
    assert not slider.is_visible()                                   # a ControlNet unit has none
    choose(page, "#unit1-model", "reference_adain+attn")
    slider.wait_for(state="visible")
    page.locator("#unit1-map").get_by_text("Reference picture").first.wait_for()
    reference = np.zeros((96, 96, 3), np.uint8)
    reference[24:72, 24:72] = (220, 30, 30)                          # a red square on black
    page.locator("#unit1-map input[type=file]").set_input_files(
        files=[{"name": "look.png", "mimeType": "image/png", "buffer": png_bytes(reference)}])
    page.locator("#unit1-map img").first.wait_for()
    # a picture dropped on a unit turns it on (a queued event: wait for it)
    page.wait_for_function("document.querySelector('#unit1-enabled input').checked", timeout=30_000)
    set_number(page, "#unit1-style-fidelity", 0.8)
    page.locator("#prompt textarea").fill("a circle")
    set_number(page, "#steps", 3)
    page.locator("#seed input").fill("11")
    before = src(page, "#gallery")
    page.locator("#generate").click()
    page.locator("#status").get_by_text("runs the UNet once more per step").wait_for(timeout=60_000)  # said at once
    with_ref = generate_and_download(page, tmp_path, "with.png", click=False, old=before)
    recipe = read_recipe(with_ref)
    (unit,) = [u for u in recipe.units if u.enabled]
    assert (unit.model, unit.style_fidelity, unit.annotator) == ("reference_adain+attn", 0.8, None)
    assert np.array_equal(unit.image, reference)                     # the photo itself, not a map of it

    page.locator("#unit1-enabled input").uncheck()
    without = generate_and_download(page, tmp_path, "without.png")
    a = np.asarray(Image.open(with_ref).convert("RGB"), float)
    b = np.asarray(Image.open(without).convert("RGB"), float)
    assert np.abs(a - b).mean() > 1.0, "the reference unit changed nothing"

    page.reload()
    page.wait_for_selector("#sketch canvas", timeout=120_000)
    drop_file(page, "#title", with_ref.read_bytes(), with_ref.name)
    wait_new_image(page, "#unit1-map", None)
    assert page.locator("#unit1-model input").input_value() == "reference_adain+attn"
    slider.wait_for(state="visible")
    assert float(slider.locator("input[type=number]").first.input_value()) == 0.8
    assert np.array_equal(image(page, "#unit1-map"), reference)
