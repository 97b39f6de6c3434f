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


def test_the_meter_judges_a_large_pose_map_against_a_small_picture():
    """The pose editor draws at 512 px and the demo paints at 128: the meter reads the skeleton at
    the map's own size (shrunk to 128 px first, its keypoints were unreadable: "no judge")."""
    from demo import dataset, draw, world
    sc = world.scene(3, kind="figure")
    big_map = dataset.world_map("openpose", sc, draw.image(sc, 512), 512, key=3)
    picture = draw.image(sc, 128)                     # the figure exactly where its pose says
    other = draw.image(world.scene(8, kind="figure"), 128)
    unit = ControlUnit("demo:openpose", big_map)
    score = lambda text: float(text.split("**")[1])  # noqa: E731
    assert score(generation.fidelity_text(unit, picture)) > 0.8
    assert score(generation.fidelity_text(unit, picture)) > score(generation.fidelity_text(unit, other)) + 0.3


def test_closing_the_stream_stops_the_generation_within_one_evaluation(tiny_default):
    """What Gradio does when the tab closes or the request is cancelled: the worker ends at once
    and gives the lock back, so the next job does not wait for a run nobody will see."""
    import time

    from ui import jobs
    items = generation.stream(GenerationRequest(backbone="tiny", width=128, height=128, steps=150, seed=2), preview_every=1e9)
    assert next(items)[:2] == ("step", 1)
    closed = time.monotonic()
    items.close()
    while jobs.current() is not None and time.monotonic() - closed < 10:
        time.sleep(0.01)
    assert jobs.current() is None, "the closed generation still holds the queue"
    waited = time.monotonic() - closed
    print(f"lock back {waited:.3f} s after close")
    assert waited < 2
    nxt = list(generation.stream(GenerationRequest(backbone="tiny", steps=2, seed=3), preview_every=1e9))
    assert nxt[-1][0] == "done" and not nxt[-1][1].interrupted
