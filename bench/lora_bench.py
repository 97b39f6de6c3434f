"""The LoRA benchmark (issue 27): what LoRAs cost on this engine's eager and fast paths, against
diffusers' own pipeline with the LoRA loaded as shipped (`load_lora_weights` + `set_adapters`),
in one process, on the same weights.

SD1.5 at 512x512 and SDXL at 1024x1024 (architectures from engine/configs, random weights, as
bench/bench.py and bench/sdxl_bench.py build them), fp16, 20 UniPC steps, CFG 7.5. The LoRAs are
random rank-32 kohya files on every Linear layer of the UNet's transformer blocks and of the text
encoders' layers (alpha 16), as sd-scripts writes them. Timed:
- one image: no LoRA (fast path), one LoRA eager (the way before issue 27's fast path: the LoRA
  in the UNet, no graphs), one LoRA fast (a LoRA view with slots), diffusers with the LoRA;
- a weight change and a same-rank swap on the fast path: the first image after it, and the
  steady state after it (their difference is what the change costs);
- applying and removing 1 and 3 LoRAs alone (`engine.loras.applied`, no image): eager (into the
  UNet and out again); fast: a new layout (the view built), a swap (slots refilled), a weight
  change (a multiply into the scales).
Writes lora-results.json under --out and prints a table. --tiny: tests/tiny_models' models at
64x64, 2 steps, on the CPU when there is no GPU (the fast path's views then run eagerly): the
check that the bench itself works.

    python3 bench/lora_bench.py [--runs 2] [--families sd15,sdxl] [--out bench] [--tiny] [--compile]

With --compile the fast path compiles in the background as the studio's does (the steady times
then are the compiled graphs'; the captures and compile seconds are in the JSON): a weight change
or a swap must add neither.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import diffusers  # noqa: E402
from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline, UniPCMultistepScheduler  # noqa: E402

from engine import GenerationRequest, loras  # noqa: E402
from engine.denoise import predict_noise  # noqa: E402
from engine.generate import render  # noqa: E402
from engine.manager import ModelManager  # noqa: E402
from engine.models import Backbone  # noqa: E402
from engine.values import LoraChoice  # noqa: E402
from tests.engine.lora_files import save_kohya  # noqa: E402

PROMPT, SCALE = "a photograph of an astronaut riding a horse", 7.5
RANK, ALPHA = 32, 16.0
NAMES = ("style_a", "style_b", "style_c")


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _seconds(fn) -> float:
    _sync()
    t0 = time.perf_counter()
    fn()
    _sync()
    return time.perf_counter() - t0


def _steady(fn, runs: int) -> float:
    return statistics.median(_seconds(fn) for _ in range(runs))


def build(family: str, device, dtype, tiny: bool) -> dict:
    """The backbone's parts, as the other benches build them (no ControlNets)."""
    if family == "sdxl":
        from sdxl_bench import build as build_xl     # bench/ is the script's own folder on sys.path
        parts = build_xl(device, dtype, tiny, n_controlnets=0)
    elif tiny:
        from tests.tiny_models import tiny_backbone_parts
        parts = tiny_backbone_parts(0)
        for name in ("unet", "vae", "text_encoder"):
            parts[name].to(device=device, dtype=dtype)
    else:
        from bench import build as build_sd
        unet, vae, te, tok, _, sched = build_sd(device, dtype, n_controlnets=0)
        parts = {"unet": unet, "vae": vae, "text_encoder": te, "tokenizer": tok, "scheduler_config": sched}
    if device.type == "cuda":
        from engine.fast import prepare_module
        prepare_module(parts["unet"])
    return parts


def make_lora(parts: dict, seed: int, encoders, rank: int) -> dict:
    """{(component, module): (down, up, alpha)} on every Linear of the UNet's transformer blocks
    and the text encoders' layers (sd-scripts' default targets), fp16, small enough to stay finite."""
    g = torch.Generator().manual_seed(seed)
    layers = {}
    for component in ("unet", *encoders):
        for name, module in parts[component].named_modules():
            inside = ".attentions." in name if component == "unet" else ".layers." in name
            if isinstance(module, torch.nn.Linear) and inside:
                out_f, in_f = module.weight.shape
                down = torch.randn(rank, in_f, generator=g) * (0.3 / in_f ** 0.5)
                up = torch.randn(out_f, rank, generator=g) * (1.2 / rank ** 0.5)
                layers[(component, name)] = (down.half(), up.half(), ALPHA)
    return layers


def _pipeline(family: str, parts: dict):
    kw = dict(vae=parts["vae"], text_encoder=parts["text_encoder"], tokenizer=parts["tokenizer"], unet=parts["unet"],
              scheduler=UniPCMultistepScheduler.from_config(parts["scheduler_config"]))
    if family == "sdxl":
        from sdxl_bench import _pipeline_vae
        kw["vae"] = _pipeline_vae(parts)
        pipe = StableDiffusionXLPipeline(**kw, text_encoder_2=parts["text_encoder_2"],
                                         tokenizer_2=parts["tokenizer_2"], add_watermarker=False)
    else:
        pipe = StableDiffusionPipeline(**kw, safety_checker=None, feature_extractor=None,
                                       requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _diffusers(family: str, parts: dict, path: Path, size: int, steps: int, runs: int) -> dict:
    out = {}
    pipe = _pipeline(family, parts)
    t = time.perf_counter()
    pipe.load_lora_weights(str(path), adapter_name="a")
    pipe.set_adapters(["a"], [0.8])
    _sync()
    out["diffusers load_lora_weights"] = time.perf_counter() - t

    def reference():
        return pipe(PROMPT, num_inference_steps=steps, guidance_scale=SCALE, height=size, width=size,
                    generator=torch.Generator("cpu").manual_seed(1), output_type="np").images
    first = _seconds(reference)
    out["1 LoRA, diffusers"] = {"first_s": first, "s_per_image": _steady(reference, runs)}
    out["diffusers set_adapters (weight change)"] = _seconds(lambda: pipe.set_adapters(["a"], [0.5]))
    pipe.unload_lora_weights()
    return out


def bench_family(family: str, device, dtype, tiny: bool, runs: int, folder: Path, compile: bool = False) -> dict:
    size, steps = (64, 2) if tiny else ((1024, 20) if family == "sdxl" else (512, 20))
    rank = 4 if tiny else RANK
    t0 = time.perf_counter()
    parts = build(family, device, dtype, tiny)
    encoders = ("text_encoder", "text_encoder_2") if family == "sdxl" else ("text_encoder",)
    for i, name in enumerate(NAMES):
        save_kohya(make_lora(parts, 40 + i, encoders, rank), folder / f"{family}_{name}.safetensors",
                   sdxl=family == "sdxl")
    out = {"size": size, "steps": steps, "rank": rank, "build_s": time.perf_counter() - t0}
    cuda = device.type == "cuda"
    if cuda:
        from engine.fast import GraphedPredictor
        predictor = GraphedPredictor(compile=compile)
    else:
        predictor = predict_noise       # no graphs on the CPU: the views still run (eagerly)
    fast = ModelManager(device=device, dtype=dtype, predictor=predictor)
    eager = ModelManager(device=device, dtype=dtype, fast=False)
    backbone = Backbone(family, parts["unet"], parts["vae"], parts["text_encoder"], parts["tokenizer"],
                        parts["scheduler_config"], text_encoder_2=parts.get("text_encoder_2"),
                        tokenizer_2=parts.get("tokenizer_2"))
    for m in (fast, eager):
        m.add(backbone)
    req = GenerationRequest(backbone=family, prompt=PROMPT, width=size, height=size, steps=steps, cfg_scale=SCALE,
                            seed=1, sampler="unipc")
    a, b, c = (f"{family}_{n}" for n in NAMES)

    def image(manager, *chosen):
        r = req.replace(loras=list(chosen))
        return lambda: render(r, manager)

    def timed(fn) -> dict:
        first = _seconds(fn)
        if compile and cuda:
            predictor.wait_compiled()       # the background compile of what the first call captured
            fn()                            # captures the compiled graphs
        return {"first_s": first, "s_per_image": _steady(fn, runs)}

    out["no LoRA, fast"] = timed(image(fast))
    out["1 LoRA, eager"] = timed(image(eager, (a, 0.8)))
    out["1 LoRA, fast"] = timed(image(fast, (a, 0.8)))
    # what a change costs: the first image after it against the same image again
    for label, chosen in (("weight change", (a, 0.5)), ("same-rank swap", (b, 0.8))):
        first = _seconds(image(fast, chosen))
        steady = _steady(image(fast, chosen), runs)
        out[f"{label}, fast"] = {"first_s": first, "s_per_image": steady, "cost_s": first - steady}
    if compile and cuda:
        predictor.wait_compiled()
    out["captures"] = getattr(predictor, "captures", None)
    out["compile_s"] = getattr(predictor, "compile_seconds", None)
    out["layouts"] = fast.lora_views.layouts

    out["ratio eager / fast, 1 LoRA"] = out["1 LoRA, eager"]["s_per_image"] / out["1 LoRA, fast"]["s_per_image"]

    # the application alone, no image: eager, into the LoRA layers and out again; fast, into the
    # views' slots (UNet and text encoders)
    for k in (1, 3):
        names = [a, b, c][:k]
        chosen = lambda order, w: loras.resolve([LoraChoice(n, w) for n in order])[0]   # noqa: E731

        def apply(order, w, views):
            def run():
                with loras.applied(backbone, chosen(order, w), views):
                    pass
            return run
        out[f"apply+remove {k}, eager"] = _steady(apply(names, 0.8, None), runs)
        fresh = ModelManager(device=device, dtype=dtype, predictor=predictor)   # views of its own: a new layout
        views = fresh.lora_views
        out[f"apply {k}, fast, new layout"] = _seconds(apply(names, 0.8, views))
        rotated = names[1:] + names[:1] if k > 1 else [b]
        swaps = [_seconds(apply(order, 0.8, views)) for order in [rotated, names] * runs]
        out[f"apply {k}, fast, swap"] = statistics.median(swaps)
        weights = [_seconds(apply(names, w, views)) for w in [0.3, 0.8] * runs]
        out[f"apply {k}, fast, weight change"] = statistics.median(weights)
        for module in (backbone.unet, backbone.text_encoder, backbone.text_encoder_2):
            if module is not None:
                views.drop(module)

    # diffusers' pipeline with the LoRA as shipped, on the same weights (last: it changes them in place)
    try:
        out.update(_diffusers(family, parts, folder / f"{a}.safetensors", size, steps, runs))
        out["ratio diffusers / fast, 1 LoRA"] = (out["1 LoRA, diffusers"]["s_per_image"]
                                                 / out["1 LoRA, fast"]["s_per_image"])
    except Exception as e:      # the engine's own figures above still count
        out["diffusers error"] = f"{type(e).__name__}: {e}"
    fast.clear()
    eager.clear()
    return out


def table(results: dict) -> str:
    lines = []
    for family, r in results["families"].items():
        lines.append(f"{family} {r['size']}x{r['size']}, {r['steps']} steps, rank {r['rank']}:")
        for key, value in r.items():
            if isinstance(value, dict):
                extra = f", first {value['first_s']:.3f} s" + (f", cost {value['cost_s']:+.3f} s" if "cost_s" in value else "")
                lines.append(f"  {key:<42} {value['s_per_image']:.3f} s/image{extra}")
            elif isinstance(value, float) and key not in ("build_s", "compile_s"):
                unit = "" if key.startswith("ratio") else " s"
                lines.append(f"  {key:<42} {value:.3f}{unit}")
            elif isinstance(value, str):
                lines.append(f"  {key}: {value}")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--families", default="sd15,sdxl")
    ap.add_argument("--out", default=str(ROOT / "bench"))
    ap.add_argument("--tiny", action="store_true", help="tiny models, 64x64, 2 steps; runs on a CPU")
    ap.add_argument("--compile", action="store_true",
                    help="the fast path with its background torch.compile (minutes more for SDXL)")
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    results = {"device": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu",
               "torch": torch.__version__, "diffusers": diffusers.__version__, "tiny": args.tiny, "runs": args.runs,
               "compile": args.compile,
               "families": {}}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        models = Path(tmp) / "models"
        (models / "loras").mkdir(parents=True)
        import os
        os.environ["CNSTUDIO_MODELS"] = str(models)
        for family in [f.strip() for f in args.families.split(",") if f.strip()]:
            results["families"][family] = bench_family(family, device, dtype, args.tiny, args.runs, models / "loras",
                                                        args.compile)
            torch.cuda.empty_cache() if device.type == "cuda" else None
    results["total_s"] = time.perf_counter() - started
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = "lora-results-tiny.json" if args.tiny else "lora-results.json"
    (out / name).write_text(json.dumps(results, indent=2))
    print(table(results))
    print(f"total {results['total_s']:.0f} s; written to {out / name}")


if __name__ == "__main__":
    main()
