"""Command line of ControlNet training: `launch.py train ...` calls `main(["train", *args])`.

    train --backbone demo --kind scribble --data world --output runs/scribble --steps 2000
    train --backbone path/to/sd15 --kind canny --data pics/ --annotator canny --processes 2

`--data` names a registered dataset (launch.py imports `demo`, which registers `world`) or a
folder of pictures.

`--processes N` (N > 1) starts N processes through accelerate's launcher (one per GPU, or
CPU processes with --cpu); each draws its own slice of every step's batch.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys

from . import draws
from .controlnet import TrainConfig, train


def _train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="launch.py train", description="Train a ControlNet on a locked backbone.")
    p.add_argument("--backbone", default="demo", help="backbone source: demo, a diffusers folder, a file, a hub id")
    p.add_argument("--kind", required=True, help="condition: scribble, canny, openpose, seg, depth, ...")
    p.add_argument("--data", default="world", help="a registered dataset ('world': the demo's synthetic world) or a folder of pictures + .txt captions")
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
    p.add_argument("--timesteps", choices=draws.TIMESTEP_SCHEDULES, default="uniform",
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
    # each child starts from launch.py, as the parent did, so it registers the same datasets
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    cmd += [os.path.join(root, "launch.py"), "--no-install", "train", *args]
    env = dict(os.environ, CNSTUDIO_TRAIN_CHILD="1")
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
    final = train(cfg)
    print(f"ControlNet: {final}")
    return 0


def main(argv: list[str]) -> int:
    """argv[0] is "train"; the rest are its options."""
    if not argv or argv[0] != "train":
        print("usage: launch.py train ...", file=sys.stderr)
        return 2
    return train_main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
