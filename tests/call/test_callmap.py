"""The call map on a real SIP endpoint with a fake UDP socket, in virtual time."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock

from b2bua.call.bridge import Bridge, Call
from b2bua.call.callmap import CallControlById, CallMap, CallService, make_call_service
from b2bua.call.events import CallObserver, EndReason, Side
from b2bua.config import parse_config_text
from b2bua.sip.endpoint import SipEndpoint
from b2bua.sip.message import Request, Response, make_response, parse_message
from b2bua.sip.transport import SipDatagramProtocol
from b2bua.timers.driver import WheelDriver
from b2bua.timers.wheel import TimerWheel
from tests.call.fakes import SDP_A, SDP_B

SBC = ("127.0.0.1", 5070)
CALLEE = ("127.0.0.1", 5080)


def config_text(calls: str = "", route: str = "", trusted: str = "127.0.0.0/8") -> str:
    """The test configuration: one route to the callee; extra [calls] and route lines."""
    return (
        "[sip]\nlisten = udp:127.0.0.1:5060\n"
        f"[calls]\ntrusted = {trusted}\n{calls}"
        f"[route:out]\nnext_hop = 127.0.0.1:5080\n{route}"
    )


class FakeUdp:
    """The UDP socket: records what the endpoint sends."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def write(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((data, addr))

    def getHost(self) -> IPv4Address:
        return IPv4Address("UDP", "127.0.0.1", 5060)


class World:
    """b2bua (endpoint + call map) between an SBC at :5070 and a callee at :5080."""

    def __init__(self, calls: str = "", route: str = "", trusted: str = "127.0.0.0/8") -> None:
        self.config = parse_config_text(config_text(calls, route, trusted))
        self.clock = Clock()
        self.clock.advance(1000.0)
        self.wheel = TimerWheel()
        self.driver = WheelDriver(self.wheel, self.clock)
        self.endpoint = SipEndpoint(self.config.sip, self.clock, self.driver)
        self.udp = FakeUdp()
        self.protocol = SipDatagramProtocol(self.endpoint, self.endpoint.stats.transport, 65536)
        self.protocol.transport = self.udp  # type: ignore[assignment]
        self.protocol.startProtocol()
        self.endpoint._udp = self.protocol
        self.endpoint._local["udp"] = ("127.0.0.1", 5060)
        self.service = make_call_service(self.config, self.endpoint, self.driver)
        self.callmap: CallMap = self.service.callmap
        self.seen: dict[tuple[str, int], int] = {}

    def send(self, data: bytes | Request | Response, source: tuple[str, int] = SBC) -> None:
        raw = data if isinstance(data, bytes) else data.serialize()
        self.protocol.datagramReceived(raw, source)

    def take(self, to: tuple[str, int]) -> list[Request | Response]:
        """Messages sent to ``to`` since the last take of ``to``."""
        everything = self.all_to(to)
        start = self.seen.get(to, 0)
        self.seen[to] = len(everything)
        return everything[start:]

    def all_to(self, to: tuple[str, int]) -> list[Request | Response]:
        return [parse_message(d) for d, addr in self.udp.sent if addr == to]

    def advance(self, seconds: float, step: float = 0.25) -> None:
        for _ in range(int(seconds / step)):
            self.clock.advance(step)


def invite(
    *,
    call_id: str = "call-a@sbc",
    from_tag: str = "ta",
    branch: str = "z9hG4bK-inv",
    extra: str = "",
    body: bytes = SDP_A,
) -> bytes:
    head = (
        "INVITE sip:+4930123@example.com SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch={branch};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:alice@example.com>;tag={from_tag}\r\n"
        "To: <sip:+4930123@example.com>\r\n"
        f"Call-ID: {call_id}\r\n"
        "CSeq: 1 INVITE\r\n"
        "Contact: <sip:alice@127.0.0.1:5070>\r\n"
        "P-Asserted-Identity: <sip:alice@example.com>\r\n"
        f"{extra}"
        "Content-Type: application/sdp\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def in_dialog(
    method: str,
    a_response: Response,
    *,
    cseq: int,
    branch: str,
    call_id: str = "call-a@sbc",
) -> bytes:
    """A request from the SBC inside the A dialog that ``a_response`` established."""
    return (
        f"{method} sip:b2bua@127.0.0.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch={branch};rport\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:alice@example.com>;tag=ta\r\n"
        f"To: <sip:+4930123@example.com>;tag={a_response.to_tag}\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: {cseq} {method}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def reply(request: Request, status: int, *, body: bytes = b"", tag: str = "tb") -> Response:
    """The callee's response to ``request``."""
    response = make_response(request, status, to_tag=tag)
    if status > 100:
        response.headers.add("Contact", "<sip:bob@127.0.0.1:5080>")
    if body:
        response.headers.add("Content-Type", "application/sdp")
        response.body = body
    return response


def callee_request(b_invite: Request, method: str, cseq: int, branch: str) -> bytes:
    return (
        f"{method} sip:b2bua@127.0.0.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5080;branch={branch};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:+4930123@example.com>;tag=tb\r\n"
        f"To: <sip:alice@example.com>;tag={b_invite.from_tag}\r\n"
        f"Call-ID: {b_invite.call_id}\r\n"
        f"CSeq: {cseq} {method}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def requests(messages: list[Request | Response], method: str) -> list[Request]:
    return [m for m in messages if isinstance(m, Request) and m.method == method]


def statuses(messages: list[Request | Response]) -> list[int]:
    return [m.status for m in messages if isinstance(m, Response)]


def connected(world: World) -> tuple[Request, Response]:
    """Run a call up to the ACK; return the B-leg INVITE and the caller's 200."""
    world.send(invite())
    assert statuses(world.take(SBC)) == [100]
    (b_invite,) = requests(world.take(CALLEE), "INVITE")
    world.send(reply(b_invite, 180), CALLEE)
    world.send(reply(b_invite, 200, body=SDP_B), CALLEE)
    a_msgs = world.take(SBC)
    assert statuses(a_msgs) == [180, 200]
    ok = a_msgs[-1]
    assert isinstance(ok, Response)
    world.send(in_dialog("ACK", ok, cseq=1, branch="z9hG4bK-ack"))
    (ack,) = requests(world.take(CALLEE), "ACK")
    assert ack.call_id == b_invite.call_id
    return b_invite, ok


def assert_clean(world: World) -> None:
    """No call, no call timer, no transaction left once the transaction timers ran out."""
    callmap = world.callmap
    assert len(callmap) == 0 and callmap.active == 0
    for index in ("_by_dialog", "_by_initial", "_by_call_id", "_handles", "_call_timers"):
        assert getattr(callmap, index) == {}, index
    assert callmap._holds == {} and not callmap._per_route
    world.advance(40)
    assert len(world.endpoint.table) == 0
    assert len(world.wheel) == 0


def test_basic_call_and_caller_hangup() -> None:
    """INVITE, 180, 200, ACK, BYE from the caller: both legs torn down, nothing left."""
    world = World()
    b_invite, ok = connected(world)
    assert b_invite.call_id != "call-a@sbc"
    assert b_invite.headers.get("P-Asserted-Identity") == "<sip:alice@example.com>"
    assert len(b_invite.via) == 1 and b_invite.top_via.sent_by == ("127.0.0.1", 5060)
    assert ok.body == SDP_B and ok.to_tag != "tb"
    (call,) = world.callmap.calls()
    assert call.route.name == "out" and call.answered
    world.clock.advance(30)
    world.send(in_dialog("BYE", ok, cseq=2, branch="z9hG4bK-bye"))
    assert statuses(world.take(SBC)) == [200]
    (bye,) = requests(world.take(CALLEE), "BYE")
    world.send(reply(bye, 200), CALLEE)
    assert call.end_reason is EndReason.CALLER_HANGUP
    assert call.duration == pytest.approx(30.0)
    assert world.callmap.stats.ended["caller hung up"] == 1
    assert_clean(world)


def test_callee_hangup_reaches_the_caller() -> None:
    """BYE from the callee: 200 to it, BYE to the caller."""
    world = World()
    b_invite, _ok = connected(world)
    world.send(callee_request(b_invite, "BYE", 5, "z9hG4bK-bbye"), CALLEE)
    assert statuses(world.take(CALLEE)) == [200]
    (bye,) = requests(world.take(SBC), "BYE")
    assert bye.call_id == "call-a@sbc" and bye.to_tag == "ta"
    world.send(make_response(bye, 200))
    assert_clean(world)


def test_cancel_before_answer() -> None:
    """CANCEL from the caller: 200 + 487 to it; CANCEL to the callee after its 180."""
    world = World()
    world.send(invite())
    (b_invite,) = requests(world.take(CALLEE), "INVITE")
    world.send(reply(b_invite, 180), CALLEE)
    world.take(SBC)
    cancel = invite().replace(b"INVITE sip", b"CANCEL sip").replace(b"1 INVITE", b"1 CANCEL")
    world.send(cancel.split(b"Content-Type")[0] + b"Content-Length: 0\r\n\r\n")
    a_msgs = world.take(SBC)
    assert sorted(statuses(a_msgs)) == [200, 487]
    (b_cancel,) = requests(world.take(CALLEE), "CANCEL")
    world.send(reply(b_cancel, 200), CALLEE)
    world.send(reply(b_invite, 487), CALLEE)
    assert requests(world.take(CALLEE), "ACK")  # the transaction ACKs the 487
    (call_ended,) = world.callmap.stats.ended.items()
    assert call_ended == ("cancelled", 1)
    a_ack = in_dialog("ACK", a_msgs[-1], cseq=1, branch="z9hG4bK-inv")  # type: ignore[arg-type]
    world.send(a_ack)
    assert_clean(world)


def test_busy_callee() -> None:
    """486 from the callee reaches the caller; the call leaves the map."""
    world = World()
    world.send(invite())
    (b_invite,) = requests(world.take(CALLEE), "INVITE")
    world.send(reply(b_invite, 486), CALLEE)
    assert statuses(world.take(SBC)) == [100, 486]
    assert len(world.callmap) == 0
    world.advance(40)
    assert len(world.wheel) == 0


def test_untrusted_source_gets_403_and_leaves_nothing() -> None:
    """An INVITE from outside [calls] trusted: 403, no call, no B-leg."""
    world = World(trusted="10.0.0.0/8, 2001:db8::/32")
    world.send(invite())
    assert statuses(world.take(SBC)) == [100, 403]  # the 100 comes from the transaction
    assert world.all_to(CALLEE) == []
    assert len(world.callmap) == 0 and world.callmap.stats.refused_untrusted == 1


def test_options_keepalive_and_405() -> None:
    """OPTIONS out of dialog: 200 with Allow; SUBSCRIBE: 405 with Allow."""
    world = World()
    options = invite().replace(b"INVITE sip", b"OPTIONS sip").replace(b"1 INVITE", b"1 OPTIONS")
    world.send(options)
    (ok,) = world.take(SBC)
    assert isinstance(ok, Response) and ok.status == 200
    assert "OPTIONS" in ok.headers.get_fields("Allow")[0]
    sub = invite(branch="z9hG4bK-s").replace(b"INVITE sip", b"SUBSCRIBE sip")
    world.send(sub.replace(b"1 INVITE", b"1 SUBSCRIBE"))
    (refused,) = world.take(SBC)
    assert isinstance(refused, Response) and refused.status == 405
    assert len(world.callmap) == 0


def test_unknown_dialog_gets_481() -> None:
    """A BYE for a dialog b2bua does not know."""
    world = World()
    fake = make_response(parse_message(invite()), 200, to_tag="nope")  # type: ignore[arg-type]
    world.send(in_dialog("BYE", fake, cseq=2, branch="z9hG4bK-x"))
    assert statuses(world.take(SBC)) == [481]


def test_global_and_route_limits_give_503_with_retry_after() -> None:
    """max_calls reached: 503 with Retry-After, counted per route as well."""
    world = World(calls="max_calls = 1\nretry_after = 7\n")
    world.send(invite())
    world.send(invite(call_id="second", branch="z9hG4bK-2"))
    refused = world.take(SBC)[-1]
    assert isinstance(refused, Response) and refused.status == 503
    assert refused.headers.get("Retry-After") == "7"
    assert len(world.callmap) == 1
    route_full = World(route="max_calls = 1\n")
    route_full.send(invite())
    route_full.send(invite(call_id="second", branch="z9hG4bK-2"))
    assert statuses(route_full.take(SBC))[-1] == 503


def test_no_route_gives_404() -> None:
    """Routes exist but none matches: 404."""
    world = World(route="domain = other.example\n")
    world.send(invite())
    assert statuses(world.take(SBC))[-1] == 404
    assert len(world.callmap) == 0


def test_routes_are_matched_and_reloaded_without_touching_calls() -> None:
    """reload_routes sends new calls elsewhere; a call in progress keeps its route."""
    world = World()
    world.send(invite())
    (first,) = world.callmap.calls()
    new = parse_config_text("[route:alt]\nnext_hop = 127.0.0.1:5090\nuser_prefix = +4930\n").routes
    world.callmap.reload_routes(new)
    world.send(invite(call_id="second", branch="z9hG4bK-2"))
    assert requests(world.all_to(("127.0.0.1", 5090)), "INVITE")
    assert first.route.name == "out"
    assert {c.route.name for c in world.callmap.calls()} == {"out", "alt"}


def test_merged_request_gets_482() -> None:
    """The same INVITE arriving by another path (new branch) is a loop (§8.2.2.2)."""
    world = World()
    world.send(invite())
    world.send(invite(branch="z9hG4bK-other"))
    assert statuses(world.take(SBC))[-1] == 482
    assert len(world.callmap) == 1


class Holder(CallObserver):
    """Holds every call for admission and records the hooks."""

    def __init__(self) -> None:
        self.held: list[Call] = []
        self.events: list[tuple[str, str]] = []

    def call_received(self, call: Call) -> bool:
        self.held.append(call)
        return True

    def call_answered(self, call: Call) -> None:
        self.events.append(("answered", call.id))

    def media_changed(self, call: Call, side: Side, body: bytes) -> None:
        self.events.append(("media", side.value))

    def call_ended(self, call: Call) -> None:
        self.events.append(("ended", str(call.end_reason)))


def test_admission_hold_then_admit() -> None:
    """A holding observer: 100 at once, the B-leg only after admit(call)."""
    world = World()
    holder = Holder()
    world.callmap.add_observer(holder)
    world.send(invite())
    assert statuses(world.take(SBC)) == [100]
    assert world.all_to(CALLEE) == []
    world.callmap.admit(holder.held[0])
    (b_invite,) = requests(world.take(CALLEE), "INVITE")
    world.send(reply(b_invite, 200, body=SDP_B), CALLEE)
    assert holder.events == [("answered", holder.held[0].id)]


def test_admission_hold_then_reject() -> None:
    """reject(call, 402, ...): the caller gets 402 with the Reason, nothing goes out."""
    world = World()
    holder = Holder()
    world.callmap.add_observer(holder)
    world.send(invite())
    world.take(SBC)
    world.callmap.reject(holder.held[0], 402, "No Credit", 'SIP;cause=402;text="No credit"')
    (final,) = world.take(SBC)
    assert isinstance(final, Response) and final.status == 402 and final.reason == "No Credit"
    assert final.headers.get("Reason") == 'SIP;cause=402;text="No credit"'
    assert holder.events == [("ended", "rejected")]
    assert len(world.callmap) == 0 and world.all_to(CALLEE) == []


def test_call_end_from_outside_and_media_changed() -> None:
    """call.end(CREDIT_EXHAUSTED, Reason) BYEs both legs; a re-INVITE reports new media."""
    world = World()
    holder = Holder()
    holder.call_received = lambda call: False  # type: ignore[method-assign]
    world.callmap.add_observer(holder)
    _b_invite, ok = connected(world)
    reinvite = in_dialog("INVITE", ok, cseq=2, branch="z9hG4bK-re").replace(
        b"Content-Length: 0\r\n\r\n",
        b"Contact: <sip:alice@127.0.0.1:5070>\r\nContent-Type: application/sdp\r\n"
        + f"Content-Length: {len(SDP_A) + 14}\r\n\r\n".encode()
        + SDP_A
        + b"a=sendonly\r\n\r\n",
    )
    world.send(reinvite)
    (relayed,) = requests(world.take(CALLEE), "INVITE")
    world.send(reply(relayed, 200, body=SDP_B), CALLEE)
    ok2 = world.take(SBC)[-1]
    assert isinstance(ok2, Response) and ok2.status == 200 and str(ok2.cseq) == "2 INVITE"
    assert ("media", "A") in holder.events
    world.send(in_dialog("ACK", ok, cseq=2, branch="z9hG4bK-ack2"))
    assert [str(m.cseq) for m in requests(world.take(CALLEE), "ACK")] == ["2 ACK"]
    (call,) = world.callmap.calls()
    call.end(EndReason.CREDIT_EXHAUSTED, 'SIP;cause=402;text="Credit exhausted"')
    (bye_a,) = requests(world.take(SBC), "BYE")
    assert bye_a.headers.get("Reason") == 'SIP;cause=402;text="Credit exhausted"'
    assert requests(world.all_to(CALLEE), "BYE")
    assert holder.events[-1] == ("ended", "credit exhausted")


def test_session_timer_expiry_ends_both_legs() -> None:
    """The caller refreshes but vanishes: at expiry both legs get BYE; nothing is left."""
    world = World(calls="session_expires = 30\nmin_se = 10\n")
    world.send(
        invite(extra="Supported: timer\r\nSession-Expires: 30;refresher=uac\r\nMin-SE: 10\r\n")
    )
    (b_invite,) = requests(world.take(CALLEE), "INVITE")
    assert b_invite.headers.get("Session-Expires") == "30"
    world.send(reply(b_invite, 200, body=SDP_B), CALLEE)
    ok = world.take(SBC)[-1]
    assert isinstance(ok, Response) and ok.headers.get("Session-Expires") == "30;refresher=uac"
    world.send(in_dialog("ACK", ok, cseq=1, branch="z9hG4bK-ack"))
    world.advance(19.5)
    assert requests(world.all_to(SBC), "BYE") == []
    # The callee runs no timer (no Session-Expires in its 200): b2bua refreshed it at 15 s.
    refresh = requests(world.take(CALLEE), "INVITE")[0]
    assert str(refresh.cseq) == "2 INVITE" and refresh.body == SDP_A
    world.send(reply(refresh, 200, body=SDP_B), CALLEE)
    assert [str(m.cseq) for m in requests(world.take(CALLEE), "ACK")] == ["2 ACK"]
    world.advance(1.0)
    bye_a = requests(world.all_to(SBC), "BYE")[0]
    bye_b = requests(world.all_to(CALLEE), "BYE")[0]
    world.send(make_response(bye_a, 200))
    world.send(reply(bye_b, 200), CALLEE)
    (call_ended,) = world.callmap.stats.ended.items()
    assert call_ended == ("session timer expired", 1)
    assert_clean(world)


def test_drain_refuses_new_calls_and_fires_when_empty() -> None:
    """drain(): 503 for new INVITEs; the Deferred fires when the last call ends."""
    world = World()
    _b_invite, ok = connected(world)
    fired: list[object] = []
    world.callmap.drain().addCallback(fired.append)
    world.send(invite(call_id="late", branch="z9hG4bK-late"))
    assert statuses(world.take(SBC))[-1] == 503
    world.send(in_dialog("BYE", ok, cseq=2, branch="z9hG4bK-bye"))
    (bye,) = requests(world.take(CALLEE), "BYE")
    assert fired == []
    world.send(reply(bye, 200), CALLEE)
    assert fired == [None]


def test_service_stop_ends_calls_for_shutdown() -> None:
    """Stopping the call service BYEs every call and waits (bounded) for them to go."""
    world = World()
    service: CallService = world.service
    service.startService()
    assert world.endpoint.tu is world.callmap
    connected(world)
    stopped: list[object] = []
    service.stopService().addCallback(stopped.append)
    assert requests(world.take(SBC), "BYE") and stopped == []
    world.advance(6)
    assert stopped == [None]
    (call_ended,) = world.callmap.stats.ended.items()
    assert call_ended == ("shutdown", 1)


def test_internal_error_answers_500_and_ends_the_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug in the bridge never reaches the reactor: 500 to the request, call ended."""
    world = World()
    _b_invite, ok = connected(world)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(Bridge, "on_request", broken)
    world.send(in_dialog("INFO", ok, cseq=2, branch="z9hG4bK-info"))
    a_msgs = world.take(SBC)
    assert 500 in statuses(a_msgs) and requests(a_msgs, "BYE")
    assert world.callmap.stats.internal_errors == 1
    (call,) = world.callmap.calls()
    assert call.end_reason is EndReason.ERROR


def test_observer_failures_are_contained() -> None:
    """An observer raising in a hook does not stop the call."""
    world = World()

    class Broken(CallObserver):
        def call_received(self, call: Call) -> bool:
            raise ValueError("observer bug")

    world.callmap.add_observer(Broken())
    connected(world)
    assert len(world.callmap) == 1


def test_observer_may_admit_from_inside_its_hook() -> None:
    """An observer that holds and admits at once lets the B-leg go immediately."""
    world = World()

    class Eager(CallObserver):
        def call_received(self, call: Call) -> bool:
            world.callmap.admit(call)
            return True

    world.callmap.add_observer(Eager())
    world.send(invite())
    assert requests(world.take(CALLEE), "INVITE")


def test_charging_call_control_by_a_leg_call_id() -> None:
    """The charging engine names calls by the A-leg Call-ID: admit, end with its reasons."""
    world = World()
    world.callmap.add_observer(Holder())
    control = CallControlById(world.callmap)
    world.send(invite())
    control.admit("call-a@sbc")
    (b_invite,) = requests(world.take(CALLEE), "INVITE")
    world.send(reply(b_invite, 200, body=SDP_B), CALLEE)
    ok = world.take(SBC)[-1]
    assert isinstance(ok, Response)
    world.send(in_dialog("ACK", ok, cseq=1, branch="z9hG4bK-ack"))
    control.end("call-a@sbc", "credit exhausted", 'SIP;cause=402;text="Credit exhausted"')
    (call,) = world.callmap.calls()
    assert call.end_reason is EndReason.CREDIT_EXHAUSTED
    assert world.callmap.get(b_invite.call_id) is call
    control.reject("no-such-call", 403, "Forbidden", "SIP;cause=403")  # ignored


def test_finished_requests_leave_no_handles() -> None:
    """Client handles are dropped once their transaction has a final outcome."""
    world = World()
    _b_invite, ok = connected(world)
    for cseq in range(2, 6):
        world.send(in_dialog("INFO", ok, cseq=cseq, branch=f"z9hG4bK-i{cseq}"))
        (info,) = requests(world.take(CALLEE), "INFO")
        world.send(reply(info, 200), CALLEE)
    (bridge,) = world.callmap._bridges.values()
    assert len(world.callmap._handles[bridge]) == 0
    assert len(bridge._out) == 1  # the initial INVITE only


def test_a_request_the_endpoint_cannot_send_is_a_transport_failure() -> None:
    """send_request raising (here: no TCP on the fake reactor) answers the caller 503."""
    world = World()
    world.callmap.reload_routes(
        parse_config_text("[route:tcp]\nnext_hop = 127.0.0.1:5080;transport=tcp\n").routes
    )
    world.send(invite())
    assert statuses(world.take(SBC)) == [100, 503]
    assert len(world.callmap) == 0


def test_a_retry_with_a_new_cseq_is_a_new_call() -> None:
    """Same Call-ID and From tag but a higher CSeq (a retry after 422/407): not a loop."""
    world = World()
    world.send(invite())
    world.send(invite(branch="z9hG4bK-retry").replace(b"CSeq: 1 INVITE", b"CSeq: 2 INVITE"))
    assert 482 not in statuses(world.take(SBC))
    assert len(world.callmap) == 2
