"""`python3 launch.py generate`: the same GenerationRequest as the GUI and the APIs, from a
recipe (JSON file or a studio PNG) or from flags, with flags overriding the recipe."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from .generate import generate
from .hires import HR_OPTIONS, UPSCALERS
from .loading.ipadapters import is_ip_adapter
from .outputs import read_recipe
from .reference import is_reference
from .samplers import SAMPLERS
from .values import MODES, ControlUnit, GenerationRequest, LoraChoice, annotate, default_annotator

_UNIT_KEYS = {"model", "image", "map", "weight", "start", "end", "mode", "resize_mode", "mask", "annotator", "hr_option"}
NO_ANNOTATOR = "none"
_PLACEHOLDER = np.zeros((8, 8, 3), np.uint8)


def _picture(path: str, what: str) -> np.ndarray:
    try:
        with Image.open(path) as im:
            im.load()
            return np.asarray(im)
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read {what} {path!r}: {e}") from None


def parse_control(spec: str, batch: bool = False) -> ControlUnit:
    """`model=demo:scribble,image=sketch.png,weight=0.8,start=0,end=0.6,mode=control,annotator=scribble`.
    `image=` is a picture that an annotator turns into the map: `annotator=` if given, else the
    default one of the model's kind (as the studio does with a sketch); `map=` is a finished map,
    used as it is. The unit of a batch (`batch`) may leave both out: the folder's pictures are
    its images (annotated unless annotator=none)."""
    fields = {}
    for part in spec.split(","):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in _UNIT_KEYS:
            raise ValueError(f"--control part {part!r} is not key=value with key one of {sorted(_UNIT_KEYS)}")
        fields[key] = value.strip()
    if batch and "model" in fields and "image" not in fields and "map" not in fields:
        # the batch folder gives this unit its pictures; a placeholder map stands in until then
        fields["image" if fields.get("annotator", "") != NO_ANNOTATOR else "map"] = None
    if "model" not in fields or ("image" in fields) == ("map" in fields):
        raise ValueError("--control needs model=... and one of image=... (a picture, annotated) "
                         "or map=... (a finished control map)")
    if "map" in fields:
        if fields.get("annotator", NO_ANNOTATOR) != NO_ANNOTATOR:
            raise ValueError("--control map=... is used as it is; give image=... to run an annotator")
        path = fields.pop("map")
        image = _PLACEHOLDER if path is None else _picture(path, "control map")
        fields["annotator"] = None
    else:
        path = fields.pop("image")
        image = _PLACEHOLDER if path is None else _picture(path, "control image")
        # a reference or IP-Adapter unit reads the picture itself (its look, no map of it)
        reads_picture = is_reference(fields["model"]) or is_ip_adapter(fields["model"])
        name = NO_ANNOTATOR if reads_picture else fields.get("annotator") or default_annotator(fields["model"])
        if name == NO_ANNOTATOR:
            fields["annotator"] = None
        else:
            image = image if path is None else annotate(name, image)
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
                        + "),resize_mode=,mask=,annotator=NAME|none,hr_option=(" + "|".join(HR_OPTIONS)
                        + ")]; repeat for several")
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
    hires = p.add_argument_group("hires fix (a second pass at a larger size; A1111's names)")
    hires.add_argument("--enable-hr", action="store_true", default=None)
    hires.add_argument("--hr-scale", type=float)
    hires.add_argument("--hr-resize-x", type=int)
    hires.add_argument("--hr-resize-y", type=int)
    hires.add_argument("--hr-second-pass-steps", type=int, help="0: as many as --steps")
    hires.add_argument("--hr-upscaler", choices=UPSCALERS)
    p.add_argument("--batch-dir", metavar="DIR", help="run once per picture in DIR, each as unit --batch-unit's "
                   "image (engine/batch.py: outputs/batches/<DIR>-<key>/, named after the inputs; a re-run "
                   "skips what is done)")
    p.add_argument("--batch-unit", type=int, default=0, metavar="N",
                   help="which --control (from 0) takes the folder's pictures; its image=/map= may be left out")
    return p


def request_from_args(args) -> GenerationRequest:
    request = GenerationRequest()
    if args.recipe:
        path = Path(args.recipe)
        request = read_recipe(path) if path.suffix.lower() == ".png" else GenerationRequest.from_json(path.read_text())
    changes = {k: getattr(args, k) for k in ("backbone", "prompt", "negative_prompt", "width", "height", "steps",
                                             "cfg_scale", "seed", "sampler", "batch_size", "strength",
                                             "enable_hr", "hr_scale", "hr_resize_x", "hr_resize_y",
                                             "hr_second_pass_steps", "hr_upscaler")
               if getattr(args, k) is not None}
    if args.control:
        changes["units"] = tuple(parse_control(s, batch=args.batch_dir is not None and i == args.batch_unit)
                                 for i, s in enumerate(args.control))
    if args.lora:
        changes["loras"] = tuple(parse_lora(s) for s in args.lora)
    if args.init_image:
        changes["init_image"] = _picture(args.init_image, "init image")
    if args.inpaint_mask:
        changes["inpaint_mask"] = _picture(args.inpaint_mask, "inpaint mask")
    return request.replace(**changes) if changes else request


def _batch(args, request: GenerationRequest) -> int:
    from .batch import run_batch
    result = run_batch(request, args.batch_dir, args.batch_unit,
                       on_step=lambda i, n, _: print(f"step {i}/{n}", file=sys.stderr, flush=True),
                       on_item=lambda item: print(item.line(), file=sys.stderr, flush=True))
    made, skipped = result.count("made"), result.count("skipped")
    print(f"batch: {made} made, {skipped} skipped, {len(result.items) - made - skipped} not made; in {result.folder}",
          file=sys.stderr)
    if request.seed < 0:
        print(f"note: seed -1 drew {result.seed}; a re-run keeps what is made, whatever its seed", file=sys.stderr)
    for item in result.items:
        for path in item.outputs if item.status == "made" else ():
            print(path)
    return 0


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        request = request_from_args(args)
        if args.batch_dir is not None:
            return _batch(args, request)
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
