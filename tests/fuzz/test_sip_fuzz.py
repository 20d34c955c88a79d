"""Fuzzing the SIP parser: mutated torture messages only ever raise SipError.

Header values are parsed lazily, so each property touches every typed accessor after
``parse_message`` (Via, From/To, Contact, Route, CSeq, the Request-URI...), then runs the
UAS/UAC validation, builds a response and re-serializes, as the endpoint does.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from hypothesis import given
from hypothesis import strategies as st

from b2bua.sip.errors import SipError
from b2bua.sip.framing import PING, StreamFramer
from b2bua.sip.headers import NameAddr, SipURI, Uri, Via, split_header_values
from b2bua.sip.message import (
    MAX_HEADER_LINES,
    Message,
    Request,
    Response,
    accepts,
    make_response,
    parse_message,
    validate_request,
    validate_response,
)
from tests.fuzz import FUZZ
from tests.fuzz.mutations import SIP_SPECIALS, mutated
from tests.sip import factories

T = TypeVar("T")
TORTURE = Path(__file__).resolve().parents[1] / "data" / "sip-torture"
SEEDS = [path.read_bytes() for path in sorted(TORTURE.glob("rfc*/*.dat"))] + [
    factories.request_bytes(),
    factories.request_bytes("BYE", to_tag="b1"),
    factories.request_bytes("OPTIONS", transport="TCP"),
]


def touch_uri(uri: Uri) -> None:
    """Every derived property of a URI, and its serialization."""
    str(uri)
    uri.copy()
    if isinstance(uri, SipURI):
        (uri.bare_host, uri.transport, uri.lr, uri.maddr, uri.secure)  # noqa: B018


def touch_address(addr: NameAddr) -> None:
    str(addr)
    addr.tag  # noqa: B018
    if not addr.is_wildcard:
        touch_uri(addr.uri)


def touch_via(via: Via) -> None:
    str(via)
    (via.branch, via.received, via.rport_requested, via.rport, via.maddr, via.ttl)  # noqa: B018
    (via.bare_host, via.sent_by)  # noqa: B018


def each(touch: Callable[[T], None], items: list[T]) -> None:
    for item in items:
        touch(item)


def touch_everything(msg: Message) -> None:
    """Call every lazy accessor a TU might call; each may raise SipError only."""
    for step in (
        lambda: msg.call_id,
        lambda: msg.cseq,
        lambda: touch_address(msg.from_),
        lambda: touch_address(msg.to),
        lambda: (msg.from_tag, msg.to_tag),
        lambda: touch_via(msg.top_via),
        lambda: each(touch_via, msg.via),
        lambda: each(touch_address, msg.contact),
        lambda: each(touch_address, msg.route),
        lambda: each(touch_address, msg.record_route),
        lambda: msg.max_forwards,
        lambda: (msg.content_type, msg.media_type, accepts(msg, "application/sdp")),
        lambda: [split_header_values(value) for _, value in msg.headers],
    ):
        try:
            step()
        except SipError:
            pass
    if isinstance(msg, Request):
        try:
            touch_uri(msg.request_uri)
        except SipError:
            pass
        try:
            validate_request(
                msg,
                supported=frozenset({"timer", "100rel"}),
                accepted_types=frozenset({"application/sdp"}),
            )
        except SipError:
            pass
        try:
            response = make_response(msg, 400, to_tag="fz")
            parse_message(response.serialize())
        except SipError:
            pass
    elif isinstance(msg, Response):
        try:
            validate_response(msg)
        except SipError:
            pass
    try:
        again = parse_message(msg.serialize())
    except SipError:
        return
    assert isinstance(again, Request | Response)


@FUZZ
@given(mutated(SEEDS, SIP_SPECIALS))
def test_mutated_datagrams_only_raise_sip_errors(data: bytes) -> None:
    """A mutated torture message parsed as a datagram: SipError or a usable message."""
    try:
        msg = parse_message(data, max_size=65535)
    except SipError:
        return
    touch_everything(msg)


@FUZZ
@given(st.lists(mutated(SEEDS, SIP_SPECIALS), min_size=1, max_size=4), st.integers(1, 600))
def test_mutated_streams_only_yield_events(messages: list[bytes], chunk: int) -> None:
    """A stream of mutated messages in any chunking: messages, pings or one SipError."""
    framer = StreamFramer(max_message_size=8192)
    stream = b"".join(messages)
    errors = 0
    for pos in range(0, len(stream), chunk):
        for event in framer.feed(stream[pos : pos + chunk]):
            if isinstance(event, SipError):
                errors += 1
            elif event is not PING:
                assert isinstance(event, Request | Response)
                touch_everything(event)
    assert errors <= 1 and (errors == 0 or framer.failed)
    assert framer.buffered <= 8192 + chunk


@FUZZ
@given(st.binary(max_size=400))
def test_random_bytes_only_raise_sip_errors(data: bytes) -> None:
    """Arbitrary bytes: parse_message and the framer raise nothing but SipError."""
    try:
        touch_everything(parse_message(data))
    except SipError:
        pass
    for event in StreamFramer().feed(data):
        if isinstance(event, Request | Response):
            touch_everything(event)


def test_header_line_limit_refuses_floods_before_parsing_fields() -> None:
    """More than MAX_HEADER_LINES header lines is refused 513 whatever the lines hold."""
    head = factories.request_bytes().split(b"\r\n\r\n", 1)[0]
    via = b"Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK-x\r\n"
    flood = head + b"\r\n" + via * MAX_HEADER_LINES + b"Content-Length: 0\r\n\r\n"
    try:
        parse_message(flood)
    except SipError as err:
        assert getattr(err, "status_hint", None) == 513
    else:
        raise AssertionError("a header flood was accepted")
    events = StreamFramer(max_message_size=len(flood) + 1).feed(flood)
    assert len(events) == 1 and isinstance(events[0], SipError)


def test_thousands_of_comma_separated_vias_stay_within_the_size_bound() -> None:
    """Vias packed in one line are bounded by the message size: parsed once, linearly."""
    values = ", ".join(f"SIP/2.0/UDP 192.0.2.{i % 250};branch=z9hG4bK{i}" for i in range(1500))
    data = factories.request_bytes(extra=(f"Via: {values}",))
    assert len(data) < 65535
    msg = parse_message(data, max_size=65535)
    assert len(msg.via) == 1502
