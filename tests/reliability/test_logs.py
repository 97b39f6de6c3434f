"""Tracebacks go to the log file under the app's logs folder, never to the page or the API."""
from __future__ import annotations

import logging
import re
from pathlib import Path

import gradio as gr
import pytest
from gradio_client.exceptions import AppError

from ui import app
from ui.errors import shown


@pytest.fixture()
def log_file(tmp_path):
    path = app.configure_logging(tmp_path / "logs")
    yield path
    root = logging.getLogger()
    for h in [h for h in root.handlers if getattr(h, "baseFilename", None) == str(path)]:
        root.removeHandler(h)
        h.close()


def _boom():
    return {}["no such key"].split()   # a bug: not an error meant for the user


def _boom_deep():
    raise RuntimeError("internal state went bad")


def test_log_file_is_under_the_apps_logs_folder_by_default(monkeypatch):
    monkeypatch.delenv("CNSTUDIO_LOGS", raising=False)
    assert app.LOGS_DIR == Path(app.__file__).resolve().parent.parent / "logs"


def test_unexpected_error_traceback_goes_to_the_log_not_the_message(log_file):
    with pytest.raises(gr.Error) as e:
        shown(_boom_deep)()
    assert "Traceback" not in str(e.value.message) and "internal state went bad" in str(e.value.message)
    for h in logging.getLogger().handlers:
        h.flush()
    text = log_file.read_text()
    assert "Traceback" in text and "_boom_deep" in text and "RuntimeError: internal state went bad" in text


def test_over_http_the_client_gets_a_message_and_the_log_the_traceback(log_file):
    from gradio_client import Client

    from tests.ui.studio_server import free_port
    with gr.Blocks() as blocks:
        gr.api(shown(_boom_deep), api_name="boom")
    port = free_port()
    app.launch(blocks, port=port, block=False)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        with pytest.raises(AppError) as e:
            client.predict(api_name="/boom")
        assert "internal state went bad" in str(e.value) and "Traceback" not in str(e.value)
        assert 'File "' not in str(e.value)
    finally:
        blocks.close()
    for h in logging.getLogger().handlers:
        h.flush()
    assert "Traceback" in log_file.read_text()


def test_the_studio_process_writes_its_log_file(studio):
    log = studio["logs"] / app.LOG_FILE
    assert log.is_file() and "log file:" in log.read_text()


def _user_mistake():
    raise ValueError("unit 2: weight must be between 0.0 and 2.0, not 5")


def test_every_error_shown_to_the_user_is_logged_with_its_cause(log_file):
    with pytest.raises(gr.Error) as e:
        shown(_user_mistake)()
    assert "Traceback" not in str(e.value.message)
    for h in logging.getLogger().handlers:
        h.flush()
    text = log_file.read_text()
    assert "weight must be between 0.0 and 2.0, not 5" in text and "_user_mistake" in text
    assert "Traceback" in text   # its cause, for whoever reads the log later


def test_the_console_shows_no_traceback_and_internal_requests_stay_out_of_info(log_file):
    record = logging.LogRecord("uvicorn.error", logging.ERROR, __file__, 1, "Exception in ASGI application",
                               None, None)
    try:
        _boom_deep()
    except RuntimeError:
        import sys
        record.exc_info = sys.exc_info()
    line = app.ConsoleFormatter().format(record)
    assert "Traceback" not in line and "RuntimeError" in line and app.LOG_FILE in line
    assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)


def test_start_up_output_ends_with_the_address_backbone_and_device(studio):
    import time
    deadline = time.monotonic() + 30   # the server answers a moment before the line is written
    while "ready: open" not in Path(studio["log"]).read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    text = Path(studio["log"]).read_text()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert "share=True" not in text and "HTTP Request:" not in text and "Traceback" not in text
    start = next((i for i, ln in enumerate(lines) if "ready: open" in ln), None)
    assert start is not None, text[-3000:]
    assert f"open {studio['url']}/ in your browser" in lines[start]
    assert any(re.search(r"backbone demo loaded on (cpu|cuda)", ln) for ln in lines[:start])
