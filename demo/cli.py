"""The demo's command line: `launch.py train-demo ...` and `launch.py study ...` call
`main([command, *args])`; `launch.py train ...` comes here too, so the trainer sees the demo's
`world` dataset, and goes on to engine.training.cli.

    train-demo [--max-minutes 8] [--stage backbone]
    study training --kind scribble --steps 2000 --out runs/study
    study sweeps --kinds scribble,canny --seeds 8 --out runs/study
"""
from __future__ import annotations

import argparse
import os
import sys

from engine.training import cli as training_cli

from . import studies
from .build import KINDS, train_demo


def demo_main(args: list[str]) -> int:
    p = argparse.ArgumentParser(prog="launch.py train-demo",
                                description="Rebuild the embedded demo model (models/demo) from a fixed seed.")
    p.add_argument("--out", default="models/demo")
    p.add_argument("--work", default="models/.cache/demo-training", help="checkpoints between calls")
    p.add_argument("--max-minutes", type=float, default=8.0, help="each call stops by then; call again to resume")
    p.add_argument("--stage", action="append", default=None, help="only these stages (repeatable)")
    p.add_argument("--workers", type=int, default=None,
                   help="data loader processes (default: one per CPU core beyond the first, at most 8)")
    p.add_argument("--tiny", action="store_true", help="the same pipeline at test size, for a CPU smoke run")
    p.add_argument("--extend", default=None, metavar="FOLDER",
                   help="continue an earlier build (e.g. models/demo): keep its VAE, train its backbone on "
                        "from its step count up to the plan's steps, then the ControlNets")
    a = p.parse_args(args)
    cores = os.cpu_count() or 1
    a.workers = min(8, max(0, cores - 1)) if a.workers is None else min(a.workers, cores)
    note = gpu_note(a.tiny)
    if note:
        print(note, file=sys.stderr, flush=True)
    try:
        done = train_demo(a.out, a.work, a.max_minutes, a.stage, tiny=a.tiny, workers=a.workers,
                          extend=a.extend)
    except ValueError as e:
        print(f"train-demo: {e}", file=sys.stderr)
        return 2
    return 0 if done else 3


def gpu_note(tiny: bool) -> str | None:
    """What a CPU-only machine is told before the build starts: the plan is a GPU's."""
    import torch
    if tiny or torch.cuda.is_available():
        return None
    # models/demo/manifest.json: the depth net's 1200 steps took 1225 s on a 2-core CPU, the
    # backbone 1312 s on an H100; the CPU plan's ControlNets are 8100 steps.
    return ("train-demo needs a GPU: no CUDA device here. On a 2-core CPU the ControlNets alone take about "
            "1 s a step, some 2.5 hours for the CPU plan's 8100 steps, and the backbone (22 minutes on an "
            "H100) far longer; each call stops after --max-minutes (call again to resume). "
            "--tiny runs the same pipeline at test size in minutes.")


def _study_parser() -> argparse.ArgumentParser:
    T = studies.TrainingStudy   # the study's own defaults, so the two cannot drift
    p = argparse.ArgumentParser(prog="launch.py study", description="Measure the paper's claims on the demo model.")
    sub = p.add_subparsers(dest="study", required=True)
    t = sub.add_parser("training", help="three runs: prompt dropout 0.5 / 0, middle block first; fidelity curves")
    t.add_argument("--kind", default=T.kind)
    t.add_argument("--steps", type=int, default=T.steps, help="steps of each run")
    t.add_argument("--out", required=True, help="study folder: runs/<name>/, training.json, training.png")
    t.add_argument("--backbone", default=T.backbone, help="backbone source: demo, a diffusers folder, a file")
    t.add_argument("--batch-size", type=int, default=T.batch_size)
    t.add_argument("--lr", type=float, default=T.learning_rate)
    t.add_argument("--timesteps", choices=("uniform", "cubic"), default=T.timesteps)
    t.add_argument("--workers", type=int, default=T.workers, help="data loader processes")
    t.add_argument("--seed", type=int, default=T.seed)
    t.add_argument("--eval-every", type=int, default=T.eval_every, help="default: steps // 20")
    t.add_argument("--eval-count", type=int, default=T.eval_count, help="held-out items (seeds 0..N-1) per evaluation")
    t.add_argument("--eval-steps", type=int, default=T.eval_steps)
    t.add_argument("--threshold", type=float, default=T.threshold, help="the fidelity the speed-up is measured to")
    t.add_argument("--max-minutes", type=float, default=8.0, help="each call stops by then; call again to resume")
    t.add_argument("--cpu", action="store_true")
    t.add_argument("--parallel", action="store_true", help="the three runs at once, one process each (a GPU)")
    s = sub.add_parser("sweeps", help="fidelity as a unit's weight and end change (inference only)")
    s.add_argument("--kinds", default=",".join(KINDS), help="comma-separated demo ControlNets")
    s.add_argument("--seeds", type=int, default=8, help="world scenes and noise seeds 0..N-1")
    s.add_argument("--out", required=True, help="folder for sweeps.json, sweep_weight.png, sweep_end.png")
    s.add_argument("--steps", type=int, default=20)
    s.add_argument("--cfg", type=float, help="default: the backbone's recommended scale (the demo's: 3)")
    s.add_argument("--cpu", action="store_true")
    r = sub.add_parser("reference", help="how often a reference unit carries its picture's colour (issue 25)")
    r.add_argument("--seeds", type=int, default=20, help="seeds per colour (1000, 1001, ...)")
    r.add_argument("--steps", type=int, default=10)
    r.add_argument("--out", required=True, help="folder for reference.json and reference.md (the table)")
    return p


def study_main(args: list[str]) -> int:
    a = _study_parser().parse_args(args)
    try:
        if a.study == "reference":
            from . import reference_study
            reference_study.main(a.out, seeds=a.seeds, steps=a.steps)
            return 0
        if a.study == "sweeps":
            kinds = tuple(k.strip() for k in a.kinds.split(",") if k.strip())
            studies.sweeps_study(studies.SweepStudy(out=a.out, kinds=kinds, seeds=a.seeds, steps=a.steps,
                                                    cfg_scale=a.cfg, cpu=a.cpu))
            return 0
        study = studies.TrainingStudy(
            out=a.out, kind=a.kind, steps=a.steps, backbone=a.backbone, batch_size=a.batch_size,
            learning_rate=a.lr, timesteps=a.timesteps, workers=a.workers, seed=a.seed, eval_every=a.eval_every, eval_count=a.eval_count,
            eval_steps=a.eval_steps, threshold=a.threshold, cpu=a.cpu, parallel=a.parallel,
            max_seconds=None if a.max_minutes is None else a.max_minutes * 60.0)
        return 0 if studies.training_study(study) is not None else 3
    except ValueError as e:
        print(f"study: {e}", file=sys.stderr)
        return 2


COMMANDS = {"train": training_cli.train_main, "train-demo": demo_main, "study": study_main}


def main(argv: list[str]) -> int:
    """argv[0] is "train", "train-demo" or "study"; the rest are that command's options."""
    if not argv or argv[0] not in COMMANDS:
        print("usage: launch.py train ... | launch.py train-demo ... | launch.py study training|sweeps ...",
              file=sys.stderr)
        return 2
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
