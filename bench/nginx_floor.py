"""nginx as a floor: one worker process answering every request (POSTs included, their bodies
read and dropped) with the same fixed JSON, keep-alive on, no access log. What a server written
in C costs a request on this machine, beside the wire floor (bench/wire_floor.py, the least a
Python server on uvloop can do). bench.serving runs it when nginx is on PATH (Debian:
`apt-get install nginx-light`), and says so when it is not.

    python -m bench.nginx_floor --port 8004     # runs until interrupted
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

from .wire_floor import _BODY

CONFIG = """\
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    keepalive_requests 10000000;
    keepalive_timeout 60s;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            default_type application/json;
            return 200 '{body}';
        }}
    }}
}}
"""


def available() -> str | None:
    """nginx's version line when it is on PATH, else None."""
    exe = shutil.which("nginx")
    if exe is None:
        return None
    done = subprocess.run([exe, "-v"], capture_output=True, text=True)
    return (done.stderr or done.stdout).strip() or "nginx"


def command(tmp: Path, port: int) -> list[str]:
    """The command line that runs the nginx floor on `port`, its files under `tmp`."""
    tmp.mkdir(parents=True, exist_ok=True)
    conf = tmp / "nginx.conf"
    conf.write_text(CONFIG.format(tmp=tmp, port=port, body=_BODY.decode()))
    return [shutil.which("nginx") or "nginx", "-p", str(tmp), "-c", str(conf), "-e", str(tmp / "error.log")]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, default=8004)
    args = p.parse_args()
    if available() is None:
        raise SystemExit("nginx is not on PATH (Debian: apt-get install nginx-light)")
    with tempfile.TemporaryDirectory(prefix="mlrt-nginx-floor-") as d:
        subprocess.run(command(Path(d), args.port))


if __name__ == "__main__":
    main()
