"""Drawing a world scene (demo.world) at any size: the picture, and the exact maps
that go with it: segmentation (one fixed colour per class), depth (near = bright, MiDaS'
convention), the pose as OpenPose JSON, and a hand-drawn-looking sketch of its outlines.

Everything is drawn as antialiased layers (OpenCV, sub-pixel precision), back to front; the
picture blends them, the maps take each pixel from the front-most layer that covers it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from annotators import palettes

from . import figure as fig
from .world import SKIN, Scene, Shape

SHIFT = 4                      # OpenCV's fixed-point bits: coordinates drawn to 1/16 px
ONE = 1 << SHIFT
# Segmentation classes and their colours (listed in models/demo/README.md): annotators ship them
# as the "demo" palette, so a colour map painted for the demo's seg ControlNet snaps to them.
SEG_COLOURS: dict[str, tuple[int, int, int]] = dict(palettes.DEMO_WORLD)
# Depth levels (0..255, near = bright): the background recedes upwards like a floor and wall.
BG_DEPTH_TOP, BG_DEPTH_BOTTOM = 30, 80
SHAPE_DEPTH, SHAPE_DEPTH_STEP = 140, 35
PART_DEPTH = {"legs": 165, "torso": 172, "head": 178, "arms": 186}


@dataclass
class Layer:
    cls: str
    rgb: tuple[int, int, int]
    alpha: np.ndarray          # HxW float32 in [0, 1], antialiased coverage
    depth: int


def _pts(points: np.ndarray, size: int) -> np.ndarray:
    return np.round(np.asarray(points) * size * ONE).astype(np.int32).reshape(-1, 1, 2)


def shape_outline(s: Shape, n_heart: int = 48) -> np.ndarray | None:
    """The shape's polygon (N, 2) in canvas fractions; None for a circle (drawn exactly)."""
    if s.kind == "circle":
        return None
    if s.kind == "square":
        h = 0.85
        unit = np.array([[-h, -h], [h, -h], [h, h], [-h, h]])
    elif s.kind == "triangle":
        a = np.radians([-90, 30, 150])
        unit = np.stack([np.cos(a), np.sin(a) + 0.2], 1)   # lowered so its box is centred
    elif s.kind == "star":
        a = np.radians(-90 + 36 * np.arange(10))
        rad = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        unit = np.stack([rad * np.cos(a), rad * np.sin(a) + 0.1], 1)
    elif s.kind == "heart":
        t = np.linspace(0, 2 * np.pi, n_heart, endpoint=False)
        x = 16 * np.sin(t) ** 3
        y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
        unit = np.stack([x / 17.0, (y + 2.5) / 15.5], 1)
    else:
        raise ValueError(f"unknown shape {s.kind!r}")
    c, si = math.cos(math.radians(s.angle)), math.sin(math.radians(s.angle))
    rot = unit @ np.array([[c, si], [-si, c]])
    return rot * s.r + [s.cx, s.cy]


def _shape_mask(s: Shape, size: int) -> np.ndarray:
    m = np.zeros((size, size), np.uint8)
    poly = shape_outline(s)
    if poly is None:
        cv2.circle(m, (round(s.cx * size * ONE), round(s.cy * size * ONE)), round(s.r * size * ONE), 255,
                   -1, cv2.LINE_AA, SHIFT)
    else:
        cv2.fillPoly(m, [_pts(poly, size)], 255, cv2.LINE_AA, SHIFT)
    return m


def _capsules(size: int, segments, width: float) -> np.ndarray:
    """Limbs: thick antialiased segments with round ends; width in canvas fractions."""
    m = np.zeros((size, size), np.uint8)
    w = max(1, round(width * size))
    for a, b in segments:
        pa = (round(a[0] * size * ONE), round(a[1] * size * ONE))
        pb = (round(b[0] * size * ONE), round(b[1] * size * ONE))
        cv2.line(m, pa, pb, 255, w, cv2.LINE_AA, SHIFT)
        for p in (pa, pb):
            cv2.circle(m, p, round(w * ONE / 2), 255, -1, cv2.LINE_AA, SHIFT)
    return m


def _figure_layers(f, size: int) -> list[Layer]:
    k = np.asarray(f.keypoints)
    u = fig.unit_length(k)
    legs = _capsules(size, [(k[8], k[9]), (k[9], k[10]), (k[11], k[12]), (k[12], k[13])], 0.075 * u)
    torso = np.zeros((size, size), np.uint8)
    body = [k[2] + [-0.01 * u, -0.01 * u], k[5] + [0.01 * u, -0.01 * u], k[11] + [0.02 * u, 0.0],
            k[8] + [-0.02 * u, 0.0]]
    cv2.fillPoly(torso, [_pts(np.array(body), size)], 255, cv2.LINE_AA, SHIFT)
    sleeves = _capsules(size, [(k[2], k[3]), (k[5], k[6])], 0.065 * u)
    forearms = _capsules(size, [(k[3], k[4]), (k[6], k[7])], 0.05 * u)
    head = np.zeros((size, size), np.uint8)
    hc = fig.head_centre(k, u)
    cv2.circle(head, (round(hc[0] * size * ONE), round(hc[1] * size * ONE)), round(fig.HEAD_R * u * size * ONE),
               255, -1, cv2.LINE_AA, SHIFT)
    eyes = np.zeros((size, size), np.uint8)
    for e in (k[14], k[15]):
        cv2.circle(eyes, (round(e[0] * size * ONE), round(e[1] * size * ONE)),
                   max(ONE, round(0.012 * u * size * ONE)), 255, -1, cv2.LINE_AA, SHIFT)
    parts = [("legs", f.pants_rgb, legs), ("torso", f.shirt_rgb, torso), ("head", SKIN, head),
             ("head", (40, 30, 30), eyes), ("arms", SKIN, forearms), ("arms", f.shirt_rgb, sleeves)]
    return [Layer("person", rgb, m.astype(np.float32) / 255.0, PART_DEPTH[p]) for p, rgb, m in parts]


def layers(scene: Scene, size: int) -> list[Layer]:
    """The scene's objects as layers, back to front (the background is not among them)."""
    out = [Layer(s.kind, s.rgb, _shape_mask(s, size).astype(np.float32) / 255.0, SHAPE_DEPTH + SHAPE_DEPTH_STEP * i)
           for i, s in enumerate(scene.shapes)]
    for f in scene.figures:
        out += _figure_layers(f, size)
    return out


def _background(scene: Scene, size: int) -> np.ndarray:
    b = scene.background
    img = np.empty((size, size, 3), np.float32)
    img[:] = b.rgbs[0]
    if b.split:
        # The edge between the tones is antialiased too: coverage of each pixel by the second tone.
        pos = (np.arange(size, dtype=np.float32) + 0.5) / size
        cover = np.clip((pos - b.at) * size + 0.5, 0.0, 1.0)
        cover = cover[None, :, None] if b.split == "vertical" else cover[:, None, None]
        img = img * (1 - cover) + np.asarray(b.rgbs[1], np.float32) * cover
    return img


def image(scene: Scene, size: int = 128, ls: list[Layer] | None = None) -> np.ndarray:
    """The picture: HxWx3 uint8."""
    img = _background(scene, size)
    for layer in ls if ls is not None else layers(scene, size):
        a = layer.alpha[..., None]
        img = img * (1 - a) + np.asarray(layer.rgb, np.float32) * a
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def segmentation(scene: Scene, size: int = 128, ls: list[Layer] | None = None) -> np.ndarray:
    """Class map, HxWx3 uint8 in SEG_COLOURS; a pixel belongs to its front-most covering layer."""
    seg = np.empty((size, size, 3), np.uint8)
    seg[:] = SEG_COLOURS["background"]
    for layer in ls if ls is not None else layers(scene, size):
        seg[layer.alpha >= 0.5] = SEG_COLOURS[layer.cls]
    return seg


def depth(scene: Scene, size: int = 128, ls: list[Layer] | None = None) -> np.ndarray:
    """Depth map, HxWx3 uint8 gray, near = bright."""
    d = np.repeat(np.linspace(BG_DEPTH_TOP, BG_DEPTH_BOTTOM, size, dtype=np.float32)[:, None], size, 1)
    for layer in ls if ls is not None else layers(scene, size):
        d = np.where(layer.alpha >= 0.5, np.float32(layer.depth), d)
    g = np.clip(d + 0.5, 0, 255).astype(np.uint8)
    return np.repeat(g[..., None], 3, 2)


def pose_json(scene: Scene, size: int = 128) -> dict:
    """The figures' exact keypoints as OpenPose JSON on a size x size canvas."""
    people = []
    for f in scene.figures:
        flat = []
        for x, y in f.keypoints:
            flat += [round(x * size, 2), round(y * size, 2), 1.0]
        people.append({"pose_keypoints_2d": flat})
    return {"canvas_width": size, "canvas_height": size, "people": people}


def _wobble(points: np.ndarray, rng: np.random.Generator, amount: float) -> np.ndarray:
    """Points moved by a smooth random offset along the stroke, as a hand would draw them."""
    n = len(points)
    t = np.arange(n) / max(n, 1) * 2 * np.pi
    off = np.zeros_like(points, dtype=np.float64)
    for axis in range(2):
        for freq in (1, 2, 3):
            off[:, axis] += amount / freq * math.sin(rng.uniform(0, 2 * np.pi)) * np.sin(freq * t + rng.uniform(0, 2 * np.pi))
    return points + off


def sketch(scene: Scene, size: int = 128, seed: int = 0, ls: list[Layer] | None = None) -> np.ndarray:
    """A hand-drawn-looking sketch of the scene's outlines, dark strokes on white paper (what a
    user draws for a scribble; the scribble annotator turns it into the map)."""
    rng = np.random.default_rng([scene.seed, int(seed), 0x5C81])
    paper = np.full((size, size), 255, np.uint8)
    ls = ls if ls is not None else layers(scene, size)
    objects = [l.alpha for l in ls if l.cls != "person"]
    person = [l.alpha for l in ls if l.cls == "person"]
    if person:
        objects.append(np.maximum.reduce(person))
    scale = size / 128.0
    for alpha in objects:
        contours, _ = cv2.findContours((alpha >= 0.5).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        for c in contours:
            pts = c[:, 0, :].astype(np.float64)
            if len(pts) < 8:
                continue
            pts = _wobble(pts[:: max(1, int(2 * scale))], rng, rng.uniform(0.3, 1.5) * scale)
            width = int(rng.integers(1, 4) * max(1.0, scale))
            cv2.polylines(paper, [np.round(pts * ONE).astype(np.int32)], True, 0, width, cv2.LINE_AA, SHIFT)
    b = scene.background
    if b.split and rng.random() < 0.5:
        at = b.at * size
        ends = [(0, at), (size, at)] if b.split == "horizontal" else [(at, 0), (at, size)]
        line = _wobble(np.linspace(ends[0], ends[1], 24), rng, 0.8 * scale)
        cv2.polylines(paper, [np.round(line * ONE).astype(np.int32)], False, 0, max(1, int(scale)), cv2.LINE_AA, SHIFT)
    return np.repeat(paper[..., None], 3, 2)
