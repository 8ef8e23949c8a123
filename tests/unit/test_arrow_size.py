"""runtime.arrow_size: unpacked sizes read from Arrow IPC message headers, against pyarrow."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime.arrow_size import MalformedStream, unpacked_bytes
from runtime.errors import InvalidInput
from runtime.formats import arrow_loads

FUZZ = settings(deadline=None, max_examples=300, suppress_health_check=list(HealthCheck))


def _stream(batch: pa.RecordBatch, compression: str | None) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema, options=pa.ipc.IpcWriteOptions(compression=compression)) as w:
        w.write_batch(batch)
    return sink.getvalue().to_pybytes()


def _batch(rows: int) -> pa.RecordBatch:
    rng = np.random.default_rng(rows)
    return pa.record_batch(
        [
            pa.array(rng.standard_normal(rows).astype(np.float32)),
            pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(rows * 4, np.int64)), 4),
            pa.array([None if i % 3 else f"s{i}" for i in range(rows)]),
            pa.array(["a", "b"] * (rows // 2) + ["a"] * (rows % 2)).dictionary_encode(),
        ],
        names=["f", "l", "s", "d"],
    )


def _buffer_sizes(batch: pa.RecordBatch) -> int:
    """What pyarrow itself says the batch's buffers hold, dictionary included."""
    total = 0
    for column in batch.columns:
        for b in column.buffers():
            total += 0 if b is None else b.size
        if pa.types.is_dictionary(column.type):
            total += sum(0 if b is None else b.size for b in column.dictionary.buffers())
    return total


@pytest.mark.parametrize("rows", [1, 7, 1000])
def test_every_codec_gives_the_same_unpacked_size(rows: int) -> None:
    batch = _batch(rows)
    sizes = {c: unpacked_bytes(_stream(batch, c)) for c in (None, "lz4", "zstd")}
    assert len(set(sizes.values())) == 1, sizes
    # The writer pads buffers to 8 bytes; the headers give the sizes it wrote.
    assert _buffer_sizes(batch) <= sizes[None] <= _buffer_sizes(batch) + 8 * 16


def test_an_empty_stream_unpacks_to_nothing() -> None:
    assert unpacked_bytes(b"") == 0
    assert unpacked_bytes(b"\xff\xff\xff\xff\x00\x00\x00\x00") == 0


def test_a_compression_bomb_is_refused_before_it_is_read() -> None:
    bomb = _stream(pa.record_batch([pa.array(np.zeros(30_000_000, np.float32))], names=["x"]), "zstd")
    assert len(bomb) < 50_000
    assert unpacked_bytes(bomb) == 120_000_000
    with pytest.raises(InvalidInput, match="unpacks to 120000000 bytes"):
        arrow_loads(bomb, "request")


def test_compressible_requests_within_the_limit_are_read() -> None:
    batch = pa.record_batch([pa.array(np.zeros(1_000_000, np.float32))], names=["x"])
    got, _ = arrow_loads(_stream(batch, "zstd"), "request")
    assert got.equals(batch)


@FUZZ
@given(st.binary(max_size=600))
def test_random_bytes_are_sized_or_refused(data: bytes) -> None:
    try:
        assert unpacked_bytes(data) >= 0
    except MalformedStream:
        pass


@FUZZ
@given(st.data())
def test_damaged_streams_are_sized_or_refused(data: st.DataObject) -> None:
    raw = bytearray(_stream(_batch(5), data.draw(st.sampled_from([None, "lz4", "zstd"]))))
    for _ in range(data.draw(st.integers(1, 8))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    try:
        assert unpacked_bytes(bytes(raw[:cut])) >= 0
    except MalformedStream:
        pass
    with pytest.raises(InvalidInput) if cut < 8 else _anything():
        arrow_loads(bytes(raw[:cut]), "request")


class _anything:
    """Damaged streams may still read (a flipped value byte) or be refused: never crash."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: object) -> bool:
        return kind is None or issubclass(kind, InvalidInput)
