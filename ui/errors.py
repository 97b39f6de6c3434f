"""Engine and annotator errors as messages in the page, never tracebacks.

A handler wrapped in `shown` turns the exceptions a user can act on (ValueError and friends,
whose messages say what was wrong and what to do) into `gr.Error`; anything else is shown as a
short message. Every error shown is logged with its traceback (ui.app sends tracebacks to the log
file only; the console gets one line). Gradio leaves every output
as it was when a handler raises, so nothing the artist made is cleared by an error.
"""
from __future__ import annotations

import functools
import inspect
import logging

import gradio as gr

import engine

log = logging.getLogger("ui")

# Exceptions whose message is meant for the user (engine, annotators, file access, model loading).
USER_ERRORS = (ValueError, OSError, KeyError, MemoryError, engine.GenerationError)


def message(error: BaseException) -> str:
    """The text shown for an error: its own message for a user error, else a pointer to the console."""
    if isinstance(error, gr.Error):
        return str(error.message)
    text = str(error).strip() or type(error).__name__
    if isinstance(error, KeyError):
        text = f"missing value {text}"
    if isinstance(error, USER_ERRORS):
        return text
    return f"Something went wrong ({type(error).__name__}: {text.splitlines()[0][:300]}); the console has the details."


def as_page_error(error: BaseException, where: str = "handler") -> gr.Error:
    """The page's message for `error`, logged first with its cause: every message the artist
    sees can be read again, with its traceback, in the log (never on the page)."""
    shown_text = message(error)
    if isinstance(error, USER_ERRORS + (gr.Error,)):
        log.warning("shown to the user (%s): %s", where, shown_text, exc_info=error)
    else:
        log.error("%s failed: %s", where, shown_text, exc_info=error)
    if isinstance(error, gr.Error):
        return error
    return gr.Error(shown_text, print_exception=False)


def warn(text: str) -> None:
    """A warning toast on the page, logged too."""
    log.warning("warned the user: %s", text)
    gr.Warning(text)


def shown(fn):
    """Wrap a Gradio handler (function or generator) so its errors become page messages."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Exception as e:  # noqa: BLE001  (every error must reach the page as a message)
                raise as_page_error(e, fn.__qualname__) from None
        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001
            raise as_page_error(e, fn.__qualname__) from None
    return wrapper
