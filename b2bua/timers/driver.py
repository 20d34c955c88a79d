"""Twisted glue for the timer wheel: one ``IReactorTime.callLater`` for all timers.

The driver keeps a single delayed call armed at the wheel's exact earliest deadline (not
rounded to a slot: charging ends a call on the instant a grant is used up). It re-arms only
when that earliest deadline changes; scheduling a later timer does not touch the reactor.
A cancelled earliest timer is not chased: the armed call fires, finds nothing due, and
re-arms for what is left, which is cheaper than cancelling reactor calls on every cancel.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from b2bua.timers.wheel import TimerHandle, TimerWheel

__all__ = ["WheelDriver"]


class WheelDriver:
    """Drive a :class:`TimerWheel` from a reactor clock (a ``task.Clock`` in tests)."""

    log = Logger()

    def __init__(self, wheel: TimerWheel, clock: IReactorTime) -> None:
        self._wheel = wheel
        self._clock = clock
        self._call: IDelayedCall | None = None
        self._armed_at: float | None = None
        self._firing = False
        self._stopped = False

    @property
    def wheel(self) -> TimerWheel:
        """The wheel being driven."""
        return self._wheel

    @property
    def armed_at(self) -> float | None:
        """The deadline the reactor call is armed for, if any."""
        return self._armed_at

    def seconds(self) -> float:
        """The driving clock's current time."""
        return self._clock.seconds()

    def schedule(
        self, deadline: float, callback: Callable[..., object], *args: object
    ) -> TimerHandle:
        """Schedule on the wheel; re-arm the reactor only if this is the new earliest."""
        handle = self._wheel.schedule(deadline, callback, *args)
        if not self._firing and (self._armed_at is None or deadline < self._armed_at):
            self.rearm()
        return handle

    def call_later(
        self, delay: float, callback: Callable[..., object], *args: object
    ) -> TimerHandle:
        """Like ``IReactorTime.callLater``, on the wheel."""
        return self.schedule(self._clock.seconds() + delay, callback, *args)

    def rearm(self) -> None:
        """Arm the reactor for the wheel's earliest deadline (no-op if already armed so)."""
        if self._stopped or self._firing:
            return
        due = self._wheel.next_deadline()
        if self._call is not None:
            if due == self._armed_at and self._call.active():
                return
            if self._call.active():
                self._call.cancel()
            self._call = None
            self._armed_at = None
        if due is None:
            return
        delay = max(0.0, due - self._clock.seconds())
        self._armed_at = due
        self._call = self._clock.callLater(delay, self._fire)

    def start(self) -> None:
        """Resume after :meth:`stop`."""
        self._stopped = False
        self.rearm()

    def stop(self) -> None:
        """Disarm the reactor call; the wheel keeps its timers, none will run."""
        self._stopped = True
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        self._armed_at = None

    def _fire(self) -> None:
        self._call = None
        self._armed_at = None
        self._firing = True
        try:
            self._wheel.expire(self._clock.seconds(), on_error=self._callback_failed)
        finally:
            self._firing = False
            self.rearm()

    def _callback_failed(self, handle: TimerHandle, exc: Exception) -> None:
        """A failing callback is logged; the wheel goes on with the next timer.

        The wheel calls this inside its ``except`` block, so ``log.failure`` captures the
        exception with its traceback.
        """
        self.log.failure(
            "timer callback {callback!r} due at {deadline} failed: {error}",
            error=exc,
            callback=handle.callback,
            deadline=handle.deadline,
        )
