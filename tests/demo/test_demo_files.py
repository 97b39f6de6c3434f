"""What ships in models/demo: diffusers folders in fp16 safetensors, within 100 MB, as recorded."""
import hashlib
import json
from pathlib import Path

from safetensors import safe_open
from transformers import CLIPTokenizer

from demo import world

DEMO = Path(__file__).resolve().parents[2] / "models" / "demo"


def test_folders_are_fp16_safetensors_within_100_mb_and_match_the_manifest():
    manifest = json.loads((DEMO / "manifest.json").read_text())
    # The fidelity judges (judges/) are small float32 networks, not diffusers models.
    weights = sorted(p for p in DEMO.rglob("*.safetensors") if "judges" not in p.relative_to(DEMO).parts)
    assert {"backbone/unet/diffusion_pytorch_model.safetensors", "controlnet-scribble/diffusion_pytorch_model.safetensors",
            "controlnet-canny/diffusion_pytorch_model.safetensors"} <= {str(p.relative_to(DEMO)) for p in weights}
    total = sum(p.stat().st_size for p in DEMO.rglob("*") if p.is_file())
    assert total <= 100 * 1024 * 1024
    for p in weights:
        with safe_open(str(p), "pt") as f:
            assert {str(f.get_slice(k).get_dtype()) for k in f.keys()} == {"F16"}, p
    for rel, entry in manifest["files"].items():
        assert hashlib.sha256((DEMO / rel).read_bytes()).hexdigest() == entry["sha256"], rel


def test_tokenizer_loads_offline_and_knows_the_world_by_whole_words():
    tok = CLIPTokenizer.from_pretrained(str(DEMO / "backbone" / "tokenizer"), local_files_only=True)
    vocab = tok.get_vocab()
    for w in world.vocabulary():
        assert tok(w, add_special_tokens=False).input_ids == [vocab[w + "</w>"]]
    assert "dragon</w>" not in vocab
