"""The training study's shipped reports (models/demo/study_training*.json) and the README's
figures: the verdicts re-derived from the curves, and the README quoting what the data says."""
import json
import re
from pathlib import Path

import pytest

from engine.training import studies

DEMO = Path(__file__).resolve().parents[2] / "models" / "demo"
README = (DEMO / "README.md").read_text()
REPORTS = {"scribble": "study_training", "canny": "study_training_canny", "seg": "study_training_seg"}


def _report(kind: str) -> dict:
    return json.loads((DEMO / f"{REPORTS[kind]}.json").read_text())


@pytest.mark.parametrize("kind", sorted(REPORTS))
def test_report_verdicts_follow_from_its_curves(kind):
    report = _report(kind)
    assert report["kind"] == kind and set(report["runs"]) == set(studies.RUNS)
    for name, run in report["runs"].items():
        curve = [tuple(p) for p in run["curve"]]
        assert run["steps_to_threshold"] == studies.steps_to_threshold(curve, report["threshold"])
        assert run["largest_jump"] == studies.largest_jump(curve)
    # the plot beside the report, which the README shows
    assert (DEMO / f"{REPORTS[kind]}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"({REPORTS[kind]}.png)" in README


def test_scribble_study_answers_the_papers_questions_as_the_readme_says():
    report = _report("scribble")
    runs, empty = report["runs"], report["empty_prompt_fidelity"]
    # dropout: the net trained with dropout reads the map with an empty prompt, the one without does not
    assert empty["baseline"] > 3 * empty["no_control"] and empty["no_dropout"] < empty["no_control"]
    assert runs["no_dropout"]["steps_to_threshold"] is None
    # middle block first: fewer steps to the threshold, at every level both curves reach
    speed = report["mid_first_speedup"]
    ratio = studies.crossing(runs["baseline"]["curve"], report["threshold"]) / studies.crossing(
        runs["mid_first"]["curve"], report["threshold"])
    assert speed["ratio"] == pytest.approx(ratio) and ratio > 1
    assert all(r["ratio"] > 1 for r in speed["by_level"] if r["ratio"] is not None)
    # sudden convergence in both runs with dropout, none without
    assert [runs[n]["largest_jump"]["sudden"] for n in ("baseline", "no_dropout", "mid_first")] == [True, False, True]
    # the README quotes these figures
    assert f"**{ratio:.2f}x**" in README
    row = next(line for line in README.splitlines() if line.startswith("| baseline (dropout 0.5, all links)"))
    assert f"| {empty['baseline']:.3f} |" in row
    assert f"{runs['baseline']['steps_to_threshold']} ({runs['baseline']['crossing_step']:.0f})" in row
    no_dropout = next(line for line in README.splitlines() if line.startswith("| no dropout"))
    assert f"| {empty['no_dropout']:.3f} |" in no_dropout
    assert re.search(rf"no control at all, empty prompt: {empty['no_control']:.3f}", README)


def test_canny_and_seg_studies_stayed_flat_as_the_readme_says():
    for kind in ("canny", "seg"):
        for run in _report(kind)["runs"].values():
            values = [v for _, v in run["curve"]]
            assert run["steps_to_threshold"] is None and max(values) - min(values) < 0.06, kind
