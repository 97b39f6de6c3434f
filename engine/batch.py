"""One request over a folder of pictures (the ControlNet extension's batch mode): every picture
becomes one unit's map in turn, through that unit's annotator, while the other units stay as
they are.

- Inputs: the folder's files in sorted name order (not its subfolders). A file that is not a
  picture is reported and skipped. Input k of the pictures runs at the request's seed + k
  (a seed of -1 draws one base seed for the run).
- Outputs go to a folder of the batch's own, `<outputs>/batches/<input folder>-<key>/`, named
  after their inputs (`sketch.png`; with batch_size > 1 also `sketch-1.png` ...), each PNG with
  its own recipe. Pictures of another aspect ratio are fitted by the unit's resize mode.
- Re-running skips work already done. `<key>` is 8 hex digits of the SHA-256 of the request's
  recipe with the batch unit's map and the seed left out, so a changed prompt, unit or size
  writes to a new folder and never over an earlier batch. Inside the folder an input is skipped
  when all its outputs exist and the recipe stored in each equals the one this input makes now
  (its map and seed included; with seed -1 any seed counts as equal). So an edited input picture
  is made again, and an interrupted run resumes where it stopped: a picture cut short by the stop
  is not saved.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, UnidentifiedImageError

from . import limits
from .generate import generate
from .loading.paths import outputs_dir
from .outputs import encode_png, infotext, read_recipe_text
from .values import GenerationRequest, annotate


@dataclass(frozen=True)
class BatchItem:
    """What became of one file of the folder: "made", "skipped" (its outputs were there) or
    "not a picture" / "failed" with the reason in `message`."""

    source: Path
    status: str
    outputs: tuple = ()
    seed: int | None = None
    message: str = ""

    def line(self) -> str:
        done = ", ".join(p.name for p in self.outputs)
        said = self.message and self.message != self.status     # "not a picture (not a picture)" says it twice
        return f"{self.source.name}: {self.status}" + (f" -> {done}" if done else "") + \
            (f" ({self.message})" if said else "")


@dataclass
class BatchResult:
    folder: Path                              # where the outputs are
    items: list = field(default_factory=list)
    interrupted: bool = False
    seed: int = 0                             # the base seed (drawn when the request's was -1)

    def count(self, status: str) -> int:
        return sum(item.status == status for item in self.items)


def batch_folder(request: GenerationRequest, unit_index: int, inputs: Path, root: Path | None = None) -> Path:
    """The batch's own output folder (the module docstring says how it is keyed)."""
    recipe = json.loads(request.to_json())["request"]
    recipe["seed"] = None
    recipe["units"][unit_index]["image"] = None
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:8]
    return (root or outputs_dir() / "batches") / f"{Path(inputs).resolve().name}-{digest}"


def _pictures(folder: Path) -> tuple[list, list]:
    """(pictures [(path, array)], reports for the files that are not pictures), in name order."""
    pictures, others = [], []
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        try:
            with Image.open(path) as im:
                im.load()
                pictures.append((path, np.asarray(im.convert("RGB"))))
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
            reason = "not a picture" if isinstance(e, UnidentifiedImageError) else f"unreadable: {e}"
            others.append(BatchItem(path, "not a picture", message=reason))
    return pictures, others


def _names(source: Path, batch_size: int) -> list[str]:
    return [source.stem + ("" if n == 0 else f"-{n}") + ".png" for n in range(batch_size)]


def _done_already(paths: list[Path], request: GenerationRequest, seeds: list[int], any_seed: bool) -> bool:
    for path, seed in zip(paths, seeds):
        if not path.is_file():
            return False
        try:
            stored = json.loads(read_recipe_text(path))
        except (ValueError, OSError):
            return False
        wanted = json.loads(request.to_json(seed=seed))
        if not isinstance(stored.get("request"), dict):
            return False
        ignored = (["seed"] if any_seed else []) + (["cfg_scale"] if request.cfg_scale is None else [])
        for recipe in (stored, wanted):   # a stored recipe holds them resolved: the drawn seed, the scale used
            for key in ignored:
                recipe["request"].pop(key, None)
                if key == "seed":
                    recipe.pop("seed", None)
        if stored != wanted:
            return False
    return True


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_bytes(data)
    os.replace(tmp, path)     # a reader, or a run cut off mid-write, never sees half a file


def run_batch(request: GenerationRequest, folder, unit_index: int, out_dir=None, on_step=None,
              on_item: Callable[[BatchItem], object] | None = None, stop=None, manager=None) -> BatchResult:
    """Run `request` once per picture in `folder`, each as the map of `request.units[unit_index]`.

    on_step(step, total, preview) counts over the whole batch (the pictures still to make);
    on_item(BatchItem) after each file; `stop` (a threading.Event) ends the batch after the
    current step, keeping what is finished. ValueError for a folder or unit that cannot run."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise ValueError(f"the batch folder {str(folder)!r} is not a folder; give a folder of pictures")
    if not isinstance(unit_index, int) or not 0 <= unit_index < len(request.units):
        raise ValueError(f"batch unit {unit_index!r} does not exist: the request has {len(request.units)} unit(s), "
                         f"numbered from 0")
    unit = request.units[unit_index]
    base = request.seed if request.seed >= 0 else random.randrange(limits.MAX_SEED - 2**20)
    out = Path(out_dir) if out_dir is not None else batch_folder(request, unit_index, folder)
    result = BatchResult(out, seed=base)
    pictures, others = _pictures(folder)
    for item in others:
        result.items.append(item)
        if on_item:
            on_item(item)
    plans = []
    for k, (path, picture) in enumerate(pictures):
        seed = (base + k) % (limits.MAX_SEED + 1)
        try:
            image = picture if unit.annotator is None else annotate(unit.annotator, picture, unit.annotator_params)
            units = list(request.units)
            units[unit_index] = replace(unit, image=image)
            run = request.replace(units=tuple(units), seed=seed)
        except ValueError as e:
            plans.append((path, None, seed, str(e)))
            continue
        plans.append((path, run, seed, ""))
    todo = []
    for path, run, seed, error in plans:
        targets = [out / n for n in _names(path, request.batch_size)]
        seeds = [(seed + n) % (limits.MAX_SEED + 1) for n in range(request.batch_size)]
        if run is not None and _done_already(targets, run, seeds, any_seed=request.seed < 0):
            item = BatchItem(path, "skipped", tuple(targets), seed, "made before with this recipe")
        elif run is None:
            item = BatchItem(path, "failed", seed=seed, message=error)
        else:
            todo.append((path, run, targets))
            continue
        result.items.append(item)
        if on_item:
            on_item(item)
    _make(todo, result, on_step, on_item, stop, manager)
    return result


def _make(todo: list, result: BatchResult, on_step, on_item, stop, manager) -> None:
    per_picture = [None]
    for k, (path, run, targets) in enumerate(todo):
        def step(i, total, preview, k=k):
            per_picture[0] = per_picture[0] or total
            return on_step(k * per_picture[0] + i, len(todo) * per_picture[0], preview) if on_step else None
        r = generate(run, on_step=step, stop=stop, save=False, manager=manager)
        if r.interrupted:
            result.interrupted = True
            break
        result.folder.mkdir(parents=True, exist_ok=True)
        recipe = json.loads(r.recipe)
        resolved = run.replace(seed=r.seeds[0], cfg_scale=recipe["request"]["cfg_scale"])
        size = (run.width, run.height) if run.width and run.height else r.images[0].size
        for image, seed, target in zip(r.images, r.seeds, targets):
            _write(target, encode_png(image, resolved.to_json(seed=seed), infotext(resolved, seed, *size)))
        item = BatchItem(path, "made", tuple(targets), r.seeds[0])
        result.items.append(item)
        if on_item:
            on_item(item)
        if stop is not None and stop.is_set():
            result.interrupted = True
            break
