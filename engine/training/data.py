"""Training data: pictures, captions and control maps.

Two sources, one sample format ({"pixel_values": 3xHxW in [-1, 1], "conditioning_pixel_values":
3xHxW in [0, 1], "input_ids": L, "caption": str}):
- `WorldDataset`: the synthetic world (engine.training.world), endless; sample i is the scene of
  seed (seed, i), its control map made the way the condition's ControlNet should read it.
- `FolderDataset`: a folder of pictures with one caption .txt beside each; control maps made on
  the fly by a named annotator, or read from a sibling folder (same file stems).
Batches are indexed by training step (`StepBatches`), so a run resumed at step s sees exactly
the data it would have seen, with any number of loader workers or processes.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from . import draw, world

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def _rng(*keys: int) -> np.random.Generator:
    return np.random.default_rng([int(k) & 0xFFFFFFFF for k in keys])


def world_map(kind: str, scene: world.Scene, image: np.ndarray, size: int, key: int) -> np.ndarray:
    """The control map of `kind` for a world scene. Scribble and canny maps come from the
    project's annotators at a random detection resolution (users feed maps made at many sizes);
    pose, segmentation and depth are the renderer's exact maps."""
    import annotators
    rng = _rng(key, 0xC7)
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


def tokenize(tokenizer, captions: list[str]) -> torch.Tensor:
    return tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length,
                     truncation=True, return_tensors="pt").input_ids


def _to_tensors(image: np.ndarray, cmap: np.ndarray | None) -> dict:
    out = {"pixel_values": torch.from_numpy(image).permute(2, 0, 1).float().div(127.5).sub(1.0)}
    if cmap is not None:
        out["conditioning_pixel_values"] = torch.from_numpy(np.ascontiguousarray(cmap)).permute(2, 0, 1).float().div(255.0)
    return out


class WorldDataset(torch.utils.data.Dataset):
    """Sample i: the scene of seed (seed, i), with its caption and, if `kind` is given, its map."""

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
        return world.scene(int(_rng(self.seed, i).integers(2 ** 62)), kind=self.scenes)

    def __getitem__(self, i: int) -> dict:
        sc = self.scene(i)
        ls = draw.layers(sc, self.size)
        image = draw.image(sc, self.size, ls)
        cmap = world_map(self.kind, sc, image, self.size, key=i) if self.kind else None
        out = _to_tensors(image, cmap)
        out["caption"] = sc.caption
        if self.tokenizer is not None:
            out["input_ids"] = tokenize(self.tokenizer, [sc.caption])[0]
        return out


def _square(image: np.ndarray, size: int, nearest: bool = False) -> np.ndarray:
    """Short side to `size`, then the centre square (the picture and its map get the same cut)."""
    h, w = image.shape[:2]
    k = size / min(h, w)
    nh, nw = max(size, round(h * k)), max(size, round(w * k))
    flag = cv2.INTER_NEAREST if nearest else (cv2.INTER_AREA if k < 1 else cv2.INTER_CUBIC)
    image = cv2.resize(image, (nw, nh), interpolation=flag)
    y, x = (nh - size) // 2, (nw - size) // 2
    return np.ascontiguousarray(image[y:y + size, x:x + size])


class FolderDataset(torch.utils.data.Dataset):
    """Pictures in `folder`, each with a caption in a .txt of the same stem (empty if absent).
    Control maps: from `control_dir` (same stems) or made by `annotator` (annotators.run)."""

    def __init__(self, folder: str | Path, tokenizer, size: int, annotator: str | None = None,
                 control_dir: str | Path | None = None, annotator_params: dict | None = None):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise ValueError(f"training data folder {self.folder} does not exist; pass a folder of pictures "
                             "with a .txt caption beside each, or --data world")
        self.files = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise ValueError(f"{self.folder} holds no pictures ({', '.join(IMAGE_SUFFIXES)})")
        if (annotator is None) == (control_dir is None):
            raise ValueError("give exactly one of an annotator (maps made on the fly) or a control folder "
                             "(maps read from files with the pictures' names)")
        self.control_dir = Path(control_dir) if control_dir is not None else None
        if self.control_dir is not None:
            missing = [p.name for p in self.files if self._map_path(p) is None]
            if missing:
                raise ValueError(f"{self.control_dir} lacks control maps for {len(missing)} pictures, e.g. "
                                 f"{', '.join(missing[:3])}; each picture needs a map with the same stem")
        if annotator is not None:
            import annotators
            annotators.spec(annotator)   # an unknown name fails here, before training starts
        self.annotator, self.params = annotator, dict(annotator_params or {})
        self.tokenizer, self.size = tokenizer, size

    def _map_path(self, picture: Path) -> Path | None:
        for suffix in IMAGE_SUFFIXES:
            p = self.control_dir / (picture.stem + suffix)
            if p.is_file():
                return p
        return None

    def __len__(self) -> int:
        return len(self.files)

    def caption(self, i: int) -> str:
        txt = self.files[i].with_suffix(".txt")
        return txt.read_text(encoding="utf-8").strip() if txt.is_file() else ""

    def __getitem__(self, i: int) -> dict:
        i = i % len(self.files)
        image = _square(np.asarray(Image.open(self.files[i]).convert("RGB")), self.size)
        if self.control_dir is not None:
            cmap = _square(np.asarray(Image.open(self._map_path(self.files[i])).convert("RGB")), self.size, nearest=True)
        else:
            import annotators
            cmap = annotators.run(self.annotator, image, **self.params)
        out = _to_tensors(image, cmap)
        out["caption"] = self.caption(i)
        if self.tokenizer is not None:
            out["input_ids"] = tokenize(self.tokenizer, [out["caption"]])[0]
        return out


class StepBatches(torch.utils.data.Sampler):
    """Endless batches of sample indices fixed by the step: step s, process r of n gets indices
    (s * n + r) * batch ... + batch - 1 (modulo the dataset's length)."""

    def __init__(self, batch_size: int, start_step: int = 0, rank: int = 0, world_size: int = 1,
                 length: int | None = None, seed: int = 0):
        self.batch_size, self.start, self.rank, self.world_size = batch_size, start_step, rank, world_size
        self.length, self.seed = length, seed
        self._perms: dict[int, np.ndarray] = {}

    def _index(self, i: int) -> int:
        """A finite dataset is walked in a fresh shuffled order each epoch (fixed by the seed)."""
        if not self.length:
            return i
        epoch = i // self.length
        if epoch not in self._perms:
            self._perms = {epoch: _rng(self.seed, epoch, 0x9E).permutation(self.length)}
        return int(self._perms[epoch][i % self.length])

    def __iter__(self):
        step = self.start
        while True:
            first = (step * self.world_size + self.rank) * self.batch_size
            yield [self._index(i) for i in range(first, first + self.batch_size)]
            step += 1

    def __len__(self) -> int:   # endless; DataLoader only asks when printing
        return 2 ** 31 - 1


def _collate(items: list[dict]) -> dict:
    out = {k: torch.stack([it[k] for it in items]) for k in items[0] if k != "caption"}
    out["caption"] = [it["caption"] for it in items]
    return out


def _worker_init(_: int) -> None:
    # Many workers each drawing with several threads would fight over the cores.
    torch.set_num_threads(1)
    cv2.setNumThreads(1)


def loader(dataset, batch_size: int, start_step: int = 0, rank: int = 0, world_size: int = 1,
           workers: int = 0, seed: int = 0) -> torch.utils.data.DataLoader:
    length = None if isinstance(dataset, WorldDataset) else len(dataset)
    sampler = StepBatches(batch_size, start_step, rank, world_size, length, seed)
    return torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=workers, collate_fn=_collate,
                                       worker_init_fn=_worker_init if workers else None,
                                       persistent_workers=workers > 0, prefetch_factor=4 if workers else None,
                                       pin_memory=torch.cuda.is_available())
