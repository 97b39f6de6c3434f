"""The GPU fast path: each step's noise prediction (locked UNet + active units + CFG) replayed
from a CUDA graph instead of launched kernel by kernel from Python.

On an H100 an SD1.5 step with three ControlNets is ~3.3 TFLOP, a few ms of math, while eager
PyTorch spends tens of ms launching its ~thousands of kernels (DESIGN.md, Performance). A graph
replays the same kernels with one launch. Graphs are captured lazily per shape, per set of
control nets and modes, and per set of units active at a step (so a unit outside its window
still costs nothing), and cached: a new prompt, seed, weight or window reuses them, because
text, latents, timestep, map embeddings, residual scales, masks and the CFG scale are copied
into the graph's static inputs on every replay. Parity with the eager path is tested on the GPU
(tests/engine/test_fast_gpu.py).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace

import torch

from .denoise import predict_noise


@dataclass
class _Graph:
    graph: torch.cuda.CUDAGraph
    x: torch.Tensor
    t: torch.Tensor
    text: torch.Tensor
    cfg: torch.Tensor | None
    units: list            # PreparedUnit copies whose tensors are static buffers
    out: torch.Tensor


def prepare_module(module: torch.nn.Module, channels_last: bool = True) -> torch.nn.Module:
    """Layout for the fast path: NHWC (channels_last) lets cuDNN run fp16 convolutions on the
    tensor cores without transposes; measured in bench/RESULTS.md."""
    if channels_last:
        module.to(memory_format=torch.channels_last)
    return module


class GraphedPredictor:
    """Drop-in for engine.denoise.predict_noise on CUDA. One per model manager; thread-safe."""

    def __init__(self, max_graphs: int = 64, cudnn_benchmark: bool = True):
        # Let cuDNN time its convolution algorithms once per shape, during the graph warm-up.
        torch.backends.cudnn.benchmark = cudnn_benchmark
        self._graphs: dict = {}
        self._pool = None
        self._lock = threading.Lock()
        self.max_graphs = max_graphs
        self.captures = 0
        self.capture_seconds = 0.0

    @staticmethod
    def _key(unet, units, x, t, text, cfg_scale):
        return (id(unet), tuple(x.shape), x.dtype, tuple(text.shape), t.dtype, cfg_scale is not None,
                tuple((id(u.net), u.cond_only, u.pooled, u.mask is not None, tuple(u.embedding.shape))
                      for u in units))

    def __call__(self, unet, units, x, t, text, cfg_scale):
        t = t if torch.is_tensor(t) else torch.tensor(t)
        key = self._key(unet, units, x, t, text, cfg_scale)
        with self._lock:
            g = self._graphs.get(key)
            if g is None:
                g = self._capture(unet, units, x, t, text, cfg_scale)
                if len(self._graphs) >= self.max_graphs:
                    self._graphs.pop(next(iter(self._graphs)))
                self._graphs[key] = g
            g.x.copy_(x)
            g.t.copy_(t.to(g.t.device))
            g.text.copy_(text)
            if g.cfg is not None:
                g.cfg.fill_(cfg_scale)
            for static, unit in zip(g.units, units):
                static.embedding.copy_(unit.embedding)
                static.scales.copy_(unit.scales)
                if unit.mask is not None:
                    static.mask.copy_(unit.mask)
            g.graph.replay()
            # The next replay overwrites `out`; schedulers may keep what they are given.
            return g.out.clone()

    def _capture(self, unet, units, x, t, text, cfg_scale) -> _Graph:
        start = time.perf_counter()
        device = x.device
        static_units = [replace(u, embedding=u.embedding.clone(), scales=u.scales.clone(),
                                mask=None if u.mask is None else u.mask.clone()) for u in units]
        sx, st, stext = x.clone(), t.to(device).clone(), text.clone()
        scfg = None if cfg_scale is None else torch.tensor(float(cfg_scale), device=device, dtype=x.dtype)

        def run():
            return predict_noise(unet, static_units, sx, st, stext, scfg)

        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), torch.inference_mode():
            for _ in range(2):  # warm-up outside the graph: cuDNN/cuBLAS choose their kernels here
                run()
        torch.cuda.current_stream().wait_stream(side)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(graph, pool=self._pool):
            out = run()
        torch.cuda.synchronize()
        self.captures += 1
        self.capture_seconds += time.perf_counter() - start
        return _Graph(graph, sx, st, stext, scfg, static_units, out)

    def clear(self) -> None:
        with self._lock:
            self._graphs.clear()
