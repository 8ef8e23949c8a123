"""The whole server's figures when it runs as several workers (runtime/server/peers.py).

A worker's snapshot is its metric families (without drift) and, per monitored model
version, its drift counts. The worker asked for /metrics or a drift report gathers
its own and the others' snapshots and answers from their sum.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

import msgpack
import orjson
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from ..metrics.drift import DriftCollector
from ..metrics.merge import Families, merge, to_wire
from ..monitor.fleet import SummedMonitor
from ..repository import LoadedModel, Repository
from .peers import Peers, drift_key, pack_counts, unpack_counts

log = logging.getLogger("mlrt.workers")


def snapshot(repo: Repository, peers: Peers) -> dict[str, Any]:
    """This worker's figures. Its registry holds no drift families in a multi-worker server:
    drift is summed from counts, never from PSIs."""
    drift = {
        drift_key(e.model.name, e.model.version): pack_counts(e.monitor.section_counts())
        for e in repo.entries()
        if e.monitor is not None
    }
    return {"worker": peers.index, "families": to_wire(repo.metrics.registry.collect()), "drift": drift}


def snapshot_bytes(repo: Repository, peers: Peers) -> bytes:
    return msgpack.packb(snapshot(repo, peers))  # type: ignore[no-any-return]


async def gather(repo: Repository, peers: Peers) -> list[dict[str, Any]]:
    """Every answering worker's snapshot, this one's first."""
    own = snapshot(repo, peers)
    return [own, *await peers.snapshots()]


def summed(entry: LoadedModel, snapshots: list[dict[str, Any]]) -> SummedMonitor:
    """`entry`'s drift over the traffic of every worker that serves the same version."""
    assert entry.monitor is not None
    key = drift_key(entry.model.name, entry.model.version)
    parts = [unpack_counts(s["drift"][key]) for s in snapshots if key in s["drift"]]
    return SummedMonitor(entry.monitor, parts)


async def summed_monitors(repo: Repository, peers: Peers) -> list[SummedMonitor]:
    snaps = await gather(repo, peers)
    return [summed(e, snaps) for e in repo.entries() if e.monitor is not None]


def _worker_families(peers: Peers, snaps: list[dict[str, Any]]) -> list[Any]:
    configured = GaugeMetricFamily("mlrt_workers", "Worker processes the server runs (--workers)")
    configured.add_metric([], peers.count)
    answering = GaugeMetricFamily(
        "mlrt_workers_answering", "Workers whose figures this scrape includes (all of them, normally)"
    )
    answering.add_metric([], len(snaps))
    restarts = CounterMetricFamily(
        "mlrt_worker_restarts", "Worker processes that died and were started again", labels=["worker"]
    )
    for i, n in enumerate(peers.restart_counts()):
        restarts.add_metric([str(i)], n)
    requests = CounterMetricFamily(
        "mlrt_worker_requests", "Infer requests answered by each worker since it started", labels=["worker"]
    )
    for s in sorted(snaps, key=lambda s: s["worker"]):
        total = sum(
            value
            for name, _, _, _, samples in s["families"]
            if name == "mlrt_requests"
            for sample, _, value in samples
            if sample == "mlrt_requests_total"
        )
        requests.add_metric([str(s["worker"])], total)
    return [configured, answering, restarts, requests]


def merge_families(snaps: list[dict[str, Any]]) -> list[Any]:
    """The workers' metric families, merged (without drift: see `summed`)."""
    return merge([s["families"] for s in snaps])


async def metrics_text(repo: Repository, peers: Peers) -> bytes:
    """/metrics for the whole server."""
    snaps = await gather(repo, peers)
    monitors = [summed(e, snaps) for e in repo.entries() if e.monitor is not None]
    families = merge_families(snaps)
    families += DriftCollector(lambda: monitors).collect()
    families += _worker_families(peers, snaps)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Families(families))
    return generate_latest(registry)


async def catch_up(state: Any) -> None:
    """A worker started again after a crash: take the changes made through the API since the
    server started (models loaded, unloaded or swapped, endpoint weights) from another worker,
    so that it serves what the others serve, not what the configuration said at start."""
    peers: Peers = state.peers
    for i in peers.others():
        try:
            status, body = await peers.call(i, "GET", "/v2/repository/index")
            if status != 200:
                continue
            index = orjson.loads(body)
            weights = {}
            for name in state.router.endpoints:
                status, body = await peers.call(i, "GET", f"/v2/endpoints/{quote(name, safe='')}")
                if status == 200:
                    weights[name] = {v["model"]: v["weight"] for v in orjson.loads(body)["variants"]}
        except (OSError, TimeoutError, ValueError, KeyError) as exc:
            log.warning("worker %d: cannot catch up from worker %d: %s", peers.index, i, exc)
            continue
        await _follow(state, index)
        for name, w in weights.items():
            state.router.endpoints[name].set_weights(w)
        log.info("worker %d: caught up with worker %d", peers.index, i)
        return
    log.warning("worker %d: no other worker answered; serving as configured", peers.index)


async def _follow(state: Any, index: list[dict[str, Any]]) -> None:
    """Load, swap or unload models until this worker serves what `index` (another worker's
    repository index) lists."""
    repo, reloader = state.repository, state.reloader
    theirs = {m["name"]: m for m in index}
    for name, m in theirs.items():
        ours = repo.models.get(name, {})
        try:
            if m["reason"] == "unloaded":
                if ours:
                    await reloader.unload(name)
            elif m["version"] not in ours:
                await reloader.reload(name)
        except Exception as exc:  # logged by the reloader; this worker keeps what it has
            log.warning("worker %d: model %r not caught up: %s", state.peers.index, name, exc)
