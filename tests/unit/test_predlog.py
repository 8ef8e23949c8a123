"""The prediction log's writer (runtime/traffic/predlog.py) on its own: the schema, rotation
by size, the bound on what waits for the writer, and a file cut short by a crash."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from runtime.errors import ConfigError
from runtime.traffic import PredictionLog, read_log


def _offer(log: PredictionLog, i: int, rows: int = 2) -> None:
    x = np.arange(rows * 3, dtype=np.float32).reshape(rows, 3) + i
    names = np.array([f"r{i}-{j}" for j in range(rows)], dtype=object)
    outputs = {"label": np.full(rows, i % 3, np.int64), "proba": np.full((rows, 2), 0.5), "name": names}
    log.offer(f"req-{i}", "m", "1", {"x": x}, outputs, 0.001 * i)


def test_rows_schema_and_values(tmp_path: Path) -> None:
    log = PredictionLog("ep", str(tmp_path), flush_s=0.05)
    log.start()
    for i in range(10):
        _offer(log, i)
    log.close()
    assert log.written == 20 and log.files == 1 and log.dropped == 0
    table = read_log(tmp_path)
    assert table.column_names == [
        "id", "row", "time", "endpoint", "model", "version", "role", "latency_s",
        "input.x", "output.label", "output.proba", "output.name",
    ]  # fmt: skip
    assert table.schema.field("time").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("input.x").type == pa.list_(pa.float32(), 3)
    rows = table.to_pylist()
    assert [(r["id"], r["row"]) for r in rows] == [(f"req-{i}", j) for i in range(10) for j in range(2)]
    assert rows[7]["input.x"] == [3.0 + 3, 4.0 + 3, 5.0 + 3] and rows[7]["output.name"] == "r3-1"
    assert rows[7]["latency_s"] == pytest.approx(0.003) and rows[7]["role"] == "primary"
    assert all(r["model"] == "m" and r["version"] == "1" and r["endpoint"] == "ep" for r in rows)
    assert abs(rows[0]["time"].timestamp() - time.time()) < 60
    assert list(tmp_path.glob("m/1/predictions-*.parquet")) and not list(tmp_path.rglob("*.arrows"))


def test_files_rotate_by_size_and_each_closed_file_is_complete(tmp_path: Path) -> None:
    log = PredictionLog("ep", str(tmp_path), flush_s=0.01, rotate_mb=0.001)  # ~1 KB
    log.start()
    for i in range(200):
        _offer(log, i)
        if i % 20 == 0:
            time.sleep(0.03)  # let the writer flush: a file per flush or so
    log.close()
    files = sorted(tmp_path.rglob("predictions-*.parquet"))
    assert len(files) > 3 and log.files == len(files)
    assert sum(pq.read_metadata(f).num_rows for f in files) == 400


def test_rows_past_the_queue_are_dropped_and_counted(tmp_path: Path) -> None:
    log = PredictionLog("ep", str(tmp_path), queue=10)  # not started: nothing is written
    for i in range(8):
        _offer(log, i)
    assert log.dropped == 6  # 5 requests of 2 rows fit
    assert log.to_json()["pending"] == 10


def test_an_open_file_cut_short_keeps_its_complete_batches(tmp_path: Path) -> None:
    log = PredictionLog("ep", str(tmp_path), flush_s=0.01)
    log.start()
    for i in range(5):
        _offer(log, i)
    deadline = time.monotonic() + 5
    while log.written < 10:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    for i in range(5, 10):
        _offer(log, i)
    while log.written < 20:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    # As if the process died mid-write: copy the open file and cut its last bytes off.
    (open_file,) = tmp_path.rglob("*.arrows")
    data = open_file.read_bytes()
    log.close()
    for f in tmp_path.rglob("*.parquet"):
        f.unlink()
    dead = open_file.with_name(open_file.name.replace(f"-{os.getpid()}-", "-999999999-"))
    dead.write_bytes(data[:-40])
    log2 = PredictionLog("ep", str(tmp_path))
    log2.start()
    log2.close()
    table = read_log(tmp_path)
    assert table.num_rows >= 10  # the first flush's batch, at least
    assert table["id"].to_pylist()[:10] == [f"req-{i}" for i in range(5) for _ in range(2)]
    assert not list(tmp_path.rglob("*.arrows"))


def test_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="sample"):
        PredictionLog("ep", str(tmp_path), sample=2)
    with pytest.raises(ConfigError, match="queue"):
        PredictionLog("ep", str(tmp_path), queue=0)
    with pytest.raises(ConfigError, match="rotate_mb"):
        PredictionLog("ep", str(tmp_path), rotate_mb=0)
    blocked = tmp_path / "file"
    blocked.write_text("")
    with pytest.raises(ConfigError, match="cannot create the log directory"):
        PredictionLog("ep", str(blocked / "sub")).start()


def test_answers_of_another_shape_start_a_batch_of_their_own_and_nothing_is_cast(tmp_path: Path) -> None:
    """Rows are copied into buffers typed by the first answer; an answer of another dtype,
    width or set of outputs must not be cast or broadcast into them, and one whose inputs
    and outputs differ in rows is counted as lost, not written half."""
    log = PredictionLog("ep", str(tmp_path), flush_s=0.05)
    log.start()
    x = np.ones((1, 3), np.float32)
    log.offer("a", "m", "1", {"x": x}, {"y": np.array([0.25], np.float32)}, 0.1)
    log.offer("b", "m", "1", {"x": x}, {"y": np.array([0.1], np.float64)}, 0.1)  # another dtype
    log.offer("c", "m", "1", {"x": np.ones((1, 1), np.float32)}, {"y": np.array([0.5], np.float32)}, 0.1)
    log.offer("d", "m", "1", {"x": x}, {"y": np.array([0.75], np.float32), "z": np.array([1])}, 0.1)
    log.offer("e", "m", "1", {"x": np.ones((2, 3), np.float32)}, {"y": np.array([1.0], np.float32)}, 0.1)
    log.offer("f", "m", "1", {"x": x}, {"y": np.array([0.5], np.float32)}, 0.1)
    log.close()
    assert log.written == 5 and log.lost == 1  # "e": 2 rows in, 1 out
    rows = {r["id"]: r for r in read_log(tmp_path).to_pylist()}
    assert sorted(rows) == ["a", "b", "c", "d", "f"]
    assert rows["b"]["output.y"] == 0.1  # float64 kept, not rounded through float32
    assert rows["c"]["input.x"] == [1.0]  # width 1 kept, not broadcast to 3
    assert rows["d"]["output.z"] == 1 and rows["f"]["output.z"] is None
    assert [rows[k]["output.y"] for k in "acdf"] == [0.25, 0.5, 0.75, 0.5]


def test_many_requests_fill_several_buffers_in_order(tmp_path: Path) -> None:
    log = PredictionLog("ep", str(tmp_path), flush_s=0.05)
    log.start()
    for i in range(3000):
        _offer(log, i, rows=1 + i % 3)  # 6000 rows: more than one buffer
    log.close()
    table = read_log(tmp_path)
    assert log.written == table.num_rows == 6000 and log.lost == 0
    assert table["id"].to_pylist() == [f"req-{i}" for i in range(3000) for _ in range(1 + i % 3)]
    assert table["row"].to_pylist() == [j for i in range(3000) for j in range(1 + i % 3)]
    assert table["latency_s"].to_pylist()[-1] == pytest.approx(2.999)


def test_a_sampled_request_is_logged_with_every_role_or_not_at_all(tmp_path: Path) -> None:
    # Drawn at random per offer, about half of a sampled request's shadow rows had no primary
    # row to be joined with, and the log alone could not give a shadow's agreement.
    log = PredictionLog("ep", str(tmp_path), flush_s=0.05, sample=0.3)
    log.start()
    x = {"x": np.ones((1, 3), np.float32)}
    for i in range(2000):
        out = {"label": np.array([i % 2])}
        log.offer(f"req-{i}", "m", "1", x, out, 0.001)
        log.offer(f"req-{i}", "m-shadow", "1", x, out, 0.001, role="shadow")
    log.close()
    rows = read_log(tmp_path).to_pylist()
    primary = {r["id"] for r in rows if r["role"] == "primary"}
    shadow = {r["id"] for r in rows if r["role"] == "shadow"}
    assert primary == shadow
    assert 0.25 < len(primary) / 2000 < 0.35


def test_a_running_log_reads_before_its_first_rotation(tmp_path: Path) -> None:
    # The open file rotates after rotate_s (an hour): read_log found "no closed files" until
    # then. It now reads the open stream's flushed rows.
    log = PredictionLog("ep", str(tmp_path), flush_s=0.01)
    log.start()
    try:
        for i in range(5):
            _offer(log, i)
        deadline = time.monotonic() + 10
        while log.written < 10 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert list(tmp_path.rglob("*.arrows")) and not list(tmp_path.rglob("*.parquet"))
        ids = read_log(tmp_path).column("id").to_pylist()
        assert sorted(ids) == sorted(f"req-{i}" for i in range(5) for _ in range(2))
        with pytest.raises(FileNotFoundError, match="no prediction log files"):
            read_log(tmp_path, open_files=False)
    finally:
        log.close()


def test_reading_while_files_rotate_reads_no_row_twice(tmp_path: Path) -> None:
    log = PredictionLog("ep", str(tmp_path), flush_s=0.005, rotate_mb=0.002)
    log.start()
    try:
        for i in range(400):
            _offer(log, i)
            if i % 40 == 0:
                pairs = read_log(tmp_path).select(["id", "row"]).to_pylist() if i else []
                assert len(pairs) == len({(p["id"], p["row"]) for p in pairs}), "a row read twice"
                time.sleep(0.01)
    finally:
        log.close()
    assert read_log(tmp_path).num_rows == 800 and log.files > 1
