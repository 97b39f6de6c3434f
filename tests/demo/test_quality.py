"""The demo model's quality, judged on fixed seeds 0-19 (issue 5's thresholds). Pictures are
made through engine.generate at the model's native size with the request defaults (UniPC,
20 steps, the scale the demo recommends: CFG 3), batched where the prompt allows."""
import numpy as np
import pytest

import annotators
from engine import ControlUnit, fidelity
from demo import draw, world

SEEDS = range(20)
pytestmark = pytest.mark.slow


def _colour_prompts():
    """One prompt per colour word; the shapes cycle so every shape word is asked too."""
    for i, colour in enumerate(world.COLOURS):
        shape = world.SHAPES[i % len(world.SHAPES)]
        bg = "black" if colour == "white" else "white"
        yield colour, shape, f"a {colour} {shape} on a {bg} background"


def test_backbone_draws_the_asked_colour_and_shape(pictures, judges):
    colour_hits, shape_hits = {}, {}
    for colour, shape, prompt in _colour_prompts():
        images = []
        for first in range(0, len(SEEDS), 16):   # 16 is the largest batch a request takes
            images += pictures(prompt=prompt, seed=first,
                                      batch_size=min(16, len(SEEDS) - first))
        colour_hits[colour] = [judges.colour(im) == colour for im in images]
        shape_hits.setdefault(shape, []).extend(judges.shape(im) == shape for im in images)
    colour_rates = {c: float(np.mean(h)) for c, h in colour_hits.items()}
    shape_rates = {s: float(np.mean(h)) for s, h in shape_hits.items()}
    print("colour rates", colour_rates, "shape rates", shape_rates)
    # Measured on the shipped backbone (2026-11-23): every colour 1.0, shapes 0.975-1.0. At CFG 7.5
    # the same backbone gives green 0.0 and brown 0.05 (models/demo/README.md), so the scale matters.
    assert min(colour_rates.values()) >= 0.85, colour_rates
    assert min(shape_rates.values()) >= 0.70, shape_rates


def _edge_maps(seed: int) -> tuple[world.Scene, dict]:
    sc = world.scene(seed, kind="shapes", two_tone_p=0.0)
    return sc, {"scribble": annotators.run("scribble", draw.sketch(sc, 128, seed=seed)),
                "canny": annotators.run("canny", draw.image(sc, 128))}


@pytest.mark.parametrize("kind", ["scribble", "canny"])
def test_edge_controlnet_follows_its_map(pictures, kind):
    with_control, without = [], []
    for seed in SEEDS:
        sc, maps = _edge_maps(seed)
        if not maps[kind].any():
            continue   # a shape as light as its background leaves canny no line to follow
        unit = ControlUnit(f"demo:{kind}", maps[kind])
        with_control.append(fidelity.score(kind, pictures(prompt=sc.caption, seed=seed,
                                                                 units=(unit,))[0], maps[kind]))
        without.append(fidelity.score(kind, pictures(prompt=sc.caption, seed=seed)[0], maps[kind]))
    assert len(with_control) >= 15, f"only {len(with_control)} of 20 scenes gave {kind} lines"
    f1, base = float(np.mean(with_control)), float(np.mean(without))
    print(f"{kind}: edge F1 {f1:.3f} with control, {base:.3f} without, over {len(with_control)} scenes")
    assert f1 >= 0.5 and f1 >= 3 * base, (f1, base)   # measured: scribble 0.513 (0.062), canny 0.549 (0.066)


def _halves(seed: int):
    """A scribble of one shape on the left and the canny map of another on the right."""
    rng = np.random.default_rng([seed, 0xB07])
    (ca, cb), (sa, sb) = rng.choice(["red", "blue", "green", "orange", "purple"], 2, replace=False), \
        rng.choice(world.SHAPES, 2, replace=False)
    left = world.single_shape_scene(seed, str(sa), str(ca), "white", position="on the left")
    right = world.single_shape_scene(seed + 100, str(sb), str(cb), "white", position="on the right")
    prompt = f"a {ca} {sa} on the left and a {cb} {sb} on the right on a white background"
    return prompt, annotators.run("scribble", draw.sketch(left, 128, seed=seed)), annotators.run("canny", draw.image(right, 128))


def test_two_units_at_once_each_keep_most_of_their_effect(pictures):
    scores = {"scribble": [], "canny": [], "both:scribble": [], "both:canny": []}
    for seed in SEEDS:
        prompt, scribble, canny = _halves(seed)
        s_unit, c_unit = ControlUnit("demo:scribble", scribble), ControlUnit("demo:canny", canny)
        only_s = pictures(prompt=prompt, seed=seed, units=(s_unit,))[0]
        only_c = pictures(prompt=prompt, seed=seed, units=(c_unit,))[0]
        both = pictures(prompt=prompt, seed=seed, units=(s_unit, c_unit))[0]
        scores["scribble"].append(fidelity.score("scribble", only_s[:, :64], scribble[:, :64]))
        scores["canny"].append(fidelity.score("canny", only_c[:, 64:], canny[:, 64:]))
        scores["both:scribble"].append(fidelity.score("scribble", both[:, :64], scribble[:, :64]))
        scores["both:canny"].append(fidelity.score("canny", both[:, 64:], canny[:, 64:]))
    mean = {k: float(np.mean(v)) for k, v in scores.items()}
    print("single and combined edge F1", mean)
    assert mean["both:scribble"] >= 0.8 * mean["scribble"]
    assert mean["both:canny"] >= 0.8 * mean["canny"]
