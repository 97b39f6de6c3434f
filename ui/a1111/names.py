"""AUTOMATIC1111's and its ControlNet extension's names, mapped onto this studio's: modules
(preprocessors) onto annotators and their parameters, model titles onto sources, samplers,
resize and control modes. An unknown name is a ValueError listing what is available."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import annotators
import engine

from .. import catalog


@dataclass(frozen=True)
class Module:
    """An extension module as this studio runs it: the annotator (None: the picture is the map),
    fixed parameters, and which of its parameters threshold_a / threshold_b set."""

    annotator: str | None
    fixed: dict = field(default_factory=dict)
    threshold_a: str | None = None
    threshold_b: str | None = None
    reference: str | None = None     # a weight-free reference mode (engine.REFERENCE_MODELS): no model,
                                     # the picture is the reference, threshold_a its style fidelity
    ip_adapter: bool = False         # an IP-Adapter module: the model is an adapter in models/ipadapters/,
                                     # the picture goes to its image encoder as it is


# The extension's module names (scripts/processor.py, scripts/preprocessor/*), as far as this
# studio has an annotator for them.
MODULES: dict[str, Module] = {
    "none": Module(None),
    "canny": Module("canny", threshold_a="low_threshold", threshold_b="high_threshold"),
    "depth_midas": Module("depth"), "depth_anything": Module("depth"), "depth_zoe": Module("depth"),
    "depth_leres": Module("depth"),
    "openpose": Module("openpose"), "openpose_full": Module("openpose"), "openpose_hand": Module("openpose"),
    "openpose_face": Module("openpose"), "openpose_faceonly": Module("openpose"), "dw_openpose_full": Module("openpose"),
    "lineart_realistic": Module("lineart"), "lineart_coarse": Module("lineart_coarse"),
    "lineart_anime": Module("lineart_anime"),
    "lineart_standard (from white bg & black line)": Module("lineart_standard"),
    "scribble_hed": Module("hed", {"scribble": True}), "scribble_pidinet": Module("pidinet", {"scribble": True}),
    "scribble_xdog": Module("scribble_xdog", threshold_a="threshold"),
    "softedge_hed": Module("hed"), "softedge_hedsafe": Module("hed", {"safe": True}),
    "softedge_pidinet": Module("pidinet"), "softedge_pidisafe": Module("pidinet", {"safe": True}),
    "mlsd": Module("mlsd", threshold_a="value_threshold", threshold_b="distance_threshold"),
    "normal_bae": Module("normal"), "normal_midas": Module("normal", threshold_a="background_threshold"),
    "seg_ofade20k": Module("segmentation"), "seg_ofcoco": Module("segmentation"),
    "seg_ufade20k": Module("segmentation"),
    "shuffle": Module("shuffle"),
    "tile_resample": Module("tile", threshold_a="down_sampling_rate"),
    "invert (from white bg & black line)": Module("invert"),
    "threshold": Module("binary", threshold_a="threshold"),
    "t2ia_color_grid": Module("color_grid"),
    **{name: Module(None, reference=name) for name in engine.REFERENCE_MODELS},
    **{name: Module(None, ip_adapter=True) for name in engine.IP_ADAPTER_MODULES},
}
# The extension's style-fidelity slider of the reference modules (threshold_a), its label and range.
STYLE_FIDELITY_SLIDER = {"name": "Style Fidelity (only for Balanced mode)", "value": 0.5, "min": 0.0, "max": 1.0,
                         "step": 0.01}


def style_fidelity(threshold_a: float | None) -> float:
    """A reference module's style fidelity from threshold_a (-1 or None: the extension's 0.5)."""
    if threshold_a is None or threshold_a == -1:
        return STYLE_FIDELITY_SLIDER["value"]
    return float(threshold_a)

# The extension's legacy names (what `module_list?alias_names=false` lists), still accepted.
ALIASES = {
    "invert": "invert (from white bg & black line)",
    "lineart_standard": "lineart_standard (from white bg & black line)",
    "lineart": "lineart_realistic", "color": "t2ia_color_grid", "depth": "depth_midas",
    "normal_map": "normal_midas", "hed": "softedge_hed", "hed_safe": "softedge_hedsafe",
    "pidinet": "softedge_pidinet", "pidinet_safe": "softedge_pidisafe", "segmentation": "seg_ufade20k",
    "oneformer_coco": "seg_ofcoco", "oneformer_ade20k": "seg_ofade20k", "pidinet_scribble": "scribble_pidinet",
    "fake_scribble": "scribble_hed", "binary": "threshold",
}
_LEGACY = {full: short for short, full in ALIASES.items() if short != "binary"}


def module_names(alias_names: bool = False) -> list[str]:
    """The modules this studio runs, by the extension's legacy names or (alias_names) its current ones,
    then the studio's own annotators that no extension name covers."""
    listed = list(MODULES) if alias_names else [_LEGACY.get(m, m) for m in MODULES]
    covered = {m.annotator for m in MODULES.values()}
    return listed + [a for a in annotators.names() if a not in covered]


def module(name: str) -> Module:
    """The module of an extension name, a legacy alias, or one of this studio's annotators."""
    if not isinstance(name, str):
        raise ValueError(f"module must be a module's name, not {name!r}")
    key = name.strip()
    key = ALIASES.get(key.lower(), key)
    for candidate in (key, key.lower()):
        if candidate in MODULES:
            return MODULES[candidate]
        if candidate in annotators.names():
            return Module(candidate)
    raise ValueError(f"unknown module {name!r}; available: {', '.join(module_names(alias_names=True))}")


def module_params(mod: Module, processor_res: float | None, threshold_a: float | None,
                  threshold_b: float | None) -> dict:
    """The annotator parameters a unit's processor_res and thresholds set (-1 or None: the default;
    a value for a parameter the annotator does not have is dropped, as the extension ignores sliders
    a module does not show)."""
    if mod.annotator is None:
        return {}
    declared = {p["name"] for p in annotators.spec(mod.annotator)["params"]}
    params = dict(mod.fixed)
    for param, value in (("detect_resolution", processor_res), (mod.threshold_a, threshold_a),
                         (mod.threshold_b, threshold_b)):
        if param and param in declared and value is not None and value != -1:
            spec = next(p for p in annotators.spec(mod.annotator)["params"] if p["name"] == param)
            params[param] = int(round(value)) if spec["type"] == "int" else float(value)
    return params


def module_detail(name: str) -> dict:
    """The extension's per-module detail: whether it needs a model, and its sliders."""
    mod = module(name)
    if mod.reference:
        return {"model_free": True, "sliders": [dict(STYLE_FIDELITY_SLIDER)]}
    sliders = []
    if mod.annotator is not None:
        specs = {p["name"]: p for p in annotators.spec(mod.annotator)["params"]}
        for label, param in (("Preprocessor Resolution", "detect_resolution"),
                             (mod.threshold_a, mod.threshold_a), (mod.threshold_b, mod.threshold_b)):
            if param and param in specs:
                p = specs[param]
                sliders.append({"name": label.replace("_", " ").title() if label == param else label,
                                "value": p["default"], "min": p["min"], "max": p["max"], "step": p["step"] or 1})
    return {"model_free": False, "sliders": sliders}


_HASH = re.compile(r"\s*\[[0-9a-fA-F]{6,64}\]\s*$")


def model_title(source: str, role: str = "controlnet") -> str:
    """A model as A1111 lists it: its name (a file's without the suffix) and short hash."""
    return f"{_stem(source)} [{engine.short_hash(source, role)}]"


def model_source(name: str, installed: list[str], role: str = "controlnet") -> str:
    """The installed source a model name means, with or without its ` [hash]` and file suffix
    (A1111 names models by file stem); the hash itself is not checked."""
    what = {"controlnet": "model", "backbone": "checkpoint", "ipadapter": "IP-Adapter model"}.get(role, role)
    if not isinstance(name, str) or not name.strip() or name.strip().lower() == "none":
        needed = "an IP-Adapter model (under models/ipadapters/)" if role == "ipadapter" else f"a {role}"
        raise ValueError(f"{needed} is needed; available: {', '.join(model_title(s, role) for s in installed) or 'none'}")
    bare = _HASH.sub("", name).strip()
    for source in installed:
        if bare in (source, _stem(source)) or bare.lower() in (source.lower(), _stem(source).lower()):
            return source
    raise ValueError(f"unknown {what} {name!r}; available: "
                     f"{', '.join(model_title(s, role) for s in installed) or 'none installed'}")


def _stem(source: str) -> str:
    lower = source.lower()
    for suffix in (".safetensors", ".ckpt", ".pth", ".pt", ".bin"):
        if lower.endswith(suffix):
            return source[:-len(suffix)]
    return source


def controlnets() -> list[str]:
    return catalog.models()["controlnets"]


def ip_adapters() -> list[str]:
    """The IP-Adapters in models/ipadapters/, by name (A1111 lists them among the ControlNet models)."""
    return [a["name"] for a in catalog.ip_adapters()]


def backbones() -> list[str]:
    return catalog.models()["backbones"]


# A1111's sampler names (and the k-diffusion ones older clients send) onto this engine's
_SAMPLER_ALIASES = {"dpm++ 2m": "dpmpp_2m", "dpm++ 2m karras": "dpmpp_2m_karras", "k_euler": "euler",
                    "k_euler_a": "euler_a", "k_euler_ancestral": "euler_a", "euler ancestral": "euler_a",
                    "k_lms": "lms", "k_heun": "heun", "k_dpmpp_2m": "dpmpp_2m", "uni_pc": "unipc", "unipc": "unipc"}


def sampler(name: str | None) -> str | None:
    """The engine's sampler for an A1111 sampler name (None: the request's default)."""
    if name is None or name == "":
        return None
    if not isinstance(name, str):
        raise ValueError(f"sampler_name must be a sampler's name, not {name!r}")
    key = name.strip().lower()
    for engine_name, shown in engine.SAMPLER_DISPLAY_NAMES.items():
        if key in (engine_name, shown.lower()):
            return engine_name
    if key in _SAMPLER_ALIASES:
        return _SAMPLER_ALIASES[key]
    raise ValueError(f"unknown sampler {name!r}; available: {', '.join(engine.SAMPLER_DISPLAY_NAMES.values())}")


RESIZE_MODES = {"just resize": "just_resize", "crop and resize": "crop", "resize and fill": "fill",
                "inner fit (scale to fit)": "crop", "outer fit (shrink to fit)": "fill", "envelope (outer fit)": "fill"}
RESIZE_BY_NUMBER = ("just_resize", "crop", "fill")
CONTROL_MODES = {"balanced": "balanced", "my prompt is more important": "prompt",
                 "controlnet is more important": "control"}
CONTROL_BY_NUMBER = ("balanced", "prompt", "control")
HR_OPTIONS = {"both": "both", "low res only": "low", "high res only": "high"}
HR_OPTION_BY_NUMBER = ("both", "low", "high")



def upscaler(name: str | None, warnings: list) -> str:
    """A1111's hr_upscaler as one of the studio's weight-free upscalers: None is A1111's default
    ("Latent"), "None" its plain Lanczos resize; a model-based one (ESRGAN, SwinIR ...) runs as
    Lanczos, with a warning."""
    if name is None:
        return engine.hires.DEFAULT_UPSCALER
    by_key = {n.lower(): n for n in engine.hires.UPSCALERS}
    key = str(name).strip().lower()
    if key in by_key:
        return by_key[key]
    if key in ("none", ""):
        return engine.hires.FALLBACK_UPSCALER
    warnings.append(f"hr_upscaler {name!r} is not in this studio, which has only weight-free upscalers "
                    f"({', '.join(engine.hires.UPSCALERS)}); the hires fix used {engine.hires.FALLBACK_UPSCALER}")
    return engine.hires.FALLBACK_UPSCALER


def choice(field_name: str, value, names: dict, by_number: tuple):
    """A name (any case) or its number (0/1/2), as the extension accepts both."""
    if isinstance(value, bool):
        pass
    elif isinstance(value, int) and 0 <= value < len(by_number):
        return by_number[value]
    elif isinstance(value, str):
        key = value.strip().lower()
        if key in names:
            return names[key]
        if key.isdigit() and int(key) < len(by_number):
            return by_number[int(key)]
    shown = sorted({k.title() if k != "controlnet is more important" else "ControlNet is more important" for k in names})
    raise ValueError(f"{field_name} {value!r} is not one of: {', '.join(shown)} (or 0-{len(by_number) - 1})")
