"""Mutated inputs for the compiled readers' fuzz tests: a well-formed message with a few bytes
changed, where the readers' corner cases (a broken delimiter, a stray quote) live."""

from __future__ import annotations

from hypothesis import strategies as st


def mutate(data: st.DataObject, raw: bytes, byte: st.SearchStrategy[int]) -> bytes:
    """`raw` with one to three bytes flipped to, or inserted as, a `byte`, or deleted, at
    places hypothesis draws."""
    out = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(out) - 1))
        edit = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        value = data.draw(byte)
        if edit == "flip":
            out[at] = value
        elif edit == "insert":
            out.insert(at, value)
        elif len(out) > 1:
            del out[at]
    return bytes(out)
