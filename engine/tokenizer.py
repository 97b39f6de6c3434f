"""CLIP's tokenizer without a model hub.

SD 1.x and 2.x both tokenize with CLIP's byte-level BPE (49408 tokens). Its merge table ships
inside the `open_clip_torch` package as `bpe_simple_vocab_16e6.txt.gz`; the CLIP vocabulary is
built from it the way CLIP's own SimpleTokenizer does (the 256 byte characters, the same with
`</w>`, one token per merge, then the two special tokens), written once as the `vocab.json` +
`merges.txt` pair that transformers' CLIPTokenizer reads, and reused from there.
"""
from __future__ import annotations

import gzip
import importlib.util
import json
import os
import tempfile
from pathlib import Path

from transformers import CLIPTokenizer

BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
VOCAB_SIZE = 49408
N_MERGES = VOCAB_SIZE - 2 * 256 - 2          # 48894: what CLIP keeps of the 262k merges shipped
MAX_LENGTH = 77
# SD 2.x's tokenizer (OpenCLIP) pads with "!" (id 0) where SD 1.x's pads with <|endoftext|>
PAD_TOKENS = {"sd1": "<|endoftext|>", "sd2": "!"}


def clip_tokenizer(variant: str = "sd1") -> CLIPTokenizer:
    """CLIP's tokenizer as SD 1.x ("sd1") or SD 2.x ("sd2") uses it, from the local cache,
    building the cache from open_clip's merge table on first use."""
    if variant not in PAD_TOKENS:
        raise ValueError(f"Unknown tokenizer variant {variant!r}; use one of {sorted(PAD_TOKENS)}.")
    folder = _ensure_cache()
    return CLIPTokenizer.from_pretrained(
        str(folder), local_files_only=True, model_max_length=MAX_LENGTH, pad_token=PAD_TOKENS[variant])


def cache_dir() -> Path:
    from .sources import models_dir
    return models_dir() / ".cache" / "clip-tokenizer"


def bpe_source() -> Path:
    """open_clip's merge table. Found without importing open_clip (its __init__ needs torchvision)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            "CLIP's tokenizer vocabulary is missing: install the package that ships it with "
            "`pip install --no-deps open_clip_torch` (python3 launch.py installs it), or load a "
            "backbone folder that has its own tokenizer/.")
    path = Path(list(spec.submodule_search_locations)[0]) / BPE_FILE
    if not path.is_file():
        raise ValueError(f"{path} is missing from the installed open_clip_torch; reinstall it with "
                         "`pip install --no-deps --force-reinstall open_clip_torch`.")
    return path


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map from bytes to printable characters, in CLIP's order."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def build_vocab_and_merges(bpe_gz: Path) -> tuple[dict[str, int], list[str]]:
    with gzip.open(bpe_gz, "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")
    merges = lines[1: N_MERGES + 1]  # line 0 is the version header
    if len(merges) != N_MERGES or any(len(m.split()) != 2 for m in merges):
        raise ValueError(f"{bpe_gz} is not CLIP's merge table (expected {N_MERGES} merge lines).")
    chars = list(_bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars] + ["".join(m.split()) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {t: i for i, t in enumerate(tokens)}
    if len(vocab) != VOCAB_SIZE:
        raise ValueError(f"{bpe_gz} gave {len(vocab)} distinct tokens, not CLIP's {VOCAB_SIZE}.")
    return vocab, merges


def _ensure_cache() -> Path:
    folder = cache_dir()
    if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
        return folder
    vocab, merges = build_vocab_and_merges(bpe_source())
    folder.mkdir(parents=True, exist_ok=True)
    # written whole then renamed, so a second thread or process never reads half a file
    _write_atomic(folder / "merges.txt", "#version: 0.2\n" + "\n".join(merges) + "\n")
    _write_atomic(folder / "vocab.json", json.dumps(vocab, ensure_ascii=False))
    return folder


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
