"""A models folder with the demo and hostile or misfit ControlNets under controlnets/: a corrupt
and a truncated .safetensors, and one made for another backbone width. The demo is the embedded
one (models/demo) when it is built, so the bad inputs and the load run on the real model; else
the tests' tiny stand-in ("demo", "demo:scribble", "demo:openpose")."""
from __future__ import annotations

from pathlib import Path

CORRUPT = "corrupt.safetensors"
TRUNCATED = "truncated.safetensors"
OTHER_ARCH = "other_arch_scribble"
EVIL = ("evil_scribble.ckpt", "evil_scribble.pth")
MARKER = "PWNED"   # created in the models folder if a hostile pickle ever runs


class _Payload:
    """Pickles to a call of `func(*args)`: what a malicious checkpoint does."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def demo_facts() -> tuple[list[str], int, int]:
    """(installed demo ControlNets, the demo backbone's cross-attention width, its native size)
    of the demo build() uses."""
    import json

    from tests.ui.studio_server import DEMO, demo_installed
    if not demo_installed():
        return ["demo:openpose", "demo:scribble"], 32, 64
    nets = sorted(f"demo:{p.name.split('-', 1)[1]}" for p in DEMO.glob("controlnet-*") if p.is_dir())
    unet = json.loads((DEMO / "backbone" / "unet" / "config.json").read_text())
    vae = json.loads((DEMO / "backbone" / "vae" / "config.json").read_text())
    native = int(unet["sample_size"]) * 2 ** (len(vae["block_out_channels"]) - 1)
    return nets, int(unet["cross_attention_dim"]), native


def build(root: Path) -> Path:
    from safetensors.torch import save_file

    from tests.tiny_models import tiny_controlnet, tiny_unet
    from tests.ui.studio_server import DEMO, demo_installed, tiny_demo
    if demo_installed():
        root.mkdir(parents=True, exist_ok=True)
        (root / "demo").symlink_to(DEMO, target_is_directory=True)
    else:
        tiny_demo(root)
    nets = root / "controlnets"
    nets.mkdir(parents=True, exist_ok=True)
    (nets / CORRUPT).write_bytes(b"\xff" * 8 + b"this is not a safetensors header" * 10)
    other = tiny_controlnet(tiny_unet(cross_attention_dim=48), seed=4)
    other.save_pretrained(nets / OTHER_ARCH)
    whole = nets / "whole.tmp"
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(whole))
    data = whole.read_bytes()
    (nets / TRUNCATED).write_bytes(data[: len(data) // 3])
    whole.unlink()
    import torch
    weights = {k: v for k, v in list(other.state_dict().items())[:4]}
    for name in EVIL:
        code = f"open({str(root / MARKER)!r}, 'w').close()"
        torch.save({"state_dict": weights, "extra": _Payload(exec, code)}, nets / name)
    return root
