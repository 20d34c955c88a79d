"""Fuzzing the Diameter decoder: mutated messages only ever raise DecodeError.

AVP values and grouped children decode lazily, so each property walks every AVP, runs the
dictionary check, builds the RFC 6733 §7.2 error answer the protocol would send (which must
itself encode and decode cleanly) and, for CCAs, the charging layer's answer reader.
"""

from __future__ import annotations

import struct
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from b2bua.charging.messages import MalformedAnswer, parse_cca
from b2bua.diameter.avp import MAX_AVPS, MAX_DEPTH, Avp
from b2bua.diameter.errors import DecodeError
from b2bua.diameter.message import (
    DEFAULT_MAX_MESSAGE_SIZE,
    FLAG_REQUEST,
    Message,
    MessageFramer,
    check_command,
    decode,
    make_error_answer,
)
from tests.diameter import factories
from tests.fuzz import FUZZ
from tests.fuzz.mutations import mutated

_ccr = factories.ccr_initial()
SEEDS = [
    message.encode()
    for message in (
        factories.cer(),
        factories.cea(factories.cer()),
        factories.dwr(),
        _ccr,
        factories.ccr_update(),
        factories.ccr_terminate(),
        factories.cca_grant(_ccr),
        factories.cca_grant(_ccr, final=True),
        factories.rar(),
        factories.asr(),
    )
]
#: Words that make AVP lengths lie, nest, or name vendors and grouped codes.
DIAMETER_SPECIALS = [
    struct.pack(">I", value)
    for value in (0, 8, 12, 0xFFFFFF, 0x40FFFFFF, 0x80000010, 0xC000000C, 10415, 456, 873, 437)
]


def walk(avps: list[Avp], depth: int = 0) -> int:
    """Force every lazy decode, returning how many AVPs were seen."""
    assert depth <= MAX_DEPTH
    seen = 0
    for avp in avps:
        seen += 1
        value = avp.value
        if avp.is_grouped:
            seen += walk(value, depth + 1)
    return seen


def answer_to_rejected(request: Message | None, error: DecodeError) -> None:
    """The error answer the protocol sends for a rejected request decodes cleanly."""
    if not error.answerable:
        return
    target: Any = request if request is not None else error.header
    answer = make_error_answer(target, error, "b2bua.test", "test", error_message=str(error)[:200])
    again = decode(answer.encode())
    walk([avp for avp in again.avps if avp.code != 279])  # Failed-AVP holds the bad AVP as is
    assert again.get("Result-Code") == error.result_code
    assert again.get("Origin-Host") == "b2bua.test" and again.get("Origin-Realm") == "test"
    assert again.is_error == error.is_protocol_error  # §7.2 answer-message: E bit for 3xxx
    assert (again.find("Failed-AVP") is not None) == (error.failed_avp is not None)


def receive(data: bytes) -> None:
    """What DiameterProtocol does with one frame, plus a full walk and a re-encode."""
    try:
        message = decode(data)
    except DecodeError as err:
        answer_to_rejected(None, err)
        return
    try:
        check_command(message)
        assert walk(message.avps) <= MAX_AVPS
        message.find_path("Service-Information", "IMS-Information", "Calling-Party-Address")
        decode(message.encode())
    except DecodeError as err:
        if message.flags & FLAG_REQUEST:
            answer_to_rejected(message, err)
        return
    if message.command_code == 272 and not message.flags & FLAG_REQUEST:
        try:
            parse_cca(message)
        except (DecodeError, MalformedAnswer):
            pass


@FUZZ
@given(mutated(SEEDS, DIAMETER_SPECIALS))
def test_mutated_messages_only_raise_decode_error(data: bytes) -> None:
    """A mutated Ro/base message: DecodeError (answered per §7.2) or a message that walks."""
    receive(data)


@FUZZ
@given(st.lists(mutated(SEEDS, DIAMETER_SPECIALS), min_size=1, max_size=4), st.integers(1, 300))
def test_mutated_streams_only_yield_messages_or_decode_errors(
    frames: list[bytes], chunk: int
) -> None:
    """A stream of mutated frames in any chunking: messages, DecodeErrors, one fatal at most."""
    framer = MessageFramer()
    stream = b"".join(frames)
    fatal = 0
    for pos in range(0, len(stream), chunk):
        for item in framer.feed(stream[pos : pos + chunk]):
            if isinstance(item, DecodeError):
                fatal += item.fatal
            else:
                receive(item.encode())
    assert fatal <= 1 and framer.pending <= DEFAULT_MAX_MESSAGE_SIZE


def _nested(depth: int) -> Avp:
    """Service-Information nested through ``depth`` grouped levels of Subscription-Id."""
    avp = Avp.new("Subscription-Id-Data", "1")
    for _ in range(depth):
        avp = Avp.new("Subscription-Id", [avp])
    return avp


def test_grouped_nesting_beyond_the_limit_is_refused() -> None:
    """A Grouped AVP nested deeper than MAX_DEPTH raises DecodeError, not RecursionError."""
    ok = Message.request("Credit-Control", avps=[("Session-Id", "s"), _nested(MAX_DEPTH - 1)])
    walk(decode(ok.encode()).avps)
    deep = Message.request("Credit-Control", avps=[("Session-Id", "s"), _nested(MAX_DEPTH + 2)])
    try:
        message = decode(deep.encode())
        walk(message.avps)
        check_command(message)
    except DecodeError as err:
        assert err.result_code == 5012 and err.failed_avp is not None  # UNABLE_TO_COMPLY
    else:
        raise AssertionError("a grouped AVP nested beyond MAX_DEPTH was accepted")


def test_more_avps_than_the_limit_are_refused() -> None:
    """MAX_AVPS + 1 AVPs in one message: DecodeError before any value is decoded."""
    flood = Message.request(
        "Device-Watchdog", avps=[("Origin-State-Id", 1)] * (MAX_AVPS + 1)
    ).encode()
    try:
        decode(flood)
    except DecodeError:
        pass
    else:
        raise AssertionError("a message of MAX_AVPS + 1 AVPs was accepted")


def test_avp_lengths_that_lie_are_refused_with_failed_avp() -> None:
    """An AVP length past the end of its message is 5014 with the AVP in Failed-AVP."""
    raw = bytearray(factories.ccr_initial().encode())
    # The first AVP (Session-Id) claims far more octets than the message holds.
    struct.pack_into(">I", raw, 24, (0x40 << 24) | 0xFFFF)
    try:
        decode(bytes(raw))
    except DecodeError as err:
        assert err.result_code == 5014 and err.failed_avp is not None
        answer_to_rejected(None, err)
    else:
        raise AssertionError("an AVP longer than its message was accepted")


def test_oversized_frames_lose_framing_without_buffering() -> None:
    """A length field above the framer's bound is fatal at once; nothing is buffered."""
    framer = MessageFramer(max_size=4096)
    header = struct.pack(">II", (1 << 24) | 0x100000, (0x80 << 24) | 272) + bytes(12)
    items = framer.feed(header)
    assert len(items) == 1 and isinstance(items[0], DecodeError) and items[0].fatal
    assert framer.broken and framer.pending == 0


def test_error_answer_leaves_out_a_malformed_session_id() -> None:
    """A CCR whose Session-Id is not UTF-8 gets 5004 without that Session-Id echoed, so our
    own error answer decodes cleanly (found by this fuzzer)."""
    ccr = factories.ccr_initial()
    ccr.avps[0] = Avp(263, flags=0x40, data=b"\xff\xfe not utf-8")
    message = decode(ccr.encode())
    try:
        check_command(message)
    except DecodeError as err:
        assert err.result_code == 5004
        answer = decode(make_error_answer(message, err, "b2bua.test", "test").encode())
        assert answer.find("Session-Id") is None
        walk([avp for avp in answer.avps if avp.code != 279])
    else:
        raise AssertionError("a Session-Id that is not UTF-8 was accepted")
