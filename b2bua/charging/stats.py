"""Charging statistics, named as Kamailio's ims_charging names them, sans-IO.

One :class:`ChargingStats` per process; every :class:`~b2bua.charging.session.RoSession`
given it updates it as requests go out and answers, failures and call ends come in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["EVENT_STAT_NAMES", "STAT_NAMES", "CcrKind", "ChargingStats"]

CcrKind = Literal["initial", "interim", "final"]

#: The 14 statistics, in Kamailio's order and spelling.
STAT_NAMES: tuple[str, ...] = (
    "initial_ccrs",
    "interim_ccrs",
    "final_ccrs",
    "successful_initial_ccrs",
    "successful_interim_ccrs",
    "successful_final_ccrs",
    "failed_initial_ccrs",
    "failed_interim_ccrs",
    "failed_final_ccrs",
    "ccr_avg_response_time",
    "ccr_responses_time",
    "ccr_timeouts",
    "billed_secs",
    "killed_calls",
)

#: Event charging (SIP MESSAGE, RFC 4006 §6), beyond Kamailio: every CCR of an event
#: (IEC's CCR-EVENT, ECUR's CCR-I and CCR-T), its outcome, units debited, events refused.
EVENT_STAT_NAMES: tuple[str, ...] = (
    "event_ccrs",
    "successful_event_ccrs",
    "failed_event_ccrs",
    "billed_events",
    "refused_events",
)


@dataclass(slots=True)
class ChargingStats:
    """Counters; ``ccr_avg_response_time`` is derived, as in Kamailio."""

    initial_ccrs: int = 0
    interim_ccrs: int = 0
    final_ccrs: int = 0
    successful_initial_ccrs: int = 0
    successful_interim_ccrs: int = 0
    successful_final_ccrs: int = 0
    failed_initial_ccrs: int = 0
    failed_interim_ccrs: int = 0
    failed_final_ccrs: int = 0
    ccr_responses_time: float = 0.0  # ms, summed over every answer received
    ccr_responses: int = 0  # answers received: the divisor of the average
    ccr_timeouts: int = 0
    billed_secs: int = 0
    killed_calls: int = 0
    event_ccrs: int = 0
    successful_event_ccrs: int = 0
    failed_event_ccrs: int = 0
    billed_events: int = 0  # service units of events reported used to the OCS
    refused_events: int = 0  # events answered with an error instead of being forwarded

    @property
    def ccr_avg_response_time(self) -> float:
        """Mean CCR round trip in ms over the answers received (0 before the first)."""
        return self.ccr_responses_time / self.ccr_responses if self.ccr_responses else 0.0

    def request_sent(self, kind: CcrKind) -> None:
        """A CCR of ``kind`` left (retransmissions to an alternate peer count too)."""
        if kind == "initial":
            self.initial_ccrs += 1
        elif kind == "interim":
            self.interim_ccrs += 1
        else:
            self.final_ccrs += 1

    def answer_received(self, kind: CcrKind, *, success: bool, elapsed_ms: float) -> None:
        """A CCA came back; ``success`` means a 2xxx Result-Code."""
        self.ccr_responses += 1
        self.ccr_responses_time += elapsed_ms
        if success:
            self._success(kind)
        else:
            self._failure(kind)

    def request_failed(self, kind: CcrKind, *, timeout: bool) -> None:
        """No answer: Tx expired (``timeout``), no peer, or the peer went down."""
        if timeout:
            self.ccr_timeouts += 1
        self._failure(kind)

    def event_answer_received(self, *, success: bool, elapsed_ms: float) -> None:
        """A CCA to an event's CCR came back; it counts in the response times too."""
        self.ccr_responses += 1
        self.ccr_responses_time += elapsed_ms
        if success:
            self.successful_event_ccrs += 1
        else:
            self.failed_event_ccrs += 1

    def event_request_failed(self, *, timeout: bool) -> None:
        """An event's CCR got no answer."""
        if timeout:
            self.ccr_timeouts += 1
        self.failed_event_ccrs += 1

    def snapshot(self) -> dict[str, float]:
        """The 14 statistics by name."""
        return {name: getattr(self, name) for name in STAT_NAMES}

    def event_snapshot(self) -> dict[str, float]:
        """The event charging statistics by name."""
        return {name: getattr(self, name) for name in EVENT_STAT_NAMES}

    def _success(self, kind: CcrKind) -> None:
        if kind == "initial":
            self.successful_initial_ccrs += 1
        elif kind == "interim":
            self.successful_interim_ccrs += 1
        else:
            self.successful_final_ccrs += 1

    def _failure(self, kind: CcrKind) -> None:
        if kind == "initial":
            self.failed_initial_ccrs += 1
        elif kind == "interim":
            self.failed_interim_ccrs += 1
        else:
            self.failed_final_ccrs += 1
