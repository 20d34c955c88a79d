"""SIP transactions (RFC 3261 §17, as corrected by RFC 6026), sans-IO.

Implements:

* §17.1.1 INVITE client transaction (timers A, B, D; RFC 6026 §8.4 "Accepted" state
  and timer M), with the ACK for non-2xx built per §17.1.1.3;
* §17.1.2 non-INVITE client transaction (timers E, F, K);
* §17.2.1 INVITE server transaction (timers G, H, I; RFC 6026 §8.5-§8.7 "Accepted"
  state and timer L);
* §17.2.2 non-INVITE server transaction (timer J);
* §17.1.3 / §17.2.3 matching, with the RFC 2543 fallback key (and RFC 4475 §3.2.1: a
  branch that is only the magic cookie falls back too); §9.2 CANCEL matching;
* §9.1 building a CANCEL; §18.2.1 ``received`` and RFC 3581 ``rport`` stamping;
  §18.2.2 (+ RFC 3581 §4) choosing where a response goes;
* a :class:`TransactionTable` holding transactions by key with their timers.

Every transaction is a state machine driven by method calls that take ``now`` and
return a list of actions for the caller to carry out: :class:`Send` (to the transport),
:class:`Deliver` (to the TU), :class:`Timeout`, :class:`TransportError` (to the TU) and
:class:`Terminated`.  Each machine is a transition table ``{(state, input): (step,
next_state)}``; an input with no row in the current state is a TU bug and raises
:class:`~b2bua.sip.errors.LocalProtocolError` (network inputs all have rows).  A
terminated transaction ignores everything.
"""

from __future__ import annotations

import heapq
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import ClassVar, Final, NamedTuple

from b2bua.sip.errors import LocalProtocolError, SipParseError
from b2bua.sip.headers import Via
from b2bua.sip.message import Headers, Message, Request, Response, _Field, make_response

__all__ = [
    "MAGIC_COOKIE",
    "Action",
    "ClientKey",
    "ClientTransaction",
    "Deliver",
    "Input",
    "InviteClientTransaction",
    "InviteServerTransaction",
    "NonInviteClientTransaction",
    "NonInviteServerTransaction",
    "Send",
    "ServerKey",
    "ServerTransaction",
    "State",
    "Terminated",
    "Timeout",
    "TimerConfig",
    "Transaction",
    "TransactionTable",
    "TransportError",
    "cancel_key",
    "client_key",
    "make_ack",
    "make_cancel",
    "new_branch",
    "response_address",
    "server_key",
    "stamp_via",
]

#: §8.1.1.7: branches of RFC 3261 elements start with this.
MAGIC_COOKIE: Final = "z9hG4bK"


def new_branch() -> str:
    """A fresh, globally unique branch parameter (§8.1.1.7)."""
    return MAGIC_COOKIE + secrets.token_hex(8)


# ---------------------------------------------------------------------------- timers


@dataclass(frozen=True, slots=True)
class TimerConfig:
    """Timer values of RFC 3261 §17.1.1.1 / Table 4, in seconds.

    ``d`` is timer D for unreliable transports ("at least 32 s").
    """

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    d: float = 32.0

    @property
    def b(self) -> float:
        """Timers B, F, H, J, L and M: 64*T1."""
        return 64 * self.t1


# --------------------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class Send:
    """Pass ``message`` to the transport, to ``dest`` (opaque, given at creation)."""

    message: Message
    dest: object = None


@dataclass(frozen=True, slots=True)
class Deliver:
    """Pass ``message`` up to the TU."""

    message: Message


@dataclass(frozen=True, slots=True)
class Timeout:
    """Timer B, F or H fired: tell the TU the transaction timed out (§17.1.1.2, §17.2.1)."""


@dataclass(frozen=True, slots=True)
class TransportError:
    """The transport failed for this transaction: tell the TU (§17.1.4, §17.2.4)."""

    reason: str = ""


@dataclass(frozen=True, slots=True)
class Terminated:
    """The transaction reached the Terminated state; it is gone from its table."""

    key: ClientKey | ServerKey


Action = Send | Deliver | Timeout | TransportError | Terminated


# ------------------------------------------------------------------------------ keys


class ClientKey(NamedTuple):
    """§17.1.3: a response matches by top-Via branch and CSeq method."""

    branch: str
    method: str


class ServerKey(NamedTuple):
    """§17.2.3: branch + sent-by + method, or the RFC 2543 fields when no cookie.

    ``method`` is INVITE for an ACK (it belongs to the INVITE transaction).  In an
    RFC 2543 key ``branch`` is None and ``call_id``, ``from_tag``, ``cseq``,
    ``request_uri`` and ``transport`` are set; the To tag of an ACK is checked
    against the transaction by :meth:`TransactionTable.match_request`.
    """

    branch: str | None
    sent_by: tuple[str, int | None]
    method: str
    call_id: str | None = None
    from_tag: str | None = None
    cseq: int | None = None
    request_uri: str | None = None
    transport: str | None = None


def _has_cookie(branch: str | None) -> bool:
    return branch is not None and branch.startswith(MAGIC_COOKIE) and len(branch) > 7


def client_key(message: Message) -> ClientKey:
    """The client transaction key of a request we send or a response we get (§17.1.3)."""
    branch = message.top_via.branch or ""
    method = message.method if isinstance(message, Request) else message.cseq.method
    return ClientKey(branch, method)


def server_key(request: Request, method: str | None = None) -> ServerKey:
    """The server transaction key of a received request (§17.2.3).

    ``method`` overrides the request method (used for CANCEL matching).
    """
    via = request.top_via
    m = method or request.method
    if m == "ACK":
        m = "INVITE"
    if _has_cookie(via.branch):
        return ServerKey(via.branch, via.sent_by, m)
    # RFC 2543 fallback; also RFC 4475 §3.2.1 (branch = the bare cookie).
    return ServerKey(
        None,
        via.sent_by,
        m,
        call_id=request.call_id,
        from_tag=request.from_tag,
        cseq=request.cseq.seq,
        request_uri=request.uri,
        transport=via.transport,
    )


def cancel_key(cancel: Request) -> ServerKey:
    """The key of the INVITE server transaction a CANCEL targets (§9.2)."""
    return server_key(cancel, "INVITE")


# ----------------------------------------------------------------- building requests


_MAX_FORWARDS: Final[_Field] = ("max-forwards", "Max-Forwards", "70", None)


def _pick(invite: Request) -> tuple[list[_Field], list[_Field], list[_Field], list[_Field]]:
    """The Route, From, To and Call-ID fields of ``invite``, as written."""
    route: list[_Field] = []
    frm: list[_Field] = []
    to: list[_Field] = []
    call_id: list[_Field] = []
    for f in invite.headers._fields:
        key = f[0]
        if key == "route":
            route.append(f)
        elif key == "from":
            frm.append(f)
        elif key == "to":
            to.append(f)
        elif key == "call-id":
            call_id.append(f)
    return route, frm, to, call_id


def _top_via_field(invite: Request) -> _Field:
    via = invite.headers.get("via")
    if via is None:
        raise LocalProtocolError("request without Via")
    return ("via", "Via", via, None)


def make_ack(invite: Request, response: Response) -> Request:
    """The ACK for a non-2xx final response, built by the client transaction (§17.1.1.3).

    Request-URI, Call-ID, From, CSeq number and Route as in the INVITE, To from the
    response (with its tag), one Via: the INVITE's top Via (same branch).
    """
    route, frm, _to, call_id = _pick(invite)
    to = response.headers._first("to")
    if to is None:
        raise LocalProtocolError("response without To")
    fields: list[_Field] = [_top_via_field(invite), *route, _MAX_FORWARDS, *frm]
    fields.append(("to", "To", to, None))
    fields.extend(call_id)
    fields.append(("cseq", "CSeq", f"{invite.cseq.seq} ACK", None))
    return Request("ACK", invite.uri, Headers._wrap(fields))


#: The fields of an INVITE that :func:`make_cancel` copies.
_CANCEL_FIELDS: Final = ("via", "route", "from", "to", "call-id", "cseq")


def make_cancel(invite: Request, reason: str | None = None) -> Request:
    """A CANCEL for ``invite`` (§9.1), optionally with a Reason header (RFC 3326).

    Request-URI, Call-ID, To, From, CSeq number and Route as in the INVITE; one Via:
    the INVITE's top Via, so it has the same branch.
    """
    route, frm, to, call_id = _pick(invite)
    fields: list[_Field] = [_top_via_field(invite), *route, _MAX_FORWARDS, *frm, *to, *call_id]
    fields.append(("cseq", "CSeq", f"{invite.cseq.seq} CANCEL", None))
    if reason is not None:
        fields.append(Headers._field("Reason", reason))
    return Request("CANCEL", invite.uri, Headers._wrap(fields))


# ------------------------------------------------------------------ response routing


def stamp_via(request: Request, host: str, port: int) -> None:
    """Record the packet source in the top Via of a received request.

    §18.2.1: add ``received`` when sent-by is not the source address; RFC 3581 §4:
    when ``rport`` is present without a value, fill it with the source port and
    always add ``received``.
    """
    via = request.top_via
    fill_rport = via.rport_requested and via.rport is None
    if via.bare_host.lower() == host.lower() and not fill_rport:
        return
    new = via.copy()
    new.params["received"] = host
    if fill_rport:
        new.params["rport"] = str(port)
    request.headers.pop_first("via")
    request.headers.insert_top("Via", new)


def response_address(via: Via, default_port: int | None = None) -> tuple[str, int]:
    """Where to send a response, from the top Via of its request (§18.2.2, RFC 3581 §4).

    ``maddr`` first, then ``received`` (with the ``rport`` value when the request asked
    for it), then sent-by; a missing port is ``default_port`` or 5060 (5061 for TLS).
    On a reliable transport the glue should prefer the connection the request came on.
    """
    if default_port is None:
        default_port = 5061 if via.transport == "TLS" else 5060
    maddr = via.maddr
    if maddr:
        return maddr.strip("[]"), via.port or default_port
    rport = via.rport
    received = via.received
    host = received if received else via.bare_host
    if rport is not None:
        return host, rport
    return host, via.port or default_port


# ------------------------------------------------------------------------ state machine


class State(Enum):
    """Transaction states of §17 and RFC 6026."""

    # Members are singletons: identity hashing keeps table lookups in C.
    __hash__ = object.__hash__

    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    ACCEPTED = "Accepted"
    TERMINATED = "Terminated"


class Input(Enum):
    """What can happen to a transaction."""

    __hash__ = object.__hash__

    R1XX = "1xx received"
    R2XX = "2xx received"
    R300_699 = "300-699 received"
    RFINAL = "200-699 received"
    REQUEST = "request retransmission received"
    ACK = "ACK received"
    TU_1XX = "1xx from TU"
    TU_2XX = "2xx from TU"
    TU_300_699 = "300-699 from TU"
    TU_FINAL = "200-699 from TU"
    TIMER_A = "timer A"
    TIMER_B = "timer B"
    TIMER_D = "timer D"
    TIMER_E = "timer E"
    TIMER_F = "timer F"
    TIMER_G = "timer G"
    TIMER_H = "timer H"
    TIMER_I = "timer I"
    TIMER_J = "timer J"
    TIMER_K = "timer K"
    TIMER_L = "timer L"
    TIMER_M = "timer M"
    TRANSPORT_ERROR = "transport error"


_TIMER_INPUT: Final = {
    "A": Input.TIMER_A,
    "B": Input.TIMER_B,
    "D": Input.TIMER_D,
    "E": Input.TIMER_E,
    "F": Input.TIMER_F,
    "G": Input.TIMER_G,
    "H": Input.TIMER_H,
    "I": Input.TIMER_I,
    "J": Input.TIMER_J,
    "K": Input.TIMER_K,
    "L": Input.TIMER_L,
    "M": Input.TIMER_M,
}


class Transaction:
    """Common machinery: transition table dispatch and timers.

    ``request`` is the request that created the transaction; ``dest`` is opaque and
    copied into every :class:`Send`; ``user_data`` is free for the TU.
    """

    __slots__ = (
        "_interval",
        "_scheduled",
        "_table",
        "config",
        "dest",
        "key",
        "reliable",
        "request",
        "state",
        "timers",
        "user_data",
    )

    TABLE: ClassVar[dict[tuple[State, Input], tuple[Callable[..., list[Action]], State]]]
    #: Timers that may run in each state; others are cancelled on entering it.
    STATE_TIMERS: ClassVar[dict[State, frozenset[str]]]

    key: ClientKey | ServerKey

    def __init__(
        self,
        request: Request,
        state: State,
        *,
        config: TimerConfig | None = None,
        reliable: bool = False,
        dest: object = None,
    ) -> None:
        self.request = request
        self.state = state
        self.config = config or _DEFAULT_CONFIG
        self.reliable = reliable
        self.dest = dest
        self.timers: dict[str, float] = {}
        self._interval = 0.0
        self._scheduled: float | None = None
        self._table: TransactionTable | None = None
        self.user_data: object = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.key} {self.state.value}>"

    @property
    def terminated(self) -> bool:
        return self.state is State.TERMINATED

    def next_deadline(self) -> float | None:
        """When ``on_timer`` next has something to do, or None."""
        timers = self.timers
        return min(timers.values()) if timers else None

    def _fire(self, event: Input, now: float, msg: Message | None = None) -> list[Action]:
        state = self.state
        if state is State.TERMINATED:
            return []
        try:
            step, next_state = self.TABLE[(state, event)]
        except KeyError:
            raise LocalProtocolError(
                f"{type(self).__name__}: no transition for {event.value} in {state.value}"
            ) from None
        actions = step(self, now, msg)
        self.state = next_state
        if next_state is State.TERMINATED:
            self.timers.clear()
            actions.append(Terminated(self.key))
        elif next_state is not state:
            allowed = self.STATE_TIMERS[next_state]
            for name in [n for n in self.timers if n not in allowed]:
                del self.timers[name]
        return actions

    def _notify(self) -> None:
        table = self._table
        if table is not None:
            table._reschedule(self)

    def on_timer(self, now: float) -> list[Action]:
        """Fire every timer due at ``now``, earliest first."""
        out: list[Action] = []
        timers = self.timers
        while timers:
            name = min(timers, key=timers.__getitem__)
            if timers[name] > now:
                break
            del timers[name]
            out.extend(self._fire(_TIMER_INPUT[name], now))
        self._notify()
        return out

    def transport_error(self, now: float, reason: str = "") -> list[Action]:
        """The transport could not send for this transaction (§17.1.4, §17.2.4)."""
        actions = self._fire(Input.TRANSPORT_ERROR, now)
        if reason:
            actions = [TransportError(reason) if isinstance(a, TransportError) else a
                       for a in actions]  # fmt: skip
        self._notify()
        return actions

    # ---------------------------------------------------------- shared steps

    def _ignore(self, now: float, msg: Message | None) -> list[Action]:
        """Absorb the input (retransmission or a message the RFC says to drop)."""
        return []

    def _deliver(self, now: float, msg: Message | None) -> list[Action]:
        assert msg is not None
        return [Deliver(msg)]

    def _timeout(self, now: float, msg: Message | None) -> list[Action]:
        return [Timeout()]

    def _fail(self, now: float, msg: Message | None) -> list[Action]:
        return [TransportError()]

    def _terminate(self, now: float, msg: Message | None) -> list[Action]:
        return []


_DEFAULT_CONFIG: Final = TimerConfig()


# --------------------------------------------------------------------- client side


class ClientTransaction(Transaction):
    """A client transaction: sends ``request`` and matches responses (§17.1)."""

    __slots__ = ()

    key: ClientKey

    def __init__(
        self,
        request: Request,
        state: State,
        *,
        config: TimerConfig | None = None,
        reliable: bool = False,
        dest: object = None,
    ) -> None:
        super().__init__(request, state, config=config, reliable=reliable, dest=dest)
        if not _has_cookie(request.top_via.branch):
            raise LocalProtocolError("client requests need a z9hG4bK branch (§8.1.1.7)")
        self.key = client_key(request)

    def receive(self, response: Response, now: float) -> list[Action]:
        """A response matching this transaction arrived."""
        actions = self._fire(self._classify(response.status), now, response)
        self._notify()
        return actions

    def _classify(self, status: int) -> Input:
        raise NotImplementedError


class InviteClientTransaction(ClientTransaction):
    """§17.1.1 with RFC 6026 §8.4: Calling, Proceeding, Completed, Accepted."""

    __slots__ = ("_ack",)

    def __init__(
        self,
        request: Request,
        *,
        config: TimerConfig | None = None,
        reliable: bool = False,
        dest: object = None,
    ) -> None:
        super().__init__(request, State.CALLING, config=config, reliable=reliable, dest=dest)
        self._ack: Request | None = None

    def start(self, now: float) -> list[Action]:
        """Send the INVITE; start A (unreliable only) and B (§17.1.1.2)."""
        if self.timers or self._scheduled is not None:
            raise LocalProtocolError("transaction already started")
        if not self.reliable:
            self._interval = self.config.t1
            self.timers["A"] = now + self._interval
        self.timers["B"] = now + self.config.b
        self._notify()
        return [Send(self.request, self.dest)]

    def _classify(self, status: int) -> Input:
        if status < 200:
            return Input.R1XX
        if status < 300:
            return Input.R2XX
        return Input.R300_699

    def _retransmit(self, now: float, msg: Message | None) -> list[Action]:
        # §17.1.1.2: retransmit and double timer A.
        self._interval *= 2
        self.timers["A"] = now + self._interval
        return [Send(self.request, self.dest)]

    def _accept(self, now: float, msg: Message | None) -> list[Action]:
        # RFC 6026 §8.4: pass the 2xx up, start timer M.
        assert msg is not None
        self.timers["M"] = now + self.config.b
        # Accepted never sends the INVITE again: for its 64*T1 keep only what a CANCEL
        # (make_cancel) reads, not the body and the other headers.
        self.request = self.request.reduced(*_CANCEL_FIELDS)
        return [Deliver(msg)]

    def _complete(self, now: float, msg: Message | None) -> list[Action]:
        # §17.1.1.2: pass the response up, send ACK, start timer D.
        assert isinstance(msg, Response)
        self._ack = make_ack(self.request, msg)
        self.timers["D"] = now + (0.0 if self.reliable else self.config.d)
        return [Deliver(msg), Send(self._ack, self.dest)]

    def _resend_ack(self, now: float, msg: Message | None) -> list[Action]:
        assert self._ack is not None
        return [Send(self._ack, self.dest)]

    _C, _P, _X, _A, _T = (
        State.CALLING,
        State.PROCEEDING,
        State.COMPLETED,
        State.ACCEPTED,
        State.TERMINATED,
    )
    TABLE = {
        # §17.1.1.2: Calling.
        (_C, Input.TIMER_A): (_retransmit, _C),
        (_C, Input.TIMER_B): (Transaction._timeout, _T),
        (_C, Input.R1XX): (Transaction._deliver, _P),
        (_C, Input.R2XX): (_accept, _A),  # RFC 6026 §8.4
        (_C, Input.R300_699): (_complete, _X),
        (_C, Input.TRANSPORT_ERROR): (Transaction._fail, _T),
        # §17.1.1.2: Proceeding (no more retransmissions, timer B no longer applies).
        (_P, Input.R1XX): (Transaction._deliver, _P),
        (_P, Input.R2XX): (_accept, _A),  # RFC 6026 §8.4
        (_P, Input.R300_699): (_complete, _X),
        (_P, Input.TRANSPORT_ERROR): (Transaction._fail, _T),
        # §17.1.1.2: Completed: final retransmissions re-send the ACK, are not passed up.
        (_X, Input.R1XX): (Transaction._ignore, _X),
        (_X, Input.R2XX): (Transaction._ignore, _X),
        (_X, Input.R300_699): (_resend_ack, _X),
        (_X, Input.TIMER_D): (Transaction._terminate, _T),
        (_X, Input.TRANSPORT_ERROR): (Transaction._fail, _T),
        # RFC 6026 §8.4: Accepted: every 2xx (retransmissions, other forks) goes up.
        (_A, Input.R1XX): (Transaction._ignore, _A),
        (_A, Input.R2XX): (Transaction._deliver, _A),
        (_A, Input.R300_699): (Transaction._ignore, _A),
        (_A, Input.TIMER_M): (Transaction._terminate, _T),
        (_A, Input.TRANSPORT_ERROR): (Transaction._fail, _T),
    }
    STATE_TIMERS = {
        _C: frozenset("AB"),
        _P: frozenset(),
        _X: frozenset("D"),
        _A: frozenset("M"),
    }
    del _C, _P, _X, _A, _T


class NonInviteClientTransaction(ClientTransaction):
    """§17.1.2: Trying, Proceeding, Completed."""

    __slots__ = ()

    def __init__(
        self,
        request: Request,
        *,
        config: TimerConfig | None = None,
        reliable: bool = False,
        dest: object = None,
    ) -> None:
        if request.method in ("INVITE", "ACK"):
            raise LocalProtocolError(f"{request.method} has no non-INVITE transaction")
        super().__init__(request, State.TRYING, config=config, reliable=reliable, dest=dest)

    def start(self, now: float) -> list[Action]:
        """Send the request; start E (unreliable only) and F (§17.1.2.2)."""
        if self.timers or self._scheduled is not None:
            raise LocalProtocolError("transaction already started")
        if not self.reliable:
            self._interval = self.config.t1
            self.timers["E"] = now + self._interval
        self.timers["F"] = now + self.config.b
        self._notify()
        return [Send(self.request, self.dest)]

    def _classify(self, status: int) -> Input:
        return Input.R1XX if status < 200 else Input.RFINAL

    def _retransmit_trying(self, now: float, msg: Message | None) -> list[Action]:
        # §17.1.2.2: E doubles up to T2 in Trying.
        self._interval = min(2 * self._interval, self.config.t2)
        self.timers["E"] = now + self._interval
        return [Send(self.request, self.dest)]

    def _retransmit_proceeding(self, now: float, msg: Message | None) -> list[Action]:
        # §17.1.2.2: in Proceeding, E is reset to T2.
        self._interval = self.config.t2
        self.timers["E"] = now + self._interval
        return [Send(self.request, self.dest)]

    def _complete(self, now: float, msg: Message | None) -> list[Action]:
        # §17.1.2.2: pass the final response up, start K (T4, or 0 when reliable).
        assert msg is not None
        self.timers["K"] = now + (0.0 if self.reliable else self.config.t4)
        return [Deliver(msg)]

    _TR, _P, _X, _T = State.TRYING, State.PROCEEDING, State.COMPLETED, State.TERMINATED
    TABLE = {
        # §17.1.2.2: Trying.
        (_TR, Input.TIMER_E): (_retransmit_trying, _TR),
        (_TR, Input.TIMER_F): (Transaction._timeout, _T),
        (_TR, Input.R1XX): (Transaction._deliver, _P),
        (_TR, Input.RFINAL): (_complete, _X),
        (_TR, Input.TRANSPORT_ERROR): (Transaction._fail, _T),
        # §17.1.2.2: Proceeding.
        (_P, Input.TIMER_E): (_retransmit_proceeding, _P),
        (_P, Input.TIMER_F): (Transaction._timeout, _T),
        (_P, Input.R1XX): (Transaction._deliver, _P),
        (_P, Input.RFINAL): (_complete, _X),
        (_P, Input.TRANSPORT_ERROR): (Transaction._fail, _T),
        # §17.1.2.2: Completed buffers response retransmissions.
        (_X, Input.R1XX): (Transaction._ignore, _X),
        (_X, Input.RFINAL): (Transaction._ignore, _X),
        (_X, Input.TIMER_K): (Transaction._terminate, _T),
        (_X, Input.TRANSPORT_ERROR): (Transaction._ignore, _X),
    }
    STATE_TIMERS = {
        _TR: frozenset("EF"),
        _P: frozenset("EF"),
        _X: frozenset("K"),
    }
    del _TR, _P, _X, _T


# --------------------------------------------------------------------- server side


class ServerTransaction(Transaction):
    """A server transaction: absorbs retransmissions, sends the TU's responses (§17.2)."""

    __slots__ = ("last_response",)

    key: ServerKey

    def __init__(
        self,
        request: Request,
        state: State,
        *,
        config: TimerConfig | None = None,
        reliable: bool = False,
        dest: object = None,
    ) -> None:
        super().__init__(request, state, config=config, reliable=reliable, dest=dest)
        self.key = server_key(request)
        self.last_response: Response | None = None

    @property
    def to_tag(self) -> str | None:
        """To tag of the last response sent (RFC 2543 ACK matching, §17.2.3)."""
        last = self.last_response
        return None if last is None else last.to_tag

    def receive(self, request: Request, now: float) -> list[Action]:
        """A request matching this transaction arrived (retransmission or ACK)."""
        event = Input.ACK if request.method == "ACK" else Input.REQUEST
        actions = self._fire(event, now, request)
        self._notify()
        return actions

    def respond(self, response: Response, now: float) -> list[Action]:
        """The TU sends ``response`` through this transaction."""
        actions = self._fire(self._classify(response.status), now, response)
        self._notify()
        return actions

    def _classify(self, status: int) -> Input:
        raise NotImplementedError

    def _send_response(self, now: float, msg: Message | None) -> list[Action]:
        assert isinstance(msg, Response)
        self.last_response = msg
        return [Send(msg, self.dest)]

    def _resend_response(self, now: float, msg: Message | None) -> list[Action]:
        if self.last_response is None:
            return []
        return [Send(self.last_response, self.dest)]


class InviteServerTransaction(ServerTransaction):
    """§17.2.1 with RFC 6026 §8.5-§8.7: Proceeding, Completed, Confirmed, Accepted."""

    __slots__ = ("send_trying",)

    def __init__(
        self,
        request: Request,
        *,
        config: TimerConfig | None = None,
        reliable: bool = False,
        dest: object = None,
        send_trying: bool = True,
    ) -> None:
        if request.method != "INVITE":
            raise LocalProtocolError("an INVITE server transaction needs an INVITE")
        super().__init__(request, State.PROCEEDING, config=config, reliable=reliable, dest=dest)
        self.send_trying = send_trying

    def start(self, now: float) -> list[Action]:
        """Send 100 Trying (unless the TU answers at once) and pass the INVITE up."""
        if self._scheduled is not None or self.last_response is not None:
            raise LocalProtocolError("transaction already started")
        actions: list[Action] = []
        if self.send_trying:
            # §17.2.1: a 100 per §8.2.6, without a To tag.
            actions = self._send_response(now, make_response(self.request, 100))
        actions.append(Deliver(self.request))
        self._notify()
        return actions

    def _classify(self, status: int) -> Input:
        if status < 200:
            return Input.TU_1XX
        if status < 300:
            return Input.TU_2XX
        return Input.TU_300_699

    def _accept(self, now: float, msg: Message | None) -> list[Action]:
        # RFC 6026 §8.5: send the 2xx, start timer L.
        self.timers["L"] = now + self.config.b
        return self._send_2xx(now, msg)

    def _send_2xx(self, now: float, msg: Message | None) -> list[Action]:
        # RFC 6026 §8.7: Accepted never resends (the TU retransmits its 2xx), so for its
        # 64*T1 it keeps only the status and the To tag (ACK matching, §17.2.3).
        assert isinstance(msg, Response)
        self.last_response = msg.reduced("to")
        return [Send(msg, self.dest)]

    def _complete(self, now: float, msg: Message | None) -> list[Action]:
        # §17.2.1: send the final response, start G (unreliable) and H.
        if not self.reliable:
            self._interval = self.config.t1
            self.timers["G"] = now + self._interval
        self.timers["H"] = now + self.config.b
        return self._send_response(now, msg)

    def _retransmit(self, now: float, msg: Message | None) -> list[Action]:
        # §17.2.1: timer G doubles up to T2.
        self._interval = min(2 * self._interval, self.config.t2)
        self.timers["G"] = now + self._interval
        return self._resend_response(now, msg)

    def _confirm(self, now: float, msg: Message | None) -> list[Action]:
        # §17.2.1: ACK received: start timer I (T4, or 0 when reliable).
        self.timers["I"] = now + (0.0 if self.reliable else self.config.t4)
        return []

    def _transport_failed(self, now: float, msg: Message | None) -> list[Action]:
        return [TransportError()]

    _P, _X, _F, _A, _T = (
        State.PROCEEDING,
        State.COMPLETED,
        State.CONFIRMED,
        State.ACCEPTED,
        State.TERMINATED,
    )
    TABLE = {
        # §17.2.1: Proceeding: a retransmitted INVITE gets the last provisional again.
        (_P, Input.REQUEST): (ServerTransaction._resend_response, _P),
        (_P, Input.ACK): (Transaction._ignore, _P),
        (_P, Input.TU_1XX): (ServerTransaction._send_response, _P),
        (_P, Input.TU_2XX): (_accept, _A),  # RFC 6026 §8.5
        (_P, Input.TU_300_699): (_complete, _X),
        (_P, Input.TRANSPORT_ERROR): (Transaction._fail, _T),
        # §17.2.1: Completed: retransmit the final until the ACK or timer H.
        (_X, Input.REQUEST): (ServerTransaction._resend_response, _X),
        (_X, Input.ACK): (_confirm, _F),
        (_X, Input.TIMER_G): (_retransmit, _X),
        (_X, Input.TIMER_H): (Transaction._timeout, _T),
        (_X, Input.TRANSPORT_ERROR): (Transaction._fail, _T),
        # §17.2.1: Confirmed absorbs ACK (and INVITE) retransmissions until timer I.
        (_F, Input.REQUEST): (Transaction._ignore, _F),
        (_F, Input.ACK): (Transaction._ignore, _F),
        (_F, Input.TIMER_I): (Transaction._terminate, _T),
        (_F, Input.TRANSPORT_ERROR): (Transaction._ignore, _F),
        # RFC 6026 §8.7: Accepted absorbs INVITEs, passes ACKs and more 2xx, until L.
        (_A, Input.REQUEST): (Transaction._ignore, _A),
        (_A, Input.ACK): (Transaction._deliver, _A),
        (_A, Input.TU_2XX): (_send_2xx, _A),
        (_A, Input.TIMER_L): (Transaction._terminate, _T),
        (_A, Input.TRANSPORT_ERROR): (_transport_failed, _A),
    }
    STATE_TIMERS = {
        _P: frozenset(),
        _X: frozenset("GH"),
        _F: frozenset("I"),
        _A: frozenset("L"),
    }
    del _P, _X, _F, _A, _T


class NonInviteServerTransaction(ServerTransaction):
    """§17.2.2: Trying, Proceeding, Completed."""

    __slots__ = ()

    def __init__(
        self,
        request: Request,
        *,
        config: TimerConfig | None = None,
        reliable: bool = False,
        dest: object = None,
    ) -> None:
        if request.method in ("INVITE", "ACK"):
            raise LocalProtocolError(f"{request.method} has no non-INVITE transaction")
        super().__init__(request, State.TRYING, config=config, reliable=reliable, dest=dest)

    def start(self, now: float) -> list[Action]:
        """Pass the request up to the TU (§17.2.2)."""
        if self._scheduled is not None or self.last_response is not None:
            raise LocalProtocolError("transaction already started")
        return [Deliver(self.request)]

    def _classify(self, status: int) -> Input:
        return Input.TU_1XX if status < 200 else Input.TU_FINAL

    def _complete(self, now: float, msg: Message | None) -> list[Action]:
        # §17.2.2: send the final response, start J (64*T1, or 0 when reliable).
        self.timers["J"] = now + (0.0 if self.reliable else self.config.b)
        return self._send_response(now, msg)

    _TR, _P, _X, _T = State.TRYING, State.PROCEEDING, State.COMPLETED, State.TERMINATED
    TABLE = {
        # §17.2.2: Trying: retransmissions are discarded.
        (_TR, Input.REQUEST): (Transaction._ignore, _TR),
        (_TR, Input.TU_1XX): (ServerTransaction._send_response, _P),
        (_TR, Input.TU_FINAL): (_complete, _X),
        (_TR, Input.TRANSPORT_ERROR): (Transaction._fail, _T),
        # §17.2.2: Proceeding: retransmissions get the last provisional again.
        (_P, Input.REQUEST): (ServerTransaction._resend_response, _P),
        (_P, Input.TU_1XX): (ServerTransaction._send_response, _P),
        (_P, Input.TU_FINAL): (_complete, _X),
        (_P, Input.TRANSPORT_ERROR): (Transaction._fail, _T),
        # §17.2.2: Completed: retransmissions get the final again, until J.
        (_X, Input.REQUEST): (ServerTransaction._resend_response, _X),
        (_X, Input.TIMER_J): (Transaction._terminate, _T),
        (_X, Input.TRANSPORT_ERROR): (Transaction._fail, _T),
    }
    STATE_TIMERS = {
        _TR: frozenset(),
        _P: frozenset(),
        _X: frozenset("J"),
    }
    del _TR, _P, _X, _T


# ---------------------------------------------------------------------------- table


class TransactionTable:
    """Transactions by key, with one heap of timer deadlines across all of them.

    Transactions added here report their timer changes themselves; terminated ones
    leave the table on their own.  Sans-IO: the glue asks ``next_deadline()`` and
    calls ``expire(now)`` when it is due.
    """

    __slots__ = ("_heap", "_seq", "_txns")

    def __init__(self) -> None:
        self._txns: dict[ClientKey | ServerKey, Transaction] = {}
        self._heap: list[tuple[float, int, Transaction]] = []
        self._seq = 0

    def __len__(self) -> int:
        return len(self._txns)

    def __contains__(self, key: object) -> bool:
        return key in self._txns

    def get(self, key: ClientKey | ServerKey) -> Transaction | None:
        return self._txns.get(key)

    def add(self, txn: Transaction) -> None:
        """Register ``txn`` (before or after start); its key must be new."""
        if txn.key in self._txns:
            raise LocalProtocolError(f"duplicate transaction {txn.key}")
        self._txns[txn.key] = txn
        txn._table = self
        self._reschedule(txn)

    def remove(self, txn: Transaction) -> None:
        """Forget ``txn`` (its timers stop being reported)."""
        if self._txns.get(txn.key) is txn:
            del self._txns[txn.key]
        txn._table = None

    def _reschedule(self, txn: Transaction) -> None:
        if txn.state is State.TERMINATED:
            self.remove(txn)
            return
        deadline = txn.next_deadline()
        if deadline != txn._scheduled:
            txn._scheduled = deadline
            if deadline is not None:
                self._seq += 1
                heapq.heappush(self._heap, (deadline, self._seq, txn))

    def _live(self, entry: tuple[float, int, Transaction]) -> bool:
        deadline, _seq, txn = entry
        return txn._table is self and txn._scheduled == deadline

    def next_deadline(self) -> float | None:
        """The earliest timer deadline of any transaction, or None."""
        heap = self._heap
        while heap and not self._live(heap[0]):
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def expire(self, now: float) -> list[tuple[Transaction, Action]]:
        """Fire every timer due at ``now``; return each action with its transaction."""
        out: list[tuple[Transaction, Action]] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            if not self._live(entry):
                continue
            txn = entry[2]
            txn._scheduled = None
            out.extend((txn, action) for action in txn.on_timer(now))
        return out

    def match_response(self, response: Response) -> ClientTransaction | None:
        """The client transaction a response belongs to (§17.1.3), or None (stray)."""
        try:
            key = client_key(response)
        except SipParseError:
            return None
        txn = self._txns.get(key)
        return txn if isinstance(txn, ClientTransaction) else None

    def match_request(self, request: Request) -> ServerTransaction | None:
        """The server transaction a request belongs to (§17.2.3), or None.

        An ACK that matches no transaction (the ACK for a 2xx) returns None and goes
        to the TU directly.
        """
        try:
            key = server_key(request)
        except SipParseError:
            return None
        txn = self._txns.get(key)
        if not isinstance(txn, ServerTransaction):
            return None
        if key.branch is None and request.method == "ACK" and request.to_tag != txn.to_tag:
            # §17.2.3: an RFC 2543 ACK matches only with the To tag we sent.
            return None
        return txn

    def match_cancel(self, cancel: Request) -> InviteServerTransaction | None:
        """The INVITE server transaction a CANCEL targets (§9.2), or None."""
        try:
            key = cancel_key(cancel)
        except SipParseError:
            return None
        txn = self._txns.get(key)
        return txn if isinstance(txn, InviteServerTransaction) else None
