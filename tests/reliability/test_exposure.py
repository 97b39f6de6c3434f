"""Exposure: localhost unless --listen, a warning for --listen without --auth, --auth refuses
unauthenticated API calls, and files are served only from the outputs folder."""
from __future__ import annotations

import logging
import os
import urllib.parse
from pathlib import Path

import gradio as gr
import httpx
import pytest

from ui import app

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def started(monkeypatch, tmp_path):
    """main(argv) with the page and the server replaced: what it would bind, and what it logged."""
    seen = {}
    import ui.layout
    monkeypatch.setattr(ui.layout, "build_app", lambda manager=None: "blocks")
    monkeypatch.setattr(app, "launch", lambda demo, **kw: seen.update(kw))
    monkeypatch.delenv("CNSTUDIO_LOGS", raising=False)

    def run(*argv):
        seen.clear()
        assert app.main([*argv, "--logs-dir", str(tmp_path / "logs")]) == 0
        return seen
    yield run
    root = logging.getLogger()
    for h in [h for h in root.handlers if str(getattr(h, "baseFilename", "")).startswith(str(tmp_path))]:
        root.removeHandler(h)
        h.close()


def test_binds_localhost_unless_listen(started):
    assert started()["host"] == "127.0.0.1"
    assert started("--listen", "--auth", "a:b")["host"] == "0.0.0.0"


def test_listen_without_auth_warns_at_start(started, caplog):
    with caplog.at_level(logging.WARNING):
        started("--listen")
    assert any("--listen without --auth" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        started("--listen", "--auth", "ann:secret")
        started()
    assert not any("--auth" in r.getMessage() for r in caplog.records)


def test_the_studio_process_listens_on_loopback_only(studio):
    port = int(studio["url"].rsplit(":", 1)[1])
    listening = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if os.path.exists(table):
            for line in Path(table).read_text().splitlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                    listening.append(local.rsplit(":", 1)[0])
    assert listening and all(addr == "0100007F" for addr in listening), listening


@pytest.fixture()
def served(tmp_path):
    """The API endpoints served as the studio serves them, with --auth ann:secret."""
    from tests.ui.studio_server import free_port
    from ui.api import hide_gui_events, register_endpoints
    with gr.Blocks() as blocks:
        register_endpoints()
    hide_gui_events(blocks)
    port = free_port()
    app.launch(blocks, port=port, auth=("ann", "secret"), block=False)
    outputs = Path(os.environ["CNSTUDIO_OUTPUTS"]).resolve()
    yield {"url": f"http://127.0.0.1:{port}", "outputs": outputs}
    blocks.close()


def test_auth_refuses_unauthenticated_api_calls(served):
    from gradio_client import Client
    from gradio_client.exceptions import AuthenticationError
    url = served["url"]
    for path in ("/gradio_api/info", "/gradio_api/call/models", "/gradio_api/queue/join", "/config"):
        r = httpx.post(url + path, json={"data": []}) if "call" in path or "join" in path else httpx.get(url + path)
        assert r.status_code in (401, 403), (path, r.status_code)
    # gradio_client's own refusals, not a connection error (which a server that is down would give)
    with pytest.raises(AuthenticationError, match="credentials were not provided"):
        Client(url + "/", verbose=False)
    with pytest.raises(ValueError, match="Could not login"):
        Client(url + "/", auth=("ann", "wrong"), verbose=False)
    client = Client(url + "/", auth=("ann", "secret"), verbose=False)
    assert client.predict(api_name="/interrupt") == "nothing is running"


def _login(url: str) -> httpx.Client:
    session = httpx.Client(base_url=url)
    r = session.post("/login", data={"username": "ann", "password": "secret"})
    assert r.status_code == 200, r.text
    return session


def test_files_are_served_only_from_outputs(served, tmp_path):
    outputs = served["outputs"]
    outputs.mkdir(parents=True, exist_ok=True)
    (outputs / "ok.png").write_bytes(b"\x89PNG fine")
    secret = outputs.parent / "secret.txt"
    secret.write_text("TOP SECRET")
    session = _login(served["url"])
    assert session.get(f"/gradio_api/file={outputs / 'ok.png'}").content == b"\x89PNG fine"
    anon = httpx.get(f"{served['url']}/gradio_api/file={outputs / 'ok.png'}")
    assert anon.status_code in (401, 403)
    tries = [str(secret), f"{outputs}/../secret.txt", "/etc/passwd", str(REPO / "engine" / "limits.py"),
             str(REPO / "ui" / "app.py"), "../../../../../../etc/passwd", "outputs/../engine/limits.py",
             f"{outputs}/%2e%2e/secret.txt", "~/.bashrc", str(Path.home() / ".bashrc")]
    for path in tries:
        for url in (f"/gradio_api/file={path}", f"/file={path}", f"/gradio_api/file={urllib.parse.quote(path)}"):
            r = session.get(url)
            assert r.status_code in (400, 403, 404), (url, r.status_code)
            assert b"TOP SECRET" not in r.content and b"root:" not in r.content and b"MAX_SIZE" not in r.content
