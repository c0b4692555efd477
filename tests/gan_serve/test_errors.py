"""`first_line`: an exception as the one line our messages quote."""

from __future__ import annotations

from gan_serve.errors import first_line


def test_first_line_is_the_first_line_of_the_text_cut_to_the_limit():
    exc = RuntimeError("  [ONNXRuntimeError] : 2 : INVALID_ARGUMENT\n  at node conv1\n")
    assert first_line(exc) == "[ONNXRuntimeError] : 2 : INVALID_ARGUMENT"
    assert first_line(exc, 18) == "[ONNXRuntimeError]"


def test_an_exception_without_text_is_its_type():
    assert first_line(EOFError()) == "EOFError"
    assert first_line(ValueError("  \n ")) == "ValueError"
