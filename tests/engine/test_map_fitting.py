"""What the ControlNet reads: a map fitted to the request by the field's rules, seen through the
public generate path (the map the condition embedding receives is captured)."""
import numpy as np
import pytest
import torch

from engine import ControlUnit, GenerationRequest, generate


def _seen_by_the_controlnet(manager, unit, width, height):
    net = manager.controlnet(unit.model, manager.backbone("tiny")).net
    seen = []
    hook = net.controlnet_cond_embedding.register_forward_pre_hook(lambda m, args: seen.append(args[0].clone()))
    try:
        generate(GenerationRequest(backbone="tiny", units=[unit], width=width, height=height, steps=1, seed=3),
                 manager=manager, save=False)
    finally:
        hook.remove()
    cond = seen[0][0].permute(1, 2, 0).numpy() * 255
    assert np.abs(cond - cond.round()).max() < 1e-3      # the map arrives as whole colour levels
    return cond.round().astype(np.uint8)


def _colours(image: np.ndarray) -> set:
    return {tuple(c) for c in image.reshape(-1, 3)}


def _segmentation(size: int) -> np.ndarray:
    seg = np.zeros((size, size, 3), np.uint8)
    seg[:] = (120, 120, 120)                                   # wall
    seg[size // 3:, :] = (80, 50, 50)                          # floor
    yy, xx = np.mgrid[:size, :size]
    seg[(yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 4) ** 2] = (255, 6, 82)   # a person, round edge
    return seg


@pytest.mark.parametrize("source, request_size", [(64, 256), (512, 128)], ids=["up", "down"])
def test_a_segmentation_map_reaches_the_controlnet_with_exactly_its_colours(tiny_manager, source, request_size):
    seg = _segmentation(source)
    cond = _seen_by_the_controlnet(tiny_manager, ControlUnit("cn0", seg, resize_mode="just_resize"),
                                   request_size, request_size)
    assert cond.shape == (request_size, request_size, 3)
    assert _colours(cond) == _colours(seg)                     # classes never blend into new colours


def test_fill_pads_a_depth_map_with_its_border_depth_not_with_far(tiny_manager):
    """A depth map (near = bright) of an object in front of a wall at mid depth, wider than the
    picture: "fill" pads above and below with the wall's depth, as the extension pads."""
    depth = np.full((64, 128, 3), 90, np.uint8)
    depth[16:48, 40:88] = np.linspace(160, 250, 48, dtype=np.uint8)[None, :, None]
    cond = _seen_by_the_controlnet(tiny_manager, ControlUnit("cn0", depth, resize_mode="fill"), 128, 128)
    assert (cond[:30] == 90).all() and (cond[-30:] == 90).all()        # padded with the wall's depth
    assert cond[40:88].max() > 200                                    # the map itself is inside
    assert len(np.unique(cond[32:96])) > 20                           # a grey map is interpolated, not snapped


def test_a_binary_line_map_stays_binary_both_ways(tiny_manager):
    lines = np.zeros((96, 96, 3), np.uint8)
    lines[20:76, 47] = 255
    for size in (64, 160):
        cond = _seen_by_the_controlnet(tiny_manager, ControlUnit("cn0", lines, resize_mode="crop"), size, size)
        assert set(np.unique(cond)) == {0, 255} and (cond == 255).any()
