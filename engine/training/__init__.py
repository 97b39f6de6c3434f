"""ControlNet training and the synthetic world the demo model learns.

- `controlnet.train(TrainConfig(...))`: train a ControlNet on any locked backbone (the paper's
  recipe: trainable copy, zero convolutions, prompt dropout, small-compute mode), resumable,
  with a fidelity curve (fidelity.csv/png). CLI: `launch.py train`.
- `world.scene(seed)` and `draw.image/segmentation/depth/pose_json/sketch(scene, size)`: the
  synthetic world, its captions and exact maps; `world.vocabulary()` is its whole language.
- `demo.train_demo(...)`: rebuild models/demo in resumable stages. CLI: `launch.py train-demo`.
"""
