"""Listening sockets: TCP and a Unix domain socket, bound before uvicorn starts so one
server (one event loop, one set of models) answers on both."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat

from ..config import ServerConfig
from ..errors import MlrtError


class SocketError(MlrtError):
    """A listening socket could not be set up."""


def _bound(host: str, port: int, flag: str, reuse_port: bool = False) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise SocketError(f"{host}:{port} is already in use; pick another {flag}") from None
        raise SocketError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


def tcp_socket(host: str, port: int) -> socket.socket:
    sock = _bound(host, port, "--port")
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def tcp_sockets(host: str, port: int, copies: int) -> list[socket.socket]:
    """`copies` listening sockets on one port (SO_REUSEPORT), one per worker of --workers:
    the kernel spreads new connections over them by a hash of the client's address. With one
    shared socket, libuv's accept takes every queued connection on a wake-up, so the first
    worker awake took whole bursts (bench/workers.py saw one worker with every connection).
    The supervisor keeps each socket while its worker restarts: its queue waits, not lost."""
    socks: list[socket.socket] = []
    try:
        for _ in range(copies):
            sock = _bound(host, port, "--port", reuse_port=True)
            port = sock.getsockname()[1]  # port 0: the others join the port the first got
            sock.listen(2048)
            socks.append(sock)
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks


def check_free(host: str, port: int, flag: str) -> None:
    """Fail now, with the message a taken --port gets, when a port another listener
    (gRPC's) will bind later is taken: before models load and anything says serving."""
    _bound(host, port, flag).close()


def _clear_stale(path: str) -> None:
    """Remove a socket file left by a crashed server; refuse to touch anything else."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise SocketError(f"{path} exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        os.unlink(path)  # nobody listens: stale
        return
    finally:
        probe.close()
    raise SocketError(f"{path} is in use by a running server")


def unix_socket(path: str, mode: str) -> socket.socket:
    _clear_stale(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # Create the file with the final permissions: no window where others could connect.
    old = os.umask(0o777 & ~int(mode, 8))
    try:
        sock.bind(path)
    except OSError as exc:
        sock.close()
        raise SocketError(f"cannot listen on unix socket {path}: {exc.strerror}") from None
    finally:
        os.umask(old)
    os.chmod(path, int(mode, 8))
    sock.listen(2048)
    return sock


def bind_all(config: ServerConfig, copies: int = 1) -> list[socket.socket]:
    """The configured listeners: TCP (`copies` sockets on the port: tcp_sockets), then the
    Unix socket."""
    socks: list[socket.socket] = []
    try:
        if config.tcp:
            if copies == 1:
                socks.append(tcp_socket(config.host, config.port))
            else:
                socks.extend(tcp_sockets(config.host, config.port, copies))
        if config.uds:
            socks.append(unix_socket(config.uds, config.uds_mode))
        if config.grpc_port:
            check_free(config.host, config.grpc_port, "--grpc-port")
    except BaseException:
        close_all(socks, config)
        raise
    return socks


def close_all(socks: list[socket.socket], config: ServerConfig) -> None:
    for s in socks:
        with contextlib.suppress(OSError):
            s.close()
    if config.uds and any(s.family == socket.AF_UNIX for s in socks):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(config.uds)
