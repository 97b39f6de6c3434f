"""The GPU fast path: each step's noise prediction (locked UNet + active units + CFG) replayed
from a CUDA graph instead of launched kernel by kernel from Python.

On an H100 an SD1.5 step with three ControlNets is ~3.3 TFLOP, a few ms of math, while eager
PyTorch spends tens of ms launching thousands of kernels (DESIGN.md, Performance). A graph
replays the same kernels with one launch. Graphs are captured lazily per shape, per set of
control nets and modes, and per set of units active at a step (so a unit outside its window
still costs nothing), and cached: a new prompt, seed, weight or window reuses them, because
text, latents, timestep, map embeddings, residual scales, masks and the CFG scale are copied
into the graph's static inputs on every replay.

With `compile`, torch.compile (inductor, without its own CUDA graphs: ours hold the whole
step) fuses the memory-bound GroupNorm/SiLU/add chains. Compiling takes about a minute, so it
runs in a background thread after the first generation of a shape, while the plain graph serves; the serving thread captures the compiled
graph at its next call for that shape. Parity with the eager path is tested on the GPU (tests/engine/test_fast_gpu.py);
measurements are in bench/RESULTS.md.
"""
from __future__ import annotations

import itertools
import logging
import threading
import time
import weakref
from dataclasses import dataclass, replace

import torch

from .control import PreparedUnit, controlnet_forward
from .denoise import predict_noise

log = logging.getLogger(__name__)


@dataclass
class _Graph:
    graph: torch.cuda.CUDAGraph
    x: torch.Tensor
    t: torch.Tensor
    text: torch.Tensor
    cfg: torch.Tensor | None
    units: list            # PreparedUnit copies whose tensors are static buffers
    out: torch.Tensor
    compiled: bool = False
    added: dict | None = None   # SDXL's added_cond_kwargs (text_embeds, time_ids) as static buffers


class _Eager:
    """A shape whose graph would not fit beside what the GPU holds: served eagerly instead."""


# A capture's memory comes from a private pool, not from blocks the eager warm-up freed, and an
# out-of-memory *inside* a capture leaves PyTorch's allocator inconsistent (its later asserts end
# the process; pytorch/pytorch#180395, #190308). So a capture starts only with room for the warm-up's
# peak plus this margin; otherwise that shape is served eagerly, which the warm-up proved fits.
CAPTURE_MARGIN = 1.25
CAPTURE_SLACK = 256 * 2**20


def prepare_module(module: torch.nn.Module, channels_last: bool = True) -> torch.nn.Module:
    """Layout for the fast path: NHWC (channels_last) lets cuDNN run fp16 convolutions on the
    tensor cores without transposes (3 units: 0.65 -> 0.56 s/image on an H100)."""
    if channels_last:
        module.to(memory_format=torch.channels_last)
    return module


def _release_cublas_workspaces() -> None:
    """cuBLAS's per-stream workspaces live in the caching allocator until cleared (PyTorch's own
    leak checks and inductor's CUDA graph trees clear them too); with no graph left, nothing
    here needs them, and they are made again on the next matmul."""
    clear = getattr(torch._C, "_cuda_clearCublasWorkspaces", None)
    if clear is not None and torch.cuda.is_available():
        clear()


class GraphedPredictor:
    """Drop-in for engine.denoise.predict_noise on CUDA. One per model manager; thread-safe."""

    def __init__(self, max_graphs: int = 64, cudnn_benchmark: bool = True, compile: bool = False,
                 streams: bool = True):
        # Let cuDNN time its convolution algorithms once per shape, during the graph warm-up.
        torch.backends.cudnn.benchmark = cudnn_benchmark
        self._graphs: dict = {}
        self._pool = None
        self._lock = threading.Lock()
        self._token_lock = threading.Lock()
        self._pending: dict[tuple, object] = {}  # key -> capture args, then its compiling thread
        self._ready: dict[tuple, tuple] = {}
        # Held while capturing and while a background compile runs kernels: a capture must never
        # overlap other GPU work that may synchronise (inductor does), or CUDA invalidates it.
        self._gate = threading.Lock()
        self.max_graphs = max_graphs
        self.compile = compile
        # Graphs and compiled modules are keyed by a number given to each module once and never
        # reused, not by id(): CPython hands a freed module's address to the next one. `forget`
        # (the manager calls it on eviction) drops what a module's number names.
        self._tokens: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._next_token = itertools.count()
        self._compiled_unets: dict[int, torch.nn.Module] = {}
        if compile:
            torch._dynamo.config.cache_size_limit = max(64, torch._dynamo.config.cache_size_limit)
        # One compiled ControlNet forward serves every net of an architecture: parameters are inputs.
        self._cn_forward = torch.compile(controlnet_forward, dynamic=False) if compile else controlnet_forward
        self.captures = 0
        self.eager_shapes = 0    # shapes served eagerly because a graph of them would not have fitted
        self.eager_calls = 0     # steps served eagerly because they held T2I-Adapter or Union units
        self.capture_seconds = 0.0
        self.compile_seconds = 0.0
        # Several units' ControlNets are independent: on their own streams they overlap on the GPU.
        self.use_streams = streams
        self._streams: list = []
        self._side: dict = {}

    def _token(self, module) -> int:
        with self._token_lock:
            token = self._tokens.get(module)
            if token is None:
                token = self._tokens[module] = next(self._next_token)
            return token

    def _key(self, unet, units, x, t, text, cfg_scale, added=None, ip=None):
        shapes = None if added is None else tuple((k, tuple(v.shape)) for k, v in sorted(added.items()))
        return (self._token(unet), tuple(x.shape), x.dtype, tuple(text.shape), t.dtype, cfg_scale is not None, shapes,
                None if ip is None else ip.graph_key(),
                tuple((self._token(u.net), u.cond_only, u.pooled, u.mask is not None, tuple(u.embedding.shape))
                      for u in units))

    @staticmethod
    def _uses(key, token: int) -> bool:
        return key[0] == token or any(unit[0] == token for unit in key[-1])

    def forget(self, module) -> None:
        """Drop every graph, pending compile and compiled module that holds `module` (an evicted
        UNet or ControlNet), so nothing here keeps it, or its GPU memory, alive."""
        with self._token_lock:
            token = self._tokens.pop(module, None)
        if token is None:
            return
        self.wait_compiled()    # a background compile holds the module until it ends
        with self._lock:
            for table in (self._graphs, self._pending, self._ready):
                for key in [k for k in table if self._uses(k, token)]:
                    del table[key]
            self._compiled_unets.pop(token, None)
            if not self._graphs:
                # the graphs' memory pool outlives them while the handle is held: let it go too
                self._pool = None
                _release_cublas_workspaces()

    def __call__(self, unet, units, x, t, text, cfg_scale, added: dict | None = None, ip=None):
        """`ip`: the generation's engine.ip_adapter.IPAdapterRun, whose processors are on the UNet
        and read its token buffers and scale tensors: a graph of such a step is keyed by it."""
        if any(not isinstance(u, PreparedUnit) or u.union is not None for u in units):
            # T2I-Adapter and Union units run eagerly: their graphs are not captured yet (bench/RESULTS.md)
            self.eager_calls += 1
            return predict_noise(unet, units, x, t, text, cfg_scale, added=added)
        t = t if torch.is_tensor(t) else torch.tensor(t)
        key = self._key(unet, units, x, t, text, cfg_scale, added, ip)
        with self._lock:
            g = self._graphs.get(key)
            ready = self._ready.pop(key, None)
            if ready is not None:
                # Compiled in the background; warmed again here, outside the capture, because this
                # thread's first calls may still load kernels or re-check guards, which a capture forbids.
                g = self._capture(ready)
                self._store(key, g)
            if g is None:
                g = self._capture(self._static(unet, units, x, t, text, cfg_scale, compiled=False, added=added))
                self._store(key, g)
                # IP-Adapter processors are on the UNet only during their generation, and the
                # compile runs after it: such graphs stay plain
                if self.compile and ip is None and key not in self._pending and not isinstance(g, _Eager):
                    self._pending[key] = (unet, units, x, t, text, cfg_scale, added)
        if isinstance(g, _Eager):
            return predict_noise(unet, units, x, t, text, cfg_scale, added=added)
        with self._lock:
            g.x.copy_(x)
            g.t.copy_(t.to(g.t.device))
            g.text.copy_(text)
            if g.cfg is not None:
                g.cfg.fill_(cfg_scale)
            for name, value in (added or {}).items():
                g.added[name].copy_(value)
            for static, unit in zip(g.units, units):
                static.embedding.copy_(unit.embedding)
                static.scales.copy_(unit.scales)
                if unit.mask is not None:
                    static.mask.copy_(unit.mask)
            g.graph.replay()
            # The next replay overwrites `out`; schedulers may keep what they are given.
            return g.out.clone()

    def generation_done(self) -> None:
        """Start compiling, in the background, the shapes this generation captured: after it,
        so that its own new shapes were captured plain without waiting for the compiler."""
        with self._lock:
            todo = [(k, args) for k, args in self._pending.items() if isinstance(args, tuple)]
            if not todo:
                return
            worker = threading.Thread(target=self._compile_all, args=(todo,), daemon=True)
            for key, _ in todo:
                self._pending[key] = worker
        worker.start()

    def _compile_all(self, todo) -> None:
        for key, args in todo:
            self._compile_in_background(key, *args)

    def wait_compiled(self, timeout: float | None = None) -> None:
        """Block until background compilation has finished (benchmarks, tests)."""
        # Pending entries are capture arguments (unhashable) until their compiling thread starts.
        workers = {id(w): w for w in list(self._pending.values()) if isinstance(w, threading.Thread)}
        for worker in workers.values():
            worker.join(timeout)

    def _store(self, key, g: _Graph) -> None:
        if key not in self._graphs and len(self._graphs) >= self.max_graphs:
            self._graphs.pop(next(iter(self._graphs)))
        self._graphs[key] = g

    def _static(self, unet, units, x, t, text, cfg_scale, compiled: bool, added: dict | None = None):
        """Static input buffers and the step function reading them."""
        device = x.device
        static_units = [replace(u, embedding=u.embedding.clone(), scales=u.scales.clone(),
                                mask=None if u.mask is None else u.mask.clone()) for u in units]
        sx, st, stext = x.clone(), t.to(device).clone(), text.clone()
        sadded = None if added is None else {k: v.clone() for k, v in added.items()}
        scfg = None if cfg_scale is None else torch.tensor(float(cfg_scale), device=device, dtype=x.dtype)
        net, forward = unet, controlnet_forward
        if compiled:
            token = self._token(unet)
            if token not in self._compiled_unets:
                self._compiled_unets[token] = torch.compile(unet, dynamic=False)
            net = self._compiled_unets[token]
            forward = self._cn_forward

        if self.use_streams:
            while len(self._streams) < len(units):
                self._streams.append(torch.cuda.Stream(device))
        streams = self._streams[:len(units)] if self.use_streams else None

        def run():
            return predict_noise(net, static_units, sx, st, stext, scfg, forward, streams, sadded)

        return run, (sx, st, stext, scfg, static_units, compiled, sadded)

    def _capture(self, static, warm: bool = True) -> _Graph | _Eager:
        run, (sx, st, stext, scfg, static_units, compiled, sadded) = static
        start = time.perf_counter()
        if warm:
            # An out-of-memory here is an ordinary one (eager code, outside any capture): it
            # propagates, and the caller reports it.
            torch.cuda.synchronize()
            before = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            side = self._side_stream("warm")
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side), torch.inference_mode():
                for _ in range(2):  # outside the graph: cuDNN/cuBLAS choose their kernels here
                    run()
            torch.cuda.current_stream().wait_stream(side)
            torch.cuda.synchronize()
            if not self._room_for(torch.cuda.max_memory_allocated() - before):
                self.eager_shapes += 1
                log.warning("not enough free GPU memory to capture a CUDA graph for %s; serving it eagerly",
                            tuple(sx.shape))
                return _Eager()
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        with self._gate, torch.inference_mode(), torch.cuda.graph(graph, pool=self._pool):
            out = run()
        torch.cuda.synchronize()
        self.captures += 1
        self.capture_seconds += time.perf_counter() - start
        return _Graph(graph, sx, st, stext, scfg, static_units, out, compiled, sadded)

    def _side_stream(self, job: str):
        """One stream per job, made once: cuBLAS keeps a workspace (32 MiB on Hopper) for every
        stream it has run on, so a new stream per capture or compile would pile them up."""
        stream = self._side.get(job)
        if stream is None:
            stream = self._side[job] = torch.cuda.Stream()
        return stream

    @staticmethod
    def _room_for(peak: int) -> bool:
        need = int(peak * CAPTURE_MARGIN) + CAPTURE_SLACK
        if torch.cuda.mem_get_info()[0] >= need:
            return True
        torch.cuda.empty_cache()  # the warm-up's freed blocks cannot serve the graph's pool anyway
        return torch.cuda.mem_get_info()[0] >= need

    def _compile_in_background(self, key, unet, units, x, t, text, cfg_scale, added=None) -> None:
        start = time.perf_counter()
        try:
            static = self._static(unet, units, x, t, text, cfg_scale, compiled=True, added=added)
            stream = self._side_stream("compile")
            with self._gate, torch.cuda.stream(stream), torch.inference_mode():
                for _ in range(2):  # compiles, autotunes and warms up, off the serving thread's stream
                    static[0]()
            stream.synchronize()
            with self._lock:
                self._ready[key] = static
        except Exception:  # the plain graph keeps serving; compiling is only an optimisation
            log.exception("torch.compile of the fast path failed; keeping the uncompiled CUDA graph")
        finally:
            self.compile_seconds += time.perf_counter() - start

    def clear(self) -> None:
        self.wait_compiled()
        with self._lock:
            self._graphs.clear()
            self._pending.clear()
            self._ready.clear()
            # A new pool for later captures: after a failure, tensors of the old one may still be
            # alive (an exception's frames), and PyTorch asserts when a capture joins a pool whose
            # graphs are all gone but whose blocks are not.
            self._pool = None
            _release_cublas_workspaces()
