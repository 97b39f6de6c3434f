"""Read last (the file sorts after the other browser tests): whatever the suite clicked, the
studio's output (its stdout and stderr) holds no traceback; tracebacks go to the log file."""
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser]


def test_no_traceback_in_the_studios_output_after_the_browser_suite(page, studio):
    text = Path(studio["log"]).read_text()
    assert "Traceback" not in text and 'File "' not in text, text[-3000:]
