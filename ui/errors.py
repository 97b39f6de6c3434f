"""Engine and annotator errors as messages in the page, never tracebacks.

A handler wrapped in `shown` turns the exceptions a user can act on (ValueError and friends,
whose messages say what was wrong and what to do) into `gr.Error`; anything else is logged
with its traceback on the console and shown as a short message. Gradio leaves every output
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


def as_page_error(error: BaseException) -> gr.Error:
    if isinstance(error, gr.Error):
        return error
    if not isinstance(error, USER_ERRORS):
        log.error("handler failed", exc_info=error)
    return gr.Error(message(error), print_exception=False)


def shown(fn):
    """Wrap a Gradio handler (function or generator) so its errors become page messages."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Exception as e:  # noqa: BLE001  (every error must reach the page as a message)
                raise as_page_error(e) from None
        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001
            raise as_page_error(e) from None
    return wrapper
