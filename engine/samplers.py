"""Sampler names (AUTOMATIC1111's, in snake case) mapped to diffusers schedulers.

A fresh scheduler is made for every generation from the backbone's own scheduler config,
so concurrent generations never share a scheduler's step state.
"""
from __future__ import annotations

from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    LMSDiscreteScheduler,
    UniPCMultistepScheduler,
)

# name -> (scheduler class, config overrides, A1111 display name)
_TABLE = {
    "unipc": (UniPCMultistepScheduler, {}, "UniPC"),
    "dpmpp_2m": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2}, "DPM++ 2M"),
    "dpmpp_2m_karras": (DPMSolverMultistepScheduler,
                        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
                        "DPM++ 2M Karras"),
    "euler": (EulerDiscreteScheduler, {}, "Euler"),
    "euler_a": (EulerAncestralDiscreteScheduler, {}, "Euler a"),
    "ddim": (DDIMScheduler, {}, "DDIM"),
    "heun": (HeunDiscreteScheduler, {}, "Heun"),
    "lms": (LMSDiscreteScheduler, {}, "LMS"),
}

SAMPLERS: tuple[str, ...] = tuple(_TABLE)
# what AUTOMATIC1111 calls each, for its API's sampler_name and the PNG's parameters text
SAMPLER_DISPLAY_NAMES: dict[str, str] = {name: row[2] for name, row in _TABLE.items()}


def make_scheduler(name: str, config: dict):
    """A new scheduler of the named kind, configured from a backbone's scheduler config."""
    if name not in _TABLE:
        raise ValueError(f"unknown sampler {name!r}; choose one of: {', '.join(SAMPLERS)}")
    cls, overrides, _ = _TABLE[name]
    return cls.from_config(dict(config), **overrides)


def display_name(name: str) -> str:
    """The name AUTOMATIC1111 shows, used in the PNG's `parameters` text."""
    return _TABLE[name][2]
