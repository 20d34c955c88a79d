"""One Ro credit-control session (SCUR, time units) for one call: the charging brain, sans-IO.

Implements the client side of RFC 4006 for session-based charging of a call:

* §5.2-5.4 and §7 (client, session based): CCR-INITIAL before the B leg leaves, CCR-UPDATE
  when the grant (less ``timer_buffer``, or Time-Quota-Threshold, 3GPP TS 32.299) or the
  Validity-Time (§8.33) runs out, exactly one CCR-TERMINATION; a termination while a request
  is pending is queued until its answer (§7 "Queue termination event").
* §5.3: a new grant applies from the point where the reported usage stopped.
* §5.5: Re-Auth-Request: 2002 and a CCR-U when Open; 2001 and nothing when one is pending.
* §5.6.1: a final grant (Final-Unit-Indication; REDIRECT and RESTRICT_ACCESS make no sense
  for a voice call and get the default TERMINATE) ends the call when it is used up.
* §5.7 and §8.14: Credit-Control-Failure-Handling (TERMINATE, CONTINUE,
  RETRY_AND_TERMINATE) with one retransmission to an alternate peer when
  CC-Session-Failover (§8.4) allows it.
* §5.7 and §8.14 for a CCR-U still unanswered when the units granted so far are used up:
  only CONTINUE grants service without the OCS's word, so under TERMINATE and
  RETRY_AND_TERMINATE the call is ended right then, at the grant's end, as for credit
  exhaustion (the CCR-T follows the answer or the failure of the CCR-U, §7); under
  CONTINUE it talks on and every second talked is reported, however the CCR-U ends.
* RFC 6733 §8.5: Abort-Session-Request ends the call, answered 2001.

Persistence: :meth:`RoSession.snapshot` / :meth:`RoSession.restore` carry an opened session
across a restart; :meth:`RoSession.resume` then acts on what happened while the process was
down (a request in flight is retransmitted, RFC 4006 §5.7; a grant that ran out ends the
call with the talk time up to its end).

Time arrives as ``now`` (seconds, any epoch); out come plain action dataclasses and
:meth:`RoSession.next_deadline`. Nothing here knows about Diameter encoding or the reactor.

Accounting model. ``reported`` is the whole seconds reported so far; ``budget`` is the talk
time (seconds since the 200 OK) the subscriber may use: a grant G answering a request that
brought ``reported`` to R allows talk up to R + G (§5.3), and units already granted are
never taken back, so a refused or smaller grant leaves the budget where it was. Reports are
capped at the budget while the session holds the call to it: a session never reports more
seconds than it was granted. A final grant ends the call exactly when it is used up, and so
does any grant whose CCR-U is still unanswered then, unless CCFH is CONTINUE. Once the call
talks past its budget with leave (CONTINUE while a CCR-U waits, or no credit control any
more: CONTINUE after a failure, 4011) the cap is lifted: reports never fall short of talk.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum, IntEnum, StrEnum, auto
from types import MappingProxyType
from typing import Any

from b2bua.charging.stats import CcrKind, ChargingStats
from b2bua.charging.units import BillingRounding, final_seconds, whole_seconds

__all__ = [
    "DEFAULT_RESULT_CODES",
    "Action",
    "AdmitCall",
    "Answer",
    "Ccfh",
    "ChargingConfig",
    "ContinueUncharged",
    "EndCall",
    "EndReason",
    "FinalUnitAction",
    "Finished",
    "RejectCall",
    "RequestFailure",
    "RequestType",
    "ResultCode",
    "RoSession",
    "SendCcr",
]


class RequestType(IntEnum):
    """CC-Request-Type (RFC 4006 §8.3)."""

    INITIAL = 1
    UPDATE = 2
    TERMINATION = 3


class FinalUnitAction(IntEnum):
    """Final-Unit-Action (RFC 4006 §8.35)."""

    TERMINATE = 0
    REDIRECT = 1
    RESTRICT_ACCESS = 2


class Ccfh(IntEnum):
    """Credit-Control-Failure-Handling (RFC 4006 §8.14); TERMINATE is the RFC default."""

    TERMINATE = 0
    CONTINUE = 1
    RETRY_AND_TERMINATE = 2


class ResultCode(IntEnum):
    """Result-Code values this module acts on (RFC 6733 §7.1, RFC 4006 §9)."""

    SUCCESS = 2001
    LIMITED_SUCCESS = 2002
    UNABLE_TO_DELIVER = 3002
    TOO_BUSY = 3004
    LOOP_DETECTED = 3005
    END_USER_SERVICE_DENIED = 4010
    CREDIT_CONTROL_NOT_APPLICABLE = 4011
    CREDIT_LIMIT_REACHED = 4012
    UNKNOWN_SESSION_ID = 5002
    RESOURCES_EXCEEDED = 5006
    USER_UNKNOWN = 5030


#: RFC 4006 §7 "temporary error": the request may go to an alternate server.
_TEMPORARY_ERRORS = frozenset(
    {ResultCode.UNABLE_TO_DELIVER, ResultCode.TOO_BUSY, ResultCode.LOOP_DETECTED}
)


class RequestFailure(Enum):
    """Why the Diameter layer gave up on a request (RFC 4006 §7 'Failure to send', Tx)."""

    TX_TIMEOUT = auto()  # Tx expired (RFC 4006 §13)
    NO_PEER = auto()  # no open connection to any suitable peer
    PEER_DOWN = auto()  # the connection carrying the request was lost
    TEMPORARY_ERROR = auto()  # 3002/3004/3005 answered (also reached through on_answer)


class EndReason(StrEnum):
    """Why the session tears the call down (text for the Reason header and logs)."""

    CREDIT_EXHAUSTED = "credit exhausted"
    ABORTED = "aborted by OCS"
    AUTH_EXPIRED = "ro_auth_expiry"
    CHARGING_FAILURE = "charging failure"


#: Result-Code -> (SIP status, reason) for a refused CCA-I; Kamailio's example routing.
DEFAULT_RESULT_CODES: Mapping[int, tuple[int, str]] = MappingProxyType(
    {
        ResultCode.END_USER_SERVICE_DENIED: (402, "Payment Required - Insufficient funds"),
        ResultCode.CREDIT_LIMIT_REACHED: (402, "Payment Required - Credit limit reached"),
        ResultCode.USER_UNKNOWN: (403, "Forbidden - User unknown"),
        ResultCode.RESOURCES_EXCEEDED: (486, "Line limit exceeded"),
    }
)


@dataclass(frozen=True, slots=True)
class ChargingConfig:
    """Per-process charging settings; names and defaults as in Kamailio's ims_charging."""

    interim_update_credits: int = 30  # seconds requested on each CCR-U
    timer_buffer: int = 8  # send the CCR-U this long before the grant runs out
    ro_auth_expiry: int = 7200  # lifetime of an Ro session, seconds
    billing_rounding: BillingRounding = BillingRounding.UP
    failure_handling: Ccfh = Ccfh.TERMINATE  # until an OCS sends its own CCFH
    session_failover: bool = True  # may a failed request go to an alternate OCS peer
    reservation_units: int = 30  # CCR-I request when the charging route names none
    result_codes: Mapping[int, tuple[int, str]] = field(
        default_factory=lambda: DEFAULT_RESULT_CODES
    )
    default_reject: tuple[int, str] = (402, "Payment Required")  # other codes; code appended
    error_reject: tuple[int, str] = (500, "Charging Error")  # no answer, CCFH terminates

    def __post_init__(self) -> None:
        for name in ("interim_update_credits", "timer_buffer", "ro_auth_expiry"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.reservation_units < 0:
            raise ValueError("reservation_units must not be negative")

    def reject_for(self, result_code: int) -> RejectCall:
        """The SIP answer to a refused CCA-I."""
        mapped = self.result_codes.get(result_code)
        if mapped is not None:
            return RejectCall(mapped[0], mapped[1], result_code)
        status, text = self.default_reject
        return RejectCall(status, f"{text} ({result_code})", result_code)


# -- inputs --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    """The fields of a CCA this session acts on (the Diameter layer decodes them)."""

    result_code: int
    granted_seconds: int | None = None  # Granted-Service-Unit/CC-Time; None: absent
    validity_time: int | None = None  # Validity-Time, seconds from this CCA's arrival
    final_unit_action: FinalUnitAction | None = None  # None: no Final-Unit-Indication
    time_quota_threshold: int | None = None  # 3GPP TS 32.299 §7.2.210
    cc_session_failover: bool | None = None  # CC-Session-Failover: True = SUPPORTED
    credit_control_failure_handling: Ccfh | None = None
    origin_host: str | None = None
    request_number: int | None = None  # CC-Request-Number echoed; a mismatch is ignored


# -- outputs -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendCcr:
    """Send a Credit-Control-Request.

    ``retry`` marks the retransmission of the same request (same CC-Request-Number) to an
    alternate peer, with the T flag (RFC 6733 §3) and without Destination-Host.
    """

    request_type: RequestType
    request_number: int
    requested_seconds: int | None  # Requested-Service-Unit/CC-Time; None: omit
    used_seconds: int | None  # Used-Service-Unit/CC-Time; None: omit
    final: bool  # the last request of the session
    destination_host: str | None = None  # the OCS that answered before, if any
    retry: bool = False
    cause: str | None = None  # why the session ends (CCR-T only)


@dataclass(frozen=True, slots=True)
class AdmitCall:
    """CCA-I allowed the call: the B-leg INVITE may leave."""


@dataclass(frozen=True, slots=True)
class RejectCall:
    """Answer the caller with ``sip_status`` (and a Reason header carrying ``reason``)."""

    sip_status: int
    reason: str
    result_code: int | None = None


@dataclass(frozen=True, slots=True)
class EndCall:
    """Tear the call down on both legs (BYE, or CANCEL/final response if not answered yet)."""

    reason: EndReason


@dataclass(frozen=True, slots=True)
class ContinueUncharged:
    """Let the call go on without credit control (4011, or CCFH CONTINUE)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Finished:
    """The session is over; ``billed_seconds`` is the total reported to the OCS."""

    billed_seconds: int


Action = SendCcr | AdmitCall | RejectCall | EndCall | ContinueUncharged | Finished


# -- the session -------------------------------------------------------------------------


class _State(Enum):
    NEW = auto()
    PENDING_I = auto()
    OPEN = auto()
    PENDING_U = auto()
    UNCHARGED = auto()  # RFC 4006 §7 "Idle" after "grant service to end user"
    PENDING_T = auto()
    DONE = auto()


_KIND: dict[RequestType, CcrKind] = {
    RequestType.INITIAL: "initial",
    RequestType.UPDATE: "interim",
    RequestType.TERMINATION: "final",
}


_PENDING_STATE: dict[RequestType, _State] = {
    RequestType.INITIAL: _State.PENDING_I,
    RequestType.UPDATE: _State.PENDING_U,
    RequestType.TERMINATION: _State.PENDING_T,
}


@dataclass(slots=True)
class _Pending:
    request: SendCcr
    sent_at: float
    reported_after: int  # ``reported`` including this request's used seconds
    retried: bool = False


class RoSession:
    """The credit-control client state of one call.

    Every input returns the actions to carry out, in order; afterwards the caller
    (re)schedules :meth:`on_timer` at :meth:`next_deadline`. Inputs after the session is
    finished are ignored.
    """

    __slots__ = (
        "_answered_at",
        "_auth_expiry_at",
        "_budget",
        "_buffer",
        "_ccfh",
        "_config",
        "_destination_host",
        "_end_cause",
        "_end_queued",
        "_ended_at",
        "_failover",
        "_final",
        "_grant_size",
        "_grant_start",
        "_killed",
        "_next_number",
        "_opened",
        "_out",
        "_overrun_until",
        "_pending",
        "_reported",
        "_reservation_units",
        "_state",
        "_stats",
        "_terminated",
        "_validity_end",
    )

    def __init__(
        self,
        config: ChargingConfig | None = None,
        *,
        reservation_units: int | None = None,
        stats: ChargingStats | None = None,
        first_request_number: int = 0,
    ) -> None:
        self._config = config if config is not None else ChargingConfig()
        units = self._config.reservation_units if reservation_units is None else reservation_units
        if units < 0:
            raise ValueError("reservation_units must not be negative")
        self._reservation_units = units
        self._stats = stats
        self._state = _State.NEW
        self._out: list[Action] = []
        self._next_number = first_request_number
        self._pending: _Pending | None = None
        self._opened = False  # a CCA-I succeeded: the OCS holds a session, a CCR-T is owed
        self._terminated = False  # the CCR-T went out
        self._end_queued = False  # the service ended while a request was pending
        self._end_cause: str | None = None
        self._answered_at: float | None = None
        self._ended_at: float | None = None
        self._auth_expiry_at: float | None = None
        self._reported = 0
        self._budget = 0
        self._grant_start = 0  # talk seconds at which the current grant started counting
        self._grant_size = 0
        self._final = False
        self._validity_end: float | None = None
        self._buffer = self._config.timer_buffer
        self._ccfh = self._config.failure_handling
        self._failover = self._config.session_failover
        self._destination_host: str | None = None
        self._killed = False
        # CCFH CONTINUE let the call talk past its budget, up to here, with a CCR-U pending.
        self._overrun_until: float | None = None

    # -- figures ---------------------------------------------------------------------------

    @property
    def billed_seconds(self) -> int:
        """Whole seconds reported to the OCS so far."""
        return self._reported

    @property
    def granted_seconds(self) -> int:
        """Talk seconds granted so far (the budget: each grant counts from its report)."""
        return self._budget

    @property
    def termination_sent(self) -> bool:
        """True once the CCR-T left: :attr:`billed_seconds` is final."""
        return self._terminated

    @property
    def killed(self) -> bool:
        """True if the session ended the call for lack of credit."""
        return self._killed

    @property
    def finished(self) -> bool:
        """True once :class:`Finished` was emitted."""
        return self._state is _State.DONE

    @property
    def destination_host(self) -> str | None:
        """The OCS that answers this session (Destination-Host of later requests)."""
        return self._destination_host

    @property
    def next_request_number(self) -> int:
        """The CC-Request-Number the next new request will carry (persist it across restarts)."""
        return self._next_number

    # -- persistence -----------------------------------------------------------------------

    @property
    def persistent(self) -> bool:
        """True while the OCS holds a session for us: a CCA-I granted, no CCR-T answered.

        Only such a session is worth a snapshot: before the grant nothing is owed, after
        the last answer nothing is left.
        """
        return self._opened and self._state is not _State.DONE

    def snapshot(self) -> dict[str, Any]:
        """Every field that a restart must keep, as JSON-able values."""
        pending = self._pending
        request = None if pending is None else pending.request
        return {
            "state": self._state.name,
            "next_number": self._next_number,
            "reservation_units": self._reservation_units,
            "opened": self._opened,
            "terminated": self._terminated,
            "end_queued": self._end_queued,
            "end_cause": self._end_cause,
            "answered_at": self._answered_at,
            "ended_at": self._ended_at,
            "auth_expiry_at": self._auth_expiry_at,
            "reported": self._reported,
            "budget": self._budget,
            "grant_start": self._grant_start,
            "grant_size": self._grant_size,
            "final": self._final,
            "validity_end": self._validity_end,
            "buffer": self._buffer,
            "ccfh": int(self._ccfh),
            "failover": self._failover,
            "destination_host": self._destination_host,
            "killed": self._killed,
            "overrun_until": self._overrun_until,
            "deadline": self.next_deadline(),  # for operators; restore recomputes it
            "pending": None
            if pending is None or request is None
            else {
                "type": int(request.request_type),
                "number": request.request_number,
                "requested": request.requested_seconds,
                "used": request.used_seconds,
                "destination_host": request.destination_host,
                "retry": request.retry,
                "cause": request.cause,
                "sent_at": pending.sent_at,
                "reported_after": pending.reported_after,
                "retried": pending.retried,
            },
        }

    @classmethod
    def restore(
        cls,
        data: Mapping[str, Any],
        config: ChargingConfig | None = None,
        *,
        stats: ChargingStats | None = None,
    ) -> RoSession:
        """The session of a :meth:`snapshot` (KeyError, TypeError or ValueError if bad)."""
        session = cls(config, reservation_units=_int(data["reservation_units"]), stats=stats)
        session._state = _State[str(data["state"])]
        session._next_number = _int(data["next_number"])
        session._opened = bool(data["opened"])
        session._terminated = bool(data["terminated"])
        session._end_queued = bool(data["end_queued"])
        session._end_cause = _opt_str(data["end_cause"])
        session._answered_at = _opt_float(data["answered_at"])
        session._ended_at = _opt_float(data["ended_at"])
        session._auth_expiry_at = _opt_float(data["auth_expiry_at"])
        session._reported = _int(data["reported"])
        session._budget = _int(data["budget"])
        session._grant_start = _int(data["grant_start"])
        session._grant_size = _int(data["grant_size"])
        session._final = bool(data["final"])
        session._validity_end = _opt_float(data["validity_end"])
        session._buffer = _int(data["buffer"])
        session._ccfh = Ccfh(_int(data["ccfh"]))
        session._failover = bool(data["failover"])
        session._destination_host = _opt_str(data["destination_host"])
        session._killed = bool(data["killed"])
        session._overrun_until = _opt_float(data.get("overrun_until"))  # absent: older record
        pending = data["pending"]
        if pending is not None:
            request = SendCcr(
                RequestType(_int(pending["type"])),
                _int(pending["number"]),
                _opt_int(pending["requested"]),
                _opt_int(pending["used"]),
                RequestType(_int(pending["type"])) is RequestType.TERMINATION,
                destination_host=_opt_str(pending["destination_host"]),
                retry=bool(pending["retry"]),
                cause=_opt_str(pending["cause"]),
            )
            session._pending = _Pending(
                request,
                float(pending["sent_at"]),
                _int(pending["reported_after"]),
                retried=bool(pending["retried"]),
            )
        if session._state in (_State.PENDING_I, _State.PENDING_U, _State.PENDING_T) and (
            session._pending is None
        ):
            raise ValueError(f"state {session._state.name} without its pending request")
        return session

    def resume(self, now: float, *, end_at: float | None = None, cause: str = "") -> list[Action]:
        """Act on a restored session: what should have happened while we were down.

        A request that was in flight is sent again with the same CC-Request-Number and the
        T flag (RFC 4006 §5.7: its answer is lost; the OCS recognises the duplicate).
        ``end_at`` (the call cannot go on): the call ended then; its CCR-T follows,
        reporting at most what was granted. Otherwise a grant used up while we were down
        ends the call (BYE, CCR-T up to when the grant ran out), and updates due go out.
        """
        pending = self._pending
        if self._state is _State.DONE:
            return []
        if pending is not None:
            request = pending.request
            again = SendCcr(
                request.request_type,
                request.request_number,
                request.requested_seconds,
                request.used_seconds,
                request.final,
                destination_host=None,
                retry=True,
                cause=request.cause,
            )
            self._pending = _Pending(again, now, pending.reported_after, retried=pending.retried)
            if self._stats is not None:
                self._stats.request_sent(_KIND[request.request_type])
            self._out.append(again)
        if end_at is not None:
            if self._ended_at is None:
                self._ended_at = end_at
                self._service_terminated(now, cause)
            return self._drain()
        answered = self._answered_at
        if (
            self._ended_at is None
            and answered is not None
            and self._state in (_State.OPEN, _State.PENDING_U)
            and now >= answered + self._budget
        ):
            self._end_call(now, EndReason.CREDIT_EXHAUSTED, talk_end=answered + self._budget)
            return self._drain()
        self._poll(now)
        return self._drain()

    # -- inputs ----------------------------------------------------------------------------

    def start(self, now: float) -> list[Action]:
        """The charging route ran: send CCR-I for ``reservation_units`` (RFC 4006 §5.2)."""
        if self._state is not _State.NEW:
            return []
        self._auth_expiry_at = now + self._config.ro_auth_expiry
        if self._ended_at is not None:  # the call went away before charging started
            self._finish()
            return self._drain()
        self._send(now, RequestType.INITIAL, self._reservation_units, None)
        return self._drain()

    def on_answer(self, now: float, answer: Answer) -> list[Action]:
        """A CCA for the pending request arrived (stale or unexpected ones are ignored)."""
        pending = self._pending
        if pending is None or (
            answer.request_number is not None
            and answer.request_number != pending.request.request_number
        ):
            return []
        request = pending.request
        code = answer.result_code
        success = 2000 <= code < 3000
        self._note_overrun(now)  # under the CCFH in force while the request waited
        if self._stats is not None:
            elapsed_ms = max(0.0, now - pending.sent_at) * 1000.0
            self._stats.answer_received(
                _KIND[request.request_type], success=success, elapsed_ms=elapsed_ms
            )
        # RFC 4006 §5.7: values from a CCA always override; absent ones leave ours in force.
        if answer.credit_control_failure_handling is not None:
            self._ccfh = answer.credit_control_failure_handling
        if answer.cc_session_failover is not None:
            self._failover = answer.cc_session_failover
        if answer.origin_host and (success or self._destination_host is None):
            self._destination_host = answer.origin_host
        if code in _TEMPORARY_ERRORS:
            self._failed(now, RequestFailure.TEMPORARY_ERROR)
            self._poll(now)
            return self._drain()
        self._pending = None
        if request.request_type is RequestType.INITIAL:
            self._initial_answered(now, answer, success)
        elif request.request_type is RequestType.UPDATE:
            self._update_answered(now, answer, success, pending.reported_after)
        else:
            self._finish()
        self._poll(now)
        return self._drain()

    def on_call_answered(self, now: float) -> list[Action]:
        """The 200 OK: talk time, and so used units, count from here."""
        if self._answered_at is None and self._ended_at is None and self._state is not _State.DONE:
            self._answered_at = now
        self._poll(now)
        return self._drain()

    def on_call_ended(self, now: float, cause: str) -> list[Action]:
        """Either side hung up, or the call was cancelled or rejected (RFC 4006 §5.4)."""
        if self._ended_at is not None or self._state is _State.DONE:
            return []
        self._ended_at = now
        self._service_terminated(now, cause)
        return self._drain()

    def on_timer(self, now: float) -> list[Action]:
        """The deadline given by :meth:`next_deadline` (or a later one) has come."""
        self._poll(now)
        return self._drain()

    def on_reauth(self, now: float) -> tuple[int, list[Action]]:
        """Re-Auth-Request (RFC 4006 §5.5): the RAA Result-Code and the actions."""
        if self._state in (_State.NEW, _State.DONE):
            return ResultCode.UNKNOWN_SESSION_ID, []
        if self._state is _State.OPEN and self._ended_at is None:
            self._send_update(now)
            code = ResultCode.LIMITED_SUCCESS
        else:  # PendingU (RAR-CCR collision), or no update possible
            code = ResultCode.SUCCESS
        self._poll(now)
        return code, self._drain()

    def on_rating_change(self, now: float) -> tuple[bool, list[Action]]:
        """The call's rating changed (video added or removed; TS 32.299
        RATING_CONDITION_CHANGE): report the usage so far at once in a CCR-U that asks for
        units anew. ``(False, [])`` when no update can go now (not open, or one pending).
        """
        if self._state is not _State.OPEN or self._ended_at is not None:
            return False, []
        self._send_update(now)
        self._poll(now)
        return True, self._drain()

    def on_service_refused(self, now: float) -> list[Action]:
        """The OCS refused the units the call needs after a rating change (the old group's
        reservation was released by that report): end the call now for lack of credit."""
        if self._state in (_State.NEW, _State.DONE):
            return []
        self._end_call(now, EndReason.CREDIT_EXHAUSTED)
        return self._drain()

    def on_abort(self, now: float) -> tuple[int, list[Action]]:
        """Abort-Session-Request: end the call, then CCR-T; the ASA Result-Code and actions.

        RFC 6733 §8.5.2: 2001 when the session is known and will be torn down.
        """
        if self._state in (_State.NEW, _State.DONE):
            return ResultCode.UNKNOWN_SESSION_ID, []
        self._end_call(now, EndReason.ABORTED)
        return ResultCode.SUCCESS, self._drain()

    def on_request_failed(self, now: float, kind: RequestFailure) -> list[Action]:
        """The Diameter layer gave up on the pending request (RFC 4006 §5.7)."""
        pending = self._pending
        if pending is None:
            return []
        if self._stats is not None:
            self._stats.request_failed(
                _KIND[pending.request.request_type], timeout=kind is RequestFailure.TX_TIMEOUT
            )
        self._failed(now, kind)
        self._poll(now)
        return self._drain()

    def next_deadline(self) -> float | None:
        """When :meth:`on_timer` must next run, or None."""
        state = self._state
        if state is _State.DONE or state is _State.PENDING_T or self._ended_at is not None:
            return None
        deadlines: list[float] = []
        if self._auth_expiry_at is not None:
            deadlines.append(self._auth_expiry_at)
        if state is _State.OPEN or state is _State.PENDING_U:
            exhausted = self._exhausted_at()
            if exhausted is not None:
                deadlines.append(exhausted)
        if state is _State.OPEN:
            update = self._update_due()
            if update is not None:
                deadlines.append(update)
        return min(deadlines) if deadlines else None

    # -- deadlines -------------------------------------------------------------------------

    def _exhausted_at(self) -> float | None:
        """When the call must end because the units granted so far are used up.

        A final grant (RFC 4006 §5.6.1); or any grant while its CCR-U is unanswered, unless
        CCFH is CONTINUE (§5.7: only CONTINUE grants service without the OCS's word; Tx and
        a retry to an alternate peer may take longer than the units last).
        """
        if self._answered_at is None:
            return None
        if self._final or (self._state is _State.PENDING_U and self._ccfh is not Ccfh.CONTINUE):
            return self._answered_at + self._budget
        return None

    def _note_overrun(self, now: float) -> None:
        """A pending CCR-U is settled: if CCFH CONTINUE let the call talk past its budget
        meanwhile, that talk is the subscriber's to pay (reports are no longer capped)."""
        if (
            self._state is _State.PENDING_U
            and self._ccfh is Ccfh.CONTINUE
            and self._talk(now) > self._budget
        ):
            self._overrun_until = now if self._ended_at is None else min(now, self._ended_at)

    def _update_due(self) -> float | None:
        """When the next CCR-U is due in Open state.

        Non-final grant: ``buffer`` seconds before the grant, clamped to the Validity-Time,
        runs out, but never before half of the current grant is used. Kamailio sends the
        update at once when the grant is smaller than the buffer; an OCS that hands out
        slices smaller than the buffer (6 s grants, the default buffer of 8) then gets a
        CCR-U reporting 0 s after every answer, forever. Half the grant still leaves the
        OCS that half to answer in. Validity-Time alone (RFC 4006 §8.33): re-authorize at
        expiry even if units remain.
        """
        due: float | None = None
        if not self._final and self._answered_at is not None:
            earliest = self._grant_start + self._grant_size / 2
            due = self._answered_at + max(self._budget - self._buffer, earliest)
        if self._validity_end is not None:
            at = self._validity_end - (0 if self._final else self._buffer)
            due = at if due is None else min(due, at)
        return due

    def _poll(self, now: float) -> None:
        """Act on whatever is due at ``now``."""
        if self._state is _State.DONE or self._ended_at is not None:
            return
        if self._auth_expiry_at is not None and now >= self._auth_expiry_at:
            self._end_call(now, EndReason.AUTH_EXPIRED)
            return
        if self._state is _State.OPEN or self._state is _State.PENDING_U:
            exhausted = self._exhausted_at()
            if exhausted is not None and now >= exhausted:
                # Talk stops at the grant's end, or later if CONTINUE let it run on.
                overrun = self._overrun_until
                talk_end = exhausted if overrun is None else max(exhausted, overrun)
                self._end_call(now, EndReason.CREDIT_EXHAUSTED, talk_end=talk_end)
                return
        if self._state is _State.OPEN:
            due = self._update_due()
            if due is not None and now >= due:
                self._send_update(now)

    # -- transitions -----------------------------------------------------------------------

    def _initial_answered(self, now: float, answer: Answer, success: bool) -> None:
        code = answer.result_code
        if success:
            self._opened = True
            self._state = _State.OPEN
            granted = self._grant(now, answer, reported_after=0)
            if self._end_queued:
                self._send_termination(now)
            elif granted == 0:
                # 3GPP TS 32.299 §5.3.3: zero units granted in the first place.
                self._ended_at = now
                self._end_cause = "no units granted"
                self._out.append(self._config.reject_for(ResultCode.CREDIT_LIMIT_REACHED))
                self._send_termination(now)
            else:
                self._out.append(AdmitCall())
        elif code == ResultCode.CREDIT_CONTROL_NOT_APPLICABLE:
            self._go_uncharged(now, "credit control not applicable (4011)", admit=True)
        else:
            if not self._end_queued:
                self._out.append(self._config.reject_for(code))
            self._finish()

    def _update_answered(
        self, now: float, answer: Answer, success: bool, reported_after: int
    ) -> None:
        code = answer.result_code
        if success:
            self._state = _State.OPEN
            self._grant(now, answer, reported_after=reported_after)
        elif code == ResultCode.CREDIT_CONTROL_NOT_APPLICABLE:
            self._go_uncharged(now, "credit control not applicable (4011)", admit=False)
            return
        else:
            # A refused CCR-U (4012 and the like): units already granted stay the
            # subscriber's; the call runs until they are used up, then ends.
            self._state = _State.OPEN
            self._final = True
            self._validity_end = None
        if self._end_queued:
            self._send_termination(now)

    def _grant(self, now: float, answer: Answer, *, reported_after: int) -> int:
        """Apply a successful CCA's grant; returns the seconds granted."""
        granted = max(0, answer.granted_seconds or 0)
        self._budget = max(self._budget, reported_after + granted)
        self._grant_start = reported_after
        self._grant_size = granted
        self._final = answer.final_unit_action is not None or granted == 0
        validity = answer.validity_time
        self._validity_end = now + validity if validity is not None and validity > 0 else None
        if answer.time_quota_threshold is not None:
            self._buffer = max(0, answer.time_quota_threshold)
        return granted

    def _go_uncharged(self, now: float, reason: str, *, admit: bool) -> None:
        """RFC 4006 §7 'grant service to end user' then Idle: no more updates.

        An OCS that opened the session still gets its one CCR-T when the call ends, so the
        units used out of what it granted are reported and its reservation released.
        """
        self._state = _State.UNCHARGED
        if self._end_queued:
            self._end_queued = False
            self._service_terminated(now, self._end_cause or "")
            return
        if admit:
            self._out.append(AdmitCall())
        self._out.append(ContinueUncharged(reason))

    def _failed(self, now: float, kind: RequestFailure) -> None:
        """RFC 4006 §5.7: retry on an alternate peer once if allowed, else apply CCFH."""
        pending = self._pending
        assert pending is not None
        request = pending.request
        self._note_overrun(now)
        # CC-Session-Failover governs moving an ongoing session; a new one (CCR-I) SHOULD
        # fail over whenever possible (RFC 4006 §5.7).
        retry_allowed = (
            (self._failover or request.request_type is RequestType.INITIAL)
            and not pending.retried
            and (kind is not RequestFailure.TX_TIMEOUT or self._ccfh is not Ccfh.TERMINATE)
        )
        if retry_allowed:
            again = SendCcr(
                request.request_type,
                request.request_number,
                request.requested_seconds,
                request.used_seconds,
                request.final,
                destination_host=None,
                retry=True,
                cause=request.cause,
            )
            self._pending = _Pending(again, now, pending.reported_after, retried=True)
            if self._stats is not None:
                self._stats.request_sent(_KIND[request.request_type])
            self._out.append(again)
            return
        self._pending = None
        kind_of = request.request_type
        if kind_of is RequestType.TERMINATION:
            self._finish()
        elif kind_of is RequestType.INITIAL:
            if self._ccfh is Ccfh.CONTINUE:
                self._go_uncharged(now, "OCS unreachable, CCFH CONTINUE", admit=True)
            else:
                if not self._end_queued:
                    status, text = self._config.error_reject
                    self._out.append(RejectCall(status, text))
                self._finish()
        else:
            self._state = _State.OPEN
            if self._end_queued:
                self._send_termination(now)
            elif self._final:
                # RFC 4006 §5.7: during graceful termination a failure ends the service;
                # the final units already granted still run out first.
                self._validity_end = None
            elif self._ccfh is Ccfh.CONTINUE:
                self._go_uncharged(now, "OCS unreachable, CCFH CONTINUE", admit=False)
            else:
                self._end_call(now, EndReason.CHARGING_FAILURE)

    def _end_call(self, now: float, reason: EndReason, *, talk_end: float | None = None) -> None:
        """The session tears the call down; talk time stops at ``talk_end`` (default now)."""
        if self._ended_at is not None:
            return
        self._ended_at = now if talk_end is None else talk_end
        self._out.append(EndCall(reason))
        if reason is EndReason.CREDIT_EXHAUSTED:
            self._killed = True
            if self._stats is not None:
                self._stats.killed_calls += 1
        self._service_terminated(now, str(reason))

    def _service_terminated(self, now: float, cause: str) -> None:
        """RFC 4006 §7 'User service terminated'."""
        if self._end_cause is None:
            self._end_cause = cause
        state = self._state
        if state is _State.PENDING_I or state is _State.PENDING_U:
            self._end_queued = True  # RFC 4006 §7: queue the termination event
        elif state is _State.OPEN:
            self._send_termination(now)
        elif state is _State.UNCHARGED:
            if self._opened:
                self._send_termination(now)
            else:
                self._finish()
        # NEW: start() finishes at once; PENDING_T, DONE: the termination is on its way

    # -- requests --------------------------------------------------------------------------

    def _talk(self, now: float) -> float:
        if self._answered_at is None:
            return 0.0
        end = now if self._ended_at is None else min(now, self._ended_at)
        return max(0.0, end - self._answered_at)

    def _send_update(self, now: float) -> None:
        used = min(whole_seconds(self._talk(now) - self._reported), self._room())
        self._send(now, RequestType.UPDATE, self._config.interim_update_credits, used)

    def _send_termination(self, now: float) -> None:
        if self._terminated:
            return
        remainder = self._talk(now) - self._reported
        used = min(final_seconds(remainder, self._config.billing_rounding), self._room())
        self._terminated = True
        self._end_queued = False
        self._send(now, RequestType.TERMINATION, None, used, cause=self._end_cause)

    def _room(self) -> int:
        """Seconds that may still be reported without exceeding what was granted; no
        limit once the call talks on without credit control or past its grant with leave."""
        if self._state is _State.UNCHARGED or self._overrun_until is not None:
            return _NO_LIMIT
        return max(0, self._budget - self._reported)

    def _send(
        self,
        now: float,
        request_type: RequestType,
        requested: int | None,
        used: int | None,
        *,
        cause: str | None = None,
    ) -> None:
        number = self._next_number
        self._next_number += 1
        if used:
            self._reported += used
        request = SendCcr(
            request_type,
            number,
            requested,
            used,
            request_type is RequestType.TERMINATION,
            destination_host=self._destination_host,
            cause=cause,
        )
        self._pending = _Pending(request, now, self._reported)
        self._state = _PENDING_STATE[request_type]
        if self._stats is not None:
            self._stats.request_sent(_KIND[request_type])
        self._out.append(request)

    def _finish(self) -> None:
        if self._state is _State.DONE:
            return
        self._state = _State.DONE
        self._pending = None
        if self._stats is not None:
            self._stats.billed_secs += self._reported
        self._out.append(Finished(self._reported))

    def _drain(self) -> list[Action]:
        out, self._out = self._out, []
        return out


#: "no cap" for :meth:`RoSession._room` (more seconds than any call talks).
_NO_LIMIT = 2**62


def _int(value: Any) -> int:
    """An integer field of a snapshot (a bool or float is an error, not a number)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"expected an integer, not {value!r}")
    return value


def _opt_int(value: Any) -> int | None:
    return None if value is None else _int(value)


def _opt_float(value: Any) -> float | None:
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TypeError(f"expected a number, not {value!r}")
    return float(value)


def _opt_str(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"expected a string, not {value!r}")
    return value
