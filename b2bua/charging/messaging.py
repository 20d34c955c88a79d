"""Charged events (SIP MESSAGE): every live :class:`~b2bua.charging.event.EventSession`,
joined to the message relay and to Diameter.

Glue, like :mod:`b2bua.charging.engine` for calls: the relay asks :meth:`EventCharger.charge`
before forwarding an out-of-dialog MESSAGE, and hears the verdict through
:class:`EventControl` (forward it, or refuse it with a SIP status and a Reason header); for
ECUR it reports the next hop's final answer with :meth:`EventCharger.delivered`. CCRs are
built by :func:`~b2bua.charging.messages.build_event_ccr` and sent with the engine's
Diameter client; answers and failures go back to the session. A CCR-T that no peer took,
even on the retry, is handed to ``keep_termination`` (the engine's resend queue), so an
opened ECUR session always ends with its one CCR-T. Nothing escapes to the reactor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from twisted.internet.defer import fail
from twisted.python.failure import Failure

from b2bua.charging.engine import (
    Classifier,
    DiameterClient,
    RoIdentity,
    classify_failure,
    reason_header,
)
from b2bua.charging.event import (
    EventAction,
    EventCcr,
    EventFinished,
    EventMode,
    EventRequestType,
    EventSession,
    ForwardEvent,
    RefuseEvent,
)
from b2bua.charging.messages import (
    ChargingContext,
    MalformedAnswer,
    build_event_ccr,
    parse_event_cca,
)
from b2bua.charging.session import ChargingConfig, RequestFailure
from b2bua.charging.stats import ChargingStats
from b2bua.diameter.message import Message
from b2bua.logs import logger
from b2bua.timers.driver import WheelDriver

__all__ = ["EventCharger", "EventControl", "EventFigures"]

log = logger(__name__)


class EventControl(Protocol):
    """What the charger asks of the message relay; events are named by the relay's id."""

    def forward(self, event_id: str, charged: bool) -> None:
        """Charging allows the event: send it to the next hop."""
        ...

    def refuse(self, event_id: str, status: int, reason: str, reason_header: str) -> None:
        """Answer the sender ``status reason`` with a Reason header (RFC 3326)."""
        ...


KeepTermination = Callable[[str, str, Message], object]


@dataclass(frozen=True, slots=True)
class EventFigures:
    """What charging knows of one event (its CDR's figures)."""

    session_id: str
    result_code: int | None  # of the last CCA read; None: no answer (yet)
    units: int  # debited by the CCR-EVENT, or reported used by the CCR-T (ECUR)


@dataclass(eq=False, slots=True)
class _Event:
    session_id: str
    event_id: str
    context: ChargingContext
    session: EventSession
    token: int = 0
    in_flight: tuple[EventCcr, Message] | None = None
    last_sent: tuple[int, Message] | None = None
    decided: bool = False  # forward or refuse went out
    result_code: int | None = None  # of the last CCA read


class EventCharger:
    """Every charged event in progress (see the module docstring)."""

    def __init__(
        self,
        *,
        client: DiameterClient,
        control: EventControl,
        driver: WheelDriver,
        identity: RoIdentity,
        session_ids: Callable[[], str],
        config: ChargingConfig | None = None,
        stats: ChargingStats | None = None,
        continue_on_failure: bool = False,
        classify: Classifier = classify_failure,
        keep_termination: KeepTermination | None = None,
    ) -> None:
        self._client = client
        self._control = control
        self._driver = driver
        self._identity = identity
        self._session_ids = session_ids
        self._config = config if config is not None else ChargingConfig()
        self.stats = stats if stats is not None else ChargingStats()
        self._continue = continue_on_failure
        self._classify = classify
        self._keep = keep_termination
        self._events: dict[str, _Event] = {}

    @property
    def active_events(self) -> int:
        """Events whose charging is not finished (a gauge)."""
        return len(self._events)

    def figures_of(self, event_id: str) -> EventFigures | None:
        """The figures of an event whose charging is not finished; None otherwise."""
        event = self._events.get(event_id)
        if event is None:
            return None
        return EventFigures(event.session_id, event.result_code, event.session.debited)

    def charge(
        self, event_id: str, context: ChargingContext, mode: EventMode, *, units: int = 1
    ) -> str | None:
        """Charge the event ``event_id`` before it is forwarded; the verdict comes later.

        Returns the Session-Id, or None when charging could not start (the event was
        refused with the configured error answer).
        """
        try:
            session = EventSession(
                mode,
                self._config,
                units=units,
                continue_on_failure=self._continue,
                stats=self.stats,
            )
            event = _Event(self._session_ids(), event_id, context, session)
            self._events[event_id] = event
            self._feed(event, session.start(self._driver.seconds()))
            return event.session_id
        except Exception:
            log.failure("event {event_id}: charging could not start", event_id=event_id)
            self._events.pop(event_id, None)
            status, text = self._config.error_reject
            self._notify(self._control.refuse, event_id, status, text, reason_header(status, text))
            return None

    def delivered(self, event_id: str, status: int | None) -> None:
        """ECUR: the next hop answered ``status`` (None: timeout or transport error)."""
        try:
            event = self._events.get(event_id)
            if event is not None:
                self._feed(event, event.session.on_delivered(self._driver.seconds(), status))
        except Exception:
            log.failure("event {event_id}: delivery not handled", event_id=event_id)

    # -- carrying out actions -------------------------------------------------------------

    def _feed(self, event: _Event, actions: list[EventAction]) -> None:
        for action in actions:
            try:
                self._act(event, action)
            except Exception:
                log.failure(
                    "event {event_id}: {action!r} failed", event_id=event.event_id, action=action
                )

    def _act(self, event: _Event, action: EventAction) -> None:
        if isinstance(action, EventCcr):
            self._send(event, action)
        elif isinstance(action, ForwardEvent):
            event.decided = True
            self._notify(self._control.forward, event.event_id, action.charged)
        elif isinstance(action, RefuseEvent):
            event.decided = True
            header = reason_header(action.sip_status, action.reason)
            self._notify(
                self._control.refuse, event.event_id, action.sip_status, action.reason, header
            )
        elif isinstance(action, EventFinished):
            self._finished(event, action)

    def _finished(self, event: _Event, action: EventFinished) -> None:
        if self._events.get(event.event_id) is event:
            del self._events[event.event_id]
        if action.unsent_termination and event.last_sent is not None:
            if self._keep is not None:
                self._keep(event.session_id, event.event_id, event.last_sent[1])
            else:
                log.error("event session {session_id}: CCR-T lost", session_id=event.session_id)
        log.debug(
            "event session {session_id} ({event_id}) finished, {units} unit(s) debited",
            session_id=event.session_id,
            event_id=event.event_id,
            units=action.debited,
        )

    def _notify(self, method: Callable[..., object], *args: object) -> None:
        try:
            method(*args)
        except Exception:
            log.failure("message relay failed in {method}{args!r}", method=method, args=args)

    # -- requests and answers -------------------------------------------------------------

    def _send(self, event: _Event, send: EventCcr) -> None:
        identity = self._identity
        now = self._driver.seconds()
        try:
            message = build_event_ccr(
                event.context,
                send,
                session_id=event.session_id,
                origin_host=identity.origin_host,
                origin_realm=identity.origin_realm,
                destination_realm=identity.destination_realm,
                destination_host=identity.destination_host,
                now=now,
            )
        except Exception:
            log.failure("event session {session_id}: CCR not built", session_id=event.session_id)
            self._feed(event, event.session.on_request_failed(now, RequestFailure.NO_PEER))
            return
        previous = event.last_sent
        if send.retry and previous is not None and previous[0] == send.request_number:
            message.end_to_end = previous[1].end_to_end  # RFC 6733 §5.5.4: same request
        event.last_sent = (send.request_number, message)
        event.token += 1
        token = event.token
        event.in_flight = (send, message)
        destination = None if send.retry else (send.destination_host or identity.destination_host)
        try:
            answer = self._client.send_request(message, destination_host=destination)
        except Exception as error:
            answer = fail(error)
        answer.addCallbacks(
            self._answered, self._failed, callbackArgs=(event, token), errbackArgs=(event, token)
        )
        answer.addErrback(self._unhandled, event.session_id)

    def _current(self, event: _Event, token: int) -> bool:
        return event.token == token and event.in_flight is not None

    def _answered(self, message: Message, event: _Event, token: int) -> None:
        if not self._current(event, token):
            return
        event.in_flight = None
        now = self._driver.seconds()
        try:
            answer = parse_event_cca(message, rating_group=event.context.rating_group)
        except MalformedAnswer as error:
            log.warn(
                "event session {session_id}: unusable CCA: {error}",
                session_id=event.session_id,
                error=error,
            )
            actions = event.session.on_request_failed(now, RequestFailure.TEMPORARY_ERROR)
        else:
            event.result_code = answer.result_code
            actions = event.session.on_answer(now, answer)
        self._feed(event, actions)

    def _failed(self, failure: Failure, event: _Event, token: int) -> None:
        if not self._current(event, token):
            return
        assert event.in_flight is not None
        sent = event.in_flight[0]
        event.in_flight = None
        error = failure.value
        kind = self._classify(error) if error is not None else RequestFailure.NO_PEER
        log.warn(
            "event session {session_id}: {type} CCR {number} failed: {kind} ({error})",
            session_id=event.session_id,
            type=EventRequestType(sent.request_type).name,
            number=sent.request_number,
            kind=kind.name,
            error=error,
        )
        self._feed(event, event.session.on_request_failed(self._driver.seconds(), kind))

    def _unhandled(self, failure: Failure, session_id: str) -> None:
        log.failure(
            "event session {session_id}: answer handling failed",
            failure=failure,
            session_id=session_id,
        )
