"""Test doubles for the call layer: server transactions, far ends, an endpoint, messages."""

from __future__ import annotations

from dataclasses import dataclass, field

from b2bua.sip.dialog import Hop
from b2bua.sip.headers import SipURI
from b2bua.sip.message import Request, Response, make_response, parse_message

SDP_A = (
    b"v=0\r\no=alice 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
    b"m=audio 4000 RTP/AVP 0\r\n"
)
SDP_B = (
    b"v=0\r\no=bob 7 7 IN IP4 10.0.0.9\r\ns=-\r\nc=IN IP4 10.0.0.9\r\nt=0 0\r\n"
    b"m=audio 5000 RTP/AVP 0\r\n"
)
SBC = Hop("udp", "10.0.0.1", 5060)
CALLEE = Hop("udp", "10.0.0.9", 5060)
A_CONTACT = SipURI("10.0.0.5", "b2bua", 5060)
B_CONTACT = SipURI("10.0.0.5", "b2bua", 5060)


def caller_invite(
    *,
    call_id: str = "a-call@10.0.0.1",
    from_tag: str = "a-tag",
    cseq: int = 1,
    to_tag: str | None = None,
    method: str = "INVITE",
    body: bytes | None = SDP_A,
    extra: tuple[str, ...] = (),
    max_forwards: int = 70,
) -> Request:
    """An INVITE (or any request) from the SBC at 10.0.0.1, the A side."""
    to = "<sip:+4930123@example.com>" + (f";tag={to_tag}" if to_tag else "")
    lines = [
        f"{method} sip:+4930123@example.com SIP/2.0",
        f"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-a-{method}-{cseq}",
        "Via: SIP/2.0/UDP 192.168.1.7:5060;branch=z9hG4bK-ue",
        "Record-Route: <sip:10.0.0.1;lr>",
        f"Max-Forwards: {max_forwards}",
        f'From: "Alice" <sip:alice@example.com>;tag={from_tag}',
        f"To: {to}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",
        "Contact: <sip:alice@10.0.0.1:5060>",
        "User-Agent: PhoneA/1.0",
        "P-Asserted-Identity: <sip:+4930999@example.com>",
        "X-Secret: do-not-pass",
        *extra,
    ]
    if body:
        lines.append("Content-Type: application/sdp")
    data = ("\r\n".join(lines) + f"\r\nContent-Length: {len(body or b'')}\r\n\r\n").encode()
    msg = parse_message(data + (body or b""))
    assert isinstance(msg, Request)
    return msg


def callee_request(ref: Request, method: str, cseq: int, *, body: bytes = b"") -> Request:
    """A request from the callee inside the B dialog that ``ref`` (a request to it) names."""
    lines = [
        f"{method} sip:b2bua@10.0.0.5:5060 SIP/2.0",
        f"Via: SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bK-b-{method}-{cseq}",
        "Max-Forwards: 70",
        f"From: <sip:+4930123@example.com>;tag={ref.to_tag}",
        f"To: <sip:alice@example.com>;tag={ref.from_tag}",
        f"Call-ID: {ref.call_id}",
        f"CSeq: {cseq} {method}",
        "Contact: <sip:bob@10.0.0.9:5060>",
    ]
    if body:
        lines.append("Content-Type: application/sdp")
    data = ("\r\n".join(lines) + f"\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    msg = parse_message(data + body)
    assert isinstance(msg, Request)
    return msg


def answer(
    request: Request,
    status: int,
    *,
    tag: str | None = "b-tag",
    body: bytes = b"",
    contact: str | None = "<sip:bob@10.0.0.9:5060>",
    extra: tuple[tuple[str, str], ...] = (),
) -> Response:
    """The far end's response to ``request`` (a To tag unless ``tag`` is None)."""
    response = make_response(request, status, to_tag=tag)
    if contact is not None and status > 100:
        response.headers.add("Contact", contact)
    for name, value in extra:
        response.headers.add(name, value)
    if body:
        response.headers.add("Content-Type", "application/sdp")
        response.body = body
    return response


@dataclass(eq=False)
class FakeServer:
    """A server transaction that records the responses sent on it."""

    request: Request
    responses: list[Response] = field(default_factory=list)

    def respond(self, response: Response) -> None:
        self.responses.append(response)

    @property
    def statuses(self) -> list[int]:
        return [r.status for r in self.responses]

    @property
    def last(self) -> Response:
        return self.responses[-1]
