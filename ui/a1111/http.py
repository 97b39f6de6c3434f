"""What every REST route shares: HTTP basic auth (`--auth`, as A1111's `--api-auth`), a capped
request body read before any parsing, and errors as JSON the way A1111 answers them: FastAPI's
422 `{"detail": [...]}` for a payload that cannot run, `{"error", "detail", "body", "errors"}`
for anything else. No route answers with a traceback."""
from __future__ import annotations

import base64
import binascii
import json
import logging
import secrets
from typing import Any, Awaitable, Callable

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

import engine

from .mapping import PayloadError, from_validation

log = logging.getLogger("ui.a1111")

MAX_BODY_BYTES = 64 * 2**20   # as the GUI's uploads (ui/app.py's max_file_size)


def a1111_error(status: int, error: str, message: str) -> JSONResponse:
    return JSONResponse({"error": error, "detail": "", "body": "", "errors": message}, status_code=status)


def invalid(errors: list[dict]) -> JSONResponse:
    return JSONResponse({"detail": errors}, status_code=422)


class Guard:
    """The credentials the routes ask for (None: open, as on localhost without --auth)."""

    def __init__(self, auth: tuple[str, str] | list | None):
        if isinstance(auth, tuple):
            auth = [auth]
        self.users = list(auth or [])

    def refused(self, request: Request) -> JSONResponse | None:
        if not self.users:
            return None
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(token, validate=True).decode("utf-8").partition(":")
            except (binascii.Error, ValueError):
                user = password = None
            if user is not None and any(secrets.compare_digest(user.encode(), u.encode()) &
                                        secrets.compare_digest(password.encode(), p.encode()) for u, p in self.users):
                return None
        response = a1111_error(401, "Unauthorized", "this studio was started with --auth: send the user name "
                                                    "and password as HTTP basic auth")
        response.headers["WWW-Authenticate"] = "Basic"
        return response


async def read_json(request: Request) -> Any:
    """The body as JSON, refused past MAX_BODY_BYTES while it is still arriving."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise BodyTooLarge()
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise BodyTooLarge()
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body.strip():
        return None
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as e:
        raise PayloadError([{"type": "json_invalid", "loc": ["body"], "msg": f"JSON decode error: {e}",
                             "input": {}}]) from None


class BodyTooLarge(Exception):
    pass


def route(guard: Guard, work: Callable[..., Any], model: type[BaseModel] | None = None,
          body: bool = False) -> Callable[[Request], Awaitable[JSONResponse]]:
    """An endpoint: auth, then the body (validated as `model`, or raw JSON with `body`), then
    `work(payload, query)` on a worker thread (generation blocks), its errors as A1111's JSON."""
    async def endpoint(request: Request):
        refused = guard.refused(request)
        if refused is not None:
            return refused
        try:
            payload = None
            if model is not None or body:
                data = await read_json(request)
                if model is not None:
                    try:
                        payload = model.model_validate({} if data is None else data)
                    except ValidationError as e:
                        raise from_validation(e) from None
                else:
                    payload = data
            result = await run_in_threadpool(work, payload, dict(request.query_params))
            return result if isinstance(result, JSONResponse) else JSONResponse(result)
        except BodyTooLarge:
            return a1111_error(413, "PayloadTooLarge", f"the request body is larger than {MAX_BODY_BYTES // 2**20} MiB;"
                                                       " send smaller pictures")
        except PayloadError as e:
            return invalid(e.errors)
        except ValueError as e:
            return invalid([{"type": "value_error", "loc": ["body"], "msg": str(e), "input": None}])
        except engine.GenerationError as e:
            return a1111_error(500, "GenerationError", str(e))
        except (OSError, MemoryError) as e:
            log.warning("%s failed: %s", request.url.path, e)
            return a1111_error(500, type(e).__name__, str(e))
        except Exception as e:  # noqa: BLE001  (never a traceback in an answer; the log has it)
            log.error("%s failed", request.url.path, exc_info=e)
            return a1111_error(500, type(e).__name__, f"{type(e).__name__}: {str(e)[:300]}; the studio's log "
                                                      "has the details")
    return endpoint
