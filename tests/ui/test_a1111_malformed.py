"""Thirty malformed payloads: each a 4xx with a message saying what was wrong (FastAPI's 422
`detail` or A1111's `errors`), never a 500 or a traceback, and the server keeps serving."""
import base64
import io
import zlib

import numpy as np
import pytest
import requests
from PIL import Image

from ui.a1111.http import MAX_BODY_BYTES


def b64(picture) -> str:
    out = io.BytesIO()
    Image.fromarray(picture).save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


GOOD = b64(np.zeros((64, 64, 3), np.uint8))


def bomb() -> str:
    """A 20000 x 20000 PNG of zeros: a few hundred KB that would inflate to 1.2 GB."""
    import struct
    width = height = 20000

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff)
    row = b"\0" * (1 + width * 3)
    comp = zlib.compressobj(9)
    data = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", data) + chunk(b"IEND", b"")
    return base64.b64encode(png).decode()


def unit(**fields) -> dict:
    return {"alwayson_scripts": {"controlnet": {"args": [{"module": "none", "model": "demo:scribble", "image": GOOD,
                                                          **fields}]}}, "steps": 1, "width": 64, "height": 64}


T2I, I2I, DETECT = "/sdapi/v1/txt2img", "/sdapi/v1/img2img", "/controlnet/detect"
CASES = [
    ("steps text", T2I, {"steps": "many"}, "steps"),
    ("steps zero", T2I, {"steps": 0}, "steps"),
    ("steps too many", T2I, {"steps": 100000}, "steps"),
    ("width not a multiple of 8", T2I, {"width": 100, "height": 64, "steps": 1}, "multiple of 8"),
    ("width too large", T2I, {"width": 100000}, "width"),
    ("cfg_scale a list", T2I, {"cfg_scale": [7]}, "cfg_scale"),
    ("prompt a number", T2I, {"prompt": 12}, "prompt"),
    ("seed text", T2I, {"seed": "lucky"}, "seed"),
    ("batch_size too large", T2I, {"batch_size": 1000}, "batch_size"),
    ("n_iter negative", T2I, {"n_iter": -1}, "n_iter"),
    ("unknown sampler", T2I, {"sampler_name": "Quantum", "steps": 1}, "Euler a"),
    ("unknown checkpoint", T2I, {"override_settings": {"sd_model_checkpoint": "nope"}, "steps": 1}, "demo ["),
    ("body not JSON", T2I, b"{not json", "JSON"),
    ("body a list", T2I, [1, 2], "dict"),
    ("args not a list", T2I, {"alwayson_scripts": {"controlnet": {"args": {"module": "canny"}}}}, "list of unit"),
    ("script not an object", T2I, {"alwayson_scripts": {"ControlNet": "canny"}}, "list of unit"),
    ("a unit not an object", T2I, {"alwayson_scripts": {"controlnet": {"args": ["canny"]}}}, "must be an object"),
    ("unknown module", T2I, unit(module="sharpen_magic"), "canny"),
    ("unknown model", T2I, unit(model="control_v11p_sd15_nothing [12345678]"), "demo:scribble ["),
    ("no model", T2I, unit(model="None"), "demo:scribble ["),
    ("start after end", T2I, unit(guidance_start=0.9, guidance_end=0.2), "guidance_start"),
    ("weight too large", T2I, unit(weight=5), "weight"),
    ("weight text", T2I, unit(weight="strong"), "weight"),
    ("bad resize_mode", T2I, unit(resize_mode="Stretch It"), "Just Resize"),
    ("bad control_mode", T2I, unit(control_mode=7), "Balanced"),
    ("broken base64", T2I, unit(image="%%%not-base64%%%"), "base64"),
    ("base64 of no picture", T2I, unit(image=base64.b64encode(b"hello world").decode()), "picture"),
    ("no unit image in txt2img", T2I, unit(image=""), "no image"),
    ("decompression bomb", T2I, None, "pixels"),   # the body is built in the test: bomb() takes a second
    ("img2img without init_images", I2I, {"steps": 1}, "init_images"),
    ("img2img broken mask", I2I, {"init_images": [GOOD], "mask": "data:image/png;base64,@@", "steps": 1}, "base64"),
    ("detect unknown module", DETECT, {"controlnet_module": "xray", "controlnet_input_images": [GOOD]}, "canny"),
    ("detect no images", DETECT, {"controlnet_module": "canny"}, "controlnet_input_images"),
    ("options not an object", "/sdapi/v1/options", [1], "object"),
]


@pytest.fixture(scope="module")
def post(a1111):
    def post(path, body):
        kw = {"data": body, "headers": {"Content-Type": "application/json"}} if isinstance(body, bytes) else {"json": body}
        return requests.post(a1111["url"] + path, auth=a1111["auth"], timeout=120, **kw)
    return post


@pytest.mark.parametrize("name,path,body,says", CASES, ids=[c[0] for c in CASES])
def test_a_malformed_payload_gets_a_4xx_with_a_message(post, a1111, name, path, body, says):
    if name == "decompression bomb":
        body = unit(image=bomb())
    r = post(path, body)
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:500])
    answer = r.json()
    text = str(answer.get("detail") or answer.get("errors"))
    assert says in text, text[:500]
    assert "Traceback" not in r.text
    assert requests.get(a1111["url"] + "/controlnet/version", auth=a1111["auth"], timeout=30).status_code == 200


def test_a_body_over_the_cap_is_refused_and_the_next_request_works(post):
    r = post(T2I, b'{"prompt": "' + b"a" * (MAX_BODY_BYTES + 10) + b'"}')
    assert r.status_code == 413 and "MiB" in r.json()["errors"]
    ok = post(T2I, {"steps": 1, "width": 64, "height": 64, "seed": 1})
    assert ok.status_code == 200 and len(ok.json()["images"]) == 1
