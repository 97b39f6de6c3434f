"""Bad pictures through the GUI, as an artist drops them: each upload either becomes a control map
(converted: CMYK, 16-bit, palette, animated, transparent, tiny) or shows a message that says what
was wrong, never a traceback or the generic crash text, and the page keeps working after all of
them (issue 9's bad-input table, GUI path)."""
import io

import numpy as np
import pytest
from PIL import Image

from tests.browser.studio_page import open_tab, src, wait_new_image

pytestmark = [pytest.mark.browser, pytest.mark.slow]

GENERIC = "Something went wrong"


def _save(im: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _square(mode: str = "RGB", colour=(200, 40, 40)) -> Image.Image:
    im = Image.new("RGB", (96, 96), (255, 255, 255))
    im.paste(colour, (24, 24, 72, 72))
    return im.convert(mode)


def _animated() -> bytes:
    frames = [_square(), _square(colour=(40, 40, 200))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buf.getvalue()


def _sixteen_bit() -> bytes:
    a = np.zeros((96, 96), np.uint16)
    a[24:72, 24:72] = 65535
    return _save(Image.fromarray(a))


CONVERTED = [
    ("cmyk.jpg", "image/jpeg", lambda: _save(_square("CMYK"), "JPEG", quality=95)),
    ("sixteen-bit.png", "image/png", _sixteen_bit),
    ("palette.png", "image/png", lambda: _save(_square("P"))),
    ("animated.gif", "image/gif", _animated),
    ("transparent.png", "image/png", lambda: _save(_square("RGBA"))),
    ("one-pixel.png", "image/png", lambda: _save(Image.new("RGB", (1, 1), (9, 9, 9)))),
]
def _truncated() -> bytes:
    noise = np.random.default_rng(0).integers(0, 255, (96, 96, 3), np.uint8)   # noise: no tiny PNG
    data = _save(Image.fromarray(noise))
    return data[: len(data) // 2]


REFUSED = [
    ("truncated.png", "image/png", _truncated),
    ("not-a-picture.png", "image/png", lambda: b"this is a text file, not a PNG"),
]


def _toasts(page) -> list[str]:
    """Every message shown so far (Gradio groups the messages of one kind in one toast)."""
    return [t.strip() for t in page.locator(".toast-message-text").all_inner_texts()]


def _upload(page, name: str, mime: str, data: bytes) -> None:
    page.locator("#upload-photo input[type=file]").set_input_files(
        files=[{"name": name, "mimeType": mime, "buffer": data}])


def _clear_photo(page) -> None:
    clear = page.locator('#upload-photo button[aria-label="Remove Image"]')
    if clear.count():
        clear.first.click()


def test_odd_pictures_become_maps_and_broken_ones_are_messages(page):
    open_tab(page, "Upload")
    page.locator("#prompt textarea").fill("a red square, keep me")
    seen = {}
    for name, mime, make in CONVERTED:
        _clear_photo(page)
        old = src(page, "#upload-map")
        _upload(page, name, mime, make())
        seen[name] = wait_new_image(page, "#upload-map", old, timeout=60_000)
        assert not any(GENERIC in t or "Traceback" in t for t in _toasts(page)), (name, _toasts(page))
    assert len(set(seen.values())) >= 2       # different pictures, different maps
    for name, mime, make in REFUSED:
        _clear_photo(page)
        before = len(_toasts(page))
        _upload(page, name, mime, make())
        page.wait_for_function(f"document.querySelectorAll('.toast-message-text').length > {before}", timeout=60_000)
        shown = _toasts(page)[-1]
        assert GENERIC not in shown and "Traceback" not in shown, (name, shown)
        assert "picture" in shown.lower() or "image" in shown.lower(), (name, shown)
    assert "Traceback" not in page.content()
    # Still serving: a good picture after the bad ones makes its map, and the prompt is as typed.
    _clear_photo(page)
    old = src(page, "#upload-map")
    _upload(page, "good.png", "image/png", _save(_square()))
    wait_new_image(page, "#upload-map", old, timeout=60_000)
    assert page.locator("#prompt textarea").input_value() == "a red square, keep me"
