"""Judges are only trusted after they prove themselves on held-out renders."""
import numpy as np

from demo import draw, judges, world


def test_judges_built_from_the_renderer_are_right_on_held_out_renders():
    fitted = judges.fit(range(600))
    colour_acc, shape_acc = judges.accuracy(fitted, range(100_000, 100_200))
    assert colour_acc >= 0.95
    assert shape_acc >= 0.95


def test_judges_say_nothing_about_an_empty_picture():
    fitted = judges.fit(range(50))
    blank = np.full((128, 128, 3), 200, np.uint8)
    assert fitted.colour(blank) is None and fitted.shape(blank) is None
    # ... and are not fooled by the background's colour
    sc = world.single_shape_scene(1, "star", "green", "yellow", size="large")
    assert fitted.colour(draw.image(sc)) == "green"
