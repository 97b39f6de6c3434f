"""The embedded demo model, loaded once on the CPU, and the judges built from the renderer."""
from pathlib import Path

import pytest
import torch

DEMO = Path(__file__).resolve().parents[2] / "models" / "demo"


def _demo_built() -> bool:
    return all((DEMO / p).is_file() for p in ("backbone/model_index.json", "controlnet-scribble/config.json",
                                               "controlnet-canny/config.json", "manifest.json"))


def pytest_collection_modifyitems(config, items):
    """Until models/demo is built and committed (issue 5), its tests skip with that reason;
    CNSTUDIO_REQUIRE_DEMO=1 makes a missing demo a failure instead."""
    import os
    if _demo_built() or os.environ.get("CNSTUDIO_REQUIRE_DEMO") == "1":
        return
    skip = pytest.mark.skip(reason=f"the demo model is not built in {DEMO} yet (issue 5): "
                                   "run `python3 launch.py train-demo`")
    for item in items:
        if DEMO.parent.parent / "tests" / "demo" in Path(str(item.fspath)).parents and "judges" not in item.name:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def demo_manager():
    from engine.manager import ModelManager
    if not (DEMO / "backbone" / "model_index.json").is_file():
        pytest.fail(f"the demo model is missing from {DEMO}; rebuild it with `python3 launch.py train-demo`")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    return ModelManager(device="cpu", dtype=torch.float32)


@pytest.fixture(scope="session")
def judges():
    from demo import judges as j
    fitted = j.fit(range(600))
    colour_acc, shape_acc = j.accuracy(fitted, range(100_000, 100_200))
    assert colour_acc >= 0.95 and shape_acc >= 0.95, (colour_acc, shape_acc)
    return fitted


def generate_arrays(manager, **request) -> list:
    """Pictures as HxWx3 uint8 arrays, through the engine's one entry point."""
    import numpy as np

    from engine import GenerationRequest, generate
    result = generate(GenerationRequest(backbone="demo", **request), save=False, manager=manager)
    return [np.asarray(im) for im in result.images]


@pytest.fixture(scope="session")
def pictures(demo_manager):
    """pictures(prompt=..., seed=..., units=..., batch_size=...) -> list of HxWx3 uint8 arrays."""
    return lambda **request: generate_arrays(demo_manager, **request)
