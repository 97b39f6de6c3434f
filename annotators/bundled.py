"""Models that ship inside an installed package, so an annotator works on a fresh machine with
no weight files: mediapipe 0.10.21's wheel carries its pose, hand, face and selfie-segmentation
models (later releases download them instead), and OpenCV carries its line segment detector.

An annotator declares one of these as `bundled=`; it serves whenever the annotator's own weights
are absent. mediapipe is imported only when such an annotator runs.
"""
from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass
from functools import lru_cache

MEDIAPIPE_VERSION = "0.10.21"


@lru_cache(maxsize=1)
def _mediapipe_problem() -> str | None:
    if sys.version_info >= (3, 13):
        return (f"mediapipe {MEDIAPIPE_VERSION}, whose wheel carries the models, exists for Python 3.9-3.12 "
                f"only; this is Python {sys.version_info.major}.{sys.version_info.minor}")
    try:
        version = importlib.metadata.version("mediapipe")
    except importlib.metadata.PackageNotFoundError:
        return (f"mediapipe is not installed: `pip install --no-deps mediapipe=={MEDIAPIPE_VERSION}` "
                "(python3 launch.py installs it)")
    if version != MEDIAPIPE_VERSION:
        return (f"mediapipe {version} is installed, but only {MEDIAPIPE_VERSION} carries its models in the "
                f"wheel: `pip install --no-deps mediapipe=={MEDIAPIPE_VERSION}`")
    return None


def mediapipe():
    """The mediapipe module; ValueError saying why when it cannot serve here."""
    problem = _mediapipe_problem()
    if problem:
        raise ValueError(problem)
    # its C++ side logs every graph it builds to stderr; only errors matter to a user
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        return importlib.import_module("mediapipe")
    except ImportError as e:   # e.g. its protobuf or absl dependency missing
        raise ValueError(f"mediapipe {MEDIAPIPE_VERSION} is installed but does not import ({e}); "
                         "reinstall the studio's requirements (python3 launch.py)") from e


@dataclass(frozen=True)
class Bundled:
    """A model inside an installed package: what it is, and whether it can run here."""

    what: str
    package: str            # "mediapipe" or "opencv"

    def problem(self) -> str | None:
        """None when it can run here, else why not (and what to do)."""
        return _mediapipe_problem() if self.package == "mediapipe" else None

    def to_json(self) -> dict:
        problem = self.problem()
        return {"model": self.what, "package": self.package, "available": problem is None, "problem": problem}


MEDIAPIPE_POSE = Bundled(f"mediapipe {MEDIAPIPE_VERSION} Holistic (one person: body, hands, face)", "mediapipe")
MEDIAPIPE_SELFIE = Bundled(f"mediapipe {MEDIAPIPE_VERSION} selfie segmentation", "mediapipe")
OPENCV_LSD = Bundled("OpenCV's line segment detector (LSD)", "opencv")
