"""The one registry: every annotator is declared here once, with its parameters.

The GUI builds its controls from `spec(name)`, the HTTP API validates against it and the
recipe stores the values it resolves, so a parameter is never listed twice (ComfyUI's
INPUT_TYPES idea).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np

from .image import resize_map, to_rgb
from .weights import require

PARAM_TYPES = ("int", "float", "bool", "choice")


@dataclass(frozen=True)
class Param:
    """One parameter of an annotator: its type, default and allowed values."""

    name: str
    type: str
    default: Any
    min: float | None = None
    max: float | None = None
    step: float | None = None
    choices: tuple[str, ...] | None = None
    help: str = ""

    def __post_init__(self) -> None:
        if self.type not in PARAM_TYPES:
            raise ValueError(f"param {self.name!r}: type {self.type!r} is not one of {PARAM_TYPES}")
        if self.type == "choice" and not self.choices:
            raise ValueError(f"param {self.name!r}: a choice parameter needs choices")

    def allowed(self) -> str:
        if self.type == "choice":
            return "one of " + ", ".join(repr(c) for c in self.choices or ())
        if self.type == "bool":
            return "true or false"
        return f"{'an integer' if self.type == 'int' else 'a number'} from {self.min} to {self.max}"

    def check(self, annotator: str, value: Any) -> Any:
        """The value, coerced to the declared type; ValueError naming what is allowed."""
        where = (f"annotator {annotator!r}: parameter {self.name!r} = {value!r} is not allowed; "
                 f"allowed: {self.allowed()}")
        if self.type == "bool":
            if isinstance(value, (bool, np.bool_)):
                return bool(value)
            raise ValueError(where)
        if self.type == "choice":
            if isinstance(value, str) and value in (self.choices or ()):
                return value
            raise ValueError(where)
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise ValueError(where)
        if not math.isfinite(float(value)):
            raise ValueError(where)
        if self.type == "int":
            if float(value) != int(value):
                raise ValueError(where)
            value = int(value)
        else:
            value = float(value)
        if (self.min is not None and value < self.min) or (self.max is not None and value > self.max):
            raise ValueError(where)
        return value

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "type": self.type,
            "default": self.default,
            "min": self.min,
            "max": self.max,
            "step": self.step,
            "choices": list(self.choices) if self.choices else None,
            "help": self.help,
        }


# Shared by every annotator that works at a detection resolution (controlnet_aux's name).
DETECT_RESOLUTION = Param(
    "detect_resolution", "int", 512, 64, 2048, 64,
    help="short side the detector works at; sides are rounded to multiples of 64",
)


@dataclass(frozen=True)
class Annotator:
    """A declared annotator. `fn(image, **params)` gets HxWx3 uint8 and returns a map of any size;
    a learned one is called `fn(image, paths, **params)` with the located paths of its `weights`."""

    name: str
    fn: Callable[..., np.ndarray]
    kind: str
    description: str
    params: tuple[Param, ...] = ()
    # Map resizing: "linear" for soft maps, "nearest" where colours are labels (segmentation).
    interpolation: str = "linear"
    # What a learned annotator loads (weights.WeightFile / weights.ModelFolder); empty if none.
    weights: tuple = ()
    # A model inside an installed package (bundled.Bundled) that serves when `weights` are absent:
    # then `fn(image, None, **params)`.
    bundled: object | None = None

    def paths(self) -> list | None:
        """The located weights; None when the bundled model serves instead; ValueError when
        neither can (naming each missing file and why the bundled model cannot run)."""
        found = [need.locate() for need in self.weights]
        if all(path is not None for path in found):
            return found
        problem = self.bundled.problem() if self.bundled is not None else None
        if self.bundled is not None and problem is None:
            return None
        try:
            return require(self.name, self.weights)
        except ValueError as e:
            if problem is None:
                raise
            raise ValueError(f"{e} Without them it would use {self.bundled.what}, but {problem}.") from None

    def availability(self) -> dict:
        """Whether it runs on this machine now, before anyone picks it: {"ready", "uses" (as in
        to_json), "missing" (the short names of its absent weights), "problem" (why the bundled
        model cannot stand in, or None)}. The one answer the page's lists and to_json read; an
        annotator with a bundled model (bundled.Bundled) is ready when that model can run."""
        found = [(need, need.locate()) for need in self.weights]
        present = all(path is not None for _, path in found)
        problem = self.bundled.problem() if self.bundled is not None else None
        uses = ("weights" if self.weights and present else
                "bundled" if self.bundled is not None and problem is None else
                "none" if self.weights or self.bundled is not None else "built-in")
        return {"ready": uses != "none", "uses": uses,
                "missing": [need.short() for need, path in found if path is None],
                "problem": problem, "found": [path for _, path in found]}

    def resolve(self, params: dict[str, Any]) -> dict[str, Any]:
        """Every declared parameter's value: the given ones checked, the rest at their defaults."""
        known = {p.name: p for p in self.params}
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise ValueError(
                f"annotator {self.name!r} has no parameter {', '.join(map(repr, unknown))}; "
                f"its parameters are: {', '.join(known) or 'none'}"
            )
        return {n: (p.check(self.name, params[n]) if n in params else p.default) for n, p in known.items()}

    def to_json(self) -> dict:
        state = self.availability()
        found = list(zip(self.weights, state["found"]))
        bundled = self.bundled.to_json() if self.bundled is not None else None
        return {
            "name": self.name,
            "kind": self.kind,
            "description": self.description,
            "learned": bool(self.weights),
            "weights_present": not state["missing"],
            # what runs now: its own weights, the bundled model standing in for them, or nothing
            "uses": state["uses"],
            "ready": state["ready"],
            "bundled": bundled,
            "weights": [{**need.to_json(), "found_at": None if path is None else str(path)} for need, path in found],
            "params": [p.to_json() for p in self.params],
        }


_REGISTRY: dict[str, Annotator] = {}


def register(annotator: Annotator) -> Annotator:
    if annotator.name in _REGISTRY:
        raise ValueError(f"annotator {annotator.name!r} is declared twice")
    _REGISTRY[annotator.name] = annotator
    return annotator


def annotator(name: str, *, kind: str, description: str, params: tuple[Param, ...] = (),
              interpolation: str = "linear", weights: tuple = (), bundled: object | None = None):
    """Decorator form of `register` for the functions that compute a map."""

    def wrap(fn: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
        register(Annotator(name, fn, kind, description, tuple(params), interpolation, weights, bundled))
        return fn

    return wrap


def get(name: str) -> Annotator:
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown annotator {name!r}; known annotators: {', '.join(sorted(_REGISTRY))}") from None


def names() -> list[str]:
    return sorted(_REGISTRY)


def default_for(kind: str | None) -> str | None:
    """The annotator that makes maps of condition `kind` when none is named: the one named like
    the kind (scribble, canny, depth...), else the first of that kind by name; None if none does."""
    if not kind:
        return None
    if kind in _REGISTRY and _REGISTRY[kind].kind == kind:
        return kind
    return next((n for n in names() if _REGISTRY[n].kind == kind), None)


def availability() -> dict[str, dict]:
    """{name: {"ready", "uses", "missing", "problem", "label"}} for every annotator, as this
    machine stands now: which run (built-in, with their weights, or on a bundled model) and which
    need weights, with the files' names, so a list can say so before anyone picks one."""
    out = {}
    for name in names():
        state = _REGISTRY[name].availability()
        state.pop("found")
        if state["uses"] == "none":
            label = (f"{name} — needs weights: {', '.join(state['missing'])}" if state["missing"] else
                     f"{name} — cannot run here: {state['problem']}")
        elif state["uses"] == "bundled":
            label = f"{name} — ready (bundled model)"
        else:
            label = f"{name} — ready"
        out[name] = {**state, "label": label}
    return out


def list_annotators() -> list[dict]:
    """Every annotator's description (as `spec`), sorted by name."""
    return [spec(n) for n in names()]


def spec(name: str) -> dict:
    """A plain, JSON-serialisable description of one annotator and its parameters."""
    return get(name).to_json()


def _check_size(size: tuple[int, int] | None, image: np.ndarray) -> tuple[int, int]:
    if size is None:
        return image.shape[1], image.shape[0]
    try:
        width, height = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"size must be (width, height) in pixels, got {size!r}") from None
    if width < 1 or height < 1 or width > 16384 or height > 16384:
        raise ValueError(f"size {size!r} is out of range; width and height must be 1..16384")
    return width, height


def run(name: str, image: Any, *, size: tuple[int, int] | None = None, **params: Any) -> np.ndarray:
    """Run annotator `name` on `image`; the map comes back as HxWx3 uint8 at `size` (width, height),
    by default the input's size."""
    entry = get(name)
    values = entry.resolve(params)
    rgb = to_rgb(image)
    width, height = _check_size(size, rgb)
    if entry.weights:
        # Learned annotators get their weights' paths first (None: the bundled model stands in);
        # missing ones fail here, before any work.
        out = entry.fn(rgb, entry.paths(), **values)
    else:
        out = entry.fn(rgb, **values)
    return resize_map(out, width, height, entry.interpolation)


def extend_choices(name: str, param: str, choice: str) -> None:
    """Add `choice` to a choice parameter's allowed values (e.g. a palette added at run time)."""
    entry = get(name)
    params = tuple(
        replace(p, choices=tuple(dict.fromkeys((*(p.choices or ()), choice)))) if p.name == param else p
        for p in entry.params
    )
    _REGISTRY[name] = replace(entry, params=params)
