"""A failed generation is a clear A1111-style error, and the next request works (in-process routes)."""
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import engine
from ui import jobs
from ui.a1111 import mount, sdapi


@pytest.fixture()
def client(tiny_default, monkeypatch):
    import ui.catalog
    monkeypatch.setattr(ui.catalog, "_current_backbone", "tiny")
    app = FastAPI()
    mount(app)
    return TestClient(app)


def test_out_of_memory_is_a_clear_error_and_the_next_request_runs(client, monkeypatch):
    real = engine.generate
    calls = []

    def failing_once(request, **kw):
        calls.append(request)
        if len(calls) == 1:
            raise engine.GenerationError("The GPU ran out of memory making 1 image(s); try a smaller size")
        return real(request, **kw)
    monkeypatch.setattr(sdapi.engine, "generate", failing_once)
    payload = {"steps": 1, "width": 64, "height": 64, "seed": 2}
    first = client.post("/sdapi/v1/txt2img", json=payload)
    assert first.status_code == 500
    assert first.json()["error"] == "GenerationError" and "out of memory" in first.json()["errors"]
    assert jobs.current() is None and jobs.QUEUE.waiting == 0      # the queue was let go
    second = client.post("/sdapi/v1/txt2img", json=payload)
    assert second.status_code == 200 and len(second.json()["images"]) == 1


def test_an_unexpected_failure_is_json_without_a_traceback(client, monkeypatch):
    def broken(request, **kw):
        raise RuntimeError("something deep broke")
    monkeypatch.setattr(sdapi.engine, "generate", broken)
    r = client.post("/sdapi/v1/txt2img", json={"steps": 1, "width": 64, "height": 64})
    assert r.status_code == 500 and set(r.json()) == {"error", "detail", "body", "errors"}
    assert "something deep broke" in r.json()["errors"] and "Traceback" not in r.text
