"""A reference photo on a machine without annotator weights: the pose tab reads the astronaut's
skeleton and face with mediapipe's bundled model, the editor shows them, and a generation uses it;
a pose JSON with hands and a face imports and renders the same map as annotators.render_pose."""
import json

import numpy as np
import pytest
import skimage.data
from PIL import Image

import annotators
from annotators import bundled
from tests.browser.conftest import ARTIFACTS
from tests.browser.studio_page import image, open_tab, wait_for_picture, wait_new_image

pytestmark = [pytest.mark.browser, pytest.mark.skipif(bundled.MEDIAPIPE_POSE.problem() is not None,
                                                      reason=str(bundled.MEDIAPIPE_POSE.problem()))]

CANVAS_PIXELS = """() => { const c = document.querySelector('#pose-editor canvas');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let white = 0; for (let i = 0; i < d.length; i += 4) if (d[i] > 250 && d[i + 1] > 250 && d[i + 2] > 250) white++;
  return {white, width: c.width, height: c.height}; }"""


def test_detect_from_a_photo_gives_an_editable_skeleton_with_its_face_and_a_picture(page, tmp_path):
    astronaut = skimage.data.astronaut()
    photo = tmp_path / "astronaut.png"
    Image.fromarray(astronaut).save(photo)
    open_tab(page, "Pose")
    page.get_by_text("Detect from a photo").click()
    page.locator("#pose-tab-photo input[type=file]").set_input_files(str(photo))
    page.locator("#pose-tab-photo img").first.wait_for()
    before = page.locator("#pose-map img").first.get_attribute("src")
    page.get_by_role("button", name="Detect pose").click()
    wait_new_image(page, "#pose-map", before)
    want = annotators.render_pose(annotators.detect_pose(astronaut), 512, 512)
    got = wait_for_picture(page, "#pose-map", lambda m: m.shape == want.shape and (m == want).all())
    assert (got == want).all()
    page.get_by_text("only the most prominent person").first.wait_for()
    canvas = page.evaluate(CANVAS_PIXELS)
    assert (canvas["width"], canvas["height"]) == (512, 512) and canvas["white"] > 150   # the face's dots

    page.locator("#pose-to-unit1").click()
    wait_new_image(page, "#unit1-map", None)
    page.locator("#prompt textarea").fill("a person in a red shirt on a blue background")
    page.locator("#generate").click()
    page.wait_for_selector("#gallery img", timeout=300_000)
    page.wait_for_function("document.querySelector('#status').innerText.includes('Done')", timeout=300_000)
    picture = image(page, "#gallery")
    assert picture.std() > 5                                        # a picture, not a flat field
    ARTIFACTS.mkdir(exist_ok=True)
    Image.fromarray(picture).save(ARTIFACTS / "astronaut_pose_generated.png")


def test_a_pose_with_hands_and_a_face_imports_and_renders_as_annotators_do(page, tmp_path):
    hand = [v for j in range(21) for v in (180 + 3 * (j % 5) + 2 * j, 300 - 5 * j, 1.0)]
    face = [v for j in range(70) for v in (230 + 40 * np.cos(j / 11), 110 + 40 * np.sin(j / 11), 1.0)]
    from ui.pose_tab import DEFAULT_PERSON
    pose = {"canvas_width": 512, "canvas_height": 512,
            "people": [{"pose_keypoints_2d": DEFAULT_PERSON, "hand_right_keypoints_2d": hand,
                        "face_keypoints_2d": face}]}
    path = tmp_path / "pose.json"
    path.write_text(json.dumps(pose))
    open_tab(page, "Pose")
    before = page.locator("#pose-map img").first.get_attribute("src")
    with page.expect_file_chooser() as chooser:
        page.locator("#pose-import").click()
    chooser.value.set_files(str(path))
    wait_new_image(page, "#pose-map", before)
    want = annotators.render_pose(pose, 512, 512)
    got = wait_for_picture(page, "#pose-map", lambda m: (m == want).all())
    assert (got == want).all()
    # the editor draws them too: blue hand dots and white face dots on its canvas
    assert page.evaluate(CANVAS_PIXELS)["white"] > 100
