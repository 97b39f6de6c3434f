"""The hires fix and the batch over a folder, from the page as an artist uses them: a hires
picture downloaded at the second pass's size with its recipe (restored from the PNG), a batch over
a folder of sketches and a text file, and a folder refused when the studio listens beyond localhost."""
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine import read_recipe
from tests.browser.conftest import open_page
from tests.browser.studio_page import choose, download_picture, draw_circle, drop_file, set_number, wait_new_image
from tests.ui.studio_server import start, stop, tiny_demo

pytestmark = pytest.mark.browser

RUN_TIMEOUT_MS = 300_000
WATCH_STATUS = """() => { window.statusSeen = [];
  new MutationObserver(() => window.statusSeen.push(document.querySelector('#status').innerText))
    .observe(document.querySelector('#status'), {subtree: true, childList: true, characterData: true}); }"""


def _small_run(page, seed: int) -> None:
    page.locator("#prompt textarea").fill("a large red circle on a white background")
    set_number(page, "#steps", 2)
    set_number(page, "#width", 64)
    set_number(page, "#height", 64)
    set_number(page, "#seed", seed)


def _toasts(page) -> list[str]:
    return [t.strip() for t in page.locator(".toast-message-text").all_inner_texts()]


def test_a_hires_picture_has_the_second_pass_size_and_its_recipe_restores_the_fields(page, tmp_path):
    draw_circle(page)
    wait_new_image(page, "#sketch-map", None)
    page.locator("#sketch-to-unit1").click()
    wait_new_image(page, "#unit1-map", None)
    _small_run(page, seed=21)
    assert not page.locator("#unit1-hr-option").is_visible()      # meaningless while the fix is off
    page.locator("#hires").get_by_text("Hires fix").first.click()
    page.locator("#hr-enable input").check()
    page.locator("#unit1-hr-option").wait_for()                    # shown once the fix is on
    choose(page, "#unit1-hr-option", "High res only")
    choose(page, "#hr-upscaler", "Lanczos")
    set_number(page, "#hr-scale", 2)
    set_number(page, "#hr-steps", 2)
    set_number(page, "#hr-strength", 0.6)

    page.evaluate(WATCH_STATUS)
    page.locator("#generate").click()
    page.wait_for_selector("#gallery img", timeout=RUN_TIMEOUT_MS)
    page.get_by_text("Done:").first.wait_for(timeout=RUN_TIMEOUT_MS)
    seen = page.evaluate("window.statusSeen")
    # one count over both passes (2 + 2 steps), each pass named while it runs
    assert any(re.search(r"Step [1-2] / 4 · first pass", s) for s in seen), seen
    assert any(re.search(r"Step [3-4] / 4 · hires pass", s) for s in seen), seen
    assert any("hires fix: then a second pass of 2 steps at x2" in s for s in seen), seen

    saved = download_picture(page, tmp_path, "hires.png")
    page.keyboard.press("Escape")
    assert Image.open(saved).size == (128, 128)                    # 64x64 first pass, scaled by 2
    recipe = read_recipe(saved)
    assert (recipe.enable_hr, recipe.hr_upscaler, recipe.hr_scale, recipe.hr_second_pass_steps, recipe.strength,
            recipe.width, recipe.seed) == (True, "Lanczos", 2, 2, 0.6, 64, 21), recipe
    assert recipe.units[0].hr_option == "high"

    # the artist changes the fields, then drops the PNG back: every hires field is as it was
    page.locator("#hr-enable input").uncheck()
    page.locator("#unit1-hr-option").wait_for(state="hidden")
    set_number(page, "#hr-scale", 1.5)
    drop_file(page, "#title", saved.read_bytes(), saved.name)
    page.get_by_text("hires fix on,").first.wait_for(timeout=30_000)
    assert page.locator("#hr-enable input").is_checked()
    assert page.locator("#hr-upscaler input").input_value() == "Lanczos"
    assert float(page.locator("#hr-scale input[type=number]").first.input_value()) == 2
    assert float(page.locator("#hr-steps input[type=number]").first.input_value()) == 2
    assert float(page.locator("#hr-strength input[type=number]").first.input_value()) == 0.6
    page.locator("#unit1-hr-option").wait_for()
    assert page.locator("#unit1-hr-option input").input_value() == "High res only"


def _folder_of_sketches(folder, names) -> None:
    folder.mkdir(parents=True)
    for k, name in enumerate(names):
        a = np.zeros((64, 64, 3), np.uint8)
        a[8 + 8 * k:40 + 8 * k, 16:20] = 255                       # a different stroke in each
        Image.fromarray(a).save(folder / name)


def _run_batch(page, folder: str) -> tuple[str, list]:
    """(the summary, every status the run showed)."""
    page.locator("#batch-dir").get_by_role("textbox").fill(folder)
    page.evaluate(WATCH_STATUS)          # this run's statuses (an earlier batch's summary may still show)
    page.locator("#batch-run").click()
    # this run's first status ("reading the folder"), then its summary
    page.wait_for_function("""() => { const seen = window.statusSeen;
        const started = seen.findIndex(s => s.includes('reading the folder'));
        return started >= 0 && seen.slice(started).some(s => s.includes('Batch done')); }""", timeout=RUN_TIMEOUT_MS)
    seen = page.evaluate("window.statusSeen")
    seen = seen[[i for i, s in enumerate(seen) if "reading the folder" in s][0]:]
    return next(s for s in seen if "Batch done" in s), seen


def test_a_batch_over_a_folder_makes_one_picture_per_sketch_and_reports_the_text_file(page, tmp_path):
    folder = tmp_path / "sketches"
    _folder_of_sketches(folder, ["a.png", "b.png", "c.jpg"])
    (folder / "notes.txt").write_text("not a picture")
    _small_run(page, seed=3)
    page.locator("#unit1-enabled input").check()                  # no map: the folder gives it its maps
    page.locator("#batch").get_by_text("Batch over a folder").first.click()
    choose(page, "#batch-unit", "Unit 1")

    status, seen = _run_batch(page, str(folder))
    # one count over the whole batch: 3 pictures of 2 steps
    assert any(re.search(r"Step [1-6] / 6 over the whole batch", s) for s in seen), seen
    assert "3 made, 0 already made (same recipe), 1 not made" in status, status
    report = page.locator("#batch-report textarea").input_value()
    assert "notes.txt: not a picture" in report, report
    out = re.search(r"Outputs in (\S+)", page.locator("#batch-out").inner_text()).group(1)
    made = sorted(p.name for p in Path(out).iterdir())
    assert made == ["a.png", "b.png", "c.png"], made
    recipes = [read_recipe(f"{out}/{n}") for n in made]
    assert [r.seed for r in recipes] == [3, 4, 5] and all(Image.open(f"{out}/{n}").size == (64, 64) for n in made)
    assert page.locator("#gallery img").count() == 3

    again, _ = _run_batch(page, str(folder))                          # a re-run makes nothing new
    assert "0 made, 3 already made" in again, again
    assert "a.png: skipped" in page.locator("#batch-report textarea").input_value()


def test_a_listening_studio_refuses_a_folder_outside_its_own_and_reads_its_inputs_folder(browser, tmp_path_factory,
                                                                                         request):
    work = tmp_path_factory.mktemp("listen")
    inputs = work / "inputs"
    _folder_of_sketches(inputs / "sketches", ["only.png"])
    _folder_of_sketches(work / "elsewhere", ["x.png"])
    server = start(extra_args=("--listen", "--inputs-dir", str(inputs)), models=tiny_demo(work / "models"))
    try:
        with open_page(browser, server["url"], request.node.name) as page:
            _small_run(page, seed=1)
            page.locator("#unit1-enabled input").check()
            page.locator("#batch").get_by_text("Batch over a folder").first.click()
            page.locator("#batch-dir").get_by_role("textbox").fill(str(work / "elsewhere"))
            page.locator("#batch-run").click()
            page.locator(".toast-message-text").first.wait_for(timeout=30_000)
            shown = " ".join(_toasts(page))
            assert "is outside the studio's own folders" in shown and str(inputs) in shown, shown
            assert "Traceback" not in page.content() and "Something went wrong" not in shown
            assert not (server["outputs"] / "batches").exists()

            status, _ = _run_batch(page, "sketches")                  # a bare name: a folder in the inputs folder
            assert "1 made" in status, status
    finally:
        stop(server)
