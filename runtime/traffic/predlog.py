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

The serving path copies each logged request's rows into columns kept for its model
version (numpy buffers of _BATCH_ROWS rows, filled in place) and appends its id, time and
latency to lists: no object per request outlives the call. The writer thread takes the
filled columns, once per `flush_s` or as soon as a buffer is full, wraps them as Arrow
arrays without copying, and does all the I/O. Why not hand the writer each request's
arrays: it then held thousands of small objects, built its columns in Python while holding
the GIL, and freed the arrays on its own thread; measured in bench.shadow at 64
connections, that cost a third of the throughput. At most `queue` rows wait for the
writer; past that (a disk slower than the traffic) requests are not logged and are
counted in `dropped`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Mapping
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

# Rows that wake the writer before flush_s is up: keeps a batch's column building (which
# holds the GIL) short, and memory bounded under heavy traffic.
_BATCH_ROWS = 4096


def sampled(rid: str, share: float) -> bool:
    """Whether the request `rid` is in the logged share: drawn from its id, not at random,
    so that its primary and shadow answers are logged together or not at all (the log
    alone then recomputes a shadow's agreement at any share)."""
    digest = hashlib.blake2b(rid.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") < share * _TWO64


_TWO64 = float(2**64)


class _Staging:
    """The rows of one model version (and role) being gathered on the event loop: the
    request-level fields as lists, the inputs and outputs as numpy buffers filled in place."""

    __slots__ = ("model", "version", "role", "capacity", "n", "ids", "times", "latencies", "counts",
                 "columns", "_slots")  # fmt: skip

    def __init__(
        self,
        model: str,
        version: str,
        role: str,
        inputs: Mapping[str, np.ndarray],
        outputs: Mapping[str, np.ndarray],
        capacity: int,
    ) -> None:
        self.model, self.version, self.role = model, version, role
        self.capacity = capacity
        self.n = 0  # rows filled
        self.ids: list[str] = []
        self.times: list[float] = []
        self.latencies: list[float] = []
        self.counts: list[int] = []
        self.columns: dict[str, np.ndarray] = {}
        # Per column, in order: its tensor's name, buffer, dtype and row shape. A request
        # that differs (another output, dtype or width) goes to a new staging, and so to a
        # batch of its own.
        self._slots: list[tuple[str, np.ndarray, np.dtype[Any], tuple[int, ...]]] = []
        for prefix, tensors in (("input.", inputs), ("output.", outputs)):
            for name, a in tensors.items():
                buffer = self.columns[prefix + name] = np.empty((capacity, *a.shape[1:]), a.dtype)
                self._slots.append((name, buffer, a.dtype, a.shape[1:]))

    def put(
        self,
        rid: str,
        now: float,
        latency_s: float,
        inputs: Mapping[str, np.ndarray],
        outputs: Mapping[str, np.ndarray],
        rows: int,
    ) -> bool:
        """Copy one request's rows in; False (and nothing counted) when they do not fit.
        One pass that checks and copies: this runs for every logged request, on the loop."""
        n = self.n
        end = n + rows
        slots = self._slots
        if end > self.capacity or len(inputs) + len(outputs) != len(slots):
            return False
        i = 0
        for tensors in (inputs, outputs):
            for name, a in tensors.items():
                want, buffer, dtype, shape = slots[i]
                # numpy would broadcast or cast silently: check what it would not.
                if name != want or len(a) != rows or (a.dtype is not dtype and a.dtype != dtype):
                    return False
                if shape and a.shape[1:] != shape:
                    return False
                buffer[n:end] = a  # rows past self.n: a refused request leaves no trace
                i += 1
        self.n = end
        self.ids.append(rid)
        self.times.append(now)
        self.latencies.append(latency_s)
        self.counts.append(rows)
        return True


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


def _column(filled: np.ndarray) -> pa.Array:
    """A filled buffer as an Arrow column (zero-copy for numbers): scalars, or fixed-size
    lists when a row holds several values."""
    flat = filled.reshape(-1)
    values = pa.array(flat if flat.dtype != object else flat.tolist())
    if filled.ndim == 1:
        return values
    return pa.FixedSizeListArray.from_arrays(values, int(np.prod(filled.shape[1:])))


def _batch(endpoint: str, st: _Staging) -> pa.RecordBatch:
    n, requests = st.n, len(st.counts)
    counts = np.asarray(st.counts, np.int64)
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    # Per-request values repeated per row by Arrow, not through Python lists of every row.
    rows_of = None if n == requests else pa.array(np.repeat(np.arange(requests), counts))

    def per_row(column: pa.Array) -> pa.Array:
        return column if rows_of is None else column.take(rows_of)

    def same(value: str) -> pa.Array:
        return pa.repeat(pa.scalar(value, pa.string()), n)

    times = (np.asarray(st.times) * 1e6).astype(np.int64)
    cols: dict[str, pa.Array] = {
        "id": per_row(pa.array(st.ids, pa.string())),
        "row": pa.array((np.arange(n) - starts).astype(np.int32)),
        "time": per_row(pa.array(times, pa.timestamp("us", tz="UTC"))),
        "endpoint": same(endpoint),
        "model": same(st.model),
        "version": same(st.version),
        "role": same(st.role),
        "latency_s": per_row(pa.array(np.asarray(st.latencies, np.float64))),
    }
    for name, buffer in st.columns.items():
        cols[name] = _column(buffer[:n])
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


def read_log(directory: str | os.PathLike[str], *, open_files: bool = True) -> pa.Table:
    """Every file of a prediction log (all models, all versions) as one table: the closed
    Parquet files and, with `open_files`, the ones a running server is still writing (their
    rows up to its last flush, every `flush_s`): a log reads before its first rotation
    (`rotate_s`, an hour by default). Columns that only some models have are null for the
    others' rows."""
    root = Path(directory)
    # The open files first, then the closed ones: a file closed meanwhile is then found as
    # Parquet (complete) and its stream's rows are dropped, never counted twice or lost.
    streams = sorted(root.rglob("predictions-*.arrows")) if open_files else []
    open_tables = [(path, _read_stream(path)) for path in streams]
    files = sorted(root.rglob("predictions-*.parquet"))
    closed = set(files)
    tables = [pq.read_table(f) for f in files]
    for path, table in open_tables:
        if table is not None and table.num_rows and path.with_suffix(".parquet") not in closed:
            tables.append(table)
    if not tables:
        raise FileNotFoundError(f"{directory}: no prediction log files (predictions-*.parquet, *.arrows)")
    return pa.concat_tables(tables, promote_options="permissive")


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
        # Rows being gathered, per (model, version, role), and those full and waiting for the
        # writer; the lock is held for a handful of operations by either side.
        self._staging: dict[tuple[str, str, str], _Staging] = {}
        self._full: list[_Staging] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
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
        if self.sample < 1.0 and not sampled(rid, self.sample):
            return
        rows = len(next(iter(outputs.values()))) if outputs else 0
        if rows == 0:
            return
        if self._enqueued - self._handled + rows > self.queue:
            self.dropped += rows
            return
        key = (model, version, role)
        with self._lock:
            now = time.time()
            st = self._staging.get(key)
            if st is None or not st.put(rid, now, latency_s, inputs, outputs, rows):
                if st is not None:
                    self._full.append(self._staging.pop(key))
                st = _Staging(model, version, role, inputs, outputs, max(_BATCH_ROWS, rows))
                if not st.put(rid, now, latency_s, inputs, outputs, rows):
                    # Inputs and outputs of different row counts: not a table of rows.
                    self.lost += rows
                    self._error(ValueError(f"{model} {version}: inputs and outputs differ in rows"), rows)
                    return
                self._staging[key] = st
            self._enqueued += rows
            if st.n < st.capacity:
                return
            self._full.append(self._staging.pop(key))
        self._wake.set()  # a buffer is full: the writer takes it now, not at the next flush

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
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout_s)
        self._thread = None

    # -- the writer thread --------------------------------------------------------------

    def _run(self) -> None:
        self._recover()
        last_flush = time.monotonic()
        while True:
            self._wake.wait(max(0.0, min(self.flush_s, self.rotate_s) - (time.monotonic() - last_flush)))
            self._wake.clear()
            stop = self._stopping  # read before taking: what came before the stop is written
            flush = stop or time.monotonic() - last_flush >= self.flush_s
            with self._lock:
                ready, self._full = self._full, []
                if flush:  # partly filled buffers too, at least once per flush_s
                    ready += self._staging.values()
                    self._staging = {}
            for st in ready:
                self._write((st.model, st.version), st)
            if flush:
                last_flush = time.monotonic()
                self._rotate(force=stop)
            if stop:
                return

    def _write(self, key: tuple[str, str], st: _Staging) -> None:
        rows = st.n
        try:
            batch = _batch(self.endpoint, st)
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
