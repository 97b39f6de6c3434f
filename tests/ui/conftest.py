import pytest


@pytest.fixture(scope="session")
def studio():
    """The studio started as `launch.py` starts it, on a free localhost port (shared by the session)."""
    from tests.ui.studio_server import shared
    return shared()


@pytest.fixture()
def tiny_default(monkeypatch, tiny_manager):
    """The engine's default model manager replaced by the tiny one ("tiny" backbone, "cn0".."cn2")."""
    import engine.manager
    monkeypatch.setattr(engine.manager, "_default", tiny_manager)
    return tiny_manager
