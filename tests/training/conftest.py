import pytest
import torch


def build_tiny_backbone(folder) -> dict:
    """The demo's architecture at test size, random weights, saved as a diffusers pipeline
    folder; returns the parts in memory too."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    from engine.training import architecture, vocab, world
    torch.manual_seed(0)
    tok = vocab.build_tokenizer(world.vocabulary())
    te = architecture.make_text_encoder(tok, tiny=True)
    unet = architecture.make_unet(te.config.hidden_size, tiny=True)
    vae = architecture.make_vae(tiny=True)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=te, tokenizer=tok, unet=unet,
                                   scheduler=DDIMScheduler.from_config(architecture.SCHEDULER_CONFIG),
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(str(folder))
    return {"unet": unet, "vae": vae, "text_encoder": te, "tokenizer": tok,
            "scheduler_config": dict(architecture.SCHEDULER_CONFIG)}


@pytest.fixture(scope="session")
def tiny_world_backbone(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-backbone")
    build_tiny_backbone(folder)
    return folder
