"""The one generation queue: a first-in-first-out lock that the GUI, Gradio's API and the
AUTOMATIC1111 REST routes all take, and what the running job has done so far.

Gradio's own queue never sees the FastAPI routes, so it cannot order them against the GUI;
this lock can. A plain threading.Lock wakes waiters in no particular order, so each waiter
takes a ticket and runs when its number comes up.
"""
from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field

import numpy as np


class FifoLock:
    """A lock granted in the order it was asked for."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._next_ticket = 0
        self._serving = 0

    def acquire(self) -> None:
        with self._cond:
            ticket = self._next_ticket
            self._next_ticket += 1
            self._cond.wait_for(lambda: self._serving == ticket)

    def release(self) -> None:
        with self._cond:
            self._serving += 1
            self._cond.notify_all()

    @property
    def waiting(self) -> int:
        """Jobs holding a ticket: the running one and those queued behind it."""
        with self._cond:
            return self._next_ticket - self._serving

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


@dataclass
class Job:
    """The running generation, as /sdapi/v1/progress reports it."""

    source: str                      # "gui", "gradio-api" or "rest"
    stop: threading.Event = field(default_factory=threading.Event)
    started: float = field(default_factory=time.monotonic)
    step: int = 0
    total: int = 0
    batch: int = 0                   # which of the request's n_iter batches is running
    batches: int = 1
    image: np.ndarray | None = None  # the last preview decoded (uint8 HxWx3), shared by every poller
    want_preview: bool = False
    _decoded_at: int = -1

    def fraction(self) -> float:
        if self.total <= 0:
            return 0.0
        return min(1.0, (self.batch + self.step / self.total) / max(1, self.batches))

    def preview(self, decode) -> np.ndarray:
        """The current step's preview, decoded at most once per step whoever asks for it."""
        if self._decoded_at != self.step:
            self.image = (np.clip(decode()[0], 0, 1) * 255).round().astype(np.uint8)
            self._decoded_at = self.step
        return self.image

    def track(self, on_step):
        """Wrap an on_step(step, total, preview) callback so this job follows the loop; a preview
        asked for by a poller is decoded here, on the loop's own thread, at the next step."""
        def tracked(step, total, decode, *rest):
            self.step, self.total = step, total
            if self.want_preview and step < total:
                self.want_preview = False
                self.preview(decode)
            cached = lambda: self.preview(decode)[None].astype(np.float32) / 255.0  # noqa: E731
            return True if on_step is None else on_step(step, total, cached, *rest)
        return tracked


QUEUE = FifoLock()
_current: Job | None = None


@contextlib.contextmanager
def slot(source: str, batches: int = 1, stop: threading.Event | None = None):
    """Wait for the generation queue, then hold it as the running job (`stop`: the caller's own,
    e.g. set when the page that asked closes; interrupt() sets it too)."""
    global _current
    with QUEUE:
        job = Job(source, stop=stop or threading.Event(), batches=batches)
        _current = job
        try:
            yield job
        finally:
            _current = None


def current() -> Job | None:
    return _current


def interrupt() -> bool:
    """Set the running job's stop (it ends after its current step); False when none runs."""
    job = _current
    if job is None:
        return False
    job.stop.set()
    return True
