"""The demo model on the CPU: one picture at its own size (128x128), 20 UniPC steps, CFG 7.5,
two control units (scribble + canny), through engine.generate as the studio runs it, against
diffusers' StableDiffusionControlNetPipeline with a MultiControlNetModel on the same weights,
in the same process, alternating runs so drift hits both alike. Issue 5's bar: <= 3 s.

    python3 bench/demo_cpu.py [--runs 7] [--threads N] [--out bench/runs/demo-cpu.json]

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
from engine.training import draw, world  # noqa: E402

STEPS, CFG = 20, 7.5


def _maps(size: int) -> tuple[np.ndarray, np.ndarray, str]:
    sc = world.scene(3, kind="shapes", two_tone_p=0.0)
    return (annotators.run("scribble", draw.sketch(sc, size, seed=3)),
            annotators.run("canny", draw.image(sc, size)), sc.caption)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "runs" / "demo-cpu.json"))
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    demo = ROOT / "models" / "demo"
    kinds = [k for k in ("scribble", "canny") if (demo / f"controlnet-{k}").is_dir()]
    if not kinds:
        sys.exit("models/demo has no ControlNet yet: run `python3 launch.py train-demo` first")
    names = ["scribble", "canny" if "canny" in kinds else kinds[0]]
    manager = ModelManager(device="cpu", dtype=torch.float32)
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

    def ours():
        return generate(request, manager=manager, save=False)

    def theirs():
        return pipe(prompt, image=pictures, num_inference_steps=STEPS, guidance_scale=CFG, height=size, width=size,
                    generator=torch.Generator("cpu").manual_seed(0))

    for fn in (ours, theirs):   # warm-up: first-call allocations and lazy imports
        fn()
    times = {"engine": [], "diffusers": []}
    for _ in range(a.runs):
        for name, fn in (("engine", ours), ("diffusers", theirs)):
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "date": time.strftime("%Y-%m-%d"), "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
        "size": size, "steps": STEPS, "cfg": CFG, "units": [u.model for u in units], "runs": a.runs,
        "engine_s": {"min": min(times["engine"]), "median": med["engine"], "max": max(times["engine"])},
        "diffusers_s": {"min": min(times["diffusers"]), "median": med["diffusers"], "max": max(times["diffusers"])},
        "diffusers_over_engine": med["diffusers"] / med["engine"],
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
