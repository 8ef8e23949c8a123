"""Text from clients cannot forge log lines: the server's formatter writes control
characters of a message as escapes, so one record is one line."""

from __future__ import annotations

import logging

from runtime.server.run import EscapingFormatter


def _format(msg: str, *args: object) -> str:
    record = logging.LogRecord("mlrt.reload", logging.ERROR, __file__, 1, msg, args, None)
    return EscapingFormatter("%(levelname)s %(name)s: %(message)s").format(record)


def test_control_characters_in_a_message_are_escaped() -> None:
    name = "x\n2026-12-05 12:00:00 INFO mlrt.server: all good\r\x00\x1b[31m\u2028end"
    line = _format("model '%s': loading failed", name)
    assert "\n" not in line and "\r" not in line and "\x00" not in line and "\x1b" not in line
    assert "\u2028" not in line
    assert line == (
        "ERROR mlrt.reload: model 'x\\n2026-12-05 12:00:00 INFO mlrt.server: all good\\r\\x00\\x1b[31m"
        "\\u2028end': loading failed"
    )


def test_plain_text_and_tracebacks_are_left_alone() -> None:
    assert (
        _format("model %s v%s: ok, \u00e9t\u00e9", "iris", "2")
        == "ERROR mlrt.reload: model iris v2: ok, \u00e9t\u00e9"
    )
    try:
        raise ValueError("boom")
    except ValueError as exc:
        record = logging.LogRecord(
            "m", logging.ERROR, __file__, 1, "failed", (), (type(exc), exc, exc.__traceback__)
        )
    text = EscapingFormatter("%(message)s").format(record)
    assert text.startswith("failed\nTraceback") and text.endswith("ValueError: boom")
