"""The other workers of one server, as one worker of `mlrt serve --workers N` sees them.

Every worker answers on a private Unix socket in the server's run directory
(`worker-<i>.sock`, owner-only, made by runtime/server/workers.py) besides the shared
listeners. Through it the workers act as one server:

- a scrape of `/metrics`, and `GET .../drift`, on any worker gather every worker's
  figures (`GET /v2/_peer/snapshot`) and answer for the whole server: counters summed
  (runtime/metrics/merge.py), drift counts summed and judged again (`SummedMonitor`);
- a change made through one worker (load, unload, an endpoint's weights) is made on the
  others too (`broadcast`);
- worker 0, the leader, does what must happen once per server: it follows registry
  aliases (and has the others load the new version), and it judges drift on the summed
  counts and tells the hooks.

Peer requests carry the server's peer token (`x-mlrt-peer`), made at start and known only
to its processes; a request without it is an ordinary request.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import mmap
import os
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np

log = logging.getLogger("mlrt.workers")

PEER_HEADER = "x-mlrt-peer"
SNAPSHOT_PATH = "/v2/_peer/snapshot"
# A peer busy with a long request still answers within this; one that does not is left out
# of the figures (and said so: mlrt_workers_answering).
PEER_TIMEOUT_S = 2.0


@dataclass
class Peers:
    """This worker's place in the server and its way to the others."""

    index: int
    count: int
    run_dir: str
    token: str
    # Memory shared with the supervisor (runtime/server/workers.py, Shared): per worker
    # slot an 8-byte restart count, then per slot the pid that last said it is serving.
    restarts: mmap.mmap | None = field(default=None, repr=False)

    @property
    def leader(self) -> bool:
        return self.index == 0

    def socket_path(self, i: int) -> str:
        return os.path.join(self.run_dir, f"worker-{i}.sock")

    def others(self) -> list[int]:
        return [i for i in range(self.count) if i != self.index]

    def restart_counts(self) -> list[int]:
        if self.restarts is None:
            return [0] * self.count
        return list(struct.unpack_from(f"<{self.count}q", self.restarts, 0))

    def restarted(self) -> bool:
        """This worker replaces one that died (the server had been serving before)."""
        return self.restart_counts()[self.index] > 0

    def mark_serving(self) -> None:
        """Tell the supervisor this worker has loaded its models and accepts requests."""
        if self.restarts is not None:
            struct.pack_into("<q", self.restarts, 8 * (self.count + self.index), os.getpid())

    def is_peer(self, headers: Any) -> bool:
        given = headers.get(PEER_HEADER, "")
        return bool(given) and hmac.compare_digest(given.encode(), self.token.encode())

    async def call(
        self, i: int, method: str, path: str, body: bytes = b"", headers: Iterable[tuple[str, str]] = ()
    ) -> tuple[int, bytes]:
        """One HTTP/1.1 request to worker `i` over its private socket: (status, body)."""
        reader, writer = await asyncio.wait_for(
            asyncio.open_unix_connection(self.socket_path(i)), PEER_TIMEOUT_S
        )
        try:
            head = [f"{method} {path} HTTP/1.1", "host: mlrt-peer", f"{PEER_HEADER}: {self.token}",
                    f"content-length: {len(body)}", "connection: close"]  # fmt: skip
            head += [f"{k}: {v}" for k, v in headers]
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
            raw = await asyncio.wait_for(reader.read(), PEER_TIMEOUT_S)
        finally:
            writer.close()
        # The routes answer with whole bodies and connection: close: read to the end.
        header, _, payload = raw.partition(b"\r\n\r\n")
        return int(header.split(b" ", 2)[1]), payload

    async def snapshots(self) -> list[dict[str, Any]]:
        """Every other worker's snapshot (those that answered in time)."""
        results = await asyncio.gather(
            *(self.call(i, "GET", SNAPSHOT_PATH) for i in self.others()), return_exceptions=True
        )
        out = []
        for i, r in zip(self.others(), results, strict=True):
            if isinstance(r, BaseException) or r[0] != 200:
                log.warning(
                    "worker %d did not answer for its figures: %s",
                    i,
                    r if isinstance(r, BaseException) else r[0],
                )
                continue
            out.append(msgpack.unpackb(r[1], strict_map_key=False))
        return out

    async def broadcast(
        self, method: str, path: str, body: bytes = b"", headers: Sequence[tuple[str, str]] = ()
    ) -> list[str]:
        """Make the same change on every other worker; what failed, one line each."""
        results = await asyncio.gather(
            *(self.call(i, method, path, body, headers) for i in self.others()), return_exceptions=True
        )
        failed = []
        for i, r in zip(self.others(), results, strict=True):
            if isinstance(r, BaseException):
                failed.append(f"worker {i}: {r!r}")
            elif r[0] >= 400:
                failed.append(f"worker {i}: HTTP {r[0]} {r[1][:200].decode('utf-8', 'replace')}")
        for line in failed:
            log.error("%s %s was not applied on %s", method, path, line)
        return failed


def pack_counts(counts: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, list[bytes]]:
    return {s: [w.astype("<i8").tobytes(), t.astype("<i8").tobytes()] for s, (w, t) in counts.items()}


def unpack_counts(packed: dict[str, list[bytes]]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {s: (np.frombuffer(w, "<i8"), np.frombuffer(t, "<i8")) for s, (w, t) in packed.items()}


def drift_key(model: str, version: str) -> str:
    return f"{model}\x00{version}"
