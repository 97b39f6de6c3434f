"""An artist who drops an SDXL checkpoint and two SDXL ControlNets into the models folder: the page
offers the backbone with its family, offers only SDXL control models once it is chosen, and
generates with two SDXL units from maps uploaded onto them."""
import numpy as np
import pytest
from PIL import Image
from safetensors.torch import save_file

from engine import read_recipe
from tests.browser.conftest import open_page
from tests.browser.studio_page import choose, download_picture, image, png_bytes, set_number
from tests.tiny_models import save_sdxl_folder, tiny_controlnet, tiny_sdxl_parts, tiny_union
from tests.ui.studio_server import start, stop, tiny_demo

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def xl_studio(tmp_path_factory):
    root = tiny_demo(tmp_path_factory.mktemp("xl-models"))
    xl = tiny_sdxl_parts(seed=5)
    save_sdxl_folder(xl, root / "backbones" / "tiny-xl")
    tiny_controlnet(xl["unet"], seed=1).save_pretrained(root / "controlnets" / "xl-canny")
    net = tiny_controlnet(xl["unet"], seed=2)      # a single file with its config beside it
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(root / "controlnets" / "xl-depth.safetensors"))
    net.save_config(root / "controlnets" / "xl-depth.config")
    tiny_union(xl["unet"]).save_pretrained(root / "controlnets" / "controlnet-union-sdxl-1.0")
    server = start(models=root)
    yield server
    stop(server)



def test_two_sdxl_units_generate_from_a_models_folder(browser, xl_studio, control_maps, request, tmp_path):
    with open_page(browser, xl_studio["url"], request.node.name) as page:
        backbones = choose(page, "#backbone", "tiny-xl (SDXL)")
        assert backbones == ["demo", "tiny-xl (SDXL)"], backbones   # the demo stays on offer
        # the backbone's family picks the units' models: no SD1.5 (demo) net stays chosen
        page.wait_for_function("!document.querySelector('#unit1-model input').value.startsWith('demo')",
                               timeout=30_000)
        for n, (model, picture) in enumerate([("xl-canny", control_maps[0]),
                                              ("xl-depth.safetensors", control_maps[1])], start=1):
            page.locator(f"#unit{n}-map input[type=file]").set_input_files(
                files=[{"name": f"map{n}.png", "mimeType": "image/png", "buffer": png_bytes(picture)}])
            page.locator(f"#unit{n}-map img").first.wait_for()
            offered = choose(page, f"#unit{n}-model", model)
            assert {"xl-canny", "xl-depth.safetensors", "controlnet-union-sdxl-1.0"} <= set(offered), offered
            assert not any(name.startswith("demo") for name in offered), offered   # SD1.5 nets are not offered
            enabled = page.locator(f"#unit{n}-enabled input")
            if not enabled.is_checked():
                enabled.check()
        page.locator("#prompt textarea").fill("a red star")
        set_number(page, "#steps", 2)
        set_number(page, "#width", 64)
        set_number(page, "#height", 64)
        page.locator("#generate").click()
        page.wait_for_selector("#gallery img", timeout=180_000)
        picture = image(page, "#gallery")
        assert picture.shape == (64, 64, 3), picture.shape
        assert picture.std() > 1                         # a picture, not a blank tile
        saved = download_picture(page, tmp_path)
    recipe = read_recipe(saved)
    assert recipe.backbone == "tiny-xl" and recipe.steps == 2
    assert [(u.model, u.enabled) for u in recipe.units[:2]] == [("xl-canny", True), ("xl-depth.safetensors", True)]
    assert Image.open(saved).size == (64, 64)


def test_a_union_unit_shows_its_control_type_and_the_recipe_keeps_it(browser, xl_studio, control_maps, request,
                                                                      tmp_path):
    with open_page(browser, xl_studio["url"], request.node.name) as page:
        choose(page, "#backbone", "tiny-xl (SDXL)")
        union_type = page.locator("#unit1-union-type")
        assert not union_type.is_visible()                       # a plain ControlNet has no type to pick
        page.locator("#unit1-map input[type=file]").set_input_files(
            files=[{"name": "edges.png", "mimeType": "image/png", "buffer": png_bytes(control_maps[1])}])
        page.locator("#unit1-map img").first.wait_for()
        choose(page, "#unit1-model", "controlnet-union-sdxl-1.0")
        union_type.wait_for(state="visible")
        assert page.locator("#unit1-union-type input").input_value() == "from the annotator"
        types = choose(page, "#unit1-union-type", "Hard Edge")
        assert types[:3] == ["from the annotator", "OpenPose", "Depth"] and "Tile" in types, types
        page.wait_for_function("document.querySelector('#unit1-enabled input').checked", timeout=30_000)
        set_number(page, "#steps", 2)
        set_number(page, "#width", 64)
        set_number(page, "#height", 64)
        page.locator("#generate").click()
        page.wait_for_selector("#gallery img", timeout=180_000)
        saved = download_picture(page, tmp_path)
    (unit,) = [u for u in read_recipe(saved).units if u.enabled]
    assert (unit.model, unit.union_control_type) == ("controlnet-union-sdxl-1.0", "Hard Edge")
