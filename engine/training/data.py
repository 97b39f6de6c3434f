"""Training data: pictures, captions and control maps.

One sample format ({"pixel_values": 3xHxW in [-1, 1], "conditioning_pixel_values": 3xHxW in
[0, 1], "input_ids": L, "caption": str}), from:
- `FolderDataset`: a folder of pictures with one caption .txt beside each; control maps made on
  the fly by a named annotator, or read from a sibling folder (same file stems);
- a dataset registered by name (`register_dataset`): `TrainConfig.data="world"` is the demo's
  synthetic world, which `import demo` registers.
Batches are indexed by training step (`StepBatches`), so a run resumed at step s sees exactly
the data it would have seen, with any number of loader workers or processes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch
from PIL import Image

import annotators

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def rng(*keys: int) -> np.random.Generator:
    """A generator fixed by integer keys (a seed, a sample index, a purpose), so every random
    draw of a sample is the same in any process and after a resume."""
    return np.random.default_rng([int(k) & 0xFFFFFFFF for k in keys])


# name -> (tokenizer, size, kind, seed) -> (train, held_out) datasets
DatasetFactory = Callable[..., tuple]
_DATASETS: dict[str, DatasetFactory] = {}


def register_dataset(name: str, factory: DatasetFactory) -> None:
    """Make `TrainConfig(data=name)` train on `factory(tokenizer, size, kind, seed)`, which
    returns the (training, held-out) datasets."""
    _DATASETS[name] = factory


def dataset_names() -> list[str]:
    return sorted(_DATASETS)


def datasets(data: str, tokenizer, size: int, kind: str, seed: int, annotator: str | None = None,
             control_dir: str | None = None) -> tuple:
    """The (training, held-out) datasets for `TrainConfig.data`: a registered name or a folder."""
    if data in _DATASETS:
        return _DATASETS[data](tokenizer, size, kind, seed)
    if not Path(data).is_dir():
        names = ", ".join(dataset_names()) or "none (the demo's 'world' is registered by `import demo`)"
        raise ValueError(f"training data {data!r} is neither a folder of pictures nor a registered dataset "
                         f"(registered: {names})")
    train = FolderDataset(data, tokenizer, size, annotator=annotator, control_dir=control_dir)
    return train, train


def tokenize(tokenizer, captions: list[str]) -> torch.Tensor:
    return tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length,
                     truncation=True, return_tensors="pt").input_ids


def to_tensors(image: np.ndarray, cmap: np.ndarray | None) -> dict:
    out = {"pixel_values": torch.from_numpy(image).permute(2, 0, 1).float().div(127.5).sub(1.0)}
    if cmap is not None:
        out["conditioning_pixel_values"] = torch.from_numpy(np.ascontiguousarray(cmap)).permute(2, 0, 1).float().div(255.0)
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
                             "with a .txt caption beside each, or a registered dataset (--data world)")
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
            cmap = annotators.run(self.annotator, image, **self.params)
        out = to_tensors(image, cmap)
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
            self._perms = {epoch: rng(self.seed, epoch, 0x9E).permutation(self.length)}
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
    length = None if getattr(dataset, "endless", False) else len(dataset)
    sampler = StepBatches(batch_size, start_step, rank, world_size, length, seed)
    return torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=workers, collate_fn=_collate,
                                       worker_init_fn=_worker_init if workers else None,
                                       persistent_workers=workers > 0, prefetch_factor=4 if workers else None,
                                       pin_memory=torch.cuda.is_available())
