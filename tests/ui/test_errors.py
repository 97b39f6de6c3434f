import gradio as gr
import pytest

from ui.errors import shown


def test_a_user_error_becomes_its_own_message():
    @shown
    def handler():
        raise ValueError("width 70 is not a multiple of 8; try 72")

    with pytest.raises(gr.Error) as e:
        handler()
    assert e.value.message == "width 70 is not a multiple of 8; try 72"


def test_an_unexpected_error_is_named_without_a_traceback():
    @shown
    def handler():
        raise ZeroDivisionError("division by zero")

    with pytest.raises(gr.Error) as e:
        handler()
    assert "ZeroDivisionError: division by zero" in e.value.message
    assert "Traceback" not in e.value.message and "File \"" not in e.value.message


def test_generator_handlers_keep_what_they_yielded_before_the_error():
    @shown
    def handler():
        yield 1
        raise ValueError("unit 2 has no control map")

    gen = handler()
    assert next(gen) == 1
    with pytest.raises(gr.Error, match="unit 2 has no control map"):
        next(gen)


def test_a_failed_run_is_a_user_error():
    import engine

    @shown
    def handler():
        raise engine.GenerationError("out of GPU memory: lower the batch size or the image size")

    with pytest.raises(gr.Error) as e:
        handler()
    assert e.value.message == "out of GPU memory: lower the batch size or the image size"
