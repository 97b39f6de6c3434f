"""/controlnet/*: the ControlNet extension's own routes (its scripts/api.py), on this studio's
annotators and control models."""
from __future__ import annotations

import annotators
import engine

from . import mapping, names, pictures
from .schema import Detect, Pose

EXTENSION_API_VERSION = 2
# the extension's control types, by the condition kind a model's name gives (engine.condition_kind)
_TYPES = {"canny": "Canny", "depth": "Depth", "openpose": "OpenPose", "lineart": "Lineart", "scribble": "Scribble",
          "softedge": "SoftEdge", "mlsd": "MLSD", "normal": "NormalMap", "seg": "Segmentation",
          "shuffle": "Shuffle", "tile": "Tile", "color": "T2I-Adapter", "inpaint": "Inpaint"}


def version(payload, query: dict) -> dict:
    return {"version": EXTENSION_API_VERSION}


def model_list(payload, query: dict) -> dict:
    # the extension lists IP-Adapters among its models (they sit in its models folder)
    return {"model_list": [names.model_title(s) for s in names.controlnets()]
            + [names.model_title(a, "ipadapter") for a in names.ip_adapters()]}


def module_list(payload, query: dict) -> dict:
    alias = str(query.get("alias_names", "false")).lower() in ("1", "true", "yes")
    listed = names.module_names(alias_names=alias)
    return {"module_list": listed, "module_detail": {m: names.module_detail(m) for m in listed}}


def control_types(payload, query: dict) -> dict:
    models = names.controlnets()
    types = {"All": {"module_list": names.module_names(alias_names=True),
                     "model_list": ["None", *(names.model_title(m) for m in models)],
                     "default_option": "none", "default_model": "None"}}
    for kind, tag in _TYPES.items():
        modules = [m for m, mod in names.MODULES.items() if mod.annotator
                   and annotators.spec(mod.annotator)["kind"] == kind]
        kind_models = [names.model_title(m) for m in models if engine.condition_kind(m) == kind]
        if modules or kind_models:
            types[tag] = {"module_list": ["none", *modules], "model_list": ["None", *kind_models],
                          "default_option": modules[0] if modules else "none",
                          "default_model": kind_models[0] if kind_models else "None"}
    adapters = [names.model_title(a, "ipadapter") for a in names.ip_adapters()]
    if adapters:
        modules = list(engine.IP_ADAPTER_MODULES)
        types["IP-Adapter"] = {"module_list": modules, "model_list": ["None", *adapters],
                               "default_option": modules[0], "default_model": adapters[0]}
    return {"control_types": types}


def settings(payload, query: dict) -> dict:
    return {"control_net_unit_count": engine.limits.MAX_UNITS}


def detect(payload: Detect, query: dict) -> dict:
    """Each picture's map as the module makes it, and for OpenPose modules the poses as OpenPose JSON."""
    module = mapping._at(("controlnet_module",), names.module, payload.controlnet_module)
    params = mapping._at(("controlnet_module",), names.module_params, module, payload.controlnet_processor_res,
                         payload.controlnet_threshold_a, payload.controlnet_threshold_b)
    key = "controlnet_input_images" if payload.controlnet_input_images else "controlnet_images"
    images, poses = [], []
    for i, value in enumerate(getattr(payload, key)):
        picture = mapping._at((key, i), pictures.decode, value, f"{key}[{i}]")
        if module.annotator is None:
            images.append(pictures.encode(picture[:, :, :3]))
            continue
        if module.annotator == "openpose":
            pose = mapping._at((key, i), lambda: annotators.detect_pose(picture, **params))
            poses.append(pose)
            images.append(pictures.encode(annotators.render_pose(pose, picture.shape[1], picture.shape[0])))
        else:
            images.append(pictures.encode(mapping._at(
                (key, i), lambda: annotators.run(module.annotator, picture, **params))))
    answer = {"images": images, "info": "Success"}
    if module.annotator == "openpose":
        answer["poses"] = poses
    return answer


def render_openpose_json(payload, query: dict) -> dict:
    """Pose maps of OpenPose JSON (a list of poses, or one), each at its own canvas size."""
    poses = payload if isinstance(payload, list) else [payload]
    images = []
    for i, raw in enumerate(poses):
        try:
            pose = Pose.model_validate(raw)
        except Exception as e:  # noqa: BLE001  (pydantic's error, as a 422 at this pose)
            if hasattr(e, "errors"):
                raise mapping.from_validation(e, (i,)) from None
            raise
        canvas = mapping._at((i,), lambda: annotators.render_pose(
            pose.model_dump(), pose.canvas_width, pose.canvas_height))
        images.append(pictures.encode(canvas))
    return {"images": images, "info": "Success"}


ROUTES = [
    ("GET", "/controlnet/version", version, None),
    ("GET", "/controlnet/model_list", model_list, None),
    ("GET", "/controlnet/module_list", module_list, None),
    ("GET", "/controlnet/control_types", control_types, None),
    ("GET", "/controlnet/settings", settings, None),
    ("POST", "/controlnet/detect", detect, Detect),
    ("POST", "/controlnet/render_openpose_json", render_openpose_json, "json"),
]
