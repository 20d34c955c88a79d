"""Call detail records: the record of a call, its JSON line, the rotating file, the observer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import pytest

from b2bua.call.bridge import Call
from b2bua.call.events import EndReason, Side
from b2bua.call.leg import Leg
from b2bua.call.relay import RelayedMessage
from b2bua.charging.engine import CallFigures, SessionFigures
from b2bua.charging.messaging import EventFigures
from b2bua.config import RouteSettings
from b2bua.ops.cdr import (
    FIELDS,
    MESSAGE_FIELDS,
    CdrFile,
    CdrWriter,
    cdr_record,
    engine_lookup,
    format_line,
    iso,
    message_record,
)
from b2bua.sip.dialog import Hop
from b2bua.sip.message import Request, parse_message
from tests.call.fakes import A_CONTACT, B_CONTACT, CALLEE, SBC, caller_invite

T0 = 1_795_000_000.0  # a time in 2026


def make_call(*, answered: bool = True) -> Call:
    route = RouteSettings(name="lab", incoming_trunk_id="in-7", outgoing_trunk_id="")
    call = Call(
        "c1",
        caller_invite(),
        route,
        SBC,
        Leg(Side.A, "a-call@10.0.0.1", "ta", A_CONTACT, SBC),
        Leg(Side.B, "b-leg-id", "tb", B_CONTACT, CALLEE),
        T0,
    )
    if answered:
        call.answered_at = T0 + 1.5
    call.ended_at = T0 + 6.75
    call.end_reason = EndReason.CALLER_HANGUP
    return call


def test_iso_times_are_utc_with_milliseconds() -> None:
    """Timestamps are ISO 8601 in UTC with a Z and exactly three decimals; None stays None."""
    assert iso(0.0) == "1970-01-01T00:00:00.000Z"
    assert iso(1.2345) == "1970-01-01T00:00:01.234Z"
    assert iso(None) is None


def test_record_of_an_answered_charged_call() -> None:
    """Legs, parties, route, trunk ids, times, duration, billing and end are all recorded."""
    record = cdr_record(
        make_call(), ro_session_ids=["b2bua.test;1;2"], billed_secs=6, ro_result_codes=[2001]
    )
    assert record == {
        "call_id": "c1",
        "a_call_id": "a-call@10.0.0.1",
        "b_call_id": "b-leg-id",
        "caller": "sip:alice@example.com",
        "callee": "sip:+4930123@example.com",
        "route": "lab",
        "incoming_trunk_id": "in-7",
        "outgoing_trunk_id": None,
        "invite_time": iso(T0),
        "answer_time": iso(T0 + 1.5),
        "end_time": iso(T0 + 6.75),
        "duration": 5.25,
        "billed_secs": 6,
        "end_reason": "caller hung up",
        "sip_status": None,
        "ro_session_ids": ["b2bua.test;1;2"],
        "ro_result_codes": [2001],
        "kind": "call",
    }


def test_unanswered_call_has_no_answer_time_and_zero_duration() -> None:
    """A call refused before the answer: null answer time, 0 s, its final status, null billing."""
    call = make_call(answered=False)
    call.end_reason, call.end_status = EndReason.REJECTED, 486
    record = cdr_record(call)
    assert record["answer_time"] is None and record["duration"] == 0.0
    assert record["end_reason"] == "rejected" and record["sip_status"] == 486
    assert record["billed_secs"] is None and record["ro_session_ids"] == []


def test_line_is_compact_json_in_field_order_without_secrets() -> None:
    """One newline-terminated JSON object, keys in FIELDS order, no header but From and R-URI."""
    line = format_line(cdr_record(make_call()))
    assert line.endswith("\n") and line.count("\n") == 1
    assert list(json.loads(line)) == list(FIELDS)
    assert "X-Secret" not in line and "do-not-pass" not in line and "PhoneA" not in line


def test_file_rotates_by_size_and_keeps_the_newest(tmp_path: Path) -> None:
    """Past max_bytes the file becomes FILE.1, older ones shift, beyond keep are removed."""
    path = tmp_path / "cdr.jsonl"
    output = CdrFile(str(path), max_bytes=25, keep=2)
    for index in range(5):
        output.write(f"line {index} {'x' * 10}\n")  # 18 bytes: one line per file
    output.close()
    assert path.read_text() == "line 4 xxxxxxxxxx\n"
    assert (tmp_path / "cdr.jsonl.1").read_text() == "line 3 xxxxxxxxxx\n"
    assert (tmp_path / "cdr.jsonl.2").read_text() == "line 2 xxxxxxxxxx\n"
    assert not (tmp_path / "cdr.jsonl.3").exists()


def test_file_never_rotates_with_max_bytes_zero(tmp_path: Path) -> None:
    """max_bytes 0 appends for ever; an existing file is appended to, not truncated."""
    path = tmp_path / "cdr.jsonl"
    path.write_text("old\n")
    output = CdrFile(str(path))
    for _ in range(100):
        output.write("new\n")
    output.close()
    assert path.read_text() == "old\n" + "new\n" * 100
    assert not (tmp_path / "cdr.jsonl.1").exists()


def test_file_moved_away_is_created_again_and_reopen_closes(tmp_path: Path) -> None:
    """After logrotate renames the file, the next line starts a new one; reopen() works too."""
    path = tmp_path / "cdr.jsonl"
    output = CdrFile(str(path))
    output.write("one\n")
    path.rename(tmp_path / "cdr.jsonl.old")
    output.write("two\n")
    assert path.read_text() == "two\n"
    output.reopen()
    output.write("three\n")
    output.close()
    assert path.read_text() == "two\nthree\n"
    assert (tmp_path / "cdr.jsonl.old").read_text() == "one\n"


def test_negative_limits_are_refused(tmp_path: Path) -> None:
    """max_bytes and keep below zero raise ValueError."""
    with pytest.raises(ValueError, match="negative"):
        CdrFile(str(tmp_path / "x"), max_bytes=-1)


def test_writer_writes_one_line_per_ended_call_with_charging_data(tmp_path: Path) -> None:
    """The observer asks charging for the call's Session-Ids, billed seconds, Result-Codes."""
    path = tmp_path / "cdr.jsonl"
    asked: list[str] = []

    def lookup(call_id: str) -> CallFigures:
        asked.append(call_id)
        return CallFigures((SessionFigures("s1", 30, 6, True, 4012),))

    writer = CdrWriter(CdrFile(str(path)), lookup)
    writer.call_ended(make_call())
    writer.output.close()
    (record,) = [json.loads(line) for line in path.read_text().splitlines()]
    assert asked == ["c1"]
    assert record["billed_secs"] == 6 and record["ro_session_ids"] == ["s1"]
    assert record["ro_result_codes"] == [4012]
    assert writer.written == 1


def test_writer_does_not_raise_when_the_file_cannot_be_written(tmp_path: Path) -> None:
    """A write failure is counted and logged; the call layer never sees it."""
    writer = CdrWriter(CdrFile(str(tmp_path / "missing-dir" / "cdr.jsonl")))
    writer.call_ended(make_call())
    assert writer.failed == 1 and writer.written == 0


def test_engine_lookup_reads_billed_seconds_once_the_ccr_t_left() -> None:
    """Before the end: unknown (null); after call_ended: the seconds of the CCR-T; none: null."""
    from tests.charging.test_engine import CALL, make_rig

    rig = make_rig()
    session_id = rig.start()
    rig.advance_to(0.05)
    rig.engine.call_answered(CALL, 1.0)
    rig.advance_to(5.0)
    lookup = engine_lookup(rig.engine)
    talking = lookup(CALL)
    assert talking.session_ids == [session_id] and talking.billed_seconds is None  # not final
    assert talking.result_codes == [2001]  # the CCA-I's
    rig.advance_to(7.2)
    rig.engine.call_ended(CALL)
    ended = lookup(CALL)
    assert ended.billed_seconds == 7  # 6.2 s rounded up, as the CCR-T reports
    assert ended.sessions[0].granted == 30 and ended.sessions[0].used == 7
    other = lookup("other-call")
    assert (other.session_ids, other.billed_seconds, other.result_codes) == ([], None, [])


def test_engine_figures_keep_the_last_result_code_of_each_session() -> None:
    """A refused CCR-U (4012) is the session's last Result-Code in the figures, for the CDR."""
    from tests.charging.fakes import TinyOcs
    from tests.charging.test_engine import CALL, SUBSCRIBER, make_rig

    rig = make_rig(ocs=TinyOcs({SUBSCRIBER: 30}, final_style="4012"), timer_buffer=0)
    rig.start()
    rig.advance_to(0.05)
    rig.engine.call_answered(CALL, 0.05)
    assert rig.engine.call_figures(CALL).result_codes == [2001]
    rig.advance_to(30.12)  # the CCR-U at 30.05 is refused 4012 at 30.10: the call ends
    assert rig.calls.events[-1][:3] == ("end", CALL, "credit exhausted")
    figures = rig.engine.call_figures(CALL)
    assert figures.result_codes == [4012] and figures.billed_seconds == 30


def relayed_message(status: int | None = 202) -> RelayedMessage:
    """A MESSAGE the relay answered ``status``, received at T0 on route ``lab``."""
    request = parse_message(
        b"MESSAGE sip:+4930123@example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-m\r\n"
        b"From: <sip:alice@example.com>;tag=ma\r\nTo: <sip:+4930123@example.com>\r\n"
        b"Call-ID: sms-1@sbc\r\nCSeq: 1 MESSAGE\r\nContent-Length: 2\r\n\r\nhi"
    )
    assert isinstance(request, Request)
    route = RouteSettings(name="lab", event_charging="orig")
    message = RelayedMessage(
        "m1", request, route, Hop("udp", "127.0.0.1", 5080), T0, cast(Any, None)
    )
    message.status, message.charged = status, True
    return message


def test_record_of_a_charged_message() -> None:
    """A MESSAGE's record: kind message, Call-ID, parties, route, time, status, Session-Id,
    Result-Code and units, in MESSAGE_FIELDS order."""
    figures = EventFigures("b2bua.test;1;2;3", 2001, 1)
    line = format_line(message_record(relayed_message(), figures), MESSAGE_FIELDS)
    assert json.loads(line) == {
        "kind": "message",
        "call_id": "sms-1@sbc",
        "caller": "sip:alice@example.com",
        "callee": "sip:+4930123@example.com",
        "route": "lab",
        "time": iso(T0),
        "sip_status": 202,
        "charged": True,
        "ro_session_id": "b2bua.test;1;2;3",
        "result_code": 2001,
        "units": 1,
    }
    assert list(json.loads(line)) == list(MESSAGE_FIELDS)


def test_writer_writes_one_line_per_ended_message(tmp_path: Path) -> None:
    """message_ended writes the MESSAGE's line with what the lookup knew; none: nulls."""
    path = tmp_path / "cdr.jsonl"
    refused = EventFigures("s9", 4012, 0)
    writer = CdrWriter(CdrFile(str(path)), events=lambda message: refused)
    writer.message_ended(relayed_message(402))
    CdrWriter(CdrFile(str(path))).message_ended(relayed_message(202))
    writer.output.close()
    first, second = [json.loads(line) for line in path.read_text().splitlines()]
    assert (first["sip_status"], first["ro_session_id"], first["result_code"]) == (402, "s9", 4012)
    assert first["units"] == 0
    assert (second["ro_session_id"], second["result_code"], second["units"]) == (None, None, None)
    assert writer.written == 1
