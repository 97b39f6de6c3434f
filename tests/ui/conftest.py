import pytest


@pytest.fixture(scope="session")
def studio():
    """The studio started as `launch.py` starts it, on a free localhost port (shared by the session)."""
    from tests.ui.studio_server import shared
    return shared()


@pytest.fixture()
def tiny_default(monkeypatch, tiny_manager):
    """The engine's default model manager replaced by the tiny one ("tiny" backbone, "cn0".."cn2")."""
    import engine.manager
    monkeypatch.setattr(engine.manager, "_default", tiny_manager)
    return tiny_manager


A1111_AUTH = ("artist", "s3cret")


@pytest.fixture(scope="session")
def a1111(tmp_path_factory):
    """A studio started with --auth on a models folder holding the demo and a second backbone
    ("tiny", for switching, with a LoRA "tiny_ink" and an IP-Adapter "ip-adapter_sd15") and a tiny SDXL one ("tiny-xl") with an SDXL ControlNet
    ("xl-canny"), a Union model ("controlnet-union-sdxl-1.0") and an SDXL T2I-Adapter ("t2i-adapter_xl_canny"):
    {"url", "auth", ...}."""
    from tests.tiny_models import (save_backbone_folder, save_sdxl_folder, tiny_adapter, tiny_backbone_parts,
                                   tiny_controlnet, tiny_sdxl_parts, tiny_union)
    from tests.ui.studio_server import DEMO, demo_installed, start, stop, tiny_demo
    root = tmp_path_factory.mktemp("a1111-models")
    if demo_installed():
        (root / "demo").symlink_to(DEMO, target_is_directory=True)
    else:
        tiny_demo(root)
    from tests.engine.lora_files import make_lora, save_kohya
    tiny = tiny_backbone_parts(seed=3)
    save_backbone_folder(tiny, root / "backbones" / "tiny")
    (root / "loras").mkdir()
    save_kohya(make_lora(tiny, seed=5, strength=0.6), root / "loras" / "tiny_ink.safetensors")
    from tests.engine.ip_adapter_files import VIT_H, make_ip_adapter, save_encoder, save_safetensors
    (root / "ipadapters").mkdir()
    save_encoder(root / "ipadapters" / "image_encoder", VIT_H)
    save_safetensors(make_ip_adapter(tiny["unet"], VIT_H, seed=4), root / "ipadapters" / "ip-adapter_sd15.safetensors")
    xl = tiny_sdxl_parts(seed=3)
    save_sdxl_folder(xl, root / "backbones" / "tiny-xl")
    tiny_controlnet(xl["unet"]).save_pretrained(root / "controlnets" / "xl-canny")
    tiny_union(xl["unet"]).save_pretrained(root / "controlnets" / "controlnet-union-sdxl-1.0")
    tiny_adapter(xl=True).save_pretrained(root / "controlnets" / "t2i-adapter_xl_canny")
    server = start(models=root, auth=A1111_AUTH)
    server["auth"] = A1111_AUTH
    yield server
    stop(server)
