"""SIGKILL in the middle of registry writes leaves the filesystem registry consistent:
every listed version is complete and resolves, aliases point at listed versions, the audit
log reads, and the next writer is not blocked (the lock dies with its holder)."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from runtime.registry import FilesystemRegistry

pytestmark = pytest.mark.integration

WRITER = textwrap.dedent(
    """
    import sys
    from runtime.registry import FilesystemRegistry

    reg = FilesystemRegistry(sys.argv[1])
    model, profile = sys.argv[2], sys.argv[3]
    n = 0
    while True:  # until killed: register, promote, roll back, as fast as it can
        v = reg.register(model, "churn", profile=profile, params={"n": n}, description="x" * 2000)
        reg.set_alias("churn", "production", v, reason=f"promote {v}")
        if n % 3 == 2:
            reg.rollback("churn", "production", reason="back")
        n += 1
    """
)


def _check(root: Path) -> int:
    reg = FilesystemRegistry(root)
    versions = [i.version for i in reg.list_versions("churn")]
    for v in versions:
        resolved = reg.resolve(f"churn/{v}")
        assert resolved.model_path.read_bytes() == b"model bytes" * 10_000
        assert resolved.profile_path is not None and resolved.card["version"] == v
    for alias, target in reg.aliases("churn").items():
        assert target in versions, (alias, target, versions)
        assert reg.resolve(f"churn@{alias}").version == target
    reg.history("churn")  # the audit log reads
    return len(versions)


def test_sigkill_during_writes_leaves_the_registry_consistent(tmp_path: Path) -> None:
    root = tmp_path / "registry"
    model = tmp_path / "model.onnx"
    model.write_bytes(b"model bytes" * 10_000)
    profile = tmp_path / "profile.json"
    profile.write_text('{"schema": "mlrt.profile", "version": 2, "row_count": 0, "features": []}')
    rng = random.Random(0)
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    counts = [0]
    for _ in range(12):
        proc = subprocess.Popen(
            [sys.executable, str(script), str(root), str(model), str(profile)],
            cwd=Path(__file__).resolve().parents[2],
        )
        # Once it is writing (a new version is in), kill it at a random moment of its work.
        deadline = time.monotonic() + 30
        while len(list(root.glob("churn/[0-9]*"))) <= counts[-1] and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.random() * 0.3)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        counts.append(_check(root))
    assert all(b > a for a, b in zip(counts, counts[1:], strict=False)), counts  # each wrote
    # The next writer is not blocked by a lock of a dead one.
    reg = FilesystemRegistry(root)
    v = reg.register(model, "churn")
    reg.set_alias("churn", "production", v)
    assert reg.alias_target("churn", "production") == v
