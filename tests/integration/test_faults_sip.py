"""The SIP side of the fault matrix (issue 11): loss, silence and vanished peers on loopback.

Same lab and checks as `test_faults_ocs` (`tests.support.faultlab`): the daemon with the lab
OCS behind a Diameter relay that only watches, SIPp on both legs, and for the loss cases a
`tests.support.lossy_udp` relay on each leg (seeded, bounded). Each case checks the SIP
outcome, one CCR-Termination per Ro session opened, used seconds equal to the talk time
within 1 s, nothing left live in the daemon, and no traceback.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.faultlab import FaultLab, wait_until
from tests.support.sipp import run_until_done, stat

pytestmark = pytest.mark.integration

UNITS = "reservation_units = 3\ninterim_update_credits = 3\ntimer_buffer = 1\n"


@pytest.fixture
def labs(tmp_path: Path) -> Iterator[list[FaultLab]]:
    """Labs a test starts; all closed (and their logs checked) at the end."""
    started: list[FaultLab] = []
    yield started
    for lab in started:
        lab.close()


def test_twenty_percent_loss_on_both_legs(labs: list[FaultLab], tmp_path: Path) -> None:
    """20% of the datagrams lost each way on both legs: three calls all complete through
    retransmissions, each billed its talk time once."""
    lab = FaultLab(
        tmp_path,
        charging=UNITS,
        sip="t1 = 0.1\nt4 = 1\n",
        loss=("--loss", "0.2", "--seed", "4475"),
    )
    labs.append(lab)
    callee = lab.callee(calls=3)
    caller = lab.caller(hold_ms=2000, calls=3)
    statuses = run_until_done(caller, callee, timeout=60)
    assert statuses[0] == 0 and stat(caller, "SuccessfulCall") == 3, caller.report()
    cdrs = wait_until(lambda: len(lab.cdrs()) == 3 and lab.cdrs(), "three CDRs")
    assert all(cdr["end_reason"] == "caller hung up" for cdr in cdrs), cdrs
    lab.check_clean(timeout=30)
    used = lab.check_money()
    assert len(used) == 3, used
    counters = [json.loads(line) for line in lab.helpers[0].stop().splitlines()[1:]]
    assert len(counters) == 2 and all(pair["dropped"] > 0 for pair in counters), counters


def test_callee_never_answers(labs: list[FaultLab], tmp_path: Path) -> None:
    """The callee (over TCP) rings forever: no_answer_timeout cancels it, the caller gets a
    final failure, the Ro session opened for the INVITE gets its CCR-T reporting 0 s."""
    lab = FaultLab(
        tmp_path, charging=UNITS, calls="no_answer_timeout = 2\n", callee_transport="tcp"
    )
    labs.append(lab)
    callee = lab.callee("b2b_uas_ring.xml")
    caller = lab.caller("fault_uac_refused.xml")
    assert run_until_done(caller, callee, timeout=30) == [0, 0], caller.report()
    cdr = wait_until(lab.cdrs, "a CDR")[0]
    assert cdr["answer_time"] is None and cdr["end_reason"] == "no answer", cdr
    lab.check_clean()  # over UDP, Timer D would keep the B-leg INVITE transaction 32 s
    used = lab.check_money()
    assert list(used.values()) == [0], used


def test_caller_vanishes_after_answer(labs: list[FaultLab], tmp_path: Path) -> None:
    """The caller (the refresher, 4 s) goes silent after the ACK: the session timer ends the
    call, the callee gets a BYE, and the talk time until then is billed once."""
    lab = FaultLab(
        tmp_path,
        charging=UNITS,
        calls="session_expires = 30\nmin_se = 2\n",
        sip="t1 = 0.1\nt4 = 1\n",
    )
    labs.append(lab)
    callee = lab.callee()
    caller = lab.caller("b2b_uac_vanish.xml")
    assert run_until_done(caller, callee, timeout=30) == [0, 0], callee.report()
    cdr = wait_until(lab.cdrs, "a CDR")[0]
    assert cdr["end_reason"] == "session timer expired", cdr
    lab.check_clean(timeout=30)
    assert len(lab.check_money()) == 1


def test_bye_lost(labs: list[FaultLab], tmp_path: Path) -> None:
    """The first two BYEs on each leg are lost: the caller's BYE is retransmitted by SIPp,
    b2bua's to the callee by its own Timer E; the call ends once, billed its talk time."""
    lab = FaultLab(
        tmp_path,
        charging=UNITS,
        sip="t1 = 0.1\nt4 = 1\n",
        loss=("--loss", "0", "--drop-start", "BYE ", "--drop-count", "2"),
    )
    labs.append(lab)
    callee = lab.callee()
    caller = lab.caller(hold_ms=2000)
    assert run_until_done(caller, callee, timeout=40) == [0, 0], caller.report()
    cdr = wait_until(lab.cdrs, "a CDR")[0]
    assert cdr["end_reason"] == "caller hung up", cdr
    lab.check_clean(timeout=30)
    assert len(lab.check_money()) == 1
    counters = [json.loads(line) for line in lab.helpers[0].stop().splitlines()[1:]]
    assert [pair["dropped_by_start"].get("BYE") for pair in counters] == [2, 2], counters
