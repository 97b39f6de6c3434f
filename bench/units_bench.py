"""What a T2I-Adapter, a ControlNet-Union unit and a reference unit cost (issues 24, 25), at
SDXL size, on the GPU: `python3 bench/units_bench.py [--runs 2] [--out DIR]`.

These units run eagerly (the fast path's CUDA graphs hold ControlNet units only; a step with one
of them is served kernel by kernel: GraphedPredictor.eager_calls counts them). The bench says
what that costs against the engine's 0-unit image on the fast path and eagerly, and against
diffusers' own pipelines as shipped where one exists (StableDiffusionXLAdapterPipeline,
StableDiffusionXLControlNetUnionPipeline; diffusers ships no reference-only pipeline), on the
same weights, in one process: SDXL 1.0's architecture from engine/configs/sdxl-base with random
weights (as sdxl_bench.py builds them), the adapter from engine/configs/t2i-adapter-sdxl, the Union
model from the UNet (ControlNetUnionModel.from_unet), fp16, 1024x1024, 20 UniPC steps, CFG 7.5.

--tiny runs the same code on the tiny test models at 64x64 on the CPU: the check that the bench
works (its timings mean nothing). Writes units.json (units-tiny.json) under --out and a table.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import diffusers  # noqa: E402
from diffusers import (ControlNetUnionModel, StableDiffusionXLAdapterPipeline,  # noqa: E402
                       StableDiffusionXLControlNetUnionPipeline, T2IAdapter, UniPCMultistepScheduler)
from PIL import Image  # noqa: E402

import sdxl_bench  # noqa: E402
from sdxl_bench import PROMPT, SCALE, STEPS, build, maps, timed  # noqa: E402
from engine import ControlUnit  # noqa: E402
from engine.loading.paths import CONFIGS_DIR  # noqa: E402

UNION_TYPE = "Hard Edge"          # index 3 of the Union model's types
# (case, units as (model, map index, extra unit fields)); "union" and "adapter" name the models below
CASES = [
    ("0 units", []),
    ("1 SDXL adapter", [("adapter", 0, {})]),
    ("1 Union unit", [("union", 0, {"union_control_type": UNION_TYPE})]),
    ("2 Union units", [("union", 0, {"union_control_type": UNION_TYPE}),
                       ("union", 1, {"union_control_type": "Depth"})]),
    ("adapter + ControlNet", [("adapter", 0, {}), ("xl0", 1, {})]),
    ("reference_only", [("reference_only", 2, {})]),
    ("reference_adain+attn", [("reference_adain+attn", 2, {})]),
]


def models(parts, tiny: bool) -> dict:
    torch.manual_seed(1)
    if tiny:
        from tests.tiny_models import tiny_adapter, tiny_union
        adapter, union = tiny_adapter(xl=True), tiny_union(parts["unet"].float())
    else:
        adapter = T2IAdapter.from_config(T2IAdapter.load_config(CONFIGS_DIR / "t2i-adapter-sdxl"))
        union = ControlNetUnionModel.from_unet(parts["unet"])
        g = torch.Generator().manual_seed(7)
        with torch.no_grad():   # zero convolutions randomised, so the residuals' compute is real
            for p in list(union.controlnet_down_blocks.parameters()) + list(union.controlnet_mid_block.parameters()):
                p.copy_(torch.randn(p.shape, generator=g) * 0.01)
    unet = parts["unet"]
    return {"adapter": adapter.to(unet.device, unet.dtype).eval().requires_grad_(False),
            "union": union.to(unet.device, unet.dtype).eval().requires_grad_(False)}


def pictures(size: int) -> list[np.ndarray]:
    edges = maps(2, size)
    rng = np.random.default_rng(3)
    photo = np.kron(rng.integers(0, 256, (8, 8, 3)), np.ones((size // 8, size // 8, 1))).astype(np.uint8)
    return edges + [photo]


def engine_runner(parts, extra, case_units, size, steps, fast: bool):
    pics = pictures(size)
    units = [ControlUnit(model, pics[i], **kw) for model, i, kw in case_units]
    return sdxl_bench.engine_runner(parts, 0, size, steps, fast, units=units, extra=extra)


def diffusers_runner(parts, extra, case, size, steps):
    kw = dict(vae=sdxl_bench._pipeline_vae(parts), text_encoder=parts["text_encoder"],
              text_encoder_2=parts["text_encoder_2"], tokenizer=parts["tokenizer"], tokenizer_2=parts["tokenizer_2"],
              unet=parts["unet"], scheduler=UniPCMultistepScheduler.from_config(parts["scheduler_config"]))
    pics = [Image.fromarray(p) for p in pictures(size)]
    if case == "1 SDXL adapter":
        pipe, args = StableDiffusionXLAdapterPipeline(**kw, adapter=extra["adapter"]), {"image": pics[0]}
    elif case == "1 Union unit":
        pipe = StableDiffusionXLControlNetUnionPipeline(**kw, controlnet=extra["union"], add_watermarker=False)
        args = {"control_image": [pics[0]], "control_mode": [3]}
    else:
        return None
    pipe.set_progress_bar_config(disable=True)

    def run(clock=None):
        if not clock:
            step = {}
        elif isinstance(pipe, StableDiffusionXLAdapterPipeline):   # its older callback protocol
            step = {"callback": lambda i, t, latents: clock.mark(), "callback_steps": 1}
        else:
            step = {"callback_on_step_end": lambda p, i, t, kw_: (clock.mark(), kw_)[1]}
        return pipe(PROMPT, negative_prompt="", num_inference_steps=steps, guidance_scale=SCALE, height=size,
                    width=size, generator=torch.Generator("cpu").manual_seed(0), output_type="np", **step,
                    **args).images
    return run


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--cases", default="", help="comma-separated case names (default: all)")
    ap.add_argument("--out", default=str(ROOT / "bench"))
    args = ap.parse_args(argv)
    cuda = torch.cuda.is_available() and not args.tiny
    device, dtype = ("cuda", torch.float16) if cuda else ("cpu", torch.float32)
    size, steps, runs = (64, 2, 1) if args.tiny else (1024, STEPS, args.runs)
    parts = build(device, dtype, args.tiny, n_controlnets=1)
    extra = models(parts, args.tiny)
    results = {"device": torch.cuda.get_device_name() if cuda else "cpu", "torch": torch.__version__,
               "diffusers": diffusers.__version__, "date": time.strftime("%Y-%m-%d"), "size": size, "steps": steps,
               "tiny": args.tiny, "cases": {}}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, case_units in CASES:
        if args.cases and name not in args.cases.split(","):
            continue
        row = {}
        # with one of these units the fast path serves its steps eagerly, so its own eager
        # figure would time the same code again: only the 0-unit image gets both
        if not cuda or not case_units:
            row["engine_eager"] = timed(engine_runner(parts, extra, case_units, size, steps, fast=False), runs)
        if cuda:
            fast = engine_runner(parts, extra, case_units, size, steps, fast=True)
            row["engine_fast"] = timed(fast, runs)
            row["engine_fast"]["eager_calls"] = fast.manager.predictor.eager_calls
            row["engine_fast"]["captures"] = fast.manager.predictor.captures
        theirs = diffusers_runner(parts, extra, name, size, steps)
        if theirs is not None:
            row["diffusers"] = timed(theirs, runs)
        results["cases"][name] = row
        print(name, json.dumps(row), flush=True)
        (out / ("units-tiny.json" if args.tiny else "units.json")).write_text(json.dumps(results, indent=2))
        if cuda:
            torch.cuda.empty_cache()
    print(table(results))
    return results


def table(results) -> str:
    base = results["cases"].get("0 units", {})
    base_s = base.get("engine_fast", base.get("engine_eager", {})).get("s_per_image", float("nan"))
    lines = ["| case | engine (fast path on) s/img (it/s) | engine eager | diffusers as shipped | vs diffusers | "
             "cost over 0 units (fast) |", "|" + "---|" * 6]
    for name, row in results["cases"].items():
        f = row.get("engine_fast", row.get("engine_eager"))
        e = row.get("engine_eager", f)
        d = row.get("diffusers")
        ratio = f"{d['s_per_image'] / f['s_per_image']:.2f}x" if d else "no pipeline"
        lines.append(f"| {name} | {f['s_per_image']:.3f} ({f['it_s']:.1f}) | {e['s_per_image']:.3f} | "
                     + (f"{d['s_per_image']:.3f} ({d['it_s']:.1f})" if d else "-")
                     + f" | {ratio} | {f['s_per_image'] - base_s:+.3f} s |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
