"""The OCS ledger: one JSON line per credit-control operation, so every second is auditable.

Each backend records every answer it gives, retransmissions included (flagged
``duplicate``, and never counted as billed), refusals and the server's own releases of
silent sessions (``EXPIRE``) too. A line holds the request (``requested``: units asked
for, the tariff's default when the request named none, null for a termination; ``used``:
as reported, null when absent) and the decision (``debited``: service units after capping
at the reservation, negative for a refund; ``cost``: their price in credit units;
``granted``, ``result_code``, ``final``, and the account's ``balance_after`` and
``reserved_after`` in credit units of ``kind``).

Lines are appended and flushed one by one: an operator can ``tail -f`` the file and a
test can read it back with `read_ledger`. Writing is synchronous; a lab OCS writes a few
hundred short lines a second at most.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import IO, Any

from b2bua.ocs.rating import (
    BalanceResult,
    CreditResult,
    ExpiredReservation,
    Operation,
    PriceResult,
    UnitKind,
)

__all__ = ["Ledger", "LedgerEntry", "billed", "read_ledger"]

_DEBITING = frozenset(
    {Operation.UPDATE, Operation.TERMINATE, Operation.DIRECT_DEBIT, Operation.REFUND}
)


@dataclass(frozen=True)
class LedgerEntry:
    """One line of the ledger."""

    time: float
    subscriber: str
    session_id: str
    request_type: str
    request_number: int | None
    rating_group: int
    kind: str
    requested: int | None
    used: int | None
    debited: int
    cost: int
    granted: int
    result_code: int
    final: bool
    balance_after: int
    reserved_after: int
    duplicate: bool = False

    def to_json(self) -> str:
        """The line as written (no trailing newline)."""
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=False)

    @classmethod
    def from_json(cls, line: str) -> LedgerEntry:
        """Parse one written line."""
        raw: dict[str, Any] = json.loads(line)
        return cls(**raw)


def billed(entries: Iterable[LedgerEntry], subscriber: str, kind: str) -> int:
    """Service units of `kind` debited from `subscriber` (refunds subtracted).

    Retransmissions are ignored: their debit happened once, on the original line.
    """
    return sum(
        entry.debited
        for entry in entries
        if entry.subscriber == subscriber
        and entry.kind == kind
        and not entry.duplicate
        and entry.request_type in _DEBITING
    )


def read_ledger(path: str | os.PathLike[str]) -> list[LedgerEntry]:
    """Every entry of a ledger file, in order."""
    with open(path, encoding="utf-8") as handle:
        return [LedgerEntry.from_json(line) for line in handle if line.strip()]


class Ledger:
    """Appends entries to a file and/or keeps them in memory (`keep=True`, for tests)."""

    def __init__(self, path: str | os.PathLike[str] | None = None, *, keep: bool = False) -> None:
        self.path = None if path is None else os.fspath(path)
        self.keep = keep
        self.entries: list[LedgerEntry] = []
        self._handle: IO[str] | None = None
        if self.path is not None:
            self._handle = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open, closed by close()

    def record(self, entry: LedgerEntry) -> None:
        """Write one entry (flushed at once) and keep it if asked."""
        if self.keep:
            self.entries.append(entry)
        if self._handle is not None:
            self._handle.write(entry.to_json() + "\n")
            self._handle.flush()

    def close(self) -> None:
        """Close the file; later entries are only kept in memory, if at all."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def read(self) -> list[LedgerEntry]:
        """The entries recorded: kept ones, else those read back from the file."""
        if self.keep or self.path is None:
            return list(self.entries)
        if self._handle is not None:
            self._handle.flush()
        return read_ledger(self.path)

    def billed_seconds(self, subscriber: str) -> int:
        """Seconds of service debited from `subscriber` (normalised key), all rating groups."""
        return billed(self.read(), subscriber, UnitKind.SECONDS)

    def billed_events(self, subscriber: str) -> int:
        """Events debited from `subscriber`."""
        return billed(self.read(), subscriber, UnitKind.EVENTS)

    # -- helpers the backends use, so both write identical lines --

    def credit(
        self,
        now: float,
        operation: Operation,
        session_id: str,
        request_number: int,
        *,
        requested: int | None,
        used: int | None,
        result: CreditResult,
    ) -> None:
        """Record the answer to a reservation, debit or refund."""
        self.record(
            LedgerEntry(
                time=now,
                subscriber=result.subscriber,
                session_id=session_id,
                request_type=operation.value,
                request_number=request_number,
                rating_group=result.rating_group,
                kind=result.kind,
                requested=requested,
                used=used,
                debited=0 if result.duplicate else result.debited,
                cost=0 if result.duplicate else result.cost,
                granted=result.granted,
                result_code=result.result_code,
                final=result.final,
                balance_after=result.balance_after,
                reserved_after=result.reserved_after,
                duplicate=result.duplicate,
            )
        )

    def balance_check(self, now: float, result: BalanceResult) -> None:
        """Record a balance check (nothing reserved or debited)."""
        self.record(
            LedgerEntry(
                time=now,
                subscriber=result.subscriber,
                session_id="",
                request_type=Operation.CHECK_BALANCE.value,
                request_number=None,
                rating_group=result.rating_group,
                kind=result.kind,
                requested=result.units,
                used=None,
                debited=0,
                cost=0,
                granted=0,
                result_code=result.result_code,
                final=False,
                balance_after=result.balance,
                reserved_after=result.reserved,
            )
        )

    def price(self, now: float, result: PriceResult) -> None:
        """Record a price enquiry (nothing reserved or debited)."""
        self.record(
            LedgerEntry(
                time=now,
                subscriber=result.subscriber,
                session_id="",
                request_type=Operation.PRICE_ENQUIRY.value,
                request_number=None,
                rating_group=result.rating_group,
                kind=result.kind,
                requested=result.units,
                used=None,
                debited=0,
                cost=result.cost,
                granted=0,
                result_code=result.result_code,
                final=False,
                balance_after=0,
                reserved_after=0,
            )
        )

    def expired(self, now: float, released: ExpiredReservation) -> None:
        """Record the release of a silent session's reservation."""
        self.record(
            LedgerEntry(
                time=now,
                subscriber=released.subscriber,
                session_id=released.session_id,
                request_type=Operation.EXPIRE.value,
                request_number=None,
                rating_group=released.rating_group,
                kind=released.kind,
                requested=None,
                used=None,
                debited=0,
                cost=0,
                granted=0,
                result_code=0,
                final=False,
                balance_after=released.balance_after,
                reserved_after=released.reserved_after,
            )
        )
