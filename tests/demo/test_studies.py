"""`launch.py study training|sweeps` end to end on tiny models, and the curve arithmetic."""
import json

import numpy as np
import pytest
import torch

from demo import cli, studies

from tests.tiny_models import save_world_backbone

TRAIN_ARGS = ["--kind", "scribble", "--steps", "4", "--batch-size", "2", "--lr", "1e-3", "--workers", "0",
              "--eval-every", "2", "--eval-count", "1", "--eval-steps", "2", "--cpu"]


def test_curve_arithmetic():
    curve = [(0, 0.1), (100, 0.2), (200, 0.6), (300, 0.7)]
    assert studies.steps_to_threshold(curve, 0.5) == 200
    assert studies.steps_to_threshold(curve, 0.9) is None
    assert studies.crossing(curve, 0.5) == pytest.approx(175.0)      # 0.2 -> 0.6 between 100 and 200
    assert studies.crossing([(0, 0.6), (10, 0.7)], 0.5) == 0.0
    assert studies.crossing(curve, 0.9) is None
    # a flat start, then 0.1 -> 0.6 over two intervals: the jump, though growth goes on after it
    climb = [(0, 0.1), (100, 0.11), (200, 0.1), (300, 0.3), (400, 0.6), (500, 0.65), (600, 0.8)]
    jump = studies.largest_jump(climb)
    assert (jump["from_step"], jump["to_step"]) == (200, 400) and jump["rise"] == pytest.approx(0.5)
    assert jump["flat_before"] == pytest.approx(0.01) and jump["share_of_gain"] == pytest.approx(0.5 / 0.7)
    assert jump["sudden"] and jump["holds"]
    # the H100 study's scribble baseline, seed 11: 0.12 -> 0.29 -> 0.35 after 800 flat steps, then a
    # slow climb to 0.47: no single interval carries half the gain (0.17 of 0.35), yet it is a jump
    seed11 = [(0, .115), (200, .115), (400, .114), (600, .118), (800, .12), (1000, .289), (1200, .353),
              (1400, .424), (1600, .387), (1800, .402), (2000, .405), (3000, .412), (4000, .468)]
    j11 = studies.largest_jump(seed11)
    assert (j11["from_step"], j11["to_step"]) == (800, 1200) and j11["sudden"]
    steady = [(i, 0.1 * i) for i in range(6)]
    assert not studies.largest_jump(steady)["sudden"]                   # no flat start
    late = [(0, 0.0), (1, 0.1), (2, 0.2), (3, 0.3), (4, 0.55), (5, 0.6)]
    assert studies.largest_jump(late)["rise"] == pytest.approx(0.35) and not studies.largest_jump(late)["sudden"]
    assert not studies.largest_jump([(0, 0.1), (1, 0.5), (2, 0.55), (3, 0.6), (4, 0.6)])["sudden"]  # no start seen
    # a flat curve's noise: the H100 study's seg baseline (first 12 of 21 evaluations), whose
    # 0.014 -> 0.052 carried more than all of its gain and fell back at once
    noise = [(0, 0.0193), (150, 0.0436), (300, 0.0111), (450, 0.0256), (600, 0.0173), (750, 0.0091),
             (900, 0.0414), (1050, 0.0171), (1200, 0.0103), (1350, 0.0142), (1500, 0.0522), (1650, 0.0091)]
    flat = studies.largest_jump(noise)
    assert flat["share_of_gain"] > 1 and not flat["holds"] and not flat["sudden"]
    dropped = studies.largest_jump([(0, 0.0), (1, 0.0), (2, 0.5), (3, 0.05), (4, 0.05), (5, 0.05)])
    assert dropped["rise"] == 0.5 and not dropped["holds"] and not dropped["sudden"]
    assert studies.largest_jump([(0, 0.3)]) is None
    later = [(0, 0.1), (100, 0.1), (200, 0.3), (300, 0.7)]
    rows = studies.speedup_by_level(later, curve, levels=(0.2, 0.5, 0.9))
    assert [r["level"] for r in rows] == [0.2, 0.5, 0.9]
    assert rows[0]["baseline"] == pytest.approx(150.0) and rows[0]["mid_first"] == pytest.approx(100.0)
    assert rows[0]["ratio"] == pytest.approx(1.5)
    assert rows[1]["ratio"] == pytest.approx(250.0 / 175.0)
    assert rows[2] == {"level": 0.9, "baseline": None, "mid_first": None, "ratio": None}


def test_training_study_end_to_end(tiny_world_backbone, tmp_path, capsys):
    out = tmp_path / "study"
    args = ["study", "training", "--backbone", str(tiny_world_backbone), "--out", str(out), *TRAIN_ARGS]
    assert cli.main(args) == 0
    report = json.loads((out / "training.json").read_text())
    assert (out / "training.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(report["runs"]) == {"baseline", "no_dropout", "mid_first"}
    # what each run was trained with, as its own saved config says
    saved = {n: json.loads((out / "runs" / n / "train_config.json").read_text()) for n in report["runs"]}
    assert {n: (c["prompt_dropout"], c["mid_only_steps"]) for n, c in saved.items()} == {
        "baseline": (0.5, 0), "no_dropout": (0.0, 0), "mid_first": (0.5, 1)}
    assert len({c["seed"] for c in saved.values()}) == 1 and all(c["steps"] == 4 for c in saved.values())
    for name, run in report["runs"].items():
        assert [p[0] for p in run["curve"]] == [0, 2, 4]               # one point per evaluation
        assert all(0.0 <= p[1] <= 1.0 for p in run["curve"])
        assert run["final_fidelity"] == run["curve"][-1][1]
        assert run["steps_to_threshold"] == studies.steps_to_threshold(run["curve"], report["threshold"])
        assert run["largest_jump"]["to_step"] - run["largest_jump"]["from_step"] in (2, 4)   # one or two intervals
    # every run starts from the same zero-conv copy, so step 0 scores alike
    assert len({r["curve"][0][1] for r in report["runs"].values()}) == 1
    speed = report["mid_first_speedup"]
    a, c = report["runs"]["baseline"]["crossing_step"], report["runs"]["mid_first"]["crossing_step"]
    assert speed["ratio"] == (a / c if a is not None and c else None) and speed["paper"] == 1.6
    assert speed["baseline_steps"] == report["runs"]["baseline"]["steps_to_threshold"]
    assert [r["level"] for r in speed["by_level"]] == list(studies.SPEEDUP_LEVELS)
    assert all(r["baseline"] == studies.crossing(report["runs"]["baseline"]["curve"], r["level"])
               for r in speed["by_level"])

    # the empty-prompt fidelity is that of the run's final net with prompt "", computed directly
    from diffusers import ControlNetModel

    from demo import dataset
    from engine.training.controlnet import load_parts
    from engine.training.evaluate import eval_items, generate_batch, mean_fidelity
    parts = load_parts(str(tiny_world_backbone), "cpu")
    items = eval_items(dataset.WorldDataset(parts["tokenizer"], 64, kind="scribble", seed=10 + 7_777_777), 1)
    empty = report["empty_prompt_fidelity"]
    assert empty["seeds"] == [0]
    for name in ("baseline", "no_dropout"):
        net = ControlNetModel.from_pretrained(str(out / "runs" / name / "controlnet"))
        direct = mean_fidelity("scribble", generate_batch(parts, net, items, 2, 5.0, size=64, prompt=""), items)
        assert empty[name] == pytest.approx(direct, abs=1e-6)
    assert empty["no_control"] == pytest.approx(
        mean_fidelity("scribble", generate_batch(parts, None, items, 2, 5.0, size=64, prompt=""), items), abs=1e-6)

    # a second call skips the finished runs; other settings in the same folder are refused
    stamps = {n: (out / "runs" / n / "summary.json").stat().st_mtime_ns for n in report["runs"]}
    capsys.readouterr()
    assert cli.main(args) == 0
    assert capsys.readouterr().out.count("already finished; skipped") == 3
    assert stamps == {n: (out / "runs" / n / "summary.json").stat().st_mtime_ns for n in report["runs"]}
    assert cli.main([*args, "--steps", "6"]) == 2
    assert "other settings (steps)" in capsys.readouterr().err


def test_parallel_study_trains_the_same_runs_as_one_after_another(tiny_world_backbone, tmp_path):
    """--parallel (one process per run, for a GPU) gives each run exactly the curve it gets when
    the runs go one after another: same configs, same seeds, same data."""
    reports = {}
    for mode, extra in (("serial", []), ("parallel", ["--parallel"])):
        out = tmp_path / mode
        assert cli.main(["study", "training", "--backbone", str(tiny_world_backbone), "--out", str(out),
                         *TRAIN_ARGS, *extra]) == 0
        reports[mode] = json.loads((out / "training.json").read_text())
    for name in studies.RUNS:
        serial, parallel = reports["serial"]["runs"][name], reports["parallel"]["runs"][name]
        assert [p[0] for p in parallel["curve"]] == [p[0] for p in serial["curve"]]
        assert np.allclose([p[1] for p in parallel["curve"]], [p[1] for p in serial["curve"]], atol=1e-6), name
    a, b = reports["parallel"]["empty_prompt_fidelity"], reports["serial"]["empty_prompt_fidelity"]
    assert a["seeds"] == b["seeds"]
    assert {n: a[n] for n in (*studies.RUNS, "no_control")} == pytest.approx({n: b[n] for n in (*studies.RUNS, "no_control")})


def test_training_study_stops_when_its_time_is_used(tiny_world_backbone, tmp_path):
    out = tmp_path / "study"
    assert cli.main(["study", "training", "--backbone", str(tiny_world_backbone), "--out", str(out),
                     "--max-minutes", "0", *TRAIN_ARGS]) == 3
    assert not (out / "training.json").exists() and not (out / "runs").exists()


@pytest.fixture()
def tiny_demo(tmp_path, monkeypatch):
    """A models/ folder whose demo has a tiny backbone and a scribble ControlNet with its zero
    convolutions randomised (a fresh copy adds nothing, so every weight would look alike)."""
    from engine.training.controlnet import make_controlnet, zero_convs
    root = tmp_path / "models"
    parts = save_world_backbone(root / "demo" / "backbone")
    net = make_controlnet(parts["unet"], vae_scale=2)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in (p for z in zero_convs(net) for p in z.parameters()):
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    net.save_pretrained(str(root / "demo" / "controlnet-scribble"))
    monkeypatch.setenv("CNSTUDIO_MODELS", str(root))
    return root


def test_sweeps_end_to_end(tiny_demo, tmp_path):
    out = tmp_path / "sweeps"
    assert cli.main(["study", "sweeps", "--kinds", "scribble,canny", "--seeds", "2", "--steps", "2",
                     "--out", str(out), "--cpu"]) == 0
    report = json.loads((out / "sweeps.json").read_text())
    for name in ("sweep_weight.png", "sweep_end.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list(report["kinds"]) == ["scribble"] and "canny" in report["skipped"]
    assert "not installed" in report["skipped"]["canny"]
    assert report["seeds"] == [0, 1] and report["size"] == 64
    assert report["cfg_scale"] == 7.5      # no --cfg and no recommended.json: the default, as a number
    sweep = report["kinds"]["scribble"]
    assert [p["weight"] for p in sweep["weight"]] == [0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0]
    assert [p["end"] for p in sweep["end"]] == [0.2, 0.4, 0.6, 0.8, 1.0]
    for p in sweep["weight"] + sweep["end"]:
        assert len(p["scores"]) == 2 and p["fidelity"] == pytest.approx(np.mean(p["scores"]))
    assert sweep["weight"][4]["scores"] == sweep["end"][-1]["scores"]      # weight 1, end 1: one setting

    # weight 0 is the picture without any control, scored directly
    from engine import GenerationRequest, generate
    from engine.fidelity import score
    from engine.manager import ModelManager
    from demo.studies import world_case
    manager = ModelManager(device="cpu", dtype=torch.float32)
    for seed in (0, 1):
        caption, cmap = world_case("scribble", seed, 64)
        req = GenerationRequest(backbone="demo", prompt=caption, steps=2, cfg_scale=7.5, seed=seed, sampler="unipc")
        image = np.asarray(generate(req, manager=manager, save=False).images[0])
        assert sweep["weight"][0]["scores"][seed] == pytest.approx(score("scribble", image, cmap), abs=1e-6)
    # ... and the unit does act: some weight changes what the pictures score
    assert any(p["scores"] != sweep["weight"][0]["scores"] for p in sweep["weight"][1:])
    assert cli.main(["study", "sweeps", "--kinds", "canny", "--out", str(out), "--cpu"]) == 2   # nothing to sweep
