"""Joins the call layer to the charging engine.

The call map tells its observers about every call; for a call whose route charges
(`charging = orig|term` in its ``[route:NAME]``), this controller builds the charging
context from the A-leg INVITE, asks the engine to open the Ro session, and HOLDS the
INVITE until the CCA-Initial decides (the caller already has its 100 Trying). The
engine answers through `CallControl`: admit (the B-leg INVITE leaves), reject (the
caller gets the mapped status), or end (BYE both legs with a Reason header).

For MESSAGE it does the same with the event charger, and keeps the event's figures on
the relayed message (:func:`event_figures`) at each verdict and once its CCR-T left, so
that the MESSAGE's CDR, written when the sender has its answer, can read them.
"""

from __future__ import annotations

from typing import Any

from b2bua import logs
from b2bua.call.callmap import CallMap
from b2bua.call.events import CallObserver, EndReason, Side
from b2bua.call.relay import MessageObserver, RelayedMessage
from b2bua.charging.engine import ChargingEngine
from b2bua.charging.event import EventMode
from b2bua.charging.messages import (
    ContextError,
    RoSettings,
    context_for_message,
    context_from_invite,
    with_video,
)
from b2bua.charging.messaging import EventCharger, EventFigures
from b2bua.charging.sdp import has_active_video

log = logs.logger(__name__)

#: Call.data key: the last SDP each side sent (media_changed compares offer and answer).
_SDP = "charging.sdp"
#: RelayedMessage.data key: the event's latest EventFigures.
_EVENT = "charging.event"


def event_figures(message: RelayedMessage) -> EventFigures | None:
    """What charging knew of a relayed MESSAGE last (None: it was not charged)."""
    figures = message.data.get(_EVENT)
    return figures if isinstance(figures, EventFigures) else None


#: What the engine's end reasons are for the call layer (CDRs, logs, Reason headers).
_END_REASONS = {
    "credit exhausted": EndReason.CREDIT_EXHAUSTED,
    "aborted by OCS": EndReason.OCS_ABORT,
    "ro_auth_expiry": EndReason.MAX_DURATION,
}


class ChargingController(CallObserver, MessageObserver):
    """A `CallObserver` for the engine, and the engine's `CallControl` on the call map;
    for MESSAGE, a `MessageObserver` for the event charger and its `EventControl`."""

    def __init__(self, calls: CallMap, settings: RoSettings, clock: Any) -> None:
        self._calls = calls
        self._settings = settings
        self._clock = clock
        self.engine: ChargingEngine | None = None
        self.events: EventCharger | None = None
        self._receiving: str | None = None  # the call inside call_received, if any
        self._admitted_at_once = False

    # -- call side -> engine --

    def call_received(self, call: Any) -> bool:
        route = call.route
        if route is None or route.charging == "off" or self.engine is None:
            return False
        try:
            context = context_from_invite(
                call.invite,
                direction=route.charging,
                settings=self._settings,
                now=self._clock.seconds(),
                incoming_trunk_id=route.incoming_trunk_id or None,
                outgoing_trunk_id=route.outgoing_trunk_id or None,
            )
        except ContextError as err:
            log.info("call {call}: not chargeable ({error}): refused", call=call.id, error=err)
            self._calls.reject(call, 403, "Forbidden", f'SIP;cause=403;text="{err}"')
            return True
        # The engine may decide at once (no peer and CCFH CONTINUE): then there is
        # nothing to hold, and returning False lets the call map send the B-leg.
        self._receiving, self._admitted_at_once = call.id, False
        try:
            units = route.reservation_units or None  # 0: the [charging] default
            self.engine.start_call(call.id, context, reservation_units=units)
        finally:
            self._receiving = None
        return not self._admitted_at_once

    def call_answered(self, call: Any) -> None:
        if self.engine is None:
            return
        self.engine.call_answered(call.id)
        offer = call.invite.body
        sdp = {Side.A: offer, Side.B: call.answer_sdp}
        call.data[_SDP] = sdp
        if not offer and call.answer_sdp:
            # Late offer: the CCR-I went out before any SDP was seen (as voice); the 2xx
            # brings the offer, so the call switches to video now if it has video.
            self._rate_media(call, has_active_video(call.answer_sdp))

    def media_changed(self, call: Any, side: Side, body: bytes) -> None:
        """A re-INVITE/UPDATE succeeded: the call is video when offer and answer both keep
        an active video stream; a change of that switches the Rating-Group now, at the 2xx
        (the media are agreed then, not at the offer)."""
        if self.engine is None:
            return
        sdp = call.data.get(_SDP)
        if not isinstance(sdp, dict):
            sdp = call.data[_SDP] = {Side.A: call.invite.body, Side.B: call.answer_sdp}
        sdp[side] = body
        parts = [part for part in sdp.values() if part]
        video = bool(parts) and all(has_active_video(part) for part in parts)
        self._rate_media(call, video)

    def _rate_media(self, call: Any, video: bool) -> None:
        assert self.engine is not None
        settings = self._settings
        self.engine.media_changed(call.id, lambda context: with_video(context, settings, video))

    def call_ended(self, call: Any) -> None:
        if self.engine is None:
            return
        cancelled = call.end_reason is EndReason.CANCELLED
        self.engine.call_ended(
            call.id,
            str(call.end_reason),
            sip_method="CANCEL" if cancelled else "BYE",
            cause_code=call.end_status if call.answered_at is None else None,
        )

    # -- engine -> call side (CallControl) --

    def admit(self, call_id: str) -> None:
        if call_id == self._receiving:
            self._admitted_at_once = True
            return
        call = self._calls.get(call_id)
        if call is not None:
            self._calls.admit(call)

    def reject(self, call_id: str, status: int, reason: str, reason_header: str) -> None:
        call = self._calls.get(call_id)
        if call is not None:
            self._calls.reject(call, status, reason, reason_header)

    def end(self, call_id: str, reason: str, reason_header: str) -> None:
        call = self._calls.get(call_id)
        if call is not None:
            call.end(_END_REASONS.get(reason, EndReason.ERROR), reason_header)

    # -- MESSAGE -> event charger --

    def message_received(self, message: RelayedMessage) -> bool:
        route = message.route
        if route.event_charging == "off" or self.events is None:
            return False
        try:
            context = context_for_message(
                message.request,
                direction=route.event_charging,
                settings=self._settings,
                now=self._clock.seconds(),
                incoming_trunk_id=route.incoming_trunk_id or None,
                outgoing_trunk_id=route.outgoing_trunk_id or None,
            )
        except ContextError as err:
            log.info("message {id}: not chargeable ({error}): refused", id=message.id, error=err)
            self._calls.messages.refuse(message.id, 403, "Forbidden", f'SIP;cause=403;text="{err}"')
            return True
        # The relay counts a verdict given from inside this hook against the hold.
        self.events.charge(message.id, context, EventMode(route.event_charging_mode))
        return True

    def message_done(self, message: RelayedMessage, status: int | None) -> None:
        if self.events is not None:
            self.events.delivered(message.id, status)
            self._keep_figures(message)  # ECUR: the CCR-T has left with the units used

    def _keep_figures(self, message: RelayedMessage | None) -> None:
        """Keep the event's figures on the message while the charger still has them."""
        if message is None or self.events is None:
            return
        figures = self.events.figures_of(message.id)
        if figures is not None:
            message.data[_EVENT] = figures

    # -- event charger -> relay (EventControl) --

    def forward(self, event_id: str, charged: bool) -> None:
        self._keep_figures(self._calls.messages.get(event_id))
        self._calls.messages.forward(event_id, charged)

    def refuse(self, event_id: str, status: int, reason: str, reason_header: str) -> None:
        self._keep_figures(self._calls.messages.get(event_id))
        self._calls.messages.refuse(event_id, status, reason, reason_header)
