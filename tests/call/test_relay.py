"""Out-of-dialog MESSAGE relayed statefully by the call map, on a real SIP endpoint with a
fake UDP socket, in virtual time (the World of test_callmap)."""

from __future__ import annotations

from b2bua.call.relay import MessageObserver, RelayedMessage
from b2bua.sip.message import Request, Response
from tests.call.test_callmap import CALLEE, SBC, World

ON = "event_charging = orig\n"


def message(*, branch: str = "z9hG4bK-msg", max_forwards: int = 70, body: str = "hi") -> bytes:
    return (
        "MESSAGE sip:+4930123@example.com SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch={branch};rport\r\n"
        f"Max-Forwards: {max_forwards}\r\n"
        "From: <sip:alice@example.com>;tag=ma\r\n"
        "To: <sip:+4930123@example.com>\r\n"
        "Call-ID: msg-a@sbc\r\n"
        "CSeq: 7 MESSAGE\r\n"
        "Content-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    ).encode()


def responses(world: World) -> list[Response]:
    return [m for m in world.take(SBC) if isinstance(m, Response) and m.status >= 200]


def relayed(world: World) -> Request:
    (request,) = [m for m in world.take(CALLEE) if isinstance(m, Request)]
    return request


def answer(world: World, request: Request, status: int, reason: str = "") -> None:
    response = Response(status, reason or "Whatever", request.headers.copy())
    response.headers.set("To", f"{request.headers.get('To')};tag=callee")
    world.send(response, CALLEE)


class Holder(MessageObserver):
    """A charging stand-in: holds every MESSAGE and records what becomes of it."""

    def __init__(self) -> None:
        self.held: list[RelayedMessage] = []
        self.done: list[tuple[str, int | None]] = []

    def message_received(self, message: RelayedMessage) -> bool:
        self.held.append(message)
        return True

    def message_done(self, message: RelayedMessage, status: int | None) -> None:
        self.done.append((message.id, status))


def test_message_is_405_on_a_route_without_event_charging() -> None:
    """As before: out-of-dialog MESSAGE on a route with event_charging off gets 405."""
    world = World()
    world.send(message())
    assert [r.status for r in responses(world)] == [405]
    assert world.take(CALLEE) == []


def test_message_is_relayed_in_its_own_transaction_and_the_answer_relayed_back() -> None:
    """A new MESSAGE (new Call-ID, From tag, CSeq 1, Max-Forwards 69, same body) goes to the
    route's next hop; its 202 comes back to the sender with our own To tag."""
    world = World(route=ON)
    world.send(message())
    out = relayed(world)
    assert out.method == "MESSAGE" and out.uri == "sip:+4930123@example.com"
    assert out.call_id != "msg-a@sbc" and out.from_tag != "ma"
    assert (out.cseq.seq, out.max_forwards, out.body) == (1, 69, b"hi")
    assert out.headers.get("Content-Type") == "text/plain"
    answer(world, out, 202, "Accepted")
    (back,) = responses(world)
    assert (back.status, back.reason, back.call_id) == (202, "Accepted", "msg-a@sbc")
    assert back.to_tag and back.to_tag != "callee"
    assert len(world.callmap.messages) == 0 and world.callmap.messages.relayed == 1


def test_a_held_message_leaves_only_when_forwarded() -> None:
    """An observer holding the MESSAGE: nothing leaves until forward(); then the final
    status is reported to the observer."""
    world = World(route=ON)
    holder = Holder()
    world.callmap.messages.observers.append(holder)
    world.send(message())
    assert world.take(CALLEE) == []
    (held,) = holder.held
    world.callmap.messages.forward(held.id, charged=True)
    out = relayed(world)
    answer(world, out, 480, "Temporarily Unavailable")
    assert [r.status for r in responses(world)] == [480]
    assert holder.done == [(held.id, 480)]
    assert held.charged


def test_a_refused_message_is_answered_with_a_reason_and_never_leaves() -> None:
    """refuse(): the sender gets the status with a Reason header; no request leaves."""
    world = World(route=ON)
    holder = Holder()
    world.callmap.messages.observers.append(holder)
    world.send(message())
    held = holder.held[0]
    world.callmap.messages.refuse(held.id, 402, "Payment Required", 'SIP;cause=402;text="x"')
    (back,) = responses(world)
    assert back.status == 402 and back.headers.get("Reason") == 'SIP;cause=402;text="x"'
    world.callmap.messages.forward(held.id)  # too late: ignored
    assert world.take(CALLEE) == [] and holder.done == []
    assert len(world.callmap.messages) == 0


def test_a_silent_next_hop_gets_the_sender_a_408_after_timer_f() -> None:
    """No answer from the next hop within 64*T1: 408 to the sender, None to the observer."""
    world = World(route=ON)
    holder = Holder()
    world.callmap.messages.observers.append(holder)
    world.send(message())
    world.callmap.messages.forward(holder.held[0].id)
    world.advance(31.0)
    assert responses(world) == []
    world.advance(2.0)
    assert [r.status for r in responses(world)] == [408]
    assert holder.done == [(holder.held[0].id, None)]


def test_max_forwards_zero_is_refused_483() -> None:
    """§16.3: a MESSAGE with Max-Forwards 0 is not relayed."""
    world = World(route=ON)
    world.send(message(max_forwards=0))
    assert [r.status for r in responses(world)] == [483]
    assert world.take(CALLEE) == []


def test_a_verdict_given_inside_the_hook_is_counted() -> None:
    """An observer that forwards from inside message_received and returns True: sent once."""
    world = World(route=ON)

    class AtOnce(MessageObserver):
        def message_received(self, message: RelayedMessage) -> bool:
            world.callmap.messages.forward(message.id)
            return True

    world.callmap.messages.observers.append(AtOnce())
    world.send(message())
    relayed(world)  # exactly one request left


def test_message_matching_no_route_is_405_as_before() -> None:
    """A MESSAGE no route matches is not relayed: 405, as for routes without event_charging."""
    world = World(route="user_prefix = 999\n" + ON)
    world.send(message())
    assert [r.status for r in responses(world)] == [405]
    assert world.take(CALLEE) == []


def test_a_next_hop_that_cannot_be_reached_gets_the_sender_a_503() -> None:
    """Sending fails at once (no transport to the hop): 503 to the sender, None reported."""
    world = World(route=ON)
    relays = world.callmap.messages
    holder = Holder()
    relays.observers.append(holder)

    def unreachable(request: Request, hop: object, listener: object) -> object:
        raise OSError("no route to host")

    relays._send_request = unreachable
    world.send(message())
    relays.forward(holder.held[0].id)
    assert [r.status for r in responses(world)] == [503]
    assert holder.done == [(holder.held[0].id, None)]
    assert len(relays) == 0 and relays.relayed == 0


def test_an_observer_that_fails_gets_the_message_refused_500() -> None:
    """A charging hook that raises must not let the MESSAGE through uncharged: 500."""
    world = World(route=ON)

    class Broken(MessageObserver):
        def message_received(self, message: RelayedMessage) -> bool:
            raise RuntimeError("boom")

    world.callmap.messages.observers.append(Broken())
    world.send(message())
    assert [r.status for r in responses(world)] == [500]
    assert world.take(CALLEE) == []
    assert len(world.callmap.messages) == 0


def options(*, user: str = "+4930123") -> bytes:
    """An OPTIONS to ``user``, in a transaction of its own."""
    request = message(body="", branch=f"z9hG4bK-o{user}")
    request = request.replace(b"MESSAGE sip:+4930123", f"OPTIONS sip:{user}".encode())
    return request.replace(b"7 MESSAGE", b"7 OPTIONS")


def allow(response: Response) -> str:
    return ", ".join(response.headers.get_fields("Allow"))


def test_allow_names_message_only_where_a_route_relays_it() -> None:
    """OPTIONS lists MESSAGE in Allow on a route with event charging, not elsewhere; the 405
    to a MESSAGE no route relays never lists MESSAGE (RFC 3261 §21.4.6)."""
    world = World(route="user_prefix = +49\n" + ON)
    world.send(options())
    (ok,) = responses(world)
    assert ok.status == 200 and "MESSAGE" in allow(ok)
    world.send(options(user="+1555"))
    (elsewhere,) = responses(world)
    assert elsewhere.status == 200 and "MESSAGE" not in allow(elsewhere)
    to_elsewhere = message(branch="z9hG4bK-m2")
    world.send(to_elsewhere.replace(b"sip:+4930123@example.com SIP", b"sip:+1555@example.com SIP"))
    (refused,) = responses(world)
    assert refused.status == 405 and "MESSAGE" not in allow(refused)


class Ends(Holder):
    """Also records ``message_ended`` with the status the sender got."""

    def __init__(self) -> None:
        super().__init__()
        self.ended: list[tuple[str, int | None]] = []

    def message_ended(self, message: RelayedMessage) -> None:
        self.ended.append((message.id, message.status))


def test_every_message_ends_once_for_the_observers_refused_or_relayed() -> None:
    """message_ended comes once per MESSAGE with its final status: after message_done for a
    relayed one, alone for one refused by charging (the CDR's hook)."""
    world = World(route=ON)
    relays = world.callmap.messages
    ends = Ends()
    relays.observers.append(ends)
    world.send(message())
    first = ends.held[0].id
    relays.refuse(first, 402, "Payment Required", "")
    assert ends.done == [] and ends.ended == [(first, 402)]
    world.send(message(branch="z9hG4bK-two"))
    second = ends.held[1].id
    relays.forward(second)
    answer(world, relayed(world), 202, "Accepted")
    assert ends.done == [(second, 202)] and ends.ended == [(first, 402), (second, 202)]
