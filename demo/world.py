"""The synthetic world the demo model learns: scenes of coloured shapes and simple posed
figures on plain or two-tone backgrounds, each with its caption. A scene is a value drawn
from a seed (`scene(seed)`), so every picture, map and caption can be made again exactly.

Geometry is in fractions of the canvas, so one scene renders at any size (demo.draw).
The vocabulary below is the whole language of the world; the demo tokenizer is built from it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import figure

# Colour words and the RGB each is drawn in (a small jitter is added per object).
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35), "orange": (245, 135, 20), "yellow": (245, 215, 30), "green": (40, 160, 60),
    "blue": (35, 75, 215), "purple": (130, 55, 185), "pink": (245, 135, 195), "brown": (125, 75, 35),
    "white": (245, 245, 245), "black": (25, 25, 25), "gray": (130, 130, 130),
}
SHAPES = ("circle", "square", "triangle", "star", "heart")
# Size word ("" = unnamed medium) -> range of the shape's half extent, as a fraction of the canvas.
SIZES: dict[str, tuple[float, float]] = {"small": (0.08, 0.11), "": (0.14, 0.17), "large": (0.22, 0.26)}
# Position phrase -> the cell centre (x, y) it names, on a 3x3 grid.
POSITIONS: dict[str, tuple[float, float]] = {
    "in the center": (0.5, 0.5), "on the left": (0.25, 0.5), "on the right": (0.75, 0.5),
    "at the top": (0.5, 0.25), "at the bottom": (0.5, 0.75), "at the top left": (0.25, 0.25),
    "at the top right": (0.75, 0.25), "at the bottom left": (0.25, 0.75), "at the bottom right": (0.75, 0.75),
}
POSES = figure.POSES
SKIN = (225, 175, 140)
# Words that only glue phrases together.
GLUE = ("a", "an", "and", "on", "background", "person", "in", "shirt", "pants")


def vocabulary() -> list[str]:
    """Every word a caption can hold, sorted: the demo tokenizer's whole vocabulary."""
    words = set(GLUE) | set(COLOURS) | set(SHAPES) | {w for w in SIZES if w}
    for phrase in list(POSITIONS) + list(POSES):
        words.update(phrase.split())
    return sorted(words)


@dataclass(frozen=True)
class Shape:
    kind: str
    colour: str
    size: str                      # a SIZES key ("" is medium)
    position: str                  # the POSITIONS phrase of its cell
    named_position: bool           # whether the caption says where it is
    cx: float
    cy: float
    r: float                       # half extent, fraction of the canvas
    angle: float                   # degrees, small tilt
    rgb: tuple[int, int, int]


@dataclass(frozen=True)
class Figure:
    pose: str
    shirt: str
    pants: str
    named_pants: bool
    keypoints: tuple[tuple[float, float], ...]   # COCO-18 (x, y), fractions of the canvas
    height: float                                # fraction of the canvas, head to ankles
    shirt_rgb: tuple[int, int, int]
    pants_rgb: tuple[int, int, int]


@dataclass(frozen=True)
class Background:
    colours: tuple[str, ...]        # one colour, or two for a two-tone background
    split: str                      # "" (plain), "vertical" (left | right) or "horizontal" (top / bottom)
    at: float                       # where a two-tone background splits, fraction of the canvas
    rgbs: tuple[tuple[int, int, int], ...]


@dataclass(frozen=True)
class Scene:
    seed: int
    background: Background
    shapes: tuple[Shape, ...]
    figures: tuple[Figure, ...]
    caption: str


def _jitter(rng: np.random.Generator, rgb: tuple[int, int, int], amount: int = 8) -> tuple[int, int, int]:
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in rgb)


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _background(rng: np.random.Generator, avoid: set[str], two_tone_p: float) -> Background:
    free = [c for c in COLOURS if c not in avoid]
    if rng.random() < two_tone_p:
        a, b = rng.choice(free, size=2, replace=False)
        split = str(rng.choice(["vertical", "horizontal"]))
        return Background((str(a), str(b)), split, float(rng.uniform(0.35, 0.65)),
                          (_jitter(rng, COLOURS[a], 4), _jitter(rng, COLOURS[b], 4)))
    c = str(rng.choice(free))
    return Background((c,), "", 0.5, (_jitter(rng, COLOURS[c], 4),))


def _place(rng: np.random.Generator, r: float, cell: tuple[float, float]) -> tuple[float, float]:
    x = np.clip(cell[0] + rng.uniform(-0.06, 0.06), r + 0.02, 0.98 - r)
    y = np.clip(cell[1] + rng.uniform(-0.06, 0.06), r + 0.02, 0.98 - r)
    return float(x), float(y)


def _shapes(rng: np.random.Generator, n: int) -> list[Shape]:
    shapes: list[Shape] = []
    cells = list(POSITIONS)
    for _ in range(n):
        for _try in range(30):
            position = str(rng.choice(cells))
            size = str(rng.choice(list(SIZES), p=[0.3, 0.45, 0.25] if n == 1 else [0.45, 0.45, 0.1]))
            r = float(rng.uniform(*SIZES[size]))
            cx, cy = _place(rng, r, POSITIONS[position])
            # Shapes may touch but not hide each other, so every captioned shape stays visible.
            if all(math.hypot(cx - s.cx, cy - s.cy) > 0.9 * (r + s.r) for s in shapes):
                break
        else:
            break
        colour = str(rng.choice(list(COLOURS)))
        kind = str(rng.choice(SHAPES))
        shapes.append(Shape(kind, colour, size, position, bool(rng.random() < 0.6), cx, cy, r,
                            float(rng.uniform(-12, 12)), _jitter(rng, COLOURS[colour])))
    return shapes


def _figure(rng: np.random.Generator) -> Figure:
    pose = str(rng.choice(list(POSES)))
    height = float(rng.uniform(0.6, 0.85))
    keypoints = figure.pose_keypoints(rng, pose, height)
    height = figure.unit_length(keypoints) * figure.HEAD_SPAN   # a figure too big to fit was scaled down
    shirt, pants = (str(c) for c in rng.choice([c for c in COLOURS], size=2, replace=False))
    return Figure(pose, shirt, pants, bool(rng.random() < 0.5), keypoints, height,
                  _jitter(rng, COLOURS[shirt]), _jitter(rng, COLOURS[pants]))


def _shape_phrase(s: Shape) -> str:
    words = [w for w in (s.size, s.colour, s.kind) if w]
    phrase = f"{_article(words[0])} {' '.join(words)}"
    return f"{phrase} {s.position}" if s.named_position else phrase


def _figure_phrase(f: Figure) -> str:
    clothes = f"{_article(f.shirt)} {f.shirt} shirt" + (f" and {f.pants} pants" if f.named_pants else "")
    return f"a person in {clothes} {f.pose}"


def _background_phrase(b: Background) -> str:
    return f"on {_article(b.colours[0])} {' and '.join(b.colours)} background"


def caption(s: Scene | None = None, *, shapes=(), figures=(), background: Background | None = None) -> str:
    """The scene's caption, e.g. "a red star and a small blue circle on a yellow background"."""
    if s is not None:
        shapes, figures, background = s.shapes, s.figures, s.background
    things = [_shape_phrase(x) for x in shapes] + [_figure_phrase(f) for f in figures]
    return " and ".join(things) + " " + _background_phrase(background)


def scene(seed: int, *, kind: str | None = None, two_tone_p: float = 0.3) -> Scene:
    """The scene of this seed. kind: "shapes" (one to three), "shape" (exactly one), "figure",
    or None for the training mix (half single shapes, a quarter several, a quarter figures)."""
    rng = np.random.default_rng([int(seed), 0x5EED])
    if kind is None:
        u = rng.random()
        kind = "shape" if u < 0.5 else "shapes" if u < 0.75 else "figure"
    if kind == "shape":
        shapes, figures = _shapes(rng, 1), []
    elif kind == "shapes":
        shapes, figures = _shapes(rng, int(rng.integers(1, 4))), []
    elif kind == "figure":
        shapes, figures = [], [_figure(rng)]
    else:
        raise ValueError(f"unknown scene kind {kind!r}; use 'shape', 'shapes', 'figure' or None")
    used = {s.colour for s in shapes} | {c for f in figures for c in (f.shirt, f.pants)}
    bg = _background(rng, used, two_tone_p)
    return Scene(int(seed), bg, tuple(shapes), tuple(figures),
                 caption(shapes=shapes, figures=figures, background=bg))


def single_shape_scene(seed: int, kind: str, colour: str, background: str, size: str = "",
                       position: str = "in the center") -> Scene:
    """A scene of exactly the shape asked for (the tests' prompts, rendered)."""
    rng = np.random.default_rng([int(seed), 0xC0DE])
    r = float(rng.uniform(*SIZES[size]))
    cx, cy = _place(rng, r, POSITIONS[position])
    s = Shape(kind, colour, size, position, position != "in the center", cx, cy, r,
              float(rng.uniform(-12, 12)), _jitter(rng, COLOURS[colour]))
    bg = Background((background,), "", 0.5, (_jitter(rng, COLOURS[background], 4),))
    return Scene(int(seed), bg, (s,), (), caption(shapes=[s], background=bg))
