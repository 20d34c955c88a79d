"""The charging engine: every live Ro session of the process, joined to calls and Diameter.

Glue between three parties, each behind an interface defined here or given in:

* the call side (:class:`CallControl`: admit, reject or end a call by its A-leg Call-ID),
  which reports call events with :meth:`ChargingEngine.start_call`, ``call_answered`` and
  ``call_ended``;
* the Diameter client (:class:`DiameterClient`: ``send_request`` returning a Deferred
  answer), to which it hands CCRs built by :mod:`b2bua.charging.messages` and from which it
  takes Re-Auth-Requests and Abort-Session-Requests (:meth:`ChargingEngine.handle_rar`,
  :meth:`ChargingEngine.handle_asr`);
* the one timer wheel (:class:`~b2bua.timers.driver.WheelDriver`): each session has one
  wheel timer, set to :meth:`RoSession.next_deadline` after every input and cancelled
  when the session finishes.

The decisions are :class:`~b2bua.charging.session.RoSession`'s; this module carries them
out. What it adds:

* a call charged by several routes (orig and term) is admitted once all its sessions
  allowed it, and refused or ended as a whole when one of them does; with
  ``single_ro_session_per_dialog`` a call has one session at most;
* RFC 4006 §5.5 and RFC 6733 §8.5: the RAA or ASA goes back before the CCR it triggers,
  so those actions wait for the session's timer, armed for "now";
* a CCR-Termination that failed on every peer is kept in :attr:`pending_terminations` and
  resent (T flag, RFC 6733 §3) every ``termination_retry_interval`` seconds, so the
  seconds used are reported however long the OCS is away;
* a media change (:meth:`ChargingEngine.media_changed`) that moves a call to another
  Rating-Group (video added or removed) is one CCR-U reporting the old group and asking on
  the new, sent at once or after the request in flight; a refusal ends the call;
* nothing escapes to the reactor: every callback ends in ``log.failure``;
* :meth:`ChargingEngine.call_figures` tells what a call's sessions stand at (Session-Ids,
  seconds granted and reported, each one's last Result-Code) for CDRs and the operator;
* persistence (``b2bua.store.recovery``): listeners hear of every change a restart needs
  (:meth:`ChargingEngine.add_listener`); :meth:`ChargingEngine.snapshot_call` and
  :meth:`ChargingEngine.snapshot_termination` give the state, :meth:`ChargingEngine.load_call`
  / :meth:`ChargingEngine.install_call` and :meth:`ChargingEngine.restore_termination`
  put it back.

Failures of ``send_request`` are mapped onto :class:`RequestFailure` by exception class
name (``RequestTimeout``, ``NoPeerAvailable``, ``PeerDown``, ``InvalidAnswer``), so this
module does not import the Diameter service; pass ``classify`` to map them otherwise.
Slow-answer logging (``cdp_event_latency``) belongs to the Diameter layer.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import typing
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

from twisted.internet.defer import Deferred, fail
from twisted.python.failure import Failure

from b2bua.charging.messages import (
    CauseCode,
    ChargingContext,
    MalformedAnswer,
    SessionIdGenerator,
    TerminationCause,
    Timestamps,
    build_ccr,
    mark_retransmission,
    parse_cca,
)
from b2bua.charging.session import (
    Action,
    AdmitCall,
    ChargingConfig,
    ContinueUncharged,
    EndCall,
    EndReason,
    Finished,
    RejectCall,
    RequestFailure,
    RequestType,
    ResultCode,
    RoSession,
    SendCcr,
)
from b2bua.charging.stats import ChargingStats
from b2bua.diameter.dictionary import (
    APP_CREDIT_CONTROL,
    CMD_ABORT_SESSION,
    CMD_RE_AUTH,
    DIAMETER_UNABLE_TO_COMPLY,
)
from b2bua.diameter.errors import DecodeError
from b2bua.diameter.message import Message, decode, make_answer
from b2bua.logs import logger
from b2bua.timers.driver import WheelDriver
from b2bua.timers.wheel import TimerHandle

__all__ = [
    "CallControl",
    "CallFigures",
    "ChargingEngine",
    "DiameterClient",
    "HandlerRegistry",
    "PendingTermination",
    "RoIdentity",
    "SessionFigures",
    "classify_failure",
    "reason_header",
]

log = logger(__name__)


class DiameterClient(Protocol):
    """What the engine needs from the Diameter service."""

    def send_request(
        self, message: Message, *, destination_host: str | None = None
    ) -> Deferred[Message]:
        """Send ``message``; the Deferred fires with the answer or fails (Tx, no peer...)."""
        ...


class CallControl(Protocol):
    """What the engine asks of the call side; every call is named by its A-leg Call-ID."""

    def admit(self, call_id: str) -> None:
        """Charging allows the call: the B-leg INVITE may leave."""
        ...

    def reject(self, call_id: str, status: int, reason: str, reason_header: str) -> None:
        """Answer the caller ``status reason`` with a Reason header (RFC 3326)."""
        ...

    def end(self, call_id: str, reason: str, reason_header: str) -> None:
        """Tear the call down on both legs (BYE, or CANCEL if not answered yet)."""
        ...


Handler = Callable[[Message], Message]


class HandlerRegistry(Protocol):
    """Where the RAR and ASR handlers are registered (the Diameter service)."""

    def register_handler(self, app_id: int, command_code: int, handler: Handler) -> None:
        """Route requests of ``command_code`` in ``app_id`` to ``handler``."""
        ...


Classifier = Callable[[BaseException], RequestFailure]

_FAILURES_BY_NAME: dict[str, RequestFailure] = {
    "RequestTimeout": RequestFailure.TX_TIMEOUT,
    "TimeoutError": RequestFailure.TX_TIMEOUT,
    "NoPeerAvailable": RequestFailure.NO_PEER,
    "PeerDown": RequestFailure.PEER_DOWN,
    "ConnectionLost": RequestFailure.PEER_DOWN,
    "InvalidAnswer": RequestFailure.TEMPORARY_ERROR,
}


def classify_failure(error: BaseException) -> RequestFailure:
    """The :class:`RequestFailure` of a failed ``send_request``, by exception class name.

    The most derived known name wins; anything else counts as a failure to send.
    """
    for cls in type(error).__mro__:
        kind = _FAILURES_BY_NAME.get(cls.__name__)
        if kind is not None:
            return kind
    return RequestFailure.NO_PEER


def reason_header(status: int, text: str) -> str:
    """A Reason header value (RFC 3326) carrying a SIP status and a text."""
    quoted = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'SIP;cause={status};text="{quoted}"'


@dataclass(frozen=True, slots=True)
class RoIdentity:
    """Origin and destination of this node's CCRs (from ``[diameter]``)."""

    origin_host: str
    origin_realm: str
    destination_realm: str
    destination_host: str | None = None  # a fixed OCS; None: routed by realm


#: SIP cause in the Reason header of a call the session ends.
_END_STATUS: dict[EndReason, int] = {
    EndReason.CREDIT_EXHAUSTED: 402,
    EndReason.ABORTED: 403,
    EndReason.AUTH_EXPIRED: 403,
    EndReason.CHARGING_FAILURE: 500,
}

_END_TERMINATION: dict[EndReason, TerminationCause] = {
    EndReason.CREDIT_EXHAUSTED: TerminationCause.SERVICE_NOT_PROVIDED,
    EndReason.ABORTED: TerminationCause.ADMINISTRATIVE,
    EndReason.AUTH_EXPIRED: TerminationCause.AUTH_EXPIRED,
    EndReason.CHARGING_FAILURE: TerminationCause.LINK_BROKEN,
}

#: Result-Codes of an answer to a parked CCR-T that mean "try again later".
_TRY_AGAIN = frozenset(
    {ResultCode.UNABLE_TO_DELIVER, ResultCode.TOO_BUSY, ResultCode.LOOP_DETECTED}
)


def _context_snapshot(context: ChargingContext) -> dict[str, Any]:
    """A charging context as JSON-able values (enums by value, tuples as lists)."""
    data: dict[str, Any] = {}
    for item in dataclasses.fields(context):
        value = getattr(context, item.name)
        if isinstance(value, Enum):
            value = value.value
        elif isinstance(value, tuple):
            value = list(value)
        data[item.name] = value
    return data


@functools.cache
def _context_fields() -> tuple[tuple[str, bool, Callable[[Any], Any] | None], ...]:
    """Each ChargingContext field: name, whether it is required, how to rebuild its value."""
    hints = typing.get_type_hints(ChargingContext)
    fields: list[tuple[str, bool, Callable[[Any], Any] | None]] = []
    for item in dataclasses.fields(ChargingContext):
        required = item.default is dataclasses.MISSING and (
            item.default_factory is dataclasses.MISSING
        )
        hint = hints[item.name]
        convert: Callable[[Any], Any] | None = None
        for kind in typing.get_args(hint) or (hint,):
            if isinstance(kind, type) and issubclass(kind, Enum):
                convert = kind
                break
            if kind is tuple or typing.get_origin(kind) is tuple:
                convert = tuple
                break
        fields.append((item.name, required, convert))
    return tuple(fields)


def _context_restore(data: dict[str, Any]) -> ChargingContext:
    """The context of :func:`_context_snapshot`; a field missing from ``data`` keeps its
    default (a record written before the field existed), one without a default is an error.
    """
    values: dict[str, Any] = {}
    for name, required, convert in _context_fields():
        if name not in data:
            if required:
                raise KeyError(f"charging context without {name}")
            continue
        value = data[name]
        values[name] = value if value is None or convert is None else convert(value)
    return ChargingContext(**values)


def _opt_context_snapshot(context: ChargingContext | None) -> dict[str, Any] | None:
    return None if context is None else _context_snapshot(context)


def _opt_context_restore(data: dict[str, Any] | None) -> ChargingContext | None:
    return None if data is None else _context_restore(data)


@dataclass(eq=False, slots=True)
class _Live:
    """One live Ro session and what the engine knows around it."""

    session_id: str
    call: _Call
    context: ChargingContext
    session: RoSession
    timer: TimerHandle | None = None
    answered_at: float | None = None
    end_method: str = "BYE"  # SIP-Method of the CCR-T
    cause_code: int | None = None
    termination_cause: TerminationCause | None = None
    allowed: bool = False  # the session sent AdmitCall
    deferred: list[Action] = field(default_factory=list)  # wait for the RAA/ASA to go
    token: int = 0  # which send_request the in-flight answer belongs to
    in_flight: tuple[SendCcr, Message] | None = None  # the request awaiting its answer
    # CC-Request-Number and End-to-End Id of the last CCR: only the id, not the message,
    # is kept for the call's life (a CCR's AVPs are about 4 KiB of objects per call).
    last_sent: tuple[int, int] | None = None
    recorded: bool = False  # listeners were told about it while it was worth a snapshot
    media_switch: ChargingContext | None = None  # a media change's context, CCR-U not sent yet
    switched_from: ChargingContext | None = None  # what the switch CCR-U reports used units of
    switch_number: int | None = None  # CC-Request-Number of that CCR-U
    result_code: int | None = None  # of the last CCA the session read (the CDR's figure)

    def snapshot(self) -> dict[str, Any]:
        """The session and its charging context, as JSON-able values."""
        return {
            "session_id": self.session_id,
            "context": _context_snapshot(self.context),
            "session": self.session.snapshot(),
            "answered_at": self.answered_at,
            "end_method": self.end_method,
            "cause_code": self.cause_code,
            "termination_cause": None
            if self.termination_cause is None
            else int(self.termination_cause),
            "allowed": self.allowed,
            "media_switch": _opt_context_snapshot(self.media_switch),
            "switched_from": _opt_context_snapshot(self.switched_from),
            "switch_number": self.switch_number,
            "result_code": self.result_code,
        }

    @classmethod
    def restore(
        cls,
        data: dict[str, Any],
        call: _Call,
        config: ChargingConfig,
        stats: ChargingStats,
    ) -> _Live:
        """The live session of a :meth:`snapshot` (KeyError, TypeError, ValueError if bad)."""
        answered_at = data["answered_at"]
        cause_code = data["cause_code"]
        termination = data["termination_cause"]
        switch_number = data.get("switch_number")
        result_code = data.get("result_code")  # absent from records written before it
        return cls(
            str(data["session_id"]),
            call,
            _context_restore(data["context"]),
            RoSession.restore(data["session"], config, stats=stats),
            answered_at=None if answered_at is None else float(answered_at),
            end_method=str(data["end_method"]),
            cause_code=None if cause_code is None else int(cause_code),
            termination_cause=None if termination is None else TerminationCause(termination),
            allowed=bool(data["allowed"]),
            recorded=True,
            media_switch=_opt_context_restore(data.get("media_switch")),
            switched_from=_opt_context_restore(data.get("switched_from")),
            switch_number=None if switch_number is None else int(switch_number),
            result_code=None if result_code is None else int(result_code),
        )


@dataclass(eq=False, slots=True)
class _Call:
    """The sessions of one call and what its call side has been told."""

    call_id: str
    sessions: list[_Live] = field(default_factory=list)
    admitted: bool = False  # CallControl.admit was called
    closed: bool = False  # rejected or ended (by us or by the call side): no more verdicts


@dataclass(frozen=True, slots=True)
class SessionFigures:
    """Where one Ro session of a call stands, for CDRs and the operator."""

    session_id: str
    granted: int  # seconds granted so far, every CCA's grant counted from its report
    used: int  # seconds reported to the OCS so far
    over: bool  # the CCR-T left (or the session ended without one): ``used`` is final
    result_code: int | None  # Result-Code of the last CCA; None before the first


@dataclass(frozen=True, slots=True)
class CallFigures:
    """What charging knows of one call: its live Ro sessions, in the order opened."""

    sessions: tuple[SessionFigures, ...] = ()

    @property
    def session_ids(self) -> list[str]:
        return [figures.session_id for figures in self.sessions]

    @property
    def billed_seconds(self) -> int | None:
        """Seconds the sessions reported, once every one is over; None before, or if none."""
        if not self.sessions or not all(figures.over for figures in self.sessions):
            return None
        return sum(figures.used for figures in self.sessions)

    @property
    def result_codes(self) -> list[int | None]:
        """Each session's last Result-Code, in the order of :attr:`session_ids`."""
        return [figures.result_code for figures in self.sessions]


@dataclass(eq=False, slots=True)
class PendingTermination:
    """A CCR-T no OCS answered, kept to be sent again (T flag, no Destination-Host)."""

    session_id: str
    call_id: str
    message: Message
    attempts: int = 0  # resends so far
    timer: TimerHandle | None = None


class ChargingEngine:
    """Every live Ro session of the process (see the module docstring)."""

    def __init__(
        self,
        *,
        client: DiameterClient,
        calls: CallControl,
        driver: WheelDriver,
        identity: RoIdentity,
        config: ChargingConfig | None = None,
        stats: ChargingStats | None = None,
        session_ids: Callable[[], str] | None = None,
        single_ro_session_per_dialog: bool = False,
        classify: Classifier = classify_failure,
        termination_retry_interval: float = 30.0,
        termination_retry_limit: int | None = None,
    ) -> None:
        if termination_retry_interval <= 0:
            raise ValueError("termination_retry_interval must be positive")
        self._client = client
        self._calls = calls
        self._driver = driver
        self._identity = identity
        self._config = config if config is not None else ChargingConfig()
        self.stats = stats if stats is not None else ChargingStats()
        self._session_ids = session_ids or SessionIdGenerator(
            identity.origin_host, driver.seconds()
        )
        self._single = single_ro_session_per_dialog
        self._classify = classify
        self._retry_interval = termination_retry_interval
        self._retry_limit = termination_retry_limit
        self._sessions: dict[str, _Live] = {}
        self._by_call: dict[str, _Call] = {}
        self._pending_terminations: list[PendingTermination] = []
        self._queue: deque[tuple[_Live, Action]] = deque()
        self._draining = False
        self._listeners: list[Callable[[str, str], None]] = []

    # -- figures ---------------------------------------------------------------------------

    @property
    def active_sessions(self) -> int:
        """Ro sessions open or opening now (a gauge: it goes down when they finish)."""
        return len(self._sessions)

    @property
    def active_calls(self) -> int:
        """Calls with at least one live Ro session."""
        return len(self._by_call)

    @property
    def pending_terminations(self) -> list[PendingTermination]:
        """CCR-Ts waiting to be sent again, oldest first."""
        return list(self._pending_terminations)

    def session_ids_of(self, call_id: str) -> list[str]:
        """The Session-Ids of a call's live Ro sessions."""
        call = self._by_call.get(call_id)
        return [] if call is None else [live.session_id for live in call.sessions]

    def call_figures(self, call_id: str) -> CallFigures:
        """The figures of each live Ro session of a call (none for a call not charged).

        Read right after :meth:`call_ended`, each session has sent its CCR-T (unless one
        waits behind a request in flight): ``used`` is then what the OCS is told.
        """
        call = self._by_call.get(call_id)
        if call is None:
            return CallFigures()
        return CallFigures(
            tuple(
                SessionFigures(
                    live.session_id,
                    live.session.granted_seconds,
                    live.session.billed_seconds,
                    live.session.finished or live.session.termination_sent,
                    live.result_code,
                )
                for live in call.sessions
            )
        )

    # -- persistence -----------------------------------------------------------------------

    def add_listener(self, listener: Callable[[str, str], None]) -> None:
        """Call ``listener(call_id, key)`` after every change a restart needs.

        ``key`` is the A-leg Call-ID (the context's User-Session-Id) for a call's
        sessions, ``"ccrt:<Session-Id>"`` for a kept CCR-T.
        """
        self._listeners.append(listener)

    def _changed(self, call_id: str, key: str) -> None:
        for listener in list(self._listeners):
            try:
                listener(call_id, key)
            except Exception:
                log.failure("change listener failed for {key}", key=key)

    def _session_changed(self, live: _Live) -> None:
        """Tell the listeners, from the grant of the CCA-I to the end (not before)."""
        if not self._listeners:
            return
        if live.session.persistent:
            live.recorded = True
        elif not live.recorded:
            return
        self._changed(live.call.call_id, live.context.call_id)

    def keeps(self, call_id: str) -> bool:
        """Whether the call has a session worth a snapshot (cheaper than snapshot_call)."""
        call = self._by_call.get(call_id)
        return call is not None and any(live.session.persistent for live in call.sessions)

    def persistent_calls(self) -> dict[str, str]:
        """Key (A-leg Call-ID) -> call id of every call with a session worth a snapshot."""
        return {
            live.context.call_id: call.call_id
            for call in self._by_call.values()
            for live in call.sessions
            if live.session.persistent
        }

    def snapshot_call(self, call_id: str) -> dict[str, Any] | None:
        """The call's sessions the OCS holds open, or None when there are none."""
        call = self._by_call.get(call_id)
        if call is None:
            return None
        sessions = [live.snapshot() for live in call.sessions if live.session.persistent]
        if not sessions:
            return None
        return {
            "call_id": call.call_id,
            "admitted": call.admitted,
            "closed": call.closed,
            "sessions": sessions,
        }

    def load_call(self, data: dict[str, Any]) -> _Call:
        """Sessions of :meth:`snapshot_call`, not installed yet (errors leave no state).

        Raises KeyError, TypeError or ValueError when ``data`` is bad or one of its
        sessions (or the call) is already live.
        """
        call = _Call(str(data["call_id"]), admitted=bool(data["admitted"]))
        call.closed = bool(data["closed"])
        if call.call_id in self._by_call:
            raise ValueError(f"call {call.call_id} already has live sessions")
        for item in data["sessions"]:
            live = _Live.restore(item, call, self._config, self.stats)
            if live.session_id in self._sessions or any(
                p.session_id == live.session_id for p in self._pending_terminations
            ):
                raise ValueError(f"session {live.session_id} is already live")
            call.sessions.append(live)
        if not call.sessions:
            raise ValueError("a charged call without sessions")
        return call

    def install_call(
        self, call: _Call, *, end_at: float | None = None, cause: str = "restored"
    ) -> None:
        """Make a :meth:`load_call` result live and act on it (:meth:`RoSession.resume`).

        ``end_at``: the call is over (not restorable, or ended on adoption) at that time.
        """
        self._by_call[call.call_id] = call
        for live in call.sessions:
            self._sessions[live.session_id] = live
        if end_at is not None:
            call.closed = True
        now = self._now()
        for live in list(call.sessions):
            try:
                self._feed(live, live.session.resume(now, end_at=end_at, cause=cause))
            except Exception:
                log.failure("session {session_id}: not resumed", session_id=live.session_id)

    def snapshot_termination(self, session_id: str) -> dict[str, Any] | None:
        """A kept CCR-T (:attr:`pending_terminations`) as JSON-able values, or None."""
        for pending in self._pending_terminations:
            if pending.session_id == session_id:
                return {
                    "session_id": pending.session_id,
                    "call_id": pending.call_id,
                    "message": base64.b64encode(pending.message.encode()).decode("ascii"),
                    "attempts": pending.attempts,
                }
        return None

    def restore_termination(self, data: dict[str, Any]) -> None:
        """Keep a CCR-T of :meth:`snapshot_termination` and resend it now (T flag).

        Raises KeyError, TypeError, ValueError or DecodeError, keeping nothing, if bad.
        """
        message = decode(base64.b64decode(str(data["message"]), validate=True))
        session_id = str(data["session_id"])
        if message.session_id != session_id:
            raise ValueError("the kept CCR-T belongs to another session")
        if session_id in self._sessions or self.snapshot_termination(session_id) is not None:
            raise ValueError(f"session {session_id} is already live")
        pending = PendingTermination(
            session_id, str(data["call_id"]), mark_retransmission(message), int(data["attempts"])
        )
        self._pending_terminations.append(pending)
        pending.timer = self._driver.schedule(self._now(), self._resend_termination, pending)

    def forget_call(self, call_id: str) -> list[str]:
        """Drop a call's Ro sessions here without CCR-T; returns their Session-Ids.

        For a call another instance adopted (``b2bua.store``): the survivor sends its
        CCR-U and CCR-T now. Timers stop, answers to requests in flight are ignored, and
        neither the call side nor the listeners hear of it.
        """
        call = self._by_call.pop(call_id, None)
        if call is None:
            return []
        call.closed = True
        for live in call.sessions:
            if live.timer is not None:
                live.timer.cancel()
                live.timer = None
            live.deferred.clear()
            live.in_flight = None
            if self._sessions.get(live.session_id) is live:
                del self._sessions[live.session_id]
        return [live.session_id for live in call.sessions]

    def forget_termination(self, session_id: str) -> bool:
        """Drop a kept CCR-T here without sending it (another instance adopted it)."""
        for pending in self._pending_terminations:
            if pending.session_id == session_id:
                if pending.timer is not None:
                    pending.timer.cancel()
                    pending.timer = None
                self._pending_terminations.remove(pending)
                return True
        return False

    def register_handlers(self, registry: HandlerRegistry) -> None:
        """Register :meth:`handle_rar` and :meth:`handle_asr` for the Ro application."""
        registry.register_handler(APP_CREDIT_CONTROL, CMD_RE_AUTH, self.handle_rar)
        registry.register_handler(APP_CREDIT_CONTROL, CMD_ABORT_SESSION, self.handle_asr)

    # -- call events -----------------------------------------------------------------------

    def start_call(
        self,
        call_id: str,
        context: ChargingContext,
        *,
        reservation_units: int | None = None,
    ) -> str | None:
        """A charging route matched the INVITE: open a session and send its CCR-I.

        The verdict comes later through :class:`CallControl` (admit or reject), once every
        session of the call has its CCA-I. Returns the new Session-Id, or the existing one
        when ``single_ro_session_per_dialog`` keeps a second session from opening, or None
        when the call was already refused or ended.
        """
        try:
            call = self._by_call.get(call_id)
            if call is not None and call.closed:
                return None
            if call is not None and self._single and call.sessions:
                log.debug(
                    "call {call_id}: already charged by {session_id}; one Ro session per call",
                    call_id=call_id,
                    session_id=call.sessions[0].session_id,
                )
                return call.sessions[0].session_id
            session = RoSession(self._config, reservation_units=reservation_units, stats=self.stats)
            session_id = self._session_ids()
            if call is None:
                call = self._by_call[call_id] = _Call(call_id)
            live = _Live(session_id, call, context, session)
            call.sessions.append(live)
            self._sessions[session_id] = live
            self._feed(live, session.start(self._now()))
            return session_id
        except Exception:
            log.failure("call {call_id}: charging could not start", call_id=call_id)
            status, text = self._config.error_reject
            self._notify(self._calls.reject, call_id, status, text, reason_header(status, text))
            return None

    def call_answered(self, call_id: str, now: float | None = None) -> None:
        """The 200 OK: talk time, and so charged time, counts from ``now``."""
        try:
            call = self._by_call.get(call_id)
            if call is None:
                return
            at = self._now() if now is None else now
            for live in list(call.sessions):
                if live.answered_at is None:
                    live.answered_at = at
                self._feed(live, live.session.on_call_answered(at))
        except Exception:
            log.failure("call {call_id}: answer not handled", call_id=call_id)

    def media_changed(
        self, call_id: str, retarget: Callable[[ChargingContext], ChargingContext]
    ) -> None:
        """The call's media changed (a re-INVITE or UPDATE agreed, a late offer answered).

        A session whose Rating-Group ``retarget`` changes reports the seconds used so far on
        the old one and asks for units on the new one in one CCR-U with two
        Multiple-Services-Credit-Control entries (TS 32.299 RATING_CONDITION_CHANGE), at
        once, or as soon as the request pending now is answered; the new grant then drives
        the session's timer.
        """
        try:
            call = self._by_call.get(call_id)
            if call is None:
                return
            for live in list(call.sessions):
                target = retarget(live.context)
                if target.rating_group == live.context.rating_group:
                    live.media_switch = None  # changed back before the CCR-U could go
                    continue
                live.media_switch = target
                self._media_step(live)
        except Exception:
            log.failure("call {call_id}: media change not handled", call_id=call_id)

    def _media_step(self, live: _Live) -> None:
        """Forget a settled rating switch; send the CCR-U of a waiting one if it can go."""
        if live.switch_number is not None and (
            live.in_flight is None or live.in_flight[0].request_number != live.switch_number
        ):
            live.switched_from = live.switch_number = None
        target = live.media_switch
        if target is None or live.session.finished or live.switch_number is not None:
            return
        number = live.session.next_request_number
        sent, actions = live.session.on_rating_change(self._now())
        if not sent:
            return
        log.info(
            "session {session_id}: rating group {old} -> {new}",
            session_id=live.session_id,
            old=live.context.rating_group,
            new=target.rating_group,
        )
        live.media_switch = None
        live.switched_from, live.context, live.switch_number = live.context, target, number
        self._feed(live, actions)

    def call_ended(
        self,
        call_id: str,
        cause: str = "caller or callee hung up",
        *,
        now: float | None = None,
        sip_method: str = "BYE",
        cause_code: int | None = None,
    ) -> None:
        """The call is over (BYE, CANCEL, a final failure response): send or queue CCR-T.

        ``sip_method`` is the request that ended it (the CCR-T's SIP-Method); ``cause_code``
        the TS 32.299 Cause-Code, e.g. the SIP status of a failed setup (default: 0 for an
        answered call, 2 "unsuccessful session setup" otherwise).
        """
        try:
            call = self._by_call.get(call_id)
            if call is None:
                return
            call.closed = True
            at = self._now() if now is None else now
            for live in list(call.sessions):
                live.end_method = sip_method
                if live.cause_code is None:
                    live.cause_code = cause_code
                if live.termination_cause is None:
                    live.termination_cause = TerminationCause.LOGOUT
                self._feed(live, live.session.on_call_ended(at, cause))
        except Exception:
            log.failure("call {call_id}: end not handled", call_id=call_id)

    # -- Diameter requests from the OCS ---------------------------------------------------

    def handle_rar(self, request: Message) -> Message:
        """Re-Auth-Request (RFC 4006 §5.5): 2002 and a CCR-U, 2001 if one is pending, 5002."""
        try:
            live = self._session_of(request)
            if live is None:
                return self._answer(request, ResultCode.UNKNOWN_SESSION_ID)
            code, actions = live.session.on_reauth(self._now())
            self._defer(live, actions)
            return self._answer(request, code)
        except Exception:
            log.failure("Re-Auth-Request not handled")
            return self._answer(request, DIAMETER_UNABLE_TO_COMPLY)

    def handle_asr(self, request: Message) -> Message:
        """Abort-Session-Request (RFC 6733 §8.5): 2001, end the call, CCR-T; 5002 unknown."""
        try:
            live = self._session_of(request)
            if live is None:
                return self._answer(request, ResultCode.UNKNOWN_SESSION_ID)
            code, actions = live.session.on_abort(self._now())
            self._defer(live, actions)
            return self._answer(request, code)
        except Exception:
            log.failure("Abort-Session-Request not handled")
            return self._answer(request, DIAMETER_UNABLE_TO_COMPLY)

    def _session_of(self, request: Message) -> _Live | None:
        try:
            session_id = request.session_id
        except DecodeError:
            return None
        return self._sessions.get(session_id) if session_id else None

    def _answer(self, request: Message, code: int) -> Message:
        """The RAA/ASA: Session-Id, Result-Code, Origin-Host, Origin-Realm (RFC 6733 §6.2)."""
        identity = self._identity
        try:
            return make_answer(
                request,
                int(code),
                origin_host=identity.origin_host,
                origin_realm=identity.origin_realm,
            )
        except DecodeError:  # an unreadable Session-Id or Proxy-Info: answer without them
            return Message.answer_to(
                request,
                [
                    ("Result-Code", int(code)),
                    ("Origin-Host", identity.origin_host),
                    ("Origin-Realm", identity.origin_realm),
                ],
            )

    # -- carrying out actions -------------------------------------------------------------

    def _now(self) -> float:
        return self._driver.seconds()

    def _feed(self, live: _Live, actions: Iterable[Action]) -> None:
        """Carry out a session's actions in order, then re-arm its timer."""
        if live.deferred:
            live.deferred.extend(actions)  # keep the order behind the waiting ones
        else:
            self._queue.extend((live, action) for action in actions)
            self._drain()
        self._reschedule(live)
        self._session_changed(live)

    def _defer(self, live: _Live, actions: Iterable[Action]) -> None:
        """Carry out ``actions`` from the session's timer, armed for now."""
        live.deferred.extend(actions)
        self._reschedule(live)

    def _drain(self) -> None:
        """Run queued actions one at a time; nested inputs queue theirs behind."""
        if self._draining:
            return
        self._draining = True
        try:
            while self._queue:
                live, action = self._queue.popleft()
                try:
                    self._act(live, action)
                except Exception:
                    log.failure(
                        "session {session_id}: {action!r} failed",
                        session_id=live.session_id,
                        action=action,
                    )
        finally:
            self._draining = False

    def _act(self, live: _Live, action: Action) -> None:
        call = live.call
        if isinstance(action, SendCcr):
            self._send(live, action)
        elif isinstance(action, AdmitCall):
            live.allowed = True
            self._maybe_admit(call)
        elif isinstance(action, RejectCall):
            if live.cause_code is None:
                live.cause_code = action.sip_status
            live.termination_cause = TerminationCause.SERVICE_NOT_PROVIDED
            header = reason_header(action.sip_status, action.reason)
            self._close(call, live, action.sip_status, action.reason, header)
        elif isinstance(action, EndCall):
            if live.cause_code is None:
                live.cause_code = (
                    CauseCode.INTERNAL_ERROR
                    if action.reason is EndReason.CHARGING_FAILURE
                    else None
                )
            live.termination_cause = _END_TERMINATION[action.reason]
            status = _END_STATUS[action.reason]
            header = reason_header(status, str(action.reason))
            self._close(call, live, status, str(action.reason), header)
        elif isinstance(action, ContinueUncharged):
            log.info(
                "call {call_id}: session {session_id} goes on uncharged: {reason}",
                call_id=call.call_id,
                session_id=live.session_id,
                reason=action.reason,
            )
        elif isinstance(action, Finished):
            self._finished(live, action)

    def _maybe_admit(self, call: _Call) -> None:
        """Admit once every session of the call allowed it."""
        if call.admitted or call.closed or not call.sessions:
            return
        if all(live.allowed for live in call.sessions):
            call.admitted = True
            self._notify(self._calls.admit, call.call_id)

    def _close(self, call: _Call, origin: _Live, status: int, reason: str, header: str) -> None:
        """A session refused or ended the call: tell the call side once, end the others.

        A call not admitted yet is refused with ``status``; an admitted one is ended.
        """
        if call.closed:
            return
        call.closed = True
        refused = not call.admitted
        if refused:
            self._notify(self._calls.reject, call.call_id, status, reason, header)
        else:
            self._notify(self._calls.end, call.call_id, reason, header)
        now = self._now()
        for other in list(call.sessions):
            if other is origin:
                continue
            if other.cause_code is None and refused:
                other.cause_code = status
            if other.termination_cause is None:
                other.termination_cause = origin.termination_cause
            self._feed(other, other.session.on_call_ended(now, reason))

    def _finished(self, live: _Live, action: Finished) -> None:
        if live.timer is not None:
            live.timer.cancel()
            live.timer = None
        if self._sessions.get(live.session_id) is live:
            del self._sessions[live.session_id]
        call = live.call
        if live in call.sessions:
            call.sessions.remove(live)
        if not call.sessions and self._by_call.get(call.call_id) is call:
            del self._by_call[call.call_id]
        self._session_changed(live)
        log.debug(
            "session {session_id} of call {call_id} finished, {seconds} s billed",
            session_id=live.session_id,
            call_id=call.call_id,
            seconds=action.billed_seconds,
        )
        self._maybe_admit(call)

    def _notify(self, method: Callable[..., object], *args: object) -> None:
        try:
            method(*args)
        except Exception:
            log.failure("call side failed in {method}{args!r}", method=method, args=args)

    # -- timers ----------------------------------------------------------------------------

    def _reschedule(self, live: _Live) -> None:
        """Keep the session's one wheel timer at its next deadline (now for deferred work)."""
        if live.deferred:
            deadline: float | None = self._now()
        elif live.session.finished or self._sessions.get(live.session_id) is not live:
            deadline = None
        else:
            deadline = live.session.next_deadline()
        timer = live.timer
        if timer is not None and timer.active and timer.deadline == deadline:
            return
        if timer is not None:
            timer.cancel()
            live.timer = None
        if deadline is not None:
            live.timer = self._driver.schedule(deadline, self._on_timer, live)

    def _on_timer(self, live: _Live) -> None:
        live.timer = None
        try:
            deferred, live.deferred = live.deferred, []
            self._queue.extend((live, action) for action in deferred)
            if not live.session.finished:
                self._queue.extend((live, a) for a in live.session.on_timer(self._now()))
            self._drain()
            self._reschedule(live)
            self._session_changed(live)
        except Exception:
            log.failure("session {session_id}: timer failed", session_id=live.session_id)

    # -- requests and answers -------------------------------------------------------------

    def _cause_code(self, live: _Live) -> int:
        if live.cause_code is not None:
            return live.cause_code
        if live.answered_at is not None:
            return CauseCode.NORMAL_END
        return CauseCode.UNSUCCESSFUL_SESSION_SETUP

    def _send(self, live: _Live, send: SendCcr) -> None:
        now = self._now()
        final = send.request_type is RequestType.TERMINATION
        identity = self._identity
        try:
            message = build_ccr(
                live.context,
                send,
                session_id=live.session_id,
                origin_host=identity.origin_host,
                origin_realm=identity.origin_realm,
                destination_realm=identity.destination_realm,
                destination_host=identity.destination_host,
                now=now,
                sip_method=live.end_method if final else "INVITE",
                cause_code=self._cause_code(live) if final else None,
                termination_cause=live.termination_cause if final else None,
                timestamps=Timestamps(live.context.request_time, live.answered_at),
                previous=live.switched_from if send.request_number == live.switch_number else None,
            )
        except Exception:
            log.failure("session {session_id}: CCR not built", session_id=live.session_id)
            self._after_failure(live, send, None, now, RequestFailure.NO_PEER)
            return
        previous = live.last_sent
        if send.retry and previous is not None and previous[0] == send.request_number:
            # RFC 6733 §3, §5.5.4: a retransmission keeps the End-to-End Identifier (if the
            # Diameter service wrote the one it chose onto the request it was given).
            message.end_to_end = previous[1]
        live.token += 1
        token = live.token
        live.in_flight = (send, message)
        destination = None if send.retry else (send.destination_host or identity.destination_host)
        try:
            answer = self._client.send_request(message, destination_host=destination)
        except Exception as error:  # a client that raises instead of failing the Deferred
            answer = fail(error)
        # The Diameter service has set the End-to-End Id it chose (when it took the request).
        live.last_sent = (send.request_number, message.end_to_end)
        answer.addCallbacks(
            self._answered,
            self._send_failed,
            callbackArgs=(live, token),
            errbackArgs=(live, token),
        )
        answer.addErrback(self._unhandled, live.session_id)

    def _current(self, live: _Live, token: int) -> bool:
        """Is this the answer the session waits for (not a stale one)?"""
        return (
            live.token == token
            and live.in_flight is not None
            and self._sessions.get(live.session_id) is live
        )

    def _answered(self, message: Message, live: _Live, token: int) -> None:
        if not self._current(live, token):
            return
        assert live.in_flight is not None
        sent, request = live.in_flight
        live.in_flight = None
        now = self._now()
        try:
            answer = parse_cca(message, rating_group=live.context.rating_group)
            if answer.request_number not in (None, sent.request_number):
                raise MalformedAnswer(
                    f"CC-Request-Number {answer.request_number}, expected {sent.request_number}"
                )
        except MalformedAnswer as error:
            log.warn(
                "session {session_id}: unusable CCA: {error}",
                session_id=live.session_id,
                error=error,
            )
            self._after_failure(live, sent, request, now, RequestFailure.TEMPORARY_ERROR)
            return
        live.result_code = answer.result_code
        actions = live.session.on_answer(now, answer)
        code = answer.result_code
        if (
            sent.request_number == live.switch_number
            and not 2000 <= code < 3000
            and code not in _TRY_AGAIN
            and code != ResultCode.CREDIT_CONTROL_NOT_APPLICABLE
        ):
            # The new rating group got nothing, the old one's units were given back.
            actions += live.session.on_service_refused(now)
        if answer.result_code in _TRY_AGAIN:  # RFC 4006 §7: answered, but not by an OCS
            self._park_if_given_up(live, sent, request, actions)
        self._feed(live, actions)
        self._media_step(live)

    def _send_failed(self, failure: Failure, live: _Live, token: int) -> None:
        if not self._current(live, token):
            return
        assert live.in_flight is not None
        sent, request = live.in_flight
        live.in_flight = None
        error = failure.value
        kind = self._classify(error) if error is not None else RequestFailure.NO_PEER
        log.warn(
            "session {session_id}: CCR {number} failed: {kind} ({error})",
            session_id=live.session_id,
            number=sent.request_number,
            kind=kind.name,
            error=error,
        )
        self._after_failure(live, sent, request, self._now(), kind)

    def _after_failure(
        self,
        live: _Live,
        sent: SendCcr,
        request: Message | None,
        now: float,
        kind: RequestFailure,
    ) -> None:
        actions = live.session.on_request_failed(now, kind)
        self._park_if_given_up(live, sent, request, actions)
        self._feed(live, actions)
        self._media_step(live)

    def _park_if_given_up(
        self, live: _Live, sent: SendCcr, request: Message | None, actions: list[Action]
    ) -> None:
        """A CCR-T the session gave up on (no peer took it) is kept to be sent again."""
        if (
            request is None
            or sent.request_type is not RequestType.TERMINATION
            or not live.session.finished
            or any(isinstance(action, SendCcr) for action in actions)
        ):
            return
        self._park(live, request)

    def _unhandled(self, failure: Failure, session_id: str) -> None:
        log.failure(
            "session {session_id}: answer handling failed", failure=failure, session_id=session_id
        )

    # -- terminations no OCS took ---------------------------------------------------------

    def _park(self, live: _Live, request: Message) -> None:
        pending = self.keep_termination(live.session_id, live.call.call_id, request)
        self._changed(pending.call_id, f"ccrt:{pending.session_id}")

    def keep_termination(self, session_id: str, owner: str, request: Message) -> PendingTermination:
        """Keep a CCR-T no OCS took and resend it (T flag) every retry interval until one
        does; also for sessions outside the engine (an ECUR event's, ``owner`` its id)."""
        pending = PendingTermination(session_id, owner, mark_retransmission(request))
        self._pending_terminations.append(pending)
        log.warn(
            "session {session_id}: CCR-T kept, resent every {interval} s",
            session_id=session_id,
            interval=self._retry_interval,
        )
        self._arm_retry(pending)
        return pending

    def _arm_retry(self, pending: PendingTermination) -> None:
        pending.timer = self._driver.schedule(
            self._now() + self._retry_interval, self._resend_termination, pending
        )

    def _drop(self, pending: PendingTermination) -> None:
        if pending.timer is not None:
            pending.timer.cancel()
            pending.timer = None
        if pending in self._pending_terminations:
            self._pending_terminations.remove(pending)
            self._changed(pending.call_id, f"ccrt:{pending.session_id}")

    def _resend_termination(self, pending: PendingTermination) -> None:
        pending.timer = None
        try:
            pending.attempts += 1
            self.stats.request_sent("final")
            sent_at = self._now()
            try:
                answer = self._client.send_request(pending.message, destination_host=None)
            except Exception as error:
                answer = fail(error)
            answer.addCallbacks(
                self._termination_answered,
                self._termination_failed,
                callbackArgs=(pending, sent_at),
                errbackArgs=(pending,),
            )
            answer.addErrback(self._unhandled, pending.session_id)
        except Exception:
            log.failure("session {session_id}: CCR-T resend failed", session_id=pending.session_id)

    def _termination_answered(
        self, message: Message, pending: PendingTermination, sent_at: float
    ) -> None:
        try:
            code = message.result_code or 0
        except DecodeError:
            code = ResultCode.UNABLE_TO_DELIVER  # unreadable: try again later
        elapsed_ms = max(0.0, self._now() - sent_at) * 1000.0
        self.stats.answer_received("final", success=2000 <= code < 3000, elapsed_ms=elapsed_ms)
        if code in _TRY_AGAIN:
            self._retry_or_give_up(pending)
            return
        log.info(
            "session {session_id}: kept CCR-T answered {code} after {attempts} resends",
            session_id=pending.session_id,
            code=code,
            attempts=pending.attempts,
        )
        self._drop(pending)

    def _termination_failed(self, failure: Failure, pending: PendingTermination) -> None:
        error = failure.value
        kind = self._classify(error) if error is not None else RequestFailure.NO_PEER
        self.stats.request_failed("final", timeout=kind is RequestFailure.TX_TIMEOUT)
        self._retry_or_give_up(pending)

    def _retry_or_give_up(self, pending: PendingTermination) -> None:
        if self._retry_limit is not None and pending.attempts >= self._retry_limit:
            log.error(
                "session {session_id}: CCR-T dropped after {attempts} resends",
                session_id=pending.session_id,
                attempts=pending.attempts,
            )
            self._drop(pending)
            return
        self._arm_retry(pending)
