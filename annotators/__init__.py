"""Annotators: a picture (sketch, photo, pose) in, the control map a ControlNet reads out.

- `run(name, image, size=None, **params)`: HxWx3 uint8 map (any common picture in: gray, RGBA on
  white, 16-bit, palette); `size=(width, height)` of the map, by default the input's.
- `default_for(kind)`: the annotator used for a ControlNet of that kind when none is named
  (the GUI's preselection, the CLI's `image=`, `ControlUnit(annotator="auto")`).
- `list()` / `names()` / `spec(name)`: JSON-ready declarations (what each is for, which ControlNet
  kind reads it, its parameters with default/min/max/step/choices, whether its weights are present).
- Poses as data: `render_pose(pose_json, width, height)`, `pose_from_map(map)` and, with weights,
  `detect_pose(image)`, `parse_pose(pose_json)` (checks it), `pose_style()` (colours, limbs and
  names as the maps draw them, for an editor); OpenPose JSON throughout. `add_palette(name,
  colours)`: another palette for segmentation_paint (ADE20K's and the demo's ship).
- Pictures (`annotators.image`, used by every layer): `to_rgb`, `to_mask` (one rule for 16-bit,
  float, NaN, alpha, palette and grey input) and `fit(map, width, height, mode)` in RESIZE_MODES
  (`ResizeMode` holds AUTOMATIC1111's names), by sd-webui-controlnet's map rules.
- Bundled models (`annotators.bundled`): without their weights, openpose / openpose_hand /
  openpose_face / openpose_full (one person, with hands and face) and person_mask use the models
  inside mediapipe 0.10.21's wheel, and mlsd uses OpenCV's LSD; `spec(name)["uses"]` says which
  runs here ("weights", "bundled", "built-in" or "none").
- `availability()`: {name: {"ready", "uses", "missing" (weight file names), "label"}} for every
  annotator as this machine stands, one answer for every list (the page marks each annotator
  "ready" or "needs weights: <files>" before it is picked); a bundled model extends it.
- Learned annotators read weights from `weights_dir()` (`models/annotators/`, or $CNSTUDIO_ANNOTATORS,
  or `set_weights_dir(path)`) or the local HF cache, never the network.
Errors are ValueErrors that say what was wrong and what is allowed.
"""
# Importing a module declares its annotators; torch and transformers load only when one runs.
from . import color, depth, edges, learned_edges, masks, person, scribble, segmentation, segmentation_paint  # noqa: F401
from .pose import parse_pose, pose_style, render_pose
from .pose_read import pose_from_map
from .pose_detect import detect_pose
from .segmentation_paint import add_palette, snap_to_palette
from .registry import Param, availability, default_for, list_annotators as list, names, run, spec  # noqa: A001
from .weights import set_weights_dir, weights_dir
from .image import RESIZE_MODES, ResizeMode, fit, to_mask, to_rgb

__all__ = ["run", "availability", "default_for", "list", "names", "spec", "render_pose", "parse_pose", "pose_style",
           "pose_from_map", "detect_pose", "add_palette", "snap_to_palette", "set_weights_dir", "weights_dir",
           "Param", "to_rgb", "to_mask", "fit", "RESIZE_MODES", "ResizeMode"]
