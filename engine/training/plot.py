"""A line chart as a PNG, drawn with PIL alone (no plotting library is a dependency)."""
from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageDraw

PALETTE = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14), (148, 103, 189), (140, 86, 75))


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values (1, 2, 2.5 or 5 times a power of ten apart) covering [lo, hi]."""
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9)
    return [round(k * step, 10) for k in range(first, int(math.floor(hi / step + 1e-9)) + 1)]


def line_chart(series: dict[str, list[tuple[float, float]]], path: str | Path, title: str = "",
               xlabel: str = "step", ylabel: str = "", y_range: tuple[float, float] | None = None,
               size: tuple[int, int] = (640, 400), hline: float | None = None) -> Path:
    """Draw each named series of (x, y) points as a line with markers; returns the path."""
    width, height = size
    left, right, top, bottom = 60, 20, 30, 50
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    pts = [p for s in series.values() for p in s]
    xs = [p[0] for p in pts] or [0.0, 1.0]
    ys = [p[1] for p in pts] or [0.0, 1.0]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = y_range if y_range else (min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1)

    def px(x: float, y: float) -> tuple[float, float]:
        return (left + (x - x0) / (x1 - x0) * (width - left - right),
                height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom))

    d.rectangle([left, top, width - right, height - bottom], outline="black")
    for t in _ticks(y0, y1):
        _, y = px(x0, t)
        d.line([left - 4, y, width - right, y], fill=(225, 225, 225))
        d.text((4, y - 6), f"{t:g}", fill="black")
    for t in _ticks(x0, x1):
        x, _ = px(t, y0)
        d.line([x, height - bottom, x, height - bottom + 4], fill="black")
        d.text((x - 12, height - bottom + 8), f"{t:g}", fill="black")
    if hline is not None and y0 <= hline <= y1:
        _, y = px(x0, hline)
        d.line([left, y, width - right, y], fill=(150, 150, 150), width=1)
    for k, (name, s) in enumerate(series.items()):
        colour = PALETTE[k % len(PALETTE)]
        line = [px(x, y) for x, y in sorted(s)]
        if len(line) > 1:
            d.line(line, fill=colour, width=2)
        for x, y in line:
            d.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
        d.text((left + 10, top + 8 + 14 * k), name, fill=colour)
    d.text((left, 8), title, fill="black")
    d.text((width // 2 - 20, height - 20), xlabel, fill="black")
    d.text((4, top - 20), ylabel, fill="black")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path
