"""The decisions of the store service, without Redis or a reactor (core).

:class:`WriteQueue` holds the writes that wait while Redis is away: one entry per call,
its latest state, bounded; :class:`Batcher` coalesces the changes of one reactor turn;
:class:`Link` turns command outcomes into up/down transitions (one log line each);
:class:`Lease` says when the lease is due and whether it may have run out; and
:func:`adoption_candidates` names the instances a survivor tries to adopt. The glue in
:mod:`b2bua.store.service` carries the results out.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

from b2bua.store.base import Change

__all__ = ["Batcher", "Lease", "Link", "WriteQueue", "adoption_candidates"]


class WriteQueue:
    """Writes waiting for Redis, oldest change first, at most one per call.

    A newer state of a call replaces the queued one and moves to the end, so a replay
    writes each call once, in the order of their latest changes. When ``limit`` calls
    are waiting, a new call's write is refused and ``overflowed`` is set: the queue no
    longer describes everything, and the glue writes every call again instead.
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("the queue limit must be at least 1")
        self.limit = limit
        self.overflowed = False
        self.dropped = 0
        self._entries: OrderedDict[str, bytes | None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, key: str, value: bytes | None) -> bool:
        """Queue ``key``'s latest state (None: deleted); False when it did not fit."""
        if key in self._entries:
            self._entries[key] = value
            self._entries.move_to_end(key)
            return True
        if len(self._entries) >= self.limit:
            self.overflowed = True
            self.dropped += 1
            return False
        self._entries[key] = value
        return True

    def take(self) -> list[Change]:
        """Everything queued, in order; the queue is empty afterwards."""
        entries = list(self._entries.items())
        self._entries.clear()
        return entries

    def reset(self) -> None:
        """Forget the queue (everything is being written again)."""
        self._entries.clear()
        self.overflowed = False


class Batcher:
    """The calls changed during one reactor turn: each written once, at the end of it."""

    def __init__(self) -> None:
        self._keys: dict[str, None] = {}

    def changed(self, key: str) -> bool:
        """Note a change; True when this is the turn's first (the glue schedules a flush)."""
        first = not self._keys
        self._keys[key] = None
        return first

    def take(self) -> list[str]:
        """The keys changed since the last take, in order of their first change."""
        keys = list(self._keys)
        self._keys.clear()
        return keys


@dataclass
class Link:
    """Whether Redis answers, from the outcome of each command.

    ``None`` is not known yet. The methods return True on a transition, when the glue
    logs one line (and replays the queue, on the way up).
    """

    up: bool | None = None
    transitions: int = 0

    def succeeded(self) -> bool:
        """A command was answered; True when Redis was down or unknown before."""
        return self._set(True)

    def failed(self) -> bool:
        """A command failed or timed out; True when Redis was up or unknown before."""
        return self._set(False)

    def _set(self, up: bool) -> bool:
        if self.up is up:
            return False
        self.up = up
        self.transitions += 1
        return True


@dataclass
class Lease:
    """This instance's lease: renewed every ``renew_interval``, lost after ``lease_time``."""

    lease_time: float
    renew_interval: float
    renewed_at: float | None = field(default=None)

    def renewed(self, now: float) -> None:
        """The store confirmed the lease at ``now``."""
        self.renewed_at = now

    def may_be_lost(self, now: float) -> bool:
        """True when the last confirmed renewal is ``lease_time`` old: a survivor may adopt.

        From then on, a renewal that succeeds must be checked for adoption before this
        instance writes again (the store's renew says so).
        """
        return self.renewed_at is None or now - self.renewed_at >= self.lease_time


def adoption_candidates(instances: Iterable[str], me: str) -> list[str]:
    """The other instances, in a stable order; the store adopts only those without a lease."""
    return sorted(set(instances) - {me})
