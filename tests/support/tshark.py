"""Capture loopback traffic with tshark and ask Wireshark's dissectors what they think of it.

`Capture` runs ``tshark -i lo -f "tcp port N" -w FILE`` (as root tshark captures directly;
otherwise dumpcap needs CAP_NET_RAW) and waits for it to report that the capture started.
Stopping sends SIGINT so that tshark flushes the file.  `dissect` re-reads the file with
port N decoded as Diameter and returns one row per Diameter message, and `problems`
every malformed packet or expert info of warning severity or worse.  Every tshark run is
bounded by a timeout.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

# Wireshark's expert severities (epan/proto.h): chat, note, warning, error.
SEVERITY_WARNING = 0x00600000


def tshark_binary() -> str:
    path = shutil.which("tshark")
    assert path, "tshark is installed by scripts/install-system-deps"
    return path


@dataclass
class Capture:
    """One tshark capture of TCP port `port` on the loopback interface."""

    workdir: Path
    port: int
    interface: str = "lo"
    process: subprocess.Popen[bytes] | None = None

    @property
    def pcap(self) -> Path:
        return self.workdir / f"diameter-{self.port}.pcap"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"tshark-{self.port}.log"

    def start(self, timeout: float = 15.0) -> None:
        """Start capturing; return once tshark says the capture is running."""
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [
                tshark_binary(),
                "-n",
                "-i",
                self.interface,
                "-f",
                f"tcp port {self.port}",
                "-w",
                str(self.pcap),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log_path.read_text(errors="replace")
            if "Capture started" in text or "Capturing on" in text:
                time.sleep(0.2)  # the filter is attached just after the banner
                return
            if self.process.poll() is not None:
                raise AssertionError(f"tshark exited {self.process.returncode}:\n{text}")
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"tshark did not start capturing within {timeout}s")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop capturing and let tshark write the file."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        time.sleep(0.3)  # let the last segments reach the capture buffer
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _read(self, *args: str, timeout: float = 30.0) -> list[list[str]]:
        result = subprocess.run(
            [
                tshark_binary(),
                "-n",
                "-r",
                str(self.pcap),
                "-d",
                f"tcp.port=={self.port},diameter",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return [line.split("\t") for line in result.stdout.splitlines() if line.strip()]

    def dissect(self) -> list[tuple[int, bool, bool]]:
        """(command code, R bit, E bit) of every Diameter message, in capture order."""
        rows = self._read(
            "-Y",
            "diameter",
            "-T",
            "fields",
            "-E",
            "occurrence=a",
            "-E",
            "aggregator=;",
            "-e",
            "diameter.cmd.code",
            "-e",
            "diameter.flags.request",
            "-e",
            "diameter.flags.error",
        )
        out = []
        for row in rows:
            codes, requests, errors = [*row, "", "", ""][:3]
            # several messages in one TCP segment: each field lists them with ';'
            flags = zip(codes.split(";"), requests.split(";"), errors.split(";"), strict=True)
            for code, request, error in flags:
                out.append((int(code), request in ("1", "True"), error in ("1", "True")))
        return out

    def field_values(self, name: str) -> list[str]:
        """Every value of a display field (e.g. ``diameter.Result-Code``) in the capture."""
        rows = self._read("-Y", name, "-T", "fields", "-E", "occurrence=a", "-e", name)
        return [value for row in rows for value in row[0].split(",") if value]

    def problems(self) -> list[str]:
        """Malformed packets and expert infos of warning severity or worse, as text."""
        rows = self._read(
            "-Y",
            f"_ws.malformed || _ws.expert.severity >= {SEVERITY_WARNING}",
            "-T",
            "fields",
            "-e",
            "frame.number",
            "-e",
            "_ws.col.Protocol",
            "-e",
            "_ws.expert.message",
            "-e",
            "_ws.col.Info",
        )
        return ["\t".join(row) for row in rows]

    def expert_summary(self) -> str:
        """tshark's own expert report (``-z expert``), for failure messages."""
        result = subprocess.run(
            [
                tshark_binary(),
                "-n",
                "-q",
                "-r",
                str(self.pcap),
                "-d",
                f"tcp.port=={self.port},diameter",
                "-z",
                "expert,warn",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        return result.stdout
