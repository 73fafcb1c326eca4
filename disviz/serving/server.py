"""Start the real app server and read what it costs (CPU seconds, RSS) from /proc.

Shared by the browser test suite and ``python -m disviz bench serve``: both need the same server a
teacher gets from ``make run`` (the project's ``.streamlit/config.toml`` applies because the server
runs in the repository root), and the benchmark reports server CPU as the portable figure, read
from ``/proc/PID/stat`` so that the browsers on the same machine are not counted.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
# Debian chromium as root, headless, with no background traffic (this machine's network is closed)
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A running app server: its URL and process id (for CPU and memory readings)."""

    url: str
    pid: int


@contextlib.contextmanager
def streamlit_server(
    env: Mapping[str, str], log_path: Path, timeout: float = 90.0, extra_args: tuple[str, ...] = ()
) -> Iterator[Server]:
    """``streamlit run app.py`` on a free port in the repository root; yields once /_stcore/health is ok."""
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        "app.py",
        "--server.port",
        str(port),
        "--server.address",
        "127.0.0.1",
        *extra_args,
    ]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            t0 = time.monotonic()
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"streamlit exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
                with contextlib.suppress(OSError):
                    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                        if r.read().decode().strip() == "ok":
                            break
                if time.monotonic() - t0 > timeout:
                    raise RuntimeError(f"streamlit not healthy in {timeout} s:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.25)
            yield Server(url, proc.pid)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads), from /proc/PID/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()  # the command name may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` in MB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def listening_pid(port: int) -> int | None:
    """The process listening on TCP ``port`` on this machine (to measure a server started elsewhere)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                parts = line.split()
                local, state, inode = parts[1], parts[3], parts[9]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # 0A = LISTEN
                    inodes.add(f"socket:[{inode}]")
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in inodes:
                        return int(proc.name)
    return None


def browser_cpu_seconds() -> float:
    """User + system CPU time of every Chromium process on this machine (the benchmark's own browsers).

    Why: on one machine the browsers and the server share the cores; a move's latency under load is
    set by both, so the benchmark reports the browsers' CPU per move beside the server's.
    """
    total = 0.0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            text = (proc / "stat").read_text()
            comm = text[text.index("(") + 1 : text.rindex(")")]
            if comm.startswith(("chromium", "chrome", "headless")):
                total += cpu_seconds(int(proc.name))
    return total
