"""`python3 launch.py generate`: the same GenerationRequest as the GUI and the APIs, from a
recipe (JSON file or a studio PNG) or from flags, with flags overriding the recipe."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from .generate import generate
from .outputs import read_recipe
from .samplers import SAMPLERS
from .values import MODES, ControlUnit, GenerationRequest, LoraChoice, annotate, default_annotator

_UNIT_KEYS = {"model", "image", "map", "weight", "start", "end", "mode", "resize_mode", "mask", "annotator"}
NO_ANNOTATOR = "none"


def _picture(path: str, what: str) -> np.ndarray:
    try:
        with Image.open(path) as im:
            im.load()
            return np.asarray(im)
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read {what} {path!r}: {e}") from None


def parse_control(spec: str) -> ControlUnit:
    """`model=demo:scribble,image=sketch.png,weight=0.8,start=0,end=0.6,mode=control,annotator=scribble`.
    `image=` is a picture that an annotator turns into the map: `annotator=` if given, else the
    default one of the model's kind (as the studio does with a sketch); `map=` is a finished map,
    used as it is."""
    fields = {}
    for part in spec.split(","):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in _UNIT_KEYS:
            raise ValueError(f"--control part {part!r} is not key=value with key one of {sorted(_UNIT_KEYS)}")
        fields[key] = value.strip()
    if "model" not in fields or ("image" in fields) == ("map" in fields):
        raise ValueError("--control needs model=... and one of image=... (a picture, annotated) "
                         "or map=... (a finished control map)")
    if "map" in fields:
        if fields.get("annotator", NO_ANNOTATOR) != NO_ANNOTATOR:
            raise ValueError("--control map=... is used as it is; give image=... to run an annotator")
        image = _picture(fields.pop("map"), "control map")
        fields["annotator"] = None
    else:
        image = _picture(fields.pop("image"), "control image")
        name = fields.get("annotator") or default_annotator(fields["model"])
        if name == NO_ANNOTATOR:
            fields["annotator"] = None
        else:
            image = annotate(name, image)
            fields["annotator"] = name
    if "mask" in fields:
        fields["mask"] = _picture(fields["mask"], "mask")
    for key in ("weight", "start", "end"):
        if key in fields:
            try:
                fields[key] = float(fields[key])
            except ValueError:
                raise ValueError(f"--control {key} must be a number, not {fields[key]!r}") from None
    return ControlUnit(image=image, **fields)


def parse_lora(spec: str) -> LoraChoice:
    """`name` or `name:weight`."""
    name, _, weight = spec.rpartition(":") if ":" in spec else (spec, "", "1")
    try:
        return LoraChoice(name, float(weight))
    except ValueError as e:
        raise ValueError(f"--lora {spec!r}: {e}; write it as name or name:weight, e.g. --lora ink_style:0.8") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="launch.py generate", description=__doc__)
    p.add_argument("--recipe", help="a recipe .json or a PNG made by the studio")
    p.add_argument("--backbone")
    p.add_argument("--prompt")
    p.add_argument("--negative-prompt")
    p.add_argument("--control", action="append", default=[], metavar="SPEC",
                   help="a control unit: model=...,image=PICTURE (run through annotator=, by default the model kind's) "
                        "or map=MAP (a finished map)[,weight=,start=,end=,mode=(" + "|".join(MODES)
                        + "),resize_mode=,mask=,annotator=NAME|none]; repeat for several")
    p.add_argument("--lora", action="append", default=[], metavar="NAME[:WEIGHT]",
                   help="a LoRA from models/loras/ and its weight (default 1); repeat for several; "
                        "<lora:name:weight> in --prompt works too")
    p.add_argument("--width", type=int)
    p.add_argument("--height", type=int)
    p.add_argument("--steps", type=int)
    p.add_argument("--cfg-scale", type=float, help="default: the backbone's recommended scale (the demo's: 3), else 7.5")
    p.add_argument("--seed", type=int)
    p.add_argument("--sampler", choices=SAMPLERS)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--init-image")
    p.add_argument("--strength", type=float)
    p.add_argument("--inpaint-mask")
    return p


def request_from_args(args) -> GenerationRequest:
    request = GenerationRequest()
    if args.recipe:
        path = Path(args.recipe)
        request = read_recipe(path) if path.suffix.lower() == ".png" else GenerationRequest.from_json(path.read_text())
    changes = {k: getattr(args, k) for k in ("backbone", "prompt", "negative_prompt", "width", "height", "steps",
                                             "cfg_scale", "seed", "sampler", "batch_size", "strength")
               if getattr(args, k) is not None}
    if args.control:
        changes["units"] = tuple(parse_control(s) for s in args.control)
    if args.lora:
        changes["loras"] = tuple(parse_lora(s) for s in args.lora)
    if args.init_image:
        changes["init_image"] = _picture(args.init_image, "init image")
    if args.inpaint_mask:
        changes["inpaint_mask"] = _picture(args.inpaint_mask, "inpaint mask")
    return request.replace(**changes) if changes else request


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        request = request_from_args(args)
        result = generate(request, on_step=lambda i, n, _: print(f"step {i}/{n}", file=sys.stderr, flush=True))
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if result.ignored_words:
        print(f"note: the model does not know these words: {', '.join(result.ignored_words)}", file=sys.stderr)
    for path in result.paths:
        print(path)
    return 0
