"""The demo's pose, segmentation and depth ControlNets judged on fixed seeds 0-19 (issue 7's
thresholds), with the judges engine.fidelity ships (the GUI's fidelity meter reads the same).
Pictures are made through engine.generate at the model's native size with the request defaults;
each picture is made once per module and shared by the tests that read it."""
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from engine import ControlUnit, fidelity
from demo import dataset, draw, world

DEMO = Path(__file__).resolve().parents[2] / "models" / "demo"
SEEDS = range(20)
BARS = {"openpose": 0.5, "seg": 0.6, "depth": 0.7}   # silhouette IoU, mean IoU, Spearman
# The shipped nets measured (2026-11-23, session 6's H100 runs, CFG 3): openpose 0.742 (3.9x its
# 0.189 without control), seg 0.636 (9.6x), depth 0.809 (6.8x).
PAIRS = [("seg", "depth"), ("openpose", "seg"), ("openpose", "depth")]
pytestmark = pytest.mark.slow


def _need(*kinds: str) -> None:
    missing = [k for k in kinds if not (DEMO / f"controlnet-{k}" / "config.json").is_file()]
    if missing and os.environ.get("CNSTUDIO_REQUIRE_DEMO") != "1":
        pytest.skip(f"the demo has no {', '.join(missing)} ControlNet yet (issue 7): "
                    f"python3 launch.py train-demo --stage controlnet-{missing[0]}")


def _scene_kind(kinds: tuple[str, ...]) -> str:
    # A pose needs a figure; segmentation and depth alone are judged on scenes of shapes, whose
    # layouts are richer.
    return "figure" if "openpose" in kinds else "shapes"


@lru_cache(maxsize=None)
def _scene(scene_kind: str, seed: int) -> world.Scene:
    return world.scene(seed, kind=scene_kind, two_tone_p=0.0)


def _map(kind: str, sc: world.Scene) -> np.ndarray:
    return dataset.world_map(kind, sc, draw.image(sc, 128), 128, key=sc.seed)


@pytest.fixture(scope="module")
def picture(pictures):
    @lru_cache(maxsize=None)
    def make(scene_kind: str, units: tuple[str, ...], seed: int) -> np.ndarray:
        """The picture of the world's scene of this kind and seed with the demo nets of `units` on."""
        sc = _scene(scene_kind, seed)
        ctrl = tuple(ControlUnit(f"demo:{k}", _map(k, sc)) for k in units)
        return pictures(prompt=sc.caption, seed=seed, units=ctrl)[0]
    return make


def _scores(picture, kind: str, scene_kind: str, units: tuple[str, ...]) -> list[float]:
    out = []
    for seed in SEEDS:
        s = fidelity.score(kind, picture(scene_kind, units, seed), _map(kind, _scene(scene_kind, seed)))
        if s is not None:
            out.append(s)
    assert len(out) >= 15, f"only {len(out)} of {len(SEEDS)} scenes could be judged for {kind}"
    return out


@pytest.mark.parametrize("kind", ["openpose", "seg", "depth"])
def test_controlnet_follows_its_map(picture, kind):
    _need(kind)
    scene = _scene_kind((kind,))
    with_control = float(np.mean(_scores(picture, kind, scene, (kind,))))
    without = float(np.mean(_scores(picture, kind, scene, ())))
    print(f"{kind}: {with_control:.3f} with control, {without:.3f} without (bar {BARS[kind]})")
    assert with_control >= BARS[kind], f"{kind} fidelity {with_control:.3f} is below issue 7's bar {BARS[kind]}"
    assert with_control >= 3 * without, f"{kind}: {with_control:.3f} is not 3x the uncontrolled {without:.3f}"


@pytest.mark.parametrize("pair", PAIRS, ids="+".join)
def test_two_units_at_once_each_keep_most_of_their_effect(picture, pair):
    _need(*pair)
    scene = _scene_kind(pair)
    for kind in pair:
        alone = float(np.mean(_scores(picture, kind, scene, (kind,))))
        both = float(np.mean(_scores(picture, kind, scene, pair)))
        print(f"{'+'.join(pair)}: {kind} {alone:.3f} alone, {both:.3f} with the other unit")
        assert both >= 0.8 * alone, (kind, alone, both)
