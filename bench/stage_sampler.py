"""Run `mlrt ARGS...` with a CPU-time stack sampler inside, for bench.stages.

    python -m bench.stage_sampler OUT.json [--hz 2000] -- serve MODEL ...

Why not py-spy: on this 2-core VM its samples follow the scheduler. py-spy wakes on a
wall-clock timer, and a sampler woken by the same wake-ups the server causes (a socket
write waking the client) catches the server in its writes far more often than they cost:
it put 48-65% of the server's samples in the socket write, where `perf` (kernel time 16%
of the process in all) shows that cannot be. This sampler is driven by the process's own
CPU time instead (ITIMER_PROF: user + system time, every thread, counted by the kernel), so
each sample stands for the same CPU time wherever it lands.

Python runs a signal handler at the next bytecode boundary of the main thread, so time in C
(onnxruntime, the socket write, orjson) is charged to the Python line that called it, which
is the stage that asked for it; time in uvloop's own C loop between callbacks (epoll, the
socket read, httptools' parser) is charged to the first Python callback after it, named in
bench.stages' "parse" and "loop" rows. Each sample records the main thread's stack as
(file, function) pairs, innermost first; SIGUSR1 writes the counts so far to OUT.json and
starts over, so one server can be profiled at several loads.
"""

from __future__ import annotations

import collections
import json
import signal
import sys
from types import FrameType

_counts: collections.Counter[tuple[tuple[str, str], ...]] = collections.Counter()
_samples = 0
#: Innermost frames kept per sample: enough to reach the transport's callback from any
#: stage (the deepest stage, a model run from the batcher, is about 12 below it).
DEPTH = 24


def _sample(signum: int, frame: FrameType | None) -> None:
    global _samples
    _samples += 1
    stack = []
    f = frame
    while f is not None and len(stack) < DEPTH:
        code = f.f_code
        stack.append((code.co_filename, code.co_qualname))
        f = f.f_back
    _counts[tuple(stack)] += 1


def _dump(path: str) -> None:
    global _samples
    rows = [{"stack": [list(fr) for fr in stack], "n": n} for stack, n in _counts.items()]
    with open(path, "w") as out:
        json.dump({"samples": _samples, "stacks": rows}, out)
    _counts.clear()
    _samples = 0


def main(argv: list[str]) -> int:
    if "--" not in argv:
        print(__doc__, file=sys.stderr)
        return 2
    cut = argv.index("--")
    opts, args = argv[:cut], argv[cut + 1 :]
    out = opts[0]
    hz = int(opts[opts.index("--hz") + 1]) if "--hz" in opts else 2000
    signal.signal(signal.SIGPROF, _sample)
    signal.signal(signal.SIGUSR1, lambda *_: _dump(out))
    signal.setitimer(signal.ITIMER_PROF, 1 / hz, 1 / hz)
    from runtime.cli import main as mlrt_main

    sys.argv = ["mlrt", *args]
    return mlrt_main()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
