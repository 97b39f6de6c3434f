"""The SDXL benchmark (`python3 bench/bench.py --sdxl`): this engine's eager and fast paths
against diffusers' StableDiffusionXL(ControlNet)Pipeline as shipped and compiled as its docs
recommend (torch.compile, mode="reduce-overhead", fullgraph=True), in one process, on the same
weights: SDXL 1.0's architecture from engine/configs/sdxl-base (ControlNets: its
controlnet-sdxl-full shape, made from the UNet) with random weights, fp16, 1024x1024, 20 UniPC
steps, CFG 7.5, 0/1/2 ControlNets. Writes results-sdxl.json and prints a table.

--tiny runs the same code on tests/tiny_models' SDXL-shaped models at 64x64, 2 steps, on the CPU
when there is no GPU (no fast path or compile there): the check that the bench itself works.
"""
from __future__ import annotations

import copy
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import diffusers
from diffusers import (AutoencoderKL, ControlNetModel, MultiControlNetModel, StableDiffusionXLControlNetPipeline,
                       StableDiffusionXLPipeline, UNet2DConditionModel, UniPCMultistepScheduler)
from PIL import Image
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from engine import ControlUnit, GenerationRequest
from engine.fast import GraphedPredictor, prepare_module
from engine.generate import render
from engine.loading.paths import CONFIGS_DIR
from engine.manager import ModelManager
from engine.models import Backbone, ControlModel

CFG = CONFIGS_DIR / "sdxl-base"
STEPS, SCALE, PROMPT = 20, 7.5, "a photograph of an astronaut riding a horse"
CASES = [("0 units", 0), ("1 unit", 1), ("2 units", 2)]


def _tokenizer(pad: str) -> CLIPTokenizer:
    printable = list(range(33, 127)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    chars = [chr(b) for b in printable] + [chr(256 + i) for i in range(256 - len(printable))]
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(vocab={t: i for i, t in enumerate(tokens)}, merges=[], model_max_length=77, pad_token=pad)


def build(device, dtype, tiny: bool, n_controlnets: int = 2) -> dict:
    torch.manual_seed(0)
    if tiny:
        from tests.tiny_models import tiny_sdxl_parts
        parts = tiny_sdxl_parts()
    else:
        tok, tok2 = _tokenizer("<|endoftext|>"), _tokenizer("!")
        te_cfg, te2_cfg = (CLIPTextConfig.from_json_file(CFG / p / "config.json") for p in ("text_encoder", "text_encoder_2"))
        te_cfg.vocab_size = te2_cfg.vocab_size = len(tok)
        parts = {"unet": UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(CFG / "unet")),
                 "vae": AutoencoderKL.from_config(AutoencoderKL.load_config(CFG / "vae")),
                 "text_encoder": CLIPTextModel(te_cfg), "text_encoder_2": CLIPTextModelWithProjection(te2_cfg),
                 "tokenizer": tok, "tokenizer_2": tok2,
                 "scheduler_config": json.loads((CFG / "scheduler" / "scheduler_config.json").read_text())}
    nets = []
    for i in range(n_controlnets):
        kw = {"conditioning_embedding_out_channels": (16, 32)} if tiny else {}
        net = ControlNetModel.from_unet(parts["unet"], **kw)
        g = torch.Generator().manual_seed(100 + i)
        with torch.no_grad():
            for p in list(net.controlnet_down_blocks.parameters()) + list(net.controlnet_mid_block.parameters()):
                p.copy_(torch.randn(p.shape, generator=g) * 0.01)
        nets.append(net)
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        parts[name].to(device=device, dtype=dtype).eval().requires_grad_(False)
    if dtype == torch.float16:
        parts["vae"].to(torch.float32)     # force_upcast, as the engine's manager and diffusers both do
    for net in nets:
        net.to(device=device, dtype=dtype).eval().requires_grad_(False)
    parts["nets"] = nets
    return parts


def maps(n, size):
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        m = np.zeros((size, size, 3), np.uint8)
        for _ in range(12):
            x, y = rng.integers(0, max(size - size // 8, 1), 2)
            m[y:y + size // 10, x:x + 4] = 255
            m[y:y + 4, x:x + size // 10] = 255
        out.append(m)
    return out


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class Clock:
    """Time at each step's end (CUDA events on a GPU); loop it/s = (n - 1) / (last - first)."""

    def __init__(self):
        self.marks = []

    def mark(self):
        if torch.cuda.is_available():
            e = torch.cuda.Event(enable_timing=True)
            e.record()
            self.marks.append(e)
        else:
            self.marks.append(time.perf_counter())

    def its(self):
        if len(self.marks) < 2:
            return float("nan")
        _sync()
        first, last = self.marks[0], self.marks[-1]
        s = first.elapsed_time(last) / 1000 if torch.cuda.is_available() else last - first
        return (len(self.marks) - 1) / s


def timed(fn, runs):
    _sync()
    t0 = time.perf_counter()
    fn()
    _sync()
    first = time.perf_counter() - t0
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    times, its = [], []
    for _ in range(runs):
        clock = Clock()
        _sync()
        t0 = time.perf_counter()
        fn(clock)
        _sync()
        times.append(time.perf_counter() - t0)
        its.append(clock.its())
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else float("nan")
    return {"s_per_image": statistics.median(times), "it_s": statistics.median(its), "first_call_s": first,
            "peak_gb": peak}


def _pipeline_vae(parts):
    """diffusers' pipeline as shipped: an fp16 VAE it upcasts itself for the decode (force_upcast);
    the engine's own VAE is already kept in fp32, which the pipeline does not expect."""
    vae = parts["vae"]
    if vae.dtype != parts["unet"].dtype:
        if "pipeline_vae" not in parts:
            parts["pipeline_vae"] = copy.deepcopy(vae).to(parts["unet"].dtype)
        vae = parts["pipeline_vae"]
    return vae


def diffusers_runner(parts, n, size, steps, compiled):
    kw = dict(vae=_pipeline_vae(parts), text_encoder=parts["text_encoder"], text_encoder_2=parts["text_encoder_2"],
              tokenizer=parts["tokenizer"], tokenizer_2=parts["tokenizer_2"], unet=parts["unet"],
              scheduler=UniPCMultistepScheduler.from_config(parts["scheduler_config"]), add_watermarker=False)
    nets = parts["nets"]
    if n == 0:
        pipe = StableDiffusionXLPipeline(**kw)
    else:
        pipe = StableDiffusionXLControlNetPipeline(**kw, controlnet=nets[0] if n == 1 else MultiControlNetModel(nets[:n]))
    pipe.set_progress_bar_config(disable=True)
    if compiled:
        pipe.unet = torch.compile(parts["unet"], mode="reduce-overhead", fullgraph=True)
        if n:
            pipe.controlnet = torch.compile(pipe.controlnet, mode="reduce-overhead", fullgraph=True)
    images = [Image.fromarray(m) for m in maps(n, size)]

    def run(clock=None):
        cb = (lambda p, i, t, kw_: (clock.mark(), kw_)[1]) if clock else None
        args = dict(negative_prompt="", num_inference_steps=steps, guidance_scale=SCALE, height=size, width=size,
                    generator=torch.Generator("cpu").manual_seed(0), callback_on_step_end=cb, output_type="np")
        if n:
            args["image"] = images[0] if n == 1 else images
        return pipe(PROMPT, **args).images
    return run


def engine_runner(parts, n, size, steps, fast, compile=False, units=None, extra=None):
    """The engine on these parts with n ControlNet units (or the given units, over the models in
    extra: {name: model} beside the ControlNets xl0, xl1, ...)."""
    device = parts["unet"].device
    m = ModelManager(device=device, dtype=parts["unet"].dtype, fast=fast and device.type == "cuda")
    if fast and device.type == "cuda":
        m.predictor = GraphedPredictor(compile=compile)
    m.add(Backbone("bench-xl", parts["unet"], parts["vae"], parts["text_encoder"], parts["tokenizer"],
                   parts["scheduler_config"], text_encoder_2=parts["text_encoder_2"], tokenizer_2=parts["tokenizer_2"]))
    for i, net in enumerate(parts["nets"]):
        m.add(ControlModel(f"xl{i}", net))
    for name, model in (extra or {}).items():
        m.add(ControlModel(name, model))
    if units is None:
        units = [ControlUnit(f"xl{i}", mp) for i, mp in enumerate(maps(n, size))]
    req = GenerationRequest(backbone="bench-xl", prompt=PROMPT, units=units, width=size, height=size, steps=steps,
                            cfg_scale=SCALE, seed=0, sampler="unipc")

    def run(clock=None):
        return render(req, m, on_step=(lambda i, t, p: clock.mark()) if clock else None).images
    run.manager = m
    return run


def _layout(parts, channels_last):
    for mod in (parts["unet"], *parts["nets"]):
        if channels_last:
            prepare_module(mod)
        else:
            mod.to(memory_format=torch.contiguous_format)


def main(args) -> dict:
    cuda = torch.cuda.is_available()
    device, dtype = ("cuda", torch.float16) if cuda else ("cpu", torch.float32)
    size, steps = (64, 2) if args.tiny else (1024, STEPS)
    runs = 1 if args.tiny else args.runs
    parts = build(device, dtype, args.tiny)
    results = {"device": torch.cuda.get_device_name() if cuda else platform.processor() or "cpu",
               "torch": torch.__version__, "diffusers": diffusers.__version__, "date": time.strftime("%Y-%m-%d"),
               "dtype": str(dtype), "size": size, "steps": steps, "tiny": bool(args.tiny), "cases": {}, "parity": {}}
    cases = [c for c in CASES if not getattr(args, "cases", "") or c[0] in args.cases.split(",")]
    for name, n in cases:
        row = {"diffusers": timed(diffusers_runner(parts, n, size, steps, False), runs)}
        eager = engine_runner(parts, n, size, steps, fast=False)
        row["engine_eager"] = timed(eager, runs)
        a = eager()
        if cuda:
            _layout(parts, True)
            # Graphs alone get a runner of their own: with compile on, the background compiler
            # holds the GPU lock while the plain graphs serve, and their timing would measure that.
            fast = engine_runner(parts, n, size, steps, fast=True)
            row["engine_fast"] = timed(fast, runs)
            b = fast()
            if args.compile_fast:
                compiled = engine_runner(parts, n, size, steps, fast=True, compile=True)
                compiled()                   # first image: served by the plain graph, starts the compile
                compiled.manager.predictor.wait_compiled()
                row["engine_fast_compiled"] = timed(compiled, runs)
            _layout(parts, False)
            results["parity"][name] = {"mean_abs_px": float(np.abs(a - b).mean() * 255),
                                       "max_abs_px": float(np.abs(a - b).max() * 255)}
        results["cases"][name] = row
        print("sdxl", name, json.dumps(row), json.dumps(results["parity"].get(name)), flush=True)
        _write(results, args)   # after every case: a run stopped later keeps what it measured
    if cuda and not args.no_compile:
        for name, n in cases:
            torch._dynamo.reset()
            results["cases"][name]["diffusers_compiled"] = timed(diffusers_runner(parts, n, size, steps, True), runs)
            print("sdxl", name, "compiled", json.dumps(results["cases"][name]["diffusers_compiled"]), flush=True)
            _write(results, args)
    print(table(results))
    return results


def _write(results: dict, args) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / ("results-sdxl-tiny.json" if args.tiny else "results-sdxl.json")).write_text(json.dumps(results, indent=2))


def table(results) -> str:
    nan = {"s_per_image": float("nan"), "it_s": float("nan"), "peak_gb": float("nan")}
    lines = ["| SDXL case | diffusers s/img (it/s) | compiled diffusers | engine eager | engine fast | "
             "fast compiled | best vs compiled diffusers | peak GB (diffusers / best) |", "|" + "---|" * 8]
    for name, row in results["cases"].items():
        d, c, e = row["diffusers"], row.get("diffusers_compiled", nan), row["engine_eager"]
        f, k = row.get("engine_fast", nan), row.get("engine_fast_compiled")
        best = k or (f if "engine_fast" in row else e)
        lines.append(f"| {name} | {d['s_per_image']:.3f} ({d['it_s']:.1f}) | {c['s_per_image']:.3f} ({c['it_s']:.1f}) | "
                     f"{e['s_per_image']:.3f} ({e['it_s']:.1f}) | {f['s_per_image']:.3f} ({f['it_s']:.1f}) | "
                     f"{(k or nan)['s_per_image']:.3f} | {c['s_per_image'] / best['s_per_image']:.2f}x | "
                     f"{d['peak_gb']:.2f} / {best['peak_gb']:.2f} |")
    return "\n".join(lines)
