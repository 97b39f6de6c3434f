import numpy as np

from ui.sketch_tab import annotated, drawing


def _editor_value():
    background = np.zeros((40, 60, 4), np.uint8)
    background[..., 1] = 200
    background[..., 3] = 255          # an opaque green photo to trace over
    layer = np.zeros((40, 60, 4), np.uint8)
    layer[10:12, 5:50] = (0, 0, 0, 255)  # one black stroke
    composite = background.copy()
    composite[10:12, 5:50] = (0, 0, 0, 255)
    return {"background": background, "layers": [layer], "composite": composite}


def test_the_map_reads_the_strokes_on_white_paper_not_the_traced_picture():
    paper = drawing(_editor_value())
    assert paper.shape == (40, 60, 3) and paper.dtype == np.uint8
    assert (paper[10:12, 5:50] == 0).all()
    assert (paper[20:] == 255).all()


def test_asked_for_the_background_too_the_map_reads_everything():
    pic = drawing(_editor_value(), with_background=True)
    assert (pic[30, 30] == (0, 200, 0)).all() and (pic[10, 10] == 0).all()


def test_an_empty_canvas_has_no_drawing():
    assert drawing(None) is None
    assert drawing({"background": None, "layers": [], "composite": None}) is None


def test_the_scribble_map_follows_the_stroke():
    cmap = annotated(drawing(_editor_value()), "scribble", {})
    assert cmap[10:12, 10:45].mean() > 200 and cmap[25:, :].max() == 0
    assert annotated(drawing(_editor_value()), "none", {}) is not None


def test_a_new_canvas_size_keeps_the_drawing_centred_on_fresh_paper():
    from ui.sketch_tab import resized_canvas
    bigger = resized_canvas(_editor_value(), "100x64")
    assert bigger["background"].shape == (64, 100, 4) and bigger["layers"][0].shape == (64, 100, 4)
    paper = drawing(bigger)
    assert (paper[22:24, 25:70] == 0).all()               # the stroke, moved by the new margins (20, 12)
    assert (paper[:, :20] == 255).all() and (bigger["background"][:, :20] == 255).all()
    assert (bigger["background"][12:52, 20:80, 1] == 200).all()   # the picture to trace over, centred too
