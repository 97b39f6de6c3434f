"""/sdapi/v1/*: txt2img, img2img, progress, interrupt, sd-models, samplers, scripts, options,
loras, as AUTOMATIC1111's modules/api/api.py answers them."""
from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path

import engine
from engine import GenerationRequest

from .. import catalog, jobs
from . import mapping, names, pictures
from .schema import Img2Img, Txt2Img

VERSION = "controlnet-studio"


def txt2img(payload: Txt2Img, query: dict) -> dict:
    return generate(payload)


def img2img(payload: Img2Img, query: dict) -> dict:
    return generate(payload)


def _first_pass_size(run: GenerationRequest, image) -> tuple[int, int]:
    """A1111 reports a hires run at its first pass's size (its "Size"), beside "Hires upscale"."""
    if not run.enable_hr:
        return image.width, image.height
    native = catalog.manager().backbone(run.backbone).native_size
    return run.width or native, run.height or native


def _hires_params(run: GenerationRequest) -> dict:
    if not run.enable_hr:
        return {}
    params = ({"Hires resize": f"{run.hr_resize_x}x{run.hr_resize_y}"} if run.hr_resize_x or run.hr_resize_y
              else {"Hires upscale": run.hr_scale})
    if run.hr_second_pass_steps:
        params["Hires steps"] = run.hr_second_pass_steps
    return params | {"Hires upscaler": run.hr_upscaler}


def generate(payload: Txt2Img) -> dict:
    """Run the payload's batches in the one queue; the answer as A1111 gives it."""
    plan = mapping.plan(payload)
    results = []
    with jobs.slot("rest", batches=len(plan.requests)) as job:
        for k, request in enumerate(plan.requests):
            job.batch = k
            results.append(engine.generate(request, on_step=job.track(None), stop=job.stop, save=plan.save,
                                           manager=catalog.manager()))
            if results[-1].interrupted or job.stop.is_set():
                break
    images, infotexts, seeds, interrupted, ignored = [], [], [], False, []
    for result in results:
        recipe = json.loads(result.recipe)
        resolved = GenerationRequest.from_json(result.recipe)
        for i, (image, seed) in enumerate(zip(result.images, result.seeds)):
            text = engine.infotext(resolved, seed, *_first_pass_size(resolved, image))
            infotexts.append(text)
            seeds.append(seed)
            if not plan.send:
                continue
            if i < len(result.paths):
                images.append(pictures.encode_bytes(Path(result.paths[i]).read_bytes()))
            else:
                own = json.dumps({**recipe, "seed": seed}, sort_keys=True)
                images.append(pictures.encode_bytes(engine.encode_png(image, own, text)))
        interrupted = interrupted or result.interrupted
        ignored += [w for w in result.ignored_words if w not in ignored]
        plan.warnings += [w for w in result.warnings if w not in plan.warnings]
    if plan.send:
        images += [pictures.encode(m) for m in plan.maps]
    first = plan.requests[0]
    run = GenerationRequest.from_json(results[0].recipe)
    width, height = _first_pass_size(run, results[0].images[0])
    info = {
        "prompt": first.prompt, "all_prompts": [first.prompt] * len(seeds),
        "negative_prompt": first.negative_prompt, "all_negative_prompts": [first.negative_prompt] * len(seeds),
        "seed": seeds[0], "all_seeds": seeds, "subseed": -1, "all_subseeds": [-1] * len(seeds), "subseed_strength": 0,
        "width": width, "height": height, "sampler_name": engine.SAMPLER_DISPLAY_NAMES[run.sampler],
        "cfg_scale": run.cfg_scale, "steps": run.steps, "batch_size": run.batch_size,
        "denoising_strength": run.strength if run.init_image is not None or run.enable_hr else None,
        "sd_model_name": run.backbone, "sd_model_hash": engine.short_hash(run.backbone, "backbone"),
        "seed_resize_from_w": -1, "seed_resize_from_h": -1, "restore_faces": False, "extra_generation_params": _hires_params(run),
        "index_of_first_image": 0, "infotexts": infotexts, "styles": [], "clip_skip": 1,
        "job_timestamp": datetime.now().strftime("%Y%m%d%H%M%S"), "is_using_inpainting_conditioning": False,
        "version": VERSION, "interrupted": interrupted, "warnings": plan.warnings, "ignored_words": ignored,
    }
    parameters = payload.model_dump()
    if isinstance(payload, Img2Img) and not parameters.get("include_init_images"):
        parameters["init_images"] = parameters["mask"] = None
    return {"images": images, "parameters": parameters, "info": json.dumps(info)}


def progress(payload, query: dict) -> dict:
    """Progress of the running job (a GUI one too); current_image is the last preview decoded,
    and asks the loop for a fresh one at its next step (never decoded here)."""
    job = jobs.current()
    skip = str(query.get("skip_current_image", "false")).lower() in ("1", "true", "yes")
    state = {"skipped": False, "interrupted": False, "stopping_generation": False, "job": "", "job_count": 0,
             "job_timestamp": "0", "job_no": 0, "sampling_step": 0, "sampling_steps": 0}
    if job is None:
        return {"progress": 0.0, "eta_relative": 0.0, "state": state, "current_image": None, "textinfo": None}
    fraction = job.fraction()
    elapsed = time.monotonic() - job.started
    eta = elapsed / fraction - elapsed if fraction > 0 else 0.0
    state.update(job=f"{job.source} job", job_count=jobs.QUEUE.waiting, job_no=job.batch,
                 sampling_step=job.step, sampling_steps=job.total, interrupted=job.stop.is_set())
    image = None
    if not skip:
        job.want_preview = True
        if job.image is not None:
            image = pictures.encode(job.image)
    return {"progress": round(fraction, 4), "eta_relative": round(eta, 3), "state": state, "current_image": image,
            "textinfo": f"Step {job.step}/{job.total}"}


def interrupt(payload, query: dict) -> dict:
    jobs.interrupt()
    return {}


def sd_models(payload, query: dict) -> list:
    out = []
    for source in names.backbones():
        short = engine.short_hash(source, "backbone")
        out.append({"title": f"{source} [{short}]", "model_name": source, "hash": short, "sha256": None,
                    "filename": source, "config": None})
    return out


def samplers(payload, query: dict) -> list:
    return [{"name": shown, "aliases": [name], "options": {}} for name, shown in engine.SAMPLER_DISPLAY_NAMES.items()]


def scripts(payload, query: dict) -> dict:
    return {"txt2img": ["controlnet"], "img2img": ["controlnet"]}


def get_options(payload, query: dict) -> dict:
    current = catalog.current_backbone()
    return {"sd_model_checkpoint": f"{current} [{engine.short_hash(current, 'backbone')}]",
            "sd_checkpoint_hash": None, "samples_format": "png", "outdir_samples": str(engine.outputs_dir()),
            "control_net_unit_count": engine.limits.MAX_UNITS}


def set_options(payload, query: dict) -> dict:
    """Only sd_model_checkpoint has a meaning here: it loads that backbone and makes it the current one."""
    if not isinstance(payload, dict):
        raise mapping.error_at((), 'options must be a JSON object, e.g. {"sd_model_checkpoint": "demo"}', payload)
    if "sd_model_checkpoint" in payload:
        source = mapping._at(("sd_model_checkpoint",), names.model_source, payload["sd_model_checkpoint"],
                             names.backbones(), "backbone")
        with jobs.slot("options"):
            catalog.manager().backbone(source)
        catalog.set_current_backbone(source)
    return {}


def loras(payload, query: dict) -> list:
    """A1111's Lora extension's list; a file's name is what `<lora:name:w>` in a prompt takes."""
    return [{"name": lora["name"], "alias": lora["name"], "path": lora["path"], "metadata": lora["metadata"]}
            for lora in catalog.loras()]


def refresh_loras(payload, query: dict) -> dict:
    return {}   # the folder is read on every request, so there is nothing to refresh


ROUTES = [
    ("POST", "/sdapi/v1/txt2img", txt2img, Txt2Img),
    ("POST", "/sdapi/v1/img2img", img2img, Img2Img),
    ("GET", "/sdapi/v1/progress", progress, None),
    ("POST", "/sdapi/v1/interrupt", interrupt, None),
    ("GET", "/sdapi/v1/sd-models", sd_models, None),
    ("GET", "/sdapi/v1/samplers", samplers, None),
    ("GET", "/sdapi/v1/scripts", scripts, None),
    ("GET", "/sdapi/v1/options", get_options, None),
    ("POST", "/sdapi/v1/options", set_options, "json"),
    ("GET", "/sdapi/v1/loras", loras, None),
    ("POST", "/sdapi/v1/refresh-loras", refresh_loras, None),
]
