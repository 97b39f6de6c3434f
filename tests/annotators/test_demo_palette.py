"""The demo model's segmentation classes as a palette a painted colour map snaps to."""
import numpy as np

import annotators


def test_a_painted_map_snaps_to_the_demo_models_classes():
    from demo.draw import SEG_COLOURS   # the world draws its maps in the palette annotators ship
    assert "demo" in annotators.spec("segmentation_paint")["params"][0]["choices"]
    painted = np.zeros((32, 32, 3), np.uint8)
    near = np.array(SEG_COLOURS["circle"]) + 9
    painted[:16] = np.clip(near, 0, 255)
    painted[16:] = np.array(SEG_COLOURS["background"]) - 5 if min(SEG_COLOURS["background"]) >= 5 else 0
    out = annotators.run("segmentation_paint", painted, palette="demo")
    assert (out[:16] == SEG_COLOURS["circle"]).all()
    assert {tuple(c) for c in out.reshape(-1, 3)} <= set(SEG_COLOURS.values())
