"""ControlNet training, the paper's method (Zhang and Agrawala 2023), on any locked backbone.

- `controlnet.train(TrainConfig(...))`: the trainable copy, zero convolutions, prompt dropout,
  small-compute mode (middle block first); resumable, with a fidelity curve (fidelity.csv/png).
  CLI: `launch.py train`.
- `data`: folder datasets (pictures + captions, maps by an annotator or from files), step-indexed
  batches, and the registry of named datasets (`register_dataset`; `import demo` adds `world`).
- `checkpoints`, `evaluate`, `plot`: resumable state, the fidelity curve and its picture.
"""
