import ast
import urllib.request
from pathlib import Path

import gradio as gr
import pytest

from ui import app

UI = Path(__file__).resolve().parents[2] / "ui"


def test_defaults_bind_localhost_on_7860():
    args = app.parse_args([])
    assert (args.listen, args.port, args.auth) == (False, 7860, None)


def test_flags():
    args = app.parse_args(["--listen", "--port", "9000", "--auth", "ann:s3:cret", "--models-dir", "m"])
    assert (args.listen, args.port, args.auth, args.models_dir) == (True, 9000, ("ann", "s3:cret"), "m")


def test_gpu_flags_build_the_studios_manager_without_the_environment(monkeypatch):
    import os

    import engine
    for name in ("CNSTUDIO_OFFLOAD", "CNSTUDIO_FAST", "CNSTUDIO_COMPILE"):
        monkeypatch.delenv(name, raising=False)
    before = dict(os.environ)
    manager = app.build_manager(app.parse_args(["--offload", "--no-compile"]))
    assert isinstance(manager, engine.ModelManager) and manager.offload and manager.predictor is None
    assert dict(os.environ) == before, "the flags went through os.environ"
    assert not app.build_manager(app.parse_args([])).offload
    # the documented override still works where no flag says otherwise
    monkeypatch.setenv("CNSTUDIO_OFFLOAD", "1")
    assert app.build_manager(app.parse_args([])).offload


def test_the_studio_serves_from_the_manager_it_was_built_with(monkeypatch, tiny_manager):
    from engine import GenerationRequest
    from ui import api, catalog
    from ui.layout import build_app
    monkeypatch.setattr(catalog, "_manager", None)
    asked = []
    serve = tiny_manager.backbone
    monkeypatch.setattr(tiny_manager, "backbone", lambda source: asked.append(source) or serve(source))
    build_app(tiny_manager)
    catalog.known_words("tiny")
    result = api.run(GenerationRequest(backbone="tiny", width=64, height=64, steps=1, seed=1))
    assert len(result.images) == 1 and asked == ["tiny", "tiny"]


@pytest.mark.parametrize("argv", [["--auth", "nopass"], ["--auth", ":x"], ["--port", "0"]])
def test_bad_flags_are_refused(argv):
    with pytest.raises(SystemExit):
        app.parse_args(argv)


def test_ui_never_imports_torch():
    for path in UI.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n == "torch" or n.startswith("torch.") for n in names), path.name


def test_auth_guards_the_page(monkeypatch, tmp_path):
    from tests.ui.studio_server import free_port
    with gr.Blocks() as blocks:
        gr.Markdown("hello")
    port = free_port()
    url = app.launch(blocks, port=port, auth=("ann", "secret"), block=False)
    try:
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/config") as r:
            pytest.fail(f"the config was served without a login: {r.status}")
    except urllib.error.HTTPError as e:
        assert e.code in (401, 403)
    finally:
        blocks.close()


def _component(blocks, elem_id):
    return next(b for b in blocks.blocks.values() if getattr(b, "elem_id", None) == elem_id)


def test_a_checkout_without_models_says_what_to_do(monkeypatch, tmp_path):
    from ui.layout import build_app
    monkeypatch.setenv("CNSTUDIO_MODELS", str(tmp_path))
    note = _component(build_app(), "no-models")
    assert note.visible and "No model is installed yet" in note.value
    assert "launch.py train-demo" in note.value and str(tmp_path / "backbones") in note.value


def test_with_a_backbone_installed_there_is_no_such_note(monkeypatch, tmp_path):
    from tests.ui.studio_server import tiny_demo
    from ui.layout import build_app
    monkeypatch.setenv("CNSTUDIO_MODELS", str(tiny_demo(tmp_path)))
    assert not _component(build_app(), "no-models").visible


def test_the_cfg_slider_starts_at_the_backbones_recommended_scale_and_follows_a_pick(monkeypatch, tmp_path):
    from tests.tiny_models import save_backbone_folder, tiny_backbone_parts
    from tests.ui.studio_server import tiny_demo
    from ui import catalog
    from ui.layout import build_app
    root = tiny_demo(tmp_path)                   # the demo's layout, recommended.json (3.0) included
    save_backbone_folder(tiny_backbone_parts(seed=4), root / "backbones" / "plain")
    save_backbone_folder(tiny_backbone_parts(seed=4), root / "backbones" / "broken")
    (root / "backbones" / "broken" / "recommended.json").write_text('{"cfg_scale": "high"}')
    monkeypatch.setenv("CNSTUDIO_MODELS", str(root))
    blocks = build_app()
    slider, picker = _component(blocks, "cfg-scale"), _component(blocks, "backbone")
    assert picker.value == "demo" and slider.value == 3.0
    assert [catalog.recommended_cfg(b) for b in ("demo", "plain", "broken", "")] == [3.0, 7.5, 7.5, 7.5]
    # picking a backbone (an "input", not any "change": a dropped recipe keeps its own scale) sets it
    picks = [d for d in blocks.config["dependencies"]
             if [picker._id, "input"] in [list(t) for t in d["targets"]] and slider._id in d["outputs"]]
    assert len(picks) == 1
    assert not any([picker._id, "change"] in [list(t) for t in d["targets"]] and slider._id in d["outputs"]
                   for d in blocks.config["dependencies"])
