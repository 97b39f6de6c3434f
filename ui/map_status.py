"""A map made in a tab or a unit, with the line under it that says what happened: "canny map
made, 512x512 in 0.2 s", or, when the annotator fails, no map at all and what is missing, in
place. A failed annotator never leaves the previous map on screen, where "→ Unit N" would send
it as if it were the new one.

One request can reach the server twice (the sketch canvas reports a change when the parameter
panel under it is relaid out, just as the annotator's own event asks for the map): the same
picture, annotator and parameters within a few seconds get the first answer, so an annotator
runs, and fails, once.
"""
from __future__ import annotations

import hashlib
import html
import threading
import time

import numpy as np

from . import catalog
from .errors import as_page_error

SAME_REQUEST_S = 1.5          # how long an identical request is answered from the first one
_answers: dict[str, tuple[float, object, str]] = {}
_locks: dict[str, threading.Lock] = {}
_guard = threading.Lock()


def failed(text: str) -> str:
    return f'<span class="map-failed">No map: {html.escape(text)}</span>'


def done(text: str) -> str:
    return f'<span class="map-made">{html.escape(text)}</span>'


def _key(picture: np.ndarray, annotator: str | None, params: dict) -> str:
    a = np.ascontiguousarray(picture)
    h = hashlib.blake2b(digest_size=16)
    h.update(repr((a.shape, str(a.dtype), annotator, sorted(params.items()))).encode())
    h.update(a.tobytes())
    return h.hexdigest()


def make(picture: np.ndarray | None, annotator: str | None, params: dict, what: str = "picture",
         where: str = "map") -> tuple[np.ndarray | None, str]:
    """(map or None, status line) for `picture` through `annotator` (None / "none": as it is)."""
    if picture is None:
        return None, failed(f"there is no {what} yet")
    name = None if annotator in (None, "", catalog.NO_ANNOTATOR) else annotator
    key = _key(np.asarray(picture), name, params)
    with _guard:
        now = time.monotonic()
        for k in [k for k, (t, _, _) in _answers.items() if now - t > SAME_REQUEST_S]:
            del _answers[k]
            _locks.pop(k, None)
        lock = _locks.setdefault(key, threading.Lock())
    with lock:   # a second identical request waits for the first and takes its answer
        if key in _answers:
            _, cmap, line = _answers[key]
            return cmap, line
        started = time.monotonic()
        try:
            if name is None:
                cmap = np.asarray(picture)
                line = done(f"the {what} used as it is, {cmap.shape[1]}x{cmap.shape[0]}")
            else:
                from . import api
                cmap = api.annotate(name, picture, params)
                # the clock time: a second click on "Make map" shows that it ran again
                line = done(f"{name} map made, {cmap.shape[1]}x{cmap.shape[0]} in "
                            f"{time.monotonic() - started:.1f} s (at {time.strftime('%H:%M:%S')})")
        except Exception as e:  # noqa: BLE001  (every failure is said in place, and logged with its cause)
            cmap, line = None, failed(str(as_page_error(e, where).message))
        with _guard:
            _answers[key] = (time.monotonic(), cmap, line)
        return cmap, line
