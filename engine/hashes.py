"""Short model hashes as AUTOMATIC1111 shows them beside a name (`control_v11p_sd15_canny [a1b2c3d4]`)."""
from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

from .loading import CHECKPOINT_SUFFIXES, resolve

# A1111's original `model_hash`: 64 KiB read at 1 MiB into the file, so a hash costs no full read
_OFFSET, _LENGTH = 0x100000, 0x10000


def short_hash(source: str, role: str) -> str:
    """Eight hex digits for a model (`role` "backbone", "controlnet" or "ipadapter"): of its file, or for a
    diffusers folder of its largest weights file; "00000000" when none can be read."""
    try:
        if role == "ipadapter":
            from .loading.ipadapters import find_ip_adapter
            path = find_ip_adapter(source)
            if path is None:
                return "0" * 8
        else:
            path = resolve(source, role)
    except (OSError, ValueError):
        return "0" * 8
    if path.is_dir():
        files = [p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in CHECKPOINT_SUFFIXES]
        if not files:
            return "0" * 8
        path = max(files, key=lambda p: p.stat().st_size)
    stat = path.stat()
    return _hash(str(path), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=256)
def _hash(path: str, size: int, mtime_ns: int) -> str:
    with Path(path).open("rb") as f:
        f.seek(_OFFSET if size > _OFFSET + _LENGTH else 0)
        return hashlib.sha256(f.read(_LENGTH)).hexdigest()[:8]
