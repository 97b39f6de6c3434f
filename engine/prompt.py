"""Text encoding. Prompts longer than the encoder's window are cut into windows of
(window - 2) tokens, each wrapped in start/end tokens, encoded separately and concatenated,
as AUTOMATIC1111 does, instead of being silently truncated. A prompt that fits in one
window is encoded exactly as diffusers' pipelines encode it."""
from __future__ import annotations

import re

import torch


def _token_chunks(tokenizer, text: str) -> list[list[int]]:
    window = tokenizer.model_max_length
    ids = tokenizer(text, add_special_tokens=False, truncation=False).input_ids
    body = window - 2
    return [ids[i:i + body] for i in range(0, len(ids), body)] or [[]]


def _chunk_ids(tokenizer, chunk: list[int]) -> list[int]:
    window = tokenizer.model_max_length
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    ids = [tokenizer.bos_token_id, *chunk, tokenizer.eos_token_id]
    return ids + [pad] * (window - len(ids))


@torch.no_grad()
def encode_prompts(tokenizer, text_encoder, prompt: str, negative_prompt: str, device, dtype) -> tuple:
    """(positive, negative) embeddings of equal length, each (1, n_windows * window, width)."""
    pos, neg = _token_chunks(tokenizer, prompt), _token_chunks(tokenizer, negative_prompt)
    n = max(len(pos), len(neg))
    pos += [[]] * (n - len(pos))
    neg += [[]] * (n - len(neg))

    def encode(chunks):
        ids = torch.tensor([_chunk_ids(tokenizer, c) for c in chunks], device=device)
        mask = None
        if getattr(text_encoder.config, "use_attention_mask", False):
            mask = (ids != tokenizer.pad_token_id).long()
        out = text_encoder(ids, attention_mask=mask)[0].to(dtype)
        return out.reshape(1, -1, out.shape[-1])

    return encode(pos), encode(neg)


def ignored_words(tokenizer, prompt: str) -> list[str]:
    """Prompt words a word-level vocabulary (the demo's) does not hold as whole words: the model
    reads them, if at all, as letters and pieces it never learnt a meaning for ("dragon" becomes
    d-ra-g-on), and the GUI says so instead of pretending. A byte-level BPE (real CLIP: its
    unknown token is its end token) can spell every word, so it reports none."""
    unk = tokenizer.unk_token_id
    if unk is None or unk in (tokenizer.bos_token_id, tokenizer.eos_token_id):
        return []
    words = re.findall(r"[\w'-]+", prompt.lower())
    pieces = {w: tokenizer(w, add_special_tokens=False).input_ids for w in set(words)}
    return sorted(w for w, ids in pieces.items() if len(ids) != 1 or unk in ids)


@torch.no_grad()
def encode_prompts_sdxl(tokenizers, text_encoders, prompt: str, negative_prompt: str, device, dtype) -> tuple:
    """SDXL's conditioning as diffusers' StableDiffusionXLPipeline.encode_prompt builds it:
    each encoder's penultimate hidden states, concatenated along the width, and the pooled
    (projected) embedding of the second encoder. Long prompts go in the same windows for both
    encoders; the pooled embedding is the first window's, as diffusers (which truncates) takes it.
    Returns (positive, negative, pooled positive, pooled negative); an empty negative prompt is
    encoded as "" (A1111 and ComfyUI do so), not zeroed."""
    chunks = {}
    for name, text in (("pos", prompt), ("neg", negative_prompt)):
        chunks[name] = [_token_chunks(tok, text) for tok in tokenizers]
    n = max(len(c) for cs in chunks.values() for c in cs)

    def encode(per_tokenizer):
        hidden, pooled = [], None
        for tok, encoder, cs in zip(tokenizers, text_encoders, per_tokenizer):
            cs = cs + [[]] * (n - len(cs))
            ids = torch.tensor([_chunk_ids(tok, c) for c in cs], device=device)
            out = encoder(ids, output_hidden_states=True)
            h = out.hidden_states[-2].to(dtype)
            hidden.append(h.reshape(1, -1, h.shape[-1]))
            if out[0].ndim == 2:      # CLIPTextModelWithProjection: text_embeds, one per window
                pooled = out[0][:1].to(dtype)
        return torch.cat(hidden, dim=-1), pooled

    pos, pooled_pos = encode(chunks["pos"])
    neg, pooled_neg = encode(chunks["neg"])
    return pos, neg, pooled_pos, pooled_neg
