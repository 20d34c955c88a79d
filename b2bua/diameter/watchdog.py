"""RFC 3539 section 3.4 / appendix A application-layer watchdog, sans-IO.

One :class:`Watchdog` per peer.  It owns the single timer Tw (Twinit 30 s
with +-2 s jitter from an injected random source) and returns actions named
after the RFC pseudo-code: SendWatchdog, Failover, Failback,
CloseConnection, AttemptOpen.  The caller sends the DWR, moves pending
requests, closes or reopens the transport, and calls :meth:`on_timer` when
:meth:`next_deadline` has passed.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable

__all__ = ["TWINIT_DEFAULT", "TWINIT_MIN", "Watchdog", "WatchdogAction", "WatchdogState"]

TWINIT_DEFAULT = 30.0  # RFC 3539 3.4.1 [1]
TWINIT_MIN = 6.0  # "MUST NOT be set lower than this"
JITTER = 2.0  # "randomly adding a value drawn between -2 and 2 seconds"
REOPEN_DWAS = 3  # 3.4.1 [5]: three watchdog exchanges before returning to service


class WatchdogState(enum.Enum):
    """Connection status of appendix A."""

    INITIAL = "INITIAL"
    OKAY = "OKAY"
    SUSPECT = "SUSPECT"
    DOWN = "DOWN"
    REOPEN = "REOPEN"


class WatchdogAction(enum.Enum):
    """What the caller must do, named after the appendix A procedures."""

    SEND_WATCHDOG = "SendWatchdog"  # send a DWR
    FAILOVER = "Failover"  # resend pending requests elsewhere (T bit)
    FAILBACK = "Failback"  # the peer may take new requests again
    CLOSE_CONNECTION = "CloseConnection"
    ATTEMPT_OPEN = "AttemptOpen"


_S = WatchdogState
_A = WatchdogAction


class Watchdog:
    """The appendix A state machine; all times are caller-supplied ``now`` values."""

    __slots__ = ("_deadline", "_rand", "num_dwa", "pending", "state", "tw_init")

    def __init__(
        self,
        now: float,
        *,
        tw_init: float = TWINIT_DEFAULT,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if tw_init < TWINIT_MIN:
            raise ValueError(f"Twinit {tw_init} below the RFC 3539 minimum of 6 s")
        self.tw_init = tw_init
        self._rand = rand
        self.state = _S.INITIAL
        self.pending = False
        self.num_dwa = 0
        self._deadline = 0.0
        self._set_watchdog(now)

    # -- helpers -------------------------------------------------------------
    def _set_watchdog(self, now: float) -> None:
        """SetWatchdog(): Tw = Twinit - 2 + 4 * random()."""
        self._deadline = now + self.tw_init - JITTER + 2 * JITTER * self._rand()

    def next_deadline(self) -> float:
        """When :meth:`on_timer` must next be called."""
        return self._deadline

    @property
    def usable(self) -> bool:
        """True when new requests may be sent to this peer (state OKAY)."""
        return self.state is _S.OKAY

    # -- events --------------------------------------------------------------
    def on_receive(self, now: float, is_dwa: bool) -> list[WatchdogAction]:
        """OnReceive(): any message from the peer, DWA or not."""
        if is_dwa:
            self.pending = False
        state = self.state
        if state is _S.OKAY:
            self._set_watchdog(now)
            return []
        if state is _S.SUSPECT:
            self.state = _S.OKAY
            self._set_watchdog(now)
            return [_A.FAILBACK]
        if state is _S.REOPEN and is_dwa:
            self.num_dwa += 1
            if self.num_dwa == REOPEN_DWAS:
                self.state = _S.OKAY
                return [_A.FAILBACK]
        # REOPEN non-DWA, INITIAL, DOWN: Throwaway()
        return []

    def on_timer(self, now: float) -> list[WatchdogAction]:
        """OnTimerElapsed(); does nothing before :meth:`next_deadline`."""
        if now < self._deadline:
            return []
        state = self.state
        if state is _S.OKAY:
            if not self.pending:
                self.pending = True
                self._set_watchdog(now)
                return [_A.SEND_WATCHDOG]
            self.state = _S.SUSPECT
            self._set_watchdog(now)
            return [_A.FAILOVER]
        if state is _S.SUSPECT:
            self.state = _S.DOWN
            self._set_watchdog(now)
            return [_A.CLOSE_CONNECTION]
        if state is _S.REOPEN:
            if not self.pending:
                self.pending = True
                self._set_watchdog(now)
                return [_A.SEND_WATCHDOG]
            self._set_watchdog(now)
            if self.num_dwa < 0:
                self.state = _S.DOWN
                return [_A.CLOSE_CONNECTION]
            self.num_dwa = -1
            return []
        # INITIAL, DOWN
        self._set_watchdog(now)
        return [_A.ATTEMPT_OPEN]

    def on_connection_up(self, now: float) -> list[WatchdogAction]:
        """OnConnectionUp(): CER/CEA completed on a new transport connection."""
        state = self.state
        if state is _S.INITIAL:
            self.state = _S.OKAY
            self.pending = False
            self._set_watchdog(now)
            return []
        if state is _S.DOWN:
            self.state = _S.REOPEN
            self.num_dwa = 0
            self.pending = True
            self._set_watchdog(now)
            return [_A.SEND_WATCHDOG]
        return []

    def on_connection_down(self, now: float) -> list[WatchdogAction]:
        """OnConnectionDown(): the transport closed or failed."""
        state = self.state
        if state in (_S.INITIAL, _S.DOWN):
            return []
        self.state = _S.DOWN
        self.pending = False
        self._set_watchdog(now)
        if state is _S.OKAY:
            return [_A.CLOSE_CONNECTION, _A.FAILOVER]
        return [_A.CLOSE_CONNECTION]
