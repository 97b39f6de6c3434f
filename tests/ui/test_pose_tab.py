import json

import numpy as np
import pytest
from PIL import Image

import annotators
from ui import pose_tab


def test_the_default_pose_renders_as_an_openpose_map():
    cmap = pose_tab.render(json.dumps(pose_tab.DEFAULT_POSE))
    assert cmap.shape == (512, 512, 3)
    x, y = pose_tab.DEFAULT_PERSON[3:5]     # the neck keypoint: drawn in its COCO colour
    assert tuple(cmap[y, x]) == (255, 85, 0)


def test_a_new_canvas_size_scales_the_joints():
    pose = json.loads(pose_tab.resized(json.dumps(pose_tab.DEFAULT_POSE), "1024x256"))
    assert (pose["canvas_width"], pose["canvas_height"]) == (1024, 256)
    k = pose["people"][0]["pose_keypoints_2d"]
    assert k[3:6] == [512.0, 80.0, 1]
    with pytest.raises(ValueError, match="WIDTHxHEIGHT"):
        pose_tab.resized(json.dumps(pose_tab.DEFAULT_POSE), "big")


def test_imports_openpose_json_and_pose_maps(tmp_path):
    f = tmp_path / "pose.json"
    f.write_text(json.dumps([pose_tab.DEFAULT_POSE]))
    assert json.loads(pose_tab.imported(str(f))) == pose_tab.DEFAULT_POSE
    png = tmp_path / "map.png"
    Image.fromarray(annotators.render_pose(pose_tab.DEFAULT_POSE, 512, 512)).save(png)
    read = json.loads(pose_tab.imported(str(png)))
    got = np.array(read["people"][0]["pose_keypoints_2d"]).reshape(18, 3)
    want = np.array(pose_tab.DEFAULT_PERSON).reshape(18, 3)
    assert np.abs(got[:, :2] - want[:, :2]).max() <= 1.5
    empty = tmp_path / "black.png"
    Image.new("RGB", (64, 64)).save(empty)
    with pytest.raises(ValueError, match="no skeleton found"):
        pose_tab.imported(str(empty))


def test_broken_json_and_missing_photos_get_clear_messages(tmp_path):
    f = tmp_path / "bad.json"
    f.write_text('{"people": 3}')
    with pytest.raises(ValueError, match="OpenPose JSON"):
        pose_tab.imported(str(f))
    with pytest.raises(ValueError, match="upload a photo"):
        pose_tab.detected(None)


def test_export_writes_the_pose_as_json():
    path = pose_tab.export_file(json.dumps(pose_tab.DEFAULT_POSE))
    assert json.loads(open(path).read()) == pose_tab.DEFAULT_POSE
