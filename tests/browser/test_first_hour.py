"""What a new artist tripped over (issue 20), clicked as they did."""
import pytest

from tests.browser.studio_page import set_number

pytestmark = [pytest.mark.browser]
SHOTS = "/tmp/shots20"


def test_first_screen(page):
    import os
    os.makedirs(SHOTS, exist_ok=True)
    page.screenshot(path=f"{SHOTS}/first-screen.png", full_page=False)
    assert page.locator("#generate").is_visible()


def test_a_clamped_width_or_steps_is_said(page):
    set_number(page, "#width", 99999)
    note = page.locator("#limit-note")
    note.get_by_text("Width 99999 is more than 2048 px").wait_for(timeout=10_000)
    page.locator("#width input[type=number]").blur()
    page.wait_for_function("() => document.querySelector('#width input[type=number]').value === '2048'")
    set_number(page, "#steps", 999)
    note.get_by_text("Steps 999 is more than 150").wait_for(timeout=10_000)
    note.scroll_into_view_if_needed()
    import os
    os.makedirs(SHOTS, exist_ok=True)
    page.screenshot(path=f"{SHOTS}/clamp-warning.png", full_page=False)
