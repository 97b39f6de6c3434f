"""The Pose tab: an in-browser editor of COCO-18 skeletons (pose_editor.js) beside the OpenPose
map the annotators render from it, with canvas size, OpenPose JSON import/export and
"detect from photo". The editor's value is OpenPose JSON text; Python renders the map, so the
map is drawn exactly as the OpenPose ControlNets were trained on."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import gradio as gr
import numpy as np
from PIL import Image

import annotators

from .errors import shown
from .pictures import Picture
from .sizes import SIZES, parse_size

# One person standing, facing the viewer (their right side on the picture's left), on 512x512.
DEFAULT_PERSON = [
    256, 110, 1, 256, 160, 1, 211, 162, 1, 194, 232, 1, 184, 298, 1, 301, 162, 1, 318, 232, 1, 328, 298, 1,
    231, 292, 1, 226, 376, 1, 222, 458, 1, 281, 292, 1, 286, 376, 1, 290, 458, 1, 247, 100, 1, 265, 100, 1,
    236, 107, 1, 276, 107, 1,
]
DEFAULT_POSE = {"canvas_width": 512, "canvas_height": 512, "people": [{"pose_keypoints_2d": DEFAULT_PERSON}]}

TEMPLATE = """
<div class="pose-editor">
  <div class="pose-tools">
    <button type="button" data-act="add" title="Add a person">+ person</button>
    <button type="button" data-act="remove" title="Remove the selected person">− person</button>
    <button type="button" data-act="next" title="Select the next person">next person</button>
    <button type="button" data-act="mirror" title="Mirror the selected person left to right">mirror</button>
    <button type="button" data-act="hide"
            title="Hide or show the selected joint and the limbs that end at it">hide / show joint</button>
  </div>
  <canvas class="pose-canvas" width="512" height="512"></canvas>
  <div class="pose-status"></div>
</div>
"""
CSS = """
.pose-canvas { width: 100%; max-width: 512px; height: auto; cursor: crosshair; touch-action: none;
  display: block; border-radius: 4px; }
.pose-tools { display: flex; flex-wrap: wrap; gap: 4px; margin-bottom: 6px; }
.pose-tools button { padding: 2px 8px; border: 1px solid var(--border-color-primary); border-radius: 4px;
  background: var(--button-secondary-background-fill); color: var(--body-text-color); cursor: pointer; }
.pose-status { font-size: var(--text-sm); color: var(--body-text-color-subdued); margin-top: 4px; }
"""
JS = (Path(__file__).with_name("pose_editor.js")).read_text()


def parse(value: str | dict | None) -> dict:
    """The editor's value as OpenPose JSON (a dict); ValueError when it is not OpenPose JSON."""
    if isinstance(value, dict):
        pose = value
    else:
        try:
            pose = json.loads(value or "")
        except ValueError as e:
            raise ValueError(f"this is not OpenPose JSON ({e})") from None
    annotators.parse_pose(pose)
    return pose


def canvas_size(pose: dict) -> tuple[int, int]:
    w, h = int(round(float(pose.get("canvas_width") or 512))), int(round(float(pose.get("canvas_height") or 512)))
    return max(w, 1), max(h, 1)


def render(value: str | dict | None) -> np.ndarray:
    """The OpenPose map of the editor's pose, at its canvas size."""
    pose = parse(value)
    return annotators.render_pose(pose, *canvas_size(pose))


def resized(value: str, size: str) -> str:
    """The pose moved onto a canvas of `size` ("WxH"), its joints scaled with it."""
    pose = parse(value)
    (w0, h0), (w, h) = canvas_size(pose), parse_size(size)
    for person in pose["people"]:
        for key in ("pose_keypoints_2d", "hand_left_keypoints_2d", "hand_right_keypoints_2d", "face_keypoints_2d"):
            pts = person.get(key)
            if pts:
                person[key] = [round(v * (w / w0 if i % 3 == 0 else h / h0), 2) if i % 3 < 2 else v
                               for i, v in enumerate(pts)]
    pose["canvas_width"], pose["canvas_height"] = w, h
    return json.dumps(pose)


def imported(path: str) -> str:
    """A pose from an OpenPose JSON file, or read back from a pose map picture."""
    p = Path(path)
    if p.suffix.lower() == ".json":
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{p.name} is not a text file; import OpenPose JSON or a pose map picture") from None
        data = json.loads(text) if text.strip() else None
        if isinstance(data, list) and data:  # some tools export a list of frames
            data = data[0]
        return json.dumps(parse(data))
    with Image.open(p) as im:
        pose = annotators.pose_from_map(np.asarray(im.convert("RGB")))
    if not pose["people"]:
        raise ValueError(f"no skeleton found in {p.name}; import an OpenPose map (COCO-18 colours on black) or JSON")
    return json.dumps(pose)


def detected(photo: np.ndarray | None) -> str:
    if photo is None:
        raise ValueError("upload a photo of a person first, then detect")
    pose = annotators.detect_pose(photo)
    # notes: what the detector could not do (no person; only the most prominent one read)
    for note in pose.pop("notes", []):
        gr.Info(note[0].upper() + note[1:] + ("; try a photo where the person is clearly visible"
                                               if not pose["people"] else "."))
    return json.dumps(pose)


_export_dir: Path | None = None


def export_file(value: str) -> str:
    """The pose as an OpenPose JSON file, for the download button."""
    global _export_dir
    if _export_dir is None:
        _export_dir = Path(tempfile.mkdtemp(prefix="cnstudio-pose-"))
    path = _export_dir / "pose.json"
    path.write_text(json.dumps(parse(value), indent=1))
    return str(path)


class PoseTab:
    """Widgets of the Pose tab; `map` is what it sends to a unit."""

    kind = "openpose"

    def __init__(self):
        start = json.dumps(DEFAULT_POSE)
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=280):
                self.editor = gr.HTML(
                    start, html_template=TEMPLATE, css_template=CSS, js_on_load=JS, elem_id="pose-editor",
                    person=DEFAULT_PERSON, **annotators.pose_style())
            with gr.Column(scale=1, min_width=280):
                self.map = gr.Image(render(start), label="Pose map", type="numpy", format="png",
                                    interactive=False, elem_id="pose-map", height=360)
        with gr.Row():
            self.size = gr.Dropdown(SIZES, value="512x512", label="Canvas size", allow_custom_value=True,
                                    min_width=120, elem_id="pose-size")
            self.importer = gr.UploadButton("Import JSON / pose map", file_types=[".json", ".png", ".jpg", ".webp"],
                                            size="sm", elem_id="pose-import")
            self.exporter = gr.DownloadButton("Export OpenPose JSON", value=export_file(start), size="sm")
        with gr.Accordion("Detect from a photo", open=False):
            with gr.Row():
                self.photo = Picture(label="Photo of people", type="numpy", sources=["upload", "clipboard"],
                                      elem_id="pose-tab-photo", height=220)
                self.detect = gr.Button("Detect pose", size="sm")
        self.picture = self.map  # what a unit reading "pose" re-annotates

    @staticmethod
    def replace(value: str) -> tuple:
        """Values of (editor, map, exporter) showing the pose `value` (OpenPose JSON text)."""
        return value, render(value), export_file(value)

    def wire(self) -> None:
        outs = [self.editor, self.map, self.exporter]
        replace = self.replace

        def redraw(value):
            return render(value), export_file(value)

        self.editor.edit(shown(redraw), [self.editor], [self.map, self.exporter], trigger_mode="always_last",
                         show_progress="hidden")
        self.size.input(shown(lambda v, s: replace(resized(v, s))), [self.editor, self.size], outs)
        self.importer.upload(shown(lambda f: replace(imported(f))), [self.importer], outs)
        self.detect.click(shown(lambda photo: replace(detected(photo))), [self.photo], outs)
