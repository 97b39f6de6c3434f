"""train-demo on a CPU says it needs a GPU before it starts, and sizes its workers to the cores."""
import os

from demo import cli


def test_on_a_cpu_it_says_it_needs_a_gpu_and_sizes_workers(monkeypatch, capsys):
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    seen = {}
    monkeypatch.setattr(cli, "train_demo", lambda *a, **k: seen.update(k) or True)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert cli.main(["train-demo", "--max-minutes", "0.01"]) == 0
    err = capsys.readouterr().err
    assert "needs a GPU" in err and "hours" in err
    assert seen["workers"] <= 2
    assert cli.main(["train-demo", "--workers", "8"]) == 0 and seen["workers"] == 2


def test_tiny_runs_without_the_note():
    assert cli.gpu_note(tiny=True) is None
