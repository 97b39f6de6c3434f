"""The studio used as a person uses it: mouse strokes, a dragged joint, clicks, a download and a
dropped file, in headless Chromium against the studio started by launch.py on localhost."""
import json
import re
import time

import numpy as np
import pytest

from engine import read_recipe
from tests.browser.conftest import ARTIFACTS
from tests.browser.studio_page import (draw_circle, drop_file, image, open_tab, picture_in_sight,
                                       pose_joint_on_screen, set_number, src, wait_for_picture, wait_new_image)
from ui.pose_tab import DEFAULT_PERSON

pytestmark = [pytest.mark.browser, pytest.mark.slow]

WRIST = 4                    # COCO-18 right wrist
WRIST_COLOUR = (170, 255, 0)
GENERATE_TIMEOUT_MS = 300_000
# The demo model follows a drawn circle: edge F1 of its picture against the scribble (issue 6's
# bar). The circle drawn spans half the canvas, a "large" shape in the demo's world, and the
# prompt says so, as an artist's would: with "a red circle" (a medium one) the demo drew a
# medium circle inside the sketch and scored 0.00. Measured on CPU with the engine at CFG 7.5
# (seed 7, the default pose in unit 2): 0.39; the circle alone, seeds 1, 2, 7: 0.94, 0.94, 0.99;
# at the demo's recommended CFG 3, the circle alone: 0.89, 0.93, 0.96.
DEMO_FIDELITY_MIN = 0.2
PROMPT = "a large red circle on a white background"   # words the demo model knows


def _score(page, unit: int) -> float | None:
    text = page.locator(f"#unit{unit}-fidelity").inner_text()
    found = re.search(r"Fidelity: ([0-9.]+)", text)
    return float(found.group(1)) if found else None


def _record_timing(name: str, seconds: float, real_demo: bool) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / "timings.json"
    times = json.loads(path.read_text()) if path.exists() else {}
    times[name] = {"seconds": round(seconds, 2), "model": "demo" if real_demo else "tiny test model"}
    path.write_text(json.dumps(times, indent=1))


def test_a_stroke_on_the_sketch_canvas_shows_its_scribble_map(page):
    draw_circle(page)
    first = wait_new_image(page, "#sketch-map", None)
    lit = image(page, "#sketch-map").max(axis=2) > 127
    h, w = lit.shape
    assert 0.002 < lit.mean() < 0.2, "the scribble map should hold the stroke and little else"
    ys, xs = np.nonzero(lit)
    assert abs(xs.mean() - w / 2) < 0.15 * w and abs(ys.mean() - h / 2) < 0.15 * h  # a ring around the centre
    assert not lit[h // 2 - 5:h // 2 + 5, w // 2 - 5:w // 2 + 5].any()                 # with nothing inside

    page.locator("#tab-sketch").get_by_label("Canvas size").click()
    page.get_by_role("option", name="768x512").click()
    wait_new_image(page, "#sketch-map", first)
    wider = wait_for_picture(page, "#sketch-map", lambda m: m.shape[:2] == (512, 768))
    assert wider.shape[:2] == (512, 768) and (wider.max(axis=2) > 127).sum() == lit.sum()  # the stroke kept


def test_dragging_a_pose_joint_moves_it_on_the_map(page):
    open_tab(page, "Pose")
    x0, y0 = DEFAULT_PERSON[3 * WRIST:3 * WRIST + 2]
    before_src = src(page, "#pose-map")
    before = image(page, "#pose-map")
    assert tuple(before[y0, x0]) == WRIST_COLOUR
    page.mouse.move(*pose_joint_on_screen(page, x0, y0))
    page.mouse.down()
    page.mouse.move(*pose_joint_on_screen(page, 100, 120), steps=12)
    page.mouse.up()
    wait_new_image(page, "#pose-map", before_src)
    after = wait_for_picture(page, "#pose-map", lambda m: tuple(m[120, 100]) == WRIST_COLOUR)
    assert tuple(after[120, 100]) == WRIST_COLOUR
    assert tuple(after[y0, x0]) != WRIST_COLOUR
    assert "right_wrist" in page.locator("#pose-editor .pose-status").inner_text()


def test_sketch_and_pose_to_an_image_and_back(page, studio, tmp_path):
    draw_circle(page)
    wait_new_image(page, "#sketch-map", None)
    page.locator("#sketch-to-unit1").click()
    wait_new_image(page, "#unit1-map", None)
    open_tab(page, "Pose")
    page.locator("#pose-to-unit2").click()
    wait_new_image(page, "#unit2-map", None)
    pose_model = page.locator("#unit2-model input").input_value()
    if pose_model != "demo:openpose":   # a demo without a pose ControlNet: the page says so; the unit waits
        page.get_by_text("No installed control model reads openpose maps").first.wait_for()
    assert page.locator("#unit1-enabled input").is_checked()
    assert page.locator("#unit2-enabled input").is_checked() == (pose_model == "demo:openpose")
    page.locator("#prompt textarea").fill(PROMPT)
    set_number(page, "#seed", 7)
    assert float(page.locator("#cfg-scale input").first.input_value()) == 3.0   # the demo's recommended scale

    started = time.monotonic()
    page.locator("#generate").click()
    page.wait_for_selector("#gallery img", timeout=GENERATE_TIMEOUT_MS)
    _record_timing("click_to_image", time.monotonic() - started, studio["real_demo"])
    page.wait_for_function("document.querySelector('#status').innerText.includes('Done')")

    score = _score(page, 1)
    assert score is not None, page.locator("#unit1-fidelity").inner_text()
    if pose_model == "demo:openpose":   # the editor's 512-px skeleton is judged against the 128-px picture
        assert _score(page, 2) is not None, page.locator("#unit2-fidelity").inner_text()
    unit1_map = image(page, "#unit1-map")

    page.locator("#gallery img").first.click()
    with page.expect_download() as download:
        page.locator("#gallery button[aria-label=Download]").click()
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    recipe = read_recipe(saved)
    assert [u.model for u in recipe.units] == ["demo:scribble", pose_model] and recipe.seed == 7
    assert recipe.cfg_scale == 3.0
    assert [u.enabled for u in recipe.units] == [True, pose_model == "demo:openpose"]
    assert np.array_equal(recipe.units[0].image, unit1_map)

    page.reload()
    page.wait_for_selector("#sketch canvas", timeout=120_000)
    assert src(page, "#unit1-map") is None
    drop_file(page, "#title", saved.read_bytes(), saved.name)   # anywhere on the page
    wait_new_image(page, "#unit2-map", None)
    wait_new_image(page, "#unit1-map", None)
    assert np.array_equal(image(page, "#unit1-map"), unit1_map)
    assert np.array_equal(image(page, "#unit2-map"), recipe.units[1].image)
    assert page.locator("#unit1-enabled input").is_checked()
    assert page.locator("#unit2-enabled input").is_checked() == (pose_model == "demo:openpose")
    assert page.locator("#unit2-model input").input_value() == pose_model
    assert page.locator("#prompt textarea").input_value() == PROMPT
    assert page.locator("#seed input").input_value() == "7"
    assert float(page.locator("#cfg-scale input").first.input_value()) == recipe.cfg_scale
    if studio["real_demo"]:   # last, so a demo below its bar still has the whole flow checked
        assert score >= DEMO_FIDELITY_MIN, f"the drawn circle's picture scored {score:.3f} (issue 6's bar {DEMO_FIDELITY_MIN})"


def test_interrupt_ends_a_run_early_and_keeps_its_picture(page):
    assert not page.locator("#unit4").is_visible()
    page.locator("#add-unit").click()
    page.locator("#unit4").wait_for()
    assert page.locator("#sketch-to-unit4").is_visible()
    open_tab(page, "Pose")
    page.locator("#pose-to-unit1").click()
    wait_new_image(page, "#unit1-map", None)
    set_number(page, "#steps", 150)
    page.locator("#generate").click()
    page.wait_for_function("/Step [1-9][0-9]* \\/ 150/.test(document.querySelector('#status').innerText)",
                           timeout=GENERATE_TIMEOUT_MS)
    page.locator("#interrupt").click()
    page.get_by_text("Interrupting after the current step").first.wait_for()
    page.wait_for_function("document.querySelector('#status').innerText.includes('Interrupted')", timeout=120_000)
    page.wait_for_selector("#gallery img")


def test_errors_show_as_messages_and_keep_the_inputs(page):
    page.locator("#prompt textarea").fill("a blue square, keep me")
    draw_circle(page)
    sketch_map = wait_new_image(page, "#sketch-map", None)
    page.locator("#sketch-to-unit1").click()
    unit1_map = wait_new_image(page, "#unit1-map", None)
    page.locator("#unit3-enabled input").check()
    page.locator("#generate").click()
    page.get_by_text("unit 3 is enabled but has no control map").first.wait_for()

    open_tab(page, "Pose")
    page.get_by_text("Detect from a photo").click()
    photo = page.locator("#pose-tab-photo input[type=file]")
    photo.set_input_files(files=[{"name": "person.png", "mimeType": "image/png", "buffer": _png_bytes()}])
    page.locator("#pose-tab-photo img").first.wait_for()
    page.get_by_role("button", name="Detect pose").click()
    page.get_by_text("No person found in this photo").first.wait_for()   # a message, not an error

    assert "Traceback" not in page.content()
    for part in ("#pose-map", "#sketch-map", "#unit1-map"):  # no "Error" cover hides what was made
        if part == "#sketch-map":
            open_tab(page, "Sketch")
        assert picture_in_sight(page, part), part
    assert page.locator("#prompt textarea").input_value() == "a blue square, keep me"
    assert src(page, "#sketch-map") == sketch_map and src(page, "#unit1-map") == unit1_map
    assert page.locator("#unit1-enabled input").is_checked()
    assert page.locator("#gallery img").count() == 0


def _png_bytes() -> bytes:
    import io

    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGB", (96, 128), (120, 160, 200)).save(buf, format="PNG")
    return buf.getvalue()


def test_a_mask_painted_on_a_units_map_becomes_its_mask(page):
    open_tab(page, "Pose")
    page.locator("#pose-to-unit1").click()
    wait_new_image(page, "#unit1-map", None)
    page.get_by_text("Paint a mask on a unit's map").click()
    page.get_by_role("button", name="Load its map").click()
    # Strokes made before the map arrives would be wiped by it: wait until the painter shows it.
    page.locator("#mask-painter").get_by_text("select the draw tool to start").wait_for(state="hidden")
    page.locator("#mask-painter button[aria-label=Brush]").click()
    box = page.locator("#mask-painter canvas").first.bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] / 2 - 60, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2 + 60, y, steps=6)
    page.mouse.up()
    page.get_by_role("button", name="Use the painted area as its mask").click()
    wait_new_image(page, "#unit1-mask", None)
    mask = image(page, "#unit1-mask").max(axis=2)
    assert mask.shape == (512, 512) and set(np.unique(mask)) == {0, 255}
    rows = np.nonzero(mask.max(axis=1))[0]
    assert 0.01 < (mask > 0).mean() < 0.3 and abs(rows.mean() - 256) < 40   # a band across the middle


def test_closing_a_tab_mid_generation_lets_the_next_tab_start_at_once(browser, studio):
    """A run nobody will see stops with its page: the second tab's queued generation starts
    within seconds of the first tab closing, not after the first run's 150 steps."""
    import time

    def open_page():
        context = browser.new_context(viewport={"width": 1600, "height": 1100})
        context.route(lambda url: not url.startswith(studio["url"]), lambda route: route.abort())
        page = context.new_page()
        page.set_default_timeout(60_000)
        page.goto(studio["url"] + "/")
        page.wait_for_selector("#sketch canvas", timeout=120_000)
        set_number(page, "#steps", 150)
        return context, page

    (first_context, first), (second_context, second) = open_page(), open_page()
    try:
        set_number(first, "#width", 256)                    # a run long enough to be worth stopping
        set_number(first, "#height", 256)
        first.locator("#generate").click()
        first.wait_for_function("/Step [1-9][0-9]* \\/ 150/.test(document.querySelector('#status').innerText)",
                                timeout=GENERATE_TIMEOUT_MS)
        second.locator("#generate").click()                 # queued behind the first
        time.sleep(1.0)
        assert not re.search(r"Step [1-9]\d* / 150", second.locator("#status").inner_text())
        closed = time.monotonic()
        first_context.close()
        second.wait_for_function("/Step [1-9][0-9]* \\/ 150/.test(document.querySelector('#status').innerText)",
                                 timeout=60_000)
        started = time.monotonic() - closed
        print(f"second tab's generation started {started:.1f} s after the first tab closed")
        assert started < 5
        second.locator("#interrupt").click()
        second.wait_for_function("document.querySelector('#status').innerText.includes('Interrupted')",
                                 timeout=120_000)
    finally:
        for context in (first_context, second_context):
            try:
                context.close()
            except Exception:  # noqa: BLE001  (already closed by the test)
                pass
