"""A models folder with the tiny demo ("demo", "demo:scribble", "demo:openpose") and hostile or
misfit ControlNets under controlnets/: a corrupt and a truncated .safetensors, and one made for
another backbone width."""
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


def build(root: Path) -> Path:
    from safetensors.torch import save_file

    from tests.tiny_models import tiny_controlnet, tiny_unet
    from tests.ui.studio_server import tiny_demo
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
