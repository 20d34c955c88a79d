"""The bridge: one call's two legs and the state machine joining them, sans-IO.

b2bua answers the caller as a UAS (the A-leg) and calls the callee as a UAC (the B-leg);
each leg has its own Call-ID, tags, CSeq space, Via and Contact, and what crosses from one
to the other is the body and the header fields the :class:`~b2bua.call.policy.HeaderPolicy`
lets through.  A :class:`Bridge` is driven by method calls that take ``now`` and return
the actions the glue (:mod:`b2bua.call.callmap`) carries out: respond on a server
transaction, send a request in a new client transaction (named by an integer key the
answers come back with), send an ACK, CANCEL a request, start or stop a named timer, and
tell the observers.  It implements:

* RFC 3261 §13: the initial INVITE relayed with Max-Forwards decremented; provisional
  responses relayed (100 is hop by hop); the first 2xx taken, later 2xx of other forks
  ACKed and BYEd (§13.2.2.4); 3xx-6xx relayed; a 2xx we send retransmitted by us with
  T1 doubling up to T2 until its ACK, giving up after 64*T1 (§13.3.1.4, RFC 6026) and
  ending the call; the ACK for a 2xx relayed end to end (late offers work);
* §9: CANCEL from the caller cancels the B-leg and answers 487; a 2xx that crosses the
  CANCEL is ACKed and BYEd;
* §12, §14, §15: in-dialog requests relayed in both directions with their own CSeq on
  each leg, answered with the far end's response; 481 for unknown dialogs, 500 for
  CSeq out of order, 491 for glare (an INVITE or offer already in progress); a BYE from
  either side answered at once and both legs torn down; 481/408/timeouts of relayed
  requests end the call (§12.2.1.2);
* RFC 3262 end to end: the B-leg offers (requires) 100rel when the caller does; a
  reliable provisional from the callee reaches the caller reliably with an RSeq of
  b2bua's own, retransmitted (T1 doubling) until the caller's PRACK, which is relayed to
  the callee with the callee's RAck (one unacknowledged reliable 1xx at a time, later
  ones wait; no PRACK within 64*T1: 500).  A caller requiring 100rel gets every
  provisional reliably.  When the caller does not support 100rel, a reliable provisional
  is PRACKed here, relayed unreliably, and its answer repeated in the 2xx.  Other
  extensions in Require get 420 (:func:`screen_invite`);
* RFC 4028 session timers per leg (:mod:`b2bua.call.session_timer`), refreshed by
  UPDATE when the far end allows it, else by a re-INVITE repeating the last offer;
  expiry, a failed refresh (408/481/timeout) and ``max_call_duration`` end the call;
* RFC 3326 Reason headers on the BYE/CANCEL b2bua sends when it ends a call itself;
* persistence: :meth:`Bridge.snapshot` of a confirmed call and :meth:`Bridge.restore`,
  which rebuilds it after a restart (dialogs, session timers; transactions in progress
  are lost), with :class:`StateChanged` emitted whenever what a restart needs changed.

Every ending goes through :meth:`Bridge.end`, which records the reason once, answers or
cancels what is pending, BYEs what is up, and reports :class:`Finished` when no
transaction of the call is left (a guard timer makes sure that happens).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import TYPE_CHECKING, Any, Final, Protocol

from b2bua.call.events import CallState, EndReason, Side
from b2bua.call.leg import Leg
from b2bua.call.policy import DEFAULT_PASS_HEADERS, HeaderPolicy
from b2bua.call.session_timer import (
    Refresher,
    SessionTimer,
    TimerSettings,
    TooSmall,
    min_se_of,
    uac_request_headers,
    uac_timer_from_response,
    uas_response_headers,
    uas_timer,
)
from b2bua.sip.dialog import (
    TARGET_REFRESH_METHODS,
    Dialog,
    Hop,
    initial_cseq,
    new_call_id,
    new_tag,
)
from b2bua.sip.errors import SipParseError
from b2bua.sip.headers import NameAddr, SipURI
from b2bua.sip.message import (
    Headers,
    Request,
    Response,
    make_response,
    parse_message,
    validate_request,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from b2bua.config import RouteSettings

__all__ = [
    "ALLOW",
    "ALLOW_NO_MESSAGE",
    "Action",
    "Answered",
    "Bridge",
    "BridgeConfig",
    "Call",
    "CancelRequest",
    "Ended",
    "Finished",
    "MediaChanged",
    "Respond",
    "SendAck",
    "SendRequest",
    "ServerRef",
    "StartTimer",
    "StateChanged",
    "StopTimer",
    "answer_out_of_dialog",
    "screen_invite",
]

#: Methods b2bua handles in a dialog, sent in Allow (INVITE and its 2xx): MESSAGE too, as
#: every request in a dialog but BYE and PRACK is relayed.
ALLOW: Final = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, PRACK, NOTIFY, REFER, MESSAGE"
#: Allow out of a dialog (OPTIONS, 405) where no route relays MESSAGE (no event charging).
ALLOW_NO_MESSAGE: Final = ALLOW.removesuffix(", MESSAGE")
#: Methods that need a Contact when sent in a dialog (target refresh, RFC 6665, RFC 3515).
_CONTACT_METHODS: Final = TARGET_REFRESH_METHODS | {"SUBSCRIBE", "NOTIFY", "REFER"}
#: Header fields that carry a method's meaning and cross with a relayed request.
_METHOD_HEADERS: Final[dict[str, tuple[str, ...]]] = {
    "INFO": ("Info-Package", "Recv-Info"),
    "NOTIFY": ("Event", "Subscription-State"),
    "SUBSCRIBE": ("Event", "Expires", "Accept"),
    "REFER": ("Refer-To", "Referred-By", "Refer-Sub"),
    "MESSAGE": ("Expires",),
    "OPTIONS": ("Accept",),
}
#: Header fields of a final response that cross with it.
_RESPONSE_HEADERS: Final = ("Retry-After", "Warning", "Reason", "Error-Info", "Min-Expires")
_STATUS_HEADERS: Final[dict[int, tuple[str, ...]]] = {
    401: ("WWW-Authenticate",),
    405: ("Allow",),
    407: ("Proxy-Authenticate",),
    420: ("Unsupported",),
}
#: What the caller is answered when a call ends before the callee answered.
_UNANSWERED_STATUS: Final[dict[EndReason, int]] = {
    EndReason.CALLER_HANGUP: 487,
    EndReason.CANCELLED: 487,
    EndReason.CALLEE_HANGUP: 480,
    EndReason.REJECTED: 403,
    EndReason.NO_ANSWER: 480,
    EndReason.CREDIT_EXHAUSTED: 402,
    EndReason.OCS_ABORT: 403,
    EndReason.SESSION_TIMER: 480,
    EndReason.MAX_DURATION: 480,
    EndReason.ACK_TIMEOUT: 500,
    EndReason.OPERATOR_KILL: 480,
    EndReason.SHUTDOWN: 503,
    EndReason.ERROR: 500,
}
#: Ends caused by the far ends themselves: no Reason header of ours.
_HANGUPS: Final = frozenset({EndReason.CALLER_HANGUP, EndReason.CALLEE_HANGUP})


# ------------------------------------------------------------------------- actions


class ServerRef(Protocol):
    """A server transaction as the bridge sees it (the endpoint's ServerHandle)."""

    @property
    def request(self) -> Request: ...

    def respond(self, response: Response) -> None: ...


@dataclass(frozen=True, slots=True)
class Respond:
    """Send ``response`` on the server transaction ``server``."""

    server: ServerRef
    response: Response


@dataclass(frozen=True, slots=True)
class SendRequest:
    """Send ``request`` on leg ``side`` to ``hop`` in a new client transaction ``key``."""

    key: int
    side: Side
    request: Request
    hop: Hop


@dataclass(frozen=True, slots=True)
class SendAck:
    """Send the ACK for a 2xx (no transaction)."""

    side: Side
    ack: Request
    hop: Hop


@dataclass(frozen=True, slots=True)
class CancelRequest:
    """CANCEL the INVITE of client transaction ``key`` (§9.1), with a Reason if given."""

    key: int
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class StartTimer:
    """(Re)start the call's timer ``name`` for ``deadline``; call ``on_timer`` then."""

    name: str
    deadline: float


@dataclass(frozen=True, slots=True)
class StopTimer:
    """Stop the call's timer ``name`` if it runs."""

    name: str


@dataclass(frozen=True, slots=True)
class Answered:
    """Tell the observers: the callee answered."""


@dataclass(frozen=True, slots=True)
class MediaChanged:
    """Tell the observers: a re-INVITE/UPDATE from ``side`` changed the session."""

    side: Side
    body: bytes


@dataclass(frozen=True, slots=True)
class Ended:
    """Tell the observers: the call ended (its end reason is set)."""


@dataclass(frozen=True, slots=True)
class Finished:
    """Nothing of the call is left: forget it and stop its timers."""


@dataclass(frozen=True, slots=True)
class StateChanged:
    """Tell the observers: what a restart needs (:meth:`Bridge.snapshot`) changed."""


Action = (
    Respond
    | SendRequest
    | SendAck
    | CancelRequest
    | StartTimer
    | StopTimer
    | Answered
    | MediaChanged
    | Ended
    | Finished
    | StateChanged
)


# ---------------------------------------------------------------------- the call


@dataclass(frozen=True)
class BridgeConfig:
    """What the bridge needs of the configuration (seconds; 0 disables a limit)."""

    t1: float = 0.5
    t2: float = 4.0
    timers: TimerSettings = field(default_factory=TimerSettings)
    policy: HeaderPolicy = field(
        default_factory=lambda: HeaderPolicy.from_names(DEFAULT_PASS_HEADERS)
    )
    max_call_duration: float = 0.0
    no_answer_timeout: float = 0.0
    admission_timeout: float = 30.0

    @property
    def timer_b(self) -> float:
        """64*T1: how long a 2xx is retransmitted and a transaction may last."""
        return 64 * self.t1

    @property
    def supported(self) -> frozenset[str]:
        """Option tags b2bua supports (Supported, and what Require may ask for)."""
        return frozenset({"100rel", "timer"} if self.timers.enabled else {"100rel"})


class Call:
    """One call as charging and operations see it: legs, state, times, end reason.

    Times are the ``now`` of the events (the reactor's clock: seconds since the epoch in
    production).  ``data`` is free for the observers (e.g. the charging session).
    """

    __slots__ = (
        "_control",
        "a",
        "answer_sdp",
        "answered_at",
        "b",
        "data",
        "end_reason",
        "end_status",
        "ended_at",
        "id",
        "invite",
        "received_at",
        "route",
        "source",
        "state",
    )

    def __init__(
        self,
        call_id: str,
        invite: Request,
        route: RouteSettings,
        source: Hop,
        a: Leg,
        b: Leg,
        now: float,
    ) -> None:
        self.id = call_id
        self.invite = invite
        self.route = route
        self.source = source
        self.a = a
        self.b = b
        self.state = CallState.ADMITTING
        self.received_at = now
        self.answered_at: float | None = None
        self.ended_at: float | None = None
        self.end_reason: EndReason | None = None
        self.end_status: int | None = None
        self.data: dict[str, object] = {}
        #: The body of the callee's 2xx: the answer, or the offer when the INVITE had none.
        self.answer_sdp: bytes = b""
        self._control: Callable[[Call, EndReason, str | None], None] | None = None

    def __repr__(self) -> str:
        return f"<Call {self.id} {self.state.value}>"

    @property
    def caller(self) -> str:
        """The From URI of the caller's INVITE."""
        try:
            return str(self.invite.from_.uri)
        except SipParseError:
            return ""

    @property
    def callee(self) -> str:
        """The Request-URI of the caller's INVITE."""
        return self.invite.uri

    @property
    def answered(self) -> bool:
        return self.answered_at is not None

    @property
    def duration(self) -> float:
        """Seconds from the answer to the end (0 if never answered; so far if not ended)."""
        if self.answered_at is None:
            return 0.0
        end = self.ended_at if self.ended_at is not None else self.answered_at
        return max(0.0, end - self.answered_at)

    def end(self, reason: EndReason, reason_header: str | None = None) -> None:
        """End the call from outside (charging, operations): BYE, CANCEL or a final answer.

        ``reason_header`` is the value of the Reason header (RFC 3326) sent to both legs.
        """
        if self._control is not None:
            self._control(self, reason, reason_header)


# -------------------------------------------------------------- stateless answers


def _reject(request: Request, status: int, *headers: tuple[str, str]) -> Response:
    response = make_response(request, status, to_tag=new_tag())
    for name, value in headers:
        response.headers.add(name, value)
    return response


def screen_invite(request: Request, config: BridgeConfig) -> Response | None:
    """The answer to an initial INVITE b2bua refuses before creating any state, or None.

    420 for an option tag we do not support in Require (100rel among them, RFC 3262);
    483 when Max-Forwards is 0 (§16.3); 400 without exactly one SIP Contact (§8.1.1.8);
    422 with our Min-SE for a Session-Expires below it (RFC 4028 §9).
    """
    try:
        validate_request(request, supported=config.supported)
    except SipParseError as err:
        return _reject(request, err.status_hint, *err.headers)
    if request.max_forwards == 0:
        return _reject(request, 483)
    contacts = request.contact
    if (
        len(contacts) != 1
        or contacts[0].is_wildcard
        or not isinstance(_safe_uri(contacts[0]), SipURI)
    ):
        return _reject(request, 400, ("Warning", '399 b2bua "one SIP Contact needed"'))
    try:
        uas_timer(request, config.timers)
    except TooSmall as small:
        return _reject(request, 422, ("Min-SE", str(small.min_se)))
    return None


def _safe_uri(addr: NameAddr) -> object:
    try:
        return addr.uri
    except SipParseError:
        return None


def answer_out_of_dialog(
    request: Request, config: BridgeConfig, *, message: bool = False
) -> Response:
    """OPTIONS: 200 with what we support (SBC keepalives); other methods: 405 with Allow.

    A Require with an option tag we do not support gets 420 first (§8.2.2.3, RFC 4475
    §3.3.5). MESSAGE out of a dialog reaches here only on routes without event_charging
    (405); the others relay it (:mod:`b2bua.call.relay`). ``message``: a route relays
    MESSAGE for this request, so Allow lists it (RFC 3261 §20.5: the methods supported).
    """
    try:
        validate_request(request, supported=config.supported)
    except SipParseError as err:
        if err.status_hint == 420:
            return _reject(request, 420, *err.headers)
    if request.method == "OPTIONS":
        response = make_response(request, 200, to_tag=new_tag())
        response.headers.add("Allow", ALLOW if message else ALLOW_NO_MESSAGE)
        response.headers.add("Accept", "application/sdp")
        if config.supported:
            response.headers.add("Supported", ", ".join(sorted(config.supported)))
        return response
    return _reject(request, 405, ("Allow", ALLOW if message else ALLOW_NO_MESSAGE))


# ----------------------------------------------------------------------- records


class _Purpose(Enum):
    INVITE = "initial INVITE"
    RELAY = "relayed request"
    BYE = "BYE"
    REFRESH = "session refresh"
    PRACK = "PRACK"
    FORK_BYE = "BYE of a late fork"


@dataclass(eq=False, slots=True)
class _Incoming:
    """A request received that b2bua must answer."""

    side: Side
    server: ServerRef
    request: Request
    relay_key: int | None = None
    answered: bool = False
    timer: SessionTimer | None = None


@dataclass(eq=False, slots=True)
class _Outgoing:
    """A request b2bua sent in a client transaction."""

    key: int
    side: Side
    request: Request
    purpose: _Purpose
    dialog: Dialog | None = None
    origin: _Incoming | None = None
    done: bool = False


@dataclass(eq=False, slots=True)
class _Reliable:
    """A reliable provisional response sent to the caller, waiting for its PRACK."""

    response: Response
    rseq: int
    fork_tag: str | None
    b_rseq: int | None
    started: float
    interval: float


@dataclass(eq=False, slots=True)
class _PendingAck:
    """A 2xx b2bua sent to an INVITE, retransmitted until its ACK (§13.3.1.4)."""

    side: Side
    server: ServerRef
    response: Response
    cseq: int
    started: float
    interval: float
    far_cseq: int | None = None


class _GoneServer:
    """The caller's INVITE transaction of a restored call: it ended with the old process."""

    __slots__ = ("request",)

    def __init__(self, request: Request) -> None:
        self.request = request

    def respond(self, response: Response) -> None:
        """Nothing to answer on: the 2xx was ACKed before the snapshot was taken."""


def _hop_of(data: Any) -> Hop:
    transport, host, port = data
    return Hop(str(transport), str(host), int(port))


# ------------------------------------------------------------------------ bridge


class Bridge:
    """The state machine of one call; every method returns the actions to carry out."""

    __slots__ = (
        "__weakref__",
        "_a_100rel",
        "_a_requires_100rel",
        "_actions",
        "_b_invite",
        "_bye_after_ack",
        "_early_answer",
        "_incoming",
        "_initial",
        "_media",
        "_next_key",
        "_offer",
        "_out",
        "_pending_acks",
        "_reliable",
        "_reliable_queue",
        "_retries_422",
        "_rseq",
        "a",
        "b",
        "call",
        "config",
    )

    def __init__(
        self,
        invite: Request,
        server: ServerRef,
        *,
        route: RouteSettings,
        source: Hop,
        b_hop: Hop,
        a_contact: SipURI,
        b_contact: SipURI,
        config: BridgeConfig,
        now: float,
    ) -> None:
        self.config = config
        a = Leg(Side.A, invite.call_id, new_tag(), a_contact, source)
        b = Leg(Side.B, new_call_id(), new_tag(), b_contact, b_hop)
        self.a = a
        self.b = b
        self.call = Call(secrets.token_hex(6), invite, route, source, a, b, now)
        a.dialog = Dialog.as_uas(invite, a.local_tag)
        a.learn_allow(invite)
        a.timer = uas_timer(invite, config.timers)
        self._initial = _Incoming(Side.A, server, invite)
        self._next_key = 0
        self._out: dict[int, _Outgoing] = {}
        self._incoming: list[_Incoming] = []
        self._b_invite: _Outgoing | None = None
        self._offer: _Outgoing | None = None
        self._pending_acks: dict[Side, _PendingAck] = {}
        self._bye_after_ack: dict[Side, None] = {}  # a dict: an empty set is 216 bytes
        self._early_answer: tuple[bytes, str] | None = None
        # RFC 3262 toward the caller: its support, our RSeq, the 1xx awaiting its PRACK.
        a_tags = {
            tag.strip().lower()
            for tag in invite.headers.get_all("supported") + invite.headers.get_all("require")
        }
        self._a_100rel = "100rel" in a_tags
        self._a_requires_100rel = any(
            tag.strip().lower() == "100rel" for tag in invite.headers.get_all("require")
        )
        self._rseq = initial_cseq()
        self._reliable: _Reliable | None = None
        self._reliable_queue: list[tuple[Response, str | None, int | None]] = []
        #: The last session description each side sent us (media_changed compares).
        self._media: dict[Side, bytes] = {Side.A: invite.body}
        self._retries_422 = 0
        self._actions: list[Action] = []

    # ---------------------------------------------------------------- plumbing

    def leg(self, side: Side) -> Leg:
        return self.a if side is Side.A else self.b

    @property
    def state(self) -> CallState:
        return self.call.state

    @property
    def finished(self) -> bool:
        return self.call.state is CallState.ENDED

    def _flush(self) -> list[Action]:
        actions, self._actions = self._actions, []
        return actions

    def _emit(self, action: Action) -> None:
        self._actions.append(action)

    def _respond(self, incoming: _Incoming, response: Response) -> None:
        if incoming.answered:
            return
        if response.status >= 200:
            incoming.answered = True
            if incoming in self._incoming:
                self._incoming.remove(incoming)
        self.leg(incoming.side).note_sent(response)
        self._emit(Respond(incoming.server, response))

    def _send(
        self,
        side: Side,
        request: Request,
        purpose: _Purpose,
        *,
        dialog: Dialog | None = None,
        origin: _Incoming | None = None,
        hop: Hop | None = None,
    ) -> _Outgoing:
        self._next_key += 1
        out = _Outgoing(self._next_key, side, request, purpose, dialog, origin)
        self._out[out.key] = out
        leg = self.leg(side)
        leg.note_sent(request)
        self._emit(SendRequest(out.key, side, request, hop or leg.hop(dialog)))
        return out

    def _send_ack(self, side: Side, ack: Request, dialog: Dialog | None = None) -> None:
        leg = self.leg(side)
        leg.note_sent(ack)
        self._emit(SendAck(side, ack, leg.hop(dialog)))

    def _timer_name(self, kind: str, side: Side) -> str:
        return f"{kind}:{side.value}"

    # ------------------------------------------------------------ persistence

    @property
    def restorable(self) -> bool:
        """A confirmed call not ending: the only state :meth:`snapshot` can capture.

        Before the caller's ACK the INVITE transaction is still needed, and it does not
        survive a restart; an ending call has only BYE transactions left.
        """
        return self.call.state is CallState.CONFIRMED and self.call.end_reason is None

    def snapshot(self) -> dict[str, Any]:
        """The call as JSON-able values (only when :attr:`restorable`)."""
        call = self.call
        source = call.source
        return {
            "id": call.id,
            "invite": call.invite.serialize().decode("latin-1"),
            "route": call.route.name,
            "source": [source.transport, source.host, source.port],
            "received_at": call.received_at,
            "answered_at": call.answered_at,
            "a": self.a.snapshot(),
            "b": self.b.snapshot(),
            "media": {side.value: body.decode("latin-1") for side, body in self._media.items()},
            "answer_sdp": call.answer_sdp.decode("latin-1"),
        }

    @classmethod
    def restore(
        cls,
        data: dict[str, Any],
        *,
        route: RouteSettings,
        a_contact: SipURI,
        b_contact: SipURI,
        config: BridgeConfig,
        cseq_margin: int = 0,
    ) -> Bridge:
        """A confirmed call from its :meth:`snapshot`; :meth:`resume` re-arms its timers.

        Raises KeyError, TypeError, ValueError or SipParseError when ``data`` is bad.
        ``cseq_margin`` is added to both legs' local CSeq (:meth:`Dialog.restore`).
        """
        invite = parse_message(str(data["invite"]).encode("latin-1"))
        if not isinstance(invite, Request):
            raise ValueError("the stored INVITE is a response")
        a = Leg.restore(data["a"], a_contact, cseq_margin=cseq_margin)
        b = Leg.restore(data["b"], b_contact, cseq_margin=cseq_margin)
        if a.dialog is None or b.dialog is None or a.side is not Side.A or b.side is not Side.B:
            raise ValueError("a restored call needs both dialogs")
        received_at = float(data["received_at"])
        answered_at = data["answered_at"]
        source = _hop_of(data["source"])
        bridge = cls(
            invite,
            _GoneServer(invite),
            route=route,
            source=source,
            b_hop=b.default_hop,
            a_contact=a_contact,
            b_contact=b_contact,
            # The legs' timers come from the snapshot: a Min-SE raised since the call began
            # must not refuse its INVITE again.
            config=replace(config, timers=TimerSettings(session_expires=0)),
            now=received_at,
        )
        bridge.config = config
        bridge.a, bridge.b = a, b
        call = bridge.call
        call.id = str(data["id"])
        call.a, call.b = a, b
        call.state = CallState.CONFIRMED
        call.answered_at = None if answered_at is None else float(answered_at)
        call.answer_sdp = str(data["answer_sdp"]).encode("latin-1")
        bridge._initial.answered = True
        bridge._media = {
            Side(side): str(body).encode("latin-1") for side, body in data["media"].items()
        }
        return bridge

    def resume(self, now: float) -> list[Action]:
        """The timers of a restored call: session timers from their last refresh, max duration.

        A timer whose deadline passed while b2bua was down fires at once.
        """
        for side in (Side.A, Side.B):
            leg = self.leg(side)
            if leg.timer is not None:
                deadline = leg.timer.deadline(leg.timer_since)
                self._emit(StartTimer(self._timer_name("st", side), deadline))
        answered = self.call.answered_at
        if self.config.max_call_duration > 0 and answered is not None:
            self._emit(StartTimer("maxdur", answered + self.config.max_call_duration))
        return self._flush()

    # ------------------------------------------------------------ admission

    def start(self, now: float) -> list[Action]:
        """The INVITE is accepted: wait for admission (``admit``), at most admission_timeout."""
        self._emit(StartTimer("admit", now + self.config.admission_timeout))
        return self._flush()

    def admit(self, now: float) -> list[Action]:
        """Send the B-leg INVITE."""
        if self.call.state is not CallState.ADMITTING:
            return []
        self._emit(StopTimer("admit"))
        self.call.state = CallState.CALLING
        self._b_invite = self._send(Side.B, self._build_b_invite(), _Purpose.INVITE)
        if self.config.no_answer_timeout > 0:
            self._emit(StartTimer("noanswer", now + self.config.no_answer_timeout))
        return self._flush()

    def reject(
        self,
        status: int,
        now: float,
        reason: str | None = None,
        reason_header: str | None = None,
    ) -> list[Action]:
        """Refuse the call (before the answer: the caller gets ``status reason``)."""
        self._reject_call(status, now, reason, reason_header)
        self._maybe_finish()
        return self._flush()

    def _reject_call(
        self, status: int, now: float, reason: str | None, reason_header: str | None
    ) -> None:
        if not self._initial.answered and self.call.end_reason is None:
            response = make_response(self.call.invite, status, reason, to_tag=self.a.local_tag)
            if reason_header:
                response.headers.add("Reason", reason_header)
            self._respond(self._initial, response)
        self._end(EndReason.REJECTED, now, status=status, reason_header=reason_header)

    def _build_b_invite(self, min_se: int | None = None) -> Request:
        invite = self.call.invite
        b = self.b
        frm = invite.from_.copy()
        frm.params = {"tag": b.local_tag}
        to = invite.to.copy()
        to.params.pop("tag", None)
        max_forwards = invite.max_forwards
        seq = 1 if self._b_invite is None else self._b_invite.request.cseq.seq + 1
        request = Request("INVITE", invite.uri, Headers())
        headers = request.headers
        headers.add("Max-Forwards", 69 if max_forwards is None else max_forwards - 1)
        headers.add("From", frm)
        headers.add("To", to)
        headers.add("Call-ID", b.call_id)
        headers.add("CSeq", f"{seq} INVITE")
        headers.add("Contact", NameAddr(b.contact))
        headers.add("Allow", ALLOW)
        self._add_timer_headers(request, Side.B, min_se=min_se)
        if self._a_100rel:
            # RFC 3262 end to end: offer (or require) what the caller offers (or requires).
            tags = [*request.headers.get_all("supported"), "100rel"]
            request.headers.set("Supported", ", ".join(tags))
            if self._a_requires_100rel:
                request.headers.add("Require", "100rel")
        self.config.policy.copy_headers(invite, request, extra=("Subject", "Priority", "Expires"))
        HeaderPolicy.copy_body(invite, request)
        return request

    def _add_timer_headers(
        self, request: Request, side: Side, *, min_se: int | None = None
    ) -> None:
        leg = self.leg(side)
        timers = self.config.timers
        if not timers.enabled:
            return
        request.headers.add("Supported", "timer")
        current = leg.timer if leg.dialog is not None and not leg.dialog.early else None
        floor = max(min_se or 0, leg.min_se_floor) or None
        for name, value in uac_request_headers(timers, current, min_se=floor):
            request.headers.add(name, value)

    # ------------------------------------------------------------ responses

    def on_response(self, key: int, response: Response, now: float) -> list[Action]:
        """A response to the request of client transaction ``key``."""
        out = self._out.get(key)
        if out is not None:
            if out.purpose is _Purpose.INVITE:
                self._invite_response(out, response, now)
            elif out.purpose is _Purpose.RELAY:
                self._relay_response(out, response, now)
            elif out.purpose is _Purpose.REFRESH:
                self._refresh_response(out, response, now)
            elif response.status >= 200:
                out.done = True
                if response.status < 300 and out.request.method == "INVITE":
                    self._ack_local(out, response)
            self._prune(out)
            self._maybe_finish()
        return self._flush()

    def _prune(self, out: _Outgoing) -> None:
        """Forget a finished non-INVITE request (an INVITE's 2xx may still come again)."""
        if out.done and out.request.method != "INVITE":
            self._out.pop(out.key, None)

    def on_timeout(self, key: int, now: float) -> list[Action]:
        """The client transaction ``key`` timed out (no final response)."""
        return self._failed(key, 408, now)

    def on_transport_error(self, key: int, now: float) -> list[Action]:
        """The client transaction ``key`` could not send (§8.1.3.1: like a 503)."""
        return self._failed(key, 503, now)

    def _failed(self, key: int, status: int, now: float) -> list[Action]:
        out = self._out.get(key)
        if out is None or out.done:
            return self._flush()
        out.done = True
        ending = self.call.end_reason is not None
        if out.purpose is _Purpose.INVITE and not ending:
            self.b.forks.clear()
            response = make_response(self.call.invite, status, to_tag=self.a.local_tag)
            self._respond(self._initial, response)
            self._end(EndReason.ERROR, now, status=status)
        elif out.purpose is _Purpose.RELAY:
            self._finish_offer(out)
            if out.origin is not None:
                self._respond(out.origin, make_response(out.origin.request, status))
            if not ending:
                self._end(EndReason.ERROR, now, status=status)
        elif out.purpose is _Purpose.REFRESH:
            self.leg(out.side).refresh_key = None
            if not ending:
                self._end(EndReason.SESSION_TIMER, now, status=status)
        self._prune(out)
        self._maybe_finish()
        return self._flush()

    def _invite_response(self, out: _Outgoing, response: Response, now: float) -> None:
        status = response.status
        if status == 100:
            return
        if status < 200:
            if not out.done:
                self._provisional(out, response, now)
        elif status < 300:
            self._b_2xx(out, response, now)
        elif not out.done:
            out.done = True
            self.b.forks.clear()
            self.b.last_fork = None
            self._b_failure(response, now)

    def _provisional(self, out: _Outgoing, response: Response, now: float) -> None:
        b = self.b
        tag = response.to_tag
        fork: Dialog | None = None
        if tag:
            fork = b.forks.get(tag)
            try:
                if fork is None:
                    fork = b.forks[tag] = Dialog.as_uac(out.request, response)
                else:
                    fork.refresh_target(response)
            except SipParseError:
                fork = None
            b.last_fork = tag
        reliable = _requires_100rel(response)
        b_rseq = _rseq_of(response) if reliable else None
        if reliable and fork is not None and not self._a_100rel:
            # The caller cannot PRACK: b2bua does, and relays the 1xx unreliably.
            self._prack(fork, response, out.request)
            if response.body:
                self._early_answer = (response.body, response.content_type or "")
        if self.call.state not in (CallState.CALLING, CallState.EARLY):
            return
        if tag:
            self.call.state = CallState.EARLY
        relayed = make_response(
            self.call.invite, response.status, response.reason, to_tag=self.a.local_tag
        )
        relayed.headers.add("Contact", NameAddr(self.a.contact))
        self.config.policy.copy_headers(response, relayed)
        HeaderPolicy.copy_body(response, relayed)
        if self._a_100rel and (reliable or self._a_requires_100rel):
            self._send_reliable(relayed, tag if fork is not None else None, b_rseq, now)
        else:
            self._respond(self._initial, relayed)

    # ---------------------------------------------------- RFC 3262 to the caller

    def _send_reliable(
        self, response: Response, fork_tag: str | None, b_rseq: int | None, now: float
    ) -> None:
        """Send a provisional reliably (§3): RSeq, retransmitted until PRACKed; one at a time."""
        if self._reliable is not None:
            self._reliable_queue.append((response, fork_tag, b_rseq))
            return
        self._rseq += 1
        response.headers.add("Require", "100rel")
        response.headers.add("RSeq", self._rseq)
        self._reliable = _Reliable(response, self._rseq, fork_tag, b_rseq, now, self.config.t1)
        self._respond(self._initial, response)
        self._emit(StartTimer("rel1xx", now + self.config.t1))

    def _retransmit_reliable(self, now: float) -> None:
        reliable = self._reliable
        if reliable is None or self._initial.answered:
            return
        if now - reliable.started >= self.config.timer_b:
            # RFC 3262 §3: no PRACK after 64*T1: reject the INVITE with a 5xx.
            self._reliable = None
            self._reliable_queue.clear()
            self._end(EndReason.ERROR, now, status=500)
            return
        self._emit(Respond(self._initial.server, reliable.response))
        reliable.interval *= 2
        self._emit(StartTimer("rel1xx", now + reliable.interval))

    def _stop_reliable(self) -> None:
        if self._reliable is not None or self._reliable_queue:
            self._reliable = None
            self._reliable_queue.clear()
            self._emit(StopTimer("rel1xx"))

    def _prack_received(self, incoming: _Incoming, now: float) -> None:
        """A PRACK from the caller: relay it to the fork whose reliable 1xx it acknowledges."""
        request = incoming.request
        rack = _parse_rack(request.headers.get("rack"))
        invite_seq = self.call.invite.cseq.seq
        reliable = self._reliable
        if (
            incoming.side is not Side.A
            or rack is None
            or rack[1] != invite_seq
            or rack[2] != "INVITE"
            or rack[0] > self._rseq
        ):
            self._respond(incoming, make_response(request, 481))
            return
        if reliable is None or rack[0] != reliable.rseq:
            self._respond(incoming, make_response(request, 200))  # late or repeated PRACK
            return
        self._reliable = None
        self._emit(StopTimer("rel1xx"))
        fork = self.b.dialog_for(reliable.fork_tag) if reliable.fork_tag is not None else None
        b_invite = self._b_invite
        if fork is None or reliable.b_rseq is None or b_invite is None:
            self._respond(incoming, make_response(request, 200))
        else:
            prack = fork.create_request("PRACK")
            prack.headers.add("RAck", f"{reliable.b_rseq} {b_invite.request.cseq.seq} INVITE")
            self.config.policy.copy_headers(request, prack)
            HeaderPolicy.copy_body(request, prack)
            out = self._send(Side.B, prack, _Purpose.RELAY, dialog=fork, origin=incoming)
            incoming.relay_key = out.key
        if self._reliable_queue and not self._initial.answered:
            response, fork_tag, b_rseq = self._reliable_queue.pop(0)
            self._send_reliable(response, fork_tag, b_rseq, now)

    def _prack(self, fork: Dialog, response: Response, invite: Request) -> None:
        rseq = response.headers.get("rseq")
        if rseq is None or not rseq.strip().isdigit():
            return
        prack = fork.create_request("PRACK")
        prack.headers.add("RAck", f"{rseq.strip()} {invite.cseq.seq} INVITE")
        self._send(Side.B, prack, _Purpose.PRACK, dialog=fork)

    def _b_2xx(self, out: _Outgoing, response: Response, now: float) -> None:
        b = self.b
        tag = response.to_tag or ""
        cseq = out.request.cseq.seq
        if b.dialog is not None:
            if tag == b.dialog.remote_tag:
                ack = b.acks.get(cseq)
                if ack is not None:
                    self._send_ack(Side.B, ack)  # our ACK was lost: the 2xx came again
            else:
                self._ack_and_bye(out.request, response)
            return
        out.done = True
        dialog = b.forks.pop(tag, None)
        try:
            if dialog is None:
                dialog = Dialog.as_uac(out.request, response)
            else:
                dialog.confirm_by(response)
        except SipParseError:
            dialog = _fallback_dialog(out.request, response)
        dialog.early = False
        b.dialog = dialog
        b.forks.clear()
        b.last_fork = None
        b.unacked[cseq] = None
        b.learn_allow(response)
        if response.body:
            self._media[Side.B] = response.body
            self.call.answer_sdp = response.body
        if self.call.end_reason is not None:
            # The 2xx crossed our CANCEL (or the call ended otherwise): ACK it, then BYE.
            self._ack_pending(Side.B)
            self._send_bye(Side.B)
            return
        self.call.state = CallState.ANSWERED
        self.call.answered_at = now
        self._emit(StopTimer("noanswer"))
        self._stop_reliable()
        a = self.a
        relayed = make_response(self.call.invite, response.status, response.reason, a.local_tag)
        relayed.headers.add("Contact", NameAddr(a.contact))
        relayed.headers.add("Allow", ALLOW)
        self._add_uas_timer_headers(relayed, a.timer, self.call.invite)
        self.config.policy.copy_headers(response, relayed)
        HeaderPolicy.copy_body(response, relayed)
        if not relayed.body and self._early_answer is not None:
            # The callee answered in a reliable provisional we PRACKed ourselves; the
            # caller saw it unreliably, so its answer must come in the 2xx.
            relayed.body = self._early_answer[0]
            relayed.headers.add("Content-Type", self._early_answer[1] or "application/sdp")
        assert a.dialog is not None
        a.dialog.early = False
        self._respond(self._initial, relayed)
        self._expect_ack(Side.A, self._initial, relayed, now, far_cseq=cseq)
        b.timer = uac_timer_from_response(response, self.config.timers)
        self._arm_session_timer(Side.A, now)
        self._arm_session_timer(Side.B, now)
        if self.config.max_call_duration > 0:
            self._emit(StartTimer("maxdur", now + self.config.max_call_duration))
        self._emit(Answered())

    def _b_failure(self, response: Response, now: float) -> None:
        status = response.status
        if self.call.end_reason is not None:
            return  # cancelled: the caller already has its answer
        floor = min_se_of(response) if status == 422 else None
        if floor is not None and self._retries_422 < 2:
            # RFC 4028 §7.4: ask again with at least the callee's Min-SE.
            self._retries_422 += 1
            self.b.min_se_floor = max(self.b.min_se_floor, floor)
            self._b_invite = self._send(Side.B, self._build_b_invite(min_se=floor), _Purpose.INVITE)
            return
        relayed = make_response(self.call.invite, status, response.reason, self.a.local_tag)
        self._copy_response_headers(response, relayed)
        if 300 <= status < 400:
            for contact in response.headers.get_all("contact"):
                relayed.headers.add("Contact", contact)
        self._respond(self._initial, relayed)
        self._end(EndReason.REJECTED, now, status=status)

    def _copy_response_headers(self, source: Response, target: Response) -> None:
        extra = _RESPONSE_HEADERS + _STATUS_HEADERS.get(source.status, ())
        self.config.policy.copy_headers(source, target, extra=extra)
        HeaderPolicy.copy_body(source, target)

    def _ack_and_bye(self, invite: Request, response: Response) -> None:
        """A 2xx from a fork other than the one taken: ACK it and BYE it (§13.2.2.4)."""
        try:
            dialog = Dialog.as_uac(invite, response)
        except SipParseError:
            dialog = _fallback_dialog(invite, response)
        dialog.early = False
        self._send_ack(Side.B, dialog.create_ack(invite.cseq.seq), dialog)
        bye = dialog.create_request("BYE")
        bye.headers.add("Reason", 'SIP;cause=200;text="Call completed elsewhere"')
        self._send(Side.B, bye, _Purpose.FORK_BYE, dialog=dialog)

    def _ack_local(self, out: _Outgoing, response: Response) -> None:
        """ACK a 2xx to an INVITE b2bua sent for itself (a refresh, late relays)."""
        leg = self.leg(out.side)
        seq = out.request.cseq.seq
        dialog = out.dialog or leg.dialog
        if dialog is None:
            return
        ack = leg.acks.get(seq) or dialog.create_ack(seq)
        leg.acks[seq] = ack
        leg.unacked.pop(seq, None)
        self._send_ack(out.side, ack, dialog)

    # --------------------------------------------------------- ACK handling

    def _expect_ack(
        self,
        side: Side,
        incoming: _Incoming,
        response: Response,
        now: float,
        *,
        far_cseq: int | None,
    ) -> None:
        pending = _PendingAck(
            side,
            incoming.server,
            response,
            incoming.request.cseq.seq,
            now,
            self.config.t1,
            far_cseq,
        )
        self._pending_acks[side] = pending
        self._emit(StartTimer(self._timer_name("2xx", side), now + pending.interval))

    def on_ack(self, side: Side, ack: Request, now: float) -> list[Action]:
        """An ACK for a 2xx arrived on leg ``side``."""
        pending = self._pending_acks.get(side)
        leg = self.leg(side)
        if (
            pending is None
            or pending.cseq != ack.cseq.seq
            or leg.dialog is None
            or not leg.dialog.matches(ack, incoming=True)
        ):
            return self._flush()  # a retransmission, or not ours
        del self._pending_acks[side]
        self._emit(StopTimer(self._timer_name("2xx", side)))
        far = self.leg(side.other)
        if pending.far_cseq is not None and pending.far_cseq in far.unacked:
            assert far.dialog is not None
            far_ack = far.dialog.create_ack(pending.far_cseq)
            HeaderPolicy.copy_body(ack, far_ack)
            far.acks[pending.far_cseq] = far_ack
            far.unacked.pop(pending.far_cseq, None)
            self._send_ack(side.other, far_ack)
        if side is Side.A and self.call.state is CallState.ANSWERED:
            self.call.state = CallState.CONFIRMED
            self._release_setup()
            self._emit(StateChanged())
        if side in self._bye_after_ack:
            self._bye_after_ack.pop(side, None)
            self._send_bye(side)
        self._maybe_finish()
        return self._flush()

    def _release_setup(self) -> None:
        """The caller ACKed our 2xx: let go of what only the call setup needed.

        The caller's INVITE server transaction has nothing more to send (the endpoint keeps
        it for the ACK's retransmissions), the B-leg INVITE is needed only for a late or
        retransmitted 2xx (its Call-ID, From, To, CSeq and Request-URI: §13.2.2.4 ACK and
        BYE), and the parsed headers of the messages kept for the call are made again if
        read.  Most of a confirmed call's memory was these messages.
        """
        initial = self._initial
        initial.server = _GoneServer(initial.request)
        out = self._b_invite
        if out is not None:
            out.request = out.request.reduced("call-id", "from", "to", "cseq")
        self.call.invite.forget_parsed()
        for ack in self.b.acks.values():
            ack.forget_parsed()

    def _ack_pending(self, side: Side) -> None:
        """ACK (without a body) every 2xx of ``side`` still waiting for the other leg."""
        leg = self.leg(side)
        if leg.dialog is None:
            return
        for seq in sorted(leg.unacked):
            ack = leg.dialog.create_ack(seq)
            leg.acks[seq] = ack
            self._send_ack(side, ack)
        leg.unacked.clear()

    def _retransmit_2xx(self, side: Side, now: float) -> None:
        pending = self._pending_acks.get(side)
        if pending is None:
            return
        if now - pending.started >= self.config.timer_b:
            del self._pending_acks[side]
            if side in self._bye_after_ack:
                self._bye_after_ack.pop(side, None)
                self._send_bye(side)
            elif self.call.end_reason is None:
                self._end(EndReason.ACK_TIMEOUT, now)
            else:
                self._ack_pending(side.other)
            return
        self._emit(Respond(pending.server, pending.response))
        pending.interval = min(2 * pending.interval, self.config.t2)
        self._emit(StartTimer(self._timer_name("2xx", side), now + pending.interval))

    def on_stray_response(self, side: Side, response: Response, now: float) -> list[Action]:
        """A response no transaction matched: a retransmitted 2xx gets its ACK again."""
        leg = self.leg(side)
        if response.cseq.method == "INVITE" and 200 <= response.status < 300:
            dialog = leg.dialog_for(response.to_tag)
            ack = leg.acks.get(response.cseq.seq)
            if ack is not None and dialog is not None:
                self._send_ack(side, ack, dialog)
        return self._flush()

    # ----------------------------------------------------- in-dialog requests

    def on_request(
        self, side: Side, request: Request, server: ServerRef, now: float
    ) -> list[Action]:
        """A request inside a dialog of leg ``side`` (not ACK, not CANCEL)."""
        incoming = _Incoming(side, server, request)
        self._incoming.append(incoming)
        leg = self.leg(side)
        method = request.method
        dialog = leg.dialog_for(request.from_tag)
        if self.call.end_reason is not None:
            self._respond(incoming, make_response(request, 200 if method == "BYE" else 481))
        elif dialog is None:
            self._respond(incoming, make_response(request, 481))
        elif not dialog.receive_request(request):
            self._respond(incoming, make_response(request, 500))
        elif method == "BYE":
            self._respond(incoming, make_response(request, 200))
            self._bye_received(side, dialog, request, now)
        elif method == "PRACK":
            self._prack_received(incoming, now)
        else:
            self._relay(incoming, dialog, now)
        self._maybe_finish()
        return self._flush()

    def _bye_received(self, side: Side, dialog: Dialog, request: Request, now: float) -> None:
        reason_header = request.headers.get("reason")
        if side is Side.B and dialog is not self.b.dialog:
            self.b.forks.pop(dialog.remote_tag, None)  # an early fork went away
            return
        reason = EndReason.CALLER_HANGUP if side is Side.A else EndReason.CALLEE_HANGUP
        self._end(reason, now, reason_header=reason_header, by=side)

    def _offer_in_progress(self) -> bool:
        return (
            self._offer is not None
            or self.a.refresh_key is not None
            or self.b.refresh_key is not None
            or bool(self._pending_acks)
        )

    def _relay(self, incoming: _Incoming, dialog: Dialog, now: float) -> None:
        request = incoming.request
        method = request.method
        side = incoming.side
        far = self.leg(side.other)
        far_dialog = far.active_dialog()
        is_offer = method == "INVITE" or (method == "UPDATE" and bool(request.body))
        if method == "INVITE" and (
            self.call.state is not CallState.CONFIRMED or self._offer_in_progress()
        ):
            self._respond(incoming, make_response(request, 491))
            return
        if is_offer and self._offer_in_progress():
            self._respond(incoming, make_response(request, 491))
            return
        if far_dialog is None:
            self._respond(incoming, make_response(request, 491))
            return
        if method in TARGET_REFRESH_METHODS:
            try:
                incoming.timer = uas_timer(request, self.config.timers, self.leg(side).timer)
            except TooSmall as small:
                response = make_response(request, 422)
                response.headers.add("Min-SE", str(small.min_se))
                self._respond(incoming, response)
                return
        max_forwards = request.max_forwards
        if max_forwards == 0:
            self._respond(incoming, make_response(request, 483))
            return
        contact = far.contact if method in _CONTACT_METHODS else None
        relayed = far_dialog.create_request(
            method,
            contact=contact,
            max_forwards=69 if max_forwards is None else max_forwards - 1,
        )
        if method == "INVITE":
            relayed.headers.add("Allow", ALLOW)
        if method in TARGET_REFRESH_METHODS:
            self._add_timer_headers(relayed, side.other)
        extra = (*_METHOD_HEADERS.get(method, ()), "Reason", "Subject", "Priority")
        self.config.policy.copy_headers(request, relayed, extra=extra)
        HeaderPolicy.copy_body(request, relayed)
        out = self._send(side.other, relayed, _Purpose.RELAY, dialog=far_dialog, origin=incoming)
        incoming.relay_key = out.key
        if is_offer:
            self._offer = out

    def _finish_offer(self, out: _Outgoing) -> None:
        if self._offer is out:
            self._offer = None

    def _relay_response(self, out: _Outgoing, response: Response, now: float) -> None:
        status = response.status
        origin = out.origin
        method = out.request.method
        if status < 200:
            if status > 100 and origin is not None and not origin.answered:
                relayed = make_response(origin.request, status, response.reason)
                self.config.policy.copy_headers(response, relayed)
                HeaderPolicy.copy_body(response, relayed)
                self._respond(origin, relayed)
            return
        if out.done:
            if method == "INVITE" and status < 300:
                self._ack_local(out, response)  # a retransmitted 2xx: ACK it again
            return
        out.done = True
        self._finish_offer(out)
        far = self.leg(out.side)
        if origin is None or origin.answered or self.call.end_reason is not None:
            if method == "INVITE" and status < 300:
                self._ack_local(out, response)  # nobody to relay it to: complete it here
            return
        relayed = make_response(origin.request, status, response.reason)
        self._copy_response_headers(response, relayed)
        origin_leg = self.leg(origin.side)
        success = status < 300
        if success and method in TARGET_REFRESH_METHODS:
            if out.dialog is not None:
                out.dialog.refresh_target(response)
            if origin_leg.dialog is not None:
                origin_leg.dialog.refresh_target(origin.request)
            far.learn_allow(response)
            far.timer = uac_timer_from_response(
                response, self.config.timers, far.timer.interval if far.timer else None
            )
            origin_leg.timer = origin.timer or origin_leg.timer
            relayed.headers.add("Contact", NameAddr(origin_leg.contact))
            if method == "INVITE":
                relayed.headers.add("Allow", ALLOW)
            self._add_uas_timer_headers(relayed, origin_leg.timer, origin.request)
        self._respond(origin, relayed)
        if success and method == "INVITE":
            far.unacked[out.request.cseq.seq] = None
            self._expect_ack(origin.side, origin, relayed, now, far_cseq=out.request.cseq.seq)
        if success and method in TARGET_REFRESH_METHODS and self.call.answered:
            self._arm_session_timer(Side.A, now)
            self._arm_session_timer(Side.B, now)
            self._emit(StateChanged())
            self._media_update(origin.side, origin.request.body)
            self._media_update(out.side, response.body)
        if status in (408, 481):
            # §12.2.1.2: the far end has no dialog any more (or is gone): end the call.
            self._end(EndReason.ERROR, now, status=status)

    def _media_update(self, side: Side, body: bytes) -> None:
        """A successful offer or answer from ``side``: tell the observers if it is new."""
        if body and body != self._media.get(side):
            self._media[side] = body
            self._emit(MediaChanged(side, body))

    def _add_uas_timer_headers(
        self, response: Response, timer: SessionTimer | None, request: Request
    ) -> None:
        if not self.config.timers.enabled:
            return
        response.headers.add("Supported", "timer")
        if timer is not None:
            for name, value in uas_response_headers(timer, request):
                response.headers.add(name, value)

    # ---------------------------------------------------------------- CANCEL

    def on_cancel(self, server: ServerRef, cancel: Request, now: float) -> list[Action]:
        """The caller (or the far end of a relayed re-INVITE) cancelled an INVITE.

        The endpoint has answered the CANCEL; b2bua answers the INVITE 487 and cancels
        the request it relayed.
        """
        reason_header = cancel.headers.get("reason")
        if server is self._initial.server:
            if not self._initial.answered:
                self._end(EndReason.CANCELLED, now, reason_header=reason_header)
        else:
            for incoming in list(self._incoming):
                if incoming.server is server and not incoming.answered:
                    self._respond(incoming, make_response(incoming.request, 487))
                    if incoming.relay_key is not None:
                        self._emit(CancelRequest(incoming.relay_key, reason_header))
        self._maybe_finish()
        return self._flush()

    # ----------------------------------------------------------------- timers

    def on_timer(self, name: str, now: float) -> list[Action]:
        """The call's timer ``name`` fired."""
        kind, _, which = name.partition(":")
        side = Side(which) if which in ("A", "B") else None
        state = self.call.state
        if kind == "admit" and state is CallState.ADMITTING:
            self._reject_call(500, now, "Admission Timed Out", None)
        elif kind == "noanswer" and state in (CallState.CALLING, CallState.EARLY):
            self._end(EndReason.NO_ANSWER, now)
        elif kind == "maxdur" and self.call.end_reason is None:
            self._end(EndReason.MAX_DURATION, now)
        elif kind == "2xx" and side is not None:
            self._retransmit_2xx(side, now)
        elif kind == "st" and side is not None:
            self._session_timer(side, now)
        elif kind == "rel1xx":
            self._retransmit_reliable(now)
        elif kind == "linger":
            self._finish()
        self._maybe_finish()
        return self._flush()

    def _arm_session_timer(self, side: Side, now: float) -> None:
        leg = self.leg(side)
        leg.timer_since = now
        leg.refresh_failed = False
        name = self._timer_name("st", side)
        if leg.timer is None:
            self._emit(StopTimer(name))
        else:
            self._emit(StartTimer(name, leg.timer.deadline(now)))

    def _session_timer(self, side: Side, now: float) -> None:
        leg = self.leg(side)
        timer = leg.timer
        if timer is None or self.call.end_reason is not None or not self.call.answered:
            return
        if timer.refresher is Refresher.THEM or leg.refresh_failed:
            self._end(EndReason.SESSION_TIMER, now)
            return
        if self._offer_in_progress() or leg.dialog is None:
            # Something else is being negotiated; its 2xx refreshes, else try again soon.
            self._emit(StartTimer(self._timer_name("st", side), now + 2.0))
            return
        self._send_refresh(side)

    def _send_refresh(self, side: Side) -> None:
        leg = self.leg(side)
        dialog = leg.dialog
        assert dialog is not None
        use_update = "UPDATE" in leg.peer_allow and not leg.refresh_with_invite
        method = "UPDATE" if use_update else "INVITE"
        request = dialog.create_request(method, contact=leg.contact)
        if method == "INVITE":
            request.headers.add("Allow", ALLOW)
            if leg.sdp_sent is not None:
                request.body = leg.sdp_sent[0]
                request.headers.add("Content-Type", leg.sdp_sent[1])
        self._add_timer_headers(request, side)
        out = self._send(side, request, _Purpose.REFRESH, dialog=dialog)
        leg.refresh_key = out.key

    def _refresh_response(self, out: _Outgoing, response: Response, now: float) -> None:
        status = response.status
        leg = self.leg(out.side)
        if status < 200:
            return
        if out.done:
            if status < 300 and out.request.method == "INVITE":
                self._ack_local(out, response)
            return
        out.done = True
        leg.refresh_key = None
        if status < 300:
            if out.request.method == "INVITE":
                self._ack_local(out, response)
            if leg.dialog is not None:
                leg.dialog.refresh_target(response)
            asked = leg.timer.interval if leg.timer else None
            leg.timer = uac_timer_from_response(response, self.config.timers, asked)
            self._arm_session_timer(out.side, now)
            self._emit(StateChanged())
            return
        if self.call.end_reason is not None:
            return
        floor = min_se_of(response) if status == 422 else None
        if floor is not None and floor > leg.min_se_floor:
            leg.min_se_floor = floor
            self._send_refresh(out.side)
        elif status in (405, 501) and out.request.method == "UPDATE":
            leg.refresh_with_invite = True
            self._send_refresh(out.side)
        elif status == 491:
            self._emit(StartTimer(self._timer_name("st", out.side), now + 2.0))
        elif status in (408, 481):
            self._end(EndReason.SESSION_TIMER, now, status=status)
        else:
            # RFC 4028 §10: the session lives until it expires; one more look then.
            leg.refresh_failed = True
            timer = leg.timer
            if timer is not None:
                expiry = leg.timer_since + timer.interval - min(32.0, timer.interval / 3)
                self._emit(StartTimer(self._timer_name("st", out.side), max(now, expiry)))

    # ------------------------------------------------------------------- end

    def end(
        self,
        reason: EndReason,
        now: float,
        *,
        reason_header: str | None = None,
        status: int | None = None,
    ) -> list[Action]:
        """End the call: answer or cancel what is pending, BYE what is up (once)."""
        self._end(reason, now, reason_header=reason_header, status=status)
        self._maybe_finish()
        return self._flush()

    def _end(
        self,
        reason: EndReason,
        now: float,
        *,
        reason_header: str | None = None,
        status: int | None = None,
        by: Side | None = None,
    ) -> None:
        call = self.call
        if call.end_reason is not None:
            return
        call.end_reason = reason
        call.end_status = status
        call.ended_at = now
        call.state = CallState.ENDING
        header = reason_header
        if header is None and reason not in _HANGUPS:
            header = f'SIP;text="{reason.value}"'
        for name in ("admit", "noanswer", "maxdur", "st:A", "st:B"):
            self._emit(StopTimer(name))
        self._stop_reliable()
        # The caller's side.
        if not self._initial.answered:
            code = status if status is not None and status >= 300 else None
            final = make_response(
                call.invite, code or _UNANSWERED_STATUS[reason], to_tag=self.a.local_tag
            )
            if header is not None and reason is not EndReason.CANCELLED:
                final.headers.add("Reason", header)
            self._respond(self._initial, final)
        elif self.a.dialog is None or self.a.dialog.early:
            pass  # the caller got a final error: there is no dialog to BYE
        elif by is Side.A:
            if self._pending_acks.pop(Side.A, None) is not None:
                self._emit(StopTimer("2xx:A"))
        elif Side.A in self._pending_acks:
            self._bye_after_ack[Side.A] = None  # §15: no BYE before the ACK (or its timeout)
        else:
            self._send_bye(Side.A, header)
        # The callee's side.
        b_invite = self._b_invite
        if b_invite is not None and not b_invite.done:
            self._emit(CancelRequest(b_invite.key, header))
        elif self.b.dialog is not None and by is not Side.B:
            if Side.B in self._pending_acks:
                self._bye_after_ack[Side.B] = None
            else:
                self._ack_pending(Side.B)
                self._send_bye(Side.B, header)
        elif by is Side.B and self._pending_acks.pop(Side.B, None) is not None:
            self._emit(StopTimer("2xx:B"))
        self._ack_pending(Side.A)
        # Requests still waiting for the far end's answer will not get one now.
        for incoming in list(self._incoming):
            self._respond(incoming, make_response(incoming.request, 487))
        self._emit(Ended())
        self._emit(StartTimer("linger", now + 2 * self.config.timer_b + 5.0))

    def _send_bye(self, side: Side, reason_header: str | None = None) -> None:
        leg = self.leg(side)
        if leg.dialog is None:
            return
        self._ack_pending(side)
        bye = leg.dialog.create_request("BYE")
        if reason_header is None and self.call.end_reason not in _HANGUPS:
            reason = self.call.end_reason
            reason_header = f'SIP;text="{reason.value}"' if reason is not None else None
        if reason_header:
            bye.headers.add("Reason", reason_header)
        self._send(side, bye, _Purpose.BYE, dialog=leg.dialog)

    def _maybe_finish(self) -> None:
        if self.call.state is not CallState.ENDING:
            return
        if self._pending_acks or any(not out.done for out in self._out.values()):
            return
        self._finish()

    def _finish(self) -> None:
        if self.call.state is CallState.ENDED:
            return
        self.call.state = CallState.ENDED
        for out in self._out.values():
            out.done = True
        self._pending_acks.clear()
        self._emit(Finished())


def _rseq_of(response: Response) -> int | None:
    value = (response.headers.get("rseq") or "").strip()
    return int(value) if value.isdigit() and value.isascii() else None


def _parse_rack(value: str | None) -> tuple[int, int, str] | None:
    """RAck (RFC 3262 §7.2): ``response-num CSeq-num Method``."""
    parts = (value or "").split()
    if len(parts) != 3 or not (parts[0].isdigit() and parts[1].isdigit()):
        return None
    return int(parts[0]), int(parts[1]), parts[2]


def _requires_100rel(response: Response) -> bool:
    return any(tag.strip().lower() == "100rel" for tag in response.headers.get_all("require"))


def _fallback_dialog(invite: Request, response: Response) -> Dialog:
    """A dialog for a 2xx too broken to build one properly (we only ACK and BYE it)."""
    frm = invite.from_.copy()
    frm.params.pop("tag", None)
    to = invite.to.copy()
    to.params.pop("tag", None)
    return Dialog(
        invite.call_id,
        invite.from_tag or "",
        response.to_tag or "",
        frm,
        to,
        invite.request_uri,
        local_seq=invite.cseq.seq,
    )
