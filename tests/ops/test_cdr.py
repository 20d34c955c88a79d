"""Call detail records: the record of a call, its JSON line, the rotating file, the observer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from b2bua.call.bridge import Call
from b2bua.call.events import EndReason, Side
from b2bua.call.leg import Leg
from b2bua.config import RouteSettings
from b2bua.ops.cdr import FIELDS, CdrFile, CdrWriter, cdr_record, engine_lookup, format_line, iso
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
    record = cdr_record(make_call(), ro_session_ids=["b2bua.test;1;2"], billed_secs=6)
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
    """The observer asks charging for the call's Session-Ids and billed seconds."""
    path = tmp_path / "cdr.jsonl"
    asked: list[str] = []

    def lookup(call_id: str) -> tuple[list[str], int | None]:
        asked.append(call_id)
        return ["s1"], 6

    writer = CdrWriter(CdrFile(str(path)), lookup)
    writer.call_ended(make_call())
    writer.output.close()
    (record,) = [json.loads(line) for line in path.read_text().splitlines()]
    assert asked == ["c1"]
    assert record["billed_secs"] == 6 and record["ro_session_ids"] == ["s1"]
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
    assert lookup(CALL) == ([session_id], None)  # still talking: not final
    rig.advance_to(7.2)
    rig.engine.call_ended(CALL)
    assert lookup(CALL) == ([session_id], 7)  # 6.2 s rounded up, as the CCR-T reports
    assert lookup("other-call") == ([], None)
