import cv2
import numpy as np

import annotators


def _strokes(sketch):
    return sketch[:, :, 0] < 128


def test_dark_on_light_sketch_keeps_its_strokes(sketch):
    out = annotators.run("scribble", sketch)
    assert out.shape == sketch.shape
    ink = out[:, :, 0] > 127
    drawn = _strokes(sketch)
    # Output is white strokes on black, the strokes where they were drawn.
    assert (ink == drawn).mean() > 0.995
    assert out[0, 0].tolist() == [0, 0, 0]


def test_light_on_dark_is_detected_automatically(sketch):
    inverted = 255 - sketch
    out = annotators.run("scribble", inverted)
    assert ((out[:, :, 0] > 127) == _strokes(sketch)).mean() > 0.995
    # Forcing the wrong polarity finds no strokes.
    assert annotators.run("scribble", inverted, polarity="dark_on_light").max() == 0


def test_threshold_decides_what_counts_as_ink(sketch):
    faint = sketch.copy()
    cv2.line(faint, (20, 20), (200, 20), (200, 200, 200), 3)  # 35 levels below the paper
    assert annotators.run("scribble", faint, threshold=20)[20, 100, 0] == 255
    assert annotators.run("scribble", faint, threshold=48)[20, 100, 0] == 0


def _width(out):
    # Stroke thickness where the slanted line crosses column 125.
    return int((out[150:256, 125, 0] > 127).sum())


def test_stroke_width_thickens_and_thins(sketch):
    drawn = int(_strokes(sketch)[150:256, 125].sum())
    at = {"detect_resolution": 256}  # the sketch's own size: no resampling in the way
    assert _width(annotators.run("scribble", sketch, **at)) == drawn
    assert _width(annotators.run("scribble", sketch, stroke_width=11, **at)) in (10, 11, 12)
    thick = sketch.copy()
    cv2.line(thick, (30, 220), (220, 200), (40, 40, 40), 15)
    assert _width(annotators.run("scribble", thick, **at)) >= 15
    assert _width(annotators.run("scribble", thick, stroke_width=3, **at)) in (2, 3, 4)
    assert _width(annotators.run("scribble", thick, stroke_width=1, **at)) == 1
