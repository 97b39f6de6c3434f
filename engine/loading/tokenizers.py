"""CLIP's tokenizer without a model hub.

SD 1.x and 2.x both tokenize with CLIP's byte-level BPE (49408 tokens). Its two files, as
openai/clip-vit-large-patch14 ships them (MIT), live in engine/configs/clip-tokenizer/; what
differs between families (SD 2.x's OpenCLIP pads with "!", id 0, where SD 1.x pads with
<|endoftext|>) is each family's tokenizer/tokenizer_config.json in engine/configs/<family>/.
Nothing is written anywhere: the tokenizer is built from the shipped files every time.
"""
from __future__ import annotations

from pathlib import Path

from transformers import CLIPTokenizer

from .files import read_json_object
from .paths import CONFIGS_DIR

CLIP_FILES = CONFIGS_DIR / "clip-tokenizer"
# the family config folder whose tokenizer a backbone without one of its own uses
FAMILY_CONFIGS = {"sd1": "sd15", "sd2": "sd2-base"}


def clip_tokenizer(variant: str = "sd1") -> CLIPTokenizer:
    """CLIP's tokenizer as SD 1.x ("sd1") or SD 2.x ("sd2") uses it."""
    if variant not in FAMILY_CONFIGS:
        raise ValueError(f"Unknown tokenizer variant {variant!r}; use one of {sorted(FAMILY_CONFIGS)}.")
    return for_config(CONFIGS_DIR / FAMILY_CONFIGS[variant])


def for_config(config_dir: Path, open_clip: bool | None = None, subfolder: str = "tokenizer") -> CLIPTokenizer:
    """The tokenizer of a diffusers config folder: its own tokenizer/ when it has its vocabulary
    (vocab.json, or tokenizer.json as transformers 5 saves it), else the shipped CLIP files with
    the folder's tokenizer_config.json (its special tokens).
    A folder with neither gets SD 1.x's or, for an OpenCLIP text encoder, SD 2.x's (SDXL's
    second tokenizer, `subfolder="tokenizer_2"`, is OpenCLIP's: it pads with "!" too)."""
    folder = Path(config_dir) / subfolder
    if (folder / "vocab.json").is_file() or (folder / "tokenizer.json").is_file():
        return CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)
    if not (folder / "tokenizer_config.json").is_file():
        folder = CONFIGS_DIR / FAMILY_CONFIGS["sd2" if open_clip else "sd1"] / "tokenizer"
    special = read_json_object(folder / "tokenizer_config.json", "it names the tokenizer's special tokens.")
    settings = {k: v for k, v in special.items() if not k.startswith("_") and k != "tokenizer_class"}
    return CLIPTokenizer.from_pretrained(str(CLIP_FILES), local_files_only=True, **settings)
