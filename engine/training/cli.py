"""Command line of training: `launch.py train ...` and `launch.py train-demo ...` call
`main([command, *args])`.

    train --backbone demo --kind scribble --data world --output runs/scribble --steps 2000
    train --backbone path/to/sd15 --kind canny --data pics/ --annotator canny --processes 2
    train-demo [--max-minutes 8] [--stage backbone]
    study training --kind scribble --steps 2000 --out runs/study
    study sweeps --kinds scribble,canny --seeds 8 --out runs/study

`--processes N` (N > 1) starts N processes through accelerate's launcher (one per GPU, or
CPU processes with --cpu); each draws its own slice of every step's batch.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys

from .controlnet import TrainConfig
from .demo import KINDS


def _train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="launch.py train", description="Train a ControlNet on a locked backbone.")
    p.add_argument("--backbone", default="demo", help="backbone source: demo, a diffusers folder, a file, a hub id")
    p.add_argument("--kind", required=True, help="condition: scribble, canny, openpose, seg, depth, ...")
    p.add_argument("--data", default="world", help="'world' (the synthetic world) or a folder of pictures + .txt captions")
    p.add_argument("--annotator", default=None, help="folder data: make control maps with this annotator")
    p.add_argument("--control-dir", default=None, help="folder data: read control maps from this folder (same stems)")
    p.add_argument("--output", required=True, help="run folder: checkpoints, fidelity.csv/png, controlnet/")
    p.add_argument("--resolution", type=int, default=None, help="training size (default: the backbone's native size)")
    p.add_argument("--batch-size", type=int, default=4, help="per process")
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--prompt-dropout", type=float, default=0.5, help="probability a caption becomes empty")
    p.add_argument("--mid-only-steps", type=int, default=0,
                   help="small-compute mode: connect only the middle block for these first steps")
    p.add_argument("--checkpoint-every", type=int, default=500)
    p.add_argument("--eval-every", type=int, default=0, help="fidelity curve every N steps (0: none)")
    p.add_argument("--eval-count", type=int, default=8)
    p.add_argument("--eval-steps", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mixed-precision", default="auto", choices=("auto", "no", "bf16", "fp16"))
    p.add_argument("--max-minutes", type=float, default=None, help="stop (checkpointed) after this long; rerun resumes")
    p.add_argument("--workers", type=int, default=0, help="data loader processes")
    p.add_argument("--processes", type=int, default=1, help="training processes through accelerate")
    p.add_argument("--cpu", action="store_true", help="train on the CPU even if a GPU is present")
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--timesteps", choices=("uniform", "cubic"), default="uniform",
                   help="how training timesteps are drawn: uniform (the paper) or cubic (more noisy steps)")
    p.add_argument("--init-from", default=None, help="start from this ControlNet folder instead of a copy of the UNet")
    return p


def config_from_args(a: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        backbone=a.backbone, output_dir=a.output, kind=a.kind, data=a.data, annotator=a.annotator,
        control_dir=a.control_dir, resolution=a.resolution, batch_size=a.batch_size, learning_rate=a.lr,
        steps=a.steps, prompt_dropout=a.prompt_dropout, mid_only_steps=a.mid_only_steps,
        checkpoint_every=a.checkpoint_every, eval_every=a.eval_every, eval_count=a.eval_count,
        eval_steps=a.eval_steps, seed=a.seed, mixed_precision=a.mixed_precision,
        max_seconds=None if a.max_minutes is None else a.max_minutes * 60.0, workers=a.workers, cpu=a.cpu,
        log_every=a.log_every, init_from=a.init_from, timesteps=a.timesteps)


def launch_processes(n: int, args: list[str], cpu: bool) -> int:
    """Run `train args` in n processes through `accelerate launch`; returns its exit code."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(n), "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no"]
    # accelerate runs several CPU processes only through mpirun; its multi-GPU launcher
    # (torch.distributed.run) starts them just as well, and each process then picks gloo on the CPU.
    cmd += ["--multi_gpu"]
    cmd += ["-m", "engine.training.cli", "train", *args]
    env = dict(os.environ, CNSTUDIO_TRAIN_CHILD="1")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.call(cmd, env=env, cwd=root)


def _strip_processes(args: list[str]) -> list[str]:
    out, skip = [], False
    for i, a in enumerate(args):
        if skip:
            skip = False
            continue
        if a == "--processes":
            skip = True
            continue
        if a.startswith("--processes="):
            continue
        out.append(a)
    return out


def train_main(args: list[str]) -> int:
    a = _train_parser().parse_args(args)
    try:
        cfg = config_from_args(a)
    except ValueError as e:
        print(f"train: {e}", file=sys.stderr)
        return 2
    if a.processes < 1:
        print("train: --processes must be 1 or more", file=sys.stderr)
        return 2
    if a.processes > 1 and not os.environ.get("CNSTUDIO_TRAIN_CHILD"):
        return launch_processes(a.processes, _strip_processes(args), a.cpu)
    from .controlnet import train
    final = train(cfg)
    print(f"ControlNet: {final}")
    return 0


def demo_main(args: list[str]) -> int:
    p = argparse.ArgumentParser(prog="launch.py train-demo",
                                description="Rebuild the embedded demo model (models/demo) from a fixed seed.")
    p.add_argument("--out", default="models/demo")
    p.add_argument("--work", default="models/.cache/demo-training", help="checkpoints between calls")
    p.add_argument("--max-minutes", type=float, default=8.0, help="each call stops by then; call again to resume")
    p.add_argument("--stage", action="append", default=None, help="only these stages (repeatable)")
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--tiny", action="store_true", help="the same pipeline at test size, for a CPU smoke run")
    p.add_argument("--extend", default=None, metavar="FOLDER",
                   help="continue an earlier build (e.g. models/demo): keep its VAE, train its backbone on "
                        "from its step count up to the plan's steps, then the ControlNets")
    a = p.parse_args(args)
    from .demo import train_demo
    try:
        done = train_demo(a.out, a.work, a.max_minutes, a.stage, tiny=a.tiny, workers=a.workers,
                          extend=a.extend)
    except ValueError as e:
        print(f"train-demo: {e}", file=sys.stderr)
        return 2
    return 0 if done else 3


def _study_parser() -> argparse.ArgumentParser:
    from .studies import TrainingStudy as T   # the study's own defaults, so the two cannot drift
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
    return p


def study_main(args: list[str]) -> int:
    a = _study_parser().parse_args(args)
    from . import studies
    try:
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


COMMANDS = {"train": train_main, "train-demo": demo_main, "study": study_main}


def main(argv: list[str]) -> int:
    """argv[0] is "train", "train-demo" or "study"; the rest are that command's options."""
    if not argv or argv[0] not in COMMANDS:
        print("usage: launch.py train ... | launch.py train-demo ... | launch.py study training|sweeps ...",
              file=sys.stderr)
        return 2
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
