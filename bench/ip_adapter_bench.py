"""IP-Adapter units (issue 26): what a unit costs, against diffusers' StableDiffusionPipeline after
`load_ip_adapter` as shipped, in one process, on the same weights.

SD1.5's architecture from engine/configs/sd15 with random weights, a ViT-H/14-sized CLIP image
encoder (32 layers, 1280 wide, projection 1024) and h94-layout adapters for that UNet (basic:
4 tokens; plus: the Resampler, 16 queries, 768 wide, 12 heads), written as files under a
temporary models/ipadapters/, fp16, 512x512, 20 UniPC steps, CFG 7.5. Cases: no unit (fast path
and eager), one basic unit (fast path and eager), one plus unit, two units (basic and plus), a
basic unit beside a ControlNet, a basic unit beside a rank-32 LoRA (fast path: the LoRA's view;
and eager), a basic unit whose picture and weight change every call (the graphs read them from
buffers: no capture), diffusers with the basic and the plus adapter (and,
with --compile-diffusers, its UNet compiled as diffusers' docs say). `first_call_s` of a unit's
case includes reading the file, building its processors and capturing; later calls reuse them.
Also the max pixel difference to diffusers (basic, plus).
Writes results-ip-adapter.json beside this file (--tiny: in its temporary folder) and prints a table.

    python3 bench/ip_adapter_bench.py [--runs 5] [--tiny] [--compile-diffusers]

--tiny runs the same code on tests/tiny_models' SD1.5-shaped models and a tiny encoder, 64x64,
2 steps, on the CPU when there is no GPU: the check that the bench itself works.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import diffusers  # noqa: E402
from diffusers import ControlNetModel, StableDiffusionPipeline, UniPCMultistepScheduler  # noqa: E402
from PIL import Image  # noqa: E402

from engine import ControlUnit, GenerationRequest, ip_adapter  # noqa: E402
from engine.fast import GraphedPredictor  # noqa: E402
from engine.generate import render  # noqa: E402
from engine.manager import ModelManager  # noqa: E402
from engine.models import Backbone, ControlModel  # noqa: E402
from tests.engine.ip_adapter_files import make_ip_adapter, save_encoder, save_safetensors  # noqa: E402

PROMPT, SCALE = "a photograph of an astronaut riding a horse", 7.5
VIT_H = dict(hidden_size=1280, projection_dim=1024)
VIT_H_SHAPE = dict(intermediate_size=5120, num_attention_heads=16, num_hidden_layers=32, image_size=224, patch_size=14)
PLUS_SD15 = dict(hidden_dims=768, heads=12, num_queries=16)
TINY_H = dict(hidden_size=32, projection_dim=24)


def build(tiny: bool, device, dtype, folder: Path):
    if tiny:
        from tests.tiny_models import tiny_backbone_parts
        p = tiny_backbone_parts(seed=0)
        unet, vae, te, tok, sched = p["unet"], p["vae"], p["text_encoder"], p["tokenizer"], p["scheduler_config"]
        widths, shape, resampler = TINY_H, None, None
    else:
        import bench as sd15   # bench/bench.py (this folder is first on sys.path): its random-weight build
        unet, vae, te, tok, _, sched = sd15.build("cpu", torch.float32, n_controlnets=0)
        widths, shape, resampler = VIT_H, VIT_H_SHAPE, PLUS_SD15
    net = ControlNetModel.from_unet(unet, **({"conditioning_embedding_out_channels": (16, 32)} if tiny else {}))
    save_encoder(folder / "image_encoder", widths, shape=shape, dtype=dtype)
    save_safetensors(make_ip_adapter(unet, widths, seed=1), folder / "ip-adapter_sd15.safetensors")
    save_safetensors(make_ip_adapter(unet, widths, plus=True, seed=2, resampler=resampler),
                     folder / "ip-adapter-plus_sd15.safetensors")
    for m in (unet, vae, te, net):
        m.to(device=device, dtype=dtype).eval().requires_grad_(False)
    return unet, vae, te, tok, sched, net


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, runs, device):
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    first = time.perf_counter() - t0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    return {"s_per_image": statistics.median(times), "first_call_s": first, "peak_gb": peak}, out


def picture(size, seed=0):
    rng = np.random.default_rng(seed)
    p = np.zeros((size, size, 3), np.uint8)
    p[:] = rng.integers(0, 255, 3)
    p[size // 4:size // 2, size // 5:size // 2] = rng.integers(0, 255, 3)
    return p


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--compile-diffusers", action="store_true", help="also time diffusers with its UNet compiled")
    args = ap.parse_args()
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    dtype = torch.float16 if cuda else torch.float32
    size, steps = (64, 2) if args.tiny else (512, 20)
    runs = 1 if args.tiny else args.runs
    root = Path(tempfile.mkdtemp(prefix="ip-adapter-bench-"))
    os.environ["CNSTUDIO_MODELS"] = str(root)
    folder = root / "ipadapters"
    folder.mkdir()
    unet, vae, te, tok, sched, net = build(args.tiny, device, dtype, folder)
    face = picture(size)
    control = np.zeros((size, size, 3), np.uint8)
    control[size // 4:3 * size // 4, size // 2 - 2:size // 2 + 2] = 255

    from lora_bench import RANK, make_lora    # this folder's LoRA bench: its sd-scripts-like random LoRA
    from tests.engine.lora_files import save_kohya
    (root / "loras").mkdir()
    save_kohya(make_lora({"unet": unet, "text_encoder": te}, 40, ("text_encoder",), 4 if args.tiny else RANK),
               root / "loras" / "style.safetensors")

    def engine_runner(units, fast, changing=False, loras=()):
        m = ModelManager(device=device, dtype=dtype, fast=fast and cuda)
        if fast and cuda:
            m.predictor = GraphedPredictor()
        m.add(Backbone("bench", unet, vae, te, tok, sched))
        m.add(ControlModel("cn", net))
        req = GenerationRequest(backbone="bench", prompt=PROMPT, units=tuple(units), width=size, height=size,
                                steps=steps, cfg_scale=SCALE, seed=0, sampler="unipc", loras=list(loras))
        calls = iter(range(10 ** 6))

        def run():
            if not changing:
                return render(req, m).images
            i = next(calls)   # another picture and weight each call, same adapter
            unit = ControlUnit(units[0].model, picture(size, seed=i), weight=0.5 + 0.1 * (i % 5))
            return render(req.replace(units=(unit,)), m).images
        return run

    def diffusers_runner(weight_name, compiled=False):
        import copy
        pipe = StableDiffusionPipeline(vae=vae, text_encoder=te, tokenizer=tok, unet=copy.deepcopy(unet),
                                       scheduler=UniPCMultistepScheduler.from_config(sched), safety_checker=None,
                                       feature_extractor=None, image_encoder=None, requires_safety_checker=False)
        pipe.load_ip_adapter(str(folder), subfolder="", weight_name=weight_name, image_encoder_folder="image_encoder")
        pipe.to(device=device, dtype=dtype)
        pipe.set_ip_adapter_scale(0.8)
        pipe.set_progress_bar_config(disable=True)
        if compiled:
            pipe.unet.to(memory_format=torch.channels_last)
            pipe.unet = torch.compile(pipe.unet, mode="reduce-overhead", fullgraph=True)
        return lambda: pipe(PROMPT, num_inference_steps=steps, guidance_scale=SCALE, height=size, width=size,
                            generator=torch.Generator("cpu").manual_seed(0), ip_adapter_image=Image.fromarray(face),
                            output_type="np").images

    basic = ControlUnit("ip-adapter_sd15", face, weight=0.8)
    plus = ControlUnit("ip-adapter-plus_sd15", face, weight=0.8)
    cases = {"no unit, fast path": engine_runner([], True), "no unit, eager": engine_runner([], False),
             "1 IP-Adapter (basic)": engine_runner([basic], True),
             "1 IP-Adapter (basic), eager": engine_runner([basic], False),
             "1 IP-Adapter (plus)": engine_runner([plus], True),
             "2 IP-Adapters (basic + plus)": engine_runner([basic, plus], True),
             "IP-Adapter + ControlNet": engine_runner([basic, ControlUnit("cn", control)], True),
             "IP-Adapter + a LoRA": engine_runner([basic], True, loras=[("style", 0.8)]),
             "IP-Adapter + a LoRA, eager": engine_runner([basic], False, loras=[("style", 0.8)]),
             "1 IP-Adapter, new picture and weight each call": engine_runner([basic], True, changing=True)}
    results = {"device": torch.cuda.get_device_name() if cuda else platform.processor() or "cpu",
               "torch": torch.__version__, "diffusers": diffusers.__version__, "date": time.strftime("%Y-%m-%d"),
               "dtype": str(dtype), "size": size, "steps": steps, "cases": {}, "parity_vs_diffusers_px": {}}
    outs = {}
    for name, fn in cases.items():
        results["cases"][name], outs[name] = timed(fn, runs, device)
        print(name, json.dumps(results["cases"][name]), flush=True)
    for name, weights, ours in (("diffusers, basic", "ip-adapter_sd15.safetensors", "1 IP-Adapter (basic)"),
                                ("diffusers, plus", "ip-adapter-plus_sd15.safetensors", "1 IP-Adapter (plus)")):
        results["cases"][name], ref = timed(diffusers_runner(weights), runs, device)
        results["parity_vs_diffusers_px"][ours] = float(np.abs(outs[ours] - ref).max() * 255)
        print(name, json.dumps(results["cases"][name]), flush=True)
    if args.compile_diffusers and cuda:
        name = "diffusers compiled, basic"
        try:
            results["cases"][name], _ = timed(diffusers_runner("ip-adapter_sd15.safetensors", compiled=True), runs,
                                              device)
            print(name, json.dumps(results["cases"][name]), flush=True)
        except Exception as e:   # a compile failure is a finding, not the end of the bench
            results["cases_failed"] = {name: f"{type(e).__name__}: {e}"[:500]}
            print(name, "failed:", e, flush=True)
    ip_adapter.forget()
    # the tiny check's numbers mean nothing: they stay in the temporary folder
    out = root / "results-ip-adapter-tiny.json" if args.tiny else Path(__file__).resolve().parent / "results-ip-adapter.json"
    out.write_text(json.dumps(results, indent=2))
    print(table(results))


def table(results) -> str:
    lines = ["| case | s/img | first call s | peak GB |", "|---|---|---|---|"]
    for name, row in results["cases"].items():
        lines.append(f"| {name} | {row['s_per_image']:.3f} | {row['first_call_s']:.3f} | {row['peak_gb']:.2f} |")
    lines.append("")
    lines.append("max pixel difference to diffusers (of 255): " + ", ".join(
        f"{k}: {v:.2f}" for k, v in results["parity_vs_diffusers_px"].items()))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
