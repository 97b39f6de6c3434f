"""The page's batch over a folder below its widgets: which folders it may read (ui/folders.py) and
the run as the page streams it (ui/batch_panel.py through api.run_batch): report lines, one count
over the batch, Interrupt ending it with the finished pictures kept and a re-run making the rest."""
import numpy as np
import pytest
from PIL import Image

from engine import ControlUnit, GenerationRequest
from ui import api, folders, generation


@pytest.fixture()
def listening(monkeypatch, tmp_path):
    monkeypatch.setenv("CNSTUDIO_INPUTS", str(tmp_path / "inputs"))
    monkeypatch.setenv("CNSTUDIO_OUTPUTS", str(tmp_path / "outputs"))
    folders.set_listening(True)
    yield tmp_path
    folders.set_listening(False)


def test_a_listening_studio_reads_only_its_own_folders(listening, tmp_path):
    (tmp_path / "inputs" / "sketches").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    assert folders.batch_folder("sketches") == (tmp_path / "inputs" / "sketches").resolve()
    assert folders.batch_folder(str(tmp_path / "inputs" / "sketches")) == (tmp_path / "inputs" / "sketches").resolve()
    for outside in (str(tmp_path / "elsewhere"), "sketches/../../elsewhere", "/etc"):
        with pytest.raises(ValueError, match="outside the studio's own folders.*--inputs-dir"):
            folders.batch_folder(outside)
    # a link inside the inputs folder to a folder outside it is judged by where it leads
    (tmp_path / "inputs" / "sneaky").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(ValueError, match="outside the studio's own folders"):
        folders.batch_folder("sneaky")
    with pytest.raises(ValueError, match="not a folder on the server"):
        folders.batch_folder("missing")


def test_on_this_machine_alone_any_folder_will_do(tmp_path):
    folders.set_listening(False)
    assert folders.batch_folder(str(tmp_path)) == tmp_path.resolve()
    with pytest.raises(ValueError, match="type the path"):
        folders.batch_folder("  ")


def _sketches(folder, n):
    folder.mkdir()
    for k in range(n):
        a = np.zeros((64, 64, 3), np.uint8)
        a[10:50, 8 + 10 * k:12 + 10 * k] = 255
        Image.fromarray(a).save(folder / f"s{k}.png")


def test_interrupt_ends_the_batch_and_a_re_run_makes_the_rest(tiny_default, tmp_path):
    _sketches(tmp_path / "in", 3)
    unit = ControlUnit("cn0", np.zeros((64, 64, 3), np.uint8))
    request = GenerationRequest(backbone="tiny", units=(unit,), steps=2, seed=4, width=64, height=64)

    def run():
        call = lambda on_step, stop, emit: api.run_batch(request, tmp_path / "in", 0, on_step, emit, stop)  # noqa: E731
        steps, lines, result = [], [], None
        for item in generation.stream_call(call, preview_every=1e9):
            if item[0] == "step":
                steps.append(item[1:3])
            elif item[0] == "item":
                lines.append(item[1].line())
            else:
                result = item[1]
        return steps, lines, result

    # Interrupt pressed at the second picture's first step (2 steps each), on the loop's own thread
    steps, lines = [], []
    def on_step(i, total, preview):
        steps.append((i, total))
        if i == 3:
            assert api.interrupt() == "interrupting"
    first = api.run_batch(request, tmp_path / "in", 0, on_step, lambda item: lines.append(item.line()))
    assert steps[0] == (1, 6) and first.interrupted and first.count("made") == 1, (steps, lines)
    assert lines == ["s0.png: made -> s0.png"]
    out = first.folder
    assert sorted(p.name for p in out.iterdir()) == ["s0.png"]
    steps, lines, second = run()
    assert not second.interrupted and steps[-1] == (4, 4)      # the count covers what is left
    assert lines == ["s0.png: skipped -> s0.png (made before with this recipe)", "s1.png: made -> s1.png",
                     "s2.png: made -> s2.png"]
    assert api.interrupt() == "nothing is running"
