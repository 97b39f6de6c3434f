import numpy as np
import pytest

import annotators
from annotators._aux import aux_module


def test_square_edges_lie_on_its_border(square):
    edges = annotators.run("canny", square)[:, :, 0] > 0
    ys, xs = np.nonzero(edges)
    assert len(ys) > 4 * 100
    # Every edge pixel is within 1 px of the square's border (rows/cols 191.5 and 319.5).
    on_border = (np.minimum(np.abs(ys - 191.5), np.abs(ys - 319.5)) <= 1) | (
        np.minimum(np.abs(xs - 191.5), np.abs(xs - 319.5)) <= 1)
    assert on_border.all()
    assert not edges[200:310, 200:310].any() and not edges[:180].any()


@pytest.mark.parametrize("low,high,res", [(100, 200, 512), (50, 120, 384), (10, 250, 640)])
def test_equals_controlnet_aux_canny_detector(photo, low, high, res):
    theirs = aux_module("canny").CannyDetector()(photo, low, high, detect_resolution=res,
                                                 image_resolution=512, output_type="np")
    ours = annotators.run("canny", photo, low_threshold=low, high_threshold=high, detect_resolution=res,
                          size=(theirs.shape[1], theirs.shape[0]))
    assert ours.shape == theirs.shape
    assert (ours == theirs).all()
