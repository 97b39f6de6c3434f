"""The values that travel through the engine: control units, requests, results.

They are frozen and validated on creation, so a request that exists is one the engine can
run; the same JSON (recipe schema version 1, DESIGN.md) serves the GUI, the APIs and the PNGs.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields, replace
from enum import Enum
from typing import Any

import numpy as np
from PIL import Image

from annotators.image import RESIZE_MODES, ResizeMode, to_mask, to_rgb

from . import images, limits
from .hires import HR_OPTIONS, UPSCALERS
from .images import from_b64
from .reference import DEFAULT_STYLE_FIDELITY, is_reference
from .samplers import SAMPLERS


class ControlMode(Enum):
    """How a unit's control is balanced against the prompt; each value is AUTOMATIC1111's name."""

    balanced = "Balanced"
    prompt = "My prompt is more important"
    control = "ControlNet is more important"


MODES: tuple[str, ...] = tuple(m.name for m in ControlMode)
RECIPE_FORMAT = "controlnet-studio"
RECIPE_VERSION = 1
AUTO_ANNOTATOR = "auto"   # ControlUnit(annotator="auto"): run the model kind's default annotator


def checked_number(name: str, value: Any, lo: float, hi: float, integer: bool = False) -> float | int:
    """`value` as a number within [lo, hi] (an int if `integer`), or a ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, not {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number between {lo} and {hi}, not {value}")
    if integer and value != int(value):
        raise ValueError(f"{name} must be a whole number, not {value}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be between {lo} and {hi}, not {value}")
    return int(value) if integer else float(value)


def _frozen(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False   # to_rgb/to_mask made a new array: the caller's later edits cannot reach it
    return a


def _encoded(value, name: str, image) -> str | None:
    """The base64 PNG of one of a frozen value's pictures, encoded on first use and kept: a
    generation writes the same maps into every image's recipe, and they never change."""
    if image is None:
        return None
    cache = value.__dict__.setdefault("_png", {})
    if cache.get(name, (None,))[0] is not image:
        cache[name] = (image, images.to_b64(image))
    return cache[name][1]


def default_annotator(model: str) -> str:
    """The annotator that makes maps for the ControlNet `model`, by the kind its name says."""
    from annotators import default_for   # lazy: the values load without the annotators' imports

    from .loading.detect import condition_kind
    kind = condition_kind(model)
    name = default_for(kind)
    if name is None:
        said = f"reads {kind!r} maps, which no annotator makes" if kind else "does not say which kind of map it reads"
        raise ValueError(f"the control model {model!r} {said}: name an annotator, or give the finished map "
                         f"(annotator=None in Python, map= on the command line)")
    return name


def annotate(name: str, picture: Any, params: dict | None = None) -> np.ndarray:
    """Annotator `name`'s map of `picture` (ValueErrors say what was wrong)."""
    import annotators
    params = {} if params is None else params
    if not isinstance(params, dict):
        raise ValueError("annotator_params must be a dict of the annotator's parameter values")
    return annotators.run(name, to_rgb(picture, f"picture for annotator {name!r}"), **params)


def _checked_pose(pose: Any, model: str) -> dict:
    """`pose` as plain OpenPose JSON (a dict), checked; ValueError saying what is wrong."""
    from annotators import parse_pose   # lazy, as annotate()
    if isinstance(pose, str):
        try:
            pose = json.loads(pose)
        except ValueError as e:
            raise ValueError(f"the pose of unit {model!r} is not OpenPose JSON ({e})") from None
    try:
        parse_pose(pose)
        return json.loads(json.dumps(pose))
    except (TypeError, ValueError) as e:
        raise ValueError(f"the pose of unit {model!r} is not OpenPose JSON: {e}") from None


def _is_ip_adapter(model: Any) -> bool:
    from .loading.ipadapters import is_ip_adapter   # lazy, as default_annotator's imports
    return is_ip_adapter(model)


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{name} {value!r} is not one of: {', '.join(allowed)}")
    return value


@dataclass(frozen=True, eq=False)
class ControlUnit:
    """One ControlNet applied to the locked backbone: its model, the control map it reads,
    and how strongly and when it acts.

    `image` is the map as it is; `annotator` names the annotator that made it (recorded in the
    recipe). `annotator="auto"` instead takes `image` as a picture and runs the default annotator
    of the model's kind on it (scribble for demo:scribble), recording that annotator's name."""

    model: str
    image: np.ndarray
    weight: float = 1.0
    start: float = 0.0
    end: float = 1.0
    mode: str = "balanced"
    mask: np.ndarray | None = None
    resize_mode: str = "crop"
    enabled: bool = True
    annotator: str | None = None
    annotator_params: dict = field(default_factory=dict)
    # The skeleton the map was drawn from (OpenPose JSON), so that a restored recipe brings the
    # pose back into an editor; None for a map that no pose made. The map stays what acts.
    pose: dict | None = None
    # A ControlNet-Union unit's control type, by AUTOMATIC1111's extension's names ("OpenPose",
    # "Depth", "Hard Edge", ...); None: the kind of the unit's annotator picks it. Other models ignore it.
    union_control_type: str | None = None
    # A reference unit's (model in REFERENCE_MODELS) balance of the CFG halves, 0..1 (A1111's
    # "Style Fidelity"); other units ignore it and their recipes do not write it.
    style_fidelity: float = DEFAULT_STYLE_FIDELITY
    # In a hires-fix run: "both" passes, the first ("low") or the second ("high") only.
    hr_option: str = "both"

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731  (frozen dataclass)
        if not isinstance(self.model, str) or not self.model.strip():
            raise ValueError("a control unit needs a control model (e.g. 'demo:scribble' or a ControlNet file name)")
        # reference and IP-Adapter units read a picture as it is: no annotator, no mask
        reference = is_reference(self.model) or _is_ip_adapter(self.model)
        if self.image is None:
            what = "reference picture" if reference else "control map"
            raise ValueError(f"the control unit for {self.model!r} has no {what}: give it an image or disable it")
        if reference and self.annotator == AUTO_ANNOTATOR:
            set_("annotator", None)   # a reference unit reads the picture itself: no annotator
        if self.annotator == AUTO_ANNOTATOR:
            name = default_annotator(self.model)
            set_("image", annotate(name, self.image, self.annotator_params))
            set_("annotator", name)
        set_("image", _frozen(to_rgb(self.image, f"control map of unit {self.model!r}", limits.MAX_IMAGE_SIDE)))
        set_("weight", checked_number("weight", self.weight, 0.0, limits.MAX_WEIGHT))
        set_("start", checked_number("start", self.start, 0.0, 1.0))
        set_("end", checked_number("end", self.end, 0.0, 1.0))
        if self.start >= self.end:
            raise ValueError(f"start ({self.start}) must be before end ({self.end}); both are fractions of the steps, 0 to 1")
        _choice("mode", self.mode, MODES)
        _choice("resize_mode", self.resize_mode, RESIZE_MODES)
        if self.mask is not None:
            set_("mask", _frozen(to_mask(self.mask, f"mask of unit {self.model!r}", limits.MAX_IMAGE_SIDE)))
        set_("enabled", bool(self.enabled))
        if self.annotator is not None and not isinstance(self.annotator, str):
            raise ValueError("annotator must be an annotator's name or None")
        if not isinstance(self.annotator_params, dict):
            raise ValueError("annotator_params must be a dict of the annotator's parameter values")
        try:
            params = json.loads(json.dumps(self.annotator_params))
        except (TypeError, ValueError) as e:
            raise ValueError(f"annotator_params must hold plain JSON values: {e}") from None
        set_("annotator_params", params)
        if self.pose is not None:
            set_("pose", _checked_pose(self.pose, self.model))
        if self.union_control_type is not None:
            from .union import UNION_CONTROL_TYPES
            _choice("union_control_type", self.union_control_type, UNION_CONTROL_TYPES)
        set_("style_fidelity", checked_number("style_fidelity", self.style_fidelity, 0.0, 1.0))
        if reference and self.mask is not None:
            raise ValueError(f"a {self.model} unit takes no mask: its reference acts on the whole picture; "
                             "remove the mask, or crop the reference picture instead")
        _choice("hr_option", self.hr_option, HR_OPTIONS)

    def to_dict(self) -> dict:
        # keys added after version 1's first units are written only when set: old recipes' JSON stays as it was
        extra = {} if self.pose is None else {"pose": self.pose}
        if self.union_control_type is not None:
            extra["union_control_type"] = self.union_control_type
        if is_reference(self.model):
            extra["style_fidelity"] = self.style_fidelity
        if self.hr_option != "both":
            extra["hr_option"] = self.hr_option
        return {
            "model": self.model, "image": _encoded(self, "image", self.image), "weight": self.weight,
            "start": self.start, "end": self.end, "mode": self.mode, "mask": _encoded(self, "mask", self.mask),
            "resize_mode": self.resize_mode, "enabled": self.enabled, "annotator": self.annotator,
            "annotator_params": self.annotator_params, **extra,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "ControlUnit":
        d = _known(cls, d, "control unit")
        d["image"] = from_b64(d.get("image"), "a unit's control map")
        if d.get("mask") is not None:
            d["mask"] = from_b64(d["mask"], "a unit's mask")
        return cls(**d)

    def __eq__(self, other):
        return isinstance(other, ControlUnit) and self.to_dict() == other.to_dict()

    __hash__ = None


@dataclass(frozen=True)
class LoraChoice:
    """One LoRA for a request: its name under models/loras/ (a file's stem, as in A1111's
    `<lora:name:weight>`) and its weight (the same on the UNet and the text encoders)."""

    name: str
    weight: float = 1.0

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.strip() or any(c in self.name for c in "<>:"):
            raise ValueError(f"a LoRA's name must be a file name under models/loras/ without <, > or :, not {self.name!r}")
        object.__setattr__(self, "name", self.name.strip())
        object.__setattr__(self, "weight", checked_number(f"LoRA {self.name!r} weight", self.weight,
                                                          -limits.MAX_LORA_WEIGHT, limits.MAX_LORA_WEIGHT))

    def to_dict(self) -> dict:
        return {"name": self.name, "weight": self.weight}

    @classmethod
    def from_dict(cls, d: Any) -> "LoraChoice":
        if isinstance(d, str):          # a bare name, as a client may send it
            return cls(d)
        return cls(**_known(cls, d, "LoRA"))


def _loras(value: Any) -> tuple:
    """A request's `loras`: LoraChoice values, dicts, names or (name, weight) pairs."""
    out = []
    for item in value or ():
        if isinstance(item, LoraChoice):
            out.append(item)
        elif isinstance(item, (tuple, list)) and len(item) == 2:
            out.append(LoraChoice(*item))
        else:
            out.append(LoraChoice.from_dict(item))
    if len(out) > limits.MAX_LORAS:
        raise ValueError(f"{len(out)} LoRAs given; at most {limits.MAX_LORAS} are allowed")
    return tuple(out)


# diffusers' and AUTOMATIC1111's scale, for a backbone that recommends none of its own
DEFAULT_CFG_SCALE = 7.5


def recommended_cfg_scale(recommended: dict) -> float:
    """The scale a request without one runs at, from a backbone's recommended settings."""
    return recommended.get("cfg_scale", DEFAULT_CFG_SCALE)


@dataclass(frozen=True, eq=False)
class GenerationRequest:
    """Everything that makes an image. Field names are AUTOMATIC1111's API names."""

    backbone: str = "demo"
    prompt: str = ""
    negative_prompt: str = ""
    units: tuple = ()
    width: int | None = None
    height: int | None = None
    steps: int = 20
    cfg_scale: float | None = None     # None: the backbone's recommended scale, else DEFAULT_CFG_SCALE
    seed: int = -1
    sampler: str = "unipc"
    batch_size: int = 1
    init_image: np.ndarray | None = None
    strength: float = 0.75             # img2img's, or the hires fix's second pass's (A1111's denoising_strength)
    inpaint_mask: np.ndarray | None = None
    loras: tuple = ()                  # LoraChoice values; `<lora:name:w>` tags in the prompt add to them
    # The hires fix (engine.hires): a second, img2img pass at a larger size
    enable_hr: bool = False
    hr_scale: float = 2.0
    hr_resize_x: int = 0               # 0: from hr_scale (both 0) or keeping the aspect ratio
    hr_resize_y: int = 0
    hr_second_pass_steps: int = 0      # 0: as many as the first pass
    hr_upscaler: str = "Latent"

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731
        if not isinstance(self.backbone, str) or not self.backbone.strip():
            raise ValueError("backbone must name a model ('demo', a folder, a file or a hub id)")
        for name in ("prompt", "negative_prompt"):
            text = getattr(self, name)
            if text is None:
                set_(name, "")
            elif not isinstance(text, str):
                raise ValueError(f"{name} must be text, not {type(text).__name__}")
            elif len(text) > limits.MAX_PROMPT_CHARS:
                raise ValueError(f"{name} has {len(text)} characters; the limit is {limits.MAX_PROMPT_CHARS}")
        units = tuple(self.units or ())
        if not all(isinstance(u, ControlUnit) for u in units):
            raise ValueError("units must be ControlUnit values")
        if len(units) > limits.MAX_UNITS:
            raise ValueError(f"{len(units)} control units given; at most {limits.MAX_UNITS} are allowed")
        set_("units", units)
        for name in ("width", "height"):
            v = getattr(self, name)
            if v is not None:
                v = checked_number(name, v, limits.MIN_SIZE, limits.MAX_SIZE, integer=True)
                if v % limits.SIZE_MULTIPLE:
                    near = round(v / limits.SIZE_MULTIPLE) * limits.SIZE_MULTIPLE
                    raise ValueError(f"{name} {v} is not a multiple of {limits.SIZE_MULTIPLE}; try {near}")
                set_(name, v)
        set_("steps", checked_number("steps", self.steps, 1, limits.MAX_STEPS, integer=True))
        if self.cfg_scale is not None:
            set_("cfg_scale", checked_number("cfg_scale", self.cfg_scale, 0.0, limits.MAX_CFG_SCALE))
        set_("seed", checked_number("seed", self.seed, -1, limits.MAX_SEED, integer=True))
        _choice("sampler", self.sampler, SAMPLERS)
        set_("batch_size", checked_number("batch_size", self.batch_size, 1, limits.MAX_BATCH_SIZE, integer=True))
        if self.init_image is not None:
            set_("init_image", _frozen(to_rgb(self.init_image, "init_image", limits.MAX_IMAGE_SIDE)))
        set_("strength", checked_number("strength", self.strength, 0.0, 1.0))
        if self.inpaint_mask is not None:
            if self.init_image is None:
                raise ValueError("inpaint_mask needs an init_image to paint into")
            set_("inpaint_mask", _frozen(to_mask(self.inpaint_mask, "inpaint_mask", limits.MAX_IMAGE_SIDE)))
        set_("loras", _loras(self.loras))
        self._check_hires(set_)

    def _check_hires(self, set_):
        if not isinstance(self.enable_hr, (bool, np.bool_)):
            raise ValueError(f"enable_hr must be true or false, not {self.enable_hr!r}")
        set_("enable_hr", bool(self.enable_hr))
        set_("hr_scale", checked_number("hr_scale", self.hr_scale, 1.0, limits.MAX_HR_SCALE))
        for name in ("hr_resize_x", "hr_resize_y"):
            v = checked_number(name, getattr(self, name), 0, limits.MAX_SIZE, integer=True)
            if 0 < v < limits.MIN_SIZE:
                raise ValueError(f"{name} must be 0 (from hr_scale) or at least {limits.MIN_SIZE}, not {v}")
            set_(name, v)
        set_("hr_second_pass_steps", checked_number("hr_second_pass_steps", self.hr_second_pass_steps, 0,
                                                    limits.MAX_STEPS, integer=True))
        _choice("hr_upscaler", self.hr_upscaler, UPSCALERS)
        if self.enable_hr and self.init_image is not None:
            raise ValueError("the hires fix is a second pass after txt2img; with an init_image (img2img), "
                             "set enable_hr to false and ask for the larger width and height instead")
        if self.enable_hr and self.strength == 0:
            raise ValueError("the hires fix's second pass needs a strength (denoising strength) above 0; "
                             "0.5 to 0.75 is usual")

    @property
    def active_units(self) -> tuple:
        return tuple(u for u in self.units if u.enabled)

    def replace(self, **changes) -> "GenerationRequest":
        new = replace(self, **changes)
        # The pictures are the same frozen arrays, so their encodings carry over (checked by identity).
        new.__dict__["_png"] = dict(self.__dict__.get("_png", {}))
        return new

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["units"] = [u.to_dict() for u in self.units]
        for k in ("init_image", "inpaint_mask"):
            d[k] = _encoded(self, k, d[k])
        if self.loras:
            d["loras"] = [lora.to_dict() for lora in self.loras]
        else:
            del d["loras"]              # a recipe without LoRAs reads and writes as before them
        for f in fields(self):
            # the hires fields appear only when set: older recipes' JSON stays byte for byte as it was
            if f.name in _HIRES_FIELDS and d[f.name] == f.default:
                del d[f.name]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "GenerationRequest":
        d = _known(cls, d, "request")
        units = d.get("units") or []
        if not isinstance(units, list):
            raise ValueError("the recipe's units must be a list")
        d["units"] = tuple(ControlUnit.from_dict(u) for u in units)
        if not isinstance(d.get("loras", []), list):
            raise ValueError("the recipe's loras must be a list of {\"name\": ..., \"weight\": ...}")
        for k in ("init_image", "inpaint_mask"):
            if d.get(k) is not None:
                d[k] = from_b64(d[k], k)
        return cls(**d)

    def to_json(self, seed: int | None = None) -> str:
        """The recipe: this request plus, where known, the seed of one particular image. The
        request's JSON is built once per value; each image's recipe only sets its seed in it."""
        text = self.__dict__.get("_request_json")
        if text is None:
            text = self.__dict__["_request_json"] = json.dumps(self.to_dict(), sort_keys=True)
        seed = self.seed if seed is None else int(seed)
        # json.dumps(recipe, sort_keys=True) spelled out, so the request's text is not dumped again
        return (f'{{"format": {json.dumps(RECIPE_FORMAT)}, "request": {text}, "seed": {seed}, '
                f'"version": {RECIPE_VERSION}}}')

    @classmethod
    def from_json(cls, text: str | bytes) -> "GenerationRequest":
        try:
            recipe = json.loads(text)
        except (TypeError, ValueError) as e:
            raise ValueError(f"the recipe is not valid JSON: {e}") from None
        except RecursionError:
            raise ValueError("the recipe nests too deeply to be a recipe; send DESIGN.md's flat schema") from None
        if not isinstance(recipe, dict) or recipe.get("format") != RECIPE_FORMAT:
            raise ValueError(f"not a ControlNet Studio recipe (expected \"format\": \"{RECIPE_FORMAT}\")")
        if recipe.get("version") != RECIPE_VERSION:
            raise ValueError(f"recipe version {recipe.get('version')!r} is not supported; this version reads {RECIPE_VERSION}")
        if not isinstance(recipe.get("request"), dict):
            raise ValueError("the recipe has no request object")
        return cls.from_dict(recipe["request"])

    def __eq__(self, other):
        return isinstance(other, GenerationRequest) and self.to_json() == other.to_json()

    __hash__ = None


_HIRES_FIELDS = ("enable_hr", "hr_scale", "hr_resize_x", "hr_resize_y", "hr_second_pass_steps", "hr_upscaler")


def _known(cls, d: Any, what: str) -> dict:
    if not isinstance(d, dict):
        raise ValueError(f"a {what} in a recipe must be a JSON object")
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"unknown {what} field(s) {unknown}; known: {sorted(names)}")
    return dict(d)


@dataclass(frozen=True)
class GenerationResult:
    """Images (PIL), one seed each, the recipe JSON of the request as run (seed resolved),
    whether an interrupt ended it early, and the saved files (empty when not saved)."""

    images: list[Image.Image]
    seeds: list[int]
    recipe: str
    interrupted: bool = False
    paths: list = field(default_factory=list)
    ignored_words: tuple = ()   # prompt words the backbone's vocabulary does not hold
    warnings: tuple = ()        # what went wrong without stopping the run (e.g. not saved)
    save_seconds: float = 0.0   # of the run's time, what writing the PNG files took
