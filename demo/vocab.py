"""A word-level CLIP tokenizer for a small, declared vocabulary (the demo world's words).

CLIP's tokenizer is a BPE over characters; a word becomes one token when the merge table
builds it from its characters. The merges here are made word by word: each new merge joins
the first two pieces the current table leaves, so it ranks after every earlier merge and
never changes how an earlier word is split. The result is the ordinary `vocab.json` +
`merges.txt` pair, loaded by `CLIPTokenizer.from_pretrained` like any CLIP tokenizer.
Characters that no vocabulary word uses are not in the vocabulary: they become `<|unk|>`.
"""
from __future__ import annotations

import json
from pathlib import Path

from transformers import CLIPTokenizer

BOS, EOS, UNK = "<|startoftext|>", "<|endoftext|>", "<|unk|>"
END = "</w>"


def _bpe(pieces: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Apply merges in rank order, as BPE does."""
    while len(pieces) > 1:
        pairs = [(ranks.get((a, b), None), i) for i, (a, b) in enumerate(zip(pieces, pieces[1:]))]
        pairs = [(r, i) for r, i in pairs if r is not None]
        if not pairs:
            break
        _, i = min(pairs)
        pieces = pieces[:i] + [pieces[i] + pieces[i + 1]] + pieces[i + 2:]
    return pieces


def vocab_and_merges(words: list[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """(vocab, merges) that make each of `words` (lowercase letters) exactly one token."""
    for w in words:
        if not w.isalpha() or not w.islower():
            raise ValueError(f"vocabulary word {w!r} must be lowercase letters only (CLIP's pre-tokenizer splits the rest)")
    words = sorted(set(words))
    merges: list[tuple[str, str]] = []
    ranks: dict[tuple[str, str], int] = {}
    pieces_seen: set[str] = set()
    for w in words:
        start = list(w[:-1]) + [w[-1] + END]
        pieces_seen.update(start)
        pieces = _bpe(start, ranks)
        while len(pieces) > 1:
            pair = (pieces[0], pieces[1])
            ranks[pair] = len(merges)
            merges.append(pair)
            pieces_seen.add(pair[0] + pair[1])
            pieces = _bpe(start, ranks)
    # Whole words first (so their ids are small and stable), then the pieces BPE passes through.
    tokens = [BOS, EOS, UNK] + [w + END for w in words]
    tokens += sorted(pieces_seen - set(tokens))
    return {t: i for i, t in enumerate(tokens)}, merges


def build_tokenizer(words: list[str], max_length: int = 77) -> CLIPTokenizer:
    vocab, merges = vocab_and_merges(words)
    tok = CLIPTokenizer(vocab=vocab, merges=merges, unk_token=UNK, bos_token=BOS, eos_token=EOS,
                        pad_token=EOS, model_max_length=max_length)
    for w in words:
        ids = tok(w, add_special_tokens=False).input_ids
        if ids != [vocab[w + END]]:
            raise ValueError(f"word {w!r} did not become one token ({ids}); the merge table is inconsistent")
    return tok


def save_tokenizer(words: list[str], folder: str | Path, max_length: int = 77) -> CLIPTokenizer:
    """Write the tokenizer folder (vocab.json, merges.txt and transformers' own files) and
    return it as loaded back from there, so what is saved is what was checked."""
    folder = Path(folder)
    tok = build_tokenizer(words, max_length)
    tok.save_pretrained(str(folder))
    vocab, merges = vocab_and_merges(words)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False, indent=0), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
    loaded = CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)
    if loaded(" ".join(words)).input_ids != tok(" ".join(words)).input_ids:
        raise ValueError(f"the tokenizer saved in {folder} does not read back the same")
    return loaded


def known_words(tokenizer, text: str) -> tuple[list[str], list[str]]:
    """(known, unknown) words of `text` for a word-level tokenizer: a word is known when it is
    one whole-word token."""
    import re
    vocab = tokenizer.get_vocab()
    words = re.findall(r"[a-z]+", text.lower())
    known = [w for w in words if w + END in vocab]
    return known, [w for w in words if w + END not in vocab]
