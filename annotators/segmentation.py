"""Semantic segmentation of a photo (SegFormer or UperNet trained on ADE20K, via transformers),
coloured with the ADE20K palette that segmentation ControlNets read."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import hf_models
from .image import resize_for_detection
from .palettes import ADE20K, palette_array
from .registry import DETECT_RESOLUTION, annotator
from .weights import ModelFolder

SEGMENTATION_MODEL = ModelFolder(
    ("nvidia/segformer-b0-finetuned-ade-512-512", "nvidia/segformer-b2-finetuned-ade-512-512",
     "openmmlab/upernet-convnext-small"),
    "ADE20K semantic segmentation (SegFormer or UperNet)",
)
_ADE = palette_array(ADE20K)


def segment(image: np.ndarray, folder: Path) -> np.ndarray:
    """ADE20K class ids (H, W) of the image, at its own size."""
    import torch
    from PIL import Image

    model, processor = hf_models.load("segmentation", folder)
    if model.config.num_labels != len(_ADE):
        raise ValueError(f"the segmentation model in {folder} has {model.config.num_labels} classes; "
                         f"it must be an ADE20K model with {len(_ADE)} (e.g. {SEGMENTATION_MODEL.repos[0]})")
    inputs = processor(images=Image.fromarray(image), return_tensors="pt").to(model.device)
    with torch.no_grad():
        outputs = model(**inputs)
    labels = processor.post_process_semantic_segmentation(outputs, target_sizes=[image.shape[:2]])[0]
    return labels.cpu().numpy()


@annotator("segmentation", kind="seg", params=(DETECT_RESOLUTION,), weights=(SEGMENTATION_MODEL,),
           interpolation="nearest",
           description="Semantic segmentation of a photo into ADE20K's 150 classes, in their palette colours.")
def segmentation(image: np.ndarray, paths: list[Path], detect_resolution: int) -> np.ndarray:
    x = resize_for_detection(image, detect_resolution)
    return _ADE[segment(x, paths[0])]
