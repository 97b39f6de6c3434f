"""How long a run will take on this machine: seconds per step measured by the studio's own runs,
per backbone, scaled by pixels (a UNet step's cost grows about linearly with the picture's area:
on this 2-core CPU, 0.15 s at 128x128 and about 40 s at 2048x2048 for the demo)."""
from __future__ import annotations

import threading

LONG_RUN_S = 60.0

_lock = threading.Lock()
_measured: dict[str, tuple[int, float]] = {}   # backbone -> (pixels x batch, seconds per step) of its last run
_native: dict[str, tuple[int, int]] = {}        # backbone -> its own size, seen when a run asked for none


def record(backbone: str, width: int, height: int, batch: int, steps: int, seconds: float,
           native: bool = False) -> None:
    """A finished run's denoising time (from its first to its last step) over `steps` steps, at
    the size it made; `native` when the request left the size to the backbone."""
    if steps > 0 and seconds > 0:
        with _lock:
            _measured[backbone] = (width * height * batch, seconds / steps)
            if native:
                _native[backbone] = (width, height)


def seconds(backbone: str, width: int, height: int, batch: int, steps: int) -> float | None:
    """The estimated denoising time of a run (0 for a side: the backbone's own), or None before
    this backbone has run here."""
    with _lock:
        found = _measured.get(backbone)
        own = _native.get(backbone)
    if found is None or ((not width or not height) and own is None):
        return None
    width, height = width or own[0], height or own[1]
    pixels, per_step = found
    return per_step * steps * (width * height * batch) / pixels


def note(estimate: float | None) -> str:
    """The status's warning for a run estimated at over a minute; "" otherwise."""
    if estimate is None or estimate <= LONG_RUN_S:
        return ""
    minutes = estimate / 60
    return (f"this run is estimated at about {minutes:.0f} minutes on this machine (from its measured step "
            "time, scaled to this size); Interrupt stops it")
