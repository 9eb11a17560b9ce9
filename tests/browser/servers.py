"""Real `kith serve` processes for tests that need real HTTP: a browser, or several processes
sharing one database and one Redis."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

SECRET_KEY = "browser-and-live-tests-secret-key"
START_TIMEOUT = 20.0


def free_port() -> int:
    """A TCP port nobody listens on right now (the kernel picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _kith_command() -> list[str]:
    """The `kith` console script of this virtualenv (or the module, when it is missing)."""
    script = Path(sys.executable).with_name("kith")
    return [str(script)] if script.exists() else [sys.executable, "-m", "kith.cli"]


def server_env(workdir: Path, database_url: str, **settings: str) -> dict[str, str]:
    """The environment of a Kith process: this one's, minus any KITH_* setting of the
    developer's shell (a stray KITH_REDIS_URL would change what is tested), plus ours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KITH_")}
    env.update(
        KITH_VAR_DIR=str(workdir / "var"),
        KITH_DATABASE_URL=database_url,
        KITH_SECRET_KEY=SECRET_KEY,
        KITH_LOG_LEVEL="warning",
    )
    env.update({f"KITH_{k.upper()}": v for k, v in settings.items()})
    return env


def migrate(workdir: Path, database_url: str) -> None:
    """`kith migrate` on this database, as an operator runs it."""
    workdir.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [*_kith_command(), "migrate"],
        env=server_env(workdir, database_url),
        cwd=workdir,
        check=True,
        capture_output=True,
        timeout=60,
    )


@dataclass
class KithServer:
    """One running `kith serve` process."""

    base_url: str
    domain: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def wait_until_answering(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"kith serve exited early:\n{self.log_tail()}")
            try:
                httpx.get(self.base_url + "/static/kith.css", timeout=1.0)
                return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError(f"kith serve did not answer in {timeout} s:\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL: uvicorn waits for open event streams before it exits."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def start_server(workdir: Path, database_url: str, **settings: str) -> KithServer:
    """Start `kith serve` on a free port (without waiting for it to answer)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    domain = f"127.0.0.1:{port}"
    log_path = workdir / f"serve-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*_kith_command(), "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=server_env(workdir, database_url, domain=domain, **settings),
            # The work directory holds no .env file, so only the environment counts.
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return KithServer(f"http://{domain}", domain, process, log_path)


@contextmanager
def running_servers(
    count: int, workdir: Path, database_url: str, **settings: str
) -> Iterator[list[KithServer]]:
    """`count` servers on one database (started together), stopped on exit."""
    with ExitStack() as stack:
        servers = []
        for i in range(count):
            server = start_server(workdir / f"server-{i}", database_url, **settings)
            stack.callback(server.stop)
            servers.append(server)
        for server in servers:
            server.wait_until_answering()
        yield servers


def chromium_path() -> str | None:
    """Debian's Chromium (never Playwright's own download)."""
    return shutil.which("chromium")
