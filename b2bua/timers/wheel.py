"""One hashed timing wheel per process (Varghese and Lauck, scheme 6), sans-IO.

Every SIP transaction timer, Diameter Tx timer and charging deadline of the process lives
here, so the reactor holds a single delayed call (see :mod:`b2bua.timers.driver`) instead of
one per timer.

Design:

* A timer's *tick* is ``floor(deadline / resolution)``. Timers are hashed into
  ``slots`` buckets by ``tick % slots``; inside a bucket they are grouped by tick, so timers
  that are whole revolutions apart never have to be looked at together. Many small dicts
  also keep a rehash from stalling the reactor the way one dict of 100,000 keys would.
* A min-heap holds the occupied ticks, so :meth:`TimerWheel.next_deadline` and
  :meth:`TimerWheel.expire` never walk empty slots, however far time jumps.
  A tick is pushed when its group is created; groups emptied by cancellation leave a
  stale heap entry that is skipped when it surfaces; the heap is filtered when stale
  entries outnumber live ones (and emptied when the wheel is), so memory stays bounded
  by the live timers.
* Deadlines are kept exactly; the tick only chooses the bucket. A timer never fires
  before its deadline (``deadline <= now``), so charging can end a call on the exact
  sub-second instant a grant runs out.

Schedule and cancel are O(1) (plus an O(log n) heap push the first time a tick is used);
the exact earliest deadline is cached, and recomputed from the earliest tick group only
when the cached timer is cancelled or fired.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from operator import attrgetter

__all__ = ["ErrorHandler", "TimerHandle", "TimerWheel"]

#: Called with the handle and the exception when a callback raises during ``expire``.
ErrorHandler = Callable[["TimerHandle", Exception], None]

_ORDER = attrgetter("deadline", "seq")


class TimerHandle:
    """One scheduled call; :meth:`cancel` it to stop it from running."""

    __slots__ = ("_wheel", "args", "callback", "deadline", "seq", "tick")

    def __init__(
        self,
        wheel: TimerWheel,
        deadline: float,
        tick: int,
        seq: int,
        callback: Callable[..., object],
        args: tuple[object, ...],
    ) -> None:
        self._wheel: TimerWheel | None = wheel
        self.deadline = deadline
        self.tick = tick
        self.seq = seq
        self.callback = callback
        self.args = args

    @property
    def active(self) -> bool:
        """True until the timer has run or been cancelled."""
        return self._wheel is not None

    def cancel(self) -> None:
        """Stop the timer; O(1), and harmless if it already ran or was cancelled."""
        wheel = self._wheel
        if wheel is not None:
            self._wheel = None
            wheel._remove(self)  # the wheel and its handles are one unit

    def __repr__(self) -> str:
        state = "active" if self.active else "inactive"
        return f"<TimerHandle {self.deadline!r} {self.callback!r} {state}>"


class TimerWheel:
    """A hashed timing wheel with exact deadlines.

    ``expire(now)`` runs every timer that was pending when it was called and whose
    deadline is ``<= now``, in (deadline, scheduling order) order. Timers scheduled by
    those callbacks run in a *later* ``expire`` call even when already due, the way the
    reactor defers a ``callLater(0)`` made by a timed call: a callback that reschedules
    itself for "now" can never starve I/O. The driver re-arms for them at once.
    """

    __slots__ = (
        "_cached_next",
        "_firing",
        "_heap",
        "_live",
        "_mask",
        "_next_valid",
        "_resolution",
        "_seq",
        "_slots",
        "_ticks",
    )

    def __init__(self, resolution: float = 0.1, slots: int = 4096) -> None:
        if not resolution > 0 or not math.isfinite(resolution):
            raise ValueError(f"resolution must be a positive number, not {resolution!r}")
        if slots < 1 or slots & (slots - 1):
            raise ValueError(f"slots must be a power of two, not {slots!r}")
        self._resolution = float(resolution)
        self._mask = slots - 1
        self._slots: list[dict[int, dict[TimerHandle, None]]] = [{} for _ in range(slots)]
        self._heap: list[int] = []
        self._ticks = 0  # occupied tick groups
        self._live = 0
        self._seq = 0
        # Handles taken out of their buckets by a running expire(), not yet run.
        self._firing: list[TimerHandle] = []
        self._cached_next: float | None = None
        self._next_valid = True

    @property
    def resolution(self) -> float:
        """Seconds per tick."""
        return self._resolution

    def __len__(self) -> int:
        """Number of live (scheduled, not yet run, not cancelled) timers."""
        return self._live

    def schedule(
        self, deadline: float, callback: Callable[..., object], *args: object
    ) -> TimerHandle:
        """Run ``callback(*args)`` at the first ``expire(now)`` with ``now >= deadline``.

        A deadline in the past is allowed: the timer runs at the next ``expire``.
        """
        if not math.isfinite(deadline):
            raise ValueError(f"deadline must be a finite number, not {deadline!r}")
        tick = math.floor(deadline / self._resolution)
        handle = TimerHandle(self, deadline, tick, self._seq, callback, args)
        self._seq += 1
        self._live += 1
        self._insert(handle)
        if self._next_valid and (self._cached_next is None or deadline < self._cached_next):
            self._cached_next = deadline
        return handle

    def next_deadline(self) -> float | None:
        """The exact earliest deadline of a live timer, or None when there is none."""
        if not self._next_valid:
            self._cached_next = self._compute_next()
            self._next_valid = True
        return self._cached_next

    def expire(self, now: float, on_error: ErrorHandler | None = None) -> int:
        """Run the due timers (see the class docstring); return how many ran.

        A callback that raises is reported to ``on_error`` (called inside the ``except``
        block, so ``Logger.failure`` can capture the traceback) and the next timer runs.
        Without ``on_error`` the exception propagates, and the timers not yet run go back
        into the wheel untouched, so the next ``expire`` picks them up. Not reentrant: a
        callback must not call ``expire``.
        """
        due = self._take_due(now)
        if not due:
            return 0
        self._firing = due
        self._next_valid = False
        ran = 0
        index = 0
        try:
            while index < len(due):
                handle = due[index]
                index += 1
                if handle._wheel is None:  # cancelled by an earlier callback
                    continue
                handle._wheel = None
                self._live -= 1
                self._next_valid = False  # a callback may have asked next_deadline()
                ran += 1
                try:
                    handle.callback(*handle.args)
                except Exception as exc:
                    if on_error is None:
                        raise
                    on_error(handle, exc)
        finally:
            self._firing = []
            for handle in due[index:]:
                if handle._wheel is not None:
                    self._insert(handle)
            self._next_valid = False
        return ran

    # -- internals ---------------------------------------------------------------------

    def _insert(self, handle: TimerHandle) -> None:
        slot = self._slots[handle.tick & self._mask]
        group = slot.get(handle.tick)
        if group is None:
            group = slot[handle.tick] = {}
            self._ticks += 1
            heapq.heappush(self._heap, handle.tick)
            if len(self._heap) > 2 * self._ticks + 64:
                self._rebuild_heap()
        group[handle] = None

    def _remove(self, handle: TimerHandle) -> None:
        """Called by :meth:`TimerHandle.cancel` on a handle that was still active."""
        self._live -= 1
        slot = self._slots[handle.tick & self._mask]
        group = slot.get(handle.tick)
        if group is not None and handle in group:
            del group[handle]
            if not group:
                del slot[handle.tick]
                self._ticks -= 1
                if not self._ticks:
                    self._heap.clear()  # every entry is stale: drop them in O(1)
        # else: it sits in the list a running expire() took out; that loop skips it.
        cached = self._cached_next
        if self._next_valid and cached is not None and handle.deadline <= cached:
            self._next_valid = False

    def _rebuild_heap(self) -> None:
        """Drop stale and duplicate heap entries; O(len(heap)), amortized O(1) per push."""
        slots, mask = self._slots, self._mask
        self._heap = list({tick for tick in self._heap if tick in slots[tick & mask]})
        heapq.heapify(self._heap)

    def _compute_next(self) -> float | None:
        best: float | None = None
        for handle in self._firing:
            if handle._wheel is not None:  # sorted: the first live one is the earliest
                best = handle.deadline
                break
        heap = self._heap
        while heap:
            tick = heap[0]
            group = self._slots[tick & self._mask].get(tick)
            if group is None:
                heapq.heappop(heap)  # stale: emptied by cancellation or already run
                continue
            earliest = min(h.deadline for h in group)
            return earliest if best is None else min(best, earliest)
        return best

    def _take_due(self, now: float) -> list[TimerHandle]:
        """Take every due timer out of the wheel, in (deadline, seq) order."""
        heap = self._heap
        now_tick = math.floor(now / self._resolution)
        due: list[TimerHandle] = []
        keep: list[int] = []
        while heap and heap[0] <= now_tick:
            tick = heapq.heappop(heap)
            slot = self._slots[tick & self._mask]
            group = slot.get(tick)
            if group is None:
                continue  # stale entry
            ready = [h for h in group if h.deadline <= now]
            if len(ready) == len(group):
                del slot[tick]
                self._ticks -= 1
            else:
                # Only possible in the tick that holds ``now`` (or by float rounding at a
                # tick edge): the rest of the group is still in the future.
                for h in ready:
                    del group[h]
                keep.append(tick)
            ready.sort(key=_ORDER)
            due.extend(ready)
        for tick in keep:
            heapq.heappush(heap, tick)
        return due  # still counted as live until each one runs
