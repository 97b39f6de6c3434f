"""What a person does on the studio's page, as Playwright steps (shared by the browser tests)."""
from __future__ import annotations

import base64
import io
import math
import time

import numpy as np
from PIL import Image

DROP_FILE = """async ({selector, b64, name}) => {
  const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
  const dt = new DataTransfer();
  dt.items.add(new File([bytes], name, {type: 'image/png'}));
  const target = document.querySelector(selector);
  for (const type of ['dragenter', 'dragover', 'drop'])
    target.dispatchEvent(new DragEvent(type, {bubbles: true, cancelable: true, dataTransfer: dt}));
}"""


def draw_circle(page, radius: float = 90, steps: int = 16) -> None:
    """Pick the sketch's brush and draw one closed circle around the canvas's centre with the mouse."""
    page.locator("#sketch button[aria-label=Brush]").click()
    box = page.locator("#sketch canvas").first.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    points = [(cx + radius * math.cos(2 * math.pi * i / steps), cy + radius * math.sin(2 * math.pi * i / steps))
              for i in range(steps + 1)]
    page.mouse.move(*points[0])
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(x, y, steps=2)
    page.mouse.up()


def image(page, selector: str) -> np.ndarray:
    """The picture an <img> under `selector` shows, fetched as the browser fetched it."""
    src = page.locator(f"{selector} img").first.get_attribute("src")
    return np.asarray(Image.open(io.BytesIO(page.request.get(src).body())).convert("RGB"))


def wait_new_image(page, selector: str, old_src: str | None, timeout: float = 60_000) -> str:
    page.wait_for_function(
        """([sel, old]) => { const i = document.querySelector(sel + ' img');
                             return i && i.getAttribute('src') && i.getAttribute('src') !== old; }""",
        arg=[selector, old_src], timeout=timeout)
    return page.locator(f"{selector} img").first.get_attribute("src")


def wait_for_picture(page, selector: str, check, timeout: float = 60.0) -> np.ndarray:
    """Poll the picture under `selector` until `check(picture)` holds (the map may update several
    times while a person drags, the last update being the one that matters)."""
    deadline = time.monotonic() + timeout
    while True:
        picture = image(page, selector)
        if check(picture) or time.monotonic() > deadline:
            return picture
        page.wait_for_timeout(300)


def picture_in_sight(page, selector: str) -> bool:
    """Whether the picture under `selector` is what a person sees at its centre (nothing covers it)."""
    img = page.locator(f"{selector} img").first
    img.scroll_into_view_if_needed()
    return page.evaluate("""img => { const r = img.getBoundingClientRect();
        const top = document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2);
        return top === img || img.contains(top); }""", img.element_handle())


def src(page, selector: str) -> str | None:
    img = page.locator(f"{selector} img")
    return img.first.get_attribute("src") if img.count() else None


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def set_number(page, selector: str, value) -> None:
    box = page.locator(f"{selector} input[type=number]").first
    box.fill(str(value))
    box.press("Enter")


def drop_file(page, selector: str, data: bytes, name: str) -> None:
    """Drop a file on an upload area, as dragging it from the desktop does."""
    page.evaluate(DROP_FILE, {"selector": selector, "b64": base64.b64encode(data).decode(), "name": name})


def pose_joint_on_screen(page, x: float, y: float, canvas_size: int = 512) -> tuple[float, float]:
    box = page.locator("#pose-editor canvas").bounding_box()
    return box["x"] + x * box["width"] / canvas_size, box["y"] + y * box["height"] / canvas_size


def choose(page, selector: str, label: str) -> list[str]:
    """Open a dropdown as a person does, read what it offers, click `label`; returns the offer."""
    page.wait_for_function("!document.querySelector('[role=option]')", timeout=10_000)   # the last list closed
    page.locator(f"{selector} input").click()
    option = page.get_by_role("option", name=label, exact=True)
    option.wait_for()
    # the selected option carries a check mark on a line of its own
    offered = [n.split("\n")[-1].strip() for n in page.get_by_role("option").all_inner_texts()]
    option.click(timeout=5_000)
    page.wait_for_function("([sel, v]) => document.querySelector(sel + ' input').value === v",
                           arg=[selector, label], timeout=10_000)
    return offered


def download_picture(page, folder, name: str | None = None):
    """The gallery's first picture saved as its Download button saves it (recipe and all)."""
    page.locator("#gallery img").first.click()
    with page.expect_download() as download:
        page.locator("#gallery button[aria-label=Download]").click()
    saved = folder / (name or download.value.suggested_filename)
    download.value.save_as(saved)
    return saved


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def generate_and_download(page, folder, name: str, click: bool = True, old: str | None = None):
    """Generate until the gallery shows a new picture and the status says Done; that picture saved
    as the Download button saves it. click=False waits for a run the caller started: `old` is the
    gallery's picture from before its click (a picture read after it may already be the new one)."""
    if click:
        old = src(page, "#gallery")
        page.locator("#generate").click()
    wait_new_image(page, "#gallery", old, timeout=180_000)
    page.wait_for_function("document.querySelector('#status').innerText.includes('Done')", timeout=60_000)
    saved = download_picture(page, folder, name)
    page.keyboard.press("Escape")      # close the gallery's preview so the next click reaches the page
    return saved
