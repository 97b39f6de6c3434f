"""transformers models for the learned annotators that controlnet_aux would run through torchvision:
loaded from a local folder only, once, and kept resident."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from ._torch import torch_device

_MODEL_CLASSES = {
    "depth": "AutoModelForDepthEstimation",
    "detection": "AutoModelForObjectDetection",
    "pose": "VitPoseForPoseEstimation",
    "segmentation": "AutoModelForSemanticSegmentation",
}


@functools.lru_cache(maxsize=None)
def _load(task: str, folder: str, device: str) -> tuple[Any, Any]:
    import transformers

    model_class = getattr(transformers, _MODEL_CLASSES[task])
    # The PIL image processors need no torchvision and give the same numbers on every machine.
    processor = transformers.AutoImageProcessor.from_pretrained(folder, backend="pil", local_files_only=True)
    model = model_class.from_pretrained(folder, local_files_only=True).float().eval().to(device)
    return model, processor


def load(task: str, folder: Path) -> tuple[Any, Any]:
    """(model, image processor) of the transformers model saved in `folder`, for `task`
    (depth, detection, pose or segmentation)."""
    try:
        return _load(task, str(folder), torch_device())
    except OSError as err:
        raise ValueError(f"the {task} model folder {folder} could not be read ({err}); it needs config.json, "
                         "the weights (model.safetensors) and preprocessor_config.json") from err
