"""Charged SMS (SIP MESSAGE) and video calls end to end: SIPp -> twistd b2bua (lab OCS
in-process) -> SIPp, the OCS ledger read back per rating group.

Real processes on loopback, as in :mod:`tests.integration.test_charged_calls` (whose lab
this reuses): an event is debited from the account's ``events`` balance on rating group
300, voice from ``seconds`` on 100 at 1 credit second a second, video on 200 at 2.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest

from tests.integration.test_charged_calls import ChargedLab
from tests.support.sipp import run_until_done

pytestmark = pytest.mark.integration

SMS, VOICE, VIDEO = 300, 100, 200
ECUR = "event_charging = orig\nevent_charging_mode = reservation\n"
IEC = "event_charging = orig\n"
OUTCOME = ("sip_status", "result_code", "units", "charged")  # of a MESSAGE's CDR line


@pytest.fixture
def make_lab(tmp_path: Path) -> Iterator[object]:
    labs: list[ChargedLab] = []

    def make(accounts: list[dict[str, object]], route: str = IEC, sip: str = "") -> ChargedLab:
        lab = ChargedLab(tmp_path, accounts, route=route, sip=sip)
        labs.append(lab)
        return lab

    yield make
    for lab in labs:
        lab.close()
        log = lab.daemon.log_text()
        assert "Traceback" not in log, log


def rows(lab: ChargedLab, *keys: str) -> list[tuple[object, ...]]:
    return [tuple(entry[key] for key in keys) for entry in lab.entries()]


def wait_for_rows(lab: ChargedLab, count: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(lab.entries()) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"{count} ledger lines not seen:\n{lab.entries()}")


def debited(lab: ChargedLab, rating_group: int) -> int:
    entries = lab.entries()
    return sum(cast(int, e["debited"]) for e in entries if e["rating_group"] == rating_group)


def wait_for_cdrs(lab: ChargedLab, count: int, timeout: float = 10) -> list[dict[str, object]]:
    """The MESSAGE CDR lines, once ``count`` are written."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cdrs = lab.cdrs("message")
        if len(cdrs) >= count:
            return cdrs
        time.sleep(0.05)
    raise AssertionError(f"{count} MESSAGE CDR lines not seen: {lab.cdrs('message')}")


def send_message(lab: ChargedLab) -> bytes:
    """A MESSAGE from +15550101 sent from a plain socket; the final answer b2bua gives."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(30)
        port = sock.getsockname()[1]
        body = "undeliverable"
        request = (
            f"MESSAGE sip:15550199@127.0.0.1:{lab.sip_port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-sms-timeout\r\n"
            "From: <sip:+15550101@lab.example;user=phone>;tag=sms\r\n"
            "To: <sip:15550199@lab.example>\r\n"
            "Call-ID: sms-timeout@test\r\n"
            "CSeq: 1 MESSAGE\r\n"
            "Max-Forwards: 70\r\n"
            "Content-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\n\r\n{body}"
        ).encode()
        sock.sendto(request, ("127.0.0.1", lab.sip_port))
        answer = b""
        while not answer or answer.startswith(b"SIP/2.0 1"):
            answer = sock.recv(65536)
        return answer


def test_a_message_is_debited_one_event_then_delivered(make_lab) -> None:
    """IEC: one CCR-EVENT debits 1 event on rating group 300, then the MESSAGE is relayed."""
    lab = make_lab([{"subscriber": "+15550101", "seconds": 60, "events": 3}])
    callee = lab.callee("message_uas.xml")
    sender = lab.caller("message_uac.xml", "+15550101")
    assert run_until_done(sender, callee, timeout=40) == [0, 0], sender.report() + callee.report()
    assert "MESSAGE sip:15550199" in callee.messages()
    assert rows(lab, "request_type", "rating_group", "kind", "debited", "balance_after") == [
        ("DIRECT_DEBIT", SMS, "events", 1, 2)
    ]
    (cdr,) = wait_for_cdrs(lab, 1)
    assert tuple(cdr[key] for key in OUTCOME) == (200, 2001, 1, True)
    assert cdr["ro_session_id"] == lab.entries()[0]["session_id"] and cdr["route"] == "all"
    assert "15550101" in str(cdr["caller"]) and "15550199" in str(cdr["callee"])


def test_a_message_without_credit_gets_402_and_never_leaves(make_lab) -> None:
    """IEC with 0 events: 4012 from the OCS, 402 to the sender, nothing relayed or debited."""
    lab = make_lab([{"subscriber": "+15550101", "seconds": 60, "events": 0}])
    callee = lab.callee("message_uas.xml")
    sender = lab.caller("message_uac_402.xml", "+15550101")
    assert run_until_done(sender, timeout=40) == [0], sender.report()
    assert "MESSAGE" not in callee.messages()
    assert rows(lab, "request_type", "rating_group", "result_code", "debited") == [
        ("DIRECT_DEBIT", SMS, 4012, 0)
    ]
    (cdr,) = wait_for_cdrs(lab, 1)
    assert tuple(cdr[key] for key in OUTCOME) == (402, 4012, 0, False)


def test_reserved_message_delivered_is_debited_by_the_ccr_t(make_lab) -> None:
    """ECUR: CCR-I reserves 1 event, the next hop's 200 makes the CCR-T debit it."""
    lab = make_lab([{"subscriber": "+15550101", "seconds": 60, "events": 3}], route=ECUR)
    callee = lab.callee("message_uas.xml")
    sender = lab.caller("message_uac.xml", "+15550101")
    assert run_until_done(sender, callee, timeout=40) == [0, 0], sender.report() + callee.report()
    lab.wait_for_terminations(1)
    assert rows(lab, "request_type", "rating_group", "used", "debited", "balance_after") == [
        ("INITIAL", SMS, None, 0, 3),
        ("TERMINATE", SMS, 1, 1, 2),
    ]
    assert lab.entries()[-1]["reserved_after"] == 0
    (cdr,) = wait_for_cdrs(lab, 1)  # written when the sender got the 200: CCA-I's code
    assert (cdr["sip_status"], cdr["result_code"], cdr["units"]) == (200, 2001, 1)
    assert lab.cdrs("call") == []


def test_reserved_message_refused_by_the_next_hop_costs_nothing(make_lab) -> None:
    """ECUR: the next hop answers 480, relayed to the sender; the CCR-T reports 0 used."""
    lab = make_lab([{"subscriber": "+15550101", "seconds": 60, "events": 3}], route=ECUR)
    callee = lab.callee("message_uas_480.xml")
    sender = lab.caller("message_uac_480.xml", "+15550101")
    assert run_until_done(sender, callee, timeout=40) == [0, 0], sender.report() + callee.report()
    lab.wait_for_terminations(1)
    assert rows(lab, "request_type", "used", "debited", "balance_after", "reserved_after") == [
        ("INITIAL", None, 0, 3, 1),
        ("TERMINATE", 0, 0, 3, 0),
    ]


def test_reserved_message_whose_next_hop_never_answers_costs_nothing(make_lab) -> None:
    """ECUR: nobody at the next hop (T1 0.05 s: Timer F 3.2 s): 408 (or 503), CCR-T 0 used."""
    lab = make_lab(
        [{"subscriber": "+15550101", "seconds": 60, "events": 3}], route=ECUR, sip="t1 = 0.05\n"
    )
    answer = send_message(lab)
    assert answer.startswith((b"SIP/2.0 408", b"SIP/2.0 503")), answer
    lab.wait_for_terminations(1)
    assert rows(lab, "request_type", "used", "debited", "balance_after", "reserved_after") == [
        ("INITIAL", None, 0, 3, 1),
        ("TERMINATE", 0, 0, 3, 0),
    ]


def test_a_video_call_is_charged_on_the_video_rating_group(make_lab) -> None:
    """An INVITE offering active video: CCR-I and CCR-T on rating group 200, 2 credits a s."""
    lab = make_lab([{"subscriber": "+15550101", "seconds": 600}])
    callee = lab.callee()
    caller = lab.caller("charged_uac_video.xml", "+15550101", hold_ms=2000)
    assert run_until_done(caller, callee, timeout=40) == [0, 0], caller.report() + callee.report()
    lab.wait_for_terminations(1)
    entries = lab.entries()
    assert [(e["request_type"], e["rating_group"]) for e in entries] == [
        ("INITIAL", VIDEO),
        ("TERMINATE", VIDEO),
    ]
    seconds = debited(lab, VIDEO)
    assert 2 <= seconds <= 3
    assert entries[-1]["balance_after"] == 600 - 2 * seconds
    assert entries[-1]["reserved_after"] == 0


def test_a_call_upgraded_to_video_and_back_is_charged_per_rating_group(make_lab) -> None:
    """Voice, re-INVITE adding video, re-INVITE removing it: each switch is one CCR-U
    reporting the old group and asking on the new; every second is billed once, video at
    2 credits a second, and the reservations all end released."""
    lab = make_lab([{"subscriber": "+15550101", "seconds": 600}])
    callee = lab.callee("b2b_uas_video.xml")
    caller = lab.caller("charged_uac_video_upgrade.xml", "+15550101", hold_ms=1500)
    assert run_until_done(caller, callee, timeout=40) == [0, 0], caller.report() + callee.report()
    lab.wait_for_terminations(1)
    entries = lab.entries()
    groups = [(e["request_type"], e["rating_group"]) for e in entries]
    assert groups == [
        ("INITIAL", VOICE),
        ("UPDATE", VOICE),  # used seconds of voice, reservation released
        ("UPDATE", VIDEO),  # new reservation on video (same CCR-U)
        ("UPDATE", VIDEO),
        ("UPDATE", VOICE),
        ("TERMINATE", VOICE),
    ], groups
    voice, video = debited(lab, VOICE), debited(lab, VIDEO)
    assert 1 <= video <= 2  # 1.5 s on video, whole seconds, fraction carried on
    assert 4 <= voice + video <= 6  # 4.5 s of talk and signalling, rounded up once
    assert entries[-1]["balance_after"] == 600 - voice - 2 * video
    assert entries[-1]["reserved_after"] == 0
    log = lab.daemon.log_text()
    assert "rating group 100 -> 200" in log and "rating group 200 -> 100" in log


def test_a_late_offer_video_call_switches_to_video_at_the_answer(make_lab) -> None:
    """INVITE without SDP: the CCR-I is voice; the 200 offers video, so at the answer one
    CCR-U reports 0 s on voice and reserves on video; the talk time is billed as video."""
    lab = make_lab([{"subscriber": "+15550101", "seconds": 600}])
    callee = lab.callee("b2b_uas_late_video.xml")
    caller = lab.caller("charged_uac_late_video.xml", "+15550101", hold_ms=2000)
    assert run_until_done(caller, callee, timeout=40) == [0, 0], caller.report() + callee.report()
    lab.wait_for_terminations(1)
    entries = lab.entries()
    assert [(e["request_type"], e["rating_group"], e["debited"]) for e in entries[:3]] == [
        ("INITIAL", VOICE, 0),
        ("UPDATE", VOICE, 0),
        ("UPDATE", VIDEO, 0),
    ]
    assert (entries[-1]["request_type"], entries[-1]["rating_group"]) == ("TERMINATE", VIDEO)
    assert debited(lab, VOICE) == 0 and 2 <= debited(lab, VIDEO) <= 3
    assert entries[-1]["balance_after"] == 600 - 2 * debited(lab, VIDEO)
    assert entries[-1]["reserved_after"] == 0
