"""The SIP endpoint: validation, 400s, retransmission absorption, CANCEL, client timers."""

from __future__ import annotations

from dataclasses import dataclass, field

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock

from b2bua.config import SipSettings
from b2bua.sip.endpoint import Destination, ServerHandle, SipEndpoint
from b2bua.sip.message import Request, Response, parse_message
from b2bua.sip.transport import SipDatagramProtocol, Source
from b2bua.timers.driver import WheelDriver
from b2bua.timers.wheel import TimerWheel

SBC = ("127.0.0.1", 5070)


def request(
    method: str = "OPTIONS",
    *,
    branch: str = "z9hG4bK-1",
    cseq_method: str | None = None,
    extra: str = "",
) -> bytes:
    return (
        f"{method} sip:b2bua@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch={branch};rport\r\n"
        "From: <sip:sbc@127.0.0.1>;tag=a\r\n"
        "To: <sip:b2bua@127.0.0.1>\r\n"
        "Call-ID: c1@sbc\r\n"
        f"CSeq: 1 {cseq_method or method}\r\n"
        "Max-Forwards: 70\r\n"
        f"{extra}"
        "Content-Length: 0\r\n\r\n"
    ).encode()


class FakeUdp:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def write(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((data, addr))

    def getHost(self) -> IPv4Address:
        return IPv4Address("UDP", "127.0.0.1", 5060)

    def messages(self) -> list[Request | Response]:
        return [parse_message(data) for data, _ in self.sent]


@dataclass
class RecordingTU:
    requests: list[tuple[Request, ServerHandle]] = field(default_factory=list)
    acks: list[Request] = field(default_factory=list)
    cancels: list[ServerHandle] = field(default_factory=list)
    strays: list[Response] = field(default_factory=list)
    answer_with: int | None = 200

    def request_received(self, request: Request, server: ServerHandle) -> None:
        self.requests.append((request, server))
        if self.answer_with is not None:
            server.respond(server.make_response(self.answer_with, to_tag="b2b"))

    def ack_received(self, ack: Request, source: Source) -> None:
        self.acks.append(ack)

    def cancel_received(self, server: ServerHandle, cancel: Request) -> None:
        self.cancels.append(server)
        server.respond(server.make_response(487, to_tag="b2b"))

    def stray_response(self, response: Response, source: Source) -> None:
        self.strays.append(response)


@dataclass
class Listener:
    responses: list[Response] = field(default_factory=list)
    timeouts: int = 0
    failures: list[str] = field(default_factory=list)

    def response_received(self, response: Response) -> None:
        self.responses.append(response)

    def timed_out(self) -> None:
        self.timeouts += 1

    def transport_failed(self, reason: str) -> None:
        self.failures.append(reason)


def endpoint(
    tu: RecordingTU | None = None,
) -> tuple[SipEndpoint, SipDatagramProtocol, FakeUdp, Clock]:
    clock = Clock()
    driver = WheelDriver(TimerWheel(), clock)
    ep = SipEndpoint(SipSettings(), clock, driver, tu if tu is not None else RecordingTU())
    udp = FakeUdp()
    protocol = SipDatagramProtocol(ep, ep.stats.transport, 65536)
    protocol.transport = udp  # type: ignore[assignment]
    protocol.startProtocol()
    ep._udp = protocol
    ep._local["udp"] = ("127.0.0.1", 5060)
    return ep, protocol, udp, clock


def test_options_is_delivered_once_and_its_retransmission_absorbed() -> None:
    """A retransmitted request reaches the TU once; the transaction resends its answer."""
    tu = RecordingTU()
    ep, protocol, udp, _ = endpoint(tu)
    protocol.datagramReceived(request(), SBC)
    protocol.datagramReceived(request(), SBC)
    assert len(tu.requests) == 1
    assert [m.status for m in udp.messages()] == [200, 200]
    assert ep.stats.retransmissions_absorbed == 1


def test_response_goes_to_the_source_port_with_rport() -> None:
    """RFC 3581: a request with rport is answered to the port it came from, with received/rport."""
    _, protocol, udp, _ = endpoint()
    protocol.datagramReceived(request(), ("127.0.0.1", 40123))
    data, addr = udp.sent[0]
    assert addr == ("127.0.0.1", 40123)
    assert b"rport=40123" in data


def test_cseq_mismatch_gets_400_with_a_warning_and_no_transaction() -> None:
    """A request whose CSeq method differs from its method is answered 400 and leaves no state."""
    tu = RecordingTU()
    ep, protocol, udp, _ = endpoint(tu)
    protocol.datagramReceived(request("OPTIONS", cseq_method="INVITE"), SBC)
    (response,) = udp.messages()
    assert isinstance(response, Response) and response.status == 400
    assert response.headers.get("Warning", "").startswith('399 b2bua "')
    assert tu.requests == [] and len(ep.table) == 0


def test_unparsable_bytes_are_dropped_and_counted() -> None:
    """Garbage gets no answer, is counted, and creates nothing."""
    ep, protocol, udp, _ = endpoint()
    protocol.datagramReceived(b"\x16\x03\x01 not sip", SBC)
    assert udp.sent == [] and ep.stats.dropped_messages == 1 and len(ep.table) == 0


def test_unsupported_version_gets_505() -> None:
    """A request in SIP/3.0 is answered 505 (RFC 3261 §8.2.2... via validate_request)."""
    _, protocol, udp, _ = endpoint()
    protocol.datagramReceived(request().replace(b"SIP/2.0\r\n", b"SIP/3.0\r\n", 1), SBC)
    assert [m.status for m in udp.messages()] == [505]


def test_cancel_answers_200_and_lets_the_tu_answer_487() -> None:
    """CANCEL for a pending INVITE: 200 to the CANCEL, 487 to the INVITE, its ACK absorbed."""
    tu = RecordingTU(answer_with=None)
    ep, protocol, udp, clock = endpoint(tu)
    protocol.datagramReceived(request("INVITE"), SBC)
    protocol.datagramReceived(request("CANCEL"), SBC)
    assert len(tu.cancels) == 1
    statuses = [(m.status, m.cseq.method) for m in udp.messages()]
    assert statuses == [(100, "INVITE"), (200, "CANCEL"), (487, "INVITE")]
    ack = request("ACK").replace(b"To: <sip:b2bua@127.0.0.1>", b"To: <sip:b2bua@127.0.0.1>;tag=b2b")
    protocol.datagramReceived(ack, SBC)
    assert tu.acks == []  # the ACK for a non-2xx belongs to the transaction
    clock.advance(40)
    assert len(ep.table) == 0


def test_cancel_without_its_invite_gets_481() -> None:
    """A CANCEL that matches no INVITE transaction is answered 481."""
    _, protocol, udp, _ = endpoint()
    protocol.datagramReceived(request("CANCEL"), SBC)
    assert [m.status for m in udp.messages()] == [481]


def test_ack_for_2xx_goes_to_the_tu() -> None:
    """An ACK matching no transaction (the ACK for a 2xx) is passed to the TU."""
    tu = RecordingTU()
    _, protocol, _, _ = endpoint(tu)
    protocol.datagramReceived(request("ACK", branch="z9hG4bK-ack"), SBC)
    assert len(tu.acks) == 1


def invite_out() -> Request:
    message = parse_message(request("INVITE"))
    assert isinstance(message, Request)
    message.headers.remove("Via")
    return message


def response_to(sent: bytes, status: int) -> bytes:
    """A response from the far end to a request we sent."""
    message = parse_message(sent)
    assert isinstance(message, Request)
    from b2bua.sip.message import make_response

    return make_response(message, status, to_tag="far").serialize()


def test_client_invite_gets_our_via_and_is_retransmitted_on_udp() -> None:
    """An INVITE we send carries our Via with a fresh branch and is retransmitted by timer A."""
    ep, _, udp, clock = endpoint()
    ep.send_request(invite_out(), Destination("udp", "127.0.0.1", 5080), Listener())
    first = udp.messages()[0]
    assert first.top_via.host == "127.0.0.1" and first.top_via.port == 5060
    assert (first.top_via.branch or "").startswith("z9hG4bK")
    clock.advance(0.5)
    clock.advance(1.0)
    assert len(udp.sent) == 3
    assert {addr for _, addr in udp.sent} == {("127.0.0.1", 5080)}


def test_client_cancel_waits_for_a_provisional_then_487_is_acked() -> None:
    """cancel() waits for a 1xx; after 180 the CANCEL goes; the 487 is delivered and ACKed."""
    ep, protocol, udp, _ = endpoint()
    listener = Listener()
    handle = ep.send_request(invite_out(), Destination("udp", "127.0.0.1", 5080), listener)
    handle.cancel("SIP;cause=487")
    assert [m.method for m in udp.messages()] == ["INVITE"]
    invite_bytes = udp.sent[0][0]
    protocol.datagramReceived(response_to(invite_bytes, 180), ("127.0.0.1", 5080))
    assert udp.messages()[-1].method == "CANCEL"
    assert udp.messages()[-1].headers.get("Reason") == "SIP;cause=487"
    protocol.datagramReceived(response_to(invite_bytes, 487), ("127.0.0.1", 5080))
    assert [r.status for r in listener.responses] == [180, 487]
    assert udp.messages()[-1].method == "ACK"


def test_unanswered_request_times_out_after_64_t1() -> None:
    """A non-INVITE request without any answer is reported timed out by timer F (64*T1)."""
    ep, _, _, clock = endpoint()
    listener = Listener()
    bye = parse_message(request("BYE"))
    assert isinstance(bye, Request)
    bye.headers.remove("Via")
    ep.send_request(bye, Destination("udp", "127.0.0.1", 5080), listener)
    clock.advance(31.9)
    assert listener.timeouts == 0
    for _ in range(10):
        clock.advance(0.1)
    assert listener.timeouts == 1
    clock.advance(10)
    assert len(ep.table) == 0


def test_stray_2xx_goes_to_the_tu() -> None:
    """A 200 OK that matches no client transaction is handed to the TU (retransmitted 2xx)."""
    tu = RecordingTU()
    ep, protocol, _, _ = endpoint(tu)
    stray = response_to(request("INVITE").replace(b"127.0.0.1:5070", b"127.0.0.1:5060"), 200)
    protocol.datagramReceived(stray, ("127.0.0.1", 5080))
    assert [r.status for r in tu.strays] == [200]
    assert ep.stats.stray_responses == 1


def test_exception_in_the_tu_does_not_escape() -> None:
    """A TU that raises is logged; the endpoint carries on and the reactor sees nothing."""

    class Broken(RecordingTU):
        def request_received(self, request: Request, server: ServerHandle) -> None:
            raise RuntimeError("boom")

    _, protocol, _, _ = endpoint(Broken())
    protocol.datagramReceived(request(), SBC)  # must not raise


# ------------------------------------------- rejections go where the request came from


def test_rejected_request_is_answered_to_its_source_with_received_and_rport() -> None:
    """§18.2.1/RFC 3581 hold for refused requests too: 400 to the packet's source port."""
    _, protocol, udp, _ = endpoint()
    bad = request("OPTIONS", cseq_method="INVITE").replace(
        b"127.0.0.1:5070;branch", b"sbc.example.com;branch"
    )
    protocol.datagramReceived(bad, ("127.0.0.1", 40123))
    ((_, addr),) = udp.sent
    assert addr == ("127.0.0.1", 40123)
    (response,) = udp.messages()
    assert isinstance(response, Response) and response.status == 400
    assert (response.top_via.received, response.top_via.rport) == ("127.0.0.1", 40123)


def test_rejected_request_without_rport_goes_to_the_source_address_and_via_port() -> None:
    """Without rport the 400 goes to the source address (received) and the sent-by port."""
    _, protocol, udp, _ = endpoint()
    bad = request("OPTIONS", cseq_method="INVITE").replace(
        b"127.0.0.1:5070;branch=z9hG4bK-1;rport", b"192.0.2.9:5070;branch=z9hG4bK-1"
    )
    protocol.datagramReceived(bad, ("127.0.0.1", 40123))
    assert [addr for _, addr in udp.sent] == [("127.0.0.1", 5070)]


def test_partly_parsed_request_is_answered_to_its_source() -> None:
    """A request the parser could only partly read (bad Content-Length) gets 400 back to it."""
    ep, protocol, udp, _ = endpoint()
    bad = (
        request()
        .replace(b"127.0.0.1:5070", b"sbc.example.com")
        .replace(b"Content-Length: 0", b"Content-Length: -1")
    )
    protocol.datagramReceived(bad, ("127.0.0.1", 40123))
    assert [addr for _, addr in udp.sent] == [("127.0.0.1", 40123)]
    assert [m.status for m in udp.messages()] == [400]
    assert ep.stats.rejected_requests == 1


def test_request_with_an_unparsable_via_gets_400_at_its_source() -> None:
    """RFC 4475 badinv01: a top Via that does not parse; 400 to the packet's source, no error."""
    ep, protocol, udp, _ = endpoint()
    bad = request().replace(b"127.0.0.1:5070;branch=z9hG4bK-1;rport", b"192.0.2.15;;,;,,")
    protocol.datagramReceived(bad, ("127.0.0.1", 40123))
    assert [addr for _, addr in udp.sent] == [("127.0.0.1", 40123)]
    (response,) = udp.messages()
    assert isinstance(response, Response) and response.status == 400
    assert ep.stats.rejected_requests == 1


def test_request_without_via_is_dropped_quietly() -> None:
    """A request with no Via at all cannot be answered: dropped and counted, nothing raised."""
    ep, protocol, udp, _ = endpoint()
    bad = request().replace(b"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1;rport\r\n", b"")
    protocol.datagramReceived(bad, ("127.0.0.1", 40123))
    assert udp.sent == [] and ep.stats.dropped_messages == 1 and ep.stats.rejected_requests == 0


def test_contact_uri_is_one_shared_object_per_address() -> None:
    """Every call's legs share the Contact URI of their transport (memory per call);
    another transport or a new address gets its own."""
    ep, _, _, _ = endpoint()
    first = ep.contact_uri("udp")
    assert ep.contact_uri("udp") is first
    assert str(first) == "sip:b2bua@127.0.0.1:5060"
    ep._local["udp"] = ("127.0.0.2", 5062)
    moved = ep.contact_uri("udp")
    assert str(moved) == "sip:b2bua@127.0.0.2:5062" and moved is not first


def test_an_answered_client_invite_keeps_only_what_a_cancel_needs() -> None:
    """After its 2xx the handle and the Accepted transaction hold a reduced INVITE (no
    body, no Contact) for timer M; cancel() then sends nothing (§9.1: too late)."""
    ep, protocol, udp, _ = endpoint()
    invite = invite_out()
    invite.headers.add("Contact", "<sip:b2bua@127.0.0.1>")
    invite.headers.add("Content-Type", "application/sdp")
    invite.body = b"v=0\r\n"
    handle = ep.send_request(invite, Destination("udp", "127.0.0.1", 5080), Listener())
    sent = udp.sent[0][0]
    assert handle.request.body
    protocol.datagramReceived(response_to(sent, 200), ("127.0.0.1", 5080))
    assert handle.request.body == b"" and "contact" not in handle.request.headers
    assert handle.request.call_id == parse_message(sent).call_id
    handle.cancel()
    assert len(udp.sent) == 1
