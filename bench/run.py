"""Capacity benchmark: SIPp caller -> twistd b2bua -> SIPp callee, every call charged.

The lab OCS (``twistd ocs``) and b2bua (``twistd b2bua``) run in their own processes on
loopback with generated configurations and a generated accounts file.  The offered rate
is stepped; each step runs for a fixed time with fresh SIPp processes on both legs, then
the step is judged (see ``sustainable``).  Then an overload step at twice the highest
sustainable rate checks that excess calls get 503 with Retry-After before any CCR, a
recovery step checks the process is fine at once, and a memory run holds many calls up
to a target concurrency and reports the marginal RSS per call.

Everything is bounded: each SIPp has a global timeout, each wait a deadline; every process
started here is stopped before the script ends.  Results go to bench/results/<stamp>.json.

    python bench/run.py --quick                 # about 3 minutes
    python bench/run.py --rates 100,200,400 --step-duration 20 --hold 1000
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "results"
TWISTD = os.environ.get("BENCH_TWISTD") or str(Path(sys.executable).with_name("twistd"))
CALLER_PREFIX = "+1555900"
ACCOUNTS = 1000
CALLEE = "15550199"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

# What makes a step sustainable (issue 12).
MAX_FAILED_RATIO = 0.001
MAX_RETRANS_RATIO = 0.01
MAX_SETUP_P95_MS = 500.0


def free_port() -> int:
    """A loopback port free for both UDP and TCP right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port")


def uptime() -> str:
    """The machine load when a run starts and ends (others may share the CPU)."""
    try:
        return subprocess.run(
            ["uptime"], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        return Path("/proc/loadavg").read_text().strip()


# ---------------------------------------------------------------- processes


class Proc:
    """One process of ours: started in `workdir`, stdout+stderr to a log file, always stopped."""

    def __init__(self, name: str, argv: list[str], workdir: Path) -> None:
        self.name = name
        self.argv = argv
        self.log_path = workdir / f"{name}.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        self.popen = subprocess.Popen(
            argv, cwd=workdir, stdout=self._log, stderr=subprocess.STDOUT, env=env
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def wait(self, timeout: float) -> int | None:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, then SIGKILL after `timeout`; the exit status.  Safe to call twice."""
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            if self.wait(timeout) is None:
                self.popen.kill()
                self.popen.wait()
        self._log.close()
        return self.popen.returncode

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of `pid` so far (/proc/PID/stat utime, stime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_bytes(pid: int) -> int:
    """Resident set size of `pid` now (/proc/PID/statm)."""
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE


# ---------------------------------------------------------------- the lab


@dataclass
class LabOptions:
    """What the b2bua configuration of a run varies."""

    grant: int = 0  # seconds per grant (reservation_units); 0: the OCS default (30 s)
    max_call_rate: float = 0.0
    overload_lag: float = 0.1
    profile: str = ""  # a file name: run b2bua under cProfile (twistd --profile)


class Lab:
    """Lab OCS and b2bua in their own processes, on free loopback ports."""

    def __init__(self, workdir: Path, options: LabOptions) -> None:
        self.dir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.options = options
        self.sip_port = free_port()
        self.uas_port = free_port()
        self.ocs_port = free_port()
        self.metrics_port = free_port()
        self.ledger = workdir / "ledger.jsonl"
        self.ocs: Proc | None = None
        self.b2bua: Proc | None = None
        self.write_files()

    def write_files(self) -> None:
        accounts = [
            {"subscriber": f"{CALLER_PREFIX}{i:04d}", "seconds": 10**12} for i in range(ACCOUNTS)
        ]
        (self.dir / "accounts.json").write_text(json.dumps({"accounts": accounts}))
        lines = ["SEQUENTIAL"] + [f"{CALLER_PREFIX}{i:04d};" for i in range(ACCOUNTS)]
        (self.dir / "callers.csv").write_text("\n".join(lines) + "\n")
        (self.dir / "ocs.conf").write_text(
            "[ocs]\n"
            f"listen = aaa://127.0.0.1:{self.ocs_port}\n"
            "origin_host = ocs.bench.example\norigin_realm = bench.example\n"
            "accounts = accounts.json\nledger = ledger.jsonl\n"
            "[log]\nlevel = warn\n"
        )
        grant = self.options.grant
        charging = (
            f"reservation_units = {grant}\ninterim_update_credits = {grant}\n"
            f"timer_buffer = {min(8, max(1, grant // 3))}\n"
            if grant
            else ""
        )
        admission = "".join(
            f"{key} = {value:g}\n"
            for key, value in (
                ("max_call_rate", self.options.max_call_rate),
                ("overload_lag", self.options.overload_lag),
            )
            if value
        )
        (self.dir / "b2bua.conf").write_text(
            f"[sip]\nlisten = udp:127.0.0.1:{self.sip_port}\n"
            "[calls]\ntrusted = 127.0.0.0/8\nsession_expires = 0\n"
            + admission
            + f"[route:bench]\nnext_hop = 127.0.0.1:{self.uas_port}\ncharging = orig\n"
            f"[charging]\n{charging}"
            "[diameter]\norigin_host = b2bua.bench.example\norigin_realm = bench.example\n"
            "destination_realm = bench.example\nreconnect_interval = 1\n"
            f"[peer:ocs]\nuri = aaa://127.0.0.1:{self.ocs_port}\nhost = ocs.bench.example\n"
            f"[metrics]\nlisten = tcp:{self.metrics_port}:interface=127.0.0.1\n"
            "[log]\nlevel = warn\n"
        )

    def start(self) -> None:
        self.ocs = Proc(
            "ocs", [TWISTD, "-n", "--pidfile=", "ocs", "--config", "ocs.conf"], self.dir
        )
        profile = ["--profile", self.options.profile, "--profiler", "cprofile", "--savestats"]
        self.b2bua = Proc(
            "b2bua",
            [
                TWISTD,
                "-n",
                "--pidfile=",
                *(profile if self.options.profile else []),
                *("b2bua", "--config", "b2bua.conf"),
            ],
            self.dir,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if not self.b2bua.alive() or not self.ocs.alive():
                break
            if self.metric("b2bua_diameter_peers_up") == 1:
                return
            time.sleep(0.2)
        tails = "\n".join(p.log_tail() for p in (self.ocs, self.b2bua))
        self.stop()
        raise RuntimeError(f"b2bua did not connect to the OCS within 30 s\n{tails}")

    def metrics(self) -> dict[str, float]:
        """b2bua's Prometheus metrics, label sets kept in the name."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                text = answer.read().decode()
        except OSError:
            return {}
        values = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                values[name] = float(value)
        return values

    def metric(self, name: str) -> float | None:
        return self.metrics().get(name)

    def ledger_entries(self, offset: int) -> list[dict[str, object]]:
        if not self.ledger.exists():
            return []
        with self.ledger.open("rb") as f:
            f.seek(offset)
            data = f.read()
        return [json.loads(line) for line in data.splitlines() if line.strip()]

    def ledger_size(self) -> int:
        return self.ledger.stat().st_size if self.ledger.exists() else 0

    def stop(self) -> None:
        for proc in (self.b2bua, self.ocs):
            if proc is not None:
                proc.stop()


@contextmanager
def running_lab(workdir: Path, options: LabOptions) -> Iterator[Lab]:
    """The OCS and b2bua up and connected for the block, stopped after it."""
    lab = Lab(workdir, options)
    lab.start()
    try:
        yield lab
    finally:
        lab.stop()


# ---------------------------------------------------------------- SIPp


def sipp_command(
    role: str, lab: Lab, workdir: Path, *, rate: float, calls: int, hold_ms: int, timeout: float
) -> list[str]:
    """SIPp as the callee ("uas", the built-in scenario) or the caller (bench/uac.xml).

    Bounded: ``-m`` calls, a global ``-timeout``, and a call waiting longer than the hold
    plus 15 s for its next message fails.  Statistics every second (``-fd 1``); the
    caller logs every response time (``-rtt_freq 1``) for the percentiles.
    """
    sipp = shutil.which("sipp")
    if sipp is None:
        raise SystemExit("sipp not found: apt-get install sip-tester")
    common = [
        "-i", "127.0.0.1", "-t", "u1", "-nostdin", "-m", str(calls),
        "-timeout", f"{timeout:g}s", "-timeout_error", "-recv_timeout", str(hold_ms + 15000),
        "-trace_stat", "-fd", "1", "-stf", str(workdir / f"{role}_stats.csv"),
        "-trace_err", "-error_file", str(workdir / f"{role}_errors.log"),
        "-max_socket", "64", "-buff_size", str(4 * 1024 * 1024),
    ]  # fmt: skip
    if role == "uas":
        return [sipp, "-sn", "uas", "-p", str(lab.uas_port), *common]
    limit = max(100, int(rate * (hold_ms / 1000 + 10)) + 100)
    return [
        sipp, "-sf", str(BENCH / "uac.xml"), f"127.0.0.1:{lab.sip_port}",
        "-p", str(free_port()), "-s", CALLEE, "-inf", str(lab.dir / "callers.csv"),
        "-r", f"{rate:g}", "-rp", "1000", "-d", str(hold_ms), "-l", str(limit),
        "-trace_rtt", "-rtt_freq", "1", *common,
    ]  # fmt: skip


def last_stats(path: Path) -> dict[str, str]:
    """The last row of a SIPp statistics file (cumulative counters)."""
    if not path.exists():
        return {}
    rows = list(csv.DictReader(path.read_text(errors="replace").splitlines(), delimiter=";"))
    return rows[-1] if rows else {}


def counter(stats: dict[str, str], name: str) -> int:
    """One integer column of a SIPp statistics row (0 when absent)."""
    try:
        return int(stats.get(name, "0") or 0)
    except ValueError:
        return 0


def response_times(workdir: Path) -> tuple[list[float], list[float], int]:
    """From SIPp's rtt file: every call's INVITE -> 200 OK time (response time 1), sorted;
    the times (ms) the 200 OKs arrived, sorted (their spread is the achieved rate); and
    the number of calls refused with 503 (each records one response time 2)."""
    times: list[float] = []
    stamps: list[float] = []
    refused = 0
    for path in workdir.glob("uac_*_rtt.csv"):
        for line in path.read_text(errors="replace").splitlines()[1:]:
            parts = line.split(";")
            if len(parts) < 3:
                continue
            rtd = parts[2].strip()
            if rtd == "2":
                refused += 1
            elif rtd == "1":
                try:
                    stamps.append(float(parts[0]))
                    times.append(float(parts[1]))
                except ValueError:
                    continue
    return sorted(times), sorted(stamps), refused


def wait_idle(uas: Proc, stats: Path, timeout: float = 15.0) -> None:
    """Let the callee finish its calls (SIPp's uas lingers 4 s after each BYE to absorb
    retransmissions) and write its final counters; bounded by `timeout`."""
    deadline = time.monotonic() + timeout
    while uas.alive() and time.monotonic() < deadline:
        row = last_stats(stats)
        if row and counter(row, "CurrentCall") == 0 and counter(row, "IncomingCall(C)"):
            uas.wait(1.5)  # one more statistics dump (-fd 1)
            return
        uas.wait(0.5)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    index = min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))
    return round(values[index], 2)


# ---------------------------------------------------------------- one step


@dataclass
class Step:
    """One offered rate, its SIPp counters on both ends, b2bua's cost, and the ledger."""

    kind: str
    offered: float
    duration: float
    hold_ms: int
    achieved: float = 0.0
    uac_calls: int = 0
    uac_ok: int = 0
    uac_failed: int = 0
    uas_calls: int = 0
    uas_ok: int = 0
    uas_failed: int = 0
    refused_503: int = 0
    retransmissions: int = 0
    setup_p50_ms: float | None = None
    setup_p95_ms: float | None = None
    setup_p99_ms: float | None = None
    cpu_percent: float = 0.0
    ocs_cpu_percent: float = 0.0
    cpu_ms_per_call: float = 0.0
    rss_mib: float = 0.0
    ccr_initial: int = 0
    ccr_update: int = 0
    ccr_terminate: int = 0
    billed_s: int = 0
    talk_s: float = 0.0
    billing_ok: bool = False
    sustainable: bool = False
    notes: list[str] = field(default_factory=list)


def run_step(
    lab: Lab, workdir: Path, kind: str, rate: float, duration: float, hold_ms: int
) -> Step:
    step = Step(kind, rate, duration, hold_ms)
    calls = max(1, round(rate * duration))
    timeout = duration + hold_ms / 1000 + 40
    assert lab.b2bua is not None
    workdir.mkdir(parents=True, exist_ok=True)
    ledger_from = lab.ledger_size()
    uas = Proc(
        "uas",
        sipp_command(
            "uas", lab, workdir, rate=rate, calls=calls, hold_ms=hold_ms, timeout=timeout + 5
        ),
        workdir,
    )
    uac: Proc | None = None
    try:
        time.sleep(0.3)
        cpu0, t0 = cpu_seconds(lab.b2bua.pid), time.monotonic()
        ocs_cpu0 = cpu_seconds(lab.ocs.pid) if lab.ocs is not None else 0.0
        uac = Proc(
            "uac",
            sipp_command(
                "uac", lab, workdir, rate=rate, calls=calls, hold_ms=hold_ms, timeout=timeout
            ),
            workdir,
        )
        rss_peak = 0
        while uac.alive() and time.monotonic() - t0 < timeout + 10:
            rss_peak = max(rss_peak, rss_bytes(lab.b2bua.pid))
            uac.wait(0.5)
        elapsed = time.monotonic() - t0
        cpu = cpu_seconds(lab.b2bua.pid) - cpu0
        ocs_cpu = cpu_seconds(lab.ocs.pid) - ocs_cpu0 if lab.ocs is not None else 0.0
        uac.stop(5)
        wait_idle(uas, workdir / "uas_stats.csv")
    finally:  # also on Ctrl-C: no SIPp left behind
        if uac is not None:
            uac.stop(5)
        uas.stop(5)
    step.cpu_percent = round(100 * cpu / elapsed, 1)
    step.cpu_ms_per_call = round(1000 * cpu / max(1, calls), 2)
    step.ocs_cpu_percent = round(100 * ocs_cpu / elapsed, 1)
    step.rss_mib = round(rss_peak / 2**20, 1)
    uac_stats = last_stats(workdir / "uac_stats.csv")
    uas_stats = last_stats(workdir / "uas_stats.csv")
    step.uac_calls = counter(uac_stats, "OutgoingCall(C)")
    step.uac_ok = counter(uac_stats, "SuccessfulCall(C)")
    step.uac_failed = counter(uac_stats, "FailedCall(C)")
    step.uas_calls = counter(uas_stats, "IncomingCall(C)")
    step.uas_ok = counter(uas_stats, "SuccessfulCall(C)")
    step.uas_failed = counter(uas_stats, "FailedCall(C)")
    step.retransmissions = counter(uac_stats, "Retransmissions(C)") + counter(
        uas_stats, "Retransmissions(C)"
    )
    setups, answered_at, step.refused_503 = response_times(workdir)
    if len(answered_at) > 1 and answered_at[-1] > answered_at[0]:
        span = (answered_at[-1] - answered_at[0]) / 1000
        step.achieved = round((len(answered_at) - 1) / span, 1)
    step.setup_p50_ms = percentile(setups, 0.50)
    step.setup_p95_ms = percentile(setups, 0.95)
    step.setup_p99_ms = percentile(setups, 0.99)
    judge_ledger(lab, step, ledger_from)
    judge(step)
    return step


def judge_ledger(lab: Lab, step: Step, offset: int) -> None:
    """Wait for the CCR-Ts, then compare what the OCS billed with the talk time SIPp saw."""
    deadline = time.monotonic() + 15
    entries: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        entries = [e for e in lab.ledger_entries(offset) if not e.get("duplicate")]
        kinds = [e["request_type"] for e in entries]
        if kinds.count("TERMINATE") >= kinds.count("INITIAL"):
            break
        time.sleep(0.3)
    kinds = [e["request_type"] for e in entries]
    step.ccr_initial = kinds.count("INITIAL")
    step.ccr_update = kinds.count("UPDATE")
    step.ccr_terminate = kinds.count("TERMINATE")
    step.billed_s = sum(int(e.get("debited") or 0) for e in entries)  # type: ignore[call-overload]
    answered = step.uas_ok
    step.talk_s = round(answered * step.hold_ms / 1000, 1)
    # Each call is billed its talk time rounded up to whole seconds (billing_rounding = up),
    # talk time running from b2bua's 200 OK to its BYE: a little more than SIPp's hold.
    per_call = math.ceil(step.hold_ms / 1000)
    low, high = answered * per_call, answered * (per_call + 1)
    # Every admitted call opened one Ro session and closed it; refused ones opened none.
    admitted = step.uac_calls - step.refused_503
    step.billing_ok = (
        step.ccr_initial == step.ccr_terminate == admitted and low <= step.billed_s <= high
    )
    if not step.billing_ok:
        step.notes.append(
            f"billing: {step.ccr_initial} CCR-I, {step.ccr_terminate} CCR-T for {admitted} "
            f"admitted calls; billed {step.billed_s}s for {answered} answered calls, "
            f"expected {low}..{high}s"
        )


def judge(step: Step) -> None:
    """Issue 12's rule: failures < 0.1%, every call completes at the UAS, retransmissions
    < 1% of calls, p95 setup < 500 ms; billing exact.  Refusals (503) are failures of a
    normal step, and the expected answer to the excess of an overload step."""
    calls = max(1, step.uac_calls)
    admitted = step.uac_calls - step.refused_503
    failed = step.uac_failed + step.uas_failed
    if step.kind != "overload":
        failed += step.refused_503
    reasons = []
    if failed and failed >= MAX_FAILED_RATIO * calls:
        reasons.append(
            f"{step.uac_failed} + {step.uas_failed} failed calls, {step.refused_503} refused"
        )
    if step.kind == "overload" and not step.refused_503:
        step.notes.append("no call refused: this rate did not overload b2bua")
    if step.uas_ok < admitted:
        reasons.append(f"{step.uas_ok} of {admitted} admitted calls completed at the UAS")
    if step.retransmissions >= MAX_RETRANS_RATIO * calls and step.retransmissions:
        reasons.append(f"{step.retransmissions} retransmissions")
    if step.setup_p95_ms is None or step.setup_p95_ms >= MAX_SETUP_P95_MS:
        reasons.append(f"p95 setup {step.setup_p95_ms} ms")
    if not step.billing_ok:
        reasons.append("billing")
    step.notes += reasons
    step.sustainable = not reasons


# ---------------------------------------------------------------- memory run


@dataclass
class MemoryRun:
    """RSS before and at `concurrent` held calls: the marginal bytes per call."""

    concurrent: int
    rate: float
    grant: int
    reached: int = 0
    rss_idle_mib: float = 0.0
    rss_peak_mib: float = 0.0
    marginal_kib_per_call: float | None = None
    step: Step | None = None


def memory_run(workdir: Path, concurrent: int, rate: float, grant: int) -> MemoryRun:
    """Calls at `rate` held long enough that `concurrent` are up at once; grants shorter than
    the hold, so every call also sends CCR-Us (`grant` 0: about two per call, keeping the
    CCR-U rate, concurrent / grant, near the call rate)."""
    ramp = concurrent / rate
    grant = grant or max(10, int(ramp / 2))
    result = MemoryRun(concurrent, rate, grant)
    hold_ms = int((ramp + 5) * 1000)
    with running_lab(workdir, LabOptions(grant=grant, overload_lag=0.0)) as lab:
        assert lab.b2bua is not None
        time.sleep(1)
        pid = lab.b2bua.pid
        idle = rss_bytes(pid)
        result.rss_idle_mib = round(idle / 2**20, 1)
        peak_probe: dict[str, int] = {"rss": idle, "calls": 0}

        def sample() -> None:
            active = int(lab.metric("b2bua_calls_active") or 0)
            rss = rss_bytes(pid)
            if active >= peak_probe["calls"]:
                peak_probe.update(rss=rss, calls=active)

        stepdir = workdir / "memory"
        result.step = run_step_sampling(lab, stepdir, rate, ramp, hold_ms, sample)
        result.reached = peak_probe["calls"]
        result.rss_peak_mib = round(peak_probe["rss"] / 2**20, 1)
        if result.reached:
            marginal = (peak_probe["rss"] - idle) / result.reached / 1024
            result.marginal_kib_per_call = round(marginal, 2)
    return result


def run_step_sampling(
    lab: Lab, workdir: Path, rate: float, duration: float, hold_ms: int, sample: Callable[[], None]
) -> Step:
    """run_step, calling `sample()` every second while the caller runs (memory run)."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(1.0):
            try:
                sample()
            except OSError:
                return

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        return run_step(lab, workdir, "memory", rate, duration, hold_ms)
    finally:
        stop.set()
        thread.join(5)


# ---------------------------------------------------------------- report


COLUMNS = (
    ("kind", 9), ("offered", 7), ("achieved", 8), ("calls", 6), ("fail", 5), ("503", 5),
    ("retx", 5), ("p50ms", 7), ("p95ms", 7), ("p99ms", 7), ("cpu%", 6), ("ms/call", 7),
    ("ocs%", 5), ("rssMiB", 7), ("CCR-U", 6), ("billed", 7), ("talk", 7), ("ok", 3),
)  # fmt: skip


def row(step: Step) -> str:
    values = (
        step.kind,
        f"{step.offered:g}",
        f"{step.achieved:g}",
        step.uac_calls,
        step.uac_failed + step.uas_failed,
        step.refused_503,
        step.retransmissions,
        step.setup_p50_ms,
        step.setup_p95_ms,
        step.setup_p99_ms,
        step.cpu_percent,
        step.cpu_ms_per_call,
        step.ocs_cpu_percent,
        step.rss_mib,
        step.ccr_update,
        step.billed_s,
        step.talk_s,
        "yes" if step.sustainable else "no",
    )
    return " ".join(f"{v!s:>{w}}" for v, (_, w) in zip(values, COLUMNS, strict=True))


def header() -> str:
    return " ".join(f"{name:>{w}}" for name, w in COLUMNS)


def print_step(step: Step) -> None:
    print(row(step), flush=True)
    for note in step.notes:
        print(f"{'':>10}{note}", flush=True)


# ---------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="50,100,200,300,400,600,800,1000",
                        help="offered call rates (calls/s), comma-separated")  # fmt: skip
    parser.add_argument("--step-duration", type=float, default=20.0, help="seconds per step")
    parser.add_argument("--hold", type=int, default=1000, help="call hold time (ms)")
    parser.add_argument("--grant", type=int, default=0,
                        help="seconds per grant (0: OCS default); < hold gives CCR-Us")  # fmt: skip
    parser.add_argument("--overload-lag", type=float, default=0.1,
                        help="b2bua [calls] overload_lag for the steps (s)")  # fmt: skip
    parser.add_argument("--max-call-rate", type=float, default=0.0,
                        help="b2bua [calls] max_call_rate for the steps (0: none)")  # fmt: skip
    parser.add_argument("--no-overload", action="store_true", help="skip the overload check")
    parser.add_argument("--memory-calls", type=int, default=3000,
                        help="concurrent calls of the memory run (0: skip it)")  # fmt: skip
    parser.add_argument("--memory-rate", type=float, default=100.0,
                        help="call rate of the memory run (calls/s)")  # fmt: skip
    parser.add_argument("--memory-grant", type=int, default=0,
                        help="seconds per grant, memory run (0: ramp / 2, >= 10)")  # fmt: skip
    parser.add_argument("--profile", action="store_true",
                        help="run b2bua under cProfile; stats in the work directory")  # fmt: skip
    parser.add_argument("--quick", action="store_true",
                        help="rates 50,100,200,300, 10 s steps, 1000 held calls")  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    if args.quick:
        args.rates, args.step_duration, args.memory_calls = "50,100,200,300", 10.0, 1000
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rates = [float(r) for r in args.rates.split(",") if r.strip()]
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    workdir = Path(tempfile.mkdtemp(prefix=f"b2bua-bench-{stamp}-"))
    commit = subprocess.run(
        ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    result: dict[str, object] = {
        "started": stamp,
        "load_before": uptime(),
        "args": vars(args),
        "commit": commit,
    }
    print(f"b2bua bench {stamp}  work directory {workdir}\nload: {result['load_before']}")
    steps: list[Step] = []
    best = 0.0
    try:
        options = LabOptions(
            grant=args.grant,
            overload_lag=args.overload_lag,
            max_call_rate=args.max_call_rate,
            profile=str(workdir / "b2bua.pstats") if args.profile else "",
        )
        with running_lab(workdir, options) as lab:
            print(header())
            for rate in rates:
                step = run_step(lab, workdir / f"step-{rate:g}", "step", rate,
                                args.step_duration, args.hold)  # fmt: skip
                steps.append(step)
                print_step(step)
                if step.sustainable:
                    best = max(best, rate)
                elif step.uac_failed + step.uas_failed > step.uac_calls // 2:
                    break  # far past capacity: higher steps only take longer
        result["highest_sustainable"] = best
        print(f"highest sustainable rate: {best:g} calls/s")
        if not args.no_overload and best:
            # A fresh b2bua, configured as the operator would after this measurement:
            # max_call_rate at the sustainable rate, the lag signal as a backstop.
            limit = args.max_call_rate or best
            print(f"overload: {2 * best:g} calls/s offered, [calls] max_call_rate = {limit:g}")
            options = LabOptions(
                grant=args.grant, overload_lag=args.overload_lag, max_call_rate=limit
            )
            with running_lab(workdir / "overload-lab", options) as lab:
                for kind, rate in (("overload", 2 * best), ("recovery", best)):
                    step = run_step(lab, workdir / kind, kind, rate, args.step_duration, args.hold)
                    steps.append(step)
                    print_step(step)
        result["steps"] = [asdict(s) for s in steps]
        if args.memory_calls:
            mem = memory_run(
                workdir / "memory-lab", args.memory_calls, args.memory_rate, args.memory_grant
            )
            result["memory"] = asdict(mem)
            if mem.step is not None:
                print_step(mem.step)
            print(
                f"memory: {mem.reached} concurrent calls (target {mem.concurrent}), RSS "
                f"{mem.rss_idle_mib} -> {mem.rss_peak_mib} MiB: "
                f"{mem.marginal_kib_per_call} KiB per call"
            )
    finally:
        result["load_after"] = uptime()
        out = RESULTS / f"{stamp}.json"
        out.write_text(json.dumps(result, indent=1, default=str) + "\n")
        print(f"load: {result['load_after']}\nresults: {out}")
        if args.profile:
            print(f"profile: {workdir / 'b2bua.pstats'}")
        elif not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
