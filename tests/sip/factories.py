"""Message factories for the SIP core tests: wire bytes and parsed messages."""

from __future__ import annotations

from b2bua.sip.message import Request, Response, parse_message

SDP = (
    b"v=0\r\n"
    b"o=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\n"
    b"s=-\r\n"
    b"c=IN IP4 192.0.2.10\r\n"
    b"t=0 0\r\n"
    b"m=audio 49170 RTP/AVP 0 8 18 101\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:18 G729/8000\r\n"
    b"a=fmtp:18 annexb=no\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-16\r\n"
    b"a=ptime:20\r\n"
    b"a=sendrecv\r\n"
)

BRANCH = "z9hG4bK776asdhds-1"


def request_bytes(
    method: str = "INVITE",
    uri: str = "sip:+15551234567@gw.example.com:5060;user=phone",
    *,
    branch: str = BRANCH,
    via_host: str = "192.0.2.10:5060",
    transport: str = "UDP",
    call_id: str = "a84b4c76e66710@pc33.example.com",
    cseq: int = 314159,
    cseq_method: str | None = None,
    from_tag: str = "1928301774",
    to_tag: str | None = None,
    extra: tuple[str, ...] = (),
    body: bytes | None = None,
) -> bytes:
    """A well-formed request, by default a typical ~1 KB INVITE with SDP."""
    if body is None:
        body = SDP if method == "INVITE" else b""
    to = '"Bob" <sip:+15551234567@example.com;user=phone>'
    if to_tag:
        to += f";tag={to_tag}"
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/{transport} {via_host};branch={branch};rport",
        "Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bKnashds8;received=198.51.100.7",
        "Max-Forwards: 69",
        "Record-Route: <sip:198.51.100.7;lr>",
        f"To: {to}",
        f'From: "Alice Example" <sip:alice@example.com>;tag={from_tag}',
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {cseq_method or method}",
        "Contact: <sip:alice@192.0.2.10:5060;transport=udp>",
        "Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, MESSAGE, SUBSCRIBE, INFO",
        "Supported: replaces, timer, 100rel",
        "Session-Expires: 1800;refresher=uac",
        "User-Agent: ExamplePhone/1.2.3",
        "P-Asserted-Identity: <sip:alice@example.com>",
        *extra,
    ]
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def response_bytes(
    status: int = 200,
    reason: str = "OK",
    *,
    method: str = "INVITE",
    branch: str = BRANCH,
    via_host: str = "192.0.2.10:5060",
    cseq: int = 314159,
    to_tag: str | None = "a6c85cf",
    extra: tuple[str, ...] = (),
    body: bytes = b"",
) -> bytes:
    """A well-formed response to ``request_bytes(method)`` with one Via."""
    to = '"Bob" <sip:+15551234567@example.com;user=phone>'
    if to_tag:
        to += f";tag={to_tag}"
    lines = [
        f"SIP/2.0 {status} {reason}",
        f"Via: SIP/2.0/UDP {via_host};branch={branch};rport=5060;received=192.0.2.10",
        f"To: {to}",
        'From: "Alice Example" <sip:alice@example.com>;tag=1928301774',
        "Call-ID: a84b4c76e66710@pc33.example.com",
        f"CSeq: {cseq} {method}",
        *extra,
    ]
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def request(method: str = "INVITE", **kwargs: object) -> Request:
    """A parsed request from :func:`request_bytes`."""
    msg = parse_message(request_bytes(method, **kwargs))  # type: ignore[arg-type]
    assert isinstance(msg, Request)
    return msg


def response(status: int = 200, reason: str = "OK", **kwargs: object) -> Response:
    """A parsed response from :func:`response_bytes`."""
    msg = parse_message(response_bytes(status, reason, **kwargs))  # type: ignore[arg-type]
    assert isinstance(msg, Response)
    return msg


def minimal_request_bytes(method: str = "OPTIONS", extra: str = "", body: bytes = b"") -> bytes:
    """The smallest valid request, with raw ``extra`` header lines appended."""
    head = (
        f"{method} sip:bob@example.com SIP/2.0\r\n"
        "Via: SIP/2.0/UDP host.example.com;branch=z9hG4bKabc\r\n"
        "Max-Forwards: 70\r\n"
        "To: <sip:bob@example.com>\r\n"
        "From: <sip:alice@example.com>;tag=1\r\n"
        "Call-ID: c1@example.com\r\n"
        f"CSeq: 1 {method}\r\n"
        f"{extra}"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body
