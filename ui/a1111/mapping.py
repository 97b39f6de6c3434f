"""A txt2img / img2img payload onto the studio's one request type: one GenerationRequest per
`n_iter` batch (consecutive seeds, as A1111 runs them), the units' detected maps, and a warning
for each field or script that has no use here. Nothing here generates; the REST layer adds no
behaviour of its own (DESIGN.md)."""
from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageFilter
from pydantic import ValidationError

import annotators
import engine
from engine import UNION_CONTROL_TYPES, ControlUnit, GenerationRequest, limits

from .. import catalog
from . import names, pictures
from .schema import ControlNetUnitArgs, Img2Img, Txt2Img

CONTROLNET_SCRIPT = "controlnet"


class PayloadError(ValueError):
    """A payload that cannot run as sent: FastAPI's 422 `detail` entries, each with its `loc`."""

    def __init__(self, errors: list[dict]):
        super().__init__("; ".join(e["msg"] for e in errors))
        self.errors = errors


def error_at(loc: tuple, message: str, value=None) -> PayloadError:
    return PayloadError([{"type": "value_error", "loc": ["body", *loc], "msg": message, "input": value}])


def from_validation(error: ValidationError, prefix: tuple = ()) -> PayloadError:
    errors = []
    for e in error.errors(include_url=False):
        entry = {"type": e["type"], "loc": ["body", *prefix, *e["loc"]], "msg": e["msg"],
                 "input": _short_input(e.get("input"))}
        errors.append(entry)
    return PayloadError(errors)


@dataclass
class Plan:
    requests: list[GenerationRequest]
    maps: list[np.ndarray] = field(default_factory=list)   # detected maps, appended after the pictures
    warnings: list[str] = field(default_factory=list)
    save: bool = False
    send: bool = True


def plan(payload: Txt2Img) -> Plan:
    """The requests a payload means; PayloadError (a 422) naming the field that cannot run."""
    img2img = isinstance(payload, Img2Img)
    warnings = []
    if payload.unknown():
        warnings.append(f"ignored (no use in this studio): {', '.join(payload.unknown())}")
    backbone = _backbone(payload, warnings)
    sampler = _at(("sampler_name",), names.sampler, payload.sampler_name or payload.sampler_index)
    init_image = mask = None
    if img2img:
        init_image = _at(("init_images", 0), pictures.decode, payload.init_images[0], "init_images[0]")
        if len(payload.init_images) > 1:
            warnings.append(f"only the first of {len(payload.init_images)} init_images is used")
        if payload.mask:
            mask = _at(("mask",), _inpaint_mask, payload)
            if payload.inpainting_fill != 1:
                warnings.append(f"inpainting_fill {payload.inpainting_fill} runs as 1 (original): the masked "
                                "area starts from the init image")
    units, maps = _units(payload, init_image, warnings)
    hires = _hires(payload, img2img, warnings)
    batches = payload.n_iter
    seed = payload.seed
    if seed == -1:
        seed = random.randrange(limits.MAX_SEED + 1 - batches * payload.batch_size)
    requests = []
    for k in range(batches):
        fields = dict(backbone=backbone, prompt=payload.prompt, negative_prompt=payload.negative_prompt,
                      units=tuple(units), width=payload.width, height=payload.height, steps=payload.steps,
                      cfg_scale=payload.cfg_scale, seed=(seed + k * payload.batch_size) % (limits.MAX_SEED + 1),
                      batch_size=payload.batch_size, init_image=init_image, inpaint_mask=mask)
        if sampler:
            fields["sampler"] = sampler
        if img2img:
            fields["strength"] = payload.denoising_strength
        fields.update(hires)
        requests.append(_at((), lambda f: GenerationRequest(**f), fields))
    return Plan(requests, maps, warnings, save=payload.save_images, send=payload.send_images)


def _hires(payload: Txt2Img, img2img: bool, warnings: list) -> dict:
    """The hires-fix fields of a txt2img payload (A1111 has none for img2img)."""
    if not payload.enable_hr:
        return {}
    if img2img:
        warnings.append("enable_hr ignored: the hires fix is txt2img's second pass; for img2img ask for the "
                        "larger width and height")
        return {}
    strength = 0.75 if payload.denoising_strength is None else payload.denoising_strength   # A1111's txt2img default
    return dict(enable_hr=True, hr_scale=payload.hr_scale, hr_resize_x=payload.hr_resize_x,
                hr_resize_y=payload.hr_resize_y, hr_second_pass_steps=payload.hr_second_pass_steps,
                hr_upscaler=names.upscaler(payload.hr_upscaler, warnings), strength=strength)


def _backbone(payload: Txt2Img, warnings: list) -> str:
    overrides = dict(payload.override_settings or {})
    chosen = overrides.pop("sd_model_checkpoint", None)
    if overrides:
        warnings.append(f"override_settings ignored (no use in this studio): {', '.join(sorted(overrides))}")
    if chosen is None:
        return catalog.current_backbone()
    return _at(("override_settings", "sd_model_checkpoint"), names.model_source, chosen, names.backbones(),
               "backbone")


def _inpaint_mask(payload: Img2Img) -> np.ndarray:
    m = engine_mask(pictures.decode(payload.mask, "mask"))
    if payload.inpainting_mask_invert:
        m = 255 - m
    if payload.mask_blur:
        m = np.asarray(Image.fromarray(m).filter(ImageFilter.GaussianBlur(payload.mask_blur)))
    return m


def engine_mask(picture: np.ndarray) -> np.ndarray:
    """A mask picture as HxW uint8, 255 = act here (a painted alpha layer counts where it varies)."""
    if picture.ndim == 3 and picture.shape[2] == 4 and picture[:, :, 3].min() != picture[:, :, 3].max():
        return np.ascontiguousarray(picture[:, :, 3])
    rgb = picture[:, :, :3].astype(np.float32)
    return np.ascontiguousarray((rgb @ np.array([0.299, 0.587, 0.114], np.float32)).round().astype(np.uint8))


def _units(payload: Txt2Img, init_image, warnings: list) -> tuple[list, list]:
    scripts = payload.alwayson_scripts or {}
    units, maps = [], []
    for key, script in scripts.items():
        if str(key).strip().lower() != CONTROLNET_SCRIPT:
            warnings.append(f"script {key!r} ignored: this studio runs only ControlNet")
            continue
        args = script.get("args") if isinstance(script, dict) else None
        if not isinstance(args, list):
            raise error_at(("alwayson_scripts", key, "args"), "ControlNet's args must be a list of unit objects "
                           '({"args": [{"module": ..., "model": ..., "image": ...}]}); an empty list means no units',
                           _short_input(script))
        if len(args) > limits.MAX_UNITS:
            raise error_at(("alwayson_scripts", key, "args"), f"{len(args)} ControlNet units given; at most "
                           f"{limits.MAX_UNITS} are allowed")
        for i, raw in enumerate(args):
            where = ("alwayson_scripts", key, "args", i)
            if not isinstance(raw, dict):
                raise error_at(where, f"ControlNet unit {i} must be an object of the extension's fields "
                               "(enabled, module, model, weight, image, ...)", _short_input(raw))
            try:
                arg = ControlNetUnitArgs.model_validate(raw)
            except ValidationError as e:
                raise from_validation(e, where) from None
            if not arg.enabled:
                continue
            if arg.unknown():
                warnings.append(f"ControlNet unit {i}: ignored {', '.join(arg.unknown())}")
            unit, detected = _unit(arg, i, where, payload, init_image, warnings)
            units.append(unit)
            if arg.save_detected_map:
                maps.append(detected)
    return units, maps


def _unit(arg: ControlNetUnitArgs, i: int, where: tuple, payload: Txt2Img, init_image, warnings: list):
    module = _at((*where, "module"), names.module, arg.module)
    if module.reference:
        # the extension's reference modules are model-free: model "None" (any other is not used)
        if isinstance(arg.model, str) and arg.model.strip().lower() not in ("", "none"):
            warnings.append(f"ControlNet unit {i}: {module.reference} needs no model; {arg.model!r} ignored")
        model = module.reference
    elif module.ip_adapter:
        model = _at((*where, "model"), names.model_source, arg.model, names.ip_adapters(), "ipadapter")
    elif _ip_adapter_named(arg.model):
        # an IP-Adapter model with another module: the adapter's encoder reads the picture itself
        model = _ip_adapter_named(arg.model)
        if module.annotator is not None:
            warnings.append(f"ControlNet unit {i}: {model} is an IP-Adapter, which reads the picture itself; "
                            f"module {arg.module!r} ignored (use ip-adapter_clip_sd15 or ip-adapter_clip_sdxl)")
        module = names.module("ip-adapter-auto")
    else:
        model = _at((*where, "model"), names.model_source, arg.model, names.controlnets())
    source = arg.image if arg.image not in (None, "") else arg.input_image
    input_mask = arg.mask or arg.mask_image
    if isinstance(source, dict):
        input_mask = input_mask or source.get("mask")
        source = source.get("image")
    if source in (None, ""):
        if init_image is None:
            raise error_at((*where, "image"), f"ControlNet unit {i} has no image; send one as base64 "
                           "(img2img units without one use the init image)")
        picture = init_image
    else:
        picture = _at((*where, "image"), pictures.decode, source, f"ControlNet unit {i}'s image")
    if input_mask:
        warnings.append(f"ControlNet unit {i}: the input mask is for inpaint modules, which this studio does not "
                        "have; ignored (effective_region_mask limits where a unit acts)")
    processor_res = arg.processor_res
    if arg.pixel_perfect:
        processor_res = _pixel_perfect(picture, payload, _at((*where, "resize_mode"), _resize_mode, arg))
    params = _at((*where, "module"), names.module_params, module, processor_res, arg.threshold_a, arg.threshold_b)
    extra = {"style_fidelity": names.style_fidelity(arg.threshold_a)} if module.reference else {}
    if module.annotator is None:
        detected = np.asarray(picture)[:, :, :3]
    else:
        detected = _at((*where, "module"), lambda: annotators.run(module.annotator, picture, **params))
    region = None
    if arg.effective_region_mask:
        region = engine_mask(_at((*where, "effective_region_mask"), pictures.decode, arg.effective_region_mask,
                                 f"ControlNet unit {i}'s effective_region_mask"))
    end = arg.guidance if arg.guidance is not None and "guidance_end" not in arg.model_fields_set else arg.guidance_end
    unit = _at(where, lambda: ControlUnit(
        model, detected, weight=arg.weight, start=arg.guidance_start, end=end,
        mode=names.choice("control_mode", arg.control_mode, names.CONTROL_MODES, names.CONTROL_BY_NUMBER),
        mask=region, resize_mode=_resize_mode(arg), annotator=module.annotator, annotator_params=params,
        union_control_type=_at((*where, "union_control_type"), _union_type, arg.union_control_type),
        hr_option=names.choice("hr_option", arg.hr_option, names.HR_OPTIONS, names.HR_OPTION_BY_NUMBER), **extra))
    return unit, detected


def _ip_adapter_named(model) -> str | None:
    try:
        return names.model_source(model, names.ip_adapters(), "ipadapter")
    except ValueError:
        return None


def _union_type(value: str | None) -> str | None:
    """The extension's union_control_type: one of its names (any case); "Unknown" (its default) or
    nothing lets the module's kind pick it. Models other than Union ignore it, as there."""
    if value is None or value.strip().lower() in ("", "unknown"):
        return None
    for name in UNION_CONTROL_TYPES:
        if name.lower() == value.strip().lower():
            return name
    raise ValueError(f"union_control_type {value!r} is not one of: {', '.join(UNION_CONTROL_TYPES)}, Unknown")


def _resize_mode(arg: ControlNetUnitArgs) -> str:
    return names.choice("resize_mode", arg.resize_mode, names.RESIZE_MODES, names.RESIZE_BY_NUMBER)


def _pixel_perfect(picture: np.ndarray, payload: Txt2Img, resize_mode: str) -> float:
    """The extension's pixel-perfect detect resolution: the map's short side once fitted to the frame."""
    width, height = payload.width, payload.height
    if width is None or height is None:
        native = catalog.manager().backbone(catalog.current_backbone()).native_size
        width, height = width or native, height or native
    raw_h, raw_w = picture.shape[:2]
    k_h, k_w = height / raw_h, width / raw_w
    k = min(k_h, k_w) if resize_mode == "fill" else max(k_h, k_w)
    return float(min(max(round(k * min(raw_h, raw_w)), 64), 2048))


def _at(loc: tuple, fn, *args):
    """fn(*args), its ValueError turned into a 422 at `loc`."""
    try:
        return fn(*args)
    except PayloadError:
        raise
    except ValueError as e:
        raise error_at(loc, str(e)) from None


def _short_input(value):
    if isinstance(value, str) and len(value) > 80:
        return value[:77] + "..."
    if isinstance(value, (dict, list)):
        text = repr(value)
        return text if len(text) <= 80 else text[:77] + "..."
    return value
