"""Overload control for new calls (sans-IO): refuse early, before any state or CCR.

A B2BUA that takes more calls than it can carry makes every call late, retransmitted and
eventually failed, and a prepaid one may open Ro sessions it then cannot close in time.
So an initial INVITE is refused with 503 and Retry-After (RFC 3261 §21.5.4) *before* a
call, a dialog or a CCR exists when either signal says the process is full:

* **rate**: a token bucket of ``max_call_rate`` new calls per second, holding at most one
  second's worth (the operator's measured capacity, see bench/README.md);
* **event-loop lag**: the glue runs a probe every :data:`PROBE_INTERVAL` seconds and
  reports how late it ran.  :data:`LATE_PROBES` probes in a row later than
  ``overload_lag`` mean the reactor cannot keep up with what arrives (one late probe is a
  hiccup, or a jump of a test's clock): new calls are refused until a probe runs less
  than half of it late (hysteresis), that is as soon as the load drops.

Calls in progress are never refused anything: only new INVITEs are screened.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LATE_PROBES", "PROBE_INTERVAL", "AdmissionController", "AdmissionStats"]

#: How often the glue measures the event loop's lag (s).
PROBE_INTERVAL = 0.05
#: Probes in a row later than overload_lag that mean overload.
LATE_PROBES = 3


@dataclass
class AdmissionStats:
    """What admission control decided (counters since start)."""

    refused_rate: int = 0
    refused_lag: int = 0
    overload_episodes: int = 0


class AdmissionController:
    """Decides, per new call, whether the process takes it; time comes in as ``now``."""

    __slots__ = (
        "_late",
        "_overloaded",
        "_stamp",
        "_tokens",
        "lag",
        "max_call_rate",
        "overload_lag",
        "stats",
    )

    def __init__(self, max_call_rate: float = 0.0, overload_lag: float = 0.0) -> None:
        self.max_call_rate = max_call_rate
        self.overload_lag = overload_lag
        self.stats = AdmissionStats()
        #: How late the last probe ran (s).
        self.lag = 0.0
        self._late = 0
        self._overloaded = False
        self._tokens = max_call_rate
        self._stamp: float | None = None

    @property
    def overloaded(self) -> bool:
        """Whether the lag signal currently refuses new calls."""
        return self._overloaded

    def observe_lag(self, lag: float) -> None:
        """The probe ran ``lag`` seconds late: update the overload state."""
        self.lag = lag = max(0.0, lag)
        limit = self.overload_lag
        if not limit:
            return
        self._late = self._late + 1 if lag > limit else 0
        if not self._overloaded and self._late >= LATE_PROBES:
            self._overloaded = True
            self.stats.overload_episodes += 1
        elif self._overloaded and lag < limit / 2:
            self._overloaded = False

    def admit(self, now: float) -> str | None:
        """None to take a new call now; else the reason phrase of its 503."""
        if self._overloaded:
            self.stats.refused_lag += 1
            return "Overloaded"
        rate = self.max_call_rate
        if rate:
            if self._stamp is not None:
                self._tokens = min(rate, self._tokens + (now - self._stamp) * rate)
            self._stamp = now
            if self._tokens < 1.0:
                self.stats.refused_rate += 1
                return "Call Rate Exceeded"
            self._tokens -= 1.0
        return None
