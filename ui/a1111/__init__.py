"""AUTOMATIC1111's HTTP API with the ControlNet extension's units, on the studio's own server:
/sdapi/v1/* (sdapi.py) and /controlnet/* (controlnet.py). Payloads (schema.py) map onto the one
GenerationRequest (mapping.py, names.py); every generation waits in the queue the GUI and
Gradio's API share (ui/jobs.py). `mount(app, auth)` adds the routes to Gradio's FastAPI app."""
from __future__ import annotations

from . import controlnet, sdapi
from .http import Guard, route


def mount(app, auth: tuple[str, str] | list | None = None) -> None:
    """Register every route on `app` (Gradio's, after launch), behind HTTP basic `auth` when given."""
    guard = Guard(auth)
    for method, path, work, body in (*sdapi.ROUTES, *controlnet.ROUTES):
        model = body if isinstance(body, type) else None
        app.add_api_route(path, route(guard, work, model, body=body == "json"), methods=[method],
                          name=path.strip("/").replace("/", "_"), tags=["AUTOMATIC1111 API"],
                          openapi_extra=_schema(model))


def _schema(model) -> dict | None:
    if model is None:
        return None
    return {"requestBody": {"content": {"application/json": {"schema": model.model_json_schema()}},
                            "required": True}}
