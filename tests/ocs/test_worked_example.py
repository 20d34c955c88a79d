"""The worked example of the charging reference, step by step against the OCS core alone.

A subscriber with 75 s; 30 s reservations; two overlapping calls; timer_buffer 0 in
virtual time. Every row checks the grant, the balance and what is reserved afterwards.
With final_unit_style ``fui`` the 10 s grant at t = 55 is final and call 2 ends on it;
with ``4012`` that grant is plain and the CCR-U at t = 65 is refused (after debiting the
10 s used), then the CCR-T reports nothing more. Both end at t = 65 with 75 s billed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pytest

from b2bua.ocs.accounts import Account, OcsBackend
from b2bua.ocs.backend_memory import MemoryBackend
from b2bua.ocs.ledger import Ledger
from b2bua.ocs.rating import CreditPolicy, CreditResult, ResultCode
from tests.ocs.backend_contract import result_of, run_now

SUBSCRIBER = "tel:+1-555-0100"
KEY = "15550100"
VOICE = 100


@dataclass(frozen=True)
class Step:
    """One row of the table: a request and what the OCS must answer."""

    t: int
    call: str
    request: str  # I(nitial), U(pdate), T(erminate)
    requested: int | None
    used: int | None
    granted: int
    balance: int
    reserved: int
    final: bool = False
    result: int = ResultCode.SUCCESS


_COMMON = (
    Step(0, "call1", "I", 30, None, 30, 75, 30),
    Step(30, "call1", "U", 30, 30, 30, 45, 30),
    # Only 45 - 30 = 15 s are unreserved; not final: call 1's reservation may come back.
    Step(40, "call2", "I", 30, None, 15, 45, 45),
    Step(50, "call1", "T", None, 20, 0, 25, 15),
)

WORKED_EXAMPLE: dict[str, tuple[Step, ...]] = {
    "fui": (
        *_COMMON,
        Step(55, "call2", "U", 30, 15, 10, 10, 10, final=True),
        Step(65, "call2", "T", None, 10, 0, 0, 0),
    ),
    "4012": (
        *_COMMON,
        Step(55, "call2", "U", 30, 15, 10, 10, 10),
        Step(65, "call2", "U", 30, 10, 0, 0, 0, result=ResultCode.CREDIT_LIMIT_REACHED),
        Step(65, "call2", "T", None, 0, 0, 0, 0),
    ),
}


async def replay(backend: OcsBackend, steps: Sequence[Step]) -> list[CreditResult]:
    """Run `steps` against a backend provisioned with the 75 s subscriber; check each row."""
    numbers: dict[str, int] = {}
    results: list[CreditResult] = []
    for step in steps:
        number = numbers[step.call] = numbers.get(step.call, -1) + 1
        if step.request == "I":
            deferred = backend.reserve(
                SUBSCRIBER, step.call, number, VOICE, requested=step.requested, now=step.t
            )
        elif step.request == "U":
            assert step.used is not None
            deferred = backend.update(
                step.call, number, VOICE, used=step.used, requested=step.requested, now=step.t
            )
        else:
            assert step.used is not None
            deferred = backend.terminate(step.call, number, VOICE, used=step.used, now=step.t)
        result = await deferred
        observed = (
            result.result_code,
            result.granted,
            result.final,
            result.balance_after,
            result.reserved_after,
        )
        expected = (step.result, step.granted, step.final, step.balance, step.reserved)
        assert observed == expected, f"t={step.t} {step.call} {step.request}"
        results.append(result)
    return results


def provisioned(style: str, ledger: Ledger) -> MemoryBackend:
    """A memory backend holding the worked example's subscriber."""
    policy = CreditPolicy(final_unit_style="fui" if style == "fui" else "4012")
    backend = MemoryBackend(policy=policy, ledger=ledger)
    result_of(backend.provision([Account(SUBSCRIBER, {"seconds": 75})]))
    return backend


@pytest.mark.parametrize("style", sorted(WORKED_EXAMPLE))
def test_worked_example_every_step(style: str) -> None:
    """Grants, balances and reservations match the reference table at every step."""
    ledger = Ledger(keep=True)
    run_now(replay(provisioned(style, ledger), WORKED_EXAMPLE[style]))


@pytest.mark.parametrize("style", sorted(WORKED_EXAMPLE))
def test_worked_example_totals(style: str) -> None:
    """75 s billed, one call cut for lack of credit, nothing left reserved."""
    ledger = Ledger(keep=True)
    backend = provisioned(style, ledger)
    results = run_now(replay(backend, WORKED_EXAMPLE[style]))
    assert ledger.billed_seconds(KEY) == 75
    snapshot = result_of(backend.get_account(SUBSCRIBER))
    assert snapshot is not None
    assert snapshot.balances["seconds"] == 0
    assert snapshot.reserved["seconds"] == 0
    cut = [r for r in results if r.final or r.result_code == ResultCode.CREDIT_LIMIT_REACHED]
    assert len(cut) == 1


@pytest.mark.parametrize("style", sorted(WORKED_EXAMPLE))
def test_worked_example_ledger_audits_every_second(style: str) -> None:
    """Each debit in the ledger matches the used seconds reported, and they sum to 75."""
    ledger = Ledger(keep=True)
    run_now(replay(provisioned(style, ledger), WORKED_EXAMPLE[style]))
    debits = [(e.time, e.session_id, e.debited) for e in ledger.entries if e.debited]
    assert debits == [(30, "call1", 30), (50, "call1", 20), (55, "call2", 15), (65, "call2", 10)]
    assert [e.balance_after for e in ledger.entries][-1] == 0


def test_worked_example_retransmissions_change_nothing() -> None:
    """Every request sent twice (T-flag retransmission) gives the same table and 75 s."""
    ledger = Ledger(keep=True)
    backend = provisioned("fui", ledger)
    doubled = [step for step in WORKED_EXAMPLE["fui"] for _ in range(2)]
    numbers: dict[str, int] = {}
    previous: dict[str, int] = {}
    for index, step in enumerate(doubled):
        if index % 2 == 0:
            previous[step.call] = numbers[step.call] = numbers.get(step.call, -1) + 1
        number = previous[step.call]
        if step.request == "I":
            deferred = backend.reserve(
                SUBSCRIBER, step.call, number, VOICE, requested=step.requested, now=step.t
            )
        elif step.request == "U":
            assert step.used is not None
            deferred = backend.update(
                step.call, number, VOICE, used=step.used, requested=step.requested, now=step.t
            )
        else:
            assert step.used is not None
            deferred = backend.terminate(step.call, number, VOICE, used=step.used, now=step.t)
        result = result_of(deferred)
        assert result.duplicate == (index % 2 == 1)
        assert (result.granted, result.balance_after, result.reserved_after) == (
            step.granted,
            step.balance,
            step.reserved,
        )
    assert ledger.billed_seconds(KEY) == 75
    assert sum(e.duplicate for e in ledger.entries) == len(WORKED_EXAMPLE["fui"])
