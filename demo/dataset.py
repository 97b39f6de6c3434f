"""The synthetic world as training data: sample i of `WorldDataset` is the scene of seed
(seed, i), with its caption and the control map of its kind made as that condition's ControlNet
should read it. Endless. `import demo` registers it as the trainer's `--data world`."""
from __future__ import annotations

import numpy as np
import torch

import annotators
from engine.training import data

from . import draw, world


def world_map(kind: str, scene: world.Scene, image: np.ndarray, size: int, key: int) -> np.ndarray:
    """The control map of `kind` for a world scene. Scribble and canny maps come from the
    project's annotators at a random detection resolution (users feed maps made at many sizes);
    pose, segmentation and depth are the renderer's exact maps."""
    rng = data.rng(key, 0xC7)
    if kind == "scribble":
        sketch = draw.sketch(scene, size, seed=key)
        return annotators.run("scribble", sketch, detect_resolution=int(rng.choice([128, 256, 512])))
    if kind == "canny":
        low = int(rng.integers(60, 140))
        return annotators.run("canny", image, low_threshold=low, high_threshold=min(255, 2 * low),
                              detect_resolution=int(rng.choice([128, 256, 512])), size=(size, size))
    if kind == "openpose":
        return annotators.render_pose(draw.pose_json(scene, size), size, size)
    if kind == "seg":
        return draw.segmentation(scene, size)
    if kind == "depth":
        return draw.depth(scene, size)
    raise ValueError(f"the world has no control map of kind {kind!r}; it makes: {', '.join(WORLD_KINDS)}")


WORLD_KINDS = ("scribble", "canny", "openpose", "seg", "depth")
# Which scenes each condition learns from: a pose needs a figure.
WORLD_SCENES = {"openpose": "figure"}


class WorldDataset(torch.utils.data.Dataset):
    """Sample i: the scene of seed (seed, i), with its caption and, if `kind` is given, its map."""

    endless = True   # data.loader draws indices without wrapping

    def __init__(self, tokenizer, size: int = 128, kind: str | None = None, seed: int = 0,
                 scenes: str | None = None, length: int = 2 ** 31 - 1):
        if kind is not None and kind not in WORLD_KINDS:
            raise ValueError(f"the world has no control map of kind {kind!r}; it makes: {', '.join(WORLD_KINDS)}")
        self.tokenizer, self.size, self.kind, self.seed = tokenizer, size, kind, seed
        self.scenes = scenes if scenes is not None else WORLD_SCENES.get(kind or "")
        self.length = length

    def __len__(self) -> int:
        return self.length

    def scene(self, i: int) -> world.Scene:
        return world.scene(int(data.rng(self.seed, i).integers(2 ** 62)), kind=self.scenes)

    def __getitem__(self, i: int) -> dict:
        sc = self.scene(i)
        ls = draw.layers(sc, self.size)
        image = draw.image(sc, self.size, ls)
        cmap = world_map(self.kind, sc, image, self.size, key=i) if self.kind else None
        out = data.to_tensors(image, cmap)
        out["caption"] = sc.caption
        if self.tokenizer is not None:
            out["input_ids"] = data.tokenize(self.tokenizer, [sc.caption])[0]
        return out


def world_datasets(tokenizer, size: int, kind: str, seed: int) -> tuple:
    """Training scenes and held-out scenes (seeds far apart, so no scene is in both)."""
    return (WorldDataset(tokenizer, size, kind=kind, seed=seed),
            WorldDataset(tokenizer, size, kind=kind, seed=seed + 7_777_777))
