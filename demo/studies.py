"""The paper's claims, measured on the demo world (issue 7): `launch.py study training|sweeps`.

training: three short ControlNet runs from one seed on one locked backbone, differing only in
what the paper says matters: (a) prompt dropout 0.5 (the baseline), (b) no dropout, (c) dropout
0.5 with the middle block alone for the first quarter (small-compute mode). Each run writes its
own fidelity curve; the report compares empty-prompt fidelity (a vs b), steps to the fidelity
threshold (a vs c; the paper reports ~1.6x) and the largest jump of each curve ("sudden
convergence"). Runs resume in stages, like train-demo.

sweeps: inference only, on the installed demo ControlNets: fidelity as a unit's weight goes
0 -> 2 and as its end goes 0.2 -> 1.0, the curves an artist chooses them by.
"""
from __future__ import annotations

import csv
import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from engine import ControlUnit, GenerationRequest, ModelManager, fidelity, generate, loading
from engine.training import data, plot
from engine.training.controlnet import TrainConfig, load_parts, train, vae_scale
from engine.training.evaluate import eval_items, generate_batch, mean_fidelity

from . import dataset, draw, world
from .build import GPU_NET, KINDS

# name -> (prompt dropout, whether the middle block trains alone first)
RUNS = {"baseline": (0.5, False), "no_dropout": (0.0, False), "mid_first": (0.5, True)}
WEIGHTS = tuple(i * 0.25 for i in range(9))      # 0, 0.25, ..., 2.0 (end 1.0)
ENDS = (0.2, 0.4, 0.6, 0.8, 1.0)                 # start 0, weight 1.0
PAPER_SPEEDUP = 1.6
# A flat curve scored on 8 scenes wobbles by up to 0.05 between evaluations (the H100 study of
# 2026-11-23: seg from a copy of the UNet, 3000 steps, 0.00-0.05); a jump must clear that twice.
MIN_SUDDEN_RISE = 0.1
SUDDEN_RULE = (f"a rise of at least {MIN_SUDDEN_RISE} within one or two evaluation intervals, after a flat start "
               "(the points before it span less than a quarter of the rise), that holds (the curve stays above "
               "the rise's midpoint afterwards), on a curve of at least four intervals")
# Fidelity levels the middle-block-first speed-up is also read at: one threshold's ratio rests on
# two noisy crossings, a row of levels shows whether the speed-up holds along the climb.
SPEEDUP_LEVELS = (0.1, 0.15, 0.2, 0.25, 0.3, 0.4)
# A run's config fields that may change between calls without changing what it learns.
RESUMABLE_FIELDS = ("max_seconds", "workers", "log_every", "output_dir")


@dataclass(frozen=True)
class TrainingStudy:
    out: str
    kind: str = "scribble"
    steps: int = 2000
    backbone: str = "demo"
    batch_size: int = GPU_NET.batch      # the demo's GPU recipe
    learning_rate: float = GPU_NET.lr
    timesteps: str = GPU_NET.timesteps
    workers: int = 8
    seed: int = 10                       # the demo's ControlNets train from seed 10
    eval_every: int | None = None        # default: 20 intervals per curve
    eval_count: int = 16
    eval_steps: int = 20
    threshold: float = 0.5
    max_seconds: float | None = None
    cpu: bool = False
    # The three runs at once, one process each: the demo's small nets leave a GPU mostly idle,
    # so three in parallel take little longer than one. Same configs, same curves.
    parallel: bool = False

    def __post_init__(self):
        if self.steps < 4:   # else the middle-block-first phase (steps // 4) would be empty
            raise ValueError(f"a training study needs at least 4 steps, got {self.steps}")

    def config(self, name: str) -> TrainConfig:
        dropout, mid_first = RUNS[name]
        return TrainConfig(
            backbone=self.backbone, output_dir=str(Path(self.out) / "runs" / name), kind=self.kind,
            batch_size=self.batch_size, learning_rate=self.learning_rate, steps=self.steps,
            prompt_dropout=dropout, mid_only_steps=self.steps // 4 if mid_first else 0,
            eval_every=self.eval_every or max(1, self.steps // 20), eval_count=self.eval_count,
            eval_steps=self.eval_steps, seed=self.seed, workers=self.workers, cpu=self.cpu,
            fidelity_threshold=self.threshold, max_seconds=self.max_seconds, timesteps=self.timesteps)


def finished(cfg: TrainConfig) -> bool:
    out = Path(cfg.output_dir)
    return (out / "summary.json").is_file() and (out / "controlnet" / "config.json").is_file()


def check_same_settings(cfg: TrainConfig) -> None:
    """Refuse to resume (or skip) a run folder made with other settings: its curve would then
    mix two experiments, or a finished run of another length would be reported as this one."""
    saved = Path(cfg.output_dir) / "train_config.json"
    if not saved.is_file():
        return
    old, new = json.loads(saved.read_text()), asdict(cfg)
    differ = sorted(k for k in new if k not in RESUMABLE_FIELDS and old.get(k) != new[k])
    if differ:
        raise ValueError(f"{cfg.output_dir} was trained with other settings ({', '.join(differ)}); "
                         "use another --out or delete that folder")


def read_curve(folder: str | Path) -> list[tuple[int, float]]:
    """(step, fidelity) points of a run's fidelity.csv (points with no score are left out)."""
    with (Path(folder) / "fidelity.csv").open() as f:
        return [(int(r["step"]), float(r["fidelity"])) for r in csv.DictReader(f) if r["fidelity"] != ""]


def steps_to_threshold(curve: list[tuple[int, float]], threshold: float) -> int | None:
    """The first evaluated step at or above the threshold (None: never reached)."""
    return next((s for s, v in sorted(curve) if v >= threshold), None)


def crossing(curve: list[tuple[int, float]], threshold: float) -> float | None:
    """Where the curve first crosses the threshold, linearly between the two evaluations around
    it: finer than the evaluation spacing, so a ratio of two runs is less quantised."""
    pts = sorted(curve)
    for (s0, v0), (s1, v1) in zip([(None, None)] + pts[:-1], pts):
        if v1 >= threshold:
            return float(s1) if s0 is None or v1 == v0 else s0 + (threshold - v0) / (v1 - v0) * (s1 - s0)
    return None


def largest_jump(curve: list[tuple[int, float]]) -> dict | None:
    """The largest rise within one or two consecutive evaluation intervals, and whether it is a
    sudden convergence: a rise of at least MIN_SUDDEN_RISE after a flat start (everything before
    it moved less than a quarter of the rise), that holds (the curve stays above the rise's
    midpoint afterwards), on a curve of at least four intervals. Two intervals, because a jump
    seldom falls inside one evaluation spacing; a flat start, because a steady climb also makes
    large two-interval rises; and the later, slower growth does not count against the jump."""
    pts = sorted(curve)
    if len(pts) < 2:
        return None
    spans = [(pts[j][1] - pts[i][1], i, j) for i in range(len(pts) - 1) for j in (i + 1, i + 2) if j < len(pts)]
    rise, i, j = max(spans, key=lambda r: (r[0], -r[1], -r[2]))     # the earliest, shortest of equal rises
    before = [v for _, v in pts[:i + 1]]
    flat_before = max(before) - min(before)
    gain = max(v for _, v in pts) - pts[0][1]
    after = [v for _, v in pts[j:]]
    holds = float(np.mean(after)) >= pts[i][1] + rise / 2
    return {"from_step": pts[i][0], "to_step": pts[j][0], "rise": rise, "flat_before": flat_before,
            "share_of_gain": rise / gain if gain > 0 else 0.0, "holds": holds,
            "sudden": bool(len(pts) >= 5 and i >= 1 and rise >= MIN_SUDDEN_RISE and flat_before < rise / 4
                           and holds)}


def _unfinished(study: TrainingStudy) -> list[tuple[str, TrainConfig]]:
    """The runs still to train (or resume), after refusing any folder made with other settings."""
    todo = []
    for name in RUNS:
        cfg = study.config(name)
        check_same_settings(cfg)
        if finished(cfg):
            print(f"study: run {name} already finished; skipped", flush=True)
        else:
            todo.append((name, cfg))
    return todo


def _run_all(study: TrainingStudy, parts: dict, started: float) -> bool:
    """Train (or resume) each run within the time budget; True when all three are done."""
    for name, cfg in _unfinished(study):
        left = None if study.max_seconds is None else study.max_seconds - (time.monotonic() - started)
        if left is not None and left < 30:
            print(f"study: time budget used; run again to continue from run {name}", flush=True)
            return False
        print(f"study: run {name} (prompt_dropout {cfg.prompt_dropout}, mid_only_steps {cfg.mid_only_steps})",
              flush=True)
        if train(replace(cfg, max_seconds=left), parts=parts).name != "controlnet":
            print(f"study: run {name} paused at its time limit; run again to resume", flush=True)
            return False
    return True


def _train_run(cfg: TrainConfig) -> None:
    # A spawned process starts bare: importing this module (demo) registers the world dataset.
    train(cfg)


def _run_parallel(study: TrainingStudy) -> bool:
    """The unfinished runs in parallel processes (spawned: CUDA cannot be forked); True when all
    three are done. Each resumes, and pauses at the time budget, like a run on its own."""
    import multiprocessing
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_train_run, args=(cfg,), name=name) for name, cfg in _unfinished(study)]
    for proc in procs:
        print(f"study: run {proc.name} started in its own process", flush=True)
        proc.start()
    for proc in procs:
        proc.join()
        if proc.exitcode != 0:
            raise RuntimeError(f"study: run {proc.name} failed (exit code {proc.exitcode}); its log is above")
    return all(finished(study.config(name)) for name in RUNS)


def empty_prompt_fidelity(study: TrainingStudy, parts: dict) -> dict:
    """Each run's final ControlNet (and no ControlNet at all) with the prompt "", on the held-out
    items the curves use (seeds 0..eval_count-1): what the net reads from the map alone."""
    from diffusers import ControlNetModel

    cfg = study.config("baseline")
    size = int(parts["unet"].config.sample_size) * vae_scale(parts["vae"])
    items = eval_items(data.datasets(cfg.data, parts["tokenizer"], size, cfg.kind, cfg.seed, cfg.annotator,
                                     cfg.control_dir)[1], cfg.eval_count)
    device = parts["unet"].device
    out = {"seeds": [it.seed for it in items], "eval_steps": cfg.eval_steps, "cfg_scale": cfg.eval_cfg}
    for name in [None, *RUNS]:
        net = None if name is None else ControlNetModel.from_pretrained(
            str(Path(study.config(name).output_dir) / "controlnet"), torch_dtype=torch.float32).to(device)
        images = generate_batch(parts, net, items, cfg.eval_steps, cfg.eval_cfg, size=size, prompt="")
        out[name or "no_control"] = mean_fidelity(study.kind, images, items)
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def speedup_by_level(baseline: list, mid_first: list, levels=SPEEDUP_LEVELS) -> list[dict]:
    """Where each curve first crosses each level, and baseline / middle-block-first (> 1: the
    middle block first got there in fewer steps; None where either never got there)."""
    rows = []
    for level in levels:
        a, c = crossing(baseline, level), crossing(mid_first, level)
        rows.append({"level": level, "baseline": a, "mid_first": c, "ratio": _ratio(a, c)})
    return rows


def training_report(study: TrainingStudy, parts: dict) -> dict:
    runs = {}
    for name in RUNS:
        cfg = study.config(name)
        curve = read_curve(cfg.output_dir)
        summary = json.loads((Path(cfg.output_dir) / "summary.json").read_text())
        runs[name] = {"folder": cfg.output_dir, "prompt_dropout": cfg.prompt_dropout,
                      "mid_only_steps": cfg.mid_only_steps, "curve": [list(p) for p in curve],
                      "final_fidelity": curve[-1][1] if curve else None,
                      "steps_to_threshold": steps_to_threshold(curve, study.threshold),
                      "crossing_step": crossing(curve, study.threshold),
                      "largest_jump": largest_jump(curve), "seconds": summary["seconds"]}
    per_run = ("output_dir", "max_seconds", "prompt_dropout", "mid_only_steps")
    base = {k: v for k, v in asdict(study.config("baseline")).items() if k not in per_run}
    return {
        "kind": study.kind, "backbone": study.backbone, "threshold": study.threshold, "settings": base,
        "device": torch.cuda.get_device_name(0) if parts["unet"].device.type == "cuda" else "CPU",
        "runs": runs,
        "empty_prompt_fidelity": empty_prompt_fidelity(study, parts),
        # >1: the middle-block-first run reached the threshold in fewer steps. From the
        # interpolated crossings; the evaluated steps are kept beside them.
        "mid_first_speedup": {"baseline_steps": runs["baseline"]["steps_to_threshold"],
                              "mid_first_steps": runs["mid_first"]["steps_to_threshold"],
                              "ratio": _ratio(runs["baseline"]["crossing_step"], runs["mid_first"]["crossing_step"]),
                              "ratio_evaluated_steps": _ratio(runs["baseline"]["steps_to_threshold"],
                                                              runs["mid_first"]["steps_to_threshold"]),
                              "paper": PAPER_SPEEDUP,
                              "by_level": speedup_by_level(runs["baseline"]["curve"], runs["mid_first"]["curve"])},
        "sudden_rule": SUDDEN_RULE,
    }


def training_study(study: TrainingStudy) -> dict | None:
    """Run the three trainings (resuming), then write training.json/png; None while unfinished."""
    started = time.monotonic()
    cuda = torch.cuda.is_available() and not study.cpu
    if study.parallel and not _run_parallel(study):   # each process loads its own backbone
        return None
    parts = load_parts(study.backbone, "cuda" if cuda else "cpu")   # one locked backbone for all runs
    if not study.parallel and not _run_all(study, parts, started):
        return None
    report = training_report(study, parts)
    out = Path(study.out)
    (out / "training.json").write_text(json.dumps(report, indent=1))
    plot.line_chart({n: [tuple(p) for p in r["curve"]] for n, r in report["runs"].items()}, out / "training.png",
                    title=f"{study.kind} ControlNet: dropout 0.5 / 0 / middle block first", ylabel="fidelity",
                    y_range=(0.0, 1.0), hline=study.threshold)
    print(f"study: wrote {out / 'training.json'} and {out / 'training.png'}", flush=True)
    return report


@dataclass(frozen=True)
class SweepStudy:
    out: str
    kinds: tuple[str, ...] = KINDS
    seeds: int = 8
    steps: int = 20
    cfg_scale: float | None = None       # None: the request's default, the backbone's recommended
    cpu: bool = False

    def __post_init__(self):
        if self.seeds < 1 or not self.kinds:
            raise ValueError("a sweep needs at least one seed and one kind")


def world_case(kind: str, seed: int, size: int) -> tuple[str, np.ndarray]:
    """Scene `seed` of the world (a figure for pose): its caption and its `kind` map, made the
    way that ControlNet was trained to read it."""
    sc = world.scene(seed, kind=dataset.WORLD_SCENES.get(kind))
    return sc.caption, dataset.world_map(kind, sc, draw.image(sc, size), size, key=seed)


def _fidelities(manager, kind: str, cases: list, study: SweepStudy, weight: float, end: float) -> list:
    """One picture per seed. The engine's batch_size shares one prompt and one map across the
    batch, and each seed here has its own scene, so each is its own request."""
    scores = []
    for seed, (caption, cmap) in enumerate(cases):
        unit = ControlUnit(f"demo:{kind}", cmap, weight=weight, start=0.0, end=end)
        req = GenerationRequest(backbone="demo", prompt=caption, units=(unit,), steps=study.steps,
                                cfg_scale=study.cfg_scale, seed=seed, sampler="unipc")
        image = np.asarray(generate(req, manager=manager, save=False).images[0])
        scores.append(fidelity.score(kind, image, cmap))
    return scores


def _mean(scores: list) -> float | None:
    known = [s for s in scores if s is not None]
    return float(np.mean(known)) if known else None


def sweep_kind(manager, kind: str, study: SweepStudy, size: int) -> dict:
    cases = [world_case(kind, s, size) for s in range(study.seeds)]
    done: dict[tuple[float, float], list] = {}     # weight 1 / end 1 is in both sweeps: made once

    def point(weight: float, end: float) -> list:
        if (weight, end) not in done:
            done[weight, end] = _fidelities(manager, kind, cases, study, weight, end)
        return done[weight, end]

    weight = [{"weight": w, "fidelity": _mean(point(w, 1.0)), "scores": point(w, 1.0)} for w in WEIGHTS]
    end = [{"end": e, "fidelity": _mean(point(1.0, e)), "scores": point(1.0, e)} for e in ENDS]
    full = end[-1]["fidelity"]
    known = [p for p in weight if p["fidelity"] is not None]
    return {"model": f"demo:{kind}", "weight": weight, "end": end,
            "best_weight": max(known, key=lambda p: p["fidelity"])["weight"] if known else None,
            # the earliest end that keeps 95% of the whole-schedule fidelity: later steps are free
            "shortest_end_within_5pct": next((p["end"] for p in end if full is not None and p["fidelity"] is not None
                                              and p["fidelity"] >= 0.95 * full), None)}


def sweeps_study(study: SweepStudy) -> dict:
    installed = {s.split(":", 1)[1] for s in loading.list_installed()["controlnets"] if s.startswith("demo:")}
    skipped = {k: f"not installed at {loading.models_dir() / 'demo' / f'controlnet-{k}'}"
               for k in study.kinds if k not in installed}
    for k, why in skipped.items():
        print(f"study: skipping {k}: {why}", flush=True)
    if len(skipped) == len(study.kinds):
        raise ValueError("none of those demo ControlNets is installed; build them with `launch.py train-demo`")
    device = "cuda" if torch.cuda.is_available() and not study.cpu else "cpu"
    manager = ModelManager(device=device)          # the GUI's path (CUDA graphs on a GPU), not compiled
    backbone = manager.backbone("demo")
    size = backbone.native_size
    if study.cfg_scale is None:     # recorded as a number, so the report says what was run
        study = replace(study, cfg_scale=backbone.cfg_scale)
    started, kinds = time.monotonic(), {}
    for k in (k for k in study.kinds if k in installed):
        print(f"study: sweeping {k}", flush=True)
        kinds[k] = sweep_kind(manager, k, study, size)
    report = {"backbone": "demo", "device": str(manager.device), "size": size, "steps": study.steps,
              "cfg_scale": study.cfg_scale, "sampler": "unipc", "seeds": list(range(study.seeds)),
              "weights": list(WEIGHTS), "ends": list(ENDS), "note": "weight 0 is the picture without control "
              "(the engine skips a unit of weight 0)", "kinds": kinds, "skipped": skipped,
              "seconds": time.monotonic() - started}
    out = Path(study.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweeps.json").write_text(json.dumps(report, indent=1))
    for axis, title in (("weight", "fidelity as the unit's weight goes 0 -> 2 (end 1.0)"),
                        ("end", "fidelity as the unit's end goes 0.2 -> 1.0 (weight 1.0)")):
        series = {k: [(p[axis], p["fidelity"]) for p in r[axis] if p["fidelity"] is not None] for k, r in kinds.items()}
        plot.line_chart(series, out / f"sweep_{axis}.png", title=title, xlabel=axis, ylabel="fidelity",
                        y_range=(0.0, 1.0))
    print(f"study: wrote {out / 'sweeps.json'}", flush=True)
    return report
