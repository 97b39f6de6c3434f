"""Training checkpoints: `checkpoint-<step>/` folders holding each trained model as a diffusers
folder, the optimizer's state and a small JSON of the run's state. A checkpoint is written to
a temporary name and renamed when complete, so an interrupted save never looks like one."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

PREFIX = "checkpoint-"


def checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete checkpoints in `output_dir`, oldest first."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and p.name.startswith(PREFIX)
             and p.name[len(PREFIX):].isdigit() and (p / "state.json").is_file()]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX):]))


def latest(output_dir: str | Path) -> Path | None:
    found = checkpoints(output_dir)
    return found[-1] if found else None


def save(output_dir: str | Path, step: int, models: dict, optimizer, state: dict, keep: int = 2,
         tensors: dict | None = None) -> Path:
    """Write checkpoint `step`: models (name -> module with save_pretrained), optimizer, state,
    and `tensors` (file name -> a state dict of tensors and numbers, e.g. an EMA's)."""
    output_dir = Path(output_dir)
    final = output_dir / f"{PREFIX}{step:07d}"
    tmp = output_dir / f".tmp-{PREFIX}{step:07d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, model in models.items():
        model.save_pretrained(str(tmp / name), safe_serialization=True)
    if optimizer is not None:
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    for name, value in (tensors or {}).items():
        torch.save(value, tmp / name)
    (tmp / "state.json").write_text(json.dumps({**state, "step": step}, indent=1))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    for old in checkpoints(output_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def read_state(checkpoint: Path) -> dict:
    return json.loads((checkpoint / "state.json").read_text())


def load_optimizer(checkpoint: Path, optimizer) -> bool:
    """Restore the optimizer's state if the checkpoint has it (weights_only: tensors and numbers)."""
    path = checkpoint / "optimizer.pt"
    if not path.is_file():
        return False
    optimizer.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return True


def load_tensors(checkpoint: Path, name: str):
    """A state saved with save(tensors=...), or None if the checkpoint has none of that name
    (weights_only: tensors, numbers and containers of them)."""
    path = checkpoint / name
    return torch.load(path, map_location="cpu", weights_only=True) if path.is_file() else None
