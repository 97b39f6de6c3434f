"""What a new artist tripped over (issue 20), clicked as they did."""
import pytest

from tests.browser.studio_page import set_number

pytestmark = [pytest.mark.browser]
SHOTS = "/tmp/shots20"


def test_first_screen(page):
    import os
    os.makedirs(SHOTS, exist_ok=True)
    page.screenshot(path=f"{SHOTS}/first-screen.png", full_page=False)
    assert page.locator("#generate").is_visible()


def test_a_clamped_width_or_steps_is_said(page):
    set_number(page, "#width", 99999)
    note = page.locator("#limit-note")
    note.get_by_text("Width 99999 is more than 2048 px").wait_for(timeout=10_000)
    page.locator("#width input[type=number]").blur()
    page.wait_for_function("() => document.querySelector('#width input[type=number]').value === '2048'")
    set_number(page, "#steps", 999)
    note.get_by_text("Steps 999 is more than 150").wait_for(timeout=10_000)
    note.scroll_into_view_if_needed()
    import os
    os.makedirs(SHOTS, exist_ok=True)
    page.screenshot(path=f"{SHOTS}/clamp-warning.png", full_page=False)


# -- points 2, 3 and 9 of issue 20: the page -------------------------------------------------
import io  # noqa: E402
import json  # noqa: E402

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

import annotators  # noqa: E402
from engine import read_recipe  # noqa: E402
from tests.browser.studio_page import (drop_file, image, open_tab, pose_joint_on_screen, src,  # noqa: E402
                                       wait_for_picture, wait_new_image)
from ui.pose_tab import DEFAULT_PERSON  # noqa: E402

WRIST, WRIST_COLOUR = 4, (170, 255, 0)


def _shot(page, name: str) -> None:
    import os
    os.makedirs(SHOTS, exist_ok=True)
    page.screenshot(path=f"{SHOTS}/{name}.png", full_page=False)


def _photo_bytes() -> bytes:
    a = np.full((160, 160, 3), 255, np.uint8)
    a[40:120, 30:130] = (200, 40, 40)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def _pick(page, dropdown: str, name: str) -> None:
    page.locator(f"{dropdown} input").click()
    page.get_by_role("option", name=annotators.availability()[name]["label"], exact=True).click()


def _toasts(page) -> list[str]:
    return [t.strip() for t in page.locator(".toast-body").all_inner_texts()]


def test_the_annotator_list_says_which_are_ready_before_one_is_picked(page):
    open_tab(page, "Upload")
    page.locator("#upload-annotator input").click()
    options = [o.replace("✓", "").strip() for o in page.get_by_role("option").all_inner_texts()]
    for name, state in annotators.availability().items():
        assert state["label"] in options, (name, options)
    assert "canny — ready" in options
    assert any(o.startswith("hed — ") for o in options)


@pytest.mark.skipif(annotators.availability()["hed"]["ready"] or annotators.availability()["lineart"]["ready"],
                    reason="hed's and lineart's weights are installed here: nothing fails")
def test_a_failed_annotator_clears_the_map_and_says_once_what_is_missing(page):
    open_tab(page, "Upload")
    page.locator("#upload-photo input[type=file]").set_input_files(
        files=[{"name": "photo.png", "mimeType": "image/png", "buffer": _photo_bytes()}])
    wait_new_image(page, "#upload-map", None)
    status = page.locator("#upload-map-status")
    status.get_by_text("canny map made, 160x160 in").wait_for()       # Make map's sign that it ran
    page.locator("#upload-map-status .map-made").wait_for()
    _pick(page, "#upload-annotator", "hed")
    status.get_by_text("ControlNetHED.pth").wait_for()
    assert "No map" in status.inner_text()
    page.wait_for_function("!document.querySelector('#upload-map img')")   # the canny map is gone
    _shot(page, "annotator-failure")
    page.locator("#upload-to-unit1").click()                          # nothing stale to send
    page.get_by_text("the upload tab has no map yet").first.wait_for()
    assert src(page, "#unit1-map") is None and not page.locator("#unit1-enabled input").is_checked()
    # the Sketch tab asked twice for each map (its canvas reports a change too): said once now
    open_tab(page, "Sketch")
    from tests.browser.studio_page import draw_circle
    draw_circle(page)
    wait_new_image(page, "#sketch-map", None)
    _pick(page, "#sketch-annotator", "lineart")
    page.locator("#sketch-map-status").get_by_text("sk_model.pth").wait_for()
    page.wait_for_timeout(2500)
    assert not any("(2)" in t for t in _toasts(page)), _toasts(page)
    assert not any("sk_model.pth" in t for t in _toasts(page)), _toasts(page)   # in place, not a toast
    page.wait_for_function("!document.querySelector('#sketch-map img')")


def test_make_map_says_it_ran(page):
    open_tab(page, "Upload")
    page.locator("#upload-photo input[type=file]").set_input_files(
        files=[{"name": "photo.png", "mimeType": "image/png", "buffer": _photo_bytes()}])
    status = page.locator("#upload-map-status")
    status.get_by_text("canny map made, 160x160 in").wait_for()
    first = status.inner_text()
    page.wait_for_timeout(2000)
    page.locator("#tab-upload").get_by_role("button", name="Make map").click()
    page.wait_for_function("t => document.querySelector('#upload-map-status').innerText !== t", arg=first)
    status.get_by_text("canny map made, 160x160 in").wait_for()   # the new line, not an empty one


def test_interrupt_is_on_only_while_a_run_runs_and_the_result_shows_whole(page):
    interrupt = page.locator("#interrupt")
    assert interrupt.is_disabled()                                    # idle at first
    page.locator("#unit3-enabled input").check()                      # an error before the run
    page.locator("#generate").click()
    page.get_by_text("unit 3 is enabled but has no control map").first.wait_for()
    assert interrupt.is_disabled()
    page.locator("#unit3-enabled input").uncheck()
    set_number(page, "#steps", 150)
    page.locator("#generate").click()
    page.wait_for_function("/Step [1-9][0-9]* \\/ 150/.test(document.querySelector('#status').innerText)",
                           timeout=300_000)
    assert interrupt.is_enabled()
    interrupt.click()
    page.wait_for_function("document.querySelector('#status').innerText.includes('Interrupted')", timeout=120_000)
    page.wait_for_selector("#gallery img")
    page.wait_for_function("document.querySelector('#interrupt').disabled")
    # the picture shown whole in its tile, not enlarged and cropped
    fit = page.evaluate("getComputedStyle(document.querySelector('#gallery img')).objectFit")
    assert fit == "contain", fit
    # the recipe panel pretty-printed
    page.get_by_text("Recipe", exact=True).click()
    # the accordion renders its editor after the click: wait for the text, not just the panel
    page.wait_for_function("(document.querySelectorAll('#recipe-json .cm-line').length > 5)", timeout=30_000)
    lines = page.locator("#recipe-json .cm-line").all_inner_texts()
    assert len(lines) > 5 and lines[0] == "{" and lines[1].startswith('  "format"'), lines[:3]


def _fake_png(page, unit: int) -> None:
    page.locator(f"#unit{unit}-map input[type=file]").set_input_files(
        files=[{"name": "fake.png", "mimeType": "image/png", "buffer": b"this is a text file, not a PNG"}])


def test_a_broken_file_on_a_units_map_is_said_at_once_and_the_unit_stays(page):
    _fake_png(page, 1)
    page.get_by_text("Unit 1: 'fake.png' could not be read as a picture").first.wait_for()
    page.wait_for_timeout(1000)
    assert not page.locator("#unit1-enabled input").is_checked()
    assert src(page, "#unit1-map") is None                            # no broken thumbnail
    open_tab(page, "Pose")
    page.locator("#pose-to-unit2").click()
    pose_map = wait_new_image(page, "#unit2-map", None)
    kept = image(page, "#unit2-map")
    enabled = page.locator("#unit2-enabled input").is_checked()
    _fake_png(page, 2)
    page.get_by_text("Unit 2: 'fake.png' could not be read as a picture").first.wait_for()
    wait_for_picture(page, "#unit2-map", lambda m: m.shape == kept.shape and (m == kept).all(), timeout=20)
    assert (image(page, "#unit2-map") == kept).all() and pose_map
    assert page.locator("#unit2-enabled input").is_checked() == enabled


def test_a_restored_recipe_brings_the_pose_back_into_the_editor(page, studio):
    open_tab(page, "Pose")
    x0, y0 = DEFAULT_PERSON[3 * WRIST:3 * WRIST + 2]
    before = src(page, "#pose-map")
    page.mouse.move(*pose_joint_on_screen(page, x0, y0))
    page.mouse.down()
    page.mouse.move(*pose_joint_on_screen(page, 100, 120), steps=12)
    page.mouse.up()
    wait_new_image(page, "#pose-map", before)
    wait_for_picture(page, "#pose-map", lambda m: tuple(m[120, 100]) == WRIST_COLOUR)
    page.locator("#pose-to-unit1").click()
    wait_new_image(page, "#unit1-map", None)
    page.locator("#unit1-enabled input").check()
    set_number(page, "#steps", 2)
    old = set(studio["outputs"].rglob("*.png")) if studio["outputs"].exists() else set()
    page.locator("#generate").click()
    page.wait_for_function("document.querySelector('#status').innerText.includes('Done')", timeout=300_000)
    saved = sorted(set(studio["outputs"].rglob("*.png")) - old, key=lambda p: p.stat().st_mtime)[-1]
    pose = read_recipe(saved).units[0].pose
    assert pose is not None
    wrist = pose["people"][0]["pose_keypoints_2d"][3 * WRIST:3 * WRIST + 2]
    assert abs(wrist[0] - 100) < 4 and abs(wrist[1] - 120) < 4

    page.reload()
    page.wait_for_selector("#sketch canvas", timeout=120_000)
    drop_file(page, "#title", saved.read_bytes(), saved.name)
    wait_new_image(page, "#unit1-map", None)
    open_tab(page, "Pose")
    moved = wait_for_picture(page, "#pose-map", lambda m: tuple(m[120, 100]) == WRIST_COLOUR)
    assert tuple(moved[120, 100]) == WRIST_COLOUR and tuple(moved[y0, x0]) != WRIST_COLOUR
    _shot(page, "restored-pose")
    # editable: the restored wrist drags on
    before = src(page, "#pose-map")
    page.mouse.move(*pose_joint_on_screen(page, 100, 120))
    page.mouse.down()
    page.mouse.move(*pose_joint_on_screen(page, 150, 200), steps=12)
    page.mouse.up()
    wait_new_image(page, "#pose-map", before)
    wait_for_picture(page, "#pose-map", lambda m: tuple(m[200, 150]) == WRIST_COLOUR)
    assert json.loads(page.evaluate("document.querySelector('#pose-editor').dataset.value || '{}'") or "{}") is not None
