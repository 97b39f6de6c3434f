"""Learned edge and line annotators: controlnet_aux's own detectors on weights from the annotator
folder. We load the state dicts ourselves (weights_only=True) into controlnet_aux's networks and
call its detectors, so the maps are exactly controlnet_aux's."""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from . import bundled, lines
from ._aux import aux_module
from ._torch import read_state_dict, torch_device
from .image import resize_for_detection
from .registry import DETECT_RESOLUTION, Param, annotator
from .weights import WeightFile

HED = WeightFile("ControlNetHED.pth")
PIDINET = WeightFile("table5_pidinet.pth")
MLSD = WeightFile("mlsd_large_512_fp32.pth")
LINEART = WeightFile("sk_model.pth")
LINEART_COARSE = WeightFile("sk_model2.pth")
LINEART_ANIME = WeightFile("netG.pth")


def _anime_unet(mod):
    import torch.nn as nn

    norm = functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)
    return mod.UnetGenerator(3, 1, 8, 64, norm_layer=norm, use_dropout=False)


def _pidinet_state(path: Path) -> dict:
    # The published checkpoint is a training snapshot: {"state_dict": {"module.<name>": ...}}.
    return {k.removeprefix("module."): v for k, v in read_state_dict(path)["state_dict"].items()}


# kind: (controlnet_aux submodule, network factory, state-dict reader, detector factory)
_BUILDERS = {
    "hed": ("hed", lambda m: m.ControlNetHED_Apache2(), read_state_dict, lambda m, net: m.HEDdetector(net)),
    "pidinet": ("pidi", lambda m: m.pidinet(), _pidinet_state, lambda m, net: m.PidiNetDetector(net)),
    "mlsd": ("mlsd", lambda m: m.MobileV2_MLSD_Large(), read_state_dict, lambda m, net: m.MLSDdetector(net)),
    "lineart": ("lineart", lambda m: m.Generator(3, 1, 3), read_state_dict,
                lambda m, net: m.LineartDetector(net, net)),
    "lineart_anime": ("lineart_anime", _anime_unet, lambda p: read_state_dict(p, "module."),
                      lambda m, net: m.LineartAnimeDetector(net)),
}


# Models stay resident once loaded (keyed by path: another folder loads another copy).
@functools.lru_cache(maxsize=None)
def _detector(kind: str, path: str, device: str):
    module_name, make_net, read, make_detector = _BUILDERS[kind]
    mod = aux_module(module_name)
    net = make_net(mod)
    net.load_state_dict(read(Path(path)), strict=True)
    return make_detector(mod, net.float().eval().to(device))


def _run(kind: str, paths: list[Path], image: np.ndarray, detect_resolution: int, **kw) -> np.ndarray:
    (path,) = paths
    # image_resolution = detect_resolution: the map comes back at the detection size; `run` sizes it.
    detector = _detector(kind, str(path), torch_device())
    return detector(image, detect_resolution=detect_resolution, image_resolution=detect_resolution,
                    output_type="np", **kw)


SOFT_EDGE_PARAMS = (
    Param("safe", "bool", False, help="quantise the soft edges to a few levels (the '-safe' variants)"),
    Param("scribble", "bool", False, help="thin and binarise the edges into a scribble"),
    DETECT_RESOLUTION,
)


@annotator("hed", kind="softedge", params=SOFT_EDGE_PARAMS, weights=(HED,),
           description="HED soft edges (controlnet_aux's ControlNetHED): gray edges on black; "
                       "with scribble=true, a scribble map.")
def hed(image: np.ndarray, paths: list[Path], safe: bool, scribble: bool, detect_resolution: int) -> np.ndarray:
    return _run("hed", paths, image, detect_resolution, safe=safe, scribble=scribble)


@annotator("pidinet", kind="softedge", params=SOFT_EDGE_PARAMS, weights=(PIDINET,),
           description="PiDiNet soft edges (controlnet_aux): gray edges on black; "
                       "with scribble=true, a scribble map.")
def pidinet(image: np.ndarray, paths: list[Path], safe: bool, scribble: bool, detect_resolution: int) -> np.ndarray:
    return _run("pidinet", paths, image, detect_resolution, safe=safe, scribble=scribble)


@annotator(
    "mlsd", kind="mlsd", weights=(MLSD,), bundled=bundled.OPENCV_LSD,
    description="M-LSD straight line segments (controlnet_aux): white 1 px lines on black. Without the "
                "M-LSD weights: mlsd (OpenCV LSD), the same map from OpenCV's line segment detector.",
    params=(
        Param("value_threshold", "float", 0.1, 0.01, 2.0, 0.01,
              help="line score below which a line is dropped (OpenCV LSD: its -log10 NFA)"),
        Param("distance_threshold", "float", 0.1, 0.01, 20.0, 0.01, help="shortest line kept, in pixels"),
        DETECT_RESOLUTION,
    ),
)
def mlsd(image: np.ndarray, paths: list[Path] | None, value_threshold: float, distance_threshold: float,
         detect_resolution: int) -> np.ndarray:
    if paths is None:
        return lines.line_map(resize_for_detection(image, detect_resolution), value_threshold, distance_threshold)
    return _run("mlsd", paths, image, detect_resolution, thr_v=value_threshold, thr_d=distance_threshold)


@annotator("lineart", kind="lineart", params=(DETECT_RESOLUTION,), weights=(LINEART,),
           description="Realistic line art (controlnet_aux's informative-drawings model): white lines on black.")
def lineart(image: np.ndarray, paths: list[Path], detect_resolution: int) -> np.ndarray:
    return _run("lineart", paths, image, detect_resolution)


@annotator("lineart_coarse", kind="lineart", params=(DETECT_RESOLUTION,), weights=(LINEART_COARSE,),
           description="Coarse line art (controlnet_aux, sk_model2): bolder white lines on black.")
def lineart_coarse(image: np.ndarray, paths: list[Path], detect_resolution: int) -> np.ndarray:
    return _run("lineart", paths, image, detect_resolution, coarse=True)


@annotator("lineart_anime", kind="lineart", params=(DETECT_RESOLUTION,), weights=(LINEART_ANIME,),
           description="Anime line art (controlnet_aux's anime U-Net): white lines on black.")
def lineart_anime(image: np.ndarray, paths: list[Path], detect_resolution: int) -> np.ndarray:
    return _run("lineart_anime", paths, image, detect_resolution)
