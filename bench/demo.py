"""The demo model: one picture at its own size (128x128), 20 UniPC steps, CFG 7.5, two control
units (scribble + canny), through engine.generate as the studio runs it, against diffusers'
StableDiffusionControlNetPipeline with a MultiControlNetModel on the same weights, in the same
process, alternating runs so drift hits both alike. Issue 5's bar on the CPU: <= 3 s.

    python3 bench/demo.py [--device cpu|cuda] [--runs 7] [--threads N] [--out FILE]

On CUDA (fp16) it also times the engine's eager path beside its default fast path.

Where models/demo has no canny ControlNet yet, the scribble one serves for both units (the
same architecture, so the same compute); the output says which were used.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from diffusers import MultiControlNetModel, StableDiffusionControlNetPipeline, UniPCMultistepScheduler  # noqa: E402
from PIL import Image  # noqa: E402

import annotators  # noqa: E402
from engine import ControlUnit, GenerationRequest, generate  # noqa: E402
from engine.manager import ModelManager  # noqa: E402
from demo import draw, world  # noqa: E402

STEPS, CFG = 20, 7.5


def _maps(size: int) -> tuple[np.ndarray, np.ndarray, str]:
    sc = world.scene(3, kind="shapes", two_tone_p=0.0)
    return (annotators.run("scribble", draw.sketch(sc, size, seed=3)),
            annotators.run("canny", draw.image(sc, size)), sc.caption)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--out", default=None, help="default: bench/runs/demo-<device>.json")
    a = ap.parse_args()
    a.out = a.out or str(ROOT / "bench" / "runs" / f"demo-{a.device}.json")
    if a.threads:
        torch.set_num_threads(a.threads)
    demo = ROOT / "models" / "demo"
    kinds = [k for k in ("scribble", "canny") if (demo / f"controlnet-{k}").is_dir()]
    if not kinds:
        sys.exit("models/demo has no ControlNet yet: run `python3 launch.py train-demo` first")
    names = ["scribble", "canny" if "canny" in kinds else kinds[0]]
    cuda = a.device == "cuda"
    manager = ModelManager(device=a.device, dtype=torch.float16 if cuda else torch.float32)
    eager = ModelManager(device=a.device, dtype=manager.dtype, fast=False) if cuda else None
    backbone = manager.backbone("demo")
    size = backbone.native_size
    scribble, canny, prompt = _maps(size)
    units = (ControlUnit(f"demo:{names[0]}", scribble), ControlUnit(f"demo:{names[1]}", canny))
    request = GenerationRequest(backbone="demo", prompt=prompt, units=units, steps=STEPS, cfg_scale=CFG, seed=0,
                                sampler="unipc", width=size, height=size)

    nets = [manager.controlnet(f"demo:{n}").net for n in names]
    pipe = StableDiffusionControlNetPipeline(
        vae=backbone.vae, text_encoder=backbone.text_encoder, tokenizer=backbone.tokenizer, unet=backbone.unet,
        controlnet=MultiControlNetModel(nets), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False, scheduler=UniPCMultistepScheduler.from_config(backbone.scheduler_config))
    pipe.set_progress_bar_config(disable=True)
    pictures = [Image.fromarray(scribble), Image.fromarray(canny)]

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def ours():
        return generate(request, manager=manager, save=False)

    def ours_eager():
        return generate(request, manager=eager, save=False)

    def theirs():
        return pipe(prompt, image=pictures, num_inference_steps=STEPS, guidance_scale=CFG, height=size, width=size,
                    generator=torch.Generator("cpu").manual_seed(0))

    runners = {"engine": ours, "diffusers": theirs}
    if cuda:
        for n in names:  # the eager manager shares the fast one's weights
            eager.add(manager.controlnet(f"demo:{n}"))
        eager.add(backbone)
        runners["engine_eager"] = ours_eager
    first = {}
    for name, fn in runners.items():   # warm-up: first-call allocations, lazy imports, graph capture
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        first[name] = time.perf_counter() - t0
    times = {k: [] for k in runners}
    for _ in range(a.runs):
        for name, fn in runners.items():
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "date": time.strftime("%Y-%m-%d"), "device": torch.cuda.get_device_name() if cuda else "cpu",
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
        "size": size, "steps": STEPS, "cfg": CFG, "units": [u.model for u in units], "runs": a.runs,
        "first_call_s": first,
        "diffusers_over_engine": med["diffusers"] / med["engine"],
    }
    for name, values in times.items():
        result[f"{name}_s"] = {"min": min(values), "median": med[name], "max": max(values)}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
