"""Tiny random-weight models of Stable Diffusion's architecture, for fast CPU tests.

One builder for every test (STYLE.md): a 2-level VAE (scale 2), a 2-level UNet with
cross-attention, a 2-layer CLIP text encoder with a character-level BPE vocabulary, and
ControlNets made from the UNet with their zero convolutions randomised so they matter.
"""
from __future__ import annotations

import torch
from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

SCHEDULER_CONFIG = {
    "_class_name": "PNDMScheduler", "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000, "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1,
    "prediction_type": "epsilon", "clip_sample": False,
}


def tiny_tokenizer(max_length: int = 77) -> CLIPTokenizer:
    # GPT-2's byte-to-unicode table: printable bytes map to themselves, the rest above 255.
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    chars = [chr(b) for b in printable] + [chr(256 + i) for i in range(256 - len(printable))]
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    vocab = {t: i for i, t in enumerate(tokens)}
    tok = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=max_length)
    return tok


def tiny_unet(seed: int = 0, cross_attention_dim: int = 32) -> UNet2DConditionModel:
    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=32, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross_attention_dim, attention_head_dim=8, norm_num_groups=32,
    ).eval()


def tiny_vae(seed: int = 0) -> AutoencoderKL:
    torch.manual_seed(seed)
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        norm_num_groups=32, sample_size=64,
    ).eval()


def tiny_text_encoder(tokenizer: CLIPTokenizer, seed: int = 0, width: int = 32) -> CLIPTextModel:
    torch.manual_seed(seed)
    cfg = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=width, intermediate_size=37, num_attention_heads=4,
                         num_hidden_layers=2, max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return CLIPTextModel(cfg).eval()


def tiny_controlnet(unet: UNet2DConditionModel, seed: int = 1) -> ControlNetModel:
    """A ControlNet copied from the UNet, with non-zero zero-convs so its residuals are real."""
    net = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in list(net.controlnet_down_blocks.parameters()) + list(net.controlnet_mid_block.parameters()):
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
        for p in net.controlnet_cond_embedding.conv_out.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return net.eval()


def tiny_backbone_parts(seed: int = 0) -> dict:
    tok = tiny_tokenizer()
    return {"unet": tiny_unet(seed), "vae": tiny_vae(seed), "text_encoder": tiny_text_encoder(tok, seed),
            "tokenizer": tok, "scheduler_config": dict(SCHEDULER_CONFIG)}


def save_backbone_folder(parts: dict, folder) -> None:
    """Write the parts as a diffusers StableDiffusionPipeline folder."""
    from diffusers import PNDMScheduler, StableDiffusionPipeline
    pipe = StableDiffusionPipeline(
        vae=parts["vae"], text_encoder=parts["text_encoder"], tokenizer=parts["tokenizer"], unet=parts["unet"],
        scheduler=PNDMScheduler.from_config(parts["scheduler_config"]), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(folder)


def save_world_backbone(folder) -> dict:
    """The demo's architecture at test size, random weights, saved as a diffusers pipeline
    folder; returns the parts in memory too."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    from demo import architecture, vocab, world   # lazy: the engine's own tests need no demo
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
