"""The depth fidelity judge: a small learned reader of a world picture's depth (near = bright),
trained on the renderer's pictures and exact depth maps; engine.fidelity compares its reading
of a generated picture with the depth map the picture was made from.

It is a per-pixel MLP at JUDGE_SIZE over FEATURES: the pixel's colour, its colour distance to
the background tones (which colour is backdrop is a property of the whole picture, not of a
pixel), its height (the world's backdrop recedes upwards) and how much of its neighbourhood
at three scales is object. (A tiny dilated CNN read held-out renders less well, partial rho
0.91 against 0.98, and took minutes to train on two CPU cores; this fits in ~5 s.) Training
adds blur, noise and a colour cast so it also reads generated pictures, which are never as
clean as renders. `default()` loads the shipped weights
(models/demo/judges/depth.safetensors), else the cached ones (models/.cache/judges/), else
fits and caches them. Weights are safetensors (no pickle) with their settings as metadata.
"""
from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from engine.loading import models_dir

from . import draw, map_judges, world

log = logging.getLogger(__name__)

JUDGE_SIZE = 64
RENDER_SIZE = 128
CONTEXT = (5, 11, 23)         # window sides (judge pixels) of the "how much is object nearby" channels
FEATURES = ("red", "green", "blue", "background distance", "height") + tuple(f"object share {k}px" for k in CONTEXT)
WIDTH = 32
FORMAT, VERSION = "cnstudio-depth-judge", "1"
FILE_NAME = "depth.safetensors"
TRAIN_SEEDS = range(0, 320)
HELD_OUT_SEEDS = range(900_000, 900_040)     # far from any seed the demo trains or tests on
STEPS, BATCH, LR = 600, 4096, 1e-2     # batches of pixels


class DepthNet(nn.Module):
    """A per-pixel MLP over FEATURES (a patch regressor: the context channels carry the patch)."""

    def __init__(self, width: int = WIDTH):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(len(FEATURES), width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                                  nn.Linear(width, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., len(FEATURES)) -> (...)"""
        return self.body(x)[..., 0]


def features(image: np.ndarray) -> np.ndarray:
    """(JUDGE_SIZE, JUDGE_SIZE, len(FEATURES)) float32, see FEATURES."""
    small = cv2.resize(image, (JUDGE_SIZE, JUDGE_SIZE), interpolation=cv2.INTER_AREA)
    px = small.astype(np.float32)
    tones = map_judges.background_tones(small)
    dist = np.min([np.linalg.norm(px - t, axis=2) for t in tones], axis=0)
    thing = (dist > map_judges.FOREGROUND_DISTANCE).astype(np.float32)
    rows = np.repeat(np.linspace(0.0, 1.0, JUDGE_SIZE, dtype=np.float32)[:, None], JUDGE_SIZE, 1)
    near = [cv2.blur(thing, (k, k), borderType=cv2.BORDER_REFLECT) for k in CONTEXT]
    return np.dstack([px / 255.0, dist / 255.0, rows, *near]).astype(np.float32)


def map_depth(control_map: np.ndarray) -> np.ndarray:
    """The depth map's gray levels at JUDGE_SIZE (float32, 0..1, near = bright)."""
    spread = control_map.astype(np.int16).max(axis=2) - control_map.astype(np.int16).min(axis=2)
    if spread.mean() > 8:
        raise ValueError("the control map is not a depth map: its pixels are coloured (mean channel spread "
                         f"{spread.mean():.0f} levels); a depth map is gray, near = bright")
    gray = control_map.mean(axis=2).astype(np.float32) / 255.0
    return cv2.resize(gray, (JUDGE_SIZE, JUDGE_SIZE), interpolation=cv2.INTER_AREA)


def _ranks(x: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata
    return rankdata(x.ravel()).reshape(x.shape)


def spearman(a: np.ndarray, b: np.ndarray, partial: bool = True) -> float | None:
    """Spearman's rho of two HxW depth readings; partial=True holds the row fixed (each row's
    mean rank removed before correlating), so the backdrop's floor-to-wall gradient, which every
    picture of the world shares, earns nothing. None when `b` has nothing left to follow."""
    ra, rb = _ranks(a), _ranks(b)
    if partial:
        ra = ra - ra.mean(axis=1, keepdims=True)
        rb = rb - rb.mean(axis=1, keepdims=True)
    else:
        ra, rb = ra - ra.mean(), rb - rb.mean()
    norm = float(np.sqrt((ra ** 2).sum() * (rb ** 2).sum()))
    if (rb ** 2).sum() < 1e-6 * rb.size ** 3 or norm == 0.0:
        return None
    return float((ra * rb).sum() / norm)


class DepthJudge:
    def __init__(self, net: DepthNet):
        self.net = net.eval()

    @torch.no_grad()
    def predict(self, image: np.ndarray) -> np.ndarray:
        """The picture's depth as the judge reads it: JUDGE_SIZE^2 float32, near = high."""
        return self.net(torch.from_numpy(features(image))).numpy()

    def score(self, image: np.ndarray, control_map: np.ndarray) -> float | None:
        """max(0, partial Spearman rho) between the map and the judge's reading of the picture."""
        rho = spearman(self.predict(image), map_depth(control_map))
        return None if rho is None else max(0.0, rho)

    def save(self, path: str | Path) -> Path:
        from safetensors.torch import save_file
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tensors = {k: v.detach().contiguous() for k, v in self.net.state_dict().items()}
        save_file(tensors, str(tmp), metadata={"format": FORMAT, "version": VERSION, "size": str(JUDGE_SIZE),
                                               "width": str(self.net.body[0].out_features)})
        os.replace(tmp, path)   # readers never see half a file
        return path


def load(path: str | Path) -> DepthJudge:
    """A judge saved by DepthJudge.save; ValueError for a file of another format or version."""
    from safetensors import safe_open
    from safetensors.torch import load_file
    path = Path(path)
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(path))
    except Exception as e:   # safetensors raises its own error types for a damaged file
        raise ValueError(f"{path} is not a readable safetensors file: {e}") from e
    if meta.get("format") != FORMAT or meta.get("version") != VERSION or meta.get("size") != str(JUDGE_SIZE):
        raise ValueError(f"{path} is not a depth judge of this version (format {meta.get('format')!r}, "
                         f"version {meta.get('version')!r}; expected {FORMAT!r} version {VERSION})")
    net = DepthNet(int(meta.get("width", WIDTH)))
    try:
        net.load_state_dict(tensors)
    except RuntimeError as e:
        raise ValueError(f"{path} holds weights of another shape: {e}") from e
    return DepthJudge(net)


def _noisy(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A render roughened the way a generated picture is: blur, noise, a slight colour cast."""
    x = image.astype(np.float32)
    if rng.random() < 0.5:
        x = cv2.GaussianBlur(x, (3, 3), float(rng.uniform(0.5, 1.2)))
    x = x * rng.uniform(0.9, 1.1, 3) + rng.normal(0.0, rng.uniform(0.0, 14.0), x.shape)
    return np.clip(x, 0, 255).astype(np.uint8)


def examples(seeds, rough: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(features, depth) tensors of the renders of `seeds`; rough=True adds a roughened copy of each."""
    xs, ys = [], []
    for seed in seeds:
        sc = world.scene(seed)
        ls = draw.layers(sc, RENDER_SIZE)
        img, target = draw.image(sc, RENDER_SIZE, ls), map_depth(draw.depth(sc, RENDER_SIZE, ls))
        pictures = [img, _noisy(img, np.random.default_rng([seed, 0xD3])) if rough else None]
        for p in pictures:
            if p is not None:
                xs.append(features(p))
                ys.append(target)
    return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))


def fit(seeds=TRAIN_SEEDS, steps: int = STEPS, seed: int = 0) -> DepthJudge:
    """Train a judge on renders of `seeds` (L1 on depth, over random pixels of all renders)."""
    x, y = examples(seeds)
    x, y = x.reshape(-1, x.shape[-1]), y.reshape(-1)
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):   # the caller's random stream stays as it was
        torch.manual_seed(seed)
        net = DepthNet()
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=steps)
    net.train()
    # Steps this small run ~5x faster on one thread than on threads that wait for each other
    # (measured on a busy two-core machine: 4.5 ms against 27 ms a step).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(steps):
            idx = torch.randint(len(x), (BATCH,), generator=gen)
            loss = (net(x[idx]) - y[idx]).abs().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    finally:
        torch.set_num_threads(threads)
    return DepthJudge(net)


def held_out(judge: DepthJudge, seeds=HELD_OUT_SEEDS) -> dict[str, float]:
    """Mean Spearman rho (plain and partial) between the judge's reading and the exact depth of
    clean renders it never saw."""
    plain, partial = [], []
    for seed in seeds:
        sc = world.scene(seed)
        ls = draw.layers(sc, RENDER_SIZE)
        pred, truth = judge.predict(draw.image(sc, RENDER_SIZE, ls)), map_depth(draw.depth(sc, RENDER_SIZE, ls))
        plain.append(spearman(pred, truth, partial=False))
        partial.append(spearman(pred, truth))
    return {"spearman": float(np.mean(plain)), "partial_spearman": float(np.mean([p for p in partial if p is not None]))}


_judges: dict[Path, DepthJudge] = {}
_lock = threading.Lock()


def paths() -> tuple[Path, Path]:
    """(shipped weights, cache) under the models folder."""
    root = models_dir()
    return root / "demo" / "judges" / FILE_NAME, root / ".cache" / "judges" / FILE_NAME


def forget() -> None:
    """Drop the judges held in memory, so the next default() looks at the models folder again."""
    with _lock:
        _judges.clear()


def default() -> DepthJudge:
    """The judge fidelity uses: shipped weights, else cached ones, else fitted now and cached."""
    shipped, cache = paths()
    with _lock:
        if shipped in _judges:
            return _judges[shipped]
        if shipped.is_file():
            judge = load(shipped)   # a broken shipped file is an error to see, not to paper over
        else:
            judge = None
            if cache.is_file():
                try:
                    judge = load(cache)
                except ValueError as e:
                    log.warning("refitting the depth judge: %s", e)
            if judge is None:
                log.info("fitting the depth fidelity judge on renders (once; cached in %s)", cache)
                judge = fit()
                try:
                    judge.save(cache)
                except OSError as e:
                    log.warning("depth judge not cached: %s", e)
        _judges[shipped] = judge
        return judge
