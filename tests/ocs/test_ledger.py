"""The ledger: one JSON line per answer, readable back, billing every second once."""

from __future__ import annotations

import json
from pathlib import Path

from b2bua.ocs.accounts import Account
from b2bua.ocs.backend_memory import MemoryBackend
from b2bua.ocs.ledger import Ledger, LedgerEntry, billed, read_ledger
from b2bua.ocs.rating import ResultCode
from tests.ocs.backend_contract import result_of

ALICE = "+15550100"
KEY = "15550100"

FIELDS = [
    "time",
    "subscriber",
    "session_id",
    "request_type",
    "request_number",
    "rating_group",
    "kind",
    "requested",
    "used",
    "debited",
    "cost",
    "granted",
    "result_code",
    "final",
    "balance_after",
    "reserved_after",
    "duplicate",
]


def _entry(**changes: object) -> LedgerEntry:
    fields: dict[str, object] = {
        "time": 1.5,
        "subscriber": KEY,
        "session_id": "s1",
        "request_type": "UPDATE",
        "request_number": 1,
        "rating_group": 100,
        "kind": "seconds",
        "requested": 30,
        "used": 30,
        "debited": 30,
        "cost": 30,
        "granted": 30,
        "result_code": 2001,
        "final": False,
        "balance_after": 45,
        "reserved_after": 30,
    }
    fields.update(changes)
    return LedgerEntry(**fields)  # type: ignore[arg-type]


def test_line_format(tmp_path: Path) -> None:
    """Each entry is one JSON object per line with every audit field, flushed at once."""
    path = tmp_path / "ledger.jsonl"
    ledger = Ledger(path)
    ledger.record(_entry())
    ledger.record(_entry(request_type="TERMINATE", requested=None, granted=0))
    # Readable before close: each line is flushed as written.
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert list(first) == FIELDS
    assert json.loads(lines[1])["requested"] is None
    ledger.close()
    assert read_ledger(path) == [
        _entry(),
        _entry(request_type="TERMINATE", requested=None, granted=0),
    ]


def test_appends_across_restarts(tmp_path: Path) -> None:
    """A new ledger on the same file appends: an OCS restart keeps the audit trail."""
    path = tmp_path / "ledger.jsonl"
    for number in range(3):
        ledger = Ledger(path)
        ledger.record(_entry(request_number=number))
        ledger.close()
    assert [e.request_number for e in read_ledger(path)] == [0, 1, 2]


def test_keep_in_memory_without_file() -> None:
    """keep=True holds entries in memory; with neither file nor keep nothing is held."""
    kept = Ledger(keep=True)
    kept.record(_entry())
    assert kept.read() == [_entry()]
    silent = Ledger()
    silent.record(_entry())
    assert silent.read() == []


def test_read_back_from_file_when_not_kept(tmp_path: Path) -> None:
    """Without keep, read() and billed_seconds() read the file."""
    ledger = Ledger(tmp_path / "l.jsonl")
    ledger.record(_entry())
    assert ledger.billed_seconds(KEY) == 30
    ledger.close()


def test_billed_ignores_duplicates_reservations_and_checks() -> None:
    """Only debits and refunds count; retransmissions and non-debiting lines do not."""
    entries = [
        _entry(request_type="INITIAL", debited=0, used=None),
        _entry(debited=30),
        _entry(debited=30, duplicate=True),
        _entry(request_type="TERMINATE", debited=12),
        _entry(request_type="CHECK_BALANCE", debited=0),
        _entry(request_type="DIRECT_DEBIT", kind="events", debited=2),
        _entry(request_type="REFUND", kind="events", debited=-1),
        _entry(subscriber="other", debited=99),
    ]
    assert billed(entries, KEY, "seconds") == 42
    assert billed(entries, KEY, "events") == 1


def test_every_second_is_audited(tmp_path: Path) -> None:
    """The ledger of a real session explains the account: balance moves = debits."""
    ledger = Ledger(tmp_path / "ledger.jsonl", keep=True)
    backend = MemoryBackend(ledger=ledger)
    result_of(backend.provision([Account(ALICE, {"seconds": 100, "events": 4})]))
    result_of(backend.reserve(ALICE, "call", 0, 100, requested=30, now=0))
    result_of(backend.update("call", 1, 100, used=30, requested=30, now=30))
    result_of(backend.update("call", 1, 100, used=30, requested=30, now=30.2))  # T flag
    result_of(backend.update("call", 2, 200, used=0, requested=10, now=31))  # video joins
    result_of(backend.terminate("call", 3, 100, used=40, now=50))  # capped at 30
    result_of(backend.terminate("call", 3, 200, used=9, now=50))
    result_of(backend.direct_debit(ALICE, "sms", 0, 300, units=1, now=60))
    result_of(backend.check_balance(ALICE, 100, now=61))
    result_of(backend.price_enquiry(ALICE, 200, units=10, now=62))
    ledger.close()
    entries = read_ledger(tmp_path / "ledger.jsonl")
    assert entries == ledger.entries
    assert [(e.request_type, e.request_number, e.rating_group) for e in entries] == [
        ("INITIAL", 0, 100),
        ("UPDATE", 1, 100),
        ("UPDATE", 1, 100),
        ("UPDATE", 2, 200),
        ("TERMINATE", 3, 100),
        ("TERMINATE", 3, 200),
        ("DIRECT_DEBIT", 0, 300),
        ("CHECK_BALANCE", None, 100),
        ("PRICE_ENQUIRY", None, 200),
    ]
    capped = entries[4]
    assert (capped.used, capped.debited, capped.requested) == (40, 30, None)
    assert entries[2].duplicate and entries[2].debited == 0
    assert entries[8].cost == 20
    assert ledger.billed_seconds(KEY) == 30 + 30 + 9
    debits = [e for e in entries if e.kind == "seconds" and e.request_type != "PRICE_ENQUIRY"]
    seconds_cost = sum(e.cost for e in debits)
    assert seconds_cost == 30 + 30 + 18
    assert entries[5].balance_after == 100 - seconds_cost
    assert all(e.result_code == ResultCode.SUCCESS for e in entries)
