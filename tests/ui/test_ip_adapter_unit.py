"""The page's IP-Adapter units (issue 26): installed adapters in a unit's model list by the
backbone's family, their map a reference picture read with no annotator, kept by the recipe,
and the status saying such a run is eager."""
import gradio as gr
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from engine import ControlUnit, GenerationRequest
from ui import catalog
from ui.generation import run_notes
from ui.units import Unit, model_look

PICTURE = np.full((40, 56, 3), (200, 40, 90), np.uint8)


@pytest.fixture()
def adapters(tmp_path, monkeypatch):
    """models/ipadapters/ with an SD1.5 and an SDXL adapter (told apart by their headers' widths)
    and a .bin, whose family cannot be told without unpickling it."""
    monkeypatch.setenv("CNSTUDIO_MODELS", str(tmp_path / "models"))
    folder = tmp_path / "models" / "ipadapters"
    (folder / "image_encoder").mkdir(parents=True)
    for name, width in (("ip-adapter_sd15", 768), ("ip-adapter_sdxl", 2048)):
        save_file({"image_proj.proj.weight": torch.zeros(8, 4), "ip_adapter.1.to_k_ip.weight": torch.zeros(4, width),
                   "ip_adapter.1.to_v_ip.weight": torch.zeros(4, width)}, str(folder / f"{name}.safetensors"))
    torch.save({"image_proj": {}, "ip_adapter": {}}, str(folder / "ip-adapter-plus_sd15.bin"))
    return folder


def test_a_units_model_list_offers_the_adapters_of_the_backbones_family(adapters, monkeypatch):
    families = {"my-sd15": "sd1", "my-xl": "sdxl"}
    monkeypatch.setattr(catalog, "family", lambda source, role="backbone": families.get(source))
    assert catalog.with_references(["canny15"], "my-sd15") == [
        "canny15", "ip-adapter-plus_sd15", "ip-adapter_sd15", "reference_only", "reference_adain",
        "reference_adain+attn"]
    xl = catalog.with_references([], "my-xl")
    assert "ip-adapter_sdxl" in xl and "ip-adapter_sd15" not in xl and "ip-adapter-plus_sd15" in xl
    # the encoder folder is no adapter
    assert "image_encoder" not in catalog.with_references([], None)


def test_an_ip_adapter_unit_reads_its_picture_with_no_annotator_and_comes_back(adapters):
    with gr.Blocks():
        unit = Unit(0, ["demo:scribble"], visible=True)
    style, picture, union, mask, mode, resize = model_look("ip-adapter_sd15")
    assert picture["label"] == "Reference picture" and style["visible"] is False and union["visible"] is False
    assert not mask["visible"] and not mode["visible"] and not resize["visible"]
    assert [u["visible"] for u in model_look("reference_only")[3:]] == [False, True, True]
    assert model_look("demo:scribble")[1]["label"] == "Control map"
    assert all(u["visible"] for u in model_look("demo:scribble")[3:])
    original = ControlUnit("ip-adapter_sd15", PICTURE, weight=0.6, start=0.2, end=0.9)
    values = [u.get("value") if isinstance(u, dict) else u for u in unit.from_unit(original)][:len(unit.fields)]
    values[9] = "canny"                 # an annotator left picked in the unit is not recorded
    values[3] = np.full((8, 8), 255, np.uint8)   # a mask left from a ControlNet: hidden, not read
    back = unit.to_unit(values)
    assert back == original and back.annotator is None and np.array_equal(back.image, PICTURE)
    assert GenerationRequest.from_json(GenerationRequest(units=(back,)).to_json()).units[0] == original
    values[0], values[2] = True, None
    with pytest.raises(ValueError, match="no reference picture"):
        unit.to_unit(values)


def test_the_status_calls_no_ip_adapter_run_eager(adapters):
    unit = ControlUnit("ip-adapter_sd15", PICTURE)
    for request in (GenerationRequest(prompt="a cat", units=(unit,)),
                    GenerationRequest(prompt="a cat <lora:ink:0.8>", units=(unit,), loras=[("moss", 0.5)])):
        assert not any("eager" in n or "fast path" in n for n in run_notes(request)), run_notes(request)
