"""Hostile files: checkpoints whose pickle would run code (refused over HTTP, the code never
runs), recipe PNGs with hostile metadata (refused cleanly, quickly, without inflating a zip
bomb), and output file names that never take path parts from the request."""
from __future__ import annotations

import json
import re
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin
from gradio_client.exceptions import AppError

from engine import GenerationRequest, read_recipe
from engine.limits import MAX_RECIPE_BYTES
from engine.outputs import read_recipe_text
from tests.reliability.cases import base_recipe
from tests.reliability.models_folder import EVIL, MARKER

OUTPUT_NAME = re.compile(r"^\d{5}-\d+\.png$")


@pytest.mark.parametrize("name", EVIL)
def test_hostile_checkpoint_over_http_is_refused_and_runs_nothing(name, client, hostile_models):
    recipe = base_recipe()
    recipe["request"]["units"][0]["model"] = name
    with pytest.raises(AppError) as e:
        client.predict(json.dumps(recipe), api_name="/generate")
    assert "exec" in str(e.value) and ".safetensors" in str(e.value)
    assert not (hostile_models / MARKER).exists()
    assert client.predict(api_name="/interrupt") == "nothing is running"


def _png(chunks: list[tuple[bytes, bytes]]) -> bytes:
    buf = bytearray(b"\x89PNG\r\n\x1a\n")
    for ctype, body in [(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)),
                        (b"IDAT", zlib.compress(b"\0\0\0\0")), *chunks, (b"IEND", b"")]:
        buf += struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body))
    return bytes(buf)


def _itxt(text: bytes, compressed: bool = True) -> tuple[bytes, bytes]:
    body = zlib.compress(text, 9) if compressed else text
    return b"iTXt", b"controlnet-studio\0" + bytes([int(compressed), 0]) + b"\0\0" + body


def _recipe_png(request: dict | str) -> bytes:
    recipe = base_recipe()
    recipe["request"] = request
    return _png([_itxt(json.dumps(recipe).encode())])


def test_zip_bomb_recipe_is_cut_off_at_the_cap_not_inflated():
    bomb = _png([_itxt(b" " * (MAX_RECIPE_BYTES * 8))])       # 128 MB of text in ~130 kB
    assert len(bomb) < 1_000_000
    started = time.monotonic()
    with pytest.raises(ValueError, match="larger than 16 MB; refused"):
        read_recipe(bomb)
    assert time.monotonic() - started < 5


def test_huge_uncompressed_recipe_is_refused():
    with pytest.raises(ValueError, match="larger than 16 MB"):
        read_recipe(_png([_itxt(b"{" + b" " * (MAX_RECIPE_BYTES + 1), compressed=False)]))


@pytest.mark.parametrize("png, words", [
    (_png([_itxt(b"x")[:1] + (b"controlnet-studio\0\x01\0\0\0" + b"not zlib",)]), "damaged"),
    (_png([_itxt(b"\xff\xfe\xfa", compressed=False)]), "not UTF-8"),
    (_png([(b"tEXt", b"controlnet-studio\0[1, 2]")]), "not a ControlNet Studio recipe"),
    (_png([(b"tEXt", b"controlnet-studio\0" + b"[" * 50_000)]), "nests too deeply"),
    (_png([(b"tEXt", b"parameters\0a cat, Steps: 20")]), "holds no ControlNet Studio recipe"),
    (_png([]), "holds no ControlNet Studio recipe"),
    (b"GIF89a" + b"\0" * 40, "not a PNG file"),
    (_png([(b"iTXt", b"controlnet-studio")]), "recipe"),                # body ends inside the header
    (_recipe_png({"steps": "20"}), "steps must be a number"),
    (_recipe_png({"steps": [20]}), "steps must be a number"),
    (_recipe_png({"units": {"model": "x"}}), "units must be a list"),
    (_recipe_png({"units": [{"model": "demo:scribble", "image": 12}]}), "base64 PNG text, not int"),
    (_recipe_png({"width": {"$gt": 0}}), "width must be a number"),
    (_recipe_png({"__class__": "os.system"}), "unknown request field"),
    (_recipe_png("../../etc/passwd"), "no request object"),
], ids=["bad-zlib", "not-utf8", "a-list", "deep", "a1111-only", "no-chunk", "not-png", "cut-header",
        "steps-text", "steps-list", "units-object", "image-number", "width-object", "dunder-field", "path-request"])
def test_hostile_recipe_metadata_is_refused_cleanly(png, words):
    with pytest.raises(ValueError) as e:
        read_recipe(png)
    assert words in str(e.value)


def test_chunk_length_past_the_end_of_file_is_refused():
    png = bytearray(_png([(b"tEXt", b"controlnet-studio\0{}")]))
    at = png.index(b"tEXt") - 4
    png[at:at + 4] = struct.pack(">I", 0xFFFFFFF0)
    with pytest.raises(ValueError):
        read_recipe_text(bytes(png))


def test_path_like_model_names_in_a_recipe_are_only_names(tmp_path):
    request = dict(base_recipe()["request"], backbone="../../etc/passwd")
    got = read_recipe(_recipe_png(request))
    assert got.backbone == "../../etc/passwd"     # read as text; loading it is refused (test_bad_input)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("prompt", ["../../etc/passwd", "/tmp/evil", "..\\..\\win", "a/b\0c", "CON"])
def test_output_names_take_no_path_parts_from_the_request(prompt, client, studio):
    recipe = base_recipe()
    recipe["request"].update(prompt=prompt, negative_prompt=prompt, seed=11)
    gallery, _ = client.predict(json.dumps(recipe), api_name="/generate")
    saved = sorted(Path(studio["outputs"]).rglob("*.png"))
    assert saved and all(OUTPUT_NAME.match(p.name) for p in saved)
    assert all(p.parent.parent == Path(studio["outputs"]) for p in saved)
    assert read_recipe(gallery[0]["image"]).prompt == prompt
