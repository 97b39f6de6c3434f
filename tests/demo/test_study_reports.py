"""The training study's shipped reports (models/demo/study_training*.json) and the README's
figures: the verdicts re-derived from the curves, and the README quoting what the data says."""
import json
from pathlib import Path

import pytest

from demo import studies

DEMO = Path(__file__).resolve().parents[2] / "models" / "demo"
README = (DEMO / "README.md").read_text()
REPORTS = {"scribble": "study_training", "scribble-seed11": "study_training_seed11", "canny": "study_training_canny",
           "seg": "study_training_seg"}
LABELS = {"baseline": "baseline (dropout 0.5, all links)", "no_dropout": "no dropout",
          "mid_first": "middle block first (1000 steps)"}


def _report(kind: str) -> dict:
    return json.loads((DEMO / f"{REPORTS[kind]}.json").read_text())


@pytest.mark.parametrize("kind", sorted(REPORTS))
def test_report_verdicts_follow_from_its_curves(kind):
    report = _report(kind)
    assert report["kind"] == kind.split("-")[0] and set(report["runs"]) == set(studies.RUNS)
    for name, run in report["runs"].items():
        curve = [tuple(p) for p in run["curve"]]
        assert run["steps_to_threshold"] == studies.steps_to_threshold(curve, report["threshold"])
        assert run["largest_jump"] == studies.largest_jump(curve)
    # the plot beside the report, which the README shows
    assert (DEMO / f"{REPORTS[kind]}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"({REPORTS[kind]}.png)" in README


def test_scribble_study_answers_the_papers_questions_as_the_readme_says():
    lines = README.splitlines()
    crossings = {}
    for kind in ("scribble", "scribble-seed11"):
        report = _report(kind)
        runs, empty, seed = report["runs"], report["empty_prompt_fidelity"], report["settings"]["seed"]
        # dropout: with an empty prompt the net trained with dropout reads the map, more than without
        assert empty["baseline"] > 3 * empty["no_control"] and empty["baseline"] > 1.5 * empty["no_dropout"]
        # sudden convergence in every run that reached the threshold
        assert all(r["largest_jump"]["sudden"] for r in runs.values() if r["steps_to_threshold"] is not None)
        crossings[seed] = {n: r["crossing_step"] for n, r in runs.items()}
        # the README's row of each run quotes its report
        for name, run in runs.items():
            row = next(line for line in lines if line.startswith(f"| {LABELS[name]} | {seed} |"))
            assert f"| {empty[name]:.3f} |" in row
            steps = run["steps_to_threshold"]
            assert (f"| {steps} ({run['crossing_step']:.0f}) |" if steps else "| not reached |") in row
            assert ("sudden |" in row) == run["largest_jump"]["sudden"]
        assert report["mid_first_speedup"]["ratio"] == pytest.approx(
            crossings[seed]["baseline"] / crossings[seed]["mid_first"])
        assert f"**{report['mid_first_speedup']['ratio']:.2f}x**" in README
    # the middle block first is faster on one seed and slower on the other, as the README says
    assert crossings[10]["mid_first"] < crossings[10]["baseline"] and crossings[11]["mid_first"] > crossings[11]["baseline"]
    ratio_of_means = (crossings[10]["baseline"] + crossings[11]["baseline"]) / (
        crossings[10]["mid_first"] + crossings[11]["mid_first"])
    assert f"the mean of the two crossings {ratio_of_means:.2f}x" in README


def test_canny_and_seg_studies_stayed_flat_as_the_readme_says():
    for kind in ("canny", "seg"):
        for run in _report(kind)["runs"].values():
            values = [v for _, v in run["curve"]]
            assert run["steps_to_threshold"] is None and max(values) - min(values) < 0.06, kind
