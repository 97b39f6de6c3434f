"""ControlNet Studio's engine: several ControlNets composed onto a locked Stable Diffusion.

    from engine import ControlUnit, GenerationRequest, generate
    unit = ControlUnit("demo:scribble", scribble_map, weight=1.0, start=0.0, end=0.8)
    result = generate(GenerationRequest(prompt="a red star", units=[unit], seed=1))
    result.images[0].show()

Reference units: a ControlUnit whose model is one of REFERENCE_MODELS ("reference_only",
"reference_adain", "reference_adain+attn") carries its picture's look into the generation with
no weights (A1111's reference modes; engine.reference); its style_fidelity (0..1) balances the CFG halves.
IP-Adapter units: a ControlUnit whose model is an IP-Adapter in models/ipadapters/ (h94's files, .safetensors
or .bin, basic or plus, with their CLIP image encoders in image_encoder*/ folders there; engine.ip_adapter)
reads its picture through the encoder; weight is the IP-Adapter scale, 0 outside [start, end];
installed_ip_adapters() lists them ({"name", "path", "family"}), is_ip_adapter(model) says whether a unit's model
names one (as generate decides it); IP_ADAPTER_MODULES are A1111's module names.
Values: ControlUnit, GenerationRequest (JSON via .to_json()/.from_json(), the recipe),
GenerationResult. Running: generate(request, on_step=None, stop=None); it raises ValueError
for a request that cannot run as asked and GenerationError (e.g. out of memory) for a failed run.
Control models: a unit's model is a ControlNet, a T2I-Adapter or a ControlNet-Union model (SDXL;
ControlUnit.union_control_type picks one of UNION_CONTROL_TYPES, else its annotator's kind does).
LoRAs: GenerationRequest(loras=[LoraChoice(name, weight)]) or A1111's `<lora:name:weight>` in the
prompt, for files in models/loras/ (kohya or diffusers layout); installed_loras() lists them
({"name", "path", "family", "metadata"}); a name not installed is a warning in the result, a bad file a ValueError.
On the GPU's fast path they keep their CUDA graphs across a weight change or a same-rank swap.
Models: load_backbone(source), load_controlnet(source), installed_models(), ModelManager (build_manager(fast=, compile=, offload=) builds one with the
documented CNSTUDIO_FAST/COMPILE/OFFLOAD overrides for options left None), where a
source is "demo", "demo:<kind>", a diffusers folder, a single .safetensors/.ckpt/.pth file, a name
under models/, or a hub id from the local cache (engine.loading); condition_kind(name) is the
condition a control model reads, by its name; model_family(source, role) its family ("sd1", "sd2",
"sdxl", None when a pickle or unknown) read from its config or safetensors header without loading,
family_label(family) its display name ("SDXL"); recommended_settings(source) a backbone's own
defaults (recommended.json; the demo's CFG is 3), recommended_cfg_scale(those) the scale a request
without one runs at (else DEFAULT_CFG_SCALE, 7.5). Pictures: fit_map(map, width, height,
resize_mode) fits a map to a frame as generate does (annotators.fit, by sd-webui-controlnet's map
rules); fidelity_score(kind, image, map, model=None, annotator=None) says how closely a picture
followed a map (a real model's by re-annotating the picture; the demo's by its world's judges;
None: no judge applies). Files: read_recipe(png), encode_png(image, recipe, infotext(request,
seed, width, height)) (a PNG carrying its recipe, as saved), models_dir(), outputs_dir(),
short_hash(source, role) (A1111's 8-digit model hash). Names: SAMPLERS, SAMPLER_DISPLAY_NAMES
(A1111's), MODES, RESIZE_MODES, HR_OPTIONS (ControlMode, ResizeMode and HiresOption give AUTOMATIC1111's
display name of each as its value), UPSCALERS (the hires fix's: A1111's "Latent" modes, Lanczos,
Nearest; GenerationRequest(enable_hr=True, hr_scale=2, ...) runs it, engine.hires); the bounds every request is checked against live in engine.limits.
Batch over a folder: run_batch(request, folder, unit_index) runs the request once per picture as
that unit's map, outputs named after the inputs in batch_folder(request, unit_index, folder), a
re-run skipping what is made (engine.batch).
"""
from annotators.image import RESIZE_MODES, ResizeMode
from annotators.image import fit as fit_map

from . import limits, loading, loras
from .batch import batch_folder, run_batch
from .fidelity import score as fidelity_score
from .generate import GenerationError, generate
from .hashes import short_hash
from .hires import HR_OPTIONS, UPSCALERS, HiresOption
from .ip_adapter import IP_ADAPTER_MODULES, is_ip_adapter
from .loading import condition_kind, family_label, model_family, models_dir, outputs_dir, recommended_settings
from .manager import ModelManager, build_manager, default_manager
from .outputs import encode_png, infotext, read_recipe
from .reference import DEFAULT_STYLE_FIDELITY, REFERENCE_MODELS
from .samplers import SAMPLER_DISPLAY_NAMES, SAMPLERS
from .union import UNION_CONTROL_TYPES
from .values import (DEFAULT_CFG_SCALE, MODES, ControlMode, ControlUnit, GenerationRequest, GenerationResult,
                     LoraChoice, recommended_cfg_scale)


def load_backbone(source: str):
    """Load (or reuse) a backbone through the shared model manager."""
    return default_manager().backbone(source)


def load_controlnet(source: str):
    """Load (or reuse) a control model through the shared model manager."""
    return default_manager().controlnet(source)


def installed_models() -> dict:
    """Sources a user can pick: {"backbones": [...], "controlnets": [...], "loras": [...], "ipadapters": [...]}."""
    from .loading.ipadapters import installed_ip_adapters as ip_adapters
    return {**loading.list_installed(), "loras": list(loras.installed_loras()), "ipadapters": list(ip_adapters())}


def installed_ip_adapters() -> list[dict]:
    """The IP-Adapters in models/ipadapters/: [{"name", "path", "family"}], sorted by name."""
    from .loading.ipadapters import describe
    return describe()


def installed_loras() -> list[dict]:
    """The LoRAs in models/loras/: [{"name", "path", "family", "metadata"}], sorted by name."""
    return loras.describe()


__all__ = [
    "ControlUnit", "GenerationRequest", "LoraChoice", "installed_loras", "installed_ip_adapters", "is_ip_adapter", "IP_ADAPTER_MODULES", "GenerationResult", "GenerationError", "generate",
    "load_backbone", "load_controlnet", "installed_models", "ModelManager", "build_manager", "default_manager",
    "condition_kind", "recommended_settings", "recommended_cfg_scale", "DEFAULT_CFG_SCALE",
    "fit_map", "fidelity_score", "read_recipe", "encode_png", "infotext", "short_hash", "models_dir",
    "outputs_dir", "SAMPLERS", "SAMPLER_DISPLAY_NAMES", "MODES", "RESIZE_MODES", "ControlMode", "ResizeMode",
    "limits", "model_family", "family_label", "UNION_CONTROL_TYPES", "REFERENCE_MODELS", "DEFAULT_STYLE_FIDELITY",
    "UPSCALERS", "HR_OPTIONS", "HiresOption", "run_batch", "batch_folder",
]
