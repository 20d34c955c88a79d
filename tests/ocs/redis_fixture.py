"""A real redis-server for tests: started once per session on a free loopback port.

`start_redis_server` is usable on its own; `redis_server` is the session-scoped pytest
fixture around it (import it into a test module, or list this module in a conftest's
``pytest_plugins``). Nothing is persisted: no RDB, no AOF, a temporary directory.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["RedisServer", "RedisStartError", "ping", "redis_server", "start_redis_server"]


class RedisStartError(RuntimeError):
    """redis-server did not come up; the message carries the end of its log."""


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def ping(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when a Redis server answers PING on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class RedisServer:
    """A running redis-server process."""

    host: str
    port: int
    directory: Path
    process: subprocess.Popen[bytes]

    @property
    def log(self) -> Path:
        """The server's log file."""
        return self.directory / "redis.log"

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate the server, killing it if it does not exit within `timeout`."""
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout)


def _options(host: str, port: int, directory: Path) -> list[str]:
    """Loopback only, nothing persisted, the log in `directory`."""
    return [
        *("--port", str(port), "--bind", host),
        *("--save", "", "--appendonly", "no"),
        *("--dir", str(directory), "--logfile", str(directory / "redis.log")),
        *("--daemonize", "no"),
    ]


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def start_redis_server(
    directory: Path,
    *,
    host: str = "127.0.0.1",
    timeout: float = 10.0,
    executable: str | None = None,
    attempts: int = 3,
    port: int | None = None,
) -> RedisServer:
    """Start redis-server in `directory` on a free port of `host`; wait for PING.

    The port is found by binding to port 0 and released before redis binds it; if another
    process takes it in between, the start is retried on a new port. With `port` (a server
    started again where it was), that port is used, once.
    """
    binary = executable or shutil.which("redis-server")
    if binary is None:
        raise RedisStartError("redis-server is not installed")
    directory.mkdir(parents=True, exist_ok=True)
    failure = ""
    for _ in range(1 if port is not None else attempts):
        chosen = port if port is not None else _free_port(host)
        server = RedisServer(
            host,
            chosen,
            directory,
            subprocess.Popen(
                [binary, *_options(host, chosen, directory)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            ),
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and server.process.poll() is None:
            if ping(host, chosen):
                return server
            time.sleep(0.05)
        server.stop()
        failure = f"redis-server on {host}:{chosen} did not answer PING:\n{_log_tail(server.log)}"
    raise RedisStartError(failure)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the whole test session; skips when it is not installed."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = start_redis_server(tmp_path_factory.mktemp("redis"))
    try:
        yield server
    finally:
        server.stop()
