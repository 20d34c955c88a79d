"""Joins the call layer to the charging engine.

The call map tells its observers about every call; for a call whose route charges
(`charging = orig|term` in its ``[route:NAME]``), this controller builds the charging
context from the A-leg INVITE, asks the engine to open the Ro session, and HOLDS the
INVITE until the CCA-Initial decides (the caller already has its 100 Trying). The
engine answers through `CallControl`: admit (the B-leg INVITE leaves), reject (the
caller gets the mapped status), or end (BYE both legs with a Reason header).
"""

from __future__ import annotations

from typing import Any

from b2bua import logs
from b2bua.call.callmap import CallMap
from b2bua.call.events import CallObserver, EndReason
from b2bua.charging.engine import ChargingEngine
from b2bua.charging.messages import ContextError, RoSettings, context_from_invite

log = logs.logger(__name__)

#: What the engine's end reasons are for the call layer (CDRs, logs, Reason headers).
_END_REASONS = {
    "credit exhausted": EndReason.CREDIT_EXHAUSTED,
    "aborted by OCS": EndReason.OCS_ABORT,
    "ro_auth_expiry": EndReason.MAX_DURATION,
}


class ChargingController(CallObserver):
    """A `CallObserver` for the engine, and the engine's `CallControl` on the call map."""

    def __init__(self, calls: CallMap, settings: RoSettings, clock: Any) -> None:
        self._calls = calls
        self._settings = settings
        self._clock = clock
        self.engine: ChargingEngine | None = None
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
        if self.engine is not None:
            self.engine.call_answered(call.id)

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
