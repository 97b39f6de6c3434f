"""`python3 launch.py [flags]`: start the studio.

Binds 127.0.0.1 unless --listen; never makes a share link; no analytics, no hub look-ups, no
fonts or scripts from elsewhere, so it runs with no network at all.
"""
from __future__ import annotations

import argparse
import logging
import logging.handlers
import os
import threading
from pathlib import Path

DEFAULT_PORT = 7860
LOCALHOST = "127.0.0.1"
DEFAULT_QUEUE_SIZE = 64   # jobs waiting beyond this get "queue is full" rather than an ever-growing wait
LOGS_DIR = Path(__file__).resolve().parent.parent / "logs"
LOG_FILE = "studio.log"

log = logging.getLogger("ui")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="launch.py", description="Start ControlNet Studio in your browser.")
    p.add_argument("--listen", action="store_true", help="accept connections from other machines (binds 0.0.0.0)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port to serve on (default {DEFAULT_PORT})")
    p.add_argument("--auth", metavar="USER:PASS", help="ask for this user name and password")
    p.add_argument("--models-dir", help="the models folder (default models/; env CNSTUDIO_MODELS)")
    p.add_argument("--annotators-dir", help="annotator weights folder (default models/annotators/)")
    p.add_argument("--inputs-dir", help="folders of pictures a batch may read with --listen (default inputs/; "
                                        "env CNSTUDIO_INPUTS)")
    p.add_argument("--outputs-dir", help="where images are saved (default outputs/; env CNSTUDIO_OUTPUTS)")
    p.add_argument("--queue-size", type=int, default=DEFAULT_QUEUE_SIZE,
                   help=f"jobs that may wait in the queue; more are refused as 'queue full' (default {DEFAULT_QUEUE_SIZE})")
    p.add_argument("--logs-dir", help="where studio.log is written (default logs/; env CNSTUDIO_LOGS)")
    p.add_argument("--offload", action="store_true",
                   help="keep idle ControlNets on the CPU (small GPUs; slower: each used net crosses to the GPU)")
    p.add_argument("--no-fast-path", action="store_true", help="no CUDA graphs: plain PyTorch on the GPU")
    p.add_argument("--no-compile", action="store_true", help="no background torch.compile of the fast path")
    args = p.parse_args(argv)
    if args.auth is not None:
        user, sep, password = args.auth.partition(":")
        if not sep or not user or not password:
            p.error("--auth takes USER:PASS, both non-empty")
        args.auth = (user, password)
    if not 1 <= args.port <= 65535:
        p.error(f"--port {args.port} is not a port number (1-65535)")
    if args.queue_size < 1:
        p.error(f"--queue-size {args.queue_size} must be at least 1")
    return args


def exposure_warning(args: argparse.Namespace) -> str | None:
    """The warning printed at start when the studio is reachable from other machines with no password."""
    if args.listen and args.auth is None:
        return ("--listen without --auth: anyone who can reach this machine on port "
                f"{args.port} can use the studio and read its outputs; add --auth USER:PASS.")
    return None


class ConsoleFormatter(logging.Formatter):
    """The console's lines: the message alone, never a traceback (the log file keeps those)."""

    def format(self, record: logging.LogRecord) -> str:
        text = f"{record.levelname} {record.name}: {record.getMessage()}"
        if record.exc_info:
            text += f" ({type(record.exc_info[1]).__name__}; the traceback is in {LOG_FILE})"
        return text


def _early_end_of_download(record: logging.LogRecord) -> bool:
    """uvicorn's "Exception in ASGI application" for a file response cut short (the browser
    dropped a picture it no longer shows, gradio#7490): not a fault of the studio's; a warning."""
    error = record.exc_info[1] if record.exc_info else None
    while error is not None:
        if type(error).__name__ == "LocalProtocolError" and "Content-Length" in str(error):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.msg, record.args = "a file download ended early (%s)", (error,)
            break
        error = error.__cause__ or error.__context__
    return True


def route_server_logs() -> None:
    """uvicorn installs its own console handlers when the server starts: its messages go through
    the studio's handlers instead (console without tracebacks, and the log file); the page's own
    HTTP requests (gradio polls itself through httpx) stay out of the INFO output."""
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    logging.getLogger("uvicorn.error").addFilter(_early_end_of_download)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _log_uncaught(args) -> None:
    log.error("uncaught error in thread %s", getattr(args.thread, "name", "?"),
              exc_info=(args.exc_type, args.exc_value, args.exc_traceback))


def configure_logging(folder: Path | None = None) -> Path:
    """Messages to the console; messages and tracebacks also to <folder>/studio.log (rotated),
    so a failure can be read later while the page only ever shows a short message."""
    folder = Path(folder or os.environ.get("CNSTUDIO_LOGS") or LOGS_DIR).expanduser().resolve()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOG_FILE
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not any(isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler) for h in root.handlers):
        console = logging.StreamHandler()
        console.setFormatter(ConsoleFormatter())
        root.addHandler(console)
    if not any(getattr(h, "baseFilename", None) == str(path) for h in root.handlers):
        handler = logging.handlers.RotatingFileHandler(path, maxBytes=10 * 2**20, backupCount=3, encoding="utf-8")
        handler.setFormatter(fmt)
        root.addHandler(handler)
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    threading.excepthook = _log_uncaught
    return path


def offline_environment() -> None:
    """Before gradio is imported: no analytics, no version checks, no telemetry."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")   # no "Loading weights" bars in the output


def apply_folders(args: argparse.Namespace) -> None:
    if args.models_dir:
        os.environ["CNSTUDIO_MODELS"] = str(Path(args.models_dir).expanduser().resolve())
    if args.outputs_dir:
        os.environ["CNSTUDIO_OUTPUTS"] = str(Path(args.outputs_dir).expanduser().resolve())
    if args.inputs_dir:
        os.environ["CNSTUDIO_INPUTS"] = str(Path(args.inputs_dir).expanduser().resolve())
    if args.annotators_dir:
        os.environ["CNSTUDIO_ANNOTATORS"] = str(Path(args.annotators_dir).expanduser().resolve())


def build_manager(args: argparse.Namespace):
    """The studio's model manager, from its flags; an option no flag sets keeps the engine's
    default or its documented environment override (engine.build_manager)."""
    import engine
    return engine.build_manager(fast=False if args.no_fast_path else None,
                                compile=False if args.no_compile else None,
                                offload=True if args.offload else None)


def loaded_backbone() -> str:
    """Load the default backbone now (the first generation needs it) and say which and where."""
    import engine

    from . import catalog
    name = catalog.default_backbone(catalog.models()["backbones"])
    try:
        manager = catalog.manager()
        manager.backbone(name)
    except (OSError, ValueError, engine.GenerationError) as e:
        log.warning("backbone %s not loaded: %s", name, e, exc_info=e)
        return f"backbone {name} could not be loaded ({e}); pick another in the page"
    dtype = str(manager.dtype).removeprefix("torch.")
    return f"backbone {name} loaded on {manager.device.type} ({dtype})"


def launch(demo, host: str = LOCALHOST, port: int = DEFAULT_PORT, auth: tuple[str, str] | None = None,
           block: bool = True, queue_size: int = DEFAULT_QUEUE_SIZE) -> str:
    """Serve the Blocks, with AUTOMATIC1111's REST routes (ui/a1111) on the same port and behind the
    same `auth`; returns the local URL (after the server stops when `block`)."""
    from engine import outputs_dir
    css = (Path(__file__).with_name("style.css")).read_text()
    # the page's scripts, each a function, run in turn when the page loads
    parts = [(Path(__file__).with_name(name)).read_text().strip() for name in ("page_drop.js", "page_limits.js")]
    js = "() => {\n" + "".join(f"({part})();\n" for part in parts) + "}"
    outputs = outputs_dir().resolve()
    outputs.mkdir(parents=True, exist_ok=True)
    demo.queue(default_concurrency_limit=2, max_size=queue_size)
    # A1111 registers its REST routes on the app Gradio's launch made; so does the studio, and
    # blocks only after they are there.
    app, url, _ = demo.launch(
        server_name=host, server_port=port, auth=auth, share=False, inbrowser=False,
        prevent_thread_lock=True, allowed_paths=[str(outputs)], css=css, js=js, footer_links=["api", "settings"],
        run_history=False, enable_monitoring=False, mcp_server=False, pwa=False, ssr_mode=False,
        max_file_size="64mb", quiet=True)
    route_server_logs()
    from .a1111 import mount
    mount(app, auth)
    if block:
        log.info("ready: open %s in your browser (Ctrl-C stops the studio)", url)
        demo.block_thread()
    return url


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    offline_environment()
    apply_folders(args)
    if args.logs_dir:
        os.environ["CNSTUDIO_LOGS"] = str(Path(args.logs_dir).expanduser().resolve())
    log_file = configure_logging()
    log.info("log file: %s", log_file)
    warning = exposure_warning(args)
    if warning:
        log.warning(warning)
    from . import folders
    from .layout import build_app
    folders.set_listening(args.listen)      # a batch then reads only the studio's own folders
    demo = build_app(build_manager(args))
    log.info("%s", loaded_backbone())
    launch(demo, host="0.0.0.0" if args.listen else LOCALHOST, port=args.port, auth=args.auth, block=True,
           queue_size=args.queue_size)
    return 0
