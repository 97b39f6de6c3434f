"""How often a reference unit carries its picture's colour into the demo's picture (issue 25):
`launch.py study reference --seeds 20 --out runs/reference`.

The reference is one coloured square on a white background, rendered by the world; the prompt
names a shape and no colour ("a square"), or another colour ("a <other> square"). The world's
colour judge reads the main object's colour in each picture; the rate is the share of seeds
where it is the reference's, for each reference mode and setting, against the same seeds with
no unit. Seeds run in batches of ten (the engine's batches equal single runs seed by seed).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine import REFERENCE_MODELS, ControlUnit, GenerationRequest, ModelManager, generate

from . import draw, judges as world_judges, world

COLOURS = ("red", "green", "blue", "yellow")
SHAPE = "square"
BATCH = 10
# (row name, model, weight, style fidelity, control mode); None: no unit
SETTINGS = (
    ("no unit", None, 0.0, 0.5, "balanced"),
    *((f"{m}, balanced (fidelity 0.5)", m, 1.0, 0.5, "balanced") for m in REFERENCE_MODELS),
    *((f"{m}, ControlNet is more important", m, 1.0, 0.5, "control") for m in REFERENCE_MODELS),
)
# with a prompt that names another colour: no unit and each mode at its strongest setting
OTHER_SETTINGS = (SETTINGS[0], *SETTINGS[4:])


def reference_picture(colour: str, size: int = 128) -> np.ndarray:
    return draw.image(world.single_shape_scene(7, SHAPE, colour, "white", size="large"), size)


def other_colour(colour: str) -> str:
    return COLOURS[(COLOURS.index(colour) + 3) % len(COLOURS)]


@dataclass(frozen=True)
class Study:
    seeds: int = 20
    steps: int = 10
    colours: tuple = COLOURS
    settings: tuple = SETTINGS
    other_settings: tuple = OTHER_SETTINGS
    prompts: tuple = ("none", "other")    # the prompt names no colour / another colour


def rates(study: Study, manager: ModelManager | None = None, judge=None, progress=None) -> dict:
    """{prompt kind: {setting: {"reference": rate, "prompt": rate}}} over the study's colours:
    the share of pictures whose main object the judge calls the reference's colour (and, for
    the other-colour prompt, the prompt's colour)."""
    manager = manager or ModelManager(device="cpu")
    judge = judge or world_judges.fit(range(600))
    out: dict = {}
    for kind in study.prompts:
        rows = out.setdefault(kind, {})
        for name, model, weight, fidelity, mode in (study.settings if kind == "none" else study.other_settings):
            hits_ref = hits_prompt = total = 0
            for colour in study.colours:
                prompt = f"a {SHAPE}" if kind == "none" else f"a {other_colour(colour)} {SHAPE}"
                units = () if model is None else (ControlUnit(model, reference_picture(colour), weight=weight,
                                                              style_fidelity=fidelity, mode=mode),)
                seen = []
                for first in range(0, study.seeds, BATCH):
                    result = generate(GenerationRequest(
                        backbone="demo", prompt=prompt, units=units, seed=1000 + first, steps=study.steps,
                        batch_size=min(BATCH, study.seeds - first)), save=False, manager=manager)
                    seen += [judge.colour(np.asarray(im)) for im in result.images]
                hits_ref += sum(c == colour for c in seen)
                hits_prompt += sum(c == other_colour(colour) for c in seen) if kind == "other" else 0
                total += len(seen)
            if progress:
                progress(f"{kind} | {name}: {hits_ref}/{total} reference colour")
            rows[name] = {"reference": hits_ref / total, **({"prompt": hits_prompt / total} if kind == "other" else {})}
    return out


def table(result: dict, study: Study) -> str:
    """The Markdown table models/demo/README.md shows."""
    lines = [f"| setting | prompt names no colour: reference colour | names another: reference colour | "
             f"names another: the prompt's colour |", "|---|---|---|---|"]
    for name, *_ in study.settings:
        if name not in result.get("none", {}) and name not in result.get("other", {}):
            continue
        none = result.get("none", {}).get(name, {})
        other = result.get("other", {}).get(name, {})
        cell = lambda d, k: f"{d[k]:.0%}" if k in d else "-"   # noqa: E731
        lines.append(f"| {name} | {cell(none, 'reference')} | {cell(other, 'reference')} | {cell(other, 'prompt')} |")
    return "\n".join(lines)


def main(out: str, seeds: int = 20, steps: int = 10) -> dict:
    study = Study(seeds=seeds, steps=steps)
    started = time.perf_counter()
    result = rates(study, progress=print)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    record = {"seeds_per_colour": seeds, "steps": steps, "colours": list(study.colours), "rates": result,
              "seconds": round(time.perf_counter() - started, 1)}
    (folder / "reference.json").write_text(json.dumps(record, indent=2))
    (folder / "reference.md").write_text(table(result, study) + "\n")
    print(table(result, study))
    return record
