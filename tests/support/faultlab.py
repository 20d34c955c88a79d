"""The fault matrix's lab: the daemon, a Diameter relay, optional UDP loss, and the checks.

One `FaultLab` per test case: ``twistd b2bua`` with the lab OCS in-process (or a separate
OCS, or none), every CCR crossing a `tests.support.diameter_relay` process (which can inject
one fault and logs what b2bua sent and was given), optionally a `tests.support.lossy_udp`
relay on each SIP leg, SIPp on both legs, a CDR file and the manhole. The checks every case
makes are here: each Ro session b2bua opened got exactly one CCR-Termination, the seconds it
reported equal the call's talk time within 1 s, nothing is left behind (calls, Ro sessions,
SIP transactions, Diameter requests, wheel timers back to their count before the call), and
no traceback in any log.

The store cases (``tests.integration.test_faults_store``) run the OCS as its own process
(``ocs="standalone"``, still behind the relay) so that it outlives a killed b2bua, add a
``[store]`` section, kill and start the daemon again (:meth:`FaultLab.restart`) and start a
second instance on the same store (:meth:`FaultLab.start_instance`).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from b2bua.ops.passwd import hash_password
from tests.support.daemon import REPO, Daemon, _env, start_plugin
from tests.support.ports import free_port
from tests.support.sipp import Sipp
from tests.support.telnet import TelnetClient

CALLERS = ("+15550101", "+4930111")  # charged subscribers: fault_uac and b2b_uac_vanish
WAIT = 15.0  # bound on any single wait of the lab
PASSWORD = "fault-lab"  # the manhole's, on loopback


def wait_until(check: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    """Poll ``check`` until it returns something true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(0.1)


class Helper:
    """A ``python -m tests.support.X`` process of the lab (a relay), stopped at the end."""

    def __init__(self, module: str, args: list[str], log: Path) -> None:
        self.log = log
        self._out = open(log, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=REPO,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            env=_env(),
        )
        wait_until(lambda: "relaying" in log.read_text() or self.process.poll(), module)
        assert self.process.poll() is None, log.read_text()

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._out.close()
        return self.log.read_text()


@dataclass(frozen=True)
class Probe:
    """What the manhole says is live in the daemon."""

    calls: int
    ro_sessions: int
    transactions: int
    diameter_pending: int
    terminations_pending: int
    timers: int

    @property
    def idle(self) -> bool:
        return not (
            self.calls
            or self.ro_sessions
            or self.transactions
            or self.diameter_pending
            or self.terminations_pending
        )


PROBE = (
    "print('PROBE', root.calls.active, root.charging.active_sessions, len(root.endpoint.table),"
    " root.diameter.pending_count, len(root.charging.pending_terminations),"
    " len(root.timers._wheel))"
)
#: Classes of per-call state: after the calls of a burst ended, as many live as before.
TRACKED = (
    "Bridge",
    "Leg",
    "Dialog",
    "RoSession",
    "_Live",
    "InviteClientTransaction",
    "NonInviteClientTransaction",
    "InviteServerTransaction",
    "NonInviteServerTransaction",
    "Deferred",
)
OBJECTS = (
    "import gc, collections; _ = gc.collect(); _c = collections.Counter(type(o).__name__ for o in"
    " gc.get_objects()); print('OBJECTS', len(gc.get_objects()),"
    f" {', '.join(f'_c[{name!r}]' for name in TRACKED)}); del _c"
)
#: A CCR-T that found no peer is resent after 30 s by default; the lab shortens that so
#: that a case whose CCR-T fails ends in seconds. Only the interval changes.
FAST_TERMINATION_RETRY = "termination_retry_interval = 2\n"


class FaultLab:
    """The processes of one fault case; `close` stops them all and checks their logs."""

    def __init__(
        self,
        workdir: Path,
        *,
        charging: str = "",
        diameter: str = "",
        calls: str = "",
        sip: str = "t1 = 0.05\nt4 = 1\n",
        fault: tuple[str, ...] = ("--fault", "none"),
        ocs: str = "inprocess",
        loss: tuple[str, ...] | None = None,
        seconds: int = 600,
        peers: str | None = None,
        callee_transport: str = "udp",
        store: str = "",
    ) -> None:
        """``ocs``: "inprocess" (the lab OCS behind the relay), "standalone" (``twistd ocs``
        behind the relay), "down" (no OCS, nothing listening where the peer is) or "external"
        (``peers`` names running OCSs, no relay). ``store``: a ``[store]`` section."""
        self.dir = workdir
        self.helpers: list[Helper] = []
        self.sipps: list[Sipp] = []
        self.daemons: list[Daemon] = []  # every b2bua process started, for the log checks
        self.others: list[TelnetClient] = []
        self.instance_ports: dict[str, int] = {}  # SIP port of each start_instance
        self.sip_port, self.callee_port, self.ocs_port = free_port(), free_port(), free_port()
        self.relay_port, self.manhole_port = free_port(), free_port()
        self.metrics_port = free_port()
        self.front_a = self.front_b = 0
        (workdir / "accounts.json").write_text(
            json.dumps({"accounts": [{"subscriber": s, "seconds": seconds} for s in CALLERS]})
        )
        (workdir / "manhole.passwd").write_text(f"ops:{hash_password(PASSWORD, iterations=1000)}\n")
        self.relay_log = workdir / "relay.jsonl"
        self.callee_transport = callee_transport
        next_hop = f"{self.callee_port}"
        listen = f"udp:127.0.0.1:{self.sip_port}"
        if callee_transport == "tcp":  # RFC 3261 Timer D is 0 on reliable transports
            next_hop += ";transport=tcp"
            listen += f", tcp:127.0.0.1:{self.sip_port}"
        if loss is not None:
            self.front_a, self.front_b = free_port(), free_port()
            pairs = ["--pair", f"{self.front_a}:{self.sip_port}"]
            pairs += ["--pair", f"{self.front_b}:{self.callee_port}"]
            self.helpers.append(
                Helper("tests.support.lossy_udp", [*pairs, *loss], workdir / "lossy.log")
            )
            next_hop = f"{self.front_b}"
        ocs_section = ""
        if ocs == "inprocess":
            ocs_section = (
                f"[ocs]\nenabled = yes\nlisten = aaa://127.0.0.1:{self.ocs_port}\n"
                "origin_host = ocs.test\norigin_realm = test\n"
                "accounts = accounts.json\nledger = ledger.jsonl\n"
            )
        self.ocs: Daemon | None = None
        if ocs == "standalone":
            ocs_conf = workdir / "ocs.conf"
            ocs_conf.write_text(
                f"[ocs]\nlisten = aaa://127.0.0.1:{self.ocs_port}\n"
                "origin_host = ocs.test\norigin_realm = test\n"
                f"accounts = {workdir / 'accounts.json'}\nledger = {workdir / 'ledger.jsonl'}\n"
            )
            self.ocs = start_plugin("ocs", ocs_conf, log_path=workdir / "ocs.log")
            self.ocs.wait_for_log("OCS listening on")
        if ocs in ("inprocess", "standalone"):
            self.helpers.append(
                Helper(
                    "tests.support.diameter_relay",
                    [
                        "--listen",
                        str(self.relay_port),
                        "--upstream",
                        str(self.ocs_port),
                        "--log",
                        str(self.relay_log),
                        *fault,
                    ],
                    workdir / "relay.log",
                )
            )
        if peers is None:
            peers = f"[peer:ocs]\nuri = aaa://127.0.0.1:{self.relay_port}\nhost = ocs.test\n"
        self.config = workdir / "b2bua.conf"
        self._common = (
            f"[calls]\ntrusted = 127.0.0.0/8\n{calls}"
            f"[route:all]\nnext_hop = 127.0.0.1:{next_hop}\ncharging = orig\n"
        )
        self._diameter = (
            f"destination_realm = test\nreconnect_interval = 1\ntx_timeout = 2\n{diameter}{peers}"
        )
        self._charging = f"[charging]\n{FAST_TERMINATION_RETRY}{charging}"
        self.config.write_text(
            f"[sip]\nlisten = {listen}\n{sip}"
            + self._common
            + "[diameter]\norigin_host = b2bua.test\norigin_realm = test\n"
            + self._diameter
            + ocs_section
            + f"[metrics]\nlisten = tcp:{self.metrics_port}:interface=127.0.0.1\n"
            f"[manhole]\nlisten = tcp:{self.manhole_port}:interface=127.0.0.1\n"
            "passwd = manhole.passwd\n"
            "[cdr]\nfile = cdr.jsonl\n" + self._charging + store
        )
        self._sip = sip
        self.wait_for_ocs = ocs != "down"
        self.daemon = self._start(self.config, "b2bua.log")
        self.console = self._login(self.manhole_port)
        self.baseline = self.probe()

    def _start(self, config: Path, log: str) -> Daemon:
        daemon = Daemon(config, log_path=self.dir / log)
        self.daemons.append(daemon)
        daemon.wait_for_log("b2bua started")
        if self.wait_for_ocs:
            daemon.wait_for_log("Diameter peer ocs open")
        return daemon

    def _login(self, port: int) -> TelnetClient:
        console = TelnetClient("127.0.0.1", port, timeout=WAIT)
        console.login("ops", PASSWORD)
        return console

    def restart(self, *, kill: bool = True) -> Daemon:
        """SIGKILL (or stop) the daemon and start it again on the same configuration."""
        self.console.close()
        if kill:
            self.daemon.process.kill()
            self.daemon.process.wait(WAIT)
        self.daemon.stop()
        self.daemon = self._start(self.config, f"b2bua-{len(self.daemons) + 1}.log")
        self.console = self._login(self.manhole_port)
        return self.daemon

    def start_instance(self, name: str, store: str) -> tuple[Daemon, TelnetClient]:
        """Another b2bua on the same OCS relay and callee, with its own ``store`` section
        (another instance_id), SIP, manhole and CDR file; nothing else configured."""
        sip_port, manhole_port = free_port(), free_port()
        config = self.dir / f"{name}.conf"
        config.write_text(
            f"[sip]\nlisten = udp:127.0.0.1:{sip_port}\n{self._sip}"
            + self._common
            + f"[diameter]\norigin_host = {name}.test\norigin_realm = test\n"
            + self._diameter
            + "[metrics]\nlisten =\n"
            f"[manhole]\nlisten = tcp:{manhole_port}:interface=127.0.0.1\n"
            "passwd = manhole.passwd\n"
            f"[cdr]\nfile = cdr-{name}.jsonl\n" + self._charging + store
        )
        self.instance_ports[name] = sip_port
        daemon = self._start(config, f"{name}.log")
        console = self._login(manhole_port)
        self.others.append(console)
        return daemon, console

    # -- the legs --

    def callee(self, scenario: str = "fault_uas.xml", *, calls: int = 1) -> Sipp:
        extra = ["-key", "contact_port", str(self.front_b or self.callee_port)]
        sipp = Sipp(
            scenario,
            self.dir,
            self.callee_port,
            transport=self.callee_transport,
            timeout=40,
            calls=calls,
            extra=extra,
        )
        self.sipps.append(sipp)
        return sipp.start()

    def caller(
        self,
        scenario: str = "fault_uac.xml",
        *,
        hold_ms: int = 2000,
        calls: int = 1,
        rate: float = 1,
    ) -> Sipp:
        extra = ["-key", "caller", CALLERS[0], "-d", str(hold_ms), "-max_retrans", "10"]
        remote = self.front_a or self.sip_port
        sipp = Sipp(
            scenario,
            self.dir,
            free_port(),
            remote=f"127.0.0.1:{remote}",
            timeout=40,
            calls=calls,
            rate=rate,
            service="15550199",
            extra=extra,
        )
        self.sipps.append(sipp)
        return sipp.start()

    # -- what happened --

    def cdrs(self) -> list[dict[str, Any]]:
        """The CDRs every instance wrote."""
        return [
            json.loads(line)
            for path in sorted(self.dir.glob("cdr*.jsonl"))
            for line in path.read_text().splitlines()
            if line
        ]

    def relay_records(self) -> list[dict[str, Any]]:
        if not self.relay_log.exists():
            return []
        return [json.loads(line) for line in self.relay_log.read_text().splitlines() if line]

    def probe(self, console: TelnetClient | None = None) -> Probe:
        text = (console or self.console).run(PROBE)
        line = next(line for line in text.splitlines() if line.startswith("PROBE "))
        return Probe(*(int(value) for value in line.split()[1:]))

    def objects(self, console: TelnetClient | None = None) -> dict[str, int]:
        """Live objects after a full collection: the total and each class of :data:`TRACKED`
        (what a leaked call would keep). RSS is no measure: it does not shrink."""
        text = (console or self.console).run(OBJECTS)
        line = next(line for line in text.splitlines() if line.startswith("OBJECTS "))
        values = [int(value) for value in line.split()[1:]]
        return dict(zip(("total", *TRACKED), values, strict=True))

    def settle(self, timeout: float = WAIT, console: TelnetClient | None = None) -> Probe:
        """Wait until nothing is live and the wheel holds as many timers as at the start."""
        timers = self.baseline.timers
        probes: list[Probe] = []

        def settled() -> bool:
            probes.append(self.probe(console))
            return probes[-1].idle and probes[-1].timers == timers

        try:
            wait_until(settled, "the daemon back to its baseline", timeout)
        except AssertionError:
            raise AssertionError(f"baseline {self.baseline}, last {probes[-1]}") from None
        return probes[-1]

    def check_money(self, *, charged: bool = True) -> dict[str, int]:
        """Each Ro session opened has one CCR-T; its used seconds match its call's talk time.

        Returns the used seconds per opened session. ``charged=False``: the call went on
        uncharged after a failure, so only the seconds up to the failure are reported.
        """
        records = self.relay_records()
        requests = [r for r in records if r["dir"] == "request"]
        delivered = [
            r
            for r in records
            if r["dir"] == "answer" and r["fault"] not in ("drop", "garbage", "late")
        ]
        opened = {r["session"] for r in delivered if r["type"] == 1 and r["result"] == 2001}
        used: dict[str, int] = {}
        for session in opened:
            numbers = {r["number"] for r in requests if r["session"] == session and r["type"] == 3}
            assert len(numbers) == 1, (session, requests)
            reports = {(r["number"], r["used"] or 0) for r in requests if r["session"] == session}
            assert len({n for n, _ in reports}) == len(reports), f"a resend changed: {reports}"
            used[session] = sum(u for _, u in reports)
        for cdr in self.cdrs():
            sessions = [s for s in cdr["ro_session_ids"] if s in opened]
            if not sessions:
                continue
            reported = sum(used[s] for s in sessions)
            talk = float(cdr["duration"])
            if charged:
                assert abs(reported - talk) <= 1.0, (cdr, used)
            else:
                assert reported <= talk + 1.0, (cdr, used)
        return used

    def check_clean(self, timeout: float = WAIT) -> None:
        """No call, Ro session, transaction, Diameter request or kept CCR-T is left, and the
        timer wheel holds as many timers as before the calls (within ``timeout``); /metrics
        says the same."""
        self.settle(timeout)
        metrics = self.scrape()
        for gauge in ("b2bua_calls_active", "b2bua_ro_sessions_active", "b2bua_sip_transactions"):
            assert metrics[gauge] == 0, (gauge, metrics)

    def scrape(self) -> dict[str, float]:
        """The daemon's /metrics, sample name (with labels) -> value."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=WAIT) as response:
            text = response.read().decode()
        samples = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                samples[name] = float(value)
        return samples

    def close(self) -> None:
        self.console.close()
        for console in self.others:
            console.close()
        for sipp in self.sipps:
            sipp.stop()
        for daemon in self.daemons:
            daemon.stop()
        logs = [helper.stop() for helper in self.helpers]
        if self.ocs is not None:
            self.ocs.stop()
            logs.append(self.ocs.log_text())
        for text in [*(daemon.log_text() for daemon in self.daemons), *logs]:
            assert "Traceback" not in text, text
