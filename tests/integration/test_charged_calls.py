"""Charged calls end to end: SIPp caller -> twistd b2bua (lab OCS in-process) -> SIPp callee.

Real processes on loopback: the daemon as an operator runs it, SIPp on both legs, the OCS
ledger read back to check that what was billed is the talk time SIPp saw.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.daemon import Daemon
from tests.support.ports import free_port
from tests.support.sipp import Sipp, run_until_done

pytestmark = pytest.mark.integration


class ChargedLab:
    """The daemon with its OCS on free ports, a callee, and helpers to read the ledger."""

    def __init__(
        self,
        workdir: Path,
        accounts: list[dict[str, object]],
        charging: str = "",
        calls: str = "",
        *,
        route: str = "",
        sip: str = "",
    ) -> None:
        self.dir = workdir
        self.sip_port, self.callee_port, self.ocs_port = free_port(), free_port(), free_port()
        (workdir / "accounts.json").write_text(json.dumps({"accounts": accounts}))
        self.ledger = workdir / "ledger.jsonl"
        config = workdir / "b2bua.conf"
        config.write_text(
            f"[sip]\nlisten = udp:127.0.0.1:{self.sip_port}\n{sip}"
            f"[calls]\ntrusted = 127.0.0.0/8\n{calls}"
            f"[route:all]\nnext_hop = 127.0.0.1:{self.callee_port}\ncharging = orig\n{route}"
            "[diameter]\norigin_host = b2bua.test\norigin_realm = test\n"
            "destination_realm = test\nreconnect_interval = 1\n"
            f"[peer:ocs]\nuri = aaa://127.0.0.1:{self.ocs_port}\nhost = ocs.test\n"
            f"[ocs]\nenabled = yes\nlisten = aaa://127.0.0.1:{self.ocs_port}\n"
            "origin_host = ocs.test\norigin_realm = test\n"
            "accounts = accounts.json\nledger = ledger.jsonl\n"
            f"[charging]\n{charging}"
            "[metrics]\nlisten =\n"  # not the default port, shared by every daemon
            "[cdr]\nfile = cdr.jsonl\n"
        )
        self.daemon = Daemon(config, log_path=workdir / "b2bua.log")
        self.daemon.wait_for_log("Diameter peer ocs open")
        self.sipps: list[Sipp] = []

    def callee(self, scenario: str = "uas", **kwargs: object) -> Sipp:
        sipp = Sipp(scenario, self.dir, self.callee_port, timeout=60, **kwargs)  # type: ignore[arg-type]
        self.sipps.append(sipp)
        return sipp.start()

    def caller(self, scenario: str, caller: str, *, hold_ms: int = 0, **kwargs: object) -> Sipp:
        extra = ["-key", "caller", caller, "-d", str(hold_ms)]
        sipp = Sipp(
            scenario,
            self.dir,
            free_port(),
            remote=f"127.0.0.1:{self.sip_port}",
            timeout=60,
            service="15550199",
            extra=extra,
            **kwargs,  # type: ignore[arg-type]
        )
        self.sipps.append(sipp)
        return sipp.start()

    def entries(self) -> list[dict[str, object]]:
        if not self.ledger.exists():
            return []
        return [json.loads(line) for line in self.ledger.read_text().splitlines() if line]

    def cdrs(self, kind: str) -> list[dict[str, object]]:
        """The CDR lines written so far of one kind ("call" or "message")."""
        path = self.dir / "cdr.jsonl"
        if not path.exists():
            return []
        lines = [json.loads(line) for line in path.read_text().splitlines() if line]
        return [line for line in lines if line["kind"] == kind]

    def billed(self, subscriber: str) -> int:
        return sum(int(e["debited"]) for e in self.entries() if e["subscriber"] == subscriber)  # type: ignore[call-overload]

    def wait_for_terminations(self, count: int, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sum(e["request_type"] == "TERMINATE" for e in self.entries()) >= count:
                return
            time.sleep(0.05)
        raise AssertionError(f"{count} CCR-T not seen in the ledger:\n{self.entries()}")

    def close(self) -> None:
        for sipp in self.sipps:
            sipp.stop()
        self.daemon.stop()


@pytest.fixture
def make_lab(tmp_path: Path) -> Iterator[object]:
    labs: list[ChargedLab] = []

    def make(accounts: list[dict[str, object]], charging: str = "", calls: str = "") -> ChargedLab:
        lab = ChargedLab(tmp_path, accounts, charging, calls)
        labs.append(lab)
        return lab

    yield make
    for lab in labs:
        lab.close()
        log = lab.daemon.log_text()
        assert "Traceback" not in log, log


def test_a_charged_call_is_billed_its_talk_time(make_lab) -> None:
    """A 3 s call: one CCR-I, one CCR-T reporting 3 s rounded up, balance debited once."""
    lab = make_lab([{"subscriber": "+15550101", "seconds": 600}])
    callee = lab.callee()
    caller = lab.caller("charged_uac.xml", "+15550101", hold_ms=3000)
    assert run_until_done(caller, callee, timeout=40) == [0, 0], caller.report() + callee.report()
    lab.wait_for_terminations(1)
    kinds = [(e["request_type"], e["result_code"]) for e in lab.entries()]
    assert kinds == [("INITIAL", 2001), ("TERMINATE", 2001)]
    billed = lab.billed("15550101")
    assert 3 <= billed <= 4  # 3.0 s of talk plus signalling, rounded up to whole seconds


def test_credit_runs_out_both_legs_get_bye_and_exactly_the_credit_is_billed(make_lab) -> None:
    """10 s of credit, 4 s units, timer_buffer 1: CCR-Us, then BYE to both legs, 10 s billed."""
    lab = make_lab(
        [{"subscriber": "+15550100", "seconds": 10}],
        "reservation_units = 4\ninterim_update_credits = 4\ntimer_buffer = 1\n",
    )
    callee = lab.callee("uas")
    caller = lab.caller("charged_uac_wait_bye.xml", "+15550100")
    assert run_until_done(caller, callee, timeout=40) == [0, 0], caller.report() + callee.report()
    ended = re.search(r"ended: credit exhausted after ([\d.]+)s", lab.daemon.log_text())
    assert ended, lab.daemon.log_text()
    assert 10.0 <= float(ended.group(1)) <= 10.3  # torn down when the 10 s were used up
    lab.wait_for_terminations(1)
    entries = lab.entries()
    kinds = [e["request_type"] for e in entries]
    assert kinds[0] == "INITIAL" and kinds[-1] == "TERMINATE" and "UPDATE" in kinds
    assert kinds.count("TERMINATE") == 1
    assert lab.billed("15550100") == 10
    assert entries[-1]["reserved_after"] == 0 and entries[-1]["balance_after"] == 0


def test_a_caller_without_credit_gets_402_and_no_b_leg(make_lab) -> None:
    """No credit: the CCA-I says 4012, the caller gets 402, the callee never sees an INVITE."""
    lab = make_lab([{"subscriber": "+15550102", "seconds": 0}])
    callee = lab.callee("uas")
    caller = lab.caller("charged_uac_refused.xml", "+15550102")
    assert run_until_done(caller) == [0], caller.report()
    assert "INVITE" not in callee.messages()
    assert [(e["request_type"], e["result_code"]) for e in lab.entries()] == [("INITIAL", 4012)]
    assert lab.billed("15550102") == 0


def test_an_unknown_caller_gets_403(make_lab) -> None:
    """A caller the OCS does not know (5030) is refused 403 by the default result-code map."""
    lab = make_lab([{"subscriber": "+15550101", "seconds": 600}])
    callee = lab.callee("uas")
    caller = lab.caller("charged_uac_unknown.xml", "+15559999")
    assert run_until_done(caller) == [0], caller.report()
    assert "INVITE" not in callee.messages()
    assert [(e["request_type"], e["result_code"]) for e in lab.entries()] == [("INITIAL", 5030)]


def raw_invite(port: int, local_port: int) -> bytes:
    return (
        f"INVITE sip:15550199@127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{local_port};branch=z9hG4bK-late;rport\r\n"
        "From: <sip:+15550101@lab.example;user=phone>;tag=late\r\n"
        f"To: <sip:15550199@127.0.0.1:{port}>\r\n"
        "Call-ID: late-call@test\r\n"
        "CSeq: 1 INVITE\r\n"
        f"Contact: <sip:late@127.0.0.1:{local_port}>\r\n"
        "Max-Forwards: 70\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def test_sigterm_refuses_new_calls_and_lets_calls_finish_within_the_grace(make_lab) -> None:
    """SIGTERM with shutdown_grace 10: a new INVITE gets 503 + Retry-After, the call in
    progress ends by its own BYE and is billed once, then the daemon exits."""
    lab = make_lab([{"subscriber": "+15550101", "seconds": 600}], calls="shutdown_grace = 10\n")
    callee = lab.callee()
    caller = lab.caller("charged_uac.xml", "+15550101", hold_ms=3000)
    lab.daemon.wait_for_log(": answered")
    lab.daemon.terminate()
    lab.daemon.wait_for_log("may go on for up to 10s")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)
        sock.sendto(raw_invite(lab.sip_port, sock.getsockname()[1]), ("127.0.0.1", lab.sip_port))
        answer = b""
        while b"SIP/2.0 1" in answer[:10] or not answer:
            answer = sock.recv(65536)
    assert answer.startswith(b"SIP/2.0 503"), answer
    assert b"\r\nRetry-After: 10" in answer
    assert run_until_done(caller, callee, timeout=40) == [0, 0], caller.report() + callee.report()
    assert lab.daemon.process.wait(20) == 0  # a stop asked for: exit status 0
    log = lab.daemon.log_text()
    assert "ended: caller hung up" in log and "for shutdown" not in log, log
    lab.wait_for_terminations(1)
    assert 3 <= lab.billed("15550101") <= 4
