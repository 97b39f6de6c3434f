"""The embedded demo model and its evidence: a synthetic world, the small backbone and
ControlNets trained on it (models/demo/), the judges that score its pictures, and the paper
studies run on it. It sits above the engine: `engine` knows nothing of it.

- The world: `world.scene(seed)` and `draw.image/segmentation/depth/pose_json/sketch(scene, size)`,
  its captions and exact maps; `world.vocabulary()` is its whole language (`vocab` its tokenizer).
- The build: `build.train_demo(...)` rebuilds models/demo in resumable stages (`stages`; the VAE
  and UNet in `backbone`, the decoder in `decoder`, then ControlNets through engine.training).
  CLI: `launch.py train-demo`.
- The studies: `studies` (prompt dropout, middle block first, sudden convergence; weight and
  window sweeps). CLI: `launch.py study`.
- The judges: `map_judges` (seg: colour regions against classes; openpose: the silhouette the
  renderer draws for the map's keypoints) and `depth_judge` (a small learned depth reader).

Importing `demo` registers what the engine looks up by name: the world's judges with
engine.fidelity (seg, openpose, depth; they score the demo's models only, real models get
annotator judges) and the world as the trainer's dataset `world`.
"""
from __future__ import annotations

import numpy as np

from engine import fidelity
from engine.training import data

from . import dataset, depth_judge, map_judges


def _depth_score(image: np.ndarray, control_map: np.ndarray) -> float | None:
    return depth_judge.default().score(image, control_map)   # the judge's weights load on first use


fidelity.register("seg", map_judges.seg_score)
fidelity.register("openpose", map_judges.pose_score, native_map=True)
fidelity.register("depth", _depth_score)
data.register_dataset("world", dataset.world_datasets)
