"""Before a run starts the status says when it follows nothing, or will take over a minute here."""
import numpy as np
from PIL import Image

from engine import ControlUnit, GenerationRequest, GenerationResult
from ui import estimate, generation


def _unit():
    return ControlUnit("demo:scribble", np.zeros((64, 64, 3), np.uint8))


def test_an_empty_prompt_or_no_unit_is_said():
    assert any("no control unit is on: the picture follows the prompt alone" in n
               for n in generation.run_notes(GenerationRequest(prompt="a red star")))
    assert any("prompt is empty" in n for n in generation.run_notes(GenerationRequest(units=(_unit(),))))
    assert generation.run_notes(GenerationRequest(prompt="a red star", units=(_unit(),), backbone="never-run")) == []


def test_units_the_fast_path_does_not_capture_are_named():
    picture = np.zeros((64, 64, 3), np.uint8)
    adapter = ControlUnit("t2i-adapter_xl_openpose", picture)
    union = ControlUnit("controlnet-union-sdxl-1.0", picture, union_control_type="Depth")
    said = " ".join(generation.run_notes(GenerationRequest(prompt="a cat", units=(adapter, union))))
    assert "ControlNet-Union or T2I-Adapter unit run without the fast path" in said
    plain = GenerationRequest(prompt="a cat", units=(ControlUnit("diffusers_xl_canny_full", picture),))
    assert not any("fast path" in n for n in generation.run_notes(plain))


def test_a_long_run_is_estimated_from_this_machines_measured_steps(monkeypatch):
    monkeypatch.setattr(estimate, "_measured", {})
    monkeypatch.setattr(estimate, "_native", {})
    timer = generation.StepTimer()
    times = iter([100.0, 103.0])
    monkeypatch.setattr(generation.time, "monotonic", lambda: next(times))
    timer.step(1)
    timer.step(21)                                     # 20 steps in 3 s at 128x128: 0.15 s a step
    result = GenerationResult(images=[Image.new("RGB", (128, 128))], seeds=[1], recipe="{}")
    timer.record(GenerationRequest(backbone="demo", prompt="x"), result)
    native = GenerationRequest(backbone="demo", prompt="x", units=(_unit(),))
    assert generation.run_notes(native) == []          # 3 s: no word
    big = native.replace(width=2048, height=2048)
    note = " ".join(generation.run_notes(big))
    assert "estimated at about 13 minutes" in note   # 0.15 s x 256 (pixels) x 20 steps = 768 s
