"""`mlrt serve --workers N`: N worker processes, one server.

The supervisor (this process) binds the listeners, then forks the workers, which inherit
them: a TCP socket per worker on the one port (SO_REUSEPORT: the kernel spreads connections
over them), and the Unix socket shared by all. The supervisor keeps them open, so the
connections queued for a worker that dies wait for its replacement. Each worker loads the
models and serves them on its own event loop (runtime/server/run.py), and reaches the
others through a private socket in the server's run directory (runtime/server/peers.py):
/metrics and drift answer for the whole server, changes are made on every worker, and
worker 0 does what must happen once.

The supervisor starts nothing else (no threads, no models) so that a fork is cheap and
safe, and:
- at start, waits until every worker is serving; if one fails to start, stops the rest
  and exits 1 (the worker said why);
- restarts a worker that dies, after a pause that doubles while restarts keep failing
  (a crash loop must not spin), and counts it (mlrt_worker_restarts_total);
- on SIGTERM or SIGINT, passes SIGTERM to every worker, which drains as one server
  does (--graceful-timeout), kills what is left after that, and exits with the worst
  worker's status.

Workers run in their own process group, so a terminal's Ctrl-C reaches the supervisor
only (a second signal would make a worker stop at once), and they get SIGTERM should the
supervisor die without stopping them.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import mmap
import os
import secrets
import shutil
import signal
import socket
import struct
import sys
import tempfile
import time
import traceback

from ..config import ServerConfig
from ..errors import MlrtError
from .peers import Peers
from .sockets import bind_all, close_all

log = logging.getLogger("mlrt.workers")

_SIGNALS = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT}
# A worker that lived this long before dying started well: its restart pause starts over.
_HEALTHY_S = 30.0
_PAUSE_S = (0.5, 30.0)  # the first restart pause, and the longest
_KILL_AFTER_S = 5.0  # past --graceful-timeout, what still runs is killed


class Shared:
    """Numbers the supervisor and its workers share: per worker slot, how many times it
    was restarted and the pid that last said it is serving (the workers' side: Peers)."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.memory = mmap.mmap(-1, 16 * count)  # anonymous and shared: forks see one copy

    def restarts(self, i: int) -> int:
        return int(struct.unpack_from("<q", self.memory, 8 * i)[0])

    def add_restart(self, i: int) -> None:
        struct.pack_into("<q", self.memory, 8 * i, self.restarts(i) + 1)

    def serving_pid(self, i: int) -> int:
        return int(struct.unpack_from("<q", self.memory, 8 * (self.count + i))[0])


def _save_coverage() -> None:
    """Save what a measuring coverage (the test suite's, `coverage run -m pytest`) saw in
    this worker: os._exit skips the atexit hook that would, so a worker's code would count
    as never run. Nothing happens when coverage is not running."""
    cov = sys.modules.get("coverage")
    current = cov.Coverage.current() if cov is not None else None
    if current is not None:
        with contextlib.suppress(Exception):
            current.stop()
            current.save()


def _die_with_parent() -> None:
    """Linux: SIGTERM this process when the supervisor goes (PR_SET_PDEATHSIG)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)


class Supervisor:
    def __init__(self, config: ServerConfig, socks: list[socket.socket], run_dir: str) -> None:
        self.config = config
        self.socks = socks
        self.run_dir = run_dir
        self.count = int(config.workers)
        self.token = secrets.token_urlsafe(24)
        self.shared = Shared(self.count)
        self.pids: dict[int, int] = {}  # pid -> worker slot
        self.born: dict[int, float] = {}  # slot -> when its current process started
        self.pause: dict[int, float] = {}  # slot -> its next restart pause
        self.due: dict[int, float] = {}  # slot -> when it is restarted
        self.codes: list[int] = []
        self._mask: set[signal.Signals] = set()
        tcp = [sock for sock in socks if sock.family != socket.AF_UNIX]
        self.port = tcp[0].getsockname()[1] if tcp else 0  # the port bound (--port 0 picks one)

    # -- one worker -------------------------------------------------------------
    def listeners(self, i: int) -> list[socket.socket]:
        """Worker i's: its own TCP socket (bind_all made one per worker), the Unix socket."""
        tcp = [s for s in self.socks if s.family != socket.AF_UNIX]
        return [*tcp[i : i + 1], *(s for s in self.socks if s.family == socket.AF_UNIX)]

    def spawn(self, i: int) -> None:
        pid = os.fork()
        if pid == 0:
            self._worker(i)  # never returns
        self.pids[pid] = i
        self.born[i] = time.monotonic()

    def _shut(self, i: int) -> None:
        """Close worker i's TCP socket while it cannot start: SO_REUSEPORT kept handing it
        its share of new connections, which waited for a worker that kept failing (up to
        the longest restart pause, again and again) while the others served. Closed, the
        kernel gives them to the other workers; what it had queued is reset, to retry."""
        tcp = [sock for sock in self.socks if sock.family != socket.AF_UNIX]
        if i < len(tcp) and tcp[i].fileno() != -1:
            tcp[i].close()
            log.warning(
                "worker %d failed before it served: its share of new connections goes to the "
                "other workers until it serves again", i,
            )  # fmt: skip

    def _reopen(self, i: int) -> None:
        """Bind worker i's TCP socket again, on the server's port, if _shut closed it."""
        from .sockets import tcp_sockets

        positions = [k for k, sock in enumerate(self.socks) if sock.family != socket.AF_UNIX]
        if i < len(positions) and self.socks[positions[i]].fileno() == -1:
            self.socks[positions[i]] = tcp_sockets(self.config.host, self.port, 1)[0]

    def _worker(self, i: int) -> None:
        code = 1
        try:
            os.setpgid(0, 0)
            _die_with_parent()
            signal.pthread_sigmask(signal.SIG_SETMASK, self._mask)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
                signal.signal(sig, signal.SIG_DFL)
            # The other workers' TCP sockets came with the fork. Held here, each kept its
            # socket listening after its own worker closed it at SIGTERM: the kernel took new
            # connections into a queue no one accepted and reset them when the last worker
            # exited, where one server refuses them at once.
            mine = self.listeners(i)
            for sock in self.socks:
                if sock not in mine:
                    sock.close()
            from .run import serve

            peers = Peers(i, self.count, self.run_dir, self.token, self.shared.memory)
            stopped = serve(self.config, listeners=self.listeners(i), peers=peers)
            code = 1 if stopped.failure else 0
            if stopped.failure:
                print(f"mlrt serve: {stopped.failure}", file=sys.stderr)
        except MlrtError as exc:
            print(f"mlrt serve: worker {i}: {exc}", file=sys.stderr)
        except BaseException:  # the worker's own end: said, never raised into the supervisor's code
            traceback.print_exc()
        finally:
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            _save_coverage()
            os._exit(code)

    # -- the server -------------------------------------------------------------
    def run(self) -> int:
        self._mask = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        try:
            for i in range(self.count):
                self.spawn(i)
            started = self._started()
            if started is None:
                log.info("stopping %d workers before all were serving", len(self.pids))
                return self._stop()
            if not started:
                self._stop()
                return 1
            log.info("%d workers serving (pids %s)", self.count, ", ".join(map(str, sorted(self.pids))))
            while True:
                if _stop_signal(signal.sigtimedwait(_SIGNALS, 0.5)):
                    log.info("stopping %d workers", len(self.pids))
                    return self._stop()
                self._reap(restart=True)
                now = time.monotonic()
                for i, at in list(self.due.items()):
                    if now >= at:
                        del self.due[i]
                        try:
                            self._reopen(i)
                        except MlrtError as exc:  # the port, taken meanwhile: tried again later
                            log.error("worker %d: cannot listen again: %s", i, exc)
                            self.due[i] = now + self.pause.get(i, _PAUSE_S[0])
                            continue
                        self.shared.add_restart(i)
                        self.spawn(i)
                        log.warning("worker %d started again (restart %d)", i, self.shared.restarts(i))
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, self._mask)

    def _started(self) -> bool | None:
        """Wait until every worker says it is serving; False when one died first, None
        when told to stop meanwhile (a worker that is up already answers requests, so a
        client may well be done and send SIGTERM before the last worker is)."""
        while True:
            serving = {self.shared.serving_pid(i) for i in range(self.count)}
            if all(pid in serving for pid in self.pids):
                return True
            if _stop_signal(signal.sigtimedwait(_SIGNALS, 0.1)):
                return None
            for pid, i, code in self._reap(restart=False):
                log.error("worker %d (pid %d) failed to start (exit status %d); stopping", i, pid, code)
                return False

    def _reap(self, restart: bool) -> list[tuple[int, int, int]]:
        """Collect the workers that ended: (pid, slot, exit status); schedule restarts."""
        ended = []
        while self.pids:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            i = self.pids.pop(pid, None)
            if i is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            ended.append((pid, i, code))
            self.codes.append(code if code >= 0 else 1)
            if restart:
                if self.shared.serving_pid(i) != pid:
                    self._shut(i)
                lived = time.monotonic() - self.born[i]
                pause = _PAUSE_S[0] if lived >= _HEALTHY_S else self.pause.get(i, _PAUSE_S[0])
                self.pause[i] = min(_PAUSE_S[1], pause * 2)
                self.due[i] = time.monotonic() + pause
                how = f"signal {-code}" if code < 0 else f"exit status {code}"
                log.error(
                    "worker %d (pid %d) died (%s) after %.1f s; restarting in %.1f s",
                    i,
                    pid,
                    how,
                    lived,
                    pause,
                )
        return ended

    def _stop(self) -> int:
        """SIGTERM every worker, wait for them to drain, kill what outlives the grace."""
        self.codes = []
        # The listeners close as the workers close theirs: held here, connections would
        # queue through the drain with no one to accept them, and be reset at the end.
        close_all(self.socks, self.config)
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.config.graceful_timeout_s + _KILL_AFTER_S
        while self.pids:
            if time.monotonic() >= deadline:
                for pid, i in self.pids.items():
                    log.error("worker %d (pid %d) still running past the graceful timeout: killed", i, pid)
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                deadline = float("inf")
            signal.sigtimedwait(_SIGNALS, 0.2)
            self._reap(restart=False)
        return max(self.codes, default=0)


def _stop_signal(sig: signal.struct_siginfo | None) -> bool:
    return sig is not None and sig.si_signo in (signal.SIGTERM, signal.SIGINT)


def serve_workers(config: ServerConfig) -> int:
    """Serve with `config.workers` processes until SIGTERM/SIGINT; the exit status."""
    from .run import setup_logging

    setup_logging(config.log_level)
    socks = bind_all(config, copies=int(config.workers))  # a taken port fails here, once
    run_dir = tempfile.mkdtemp(prefix="mlrt-workers-")  # owner-only: the peers' sockets
    try:
        return Supervisor(config, socks, run_dir).run()
    finally:
        close_all(socks, config)
        shutil.rmtree(run_dir, ignore_errors=True)
