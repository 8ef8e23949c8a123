"""Run `mlrt ARGS...` with a CPU-time stack sampler inside it, for bench.stages.

    python -m bench.stage_sampler OUT.json [--root DIR] [--hz 1000] -- serve MODEL ...

Why not py-spy: on a 2-core VM its samples follow the scheduler. py-spy wakes on a
wall-clock timer, and woken by the very wake-ups the server causes (a socket write waking
the client), it catches the server in its writes far more often than they cost: it put
48-65% of the server's samples in the socket write at concurrency 1, where `perf` puts
all of the process's kernel time at 16-35%. This sampler is driven by the process's own
CPU time instead (ITIMER_PROF: user and system time of every thread, as the kernel counts
it, at its tick: 250 Hz on most kernels, whatever --hz asks above that), so every sample
stands for the same CPU time wherever it lands.

Python runs a signal handler at the next bytecode boundary of the main thread, so time in C
(onnxruntime, the socket write, orjson) is charged to the Python frame that called it, the
stage that asked for it; time in uvloop's C loop between callbacks (epoll, the socket read,
httptools' parser) is charged to the first Python frame after it, which bench.stages names.
CPU time of other threads (a batch run on an executor thread) lands on whatever the main
thread runs then. Each sample records the main thread's stack as (file, function) pairs,
innermost first. Garbage collections are timed by generation through `gc.callbacks`.
SIGUSR1 writes everything so far to OUT.json and starts over, so one server can be
profiled at several loads.

`--root DIR` imports `runtime` from another checkout (built in place), as bench.ab does, so
the same profile can be taken of an earlier commit.
"""

from __future__ import annotations

import collections
import gc
import json
import os
import signal
import sys
import time
from types import FrameType
from typing import Any

#: Innermost frames kept per sample: enough to reach the transport's callback from any
#: stage (the deepest, a model run from the batcher, is about 12 below it).
DEPTH = 24

_stacks: collections.Counter[tuple[tuple[str, str], ...]] = collections.Counter()
_samples = 0
#: Collections by generation: [count, seconds in all, longest seconds].
_collections: dict[int, list[float]] = {}
_collection_began = 0.0


def _sample(signum: int, frame: FrameType | None) -> None:
    global _samples
    _samples += 1
    stack = []
    f = frame
    while f is not None and len(stack) < DEPTH:
        code = f.f_code
        stack.append((code.co_filename, code.co_qualname))
        f = f.f_back
    _stacks[tuple(stack)] += 1


def _collecting(phase: str, info: dict[str, Any]) -> None:
    global _collection_began
    if phase == "start":
        _collection_began = time.perf_counter()
        return
    took = time.perf_counter() - _collection_began
    row = _collections.setdefault(info["generation"], [0, 0.0, 0.0])
    row[0] += 1
    row[1] += took
    row[2] = max(row[2], took)


def _dump(path: str) -> None:
    global _samples
    # The sampling handler can run between any two bytecodes of this one: take the counts
    # with single C-level calls first, then build the file from the copies.
    stacks, collections_, samples = list(_stacks.items()), list(_collections.items()), _samples
    _stacks.clear()
    _collections.clear()
    _samples = 0
    doc = {
        "samples": samples,
        "stacks": [{"stack": [list(f) for f in stack], "n": n} for stack, n in stacks],
        "gc": {str(g): {"count": int(c), "seconds": t, "longest_s": m} for g, (c, t, m) in collections_},
    }
    with open(path + ".part", "w") as out:
        json.dump(doc, out)
    os.replace(path + ".part", path)  # appears whole


def main(argv: list[str]) -> int:
    if "--" not in argv or not argv[0] or argv[0].startswith("-"):
        print(__doc__, file=sys.stderr)
        return 2
    cut = argv.index("--")
    opts, args = argv[:cut], argv[cut + 1 :]
    out = opts[0]
    hz = int(opts[opts.index("--hz") + 1]) if "--hz" in opts else 1000
    if "--root" in opts:
        root = opts[opts.index("--root") + 1]
        sys.path.insert(0, root)
        import runtime

        if not runtime.__file__.startswith(root):
            raise SystemExit(f"runtime came from {runtime.__file__}, not {root}")
    from runtime.cli import main as mlrt_main

    signal.signal(signal.SIGPROF, _sample)
    signal.signal(signal.SIGUSR1, lambda *_: _dump(out))
    gc.callbacks.append(_collecting)
    signal.setitimer(signal.ITIMER_PROF, 1 / hz, 1 / hz)
    return mlrt_main(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
