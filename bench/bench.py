"""Benchmark: this engine (eager and fast path) against diffusers' own ControlNet pipeline
(as shipped and compiled as its docs recommend), in one process, on the same weights.

SD1.5 architecture from engine/configs/sd15 with random weights (ControlNets copied from the
UNet, zero convolutions randomised so their compute is real), fp16, 512x512, 20 UniPC steps,
CFG 7.5. s/image is the whole call; it/s is steps over the denoising loop (CUDA events at the
first and last step). Writes bench/results.json and prints a table; bench/RESULTS.md quotes it.

    python3 bench/bench.py [--runs 5] [--no-compile] [--compile-fast] [--offload] [--out DIR]
    python3 bench/bench.py --sdxl [--tiny] [--runs 5] [--no-compile] [--compile-fast]   (bench/sdxl_bench.py)

--offload times the engine with idle ControlNets kept on the CPU (ModelManager(offload=True)):
every net starts on the CPU, a generation moves the ones it uses to the GPU and back.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import diffusers  # noqa: E402
from diffusers import (  # noqa: E402
    AutoencoderKL, ControlNetModel, MultiControlNetModel, StableDiffusionControlNetPipeline, StableDiffusionPipeline,
    UNet2DConditionModel, UniPCMultistepScheduler,
)
from PIL import Image  # noqa: E402
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer  # noqa: E402

from engine import ControlUnit, GenerationRequest  # noqa: E402
from engine.generate import render  # noqa: E402
from engine.manager import ModelManager  # noqa: E402
from engine.models import Backbone, ControlModel  # noqa: E402
from engine.fast import GraphedPredictor, prepare_module  # noqa: E402

CFG = ROOT / "engine" / "configs" / "sd15"
SIZE, STEPS, SCALE = 512, 20, 7.5
PROMPT = "a photograph of an astronaut riding a horse"


def char_tokenizer() -> CLIPTokenizer:
    """CLIP's special tokens and window over a byte-level vocabulary: tokenising costs nothing
    here and needs no vocabulary file on the GPU machine."""
    printable = list(range(33, 127)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    chars = [chr(b) for b in printable] + [chr(256 + i) for i in range(256 - len(printable))]
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(vocab={t: i for i, t in enumerate(tokens)}, merges=[], model_max_length=77)


def build(device, dtype, n_controlnets=3):
    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(CFG / "unet"))
    vae = AutoencoderKL.from_config(AutoencoderKL.load_config(CFG / "vae"))
    tcfg = CLIPTextConfig.from_json_file(CFG / "text_encoder" / "config.json")
    text_encoder = CLIPTextModel(tcfg)
    nets = []
    for i in range(n_controlnets):
        net = ControlNetModel.from_unet(unet)
        g = torch.Generator().manual_seed(100 + i)
        with torch.no_grad():
            for p in list(net.controlnet_down_blocks.parameters()) + list(net.controlnet_mid_block.parameters()):
                p.copy_(torch.randn(p.shape, generator=g) * 0.01)
        nets.append(net)
    mods = [unet, vae, text_encoder, *nets]
    for m in mods:
        m.to(device=device, dtype=dtype).eval().requires_grad_(False)
    sched = json.loads((CFG / "scheduler" / "scheduler_config.json").read_text())
    return unet, vae, text_encoder, char_tokenizer(), nets, sched


def maps(n):
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        m = np.zeros((SIZE, SIZE, 3), np.uint8)
        for _ in range(12):
            x, y = rng.integers(0, SIZE - 64, 2)
            m[y:y + 48, x:x + 4] = 255
            m[y:y + 4, x:x + 48] = 255
        out.append(m)
    return out


class StepClock:
    """CUDA events at each step's end; loop it/s = (n - 1) / (last - first)."""

    def __init__(self):
        self.events = []

    def mark(self):
        e = torch.cuda.Event(enable_timing=True)
        e.record()
        self.events.append(e)

    def its(self):
        torch.cuda.synchronize()
        ms = self.events[0].elapsed_time(self.events[-1])
        return (len(self.events) - 1) / (ms / 1000)


def timed(fn, runs):
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    first = time.perf_counter() - t0
    times, its = [], []
    torch.cuda.reset_peak_memory_stats()
    for _ in range(runs):
        clock = StepClock()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn(clock)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        its.append(clock.its())
    return {"s_per_image": statistics.median(times), "it_s": statistics.median(its), "first_call_s": first,
            "peak_gb": torch.cuda.max_memory_allocated() / 2**30}


def diffusers_runner(parts, n, windows, compiled):
    unet, vae, te, tok, nets, sched = parts
    kw = dict(vae=vae, text_encoder=te, tokenizer=tok, unet=unet, safety_checker=None, feature_extractor=None,
              requires_safety_checker=False, scheduler=UniPCMultistepScheduler.from_config(sched))
    if n == 0:
        pipe = StableDiffusionPipeline(**kw)
    else:
        kw["controlnet"] = nets[0] if n == 1 else MultiControlNetModel(nets[:n])
        pipe = StableDiffusionControlNetPipeline(**kw)
    pipe.set_progress_bar_config(disable=True)
    if compiled:
        pipe.unet = torch.compile(unet, mode="reduce-overhead", fullgraph=True)
        if n:
            pipe.controlnet = torch.compile(pipe.controlnet, mode="reduce-overhead", fullgraph=True)
    images = [Image.fromarray(m) for m in maps(n)]

    def run(clock=None):
        cb = (lambda p, i, t, kw_: (clock.mark(), kw_)[1]) if clock else None
        args = dict(num_inference_steps=STEPS, guidance_scale=SCALE, height=SIZE, width=SIZE,
                    generator=torch.Generator("cpu").manual_seed(0), callback_on_step_end=cb)
        if n:
            args["image"] = images[0] if n == 1 else images
            if windows:
                args["control_guidance_start"] = [s for s, _ in windows]
                args["control_guidance_end"] = [e for _, e in windows]
        return pipe(PROMPT, **args).images
    return run


def engine_runner(parts, n, windows, fast, cudnn_benchmark=True, compile=False, streams=True, offload=False):
    unet, vae, te, tok, nets, sched = parts
    m = ModelManager(device="cuda", dtype=unet.dtype, fast=fast, offload=offload)
    if fast:
        m.predictor = GraphedPredictor(cudnn_benchmark=cudnn_benchmark, compile=compile, streams=streams)
    else:
        torch.backends.cudnn.benchmark = False
    m.add(Backbone("bench", unet, vae, te, tok, sched))
    for i, net in enumerate(nets):
        m.add(ControlModel(f"cn{i}", net))
    windows = windows or [(0.0, 1.0)] * n
    units = [ControlUnit(f"cn{i}", mp, start=windows[i][0], end=windows[i][1]) for i, mp in enumerate(maps(n))]
    req = GenerationRequest(backbone="bench", prompt=PROMPT, units=units, width=SIZE, height=SIZE, steps=STEPS,
                            cfg_scale=SCALE, seed=0, sampler="unipc")

    def run(clock=None):
        return render(req, m, on_step=(lambda i, t, p: clock.mark()) if clock else None).images
    run.manager = m
    return run


def layout(parts, n, channels_last):
    """The fast path runs NHWC; the other runners get the weights back in their usual layout."""
    unet, vae, te, tok, nets, sched = parts
    for m in (unet, *nets[:max(n, 0)]):
        if channels_last:
            prepare_module(m)
        else:
            m.to(memory_format=torch.contiguous_format)


CASES = [("0 units", 0, None), ("1 unit", 1, None), ("2 units", 2, None), ("3 units", 3, None),
         ("3 units, two end at 0.5", 3, [(0.0, 1.0), (0.0, 0.5), (0.0, 0.5)])]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--variants", action="store_true", help="also time the fast path without NHWC / cudnn.benchmark")
    ap.add_argument("--compile-fast", action="store_true", help="also time the fast path with torch.compile")
    ap.add_argument("--cases", default="", help="comma-separated case names (default: all)")
    ap.add_argument("--compile-cases", default="1 unit,3 units")
    ap.add_argument("--offload", action="store_true", help="also time 1 and 3 units with idle ControlNets on the CPU")
    ap.add_argument("--out", default=str(ROOT / "bench"))
    ap.add_argument("--sdxl", action="store_true", help="the SDXL bench at 1024x1024, 0/1/2 ControlNets (sdxl_bench.py)")
    ap.add_argument("--tiny", action="store_true", help="with --sdxl: tiny SDXL-shaped models, 64x64, runs on a CPU")
    args = ap.parse_args()
    if args.sdxl:
        import sdxl_bench   # bench/ is sys.path[0] when this file runs as a script
        sdxl_bench.main(args)
        return
    dtype = torch.float16
    parts = build("cuda", dtype)
    results = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
               "diffusers": diffusers.__version__, "python": platform.python_version(),
               "date": time.strftime("%Y-%m-%d"), "dtype": str(dtype), "size": SIZE, "steps": STEPS, "cases": {}}
    parity = {}
    chosen = [c for c in CASES if not args.cases or c[0] in args.cases.split(",")]
    for name, n, windows in chosen:
        row = {}
        row["diffusers"] = timed(diffusers_runner(parts, n, windows, False), args.runs)
        eager = engine_runner(parts, n, windows, fast=False)
        row["engine_eager"] = timed(eager, args.runs)
        if args.variants:
            for label, bench_flag in (("graphs only", False), ("graphs + cudnn.benchmark", True)):
                row["fast: " + label] = timed(engine_runner(parts, n, windows, True, bench_flag, streams=False),
                                              args.runs)
            layout(parts, n, channels_last=True)
            row["fast: graphs + cudnn.benchmark + NHWC"] = timed(engine_runner(parts, n, windows, True, streams=False),
                                                                 args.runs)
        layout(parts, n, channels_last=True)
        fast = engine_runner(parts, n, windows, fast=True)
        row["engine_fast"] = timed(fast, args.runs)
        row["engine_fast"]["captures"] = fast.manager.predictor.captures
        row["engine_fast"]["capture_s"] = fast.manager.predictor.capture_seconds
        b = fast()
        if args.compile_fast:
            compiled = engine_runner(parts, n, windows, True, True, True)
            t0 = time.perf_counter()
            compiled()                       # first image: served by the plain graph
            first = time.perf_counter() - t0
            compiled.manager.predictor.wait_compiled()
            ready = time.perf_counter() - t0
            row["engine_fast_compiled"] = timed(compiled, args.runs)
            row["engine_fast_compiled"].update(first_image_s=first, compiled_ready_s=ready)
            c = compiled()
        layout(parts, n, channels_last=False)
        a = eager()
        if args.compile_fast:
            parity[name + " (compiled)"] = {"mean_abs_px": float(np.abs(a - c).mean() * 255),
                                            "max_abs_px": float(np.abs(a - c).max() * 255)}
        parity[name] = {"mean_abs_px": float(np.abs(a - b).mean() * 255), "max_abs_px": float(np.abs(a - b).max() * 255)}
        torch.cuda.empty_cache()
        results["cases"][name] = row
        print(name, json.dumps(row), flush=True)
    if not args.no_compile:
        for name, n, windows in chosen:
            if name not in args.compile_cases.split(","):
                continue
            torch._dynamo.reset()
            results["cases"][name]["diffusers_compiled"] = timed(diffusers_runner(parts, n, windows, True), args.runs)
            print(name, "compiled", json.dumps(results["cases"][name]["diffusers_compiled"]), flush=True)
    if args.offload:
        unet, vae, te, tok, nets, sched = parts
        layout(parts, 3, channels_last=False)
        for name, n, windows in chosen:
            if name not in ("1 unit", "3 units"):
                continue
            for net in nets:
                net.to("cpu")
            torch.cuda.empty_cache()
            results["cases"][name]["engine_offload"] = timed(engine_runner(parts, n, windows, False, offload=True),
                                                             args.runs)
            print(name, "offload", json.dumps(results["cases"][name]["engine_offload"]), flush=True)
        for net in nets:
            net.to("cuda")
    results["parity_fast_vs_eager"] = parity
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(table(results))


def table(results) -> str:
    """The app's default fast path is the compiled one once its background compile is done;
    where it was not timed, the plain CUDA graphs."""
    nan = {"s_per_image": float("nan"), "it_s": float("nan"), "peak_gb": float("nan"), "first_call_s": float("nan")}
    lines = ["| case | diffusers s/img (it/s) | compiled diffusers s/img (it/s) | engine eager | graphs s/img (it/s) | "
             "graphs + compile s/img (it/s) | best vs diffusers | best vs compiled diffusers | peak GB "
             "(diffusers / best) | offload s/img, peak GB |", "|" + "---|" * 10]
    for name, row in results["cases"].items():
        d, g, e = row["diffusers"], row["engine_fast"], row["engine_eager"]
        c, k, o = row.get("diffusers_compiled", nan), row.get("engine_fast_compiled"), row.get("engine_offload", nan)
        best = k or g
        lines.append(
            f"| {name} | {d['s_per_image']:.3f} ({d['it_s']:.1f}) | {c['s_per_image']:.3f} ({c['it_s']:.1f}) | "
            f"{e['s_per_image']:.3f} | {g['s_per_image']:.3f} ({g['it_s']:.1f}) | "
            f"{(k or nan)['s_per_image']:.3f} ({(k or nan)['it_s']:.1f}) | "
            f"{d['s_per_image'] / best['s_per_image']:.2f}x | {c['s_per_image'] / best['s_per_image']:.2f}x | "
            f"{d['peak_gb']:.2f} / {best['peak_gb']:.2f} | {o['s_per_image']:.3f}, {o['peak_gb']:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
