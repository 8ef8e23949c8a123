"""How many bytes an Arrow IPC stream's record batches take once unpacked, read from the
stream's own message headers before anything is decompressed.

Arrow IPC bodies may be LZ4- or ZSTD-compressed buffer by buffer, and pyarrow
decompresses a record batch as it reads it: a body of a few kilobytes could ask for
gigabytes. Each message starts with a flatbuffer header (Arrow's Message.fbs) listing
its body's buffers; a compressed buffer starts with its unpacked length. This reads
exactly that much of the format, bounds-checking every offset, so a request can be
refused before it costs memory. Only pure Python and struct: pyarrow exposes no size
limit for reading IPC.
"""

from __future__ import annotations

import struct

__all__ = ["MalformedStream", "unpacked_bytes"]

_CONTINUATION = -1
_RECORD_BATCH = 3  # MessageHeader union tags (Message.fbs)
_DICTIONARY_BATCH = 2
_I32 = struct.Struct("<i")
_U32 = struct.Struct("<I")
_U16 = struct.Struct("<H")
_I64 = struct.Struct("<q")
_U8 = struct.Struct("<B")
_BUFFER = struct.Struct("<qq")  # Buffer { offset: long; length: long }


class MalformedStream(ValueError):
    """The stream's framing or message headers do not hold together."""


def unpacked_bytes(data: bytes | memoryview) -> int:
    """The sum of the unpacked sizes of every record and dictionary batch buffer."""
    view = memoryview(data)
    total = 0
    pos = 0
    n = len(view)
    while pos + 4 <= n:
        size = _read(_I32, view, pos)
        pos += 4
        if size == _CONTINUATION:
            if pos + 4 > n:
                break
            size = _read(_I32, view, pos)
            pos += 4
        if size == 0:
            break  # end of stream
        if size < 0 or pos + size > n:
            raise MalformedStream(f"a message header of {size} bytes at byte {pos} overruns the stream")
        meta = view[pos : pos + size]
        pos += size
        header_type, header, body_length = _message(meta)
        if body_length < 0 or pos + body_length > n:
            raise MalformedStream(f"a message body of {body_length} bytes at byte {pos} overruns the stream")
        if header_type == _DICTIONARY_BATCH and header is not None:
            header = _table_field(meta, header, 1)  # DictionaryBatch.data: a RecordBatch
        if header_type in (_RECORD_BATCH, _DICTIONARY_BATCH) and header is not None:
            total += _batch_bytes(meta, header, view[pos : pos + body_length])
        pos += body_length
    return total


def _read(fmt: struct.Struct, buf: memoryview, at: int) -> int:
    if at < 0 or at + fmt.size > len(buf):
        raise MalformedStream(f"an offset ({at}) points outside a message header")
    return int(fmt.unpack_from(buf, at)[0])


def _field(buf: memoryview, table: int, index: int) -> int | None:
    """Where field `index` of the flatbuffer table at `table` is, or None when absent."""
    vtable = table - _read(_I32, buf, table)
    vtable_size = _read(_U16, buf, vtable)
    slot = 4 + 2 * index
    if slot + 2 > vtable_size:
        return None
    offset = _read(_U16, buf, vtable + slot)
    return table + offset if offset else None


def _table_field(buf: memoryview, table: int, index: int) -> int | None:
    """The table (or vector) a field of `table` refers to."""
    at = _field(buf, table, index)
    return None if at is None else at + _read(_U32, buf, at)


def _message(meta: memoryview) -> tuple[int, int | None, int]:
    """Message: (header_type, header table, bodyLength)."""
    root = _read(_U32, meta, 0)
    type_at = _field(meta, root, 1)
    header_type = 0 if type_at is None else _read(_U8, meta, type_at)
    body_at = _field(meta, root, 3)
    body_length = 0 if body_at is None else _read(_I64, meta, body_at)
    return header_type, _table_field(meta, root, 2), body_length


def _batch_bytes(meta: memoryview, batch: int, body: memoryview) -> int:
    """RecordBatch: its buffers' unpacked sizes (field 2: buffers; 3: compression)."""
    buffers = _table_field(meta, batch, 2)
    if buffers is None:
        return 0
    count = _read(_U32, meta, buffers)
    if buffers + 4 + count * _BUFFER.size > len(meta):
        raise MalformedStream(f"{count} buffers overrun the message header")
    compressed = _field(meta, batch, 3) is not None
    total = 0
    for i in range(count):
        offset, length = _BUFFER.unpack_from(meta, buffers + 4 + i * _BUFFER.size)
        if offset < 0 or length < 0 or offset + length > len(body):
            raise MalformedStream(f"buffer {i} ({offset}+{length}) lies outside its message body")
        if not compressed or length == 0:
            total += length
            continue
        # A compressed buffer: its unpacked length, or -1 where it was left as it is.
        unpacked = _read(_I64, body, offset) if length >= 8 else -2
        if unpacked < -1:
            raise MalformedStream(f"compressed buffer {i} has no valid unpacked length")
        total += length - 8 if unpacked == -1 else unpacked
    return total
