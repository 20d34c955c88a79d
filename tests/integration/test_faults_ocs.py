"""The OCS side of the fault matrix (issue 11): real processes on loopback, one fault each.

Every case runs ``twistd b2bua`` with the lab OCS, a fault-injecting Diameter relay between
them (`tests.support.diameter_relay`) and SIPp on both legs, then checks the SIP outcome,
that each Ro session opened got exactly one CCR-Termination, that the seconds reported match
the talk time within 1 s, that nothing is left live in the daemon, and that no log holds a
traceback (`tests.support.faultlab`). Reservations are 3 s with a 1 s timer buffer, so a
3 s call makes CCR-Updates; Tx is 2 s.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ocs.redis_fixture import RedisServer, redis_server
from tests.support.daemon import start_plugin
from tests.support.faultlab import CALLERS, FaultLab, wait_until
from tests.support.ports import free_port
from tests.support.sipp import run_until_done

__all__ = ["redis_server"]  # the session fixture, re-exported for pytest to find here

pytestmark = pytest.mark.integration

UNITS = "reservation_units = 3\ninterim_update_credits = 3\ntimer_buffer = 1\n"


@pytest.fixture
def labs(tmp_path: Path) -> Iterator[list[FaultLab]]:
    """Labs a test starts; all closed (and their logs checked) at the end."""
    started: list[FaultLab] = []
    yield started
    for lab in started:
        lab.close()


def ended(lab: FaultLab) -> dict[str, object]:
    """The one CDR of the case, once written."""
    cdrs = wait_until(lab.cdrs, "a CDR line")
    assert len(cdrs) == 1, cdrs
    return cdrs[0]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("ccfh", "answered"),
    [("terminate", False), ("continue", True), ("retry_and_terminate", False)],
)
def test_ocs_down_when_the_call_arrives(
    labs: list[FaultLab], tmp_path: Path, ccfh: str, answered: bool
) -> None:
    """No OCS at all: TERMINATE and RETRY_AND_TERMINATE refuse the call with 500, CONTINUE
    lets it through uncharged; no Ro session is opened, so no CCR-T is owed."""
    lab = FaultLab(tmp_path, charging=f"failure_handling = {ccfh}\n", ocs="down")
    labs.append(lab)
    callee = lab.callee()
    caller = lab.caller("fault_uac.xml" if answered else "fault_uac_refused.xml")
    statuses = run_until_done(caller, timeout=30)
    assert statuses == [0], caller.report()
    cdr = ended(lab)
    if answered:
        assert run_until_done(callee, timeout=10) == [0], callee.report()
        assert cdr["answer_time"] is not None and cdr["billed_secs"] in (None, 0), cdr
    else:
        assert cdr["sip_status"] == 500 and cdr["answer_time"] is None, cdr
        assert "INVITE" not in callee.messages()
    lab.check_clean()
    assert lab.relay_records() == []


# fault and the CC-Request-Type it hits, CCFH, caller scenario, how the call ends
# ("refused": 500 before any B-leg; else the CDR end reason), and whether every second of
# talk is reported (False: the call went on uncharged after the failure, CCFH CONTINUE).
CASES: dict[str, tuple[tuple[str, int], str, str, str, bool]] = {
    "cca_i_after_tx_terminate": (
        ("late", 1), "terminate", "fault_uac_refused.xml", "refused", True),
    "cca_i_after_tx_retry": (
        ("late", 1), "retry_and_terminate", "fault_uac.xml", "caller hung up", True),

    "cca_u_after_tx_continue": (
        ("late", 2), "continue", "fault_uac.xml", "caller hung up", True),
    "cca_i_garbage_terminate": (
        ("garbage", 1), "terminate", "fault_uac_refused.xml", "refused", True),
    "cca_u_garbage_continue": (
        ("garbage", 2), "continue", "fault_uac.xml", "caller hung up", True),
    "ccr_u_connection_closed_terminate": (
        ("close", 2), "terminate", "charged_uac_wait_bye.xml", "error", True),
    "ccr_t_connection_reset": (
        ("reset", 3), "terminate", "fault_uac.xml", "caller hung up", True),
    "cca_i_duplicate": (
        ("duplicate", 1), "terminate", "fault_uac.xml", "caller hung up", True),
    "cca_u_duplicate": (
        ("duplicate", 2), "terminate", "fault_uac.xml", "caller hung up", True),
    # The grant (3 s) runs out at t=3 while the CCR-U sent at t=2 waits for its answer (Tx
    # fails it at t=4): the call ends at t=3, as for credit exhaustion, 3 s talked and billed.
    "cca_u_after_tx_terminate": (
        ("late", 2), "terminate", "charged_uac_wait_bye.xml", "credit exhausted", True),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_ocs_fault(labs: list[FaultLab], tmp_path: Path, case: str) -> None:
    """One OCS fault on one CCR: the call ends as the CCFH says and the money adds up."""
    (fault, on), ccfh, scenario, outcome, charged = CASES[case]
    lab = FaultLab(
        tmp_path,
        charging=f"failure_handling = {ccfh}\n{UNITS}",
        diameter="watchdog_interval = 6\n",  # a reconnected peer is usable after 3 DWAs
        fault=("--fault", fault, "--on", str(on), "--hold", "3"),
    )
    labs.append(lab)
    callee = lab.callee()
    caller = lab.caller(scenario, hold_ms=3500)
    assert run_until_done(caller, timeout=40) == [0], caller.report() + lab.daemon.log_text()
    cdr = ended(lab)
    if outcome == "refused":
        assert cdr["sip_status"] == 500 and cdr["answer_time"] is None, cdr
        assert "INVITE" not in callee.messages()
    else:
        assert run_until_done(callee, timeout=10) == [0], callee.report()
        assert f"ended: {outcome}" in lab.daemon.log_text(), lab.daemon.log_text()
    assert any(r["fault"] for r in lab.relay_records()), "the fault was never injected"
    lab.check_clean(timeout=45)  # RFC 3539 REOPEN: 3 x Tw before a kept CCR-T can go
    lab.check_money(charged=charged)


def test_ocs_killed_mid_call_charging_goes_on_with_the_alternate(
    labs: list[FaultLab], tmp_path: Path, redis_server: RedisServer
) -> None:
    """Two OCS processes on one Redis; the one serving the call is SIGKILLed after the
    CCA-I: the CCR-Us and the CCR-T go to the other (RFC 4006 §5.7), the call is not cut,
    and the Redis-backed ledger debits the talk time once."""
    accounts = tmp_path / "ocs-accounts.json"
    accounts.write_text(
        json.dumps({"accounts": [{"subscriber": s, "seconds": 600} for s in CALLERS]})
    )
    prefix = f"test:faults:{free_port()}:"
    ports = {"a": free_port(), "b": free_port()}
    daemons = {}
    for name, port in ports.items():
        config = tmp_path / f"ocs-{name}.conf"
        config.write_text(
            f"[ocs]\nlisten = aaa://127.0.0.1:{port}\norigin_host = ocs-{name}.test\n"
            f"origin_realm = test\naccounts = {accounts}\nledger = {tmp_path}/ledger-{name}\n"
            f"backend = redis\nredis_url = redis://{redis_server.host}:{redis_server.port}/0\n"
            f"key_prefix = {prefix}\n"
        )
        daemons[name] = start_plugin("ocs", config, log_path=tmp_path / f"ocs-{name}.log")
    try:
        for daemon in daemons.values():
            daemon.wait_for_log("OCS listening on")
        lab = FaultLab(
            tmp_path,
            charging=UNITS,
            ocs="external",
            diameter="watchdog_interval = 6\n",
            peers=(
                f"[peer:ocs]\nuri = aaa://127.0.0.1:{ports['a']}\nhost = ocs-a.test\n"
                f"[peer:alt]\nuri = aaa://127.0.0.1:{ports['b']}\nhost = ocs-b.test\n"
                "priority = 2\n"
            ),
        )
        labs.append(lab)
        lab.daemon.wait_for_log("Diameter peer alt open")
        callee = lab.callee()
        caller = lab.caller("fault_uac.xml", hold_ms=5000)
        lab.daemon.wait_for_log(": answered")
        daemons["a"].process.send_signal(signal.SIGKILL)
        assert run_until_done(caller, callee, timeout=40) == [0, 0], (
            caller.report() + lab.daemon.log_text()
        )
        cdr = ended(lab)
        ledger_b = (tmp_path / "ledger-b").read_text().splitlines()
        kinds = [json.loads(line)["request_type"] for line in ledger_b]
        assert kinds.count("TERMINATE") == 1 and "UPDATE" in kinds, kinds
        used = sum(json.loads(line).get("used") or 0 for line in ledger_b)
        ledger_a = (tmp_path / "ledger-a").read_text().splitlines()
        used += sum(json.loads(line).get("used") or 0 for line in ledger_a)
        lab.check_clean()
        assert abs(used - float(cdr["duration"])) <= 1.0, (cdr, ledger_a, ledger_b)  # type: ignore[arg-type]
    finally:
        for daemon in daemons.values():
            daemon.stop(timeout=5)
    for name, daemon in daemons.items():
        if name != "a":
            assert "Traceback" not in daemon.log_text(), daemon.log_text()
