"""What the studio can offer right now: installed models, annotators, condition kinds, the
backbone's vocabulary, the fidelity judge. Each asks the engine or the annotators, and reads a
part that is missing or failing as "nothing of that", so the page always builds."""
from __future__ import annotations

import logging

import annotators
import demo  # noqa: F401  (registers the demo world's fidelity judges)
import engine

log = logging.getLogger("ui")

NO_ANNOTATOR = "none"          # the source picture is the map, used as it is
DEMO_BACKBONE = "demo"

_manager = None                # the studio's model manager (ui.app builds it from the flags)


def use_manager(manager) -> None:
    """Serve every generation and backbone look-up from `manager`."""
    global _manager
    _manager = manager


def manager():
    """The studio's model manager, else the engine's default one."""
    return _manager if _manager is not None else engine.default_manager()


def models() -> dict[str, list[str]]:
    """{"backbones": [...], "controlnets": [...]}: what a user can pick, the demo's first."""
    try:
        found = engine.installed_models()
    except (OSError, ValueError) as e:
        log.warning("cannot list installed models: %s", e)
        found = {}
    return {"backbones": list(found.get("backbones", [])), "controlnets": list(found.get("controlnets", []))}


def loras() -> list[dict]:
    """[{"name", "path", "family", "metadata"}] of models/loras/; an unreadable folder lists none."""
    try:
        return engine.installed_loras()
    except OSError as e:
        log.warning("cannot list LoRAs: %s", e)
        return []


def ip_adapters() -> list[dict]:
    """[{"name", "path", "family"}] of models/ipadapters/; an unreadable folder lists none."""
    try:
        return engine.installed_ip_adapters()
    except OSError as e:
        log.warning("cannot list IP-Adapters: %s", e)
        return []


def family(source: str | None, role: str = "backbone") -> str | None:
    """A model's family ("sd1", "sd2", "sdxl"), read from its config or file header without
    loading it; None when it cannot be told (a pickle, the demo's own world)."""
    return engine.model_family(source, role) if source else None


def backbone_choices(backbones: list[str]) -> list[tuple[str, str]]:
    """(label, source) pairs for the backbone picker: each model's family beside its name (the
    demo is its own world and keeps its plain name)."""
    out = []
    for name in backbones:
        fam = None if name == DEMO_BACKBONE else family(name)
        out.append((f"{name} ({engine.family_label(fam)})" if fam else name, name))
    return out


def controlnets_for(backbone: str | None, controlnets: list[str]) -> list[str]:
    """The control models that fit the backbone's family: those of its family, and those whose
    family cannot be told here (loading still checks them); the demo's only for the demo."""
    fam = family(backbone)
    if backbone == DEMO_BACKBONE:
        return [c for c in controlnets if c.startswith("demo:")] or list(controlnets)
    fitting = [c for c in controlnets if not c.startswith("demo:")]
    return [c for c in fitting if fam is None or family(c, "controlnet") in (None, fam)]


def ip_adapters_for(backbone: str | None) -> list[str]:
    """The installed IP-Adapters that fit the backbone's family (and those whose family cannot be
    told without loading, a .bin; loading still checks); the demo's world has none of its own."""
    fam = None if backbone in (None, DEMO_BACKBONE) else family(backbone)
    return [a["name"] for a in ip_adapters() if fam is None or a["family"] in (None, fam)]


def is_ip_adapter(model: str | None) -> bool:
    """Whether a unit's model names an installed IP-Adapter, by the engine's own rule (an unreadable
    folder holds none, as ip_adapters() lists none)."""
    try:
        return engine.is_ip_adapter(model)
    except OSError:
        return False


def with_references(controlnets: list[str], backbone: str | None = None) -> list[str]:
    """A unit's model choices: the control models given, the IP-Adapters of models/ipadapters/ that
    fit the backbone (all of them when no backbone is named), then the weight-free reference
    modes (A1111's reference_only / reference_adain / reference_adain+attn), which fit every family."""
    from engine import REFERENCE_MODELS
    adapters = [a for a in ip_adapters_for(backbone) if a not in controlnets]
    return [*controlnets, *adapters, *(r for r in REFERENCE_MODELS if r not in controlnets)]


def default_backbone(backbones: list[str]) -> str:
    if DEMO_BACKBONE in backbones or not backbones:
        return DEMO_BACKBONE
    return backbones[0]


_current_backbone: str | None = None


def current_backbone() -> str:
    """The backbone a request without one runs on: A1111's `sd_model_checkpoint` option, which the
    REST API's /options and the GUI's picker both set; the default backbone until either does."""
    return _current_backbone or default_backbone(models()["backbones"])


def set_current_backbone(source: str) -> None:
    global _current_backbone
    _current_backbone = source


def condition_kind(model: str | None) -> str | None:
    """The condition a control model reads, from its name (engine.condition_kind's rule)."""
    return engine.condition_kind(model) if model else None


def controlnet_for(kind: str | None, controlnets: list[str], current: str | None = None) -> str | None:
    """The control model to preselect for a map of `kind`: the current one if it reads that kind,
    else the demo's, else any installed one that does; the current one when none does."""
    if kind is None:
        return current
    if current and condition_kind(current) == kind:
        return current
    if f"demo:{kind}" in controlnets:
        return f"demo:{kind}"
    for name in controlnets:
        if condition_kind(name) == kind:
            return name
    return current


def annotator_names() -> list[str]:
    return list(annotators.names())


def annotator_choices() -> list[tuple[str, str]]:
    """(label, name) of every annotator for a dropdown: each marked as ready here or as needing
    weights, with the files' names (annotators.availability), before anyone picks it."""
    try:
        found = annotators.availability()
    except (OSError, ValueError) as e:   # a broken weights folder must not stop the page building
        log.warning("cannot tell which annotators are ready: %s", e)
        return [(n, n) for n in annotator_names()]
    return [(found[n]["label"], n) for n in annotator_names()]


def annotator_spec(name: str | None) -> dict | None:
    """annotators.spec(name), or None for "use as is"."""
    if not name or name == NO_ANNOTATOR:
        return None
    return annotators.spec(name)


def annotator_kind(name: str | None) -> str | None:
    spec = annotator_spec(name)
    return None if spec is None else spec.get("kind")


def annotator_for(kind: str | None, current: str | None = None) -> str | None:
    """An annotator making maps of `kind`: the current one if it does, else annotators.default_for
    (the one named like the kind, else the first that does; None when none does)."""
    if kind is None:
        return current
    if annotator_kind(current) == kind:
        return current
    return annotators.default_for(kind)


def recommended_cfg(backbone: str | None) -> float:
    """The CFG scale a backbone recommends for itself (the demo: 3), else the usual 7.5; read
    from its folder without loading it, so picking a backbone sets the slider at once."""
    try:
        return engine.recommended_cfg_scale(engine.recommended_settings(backbone)) if backbone \
            else engine.DEFAULT_CFG_SCALE
    except (OSError, ValueError) as e:
        log.info("no recommended settings for %s: %s", backbone, e)
        return engine.DEFAULT_CFG_SCALE


def known_words(backbone: str) -> list[str] | None:
    """The words a small-vocabulary backbone (the demo) can read, or None for a full vocabulary
    or one that cannot be read. Loads the backbone (which the first generation needs anyway)."""
    try:
        vocab = manager().backbone(backbone).tokenizer.get_vocab()
    except (OSError, ValueError) as e:
        log.info("no vocabulary for %s: %s", backbone, e)
        return None
    if len(vocab) > 5000:
        return None
    words = sorted({t[:-4] for t in vocab if t.endswith("</w>") and t[:-4].isalpha() and len(t) > 5})
    return words or None


def fidelity(model: str, image, control_map, annotator: str | None = None,
             annotator_params: dict | None = None) -> float | None:
    """How well `image` followed `control_map` for the control model `model` (whose map
    `annotator` made, if any), from engine.fidelity_score; None where there is no judge (unknown
    kind, no annotator to judge a real model with, or a picture it cannot read)."""
    kind = condition_kind(model)
    if kind is None:
        return None
    try:
        return engine.fidelity_score(kind, image, control_map, model=model, annotator=annotator,
                                     annotator_params=annotator_params)
    except ValueError as e:
        log.warning("fidelity of %s not measured: %s", model, e)
        return None
