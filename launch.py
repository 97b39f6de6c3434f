#!/usr/bin/env python3
"""ControlNet Studio launcher: first-run set-up, then the app or a sub-command.

    python3 launch.py                 set up .venv if needed, start the studio on the demo model
    python3 launch.py test [ARGS]     set up, then run the test suite (ARGS go to pytest)
    python3 launch.py generate ...    make images from a recipe or flags (see --help)
    python3 launch.py train ...       train a ControlNet
    python3 launch.py train-demo ...  rebuild the embedded demo model (GPU)
    python3 launch.py study ...       measure the paper's claims on the demo model (training | sweeps)

Set-up creates a virtual environment (.venv, or CNSTUDIO_VENV), installs torch with
TORCH_COMMAND (default `pip install torch==2.13.0`; set it for your CUDA build), then
requirements.txt under a constraint pinning that torch, then requirements-nodeps.txt with
--no-deps. A re-run skips what is done. --no-install uses the running Python as it is.
The launcher then becomes the venv's Python (exec), so SIGTERM or Ctrl-C stops the studio itself.
"""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
DEFAULT_TORCH_COMMAND = "pip install torch==2.13.0"
SUBCOMMANDS = ("test", "generate", "train", "train-demo", "study", "app")


def _venv_python(venv_dir: Path) -> Path:
    return venv_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def _setup_fingerprint(torch_command: str) -> str:
    h = hashlib.sha256(torch_command.encode())
    for name in ("requirements.txt", "requirements-nodeps.txt"):
        h.update((ROOT / name).read_bytes())
    return h.hexdigest()


def _pip_lines(name: str) -> list[str]:
    lines = [ln.split("#")[0].strip() for ln in (ROOT / name).read_text().splitlines()]
    return [ln for ln in lines if ln]


def set_up(venv_dir: Path) -> Path:
    """Create and fill the virtual environment unless it is already what the files ask for."""
    torch_command = os.environ.get("TORCH_COMMAND", DEFAULT_TORCH_COMMAND)
    python = _venv_python(venv_dir)
    marker = venv_dir / ".cnstudio-setup"
    fingerprint = _setup_fingerprint(torch_command)
    if python.exists() and marker.exists() and marker.read_text() == fingerprint:
        return python
    if not python.exists():
        print(f"Creating the virtual environment in {venv_dir}", flush=True)
        venv.create(venv_dir, with_pip=True)
    pip = [str(python), "-m", "pip"]
    has_torch = subprocess.run([str(python), "-c", "import torch"], capture_output=True).returncode == 0
    if not has_torch:
        words = torch_command.split()
        if words[:2] == ["pip", "install"]:
            _run(pip + words[1:])
        else:  # a user's own command, e.g. with --index-url for a CUDA build
            _run(words)
    version = subprocess.run([str(python), "-c", "import torch; print(torch.__version__)"],
                             capture_output=True, text=True, check=True).stdout.strip()
    constraints = venv_dir / "constraints.txt"
    constraints.write_text(f"torch=={version}\n")
    _run(pip + ["install", "-r", str(ROOT / "requirements.txt"), "-c", str(constraints)])
    _run(pip + ["install", "--no-deps", *_pip_lines("requirements-nodeps.txt")])
    marker.write_text(fingerprint)
    return python


def run_in_venv(python: Path, argv: list[str]) -> int:
    """Run the launcher again under the venv's Python. On POSIX the process becomes it (exec), so
    a SIGTERM or Ctrl-C sent to `python3 launch.py` reaches the server itself; elsewhere the child
    gets every SIGTERM/SIGINT the launcher gets, and the launcher waits for it to end."""
    cmd = [str(python), str(ROOT / "launch.py"), "--no-install", *argv]
    sys.stdout.flush()
    sys.stderr.flush()
    if os.name == "posix":
        os.execv(cmd[0], cmd)
    child = subprocess.Popen(cmd)

    def pass_on(signum, _frame):
        child.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, pass_on)
    while True:
        try:
            return child.wait()
        except KeyboardInterrupt:   # the child got the same Ctrl-C; wait for it to finish
            continue


def main(argv: list[str]) -> int:
    no_install = "--no-install" in argv
    argv = [a for a in argv if a != "--no-install"]
    venv_dir = Path(os.environ.get("CNSTUDIO_VENV", ROOT / ".venv"))
    if not no_install and Path(sys.prefix).resolve() != venv_dir.resolve():
        return run_in_venv(set_up(venv_dir), argv)

    command = argv[0] if argv and argv[0] in SUBCOMMANDS else "app"
    rest = argv[1:] if argv and argv[0] in SUBCOMMANDS else argv
    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))
    if command == "test":
        import pytest
        return pytest.main(["-q", "-rsx", *rest])   # skips and xfails print their reasons
    if command == "generate":
        from engine.cli import main as generate_main
        return generate_main(rest)
    if command in ("train", "train-demo", "study"):
        from demo.cli import main as train_main
        return train_main([command, *rest])
    from ui.app import main as app_main
    return app_main(rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
