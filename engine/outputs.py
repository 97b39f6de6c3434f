"""Output files: PNGs under outputs/<date>/ carrying their recipe (an iTXt chunk) and an
AUTOMATIC1111-style `parameters` text, and reading a recipe back from such a file."""
from __future__ import annotations

import datetime as _dt
import io
import struct
import zlib
from pathlib import Path

from PIL import Image, PngImagePlugin

from .ip_adapter import a1111_module, is_ip_adapter
from .reference import is_reference
from .hires import HiresOption
from .limits import MAX_RECIPE_BYTES
from .loading.paths import outputs_dir
from .samplers import display_name
from .values import RECIPE_FORMAT, ControlMode, GenerationRequest, ResizeMode


def infotext(request: GenerationRequest, seed: int, width: int, height: int) -> str:
    """The `parameters` text AUTOMATIC1111 writes, so other tools show the basics."""
    # LoRAs chosen outside the prompt go into it as A1111's tags, so A1111 reads them too
    tags = "".join(f" <lora:{lora.name}:{lora.weight:g}>" for lora in request.loras)
    lines = [(request.prompt + tags).strip()]
    if request.negative_prompt:
        lines.append(f"Negative prompt: {request.negative_prompt}")
    pairs = [f"Steps: {request.steps}", f"Sampler: {display_name(request.sampler)}",
             f"CFG scale: {request.cfg_scale:g}", f"Seed: {seed}", f"Size: {width}x{height}",
             f"Model: {request.backbone}"]
    if request.init_image is not None or request.enable_hr:
        pairs.append(f"Denoising strength: {request.strength:g}")
    if request.enable_hr:   # A1111's names for its hires-fix parameters
        if request.hr_resize_x or request.hr_resize_y:
            pairs.append(f"Hires resize: {request.hr_resize_x}x{request.hr_resize_y}")
        else:
            pairs.append(f"Hires upscale: {request.hr_scale:g}")
        if request.hr_second_pass_steps:
            pairs.append(f"Hires steps: {request.hr_second_pass_steps}")
        pairs.append(f"Hires upscaler: {request.hr_upscaler}")
    for n, u in enumerate(request.active_units):
        # a reference unit is, in the extension's words, a model-free module with threshold A its fidelity
        module, model = (u.model, "None") if is_reference(u.model) else (u.annotator or "none", u.model)
        if is_ip_adapter(u.model):    # the extension names the encoder's module beside the adapter
            module = a1111_module(u.model)
        unit = (f"Module: {module}, Model: {model}, Weight: {u.weight:g}, "
                f"Resize Mode: {ResizeMode[u.resize_mode].value}, Guidance Start: {u.start:g}, "
                f"Guidance End: {u.end:g}, Control Mode: {ControlMode[u.mode].value}")
        if is_reference(u.model):
            unit += f", Threshold A: {u.style_fidelity:g}"
        if u.union_control_type:    # the extension's field, shown in its display text
            unit += f", Union Control Type: {u.union_control_type}"
        if request.enable_hr:
            unit += f", Hr Option: {HiresOption[u.hr_option].value}"
        pairs.append(f'ControlNet {n}: "{unit}"')
    lines.append(", ".join(pairs))
    return "\n".join(lines)


def _png_info(recipe_json: str, parameters: str) -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", parameters)
    info.add_itxt(RECIPE_FORMAT, recipe_json, zip=True)
    return info


def encode_png(image: Image.Image, recipe_json: str, parameters: str) -> bytes:
    """The PNG file save_png would write, as bytes (for an API answer that saves nothing)."""
    out = io.BytesIO()
    image.save(out, format="PNG", pnginfo=_png_info(recipe_json, parameters))
    return out.getvalue()


def save_png(image: Image.Image, recipe_json: str, parameters: str, folder: Path | None = None,
             seed: int | None = None) -> Path:
    """Write one image under <folder>/<date>/NNNNN-<seed>.png. The name is built from a counter
    and the seed only (never from user text); exclusive creation means two writers never
    overwrite each other."""
    day = (folder or outputs_dir()) / _dt.date.today().isoformat()
    try:
        day.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OSError(f"cannot create the output folder {day}: {e.strerror}; set CNSTUDIO_OUTPUTS to a writable folder") from e
    info = _png_info(recipe_json, parameters)
    numbers = [int(p.name.split("-")[0]) for p in day.glob("*.png") if p.name.split("-")[0].isdigit()]
    n = max(numbers, default=-1) + 1
    suffix = "" if seed is None else f"-{int(seed)}"
    while True:
        path = day / f"{n:05d}{suffix}.png"
        try:
            with open(path, "xb") as f:
                image.save(f, format="PNG", pnginfo=info)
            return path
        except FileExistsError:
            n += 1
        except OSError as e:
            path.unlink(missing_ok=True)
            raise OSError(f"cannot write {path}: {e.strerror}; free some space or set CNSTUDIO_OUTPUTS") from e


def read_recipe_text(png) -> str:
    """The recipe JSON text stored in a PNG (path or bytes). Reads the chunks directly so the
    compressed text may be up to MAX_RECIPE_BYTES (Pillow stops at 1 MB) and no more:
    a zip bomb is cut off at the cap, not inflated."""
    data = png if isinstance(png, (bytes, bytearray)) else Path(png).read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG file; drop a PNG made by ControlNet Studio")
    pos = 8
    while pos + 8 <= len(data):
        length, ctype = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if ctype == b"IEND":
            break
        if ctype not in (b"iTXt", b"tEXt"):
            continue
        key, _, rest = body.partition(b"\0")
        if key != RECIPE_FORMAT.encode():
            continue
        if ctype == b"tEXt":
            text = rest
        else:
            if len(rest) < 2:
                raise ValueError("the recipe in this PNG is cut short (damaged metadata); it cannot be read")
            compressed, _method = rest[0], rest[1]
            _lang, _, rest = rest[2:].partition(b"\0")
            _tkey, _, text = rest.partition(b"\0")
            if compressed:
                d = zlib.decompressobj()
                try:
                    text = d.decompress(text, MAX_RECIPE_BYTES + 1)
                except zlib.error as e:
                    raise ValueError(f"the recipe in this PNG is damaged ({e})") from None
                if len(text) > MAX_RECIPE_BYTES or d.unconsumed_tail:
                    raise ValueError(f"the recipe in this PNG is larger than {MAX_RECIPE_BYTES // 2**20} MB; refused")
        if len(text) > MAX_RECIPE_BYTES:
            raise ValueError(f"the recipe in this PNG is larger than {MAX_RECIPE_BYTES // 2**20} MB; refused")
        try:
            return text.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("the recipe in this PNG is not UTF-8 text") from None
    raise ValueError("this PNG holds no ControlNet Studio recipe (it was not made here, or its metadata was stripped)")


def read_recipe(png, this_image: bool = False) -> GenerationRequest:
    """The request a PNG was made from. With `this_image`, the request for that one image
    (its own seed, batch size 1) rather than for the batch it came from."""
    import json
    text = read_recipe_text(png)
    request = GenerationRequest.from_json(text)
    if this_image:
        seed = json.loads(text).get("seed")
        if isinstance(seed, int) and seed >= 0:
            request = request.replace(seed=seed, batch_size=1)
    return request
