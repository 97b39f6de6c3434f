"""Tracebacks go to the log file under the app's logs folder, never to the page or the API."""
from __future__ import annotations

import logging
from pathlib import Path

import gradio as gr
import pytest

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
        with pytest.raises(Exception) as e:
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
