"""Running a generation for the page: api.run in a worker thread, its steps streamed back as
progress and previews; then each unit's fidelity and a one-line summary."""
from __future__ import annotations

import html
import queue
import threading
import time
from typing import Callable, Iterator

import numpy as np

import engine
from engine import ControlUnit, GenerationRequest, GenerationResult

from . import api, catalog, estimate

PREVIEW_EVERY_S = 1.0   # decoding a preview costs a VAE pass; a few per run is plenty


def stream(request: GenerationRequest, preview_every: float = PREVIEW_EVERY_S) -> Iterator[tuple]:
    """("step", step, total, preview or None) for each step, then ("done", GenerationResult).
    The worker's exception, if any, is raised here. Closing this generator before the end (Gradio
    does when the tab closes or the request is cancelled) stops the generation within one model
    evaluation, so the queue's next job starts at once instead of after a run nobody will see."""
    return stream_call(lambda on_step, stop, emit: api.run(request, on_step, stop), preview_every)


def stream_call(call: Callable, preview_every: float = PREVIEW_EVERY_S) -> Iterator[tuple]:
    """`stream` for any run: `call(on_step, stop, emit)` runs in a worker thread and returns the
    result; what it passes to `emit(x)` comes out as ("item", x) between the steps (a batch's
    report lines)."""
    events: queue.Queue = queue.Queue()
    stop = threading.Event()
    last = [time.monotonic()]

    def on_step(step: int, total: int, preview) -> bool:
        image = None
        if step < total and time.monotonic() - last[0] >= preview_every:
            image = (np.clip(preview()[0], 0, 1) * 255).round().astype(np.uint8)
            last[0] = time.monotonic()
        events.put(("step", step, total, image))
        return not stop.is_set()

    def work() -> None:
        try:
            events.put(("done", call(on_step, stop, lambda x: events.put(("item", x)))))
        except BaseException as e:  # noqa: BLE001  (handed to the page's thread, which shows it)
            events.put(("error", e))

    threading.Thread(target=work, name="generation", daemon=True).start()
    try:
        while True:
            item = events.get()
            if item[0] == "error":
                raise item[1]
            yield item
            if item[0] == "done":
                return
    finally:
        stop.set()


def run_notes(request: GenerationRequest) -> list[str]:
    """What the status says before a run starts: a run with nothing to follow, or a long one."""
    notes = []
    prompt, units = bool(request.prompt.strip()), bool(request.active_units)
    if not prompt and not units:
        notes.append("the prompt is empty and no control unit is on: the picture is the model's own")
    elif not prompt:
        notes.append("the prompt is empty: the picture follows the control maps alone")
    elif not units:
        notes.append("no control unit is on: the picture follows the prompt alone")
    if request.enable_hr:
        size = (f"{request.hr_resize_x or 'auto'}x{request.hr_resize_y or 'auto'}"
                if request.hr_resize_x or request.hr_resize_y else f"x{request.hr_scale:g}")
        notes.append(f"hires fix: then a second pass of {request.hr_second_pass_steps or request.steps} steps "
                     f"at {size} ({request.hr_upscaler}, denoising {request.strength:g}); the steps count both")
    if any(u.model in engine.REFERENCE_MODELS for u in request.active_units):
        notes.append("a reference unit runs the UNet once more per step in its window, without the fast path")
    eager = sorted({kind for kind in map(_eager_kind, request.active_units) if kind})
    if eager:
        notes.append(f"steps with a {' or '.join(eager)} unit run without the fast path's CUDA graphs")
    width, height = request.width or 0, request.height or 0
    seconds = estimate.seconds(request.backbone, width, height, request.batch_size, request.steps)
    long_run = estimate.note(seconds)
    if long_run:
        notes.append(long_run)
    return notes


def _eager_kind(unit) -> str | None:
    """A control model the fast path does not capture, by the name the field gives its files
    (t2i-adapter_xl_openpose, controlnet-union-sdxl-1.0); bench/RESULTS.md has what it costs."""
    name = unit.model.lower()
    if "union" in name:
        return "ControlNet-Union"
    if "t2i" in name or ("adapter" in name and "ip-adapter" not in name and "ip_adapter" not in name):
        return "T2I-Adapter"
    return None


class StepTimer:
    """The time from a run's first step to its last, for estimate.record."""

    def __init__(self):
        self.first: tuple[int, float] | None = None
        self.last: tuple[int, float] | None = None

    def step(self, step: int) -> None:
        now = (step, time.monotonic())
        if self.first is None:
            self.first = now
        self.last = now

    def record(self, request: GenerationRequest, result: GenerationResult) -> None:
        if self.first is None or self.last is None or self.last[0] <= self.first[0] or not result.images:
            return
        width, height = result.images[0].size
        estimate.record(request.backbone, width, height, len(result.images), self.last[0] - self.first[0],
                        self.last[1] - self.first[1], native=request.width is None and request.height is None)


def planned_steps(request: GenerationRequest) -> int:
    """The steps the page says a run will take before the engine counts them: both passes of a hires run."""
    return request.steps + ((request.hr_second_pass_steps or request.steps) if request.enable_hr else 0)


def pass_note(request: GenerationRequest, step: int, total: int) -> str:
    """Which pass of a hires run `step` (of the engine's `total`, both passes) is in. The engine counts
    model evaluations (Heun makes two a step), so the passes split `total` in their steps' ratio."""
    if not request.enable_hr:
        return ""
    first = round(total * request.steps / planned_steps(request))
    return " · hires pass" if step > first else " · first pass"


def progress_html(step: int, total: int, note: str = "") -> str:
    pct = 0 if total <= 0 else round(100 * step / total)
    return (f'<div class="gen-progress"><div class="gen-bar" style="width:{pct}%"></div></div>'
            f'<span class="gen-step">Step {step} / {total}{html.escape(note)}</span>')


def fidelity_text(unit: ControlUnit, image: np.ndarray) -> str:
    """The fidelity meter of one unit for the first image: a score from 0 to 1, or "no judge"."""
    if not unit.enabled:
        return ""
    control_map = _as_generated(unit, image.shape[1], image.shape[0])
    score = catalog.fidelity(unit.model, image, control_map, unit.annotator, unit.annotator_params)
    if score is None:
        return "Fidelity: no judge for this kind of control"
    filled = round(score * 10)
    return f"Fidelity: **{score:.2f}** `{'█' * filled}{'░' * (10 - filled)}`"


def _as_generated(unit: ControlUnit, width: int, height: int) -> np.ndarray:
    """The unit's map fitted to the image's frame as the engine fitted it (its resize mode), at
    the map's own resolution where that is larger: a 512-px pose drawn for a 128-px picture
    loses its keypoints when shrunk, and the judges scale what they read to the picture."""
    image = np.asarray(unit.image)
    k = max(1.0, min(image.shape[0] / height, image.shape[1] / width))
    return engine.fit_map(image, round(width * k), round(height * k), unit.resize_mode)


def summary(result: GenerationResult, seconds: float) -> str:
    n = len(result.images)
    seeds = ", ".join(str(s) for s in result.seeds)
    text = (f"{'Interrupted: the picture so far' if result.interrupted else 'Done'}: {n} image{'s' * (n != 1)} "
            f"in {seconds:.1f} s · seed {seeds}")
    if result.save_seconds:
        text += f" · writing the PNGs {result.save_seconds:.2f} s"
    if result.ignored_words:
        text += " · not known to this model (ignored): " + ", ".join(result.ignored_words)
    for warning in result.warnings:
        text += f" · {warning}"
    return f'<span class="gen-done">{html.escape(text)}</span>'
