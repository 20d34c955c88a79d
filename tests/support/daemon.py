"""Run the real daemon (``twistd b2bua``) as a subprocess, the way an operator does."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TWISTD = str(Path(sys.executable).with_name("twistd"))


def twistd(
    *args: str, cwd: Path | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run twistd to completion with `args` and capture its output."""
    return subprocess.run(
        [TWISTD, *args],
        cwd=cwd or REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(),
        check=False,
    )


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


class Daemon:
    """A foreground ``twistd -n PLUGIN`` process (b2bua by default) whose log a test can read."""

    def __init__(
        self,
        config: Path,
        *,
        log_path: Path,
        plugin: str = "b2bua",
        options: tuple[str, ...] = (),
        cwd: Path = REPO,
    ) -> None:
        """``options``: more twistd options (e.g. ``--logfile=FILE``: ``log_path`` then holds
        only what twistd prints before its log starts)."""
        self.log_path = log_path
        self._terminated = False
        self._log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [TWISTD, "-n", "--pidfile=", *options, plugin, "--config", str(config)],
            cwd=cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=_env(),
        )

    def log_text(self) -> str:
        return self.log_path.read_text()

    def wait_for_log(self, needle: str, timeout: float = 15) -> None:
        """Wait until `needle` appears in the log; fail with the log if the daemon died."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.log_text():
                return
            if self.process.poll() is not None:
                raise AssertionError(f"daemon exited {self.process.returncode}:\n{self.log_text()}")
            time.sleep(0.05)
        raise AssertionError(f"{needle!r} not logged within {timeout}s:\n{self.log_text()}")

    def terminate(self) -> None:
        """Send SIGTERM once (a second one while stopping is only logged)."""
        if not self._terminated and self.process.poll() is None:
            self._terminated = True
            self.process.terminate()

    def stop(self, timeout: float = 15) -> int:
        """SIGTERM the daemon (once) and return its exit status."""
        if self.process.poll() is None:
            self.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


def start_plugin(plugin: str, config: Path, *, log_path: Path) -> Daemon:
    """A foreground ``twistd -n PLUGIN --config FILE`` (e.g. ``ocs``), as a `Daemon`."""
    return Daemon(config, log_path=log_path, plugin=plugin)
