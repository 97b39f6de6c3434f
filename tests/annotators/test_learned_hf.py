"""Depth, normal, pose and segmentation on tiny random transformers models saved in the real folder
layout; each must agree with transformers' own recipe on the same weights and image."""
import time

import numpy as np
import pytest
import torch
from PIL import Image

import annotators
from annotators import bundled
from annotators.depth import normals_from_depth
from annotators.image import resize_for_detection
from annotators.palettes import ADE20K, palette_array
from annotators.pose_detect import coco17_to_openpose18

transformers = pytest.importorskip("transformers")


def _depth_anything(folder):
    bb = transformers.Dinov2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
                                   patch_size=14, image_size=518, reshape_hidden_states=False,
                                   out_features=["stage1", "stage2", "stage3", "stage4"])
    cfg = transformers.DepthAnythingConfig(backbone_config=bb, reassemble_hidden_size=32, fusion_hidden_size=16,
                                           neck_hidden_sizes=[8, 16, 32, 32], head_hidden_size=8)
    transformers.DepthAnythingForDepthEstimation(cfg).save_pretrained(folder)
    transformers.DPTImageProcessor(size={"height": 126, "width": 126}, keep_aspect_ratio=True, ensure_multiple_of=14,
                                   resample=3, image_mean=[0.485, 0.456, 0.406],
                                   image_std=[0.229, 0.224, 0.225]).save_pretrained(folder)


def _dpt(folder):
    cfg = transformers.DPTConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
                                 image_size=64, patch_size=16, neck_hidden_sizes=[8, 16, 32, 32], fusion_hidden_size=16,
                                 backbone_out_indices=[0, 1, 2, 3], head_in_index=-1)
    transformers.DPTForDepthEstimation(cfg).save_pretrained(folder)
    transformers.DPTImageProcessor(size={"height": 64, "width": 64}).save_pretrained(folder)


def _vitpose(folder):
    bb = transformers.VitPoseBackboneConfig(image_size=[64, 48], patch_size=[16, 16], hidden_size=32,
                                            num_hidden_layers=2, num_attention_heads=2, out_indices=[2])
    config = transformers.VitPoseConfig(backbone_config=bb, num_labels=17)
    transformers.VitPoseForPoseEstimation(config).save_pretrained(folder)
    transformers.VitPoseImageProcessor(size={"height": 64, "width": 48}).save_pretrained(folder)


def _rtdetr(folder):
    rb = transformers.RTDetrResNetConfig(embedding_size=8, hidden_sizes=[8, 8, 16, 16], depths=[1, 1, 1, 1],
                                         layer_type="basic", out_features=["stage2", "stage3", "stage4"])
    cfg = transformers.RTDetrConfig(
        backbone_config=rb, encoder_hidden_dim=16, encoder_in_channels=[8, 16, 16], feat_strides=[8, 16, 32],
        encoder_layers=1, encoder_ffn_dim=32, encoder_attention_heads=2, d_model=16, decoder_in_channels=[16, 16, 16],
        decoder_ffn_dim=32, num_queries=30, decoder_layers=1, decoder_attention_heads=2, num_feature_levels=3,
        decoder_n_points=2, num_denoising=0, anchor_image_size=None,
        id2label={0: "person", 1: "bicycle", 2: "car"}, label2id={"person": 0, "bicycle": 1, "car": 2})
    transformers.RTDetrForObjectDetection(cfg).save_pretrained(folder)
    transformers.RTDetrImageProcessor(size={"height": 128, "width": 128}).save_pretrained(folder)


def _segformer(folder, num_labels=150):
    cfg = transformers.SegformerConfig(hidden_sizes=[8, 16, 16, 16], num_attention_heads=[1, 1, 1, 1],
                                       depths=[1, 1, 1, 1], decoder_hidden_size=16, num_labels=num_labels)
    transformers.SegformerForSemanticSegmentation(cfg).save_pretrained(folder)
    transformers.SegformerImageProcessor(size={"height": 64, "width": 64}).save_pretrained(folder)


@pytest.fixture(scope="module")
def hf_weights(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf-annotators")
    torch.manual_seed(0)
    _depth_anything(root / "Depth-Anything-V2-Small-hf")
    _vitpose(root / "vitpose-base-simple")
    _rtdetr(root / "rtdetr_r50vd_coco_o365")
    _segformer(root / "segformer-b0-finetuned-ade-512-512")
    annotators.set_weights_dir(root)
    yield root
    annotators.set_weights_dir(None)


def _hf(task_class, folder):
    model = getattr(transformers, task_class).from_pretrained(folder).eval()
    return model, transformers.AutoImageProcessor.from_pretrained(folder, backend="pil")


def _pipeline_depth(folder, img):
    model, processor = _hf("AutoModelForDepthEstimation", folder)
    return transformers.pipeline("depth-estimation", model=model, image_processor=processor)(Image.fromarray(img))


@pytest.mark.parametrize("which", ["depth_anything", "dpt"])
def test_depth_equals_the_transformers_pipeline(which, hf_weights, photo, tmp_path):
    folder = hf_weights / "Depth-Anything-V2-Small-hf"
    if which == "dpt":  # a folder holding only DPT: the other candidate names are found too
        folder = tmp_path / "dpt-hybrid-midas"
        _dpt(folder)
        annotators.set_weights_dir(tmp_path)
    try:
        assert annotators.spec("depth")["weights"][0]["found_at"] == str(folder)
        ours = annotators.run("depth", photo, detect_resolution=128, size=(192, 128))
    finally:
        annotators.set_weights_dir(hf_weights)
    theirs = np.asarray(_pipeline_depth(folder, resize_for_detection(photo, 128))["depth"])
    assert ours.shape == (128, 192, 3) and (ours == theirs[:, :, None]).all()
    assert ours.min() == 0 and ours.max() == 255


def test_normal_is_computed_from_the_models_depth(hf_weights, photo):
    folder = hf_weights / "Depth-Anything-V2-Small-hf"
    ours = annotators.run("normal", photo, detect_resolution=128, size=(192, 128), relief=0.3)
    depth = _pipeline_depth(folder, resize_for_detection(photo, 128))["predicted_depth"].numpy()
    assert np.abs(ours.astype(int) - normals_from_depth(depth, 0.3, 0.1)).max() <= 1


def test_normals_of_a_ramp_and_a_flat_background():
    ramp = np.tile(np.linspace(0.0, 1.0, 64, dtype=np.float32), (64, 1))  # nearer to the right
    out = normals_from_depth(ramp, relief=1.0, background_threshold=0.0)
    inner = out[8:56, 8:56].reshape(-1, 3)
    assert (inner == inner[0]).all()
    r, g, b = inner[0].astype(int)
    # Slope of 1 height unit per pixel: normal (1, 0, 1)/sqrt(2).
    assert abs(r - 217) <= 1 and abs(g - 127) <= 1 and abs(b - 217) <= 1
    flat = normals_from_depth(ramp, relief=1.0, background_threshold=0.5)
    assert tuple(flat[32, 10]) == (127, 127, 255) and tuple(flat[32, 50]) == tuple(inner[0])


COCO17 = ["nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder", "left_elbow",
          "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
          "right_ankle"]
OPENPOSE18 = ["nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
              "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
              "right_eye", "left_eye", "right_ear", "left_ear"]


def _to_openpose_by_name(kp, sc, threshold):
    out = []
    for name in OPENPOSE18:
        if name == "neck":
            a, b = COCO17.index("left_shoulder"), COCO17.index("right_shoulder")
            x, y, c, ok = *((kp[a] + kp[b]) / 2), min(sc[a], sc[b]), min(sc[a], sc[b]) >= threshold
        else:
            i = COCO17.index(name)
            x, y, c, ok = kp[i][0], kp[i][1], sc[i], sc[i] >= threshold
        out.append([x, y, c] if ok else [0, 0, 0])
    return np.array(out, np.float64)


def test_coco17_to_openpose18_by_keypoint_names():
    rng = np.random.default_rng(0)
    kp, sc = rng.uniform(0, 100, (17, 2)), rng.uniform(0, 1, 17)
    got = np.reshape(coco17_to_openpose18(kp, sc, 0.5), (18, 3))
    assert np.allclose(got, _to_openpose_by_name(kp, sc, 0.5))
    assert (got[:, 2] == 0).sum() == ((sc < 0.5).sum() + (min(sc[5], sc[6]) < 0.5) * 1)


def test_detect_pose_follows_transformers_vitpose_recipe(hf_weights, photo):
    params = {"person_threshold": 0.0, "keypoint_threshold": 0.0, "max_people": 2}
    pose = annotators.detect_pose(photo, **params)
    assert (pose["canvas_width"], pose["canvas_height"]) == (480, 320) and len(pose["people"]) == 2

    # The recipe from transformers' ViTPose docs: detect people, then keypoints in their boxes.
    det, det_proc = _hf("AutoModelForObjectDetection", hf_weights / "rtdetr_r50vd_coco_o365")
    img = Image.fromarray(photo)
    with torch.no_grad():
        found = det_proc.post_process_object_detection(det(**det_proc(images=img, return_tensors="pt")),
                                                       target_sizes=[(320, 480)], threshold=0.0)[0]
    person = found["labels"] == det.config.label2id["person"]
    boxes, scores = found["boxes"][person].numpy(), found["scores"][person].numpy()
    boxes = boxes[np.argsort(-scores, kind="stable")][:2]
    boxes[:, 2:] -= boxes[:, :2]
    vit, vit_proc = _hf("VitPoseForPoseEstimation", hf_weights / "vitpose-base-simple")
    with torch.no_grad():
        outputs = vit(**vit_proc(img, boxes=[boxes], return_tensors="pt"))
    results = vit_proc.post_process_pose_estimation(outputs, boxes=[boxes])[0]
    for person, ref in zip(pose["people"], results):
        want = _to_openpose_by_name(ref["keypoints"].numpy(), ref["scores"].numpy(), 0.0)
        assert np.allclose(np.reshape(person["pose_keypoints_2d"], (18, 3)), want, atol=1e-4)

    drawn = annotators.run("openpose", photo, **params)
    assert (drawn == annotators.render_pose(pose, 480, 320)).all() and drawn.max() > 0


def test_segmentation_is_the_models_classes_in_ade20k_colours(hf_weights, photo):
    ours = annotators.run("segmentation", photo, detect_resolution=128, size=(192, 128))
    model, processor = _hf("AutoModelForSemanticSegmentation", hf_weights / "segformer-b0-finetuned-ade-512-512")
    img = resize_for_detection(photo, 128)
    with torch.no_grad():
        outputs = model(**processor(images=Image.fromarray(img), return_tensors="pt"))
    labels = processor.post_process_semantic_segmentation(outputs, target_sizes=[img.shape[:2]])[0].numpy()
    assert (ours == palette_array(ADE20K)[labels]).all()


def test_segmentation_refuses_a_model_that_is_not_ade20k(tmp_path, photo):
    _segformer(tmp_path / "segformer-b0-finetuned-ade-512-512", num_labels=19)
    annotators.set_weights_dir(tmp_path)
    try:
        with pytest.raises(ValueError, match="19 classes.*ADE20K"):
            annotators.run("segmentation", photo, detect_resolution=64)
    finally:
        annotators.set_weights_dir(None)


@pytest.mark.parametrize("name, needs", [
    ("depth", ["Depth-Anything-V2-Small-hf", "dpt-hybrid-midas"]),
    ("normal", ["Depth-Anything-V2-Small-hf"]),
    ("openpose", ["vitpose-base-simple", "rtdetr_r50vd_coco_o365"]),
    ("segmentation", ["segformer-b0-finetuned-ade-512-512", "upernet-convnext-small"]),
])
def test_missing_models_say_what_to_save_where(name, needs, empty_weights, photo, monkeypatch):
    # openpose has mediapipe's bundled model as a stand-in (test_bundled.py): take it away here
    monkeypatch.setattr(bundled, "_mediapipe_problem", lambda: "mediapipe is not installed")
    assert annotators.spec(name)["weights_present"] is False
    start = time.perf_counter()
    with pytest.raises(ValueError) as err:
        annotators.run(name, photo)
    assert time.perf_counter() - start < 1.0
    for need in needs:
        assert need in str(err.value)
    assert str(empty_weights) in str(err.value) and "huggingface.co/" in str(err.value)
    if name == "openpose":
        with pytest.raises(ValueError, match="vitpose-base-simple"):
            annotators.detect_pose(photo)
