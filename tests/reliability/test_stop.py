"""Stopping the studio as a person does: SIGTERM to `python3 launch.py` (a service manager, `kill`)
or Ctrl-C in its terminal (SIGINT to the terminal's process group) closes the port, whether the
launcher runs the studio itself (--no-install) or starts it under its virtual environment."""
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import launch
from tests.ui.studio_server import REPO, free_port, tiny_demo

pytestmark = pytest.mark.slow
START_S = 240
STOP_S = 30


def _open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _fake_venv(root: Path) -> Path:
    """A venv the launcher takes as set up: its python is this test's, its marker current."""
    python = root / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    (root / ".cnstudio-setup").write_text(launch._setup_fingerprint(launch.DEFAULT_TORCH_COMMAND))
    return root


@pytest.mark.skipif(os.name != "posix", reason="signals as POSIX sends them")
@pytest.mark.parametrize("how", ["sigterm-no-install", "sigterm-venv", "ctrl-c-venv"])
def test_stopping_the_launcher_closes_the_port(how, tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CNSTUDIO_", "TORCH_COMMAND"))}
    env.update(HF_HUB_OFFLINE="1")
    args = [sys.executable, str(REPO / "launch.py"), "--port", str(port), "--logs-dir", str(tmp_path / "logs"),
            "--outputs-dir", str(tmp_path / "out"), "--models-dir", str(tiny_demo(tmp_path / "models"))]
    if how.endswith("no-install"):
        args.insert(2, "--no-install")
    else:
        env["CNSTUDIO_VENV"] = str(_fake_venv(tmp_path / "venv"))
    # its own session, as a terminal gives it, so whatever it starts can be found and cleaned up
    process = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + START_S
        while not _open(port):
            assert process.poll() is None, "the studio exited before it served"
            assert time.monotonic() < deadline, "the studio did not start"
            time.sleep(0.5)
        if how.startswith("ctrl-c"):
            os.killpg(process.pid, signal.SIGINT)
        else:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_S
        while _open(port) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not _open(port), f"port {port} still served {STOP_S} s after the {how} stop"
        process.wait(timeout=STOP_S)
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
