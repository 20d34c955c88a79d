"""Stream reassembly: Content-Length framing, keep-alives, bounded buffer."""

from __future__ import annotations

from b2bua.sip.errors import SipParseError
from b2bua.sip.framing import PING, KeepAlivePing, StreamFramer
from b2bua.sip.message import Request, Response
from tests.sip import factories


def test_one_message_in_one_chunk():
    """A whole message fed at once comes out as one Request."""
    data = factories.request_bytes(transport="TCP")
    framer = StreamFramer()
    [msg] = framer.feed(data)
    assert isinstance(msg, Request)
    assert msg.body == factories.SDP
    assert msg.serialize() == data
    assert framer.buffered == 0


def test_byte_by_byte():
    """Feeding one byte at a time yields the message exactly once, at the last byte."""
    data = factories.request_bytes(transport="TCP")
    framer = StreamFramer()
    events = []
    for i in range(len(data)):
        got = framer.feed(data[i : i + 1])
        if i < len(data) - 1:
            assert got == []
        events.extend(got)
    assert len(events) == 1
    assert events[0].serialize() == data


def test_several_messages_in_one_chunk():
    """Back-to-back messages (even a body containing CRLFCRLF) are split correctly."""
    a = factories.minimal_request_bytes(body=b"x\r\n\r\ny")
    b = factories.response_bytes()
    framer = StreamFramer()
    events = framer.feed(a + b + a[:10])
    assert [type(e) for e in events] == [Request, Response]
    assert events[0].body == b"x\r\n\r\ny"
    assert framer.buffered == 10
    assert [type(e) for e in framer.feed(a[10:])] == [Request]


def test_double_crlf_is_a_ping_single_crlf_is_skipped():
    """RFC 5626 §3.5.1: CRLFCRLF asks for a pong; a lone CRLF is ignored."""
    framer = StreamFramer()
    assert framer.feed(b"\r\n\r\n") == [PING]
    assert framer.feed(b"\r\n") == []
    assert framer.feed(b"\r\n") == [PING]
    assert framer.feed(b"\r") == []
    assert framer.feed(b"\n\r\n") == [PING]
    assert isinstance(PING, KeepAlivePing)
    assert repr(PING) == "PING"
    data = factories.minimal_request_bytes()
    events = framer.feed(b"\r\n" + data + b"\r\n\r\n")
    assert [type(e) for e in events] == [Request, KeepAlivePing]


def test_crlf_then_message_resets_ping_count():
    """A single CRLF before a message is not half a ping."""
    framer = StreamFramer()
    data = factories.minimal_request_bytes()
    assert [type(e) for e in framer.feed(b"\r\n" + data)] == [Request]
    assert framer.feed(b"\r\n") == []
    assert [type(e) for e in framer.feed(data)] == [Request]
    assert framer.feed(b"\r\n") == []


def test_missing_content_length_is_fatal():
    """§18.3: a stream message without Content-Length cannot be framed."""
    framer = StreamFramer()
    [err] = framer.feed(b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: x\r\n\r\nmore")
    assert isinstance(err, SipParseError)
    assert isinstance(err.message, Request)
    assert framer.failed
    assert framer.feed(factories.minimal_request_bytes()) == []
    assert framer.buffered == 0


def test_bad_content_length_is_fatal():
    """A negative Content-Length on a stream closes the stream (RFC 4475 §3.1.2.3)."""
    framer = StreamFramer()
    [err] = framer.feed(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: -999\r\n\r\n")
    assert isinstance(err, SipParseError)
    assert err.status_hint == 400
    assert framer.failed


def test_unparseable_head_is_fatal():
    """A header section that does not parse stops the framer."""
    framer = StreamFramer()
    [err] = framer.feed(b"GARBAGE\r\n\r\n")
    assert isinstance(err, SipParseError)
    assert framer.failed


def test_stray_cr_is_fatal():
    """A CR not followed by LF between messages is an error."""
    framer = StreamFramer()
    [err] = framer.feed(b"\rX")
    assert isinstance(err, SipParseError)


def test_header_section_over_limit():
    """A header section that grows past the bound is a 513 without waiting for its end."""
    framer = StreamFramer(max_message_size=100)
    assert framer.feed(b"OPTIONS sip:a@b SIP/2.0\r\n") == []
    [err] = framer.feed(b"X-Pad: " + b"a" * 100)
    assert isinstance(err, SipParseError)
    assert err.status_hint == 513
    assert framer.failed


def test_declared_body_over_limit():
    """A Content-Length that would exceed the bound fails at once."""
    framer = StreamFramer(max_message_size=200)
    [err] = framer.feed(factories.minimal_request_bytes().replace(b"Length: 0", b"Length: 999"))
    assert isinstance(err, SipParseError)
    assert err.status_hint == 513
    assert isinstance(err.message, Request)


def test_head_end_found_at_limit_edge():
    """A long head whose end arrives split across feeds is still found."""
    data = factories.request_bytes(transport="TCP")
    head_end = data.index(b"\r\n\r\n")
    framer = StreamFramer()
    assert framer.feed(data[: head_end + 2]) == []
    assert framer.feed(data[head_end + 2 : head_end + 3]) == []
    [msg] = framer.feed(data[head_end + 3 :])
    assert isinstance(msg, Request)
