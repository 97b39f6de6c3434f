"""An artist who drops a LoRA file into models/loras/: the page offers it in the LoRAs accordion,
a generation with it keeps it (and its weight) in the PNG's recipe and looks different from one
without it, and dropping that PNG back puts the LoRA back in its row."""
import numpy as np
import pytest
from PIL import Image

from engine import read_recipe
from tests.browser.conftest import open_page
from tests.browser.studio_page import choose, download_picture, drop_file, set_number
from tests.engine.lora_files import make_lora, save_kohya
from tests.tiny_models import tiny_backbone_parts
from tests.ui.studio_server import start, stop, tiny_demo

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def lora_studio(tmp_path_factory):
    root = tiny_demo(tmp_path_factory.mktemp("lora-models"))
    (root / "loras").mkdir()
    # made on the tiny demo's own parts (tiny_demo builds them from seed 0), so it fits its layers
    save_kohya(make_lora(tiny_backbone_parts(seed=0), seed=5, strength=0.6), root / "loras" / "tiny_ink.safetensors")
    server = start(models=root)
    yield server
    stop(server)


def _generate_and_download(page, tmp_path, name: str):
    old = page.locator("#gallery img").first.get_attribute("src") if page.locator("#gallery img").count() else None
    page.locator("#generate").click()
    page.wait_for_function(
        """old => { const i = document.querySelector('#gallery img');
                    return i && i.getAttribute('src') && i.getAttribute('src') !== old; }""",
        arg=old, timeout=180_000)
    saved = download_picture(page, tmp_path, name)
    page.keyboard.press("Escape")      # close the gallery's preview so the next click reaches the page
    return saved


def test_a_lora_picked_on_the_page_changes_the_picture_and_comes_back_from_its_png(browser, lora_studio, request,
                                                                                    tmp_path):
    with open_page(browser, lora_studio["url"], request.node.name) as page:
        page.locator("#loras").get_by_text("LoRAs").first.click()
        assert not page.locator("#no-loras").is_visible()     # a LoRA is installed: no "where to put files"
        offered = choose(page, "#lora1", "tiny_ink")
        assert offered == ["(none)", "tiny_ink"], offered
        set_number(page, "#lora1-weight", 0.8)
        page.locator("#prompt textarea").fill("a red star")
        set_number(page, "#steps", 2)
        set_number(page, "#width", 64)
        set_number(page, "#height", 64)
        set_number(page, "#seed", 11)

        with_lora = _generate_and_download(page, tmp_path, "with-lora.png")
        recipe = read_recipe(with_lora)
        assert [(c.name, c.weight) for c in recipe.loras] == [("tiny_ink", 0.8)], recipe.loras
        assert recipe.seed == 11 and Image.open(with_lora).size == (64, 64)

        choose(page, "#lora1", "(none)")
        without = _generate_and_download(page, tmp_path, "without-lora.png")
        assert read_recipe(without).loras == () and read_recipe(without).seed == 11
        a = np.asarray(Image.open(with_lora).convert("RGB"), dtype=np.int16)
        b = np.asarray(Image.open(without).convert("RGB"), dtype=np.int16)
        assert np.abs(a - b).mean() > 1, "the LoRA did not change the picture"

        drop_file(page, "#title", with_lora.read_bytes(), with_lora.name)
        page.wait_for_function("document.querySelector('#lora1 input').value === 'tiny_ink'", timeout=30_000)
        assert float(page.locator("#lora1-weight input[type=number]").first.input_value()) == 0.8
        assert page.locator("#lora2 input").input_value() in ("", "(none)")
        page.get_by_text("1 LoRA,").first.wait_for()


def test_a_studio_without_loras_says_where_to_put_them(browser, tmp_path_factory, request):
    server = start(models=tiny_demo(tmp_path_factory.mktemp("no-lora-models")))
    try:
        with open_page(browser, server["url"], request.node.name) as page:
            page.locator("#loras").get_by_text("LoRAs").first.click()
            note = page.locator("#no-loras")
            note.wait_for()
            assert "loras" in note.inner_text() and ".safetensors" in note.inner_text(), note.inner_text()
    finally:
        stop(server)
