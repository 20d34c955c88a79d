"""One charged event (a SIP MESSAGE): Immediate Event Charging or Event Charging with Unit
Reservation, client side, sans-IO.

Implements the client side of RFC 4006 for one event:

* §6.3 Immediate Event Charging (IEC): one CCR with CC-Request-Type EVENT_REQUEST and
  Requested-Action DIRECT_DEBITING (§8.41); the event goes on only after a success, the
  refusal is answered per the result-code map;
* §6.2 Event Charging with Unit Reservation (ECUR): CCR-INITIAL reserves the units, the
  event goes on, and exactly one CCR-TERMINATION reports what was used: all the units when
  the next hop answered 2xx, none otherwise (an undelivered message is not charged), also
  after a next-hop timeout or transport error;
* §5.7 and §8.15 failure handling: a request no OCS answered is sent once more to an
  alternate peer (T flag, RFC 6733 §3; the OCS recognises the retransmission, so a debit
  is never taken twice); if that fails too, IEC follows Direct-Debiting-Failure-Handling
  (TERMINATE_OR_BUFFER refuses the event, we do not buffer; CONTINUE lets it through
  uncharged) and ECUR's CCR-I follows Credit-Control-Failure-Handling (CONTINUE lets it
  through uncharged, anything else refuses it). A CCR-T no peer took is handed back with
  :attr:`EventFinished.unsent_termination` so the engine keeps resending it.

Time arrives as ``now``; out come plain action dataclasses, as in
:mod:`b2bua.charging.session`. There is no timer of its own: the Diameter layer's Tx timer
ends a silent request (``on_request_failed``) and the SIP transaction ends a silent next
hop (``on_delivered`` with no status).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, IntEnum, StrEnum, auto

from b2bua.charging.session import (
    Answer,
    Ccfh,
    ChargingConfig,
    RejectCall,
    RequestFailure,
    ResultCode,
)
from b2bua.charging.stats import ChargingStats

__all__ = [
    "EventAction",
    "EventCcr",
    "EventFinished",
    "EventMode",
    "EventRequestType",
    "EventSession",
    "ForwardEvent",
    "RefuseEvent",
]


class EventMode(StrEnum):
    """How an event is charged (the route's ``event_charging_mode``)."""

    IMMEDIATE = "immediate"  # IEC, RFC 4006 §6.3
    RESERVATION = "reservation"  # ECUR, RFC 4006 §6.2


class EventRequestType(IntEnum):
    """CC-Request-Type values (RFC 4006 §8.3) an event sends."""

    INITIAL = 1
    TERMINATION = 3
    EVENT = 4


@dataclass(frozen=True, slots=True)
class EventCcr:
    """Send a Credit-Control-Request for the event (units are CC-Service-Specific-Units)."""

    request_type: EventRequestType
    request_number: int
    requested_units: int | None  # Requested-Service-Unit; None: omit
    used_units: int | None  # Used-Service-Unit; None: omit
    destination_host: str | None = None
    retry: bool = False  # retransmission to an alternate peer: T flag, no Destination-Host
    cause_code: int | None = None  # TS 32.299 Cause-Code of the CCR-T (the SIP status)


@dataclass(frozen=True, slots=True)
class ForwardEvent:
    """Send the event on to the next hop; ``charged`` is False when it goes uncharged."""

    charged: bool


@dataclass(frozen=True, slots=True)
class RefuseEvent:
    """Answer the event ``sip_status reason`` and do not forward it."""

    sip_status: int
    reason: str
    result_code: int | None = None


@dataclass(frozen=True, slots=True)
class EventFinished:
    """Nothing more to send: ``debited`` units were charged (0: none).

    ``unsent_termination`` is True when the CCR-T found no peer even on the retry: the
    caller keeps the request and resends it until an OCS takes it.
    """

    debited: int
    unsent_termination: bool = False


EventAction = EventCcr | ForwardEvent | RefuseEvent | EventFinished


class _State(Enum):
    NEW = auto()
    PENDING_EVENT = auto()
    PENDING_I = auto()
    RESERVED = auto()  # forwarded, waiting for the next hop's final answer
    PENDING_T = auto()
    DONE = auto()


class EventSession:
    """The credit-control client state of one event; inputs return actions, in order."""

    __slots__ = (
        "_ccfh",
        "_config",
        "_continue_on_failure",
        "_destination_host",
        "_failover",
        "_mode",
        "_next_number",
        "_out",
        "_pending",
        "_retried",
        "_sent_at",
        "_state",
        "_stats",
        "_units",
        "_used",
    )

    def __init__(
        self,
        mode: EventMode,
        config: ChargingConfig | None = None,
        *,
        units: int = 1,
        continue_on_failure: bool = False,
        stats: ChargingStats | None = None,
    ) -> None:
        if units < 1:
            raise ValueError("an event costs at least one unit")
        self._mode = EventMode(mode)
        self._config = config if config is not None else ChargingConfig()
        self._units = units
        self._continue_on_failure = continue_on_failure  # Direct-Debiting-Failure-Handling
        self._ccfh = self._config.failure_handling
        self._failover = self._config.session_failover
        self._stats = stats
        self._state = _State.NEW
        self._next_number = 0
        self._pending: EventCcr | None = None
        self._sent_at = 0.0
        self._retried = False
        self._destination_host: str | None = None
        self._used = 0
        self._out: list[EventAction] = []

    @property
    def finished(self) -> bool:
        """True once :class:`EventFinished` was emitted."""
        return self._state is _State.DONE

    @property
    def debited(self) -> int:
        """Units charged so far: debited by the CCR-EVENT, or reported used by the CCR-T."""
        return self._used

    @property
    def waiting_for_delivery(self) -> bool:
        """ECUR: the event was forwarded and its CCR-T waits for the next hop's answer."""
        return self._state is _State.RESERVED

    # -- inputs ----------------------------------------------------------------------------

    def start(self, now: float) -> list[EventAction]:
        """The charging route matched: send CCR-EVENT (IEC) or CCR-INITIAL (ECUR)."""
        if self._state is not _State.NEW:
            return []
        if self._mode is EventMode.IMMEDIATE:
            self._send(now, EventRequestType.EVENT, self._units, None, _State.PENDING_EVENT)
        else:
            self._send(now, EventRequestType.INITIAL, self._units, None, _State.PENDING_I)
        return self._drain()

    def on_answer(self, now: float, answer: Answer) -> list[EventAction]:
        """The CCA of the pending request (stale ones are ignored)."""
        pending = self._pending
        if pending is None or answer.request_number not in (None, pending.request_number):
            return []
        code = answer.result_code
        success = 2000 <= code < 3000
        if self._stats is not None:
            elapsed_ms = max(0.0, now - self._sent_at) * 1000.0
            self._stats.event_answer_received(success=success, elapsed_ms=elapsed_ms)
        if code in (ResultCode.UNABLE_TO_DELIVER, ResultCode.TOO_BUSY, ResultCode.LOOP_DETECTED):
            self._failed(now, RequestFailure.TEMPORARY_ERROR, counted=True)
            return self._drain()
        if answer.credit_control_failure_handling is not None:
            self._ccfh = answer.credit_control_failure_handling
        if answer.cc_session_failover is not None:
            self._failover = answer.cc_session_failover
        if answer.origin_host and success:
            self._destination_host = answer.origin_host
        self._pending = None
        state = self._state
        if state is _State.PENDING_EVENT:
            self._event_answered(code, success)
        elif state is _State.PENDING_I:
            self._initial_answered(now, answer, success)
        else:
            self._finish()
        return self._drain()

    def on_request_failed(self, now: float, kind: RequestFailure) -> list[EventAction]:
        """The Diameter layer gave up on the pending request (Tx, no peer, peer down)."""
        if self._pending is None:
            return []
        self._failed(now, kind, counted=False)
        return self._drain()

    def on_delivered(self, now: float, status: int | None) -> list[EventAction]:
        """ECUR: the next hop's final status (None: timeout or transport error)."""
        if self._state is not _State.RESERVED:
            return []
        delivered = status is not None and 200 <= status < 300
        used = self._units if delivered else 0
        cause = 0 if delivered else (408 if status is None else status)
        self._send(now, EventRequestType.TERMINATION, None, used, _State.PENDING_T, cause=cause)
        return self._drain()

    # -- transitions -----------------------------------------------------------------------

    def _event_answered(self, code: int, success: bool) -> None:
        if success:
            self._used = self._units
            self._out.append(ForwardEvent(charged=True))
        elif code == ResultCode.CREDIT_CONTROL_NOT_APPLICABLE:
            self._out.append(ForwardEvent(charged=False))
        else:
            self._refuse(self._config.reject_for(code))
        self._finish()

    def _initial_answered(self, now: float, answer: Answer, success: bool) -> None:
        code = answer.result_code
        if success and (answer.granted_seconds is None or answer.granted_seconds >= self._units):
            self._state = _State.RESERVED
            self._out.append(ForwardEvent(charged=True))
        elif success:  # fewer units than the event costs: refuse, release what was granted
            self._refuse(self._config.reject_for(ResultCode.CREDIT_LIMIT_REACHED))
            self._send(now, EventRequestType.TERMINATION, None, 0, _State.PENDING_T, cause=402)
        elif code == ResultCode.CREDIT_CONTROL_NOT_APPLICABLE:
            self._out.append(ForwardEvent(charged=False))
            self._finish()
        else:
            self._refuse(self._config.reject_for(code))
            self._finish()

    def _failed(self, now: float, kind: RequestFailure, *, counted: bool) -> None:
        pending = self._pending
        assert pending is not None
        if self._stats is not None and not counted:
            self._stats.event_request_failed(timeout=kind is RequestFailure.TX_TIMEOUT)
        if not self._retried and (
            self._failover or pending.request_type is not EventRequestType.TERMINATION
        ):
            self._retried = True
            again = EventCcr(
                pending.request_type,
                pending.request_number,
                pending.requested_units,
                pending.used_units,
                retry=True,
                cause_code=pending.cause_code,
            )
            self._pending = again
            self._sent_at = now
            if self._stats is not None:
                self._stats.event_ccrs += 1
            self._out.append(again)
            return
        self._pending = None
        if pending.request_type is EventRequestType.TERMINATION:
            self._finish(unsent_termination=True)
            return
        if pending.request_type is EventRequestType.EVENT:
            go_on = self._continue_on_failure
        else:
            go_on = self._ccfh is Ccfh.CONTINUE
        if go_on:
            self._out.append(ForwardEvent(charged=False))
        else:
            status, text = self._config.error_reject
            self._refuse(RejectCall(status, text))
        self._finish()

    # -- requests --------------------------------------------------------------------------

    def _refuse(self, reject: RejectCall) -> None:
        if self._stats is not None:
            self._stats.refused_events += 1
        self._out.append(RefuseEvent(reject.sip_status, reject.reason, reject.result_code))

    def _send(
        self,
        now: float,
        request_type: EventRequestType,
        requested: int | None,
        used: int | None,
        state: _State,
        *,
        cause: int | None = None,
    ) -> None:
        request = EventCcr(
            request_type,
            self._next_number,
            requested,
            used,
            destination_host=self._destination_host,
            cause_code=cause,
        )
        self._next_number += 1
        self._retried = False
        self._pending = request
        self._sent_at = now
        self._state = state
        if request_type is EventRequestType.TERMINATION:
            self._used = used or 0
        if self._stats is not None:
            self._stats.event_ccrs += 1
        self._out.append(request)

    def _finish(self, *, unsent_termination: bool = False) -> None:
        if self._state is _State.DONE:
            return
        self._state = _State.DONE
        self._pending = None
        if self._stats is not None:
            self._stats.billed_events += self._used
        self._out.append(EventFinished(self._used, unsent_termination))

    def _drain(self) -> list[EventAction]:
        out, self._out = self._out, []
        return out
