"""Depth (Depth Anything / DPT through transformers) and normals computed from that depth.

Depth maps follow MiDaS' convention, as depth ControlNets read them: inverse depth, near = bright,
stretched to 0..255. Normal maps follow controlnet_aux's MiDaS normals (control_sd15_normal):
R = x slope, G = y slope, B = facing the camera, background flat."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from . import hf_models
from .image import gray_to_rgb, resize_for_detection
from .registry import DETECT_RESOLUTION, Param, annotator
from .weights import ModelFolder

DEPTH_MODEL = ModelFolder(
    ("depth-anything/Depth-Anything-V2-Small-hf", "LiheYoung/depth-anything-small-hf", "Intel/dpt-hybrid-midas"),
    "depth estimation (Depth Anything or DPT)",
)


def predict_depth(image: np.ndarray, folder: Path) -> np.ndarray:
    """Relative inverse depth (float32, near = large) at the image's own size."""
    import torch
    from PIL import Image

    model, processor = hf_models.load("depth", folder)
    inputs = processor(images=Image.fromarray(image), return_tensors="pt").to(model.device)
    with torch.no_grad():
        outputs = model(**inputs)
    result = processor.post_process_depth_estimation(outputs, target_sizes=[image.shape[:2]])
    return result[0]["predicted_depth"].float().cpu().numpy()


def depth_to_uint8(depth: np.ndarray) -> np.ndarray:
    # The arithmetic of transformers' depth-estimation pipeline, so the maps agree exactly.
    span = float(depth.max() - depth.min())
    if span <= 0:
        return np.zeros(depth.shape, np.uint8)
    return (((depth - depth.min()) / span) * 255).astype(np.uint8)


@annotator("depth", kind="depth", params=(DETECT_RESOLUTION,), weights=(DEPTH_MODEL,),
           description="Monocular depth (Depth Anything or DPT): near is bright, far is dark.")
def depth(image: np.ndarray, paths: list[Path], detect_resolution: int) -> np.ndarray:
    x = resize_for_detection(image, detect_resolution)
    return gray_to_rgb(depth_to_uint8(predict_depth(x, paths[0])))


def normals_from_depth(depth: np.ndarray, relief: float, background_threshold: float) -> np.ndarray:
    """Normal map (HxWx3 uint8) of a height field: the normalised depth, `relief` times the short
    side high; pixels whose normalised depth is below `background_threshold` are flat background."""
    span = float(depth.max() - depth.min())
    near = (depth - depth.min()) / span if span > 0 else np.zeros_like(depth)
    height = near.astype(np.float32) * relief * min(depth.shape)
    # Sobel with ksize 3 weighs the central difference 8 times.
    gx = cv2.Sobel(height, cv2.CV_32F, 1, 0, ksize=3) / 8.0
    gy = cv2.Sobel(height, cv2.CV_32F, 0, 1, ksize=3) / 8.0
    background = near < background_threshold
    gx[background] = 0
    gy[background] = 0
    normal = np.stack([gx, gy, np.ones_like(gx)], axis=2)
    normal /= np.linalg.norm(normal, axis=2, keepdims=True)
    return (normal * 127.5 + 127.5).clip(0, 255).astype(np.uint8)


@annotator(
    "normal", kind="normal", weights=(DEPTH_MODEL,),
    description="Surface normals from the depth model's depth (MiDaS-style normal map).",
    params=(
        Param("relief", "float", 0.5, 0.01, 4.0, 0.01, help="depth range as a fraction of the short side; "
                                                            "larger tilts the normals more"),
        Param("background_threshold", "float", 0.1, 0.0, 1.0, 0.01,
              help="normalised depth below which the surface counts as flat background"),
        DETECT_RESOLUTION,
    ),
)
def normal(image: np.ndarray, paths: list[Path], relief: float, background_threshold: float,
           detect_resolution: int) -> np.ndarray:
    x = resize_for_detection(image, detect_resolution)
    return normals_from_depth(predict_depth(x, paths[0]), relief, background_threshold)
