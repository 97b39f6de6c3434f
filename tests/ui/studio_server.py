"""The studio as a person starts it (`python3 launch.py --no-install --port N ...`), in a child
process on a free localhost port, for the gradio_client and browser tests. One server per test
process, shared by every test that asks, stopped at exit.

Models: the embedded demo model when models/demo/ is installed, else tiny random-weight models
saved in the demo's layout (so "demo", "demo:scribble" and "demo:openpose" resolve), passed with
--models-dir; the child has its own environment, so nothing leaks into other tests.
CNSTUDIO_UI_TEST_MODELS names another models folder to run these tests on (e.g. a --tiny demo)."""
from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "models" / "demo"
START_TIMEOUT_S = 240

_lock = threading.Lock()
_server: dict | None = None


def demo_installed() -> bool:
    return (DEMO / "backbone" / "model_index.json").is_file() and (DEMO / "controlnet-scribble").is_dir()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tiny_demo(root: Path) -> Path:
    """A models folder whose "demo" is the tests' tiny backbone with scribble and openpose
    ControlNets, and the real demo's recommended.json."""
    import json

    from demo.architecture import RECOMMENDED_SETTINGS
    from tests.tiny_models import save_backbone_folder, tiny_backbone_parts, tiny_controlnet
    parts = tiny_backbone_parts(seed=0)
    save_backbone_folder(parts, root / "demo" / "backbone")
    (root / "demo" / "backbone" / "recommended.json").write_text(json.dumps(RECOMMENDED_SETTINGS))
    tiny_controlnet(parts["unet"], seed=1).save_pretrained(root / "demo" / "controlnet-scribble")
    tiny_controlnet(parts["unet"], seed=2).save_pretrained(root / "demo" / "controlnet-openpose")
    return root


def shared() -> dict:
    """{"url", "outputs", "real_demo", "log"} of the one studio this process serves."""
    global _server
    with _lock:
        if _server is None:
            _server = start()
            atexit.register(stop, _server)
        if _server["process"].poll() is not None:
            raise RuntimeError(f"the studio exited early; its log:\n{Path(_server['log']).read_text()[-3000:]}")
        return _server


def start(extra_args: tuple[str, ...] = (), models: Path | None = None,
          auth: tuple[str, str] | None = None) -> dict:
    """A studio of its own: `models` a models folder to serve (default: as shared() picks), `auth`
    the --auth it asks for (readiness is then read from a REST route, with those credentials)."""
    work = Path(tempfile.mkdtemp(prefix="cnstudio-ui-tests-"))
    chosen = str(models) if models is not None else os.environ.get("CNSTUDIO_UI_TEST_MODELS")
    real = demo_installed() and not chosen
    port = free_port()
    args = [sys.executable, str(REPO / "launch.py"), "--no-install", "--port", str(port),
            "--outputs-dir", str(work / "outputs"), "--logs-dir", str(work / "logs"), *extra_args]
    if auth is not None:
        args += ["--auth", ":".join(auth)]
    if not real:
        args += ["--models-dir", chosen or str(tiny_demo(work / "models"))]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNSTUDIO_")}
    env.update(HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    log = work / "studio.log"
    process = subprocess.Popen(args, cwd=REPO, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    server = {"url": url, "process": process, "outputs": work / "outputs", "real_demo": real, "log": str(log),
              "work": work}
    deadline = time.monotonic() + START_TIMEOUT_S
    ready = urllib.request.Request(url + ("/gradio_api/info" if auth is None else "/controlnet/version"))
    if auth is not None:
        import base64
        ready.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the studio exited with {process.returncode}; its log:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(ready, timeout=5):
                return server
        except OSError:
            time.sleep(0.5)
    stop(server)
    raise RuntimeError(f"the studio did not answer on {url} within {START_TIMEOUT_S} s; "
                       f"log:\n{log.read_text()[-3000:]}")


def stop(server: dict) -> None:
    process = server["process"]
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
