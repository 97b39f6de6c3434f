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
