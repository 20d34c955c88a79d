"""Run SIPp (Debian's sip-tester) as a real SIP client or server in integration tests.

SIPp runs without a terminal (``-nostdin``), writes its statistics and errors into the
test's temporary directory, and is always bounded: a call count (``-m``) and a global
``-timeout`` make it stop by itself. Exit status 0 means every call of the scenario
succeeded.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

SCENARIOS = Path(__file__).resolve().parents[1] / "sipp"
TRANSPORTS = {"udp": "u1", "tcp": "t1", "tls": "l1"}


def sipp_binary() -> str:
    path = shutil.which("sipp")
    assert path, "sipp is installed by scripts/install-system-deps (package sip-tester)"
    return path


@dataclass
class Sipp:
    """One SIPp process playing `scenario` (a file in tests/sipp/ or a built-in like 'uas')."""

    scenario: str
    workdir: Path
    local_port: int
    remote: str | None = None
    transport: str = "udp"
    calls: int = 1
    rate: float = 10.0
    timeout: float = 30.0
    service: str = "callee"
    extra: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        scenario = SCENARIOS / self.scenario
        args = [sipp_binary()]
        args += ["-sf", str(scenario)] if scenario.suffix == ".xml" else ["-sn", self.scenario]
        if self.remote:
            args.append(self.remote)
        args += [
            "-i",
            "127.0.0.1",
            "-p",
            str(self.local_port),
            "-t",
            TRANSPORTS[self.transport],
            "-m",
            str(self.calls),
            "-r",
            f"{self.rate:g}",
            "-s",
            self.service,
            "-timeout",
            f"{self.timeout:g}s",
            "-timeout_error",
            "-nostdin",
            "-trace_err",
            "-error_file",
            str(self.workdir / f"{self.name}_errors.log"),
            "-trace_stat",
            "-stf",
            str(self.workdir / f"{self.name}_stats.csv"),
            "-trace_msg",
            "-message_file",
            str(self.workdir / f"{self.name}_messages.log"),
        ]
        return args + self.extra

    @property
    def name(self) -> str:
        return f"{Path(self.scenario).stem}_{self.local_port}"

    def start(self) -> Sipp:
        self.process = subprocess.Popen(
            self.command(),
            cwd=self.workdir,
            stdout=subprocess.DEVNULL,
            stderr=open(self.workdir / f"{self.name}_stderr.log", "wb"),  # noqa: SIM115
        )
        return self

    def wait(self, timeout: float | None = None) -> int:
        """Wait for SIPp to end by itself and return its exit status."""
        assert self.process is not None
        try:
            return self.process.wait(timeout or self.timeout + 10)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(
                f"SIPp {self.scenario} did not stop by itself\n{self.report()}"
            ) from None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def messages(self) -> str:
        path = self.workdir / f"{self.name}_messages.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stats(self) -> dict[str, str]:
        """The last row of SIPp's statistics file (SuccessfulCall(C), FailedCall(C), ...)."""
        path = self.workdir / f"{self.name}_stats.csv"
        if not path.exists():
            return {}
        rows = list(csv.DictReader(path.read_text().splitlines(), delimiter=";"))
        return rows[-1] if rows else {}

    def report(self) -> str:
        errors = self.workdir / f"{self.name}_errors.log"
        stderr = self.workdir / f"{self.name}_stderr.log"
        parts = [f"command: {' '.join(self.command())}"]
        for path in (errors, stderr):
            if path.exists():
                parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-4000:]}")
        parts.append(f"--- messages\n{self.messages()[-4000:]}")
        return "\n".join(parts)


def run_until_done(*sipps: Sipp, timeout: float = 60) -> list[int]:
    """Wait for every SIPp to end by itself; return their exit statuses in order."""
    deadline = time.monotonic() + timeout
    statuses = []
    for sipp in sipps:
        statuses.append(sipp.wait(max(1.0, deadline - time.monotonic())))
    return statuses


def sipp_supports_tls() -> bool:
    """Whether this SIPp was built with OpenSSL (its version line lists TLS); Debian's is not."""
    try:
        out = subprocess.run(
            [sipp_binary(), "-v"], capture_output=True, text=True, timeout=10, check=False
        )
    except (AssertionError, OSError, subprocess.TimeoutExpired):
        return False
    return "TLS" in out.stdout + out.stderr


def stat(sipp: Sipp, name: str) -> int:
    """A cumulative counter of SIPp's statistics file, e.g. ``stat(s, "SuccessfulCall")``."""
    return int(sipp.stats().get(f"{name}(C)", "0") or 0)
