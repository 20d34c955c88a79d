"""The call store as a Protocol: what survives a restart and is shared by instances (core).

A record is opaque bytes here (``b2bua.store.recovery.encode_record`` makes them); the
store files them by instance id and call key. Every instance holds a lease it renews; the
two steps that must not interleave with another instance, taking one's own records at
start and adopting a dead instance's records, are single atomic operations of the store,
so that no record is ever restored twice. :class:`~b2bua.store.memory.MemoryStore` and
:class:`~b2bua.store.redis.RedisStore` implement it and pass the same tests.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import NamedTuple, Protocol

from twisted.internet.defer import Deferred

__all__ = ["CallStore", "Change", "Renewal", "Renewed"]

#: One write: the record's new bytes, or None to delete it.
Change = tuple[str, bytes | None]


class Renewal(StrEnum):
    """What renewing a lease found."""

    KEPT = "kept"  # the lease was still ours
    EXPIRED = "expired"  # it had run out, nobody adopted our calls; it is ours again
    ADOPTED = "adopted"  # it had run out and a survivor took our calls


class Renewed(NamedTuple):
    """A renewal's outcome and, when ADOPTED, the keys of the records the survivor took.

    The keys are what this instance must drop without a word: the survivor ends or
    charges those calls now. Calls not among them (not written before the adoption) stay.
    """

    outcome: Renewal
    adopted: tuple[str, ...] = ()


class CallStore(Protocol):
    """Records of live calls, per instance, with leases (every method is atomic)."""

    def take_over(self, instance: str, lease: float) -> Deferred[dict[str, bytes]]:
        """Take ``instance``'s lease for ``lease`` seconds, register it and return its records.

        One step: a survivor adopting ``instance`` at the same moment gets either all of
        the records or none.
        """

    def renew(self, instance: str, lease: float) -> Deferred[Renewed]:
        """Extend the lease; :class:`Renewed` says whether it had been lost, and what went."""

    def write(self, instance: str, changes: Sequence[Change]) -> Deferred[None]:
        """Store or delete records of ``instance`` (each key at most once in ``changes``)."""

    def replace(self, instance: str, records: Mapping[str, bytes]) -> Deferred[None]:
        """Make ``records`` the only records of ``instance``."""

    def instances(self) -> Deferred[list[str]]:
        """Every registered instance id."""

    def adopt(self, dead: str, survivor: str) -> Deferred[dict[str, bytes]]:
        """If ``dead``'s lease is gone: move its records to ``survivor`` and return them.

        One step: of several survivors trying at once exactly one gets the records; an
        instance whose lease is alive keeps its records ({} is returned).
        """

    def close(self) -> Deferred[None]:
        """Let go of the connection."""
