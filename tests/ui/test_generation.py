import numpy as np
from PIL import Image

from engine import ControlUnit, GenerationRequest, GenerationResult
from ui import generation


def test_the_stream_reports_every_step_then_the_result(tiny_default):
    items = list(generation.stream(GenerationRequest(backbone="tiny", steps=3, seed=2), preview_every=0.0))
    assert [i[:3] for i in items[:-1]] == [("step", 1, 3), ("step", 2, 3), ("step", 3, 3)]
    assert items[0][3].dtype == np.uint8 and items[0][3].ndim == 3   # a preview of the unfinished picture
    assert items[-1][0] == "done" and items[-1][1].seeds == [2]


def test_the_summary_names_seeds_unknown_words_and_warnings():
    result = GenerationResult([Image.new("RGB", (8, 8))] * 2, [5, 6], "{}", interrupted=True,
                              ignored_words=("dragon",), warnings=("The images were made but not saved: disk full",))
    text = generation.summary(result, 3.0)
    assert "Interrupted" in text and "seed 5, 6" in text and "dragon" in text and "disk full" in text


def test_the_fidelity_meter_scores_a_followed_map_high_and_says_when_there_is_no_judge():
    cmap = np.zeros((64, 64, 3), np.uint8)
    cmap[10:54, 30:33] = 255
    followed = 255 - cmap                          # dark line where the map has its line
    high = generation.fidelity_text(ControlUnit("demo:scribble", cmap), followed)
    low = generation.fidelity_text(ControlUnit("demo:scribble", cmap), np.full((64, 64, 3), 128, np.uint8))
    score = lambda text: float(text.split("**")[1])  # noqa: E731
    assert score(high) > 0.8 and score(low) == 0.0
    assert "no judge" in generation.fidelity_text(ControlUnit("some_unknown_net", cmap), followed)
    assert generation.fidelity_text(ControlUnit("demo:scribble", cmap, enabled=False), followed) == ""
