"""Tiny random-weight models of Stable Diffusion's architecture, for fast CPU tests.

One builder for every test (STYLE.md): a 2-level VAE (scale 2), a 2-level UNet with
cross-attention, a 2-layer CLIP text encoder with a character-level BPE vocabulary, and
ControlNets made from the UNet with their zero convolutions randomised so they matter.
"""
from __future__ import annotations

import torch
from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

SCHEDULER_CONFIG = {
    "_class_name": "PNDMScheduler", "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000, "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1,
    "prediction_type": "epsilon", "clip_sample": False,
}


def tiny_tokenizer(max_length: int = 77, pad_token: str = "<|endoftext|>") -> CLIPTokenizer:
    # GPT-2's byte-to-unicode table: printable bytes map to themselves, the rest above 255.
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    chars = [chr(b) for b in printable] + [chr(256 + i) for i in range(256 - len(printable))]
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    vocab = {t: i for i, t in enumerate(tokens)}
    tok = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=max_length, pad_token=pad_token)
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


# SDXL at test size: CLIP 32 wide + OpenCLIP 48 wide (projecting to 48) -> cross-attention 80;
# the text_time embedding reads the pooled 48 plus 6 time ids x 8 = 96.
SDXL_WIDTHS, SDXL_TIME_DIM = (32, 48), 8
SDXL_SCHEDULER_CONFIG = {
    "_class_name": "EulerDiscreteScheduler", "beta_start": 0.00085, "beta_end": 0.012,
    "beta_schedule": "scaled_linear", "num_train_timesteps": 1000, "steps_offset": 1,
    "timestep_spacing": "leading", "prediction_type": "epsilon", "clip_sample": False,
    "set_alpha_to_one": False, "skip_prk_steps": True, "interpolation_type": "linear",
}


def tiny_sdxl_unet(seed: int = 0) -> UNet2DConditionModel:
    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=32, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=sum(SDXL_WIDTHS), attention_head_dim=(2, 4), transformer_layers_per_block=(1, 2),
        use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=SDXL_TIME_DIM,
        projection_class_embeddings_input_dim=SDXL_WIDTHS[1] + 6 * SDXL_TIME_DIM, norm_num_groups=32,
    ).eval()


def tiny_sdxl_vae(seed: int = 0) -> AutoencoderKL:
    vae = tiny_vae(seed)
    vae.register_to_config(force_upcast=True, scaling_factor=0.13025)
    return vae


def tiny_sdxl_parts(seed: int = 0) -> dict:
    tok, tok2 = tiny_tokenizer(), tiny_tokenizer(pad_token="!")
    te = tiny_text_encoder(tok, seed, width=SDXL_WIDTHS[0])
    torch.manual_seed(seed + 1)
    cfg = CLIPTextConfig(vocab_size=len(tok2), hidden_size=SDXL_WIDTHS[1], intermediate_size=37, num_attention_heads=4,
                         num_hidden_layers=3, max_position_embeddings=77, projection_dim=SDXL_WIDTHS[1],
                         hidden_act="gelu", bos_token_id=tok2.bos_token_id, eos_token_id=tok2.eos_token_id,
                         pad_token_id=tok2.pad_token_id)
    te2 = CLIPTextModelWithProjection(cfg).eval()
    return {"unet": tiny_sdxl_unet(seed), "vae": tiny_sdxl_vae(seed), "text_encoder": te, "text_encoder_2": te2,
            "tokenizer": tok, "tokenizer_2": tok2, "scheduler_config": dict(SDXL_SCHEDULER_CONFIG)}


def save_sdxl_folder(parts: dict, folder) -> None:
    """Write SDXL parts as a diffusers StableDiffusionXLPipeline folder."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline
    pipe = StableDiffusionXLPipeline(
        vae=parts["vae"], text_encoder=parts["text_encoder"], text_encoder_2=parts["text_encoder_2"],
        tokenizer=parts["tokenizer"], tokenizer_2=parts["tokenizer_2"], unet=parts["unet"],
        scheduler=EulerDiscreteScheduler.from_config(parts["scheduler_config"]), add_watermarker=False)
    pipe.save_pretrained(folder)


def _randomise(params, generator, scale: float = 0.2) -> None:
    with torch.no_grad():
        for p in params:
            p.copy_(torch.randn(p.shape, generator=generator) * scale)


def tiny_adapter(seed: int = 3, xl: bool = False, in_channels: int = 3):
    """A T2I-Adapter for the tiny UNets (blocks 32/64, VAE scale 2): the SD 1.x one unshuffles by 2
    (features at the latent and half of it), the SDXL one (full_adapter_xl) by 4 (both at half)."""
    from diffusers import T2IAdapter
    torch.manual_seed(seed)
    return T2IAdapter(in_channels=in_channels, channels=(32, 64), num_res_blocks=2, downscale_factor=4 if xl else 2,
                      adapter_type="full_adapter_xl" if xl else "full_adapter").eval()


def tiny_union(unet: UNet2DConditionModel, seed: int = 5, num_control_type: int = 6):
    """A ControlNet-Union model for the tiny SDXL UNet, weights copied from it, with its zero
    convolutions and the type mixer's projection randomised so that every part matters."""
    from diffusers import ControlNetUnionModel
    base = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32))
    width = unet.config.block_out_channels[0]
    torch.manual_seed(seed)
    net = ControlNetUnionModel.from_config({**base.config, "num_control_type": num_control_type,
                                            "num_trans_channel": width, "num_trans_head": 4,
                                            "num_proj_channel": width})
    net.load_state_dict(base.state_dict(), strict=False)
    g = torch.Generator().manual_seed(seed)
    _randomise(list(net.controlnet_down_blocks.parameters()) + list(net.controlnet_mid_block.parameters())
               + list(net.controlnet_cond_embedding.conv_out.parameters()) + list(net.spatial_ch_projs.parameters()), g)
    return net.eval()
