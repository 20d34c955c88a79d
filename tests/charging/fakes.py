"""Test doubles for the charging engine: a tiny OCS, a Diameter client, a call side.

The client checks every request the way a peer would (encode, decode, dictionary check)
and answers from :class:`TinyOcs` after ``delay`` seconds of the test's ``Clock``, or
keeps the request for the test to answer or fail by hand.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from b2bua.charging.messages import ChargingContext, RoSettings, context_from_invite
from b2bua.diameter.message import Message, check_command, decode, make_answer
from b2bua.sip.message import Request, parse_message

__all__ = [
    "FakeCalls",
    "FakeDiameterClient",
    "NoPeerAvailable",
    "PeerDown",
    "RequestTimeout",
    "TinyOcs",
    "answer_for",
    "invite",
    "make_context",
]


# Same names as the Diameter service's exceptions: the engine matches them by name.
class RequestTimeout(Exception):
    """Tx expired."""


class NoPeerAvailable(Exception):
    """No peer could take the request."""


class PeerDown(Exception):
    """The connection carrying the request was lost."""


SDP_AUDIO = (
    "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
    "m=audio 49170 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)
SDP_VIDEO = SDP_AUDIO + "m=video 49172 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"


def invite(
    *,
    uri: str = "sip:+15550199@b2bua.lab.example;user=phone",
    from_: str = "<sip:+15550100@sbc.lab.example;user=phone>;tag=f1",
    to: str = "<sip:+15550199@lab.example;user=phone>",
    call_id: str = "call-1@sbc.lab.example",
    headers: tuple[str, ...] = (),
    body: str = SDP_AUDIO,
) -> Request:
    """An A-leg INVITE as the SBC sends it, parsed."""
    lines = [
        f"INVITE {uri} SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-1",
        "Max-Forwards: 70",
        f"From: {from_}",
        f"To: {to}",
        f"Call-ID: {call_id}",
        "CSeq: 1 INVITE",
        "Contact: <sip:192.0.2.1:5060>",
        *headers,
    ]
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body.encode())}")
    raw = ("\r\n".join(lines) + "\r\n\r\n" + body).encode()
    request = parse_message(raw)
    assert isinstance(request, Request)
    return request


def make_context(
    call_id: str = "call-1@sbc.lab.example",
    *,
    direction: str = "orig",
    now: float = 0.0,
    settings: RoSettings | None = None,
    **kwargs: Any,
) -> ChargingContext:
    """The charging context of :func:`invite` (keyword arguments go to ``invite``)."""
    return context_from_invite(
        invite(call_id=call_id, **kwargs),
        direction=direction,
        settings=settings or RoSettings(),
        now=now,
    )


def answer_for(
    request: Message,
    code: int = 2001,
    *,
    granted: int | None = None,
    final: bool = False,
    origin_host: str = "ocs1.lab.example",
    mscc_code: int | None = None,
    experimental: bool = False,
    mscc_extra: tuple[tuple[str, Any], ...] = (),
    extra: tuple[tuple[str, Any], ...] = (),
) -> Message:
    """A CCA to ``request`` (Result-Code, or Experimental-Result with ``experimental``)."""
    mscc: list[tuple[str, Any]] = []
    if granted is not None:
        mscc.append(("Granted-Service-Unit", [("CC-Time", granted)]))
    rating_group = request.get_path("Multiple-Services-Credit-Control", "Rating-Group")
    if rating_group is not None:
        mscc.append(("Rating-Group", rating_group))
    if mscc_code is not None:
        mscc.append(("Result-Code", mscc_code))
    if final:
        mscc.append(("Final-Unit-Indication", [("Final-Unit-Action", "TERMINATE")]))
    mscc.extend(mscc_extra)
    avps: list[tuple[str, Any]] = []
    if experimental:
        avps.append(
            ("Experimental-Result", [("Vendor-Id", 10415), ("Experimental-Result-Code", code)])
        )
    avps += [
        ("Auth-Application-Id", 4),
        ("CC-Request-Type", request.get("CC-Request-Type")),
        ("CC-Request-Number", request.get("CC-Request-Number")),
    ]
    if mscc:
        avps.append(("Multiple-Services-Credit-Control", mscc))
    avps.extend(extra)
    return make_answer(
        request,
        None if experimental else code,
        avps,
        origin_host=origin_host,
        origin_realm="lab.example",
    )


@dataclass
class TinyOcs:
    """One balance per subscriber, in seconds; reservations per Session-Id.

    Each request first debits the used units and drops the session's reservation
    (RFC 4006 §5.3), then reserves what is asked, up to what is free. With
    ``final_style`` "fui" a grant that takes the whole balance carries
    Final-Unit-Indication; with "4012" the request after such a grant is refused 4012.
    ``refuse`` answers every CCR-I with that Result-Code instead.
    """

    balances: dict[str, int]
    final_style: str = "fui"
    refuse: int | None = None
    experimental: bool = False
    reserved: dict[str, int] = field(default_factory=dict)
    exhausted: set[str] = field(default_factory=set)
    validity_time: int | None = None
    time_quota_threshold: int | None = None

    def answer(self, request: Message) -> Message:
        session_id = request.session_id or ""
        subscriber = request.get_path("Subscription-Id", "Subscription-Id-Data")
        request_type = request.get("CC-Request-Type")
        used = request.get_path("Multiple-Services-Credit-Control", "Used-Service-Unit", "CC-Time")
        wanted = request.get_path(
            "Multiple-Services-Credit-Control", "Requested-Service-Unit", "CC-Time"
        )
        if request_type == 1 and self.refuse is not None:
            return answer_for(request, self.refuse, experimental=self.experimental)
        if subscriber not in self.balances:
            return answer_for(request, 5030)
        balance = self.balances[subscriber]
        self.balances[subscriber] = balance - min(used or 0, balance)
        self.reserved.pop(session_id, None)
        if request_type == 3:
            self.exhausted.discard(session_id)
            return answer_for(request)
        if session_id in self.exhausted:
            return answer_for(request, 4012)
        free = self.balances[subscriber] - sum(
            units for sid, units in self.reserved.items() if sid != session_id
        )
        grant = min(wanted or 0, free)
        if grant <= 0:
            return answer_for(request, 4012)
        self.reserved[session_id] = grant
        last = grant == self.balances[subscriber]
        if last and self.final_style == "4012":
            self.exhausted.add(session_id)
        extra: list[tuple[str, Any]] = []
        if self.validity_time is not None:
            extra.append(("Validity-Time", self.validity_time))
        if self.time_quota_threshold is not None:
            extra.append(("Time-Quota-Threshold", self.time_quota_threshold))
        return answer_for(
            request,
            granted=grant,
            final=last and self.final_style == "fui",
            mscc_extra=tuple(extra),
        )


@dataclass
class _Held:
    request: Message
    destination_host: str | None
    deferred: Deferred[Message]


class FakeDiameterClient:
    """``send_request`` checked like a peer would, answered by a :class:`TinyOcs`."""

    def __init__(self, clock: Clock, ocs: TinyOcs, *, delay: float = 0.05) -> None:
        self.clock = clock
        self.ocs = ocs
        self.delay = delay
        self.hold = False  # keep requests in ``held`` instead of answering them
        self.sent: list[tuple[Message, str | None]] = []
        self.held: list[_Held] = []
        self.failures: deque[BaseException] = deque()  # fail the next requests with these
        self.fail_after = 0.0  # how long a failure takes (a Tx timeout takes Tx)
        self._end_to_end = 0x1000

    def send_request(
        self, message: Message, *, destination_host: str | None = None
    ) -> Deferred[Message]:
        if not message.end_to_end:  # as the Diameter service does, on the request given
            self._end_to_end += 1
            message.end_to_end = self._end_to_end
        wire = decode(message.encode())
        check_command(wire)
        self.sent.append((wire, destination_host))
        deferred: Deferred[Message] = Deferred()
        if self.failures:
            self.clock.callLater(self.fail_after, deferred.errback, self.failures.popleft())
        elif self.hold:
            self.held.append(_Held(wire, destination_host, deferred))
        else:
            answer = decode(self.ocs.answer(wire).encode())
            self.clock.callLater(self.delay, deferred.callback, answer)
        return deferred

    def release(self, index: int = 0, answer: Message | None = None) -> None:
        """Answer a held request (from the OCS unless ``answer`` is given)."""
        held = self.held.pop(index)
        reply = answer if answer is not None else self.ocs.answer(held.request)
        held.deferred.callback(decode(reply.encode()))

    def fail_held(self, index: int, error: BaseException) -> None:
        """Fail a held request."""
        self.held.pop(index).deferred.errback(error)

    def requests(self) -> list[Message]:
        """The requests sent, in order."""
        return [message for message, _ in self.sent]


class FakeCalls:
    """The call side: records what charging asked, optionally reacting to it."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.on_end: Callable[[str], None] | None = None

    def admit(self, call_id: str) -> None:
        self.events.append(("admit", call_id))

    def reject(self, call_id: str, status: int, reason: str, reason_header: str) -> None:
        self.events.append(("reject", call_id, status, reason, reason_header))

    def end(self, call_id: str, reason: str, reason_header: str) -> None:
        self.events.append(("end", call_id, reason, reason_header))
        if self.on_end is not None:
            self.on_end(call_id)
