"""The bad-input table: each case mutates a valid recipe and says what must come back, either a
refusal whose message names what was wrong and what is allowed (`Refused`), or a sane
correction checked on the images and the recipe as run (`Corrected`). Shared by the Python API
and the HTTP API tests so both entry points face the same inputs."""
from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image

from tests.reliability.models_folder import CORRUPT, OTHER_ARCH, TRUNCATED, demo_facts

DEMO_NETS, DEMO_WIDTH, NATIVE = demo_facts()

SIZE = 64
RED = (255, 0, 0)


@dataclass(frozen=True)
class Refused:
    words: tuple[str, ...]          # every one must be in the message


@dataclass(frozen=True)
class Corrected:
    check: Callable | None = None   # check(unit_image_as_run: np.ndarray | None, recipe: dict)


def base_recipe() -> dict:
    cmap = np.zeros((SIZE, SIZE, 3), np.uint8)
    cmap[16:48, 30:34] = 255
    unit = {"model": "demo:scribble", "image": _b64_array(cmap)}
    return {"format": "controlnet-studio", "version": 1, "request": {
        "backbone": "demo", "prompt": "a red circle", "steps": 1, "seed": 3, "width": SIZE, "height": SIZE,
        "units": [unit]}}


def _encode(im: Image.Image, fmt: str = "PNG", **kw) -> str:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return base64.b64encode(buf.getvalue()).decode()


def _b64_array(a: np.ndarray) -> str:
    return _encode(Image.fromarray(a))


def _palette_red() -> str:
    im = Image.new("P", (20, 20), 1)
    im.putpalette([0, 0, 0, *RED] + [0] * 762)
    return _encode(im)


def _animated(fmt: str) -> str:
    frames = [Image.new("RGB", (20, 20), RED), Image.new("RGB", (20, 20), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, format=fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return base64.b64encode(buf.getvalue()).decode()


def _truncated_png() -> str:
    raw = base64.b64decode(_b64_array(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)))
    return base64.b64encode(raw[: len(raw) // 2]).decode()


def _sixteen_bit_white() -> str:
    return _encode(Image.fromarray(np.full((20, 20), 65535, np.uint16)))


def _cmyk_red() -> str:
    return _encode(Image.new("CMYK", (20, 20), (0, 255, 255, 0)), "JPEG", quality=100)


def _huge(width: int, height: int) -> str:
    return _encode(Image.new("1", (width, height)))


def _transparent() -> str:
    return _encode(Image.new("RGBA", (20, 20), (0, 0, 0, 0)))


def unit_set(**fields) -> Callable[[dict], None]:
    def mutate(recipe: dict) -> None:
        recipe["request"]["units"][0].update(fields)
    return mutate


def request_set(**fields) -> Callable[[dict], None]:
    def mutate(recipe: dict) -> None:
        recipe["request"].update(fields)
    return mutate


def _colour(expected):
    def check(unit_image, recipe):
        assert unit_image is not None and unit_image.shape[2] == 3
        centre = unit_image[unit_image.shape[0] // 2, unit_image.shape[1] // 2].astype(int)
        assert np.abs(centre - np.array(expected)).max() <= 8, centre
    return check


def _prompt_kept(n):
    def check(unit_image, recipe):
        assert len(recipe["request"]["prompt"]) == n
    return check


def _native_size(unit_image, recipe):
    assert recipe["request"]["width"] is None


BETWEEN_STEPS = "between 1 and 150"
# (id, mutate(recipe) or a replacement recipe text, expectation)
CASES: list[tuple[str, object, object]] = [
    # pictures
    ("map-empty-string", unit_set(image=""), Refused(("control map", "base64 PNG"))),
    ("map-null", unit_set(image=None), Refused(("control map", "must be base64 PNG text, not NoneType"))),
    ("map-not-a-picture", unit_set(image=base64.b64encode(b"hello world").decode()), Refused(("not a readable",))),
    ("map-truncated-png", unit_set(image=_truncated_png()), Refused(("not a readable base64 PNG",))),
    ("map-1x1", unit_set(image=_b64_array(np.full((1, 1, 3), 255, np.uint8))), Corrected(_colour((255, 255, 255)))),
    ("map-10000x10000", unit_set(image=_huge(10000, 10000)), Refused(("10000x10000", "largest side allowed is 8192"))),
    ("map-10000x16", unit_set(image=_huge(10000, 16)), Refused(("10000x16", "8192"))),
    ("map-cmyk-jpeg", unit_set(image=_cmyk_red()), Corrected(_colour(RED))),
    ("map-16bit", unit_set(image=_sixteen_bit_white()), Corrected(_colour((255, 255, 255)))),
    ("map-palette", unit_set(image=_palette_red()), Corrected(_colour(RED))),
    ("map-animated-gif", unit_set(image=_animated("GIF")), Corrected(_colour(RED))),
    ("map-animated-png", unit_set(image=_animated("PNG")), Corrected(_colour(RED))),
    ("map-transparent", unit_set(image=_transparent()), Corrected(_colour((255, 255, 255)))),
    ("map-other-size-crop", unit_set(image=_b64_array(np.zeros((48, 96, 3), np.uint8)), resize_mode="crop"), Corrected()),
    ("map-other-size-fill", unit_set(image=_b64_array(np.zeros((200, 40, 3), np.uint8)), resize_mode="fill"), Corrected()),
    ("mask-other-size", unit_set(mask=_b64_array(np.full((5, 9), 255, np.uint8))), Corrected()),
    ("init-1x1", request_set(init_image=_b64_array(np.zeros((1, 1, 3), np.uint8)), steps=2), Corrected()),
    # sizes
    ("width-70", request_set(width=70), Refused(("width 70 is not a multiple of 8", "try 72"))),
    ("height-63", request_set(height=63), Refused(("height", "between 64 and 2048"))),
    ("width-10000", request_set(width=10000), Refused(("width", "between 64 and 2048", "10000"))),
    ("width-0", request_set(width=0), Refused(("width", "between 64 and 2048"))),
    ("width-negative", request_set(width=-64), Refused(("width", "between 64 and 2048"))),
    ("width-text", request_set(width="64"), Refused(("width must be a number",))),
    ("width-fraction", request_set(width=64.5), Refused(("width must be a whole number",))),
    ("width-null-native", request_set(width=None, height=None), Corrected(_native_size)),
    # steps
    ("steps-0", request_set(steps=0), Refused(("steps", BETWEEN_STEPS))),
    ("steps-10000", request_set(steps=10000), Refused(("steps", BETWEEN_STEPS))),
    ("steps-fraction", request_set(steps=1.5), Refused(("steps must be a whole number",))),
    ("steps-bool", request_set(steps=True), Refused(("steps must be a number",))),
    # weights and step windows
    ("weight-nan", unit_set(weight=float("nan")), Refused(("weight", "finite", "between 0.0 and 2.0"))),
    ("weight-inf", unit_set(weight=float("inf")), Refused(("weight", "finite"))),
    ("weight-huge", unit_set(weight=1e308), Refused(("weight", "between 0.0 and 2.0"))),
    ("weight-negative", unit_set(weight=-1), Refused(("weight", "between 0.0 and 2.0"))),
    ("weight-text", unit_set(weight="strong"), Refused(("weight must be a number",))),
    ("start-after-end", unit_set(start=0.8, end=0.2), Refused(("start (0.8) must be before end (0.2)", "0 to 1"))),
    ("start-equals-end", unit_set(start=0.5, end=0.5), Refused(("must be before end",))),
    ("start-negative", unit_set(start=-0.5), Refused(("start", "between 0.0 and 1.0"))),
    ("end-over-one", unit_set(end=1.5), Refused(("end", "between 0.0 and 1.0"))),
    ("cfg-nan", request_set(cfg_scale=float("nan")), Refused(("cfg_scale", "finite"))),
    ("cfg-huge", request_set(cfg_scale=1e9), Refused(("cfg_scale", "between 0.0 and 30.0"))),
    ("mode-unknown", unit_set(mode="strong"), Refused(("mode 'strong'", "balanced, prompt, control"))),
    ("resize-unknown", unit_set(resize_mode="zoom"), Refused(("resize_mode 'zoom'", "just_resize, crop, fill"))),
    ("strength-2", request_set(init_image=_b64_array(np.zeros((8, 8, 3), np.uint8)), strength=2),
     Refused(("strength", "between 0.0 and 1.0"))),
    # names
    ("sampler-unknown", request_set(sampler="euler_z"), Refused(("sampler 'euler_z' is not one of", "unipc"))),
    ("sampler-null", request_set(sampler=None), Refused(("sampler None is not one of",))),
    ("backbone-unknown", request_set(backbone="nope"), Refused(("'nope' matches nothing", "Installed: demo"))),
    ("backbone-empty", request_set(backbone=""), Refused(("backbone must name a model",))),
    ("backbone-is-a-controlnet", request_set(backbone="demo:scribble"), Refused(('the demo backbone is "demo"',))),
    # Whether ../../etc exists depends on where the checkout lies: refused either way.
    ("backbone-dotdot-path", request_set(backbone="../../etc"), Refused(("'../../etc'",))),
    ("backbone-folder-not-a-model", request_set(backbone="/etc"), Refused(("not a diffusers Stable Diffusion folder",))),
    ("backbone-absolute-file", request_set(backbone="/etc/passwd"), Refused(("not a model file", ".safetensors"))),
    ("controlnet-unknown", unit_set(model="nope"), Refused(("'nope' matches nothing", "demo:scribble"))),
    ("controlnet-demo-unknown", unit_set(model="demo:nope"), Refused(("not installed", "installed: " + ", ".join(DEMO_NETS)))),
    ("controlnet-is-the-backbone", unit_set(model="demo"), Refused(('demo ControlNets are "demo:<kind>"',))),
    ("controlnet-corrupt", unit_set(model=CORRUPT), Refused(("not a readable .safetensors file", "Download it again"))),
    ("controlnet-truncated", unit_set(model=TRUNCATED), Refused(("corrupt or truncated", "Download it again"))),
    ("controlnet-other-arch", unit_set(model=OTHER_ARCH),
     Refused(("does not fit backbone 'demo'", f"ControlNet 48 vs backbone {DEMO_WIDTH}", "made for this backbone"))),
    # text
    ("prompt-10000", request_set(prompt="a red circle " * 769), Corrected(_prompt_kept(len("a red circle " * 769)))),
    ("prompt-over-limit", request_set(prompt="x" * 20001), Refused(("20001 characters", "the limit is 20000"))),
    ("prompt-number", request_set(prompt=5), Refused(("prompt must be text",))),
    ("prompt-control-chars", request_set(prompt="a\x00b\u202e\U0001F600 ../../etc"), Corrected()),
    # numbers and counts
    ("seed-below", request_set(seed=-2), Refused(("seed", "between -1 and 4294967295"))),
    ("seed-huge", request_set(seed=2**40), Refused(("seed", "4294967295"))),
    ("batch-0", request_set(batch_size=0), Refused(("batch_size", "between 1 and 16"))),
    ("batch-1000", request_set(batch_size=1000), Refused(("batch_size", "between 1 and 16"))),
    ("units-too-many", lambda r: r["request"].update(units=r["request"]["units"] * 9),
     Refused(("9 control units given", "at most 8"))),
    ("units-not-a-list", request_set(units="demo:scribble"), Refused(("units must be a list",))),
    ("unit-not-an-object", request_set(units=[5]), Refused(("control unit in a recipe must be a JSON object",))),
    ("inpaint-without-init", request_set(inpaint_mask=_b64_array(np.ones((8, 8), np.uint8))),
     Refused(("inpaint_mask needs an init_image",))),
    # the recipe itself
    ("recipe-not-json", "{not json", Refused(("not valid JSON",))),
    ("recipe-deep-nesting", "[" * 100_000, Refused(("nests too deeply",))),
    ("recipe-a-list", "[1, 2]", Refused(("not a ControlNet Studio recipe", '"format": "controlnet-studio"'))),
    ("recipe-version-2", lambda r: r.update(version=2), Refused(("version 2 is not supported", "reads 1"))),
    ("recipe-request-text", lambda r: r.update(request="steps=20"), Refused(("no request object",))),
]


def recipe_text(case) -> str:
    _, change, _ = case
    if isinstance(change, str):
        return change
    recipe = base_recipe()
    change(recipe)
    return json.dumps(recipe)


def check_corrected(expect: Corrected, recipe_as_run: str, image_sizes: list[tuple[int, int]]) -> None:
    from engine.images import from_b64
    recipe = json.loads(recipe_as_run)
    request = recipe.get("request", recipe)
    w, h = request.get("width") or NATIVE, request.get("height") or NATIVE
    assert image_sizes and all(size == (w, h) for size in image_sizes), image_sizes
    units = request["units"]
    unit_image = from_b64(units[0]["image"]) if units else None
    if expect.check:
        expect.check(unit_image, {"request": request})
