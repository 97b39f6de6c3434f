"""An artist who places an IP-Adapter and its image encoder in models/ipadapters/: a unit offers
it in its model list, calls its map a reference picture, uses a dropped photo as it is, the run
differs from one without it, and the saved PNG brings the unit back."""

import numpy as np
import pytest
from PIL import Image

from engine import read_recipe
from tests.browser.conftest import open_page
from tests.browser.studio_page import (choose, drop_file, generate_and_download, image,
                                         png_bytes, set_number, src, wait_new_image)
from tests.engine.ip_adapter_files import VIT_H, make_ip_adapter, save_encoder, save_safetensors
from tests.tiny_models import tiny_backbone_parts
from tests.ui.studio_server import start, stop, tiny_demo

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def ip_studio(tmp_path_factory):
    root = tiny_demo(tmp_path_factory.mktemp("ip-adapter-models"))
    folder = root / "ipadapters"
    folder.mkdir()
    save_encoder(folder / "image_encoder", VIT_H)
    # made for the tiny demo's own UNet (tiny_demo builds it from seed 0), so it fits its layers
    save_safetensors(make_ip_adapter(tiny_backbone_parts(seed=0)["unet"], VIT_H, seed=3, strength=1.0),
                     folder / "ip-adapter_sd15.safetensors")
    server = start(models=root)
    yield server
    stop(server)




def test_an_ip_adapter_unit_carries_a_picture_and_comes_back_from_itspng_bytes(browser, ip_studio, request, tmp_path):
    with open_page(browser, ip_studio["url"], request.node.name) as page:
        offered = choose(page, "#unit1-model", "ip-adapter_sd15")
        assert "ip-adapter_sd15" in offered and "reference_only" in offered and "image_encoder" not in offered
        page.locator("#unit1-map").get_by_text("Reference picture").first.wait_for()
        assert not page.locator("#unit1-style-fidelity").is_visible()
        # no mask, control mode or resize mode: the adapter's encoder reads the whole picture its own way
        for hidden in ("#unit1-mask", "#unit1-mode", "#unit1-resize-mode"):
            page.wait_for_selector(hidden, state="hidden", timeout=10_000)
        assert page.locator("#unit2-mask").is_visible()          # unit 2 (a ControlNet) keeps its mask
        photo = np.zeros((80, 96, 3), np.uint8)
        photo[:] = (30, 160, 60)
        photo[20:60, 30:70] = (230, 200, 20)
        page.locator("#unit1-map input[type=file]").set_input_files(
            files=[{"name": "look.png", "mimeType": "image/png", "buffer": png_bytes(photo)}])
        page.locator("#unit1-map img").first.wait_for()
        page.wait_for_function("document.querySelector('#unit1-enabled input').checked", timeout=30_000)
        set_number(page, "#unit1-weight", 1.5)
        page.locator("#prompt textarea").fill("a red star")
        for field, value in (("#steps", 2), ("#width", 64), ("#height", 64), ("#seed", 11)):
            set_number(page, field, value)
        before = src(page, "#gallery")
        page.locator("#generate").click()
        with_ip = generate_and_download(page, tmp_path, "with.png", click=False, old=before)
        (unit,) = [u for u in read_recipe(with_ip).units if u.enabled]
        assert (unit.model, unit.weight, unit.annotator) == ("ip-adapter_sd15", 1.5, None)
        assert np.array_equal(unit.image, photo)                       # the photo itself, not a map of it

        page.locator("#unit1-enabled input").uncheck()
        without = generate_and_download(page, tmp_path, "without.png")
        a = np.asarray(Image.open(with_ip).convert("RGB"), float)
        b = np.asarray(Image.open(without).convert("RGB"), float)
        assert np.abs(a - b).mean() > 1.0, "the IP-Adapter unit changed nothing"

        page.reload()
        page.wait_for_selector("#sketch canvas", timeout=120_000)
        drop_file(page, "#title", with_ip.read_bytes(), with_ip.name)
        wait_new_image(page, "#unit1-map", None)
        assert page.locator("#unit1-model input").input_value() == "ip-adapter_sd15"
        page.locator("#unit1-map").get_by_text("Reference picture").first.wait_for()
        assert np.array_equal(image(page, "#unit1-map"), photo)
