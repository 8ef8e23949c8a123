"""The prediction log: what an endpoint answered, request by request, as Parquet files.

Under the configured directory, one folder per model version that answered:

    <dir>/<model>/<version>/predictions-<UTC time>-<pid>-<seq>.parquet   closed: complete
    <dir>/<model>/<version>/predictions-<UTC time>-<pid>-<seq>.arrows    open: being written

One log row per row of a request (a request of 8 rows gives 8 log rows with its id):

    id          string               the request's id: the client's, or the one the server
                                     assigned and returned in the answer's "id"
    row         int32                the row's index within its request
    time        timestamp[us, UTC]   when the answer was handed to the transport
    endpoint    string
    model       string               the variant (or shadow) that answered
    version     string
    role        string               "primary" (the answer the client got) or "shadow"
    latency_s   float64              primary: arrival to answer; shadow: copy to answer
    input.<n>   per input n: the row's value, or a fixed-size list when a row holds several
    output.<n>  per output, likewise

Why two formats: a Parquet file is readable only once its footer is written, so the open
file is an Arrow IPC stream, readable up to its last complete batch. Batches are written
every `flush_s` (or sooner under load), so a crash of the process loses at most what
arrived since the last flush, never a closed file. A file is closed when it reaches
`rotate_mb` or `rotate_s`, converted to Parquet under a temporary name and renamed. At
start, open files left by a process that is gone are converted the same way.

The serving path pays one tuple and one queue put per logged request: the writer thread
builds the columns and does all the I/O. At most `queue` rows wait for it; past that (a
disk slower than the traffic) requests are not logged and are counted in `dropped`.
"""

from __future__ import annotations

import logging
import os
import queue as queues
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import ConfigError
from .settings import count, positive, share
from .throttle import Throttle

__all__ = ["PredictionLog", "read_log"]

log = logging.getLogger("mlrt.traffic")

_STOP = object()
# Rows gathered before the writer builds a batch, whatever flush_s says: keeps a batch's
# column building (which holds the GIL) short.
_BATCH_ROWS = 4096


@dataclass(slots=True)
class _Record:
    id: str
    time: float
    model: str
    version: str
    role: str
    latency_s: float
    inputs: Mapping[str, np.ndarray]
    outputs: Mapping[str, np.ndarray]
    rows: int


class _Open:
    """One model version's open IPC stream."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.path = path
        self.schema = schema
        self.sink = pa.OSFile(str(path), "wb")
        self.writer = pa.ipc.new_stream(self.sink, schema)
        self.opened = time.monotonic()

    def write(self, batch: pa.RecordBatch) -> None:
        self.writer.write_batch(batch)

    def size(self) -> int:
        return int(self.sink.tell())

    def close(self) -> None:
        try:
            self.writer.close()
        finally:
            self.sink.close()


def _column(parts: list[np.ndarray]) -> pa.Array:
    """Per-request arrays (rows first) as one column: scalars, or fixed-size lists."""
    whole = np.concatenate(parts) if len(parts) > 1 else parts[0]
    width = int(np.prod(whole.shape[1:])) if whole.ndim > 1 else 0
    flat = whole.reshape(-1)
    values = pa.array(flat if flat.dtype != object else flat.tolist())
    return values if whole.ndim == 1 else pa.FixedSizeListArray.from_arrays(values, width)


def _batch(endpoint: str, records: list[_Record]) -> pa.RecordBatch:
    counts = np.fromiter((r.rows for r in records), np.int64, len(records))
    total = int(counts.sum())
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    times = np.repeat(np.fromiter((r.time for r in records), np.float64, len(records)), counts)

    # Per-request strings repeated per row by Arrow, not through a Python list of every row.
    rows_of = None if total == len(records) else pa.array(np.repeat(np.arange(len(records)), counts))

    def per_row(values: list[str]) -> pa.Array:
        column = pa.array(values, pa.string())
        return column if rows_of is None else column.take(rows_of)

    def same(value: str) -> pa.Array:
        return pa.repeat(pa.scalar(value, pa.string()), total)

    cols: dict[str, pa.Array] = {
        "id": per_row([r.id for r in records]),
        "row": pa.array((np.arange(total) - starts).astype(np.int32)),
        "time": pa.array((times * 1e6).astype(np.int64), pa.timestamp("us", tz="UTC")),
        "endpoint": same(endpoint),
        "model": same(records[0].model),
        "version": same(records[0].version),
        "role": per_row([r.role for r in records]),
        "latency_s": pa.array(np.repeat(np.fromiter((r.latency_s for r in records), np.float64), counts)),
    }
    for prefix, attr in (("input.", "inputs"), ("output.", "outputs")):
        for name in getattr(records[0], attr):
            cols[prefix + name] = _column([getattr(r, attr)[name] for r in records])
    return pa.RecordBatch.from_pydict(cols)


def _read_stream(path: Path) -> pa.Table | None:
    """The complete batches of an IPC stream, however its tail was cut; None when not even
    the schema made it to disk."""
    try:
        with pa.OSFile(str(path), "rb") as src:
            try:
                reader = pa.ipc.open_stream(src)
            except (pa.ArrowInvalid, OSError):
                return None
            batches = []
            while True:
                try:
                    batches.append(reader.read_next_batch())
                except StopIteration:
                    break
                except (pa.ArrowInvalid, OSError):  # a batch cut short by a crash
                    break
            return pa.Table.from_batches(batches, reader.schema)
    except FileNotFoundError:
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_log(directory: str | os.PathLike[str]) -> pa.Table:
    """Every closed file of a prediction log (all models, all versions) as one table.
    Columns that only some models have are null for the others' rows."""
    files = sorted(Path(directory).rglob("predictions-*.parquet"))
    if not files:
        raise FileNotFoundError(f"{directory}: no closed prediction log files (predictions-*.parquet)")
    return pa.concat_tables([pq.read_table(f) for f in files], promote_options="permissive")


class PredictionLog:
    """One endpoint's prediction log: bounded, sampled, written by a thread of its own."""

    def __init__(
        self,
        endpoint: str,
        dir: str,
        *,
        sample: float = 1.0,
        rotate_mb: float = 64.0,
        rotate_s: float = 3600.0,
        flush_s: float = 1.0,
        queue: int = 65536,
    ) -> None:
        where = f"endpoint {endpoint!r}, log"
        if not isinstance(dir, str) or not dir:
            raise ConfigError(f"{where}: dir must be a directory path")
        self.endpoint = endpoint
        self.dir = Path(dir)
        self.sample = share(where, "sample", sample)
        self.rotate_bytes = int(positive(where, "rotate_mb", rotate_mb) * 1024 * 1024)
        self.rotate_s = positive(where, "rotate_s", rotate_s)
        self.flush_s = positive(where, "flush_s", flush_s)
        self.queue = count(where, "queue (rows)", queue)
        self.dropped = 0  # rows not logged: the writer was `queue` rows behind (event loop's count)
        self.written = 0  # rows in the log's files (writer's count)
        self.lost = 0  # rows the writer failed to write (disk full, permissions)
        self.files = 0  # closed Parquet files
        self._enqueued = 0  # rows handed to the writer (event loop's count)
        self._handled = 0  # rows the writer is done with, written or lost (writer's count)
        self._q: queues.SimpleQueue[Any] = queues.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._open: dict[tuple[str, str], _Open] = {}
        self._seq = 0
        self._errors = Throttle()

    # -- the event loop's side -------------------------------------------------------

    def offer(
        self,
        rid: str,
        model: str,
        version: str,
        inputs: Mapping[str, np.ndarray],
        outputs: Mapping[str, np.ndarray],
        latency_s: float,
        role: str = "primary",
    ) -> None:
        """Log one answered request (sampled; dropped and counted when the writer lags)."""
        if self.sample < 1.0 and random.random() >= self.sample:
            return
        rows = len(next(iter(outputs.values()))) if outputs else 0
        if rows == 0:
            return
        if self._enqueued - self._handled + rows > self.queue:
            self.dropped += rows
            return
        self._enqueued += rows
        self._q.put(_Record(rid, time.time(), model, version, role, latency_s, inputs, outputs, rows))

    def to_json(self) -> dict[str, object]:
        return {
            "dir": str(self.dir),
            "sample": self.sample,
            "written": self.written,
            "dropped": self.dropped,
            "lost": self.lost,
            "files": self.files,
            "pending": self._enqueued - self._handled,
        }

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        """Create the directory (a clear error now rather than lost rows later) and start
        the writer, which first converts open files left by a crashed process."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"endpoint {self.endpoint!r}: cannot create the log directory: {exc}") from None
        if not os.access(self.dir, os.W_OK):
            raise ConfigError(f"endpoint {self.endpoint!r}: the log directory {self.dir} is not writable")
        self._thread = threading.Thread(target=self._run, name=f"mlrt-log-{self.endpoint}", daemon=True)
        self._thread.start()

    def close(self, timeout_s: float = 30.0) -> None:
        """Write what is queued, close every open file as Parquet, stop the writer
        (blocking: call it off the event loop)."""
        if self._thread is None:
            return
        self._q.put(_STOP)
        self._thread.join(timeout_s)
        self._thread = None

    # -- the writer thread --------------------------------------------------------------

    def _run(self) -> None:
        self._recover()
        buffers: dict[tuple[str, str], list[_Record]] = {}
        buffered = 0
        last_flush = time.monotonic()
        while True:
            wait = max(0.0, self.flush_s - (time.monotonic() - last_flush))
            try:
                item = self._q.get(timeout=min(wait, self.rotate_s))
            except queues.Empty:
                item = None
            stop = item is _STOP
            if isinstance(item, _Record):
                buffers.setdefault((item.model, item.version), []).append(item)
                buffered += item.rows
            if stop or buffered >= _BATCH_ROWS or time.monotonic() - last_flush >= self.flush_s:
                for key, records in buffers.items():
                    if records:
                        self._write(key, records)
                buffers = {}
                buffered = 0
                last_flush = time.monotonic()
                self._rotate(force=stop)
            if stop:
                return

    def _write(self, key: tuple[str, str], records: list[_Record]) -> None:
        rows = sum(r.rows for r in records)
        try:
            batch = _batch(self.endpoint, records)
            f = self._open.get(key)
            if f is not None and not f.schema.equals(batch.schema):
                self._close(key)  # the model answered with other outputs: a file of its own
                f = None
            if f is None:
                f = self._open[key] = _Open(self._new_path(key), batch.schema)
            f.write(batch)
            self.written += rows
        except Exception as exc:
            self.lost += rows
            self._error(exc, rows)
        finally:
            self._handled += rows

    def _new_path(self, key: tuple[str, str]) -> Path:
        folder = self.dir / key[0] / key[1]
        folder.mkdir(parents=True, exist_ok=True)
        self._seq += 1
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        return folder / f"predictions-{stamp}-{os.getpid()}-{self._seq:06d}.arrows"

    def _rotate(self, force: bool) -> None:
        now = time.monotonic()
        for key, f in list(self._open.items()):
            if force or now - f.opened >= self.rotate_s or f.size() >= self.rotate_bytes:
                self._close(key)

    def _close(self, key: tuple[str, str]) -> None:
        f = self._open.pop(key)
        try:
            f.close()
            self._publish(f.path)
        except Exception as exc:
            self._error(exc, 0)

    def _publish(self, path: Path) -> None:
        """An IPC stream (complete or cut short) as a Parquet file beside it, renamed into
        place only once written."""
        table = _read_stream(path)
        if table is not None and table.num_rows:
            final = path.with_suffix(".parquet")
            tmp = final.with_name(final.name + ".tmp")
            pq.write_table(table, tmp)
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, final)
            self.files += 1
        path.unlink(missing_ok=True)

    def _recover(self) -> None:
        """Open files whose process is gone: convert what they hold."""
        for tmp in self.dir.rglob("predictions-*.parquet.tmp"):
            tmp.unlink(missing_ok=True)  # its .arrows source is still there
        for path in sorted(self.dir.rglob("predictions-*.arrows")):
            try:
                pid = int(path.stem.split("-")[2])
            except (IndexError, ValueError):
                continue
            if pid != os.getpid() and _alive(pid):
                continue  # another server's open file
            try:
                self._publish(path)
                log.info("endpoint %s: recovered the prediction log file %s", self.endpoint, path)
            except Exception as exc:
                self._error(exc, 0)

    def _error(self, exc: BaseException, rows: int) -> None:
        count = self._errors.due(rows)
        if count is not None:
            log.error(
                "endpoint %s: the prediction log lost %d rows since the last report; the last error: %s",
                self.endpoint, count, exc,
            )  # fmt: skip
