"""Operations end to end: the manhole and SIGHUP on the real daemon during a live charged call.

Real processes on loopback: ``twistd b2bua`` with the lab OCS in-process and its manhole,
SIPp on both legs, a telnet client of our own, the OCS ledger read back.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from b2bua.ops.passwd import hash_password
from tests.support.daemon import Daemon
from tests.support.ports import free_port
from tests.support.sipp import Sipp, run_until_done
from tests.support.telnet import TelnetClient

pytestmark = pytest.mark.integration

CALLER = "+15550101"


class OpsLab:
    """The daemon with its OCS and manhole on free ports, a callee, and a console login."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.sip_port, self.callee_port, self.ocs_port = free_port(), free_port(), free_port()
        self.manhole_port = free_port()
        (workdir / "accounts.json").write_text(
            json.dumps({"accounts": [{"subscriber": CALLER, "seconds": 600}]})
        )
        (workdir / "manhole.passwd").write_text(
            f"ops:{hash_password('let-me-in', iterations=1000)}\n"
        )
        self.ledger = workdir / "ledger.jsonl"
        self.config = workdir / "b2bua.conf"
        self.write_config(
            f"[route:all]\nnext_hop = 127.0.0.1:{self.callee_port}\ncharging = orig\n"
        )
        self.daemon = Daemon(self.config, log_path=workdir / "b2bua.log")
        self.daemon.wait_for_log("Diameter peer ocs open")
        self.daemon.wait_for_log("manhole listening on")
        self.sipps: list[Sipp] = []
        self.console = TelnetClient("127.0.0.1", self.manhole_port, timeout=15)
        self.console.login("ops", "let-me-in")

    def write_config(self, routes: str) -> None:
        self.config.write_text(
            f"[sip]\nlisten = udp:127.0.0.1:{self.sip_port}\n"
            "[calls]\ntrusted = 127.0.0.0/8\n"
            f"{routes}"
            "[diameter]\norigin_host = b2bua.test\norigin_realm = test\n"
            "destination_realm = test\nreconnect_interval = 1\n"
            f"[peer:ocs]\nuri = aaa://127.0.0.1:{self.ocs_port}\nhost = ocs.test\n"
            f"[ocs]\nenabled = yes\nlisten = aaa://127.0.0.1:{self.ocs_port}\n"
            "origin_host = ocs.test\norigin_realm = test\n"
            "accounts = accounts.json\nledger = ledger.jsonl\n"
            "[metrics]\nlisten =\n[cdr]\nfile = cdr.jsonl\n"
            f"[manhole]\nlisten = tcp:{self.manhole_port}:interface=127.0.0.1\n"
            "passwd = manhole.passwd\n"
        )

    def start_call(self) -> tuple[Sipp, Sipp]:
        """A charged call that stays up until b2bua sends BYE; both SIPps."""
        callee = Sipp("uas", self.dir, self.callee_port, timeout=60)
        caller = Sipp(
            "charged_uac_wait_bye.xml",
            self.dir,
            free_port(),
            remote=f"127.0.0.1:{self.sip_port}",
            timeout=60,
            service="15550199",
            extra=["-key", "caller", CALLER],
        )
        self.sipps += [callee, caller]
        callee.start()
        caller.start()
        return caller, callee

    def wait_for_confirmed_call(self, timeout: float = 15) -> list[str]:
        """The calls() row of the one confirmed call, split into its columns."""
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = self.console.run("calls()")
            rows = [line.split() for line in text.splitlines()[1:-1]]
            confirmed = [row for row in rows if len(row) >= 7 and row[3] == "confirmed"]
            if confirmed:
                return confirmed[0]
            time.sleep(0.2)
        raise AssertionError(f"no confirmed call:\n{text}\n{self.daemon.log_text()}")

    def entries(self) -> list[dict[str, object]]:
        if not self.ledger.exists():
            return []
        return [json.loads(line) for line in self.ledger.read_text().splitlines() if line]

    def wait_for_terminations(self, count: int, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sum(e["request_type"] == "TERMINATE" for e in self.entries()) >= count:
                return
            time.sleep(0.05)
        raise AssertionError(f"{count} CCR-T not seen in the ledger:\n{self.entries()}")

    def close(self) -> None:
        self.console.close()
        for sipp in self.sipps:
            sipp.stop()
        self.daemon.stop()


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[OpsLab]:
    lab = OpsLab(tmp_path)
    yield lab
    lab.close()
    log = lab.daemon.log_text()
    assert "Traceback" not in log, log
    assert "let-me-in" not in log, log


def test_kill_from_the_console_sends_bye_to_both_legs_and_one_ccr_t(lab: OpsLab) -> None:
    """calls() shows the live call with its Ro session; kill(id) ends it: 2 BYEs, 1 CCR-T."""
    caller, callee = lab.start_call()
    call_id, caller_uri, _, _, _, units, session = lab.wait_for_confirmed_call()
    assert CALLER in caller_uri
    assert session.startswith("b2bua.test;")
    granted = re.fullmatch(r"(\d+)/0s", units)  # the CCA-I's grant; nothing reported yet
    assert granted and int(granted.group(1)) > 0, units
    detail = lab.console.run(f"call({call_id!r})")
    assert re.search(r"^state +confirmed$", detail, re.MULTILINE) and session in detail
    stats = lab.console.run("stats()")
    assert "initial_ccrs" in stats and "killed_calls" in stats
    assert "Open" in lab.console.run("peers()")
    assert "operator kill" in lab.console.run(f"kill({call_id!r})")
    assert run_until_done(caller, callee, timeout=30) == [0, 0], caller.report() + callee.report()
    assert "BYE" in caller.messages() and "BYE" in callee.messages()
    lab.wait_for_terminations(1)
    kinds = [e["request_type"] for e in lab.entries()]
    assert kinds.count("INITIAL") == 1 and kinds.count("TERMINATE") == 1, lab.entries()
    assert f"call {call_id}: ended: operator kill" in lab.daemon.log_text()
    assert lab.console.run("calls()") == "no calls"


def test_sighup_reloads_routes_while_a_call_is_up_and_the_call_goes_on(lab: OpsLab) -> None:
    """A changed route file is applied on SIGHUP; the call in progress is not touched."""
    caller, callee = lab.start_call()
    call_id = lab.wait_for_confirmed_call()[0]
    lab.write_config(
        "[route:premium]\npriority = 10\nuser_prefix = +1900\nnext_hop = 127.0.0.1:9\n"
        f"[route:all]\nnext_hop = 127.0.0.1:{lab.callee_port}\ncharging = orig\n"
    )
    os.kill(lab.daemon.process.pid, signal.SIGHUP)
    lab.daemon.wait_for_log("configuration reloaded")
    routes = lab.console.run("routes()").splitlines()
    assert [row.split()[0] for row in routes[1:]] == ["premium", "all"]
    time.sleep(1.0)
    row = lab.wait_for_confirmed_call()
    assert row[0] == call_id and caller.process is not None and caller.process.poll() is None
    assert lab.entries()[-1]["request_type"] != "TERMINATE"
    lab.console.run(f"kill({call_id!r})")
    assert run_until_done(caller, callee, timeout=30) == [0, 0], caller.report() + callee.report()
    lab.wait_for_terminations(1)
    assert "ended: operator kill" in lab.daemon.log_text()


def test_sigterm_ends_a_live_call_with_bye_on_both_legs_and_a_ccr_t_then_exits_0(
    lab: OpsLab,
) -> None:
    """SIGTERM (no grace): the call gets BYE on both legs and its one CCR-T, the CDR says
    shutdown, the Diameter peer gets DPR, and the daemon exits with status 0."""
    caller, callee = lab.start_call()
    call_id = lab.wait_for_confirmed_call()[0]
    lab.console.close()
    lab.daemon.terminate()
    assert run_until_done(caller, callee, timeout=30) == [0, 0], caller.report() + callee.report()
    assert "BYE" in caller.messages() and "BYE" in callee.messages()
    assert lab.daemon.process.wait(30) == 0, lab.daemon.log_text()
    kinds = [e["request_type"] for e in lab.entries()]
    assert kinds.count("INITIAL") == 1 and kinds.count("TERMINATE") == 1, lab.entries()
    log = lab.daemon.log_text()
    assert "SIGTERM: stopping" in log and f"call {call_id}: ended: shutdown" in log, log
    assert "DPR/DPA" in log, log
    (record,) = [json.loads(line) for line in (lab.dir / "cdr.jsonl").read_text().splitlines()]
    assert record["call_id"] == call_id and record["end_reason"] == "shutdown"
    billed = sum(int(str(e["debited"])) for e in lab.entries())
    assert record["billed_secs"] == billed
