"""Rating: tariffs, the policy, the grant arithmetic and the result records."""

from __future__ import annotations

import json
from typing import Any

import pytest

from b2bua.ocs.rating import (
    CC_REQUEST_TYPE,
    REQUESTED_ACTION,
    BalanceResult,
    CheckBalanceResult,
    CreditPolicy,
    CreditResult,
    Operation,
    Rating,
    ResultCode,
    Tariff,
    UnitKind,
    compute_grant,
    next_request_number,
)


@pytest.mark.parametrize(
    ("requested", "balance", "elsewhere", "rate", "style", "expected"),
    [
        # The worked example's grants.
        (30, 75, 0, 1, "fui", (30, False)),
        (30, 45, 30, 1, "fui", (15, False)),  # t=40: others may release, so not final
        (30, 10, 0, 1, "fui", (10, True)),  # t=55: the last 10 s
        (30, 10, 0, 1, "4012", (10, False)),
        (30, 0, 0, 1, "fui", (0, False)),
        # Exactly what is left is final too: nothing could be granted afterwards.
        (30, 30, 0, 1, "fui", (30, True)),
        (30, 31, 0, 1, "fui", (30, False)),
        # Video at 2 credit seconds: a leftover below one unit's price is nothing.
        (30, 61, 0, 2, "fui", (30, True)),
        (30, 62, 0, 2, "fui", (30, False)),
        (30, 35, 0, 2, "fui", (17, True)),
        # Reservations beyond the balance (after an operator's cut) leave nothing.
        (30, 10, 40, 1, "fui", (0, False)),
        (30, -5, 0, 1, "fui", (0, False)),
        # Free services: anything, never final.
        (1000, 0, 0, 0, "fui", (1000, False)),
        (0, 75, 0, 1, "fui", (0, False)),
    ],
)
def test_compute_grant(
    requested: int, balance: int, elsewhere: int, rate: int, style: str, expected: tuple[int, bool]
) -> None:
    """Grant = min(requested, unreserved // rate); final only when nothing can come back."""
    assert compute_grant(requested, balance, elsewhere, rate, style) == expected  # type: ignore[arg-type]


def test_default_rating_groups() -> None:
    """Voice 100 at 1, video 200 at 2 credit seconds, SMS 300 at 1 event; others unrated."""
    rating = Rating.default()
    assert rating.tariff(100) == Tariff(UnitKind.SECONDS, 1, 30)
    assert rating.tariff(200) == Tariff(UnitKind.SECONDS, 2, 30)
    assert rating.tariff(300) == Tariff(UnitKind.EVENTS, 1, 1)
    assert rating.tariff(999) is None


def test_rating_from_mapping() -> None:
    """A configuration mapping builds the tariff table; bad entries are named."""
    rating = Rating.from_mapping(
        {"100": {"kind": "seconds"}, "400": {"kind": "events", "rate": 3, "default_units": 2}}
    )
    assert rating.tariff(100) == Tariff(UnitKind.SECONDS, 1, 30)
    assert rating.tariff(400) == Tariff(UnitKind.EVENTS, 3, 2)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"x": {"kind": "seconds"}}, "rating group 'x'"),
        ({"1": {"kind": "octets"}}, "rating group '1'"),
        ({"1": {"kind": "seconds", "rate": -1}}, "rate must be a non-negative integer"),
        ({"1": {"kind": "seconds", "price": 1}}, "unknown keys ['price']"),
        ({"1": {}}, "rating group '1'"),
        ({"1": 5}, "rating group '1'"),
    ]
    for bad, message in cases:
        with pytest.raises(ValueError, match="rating group") as caught:
            Rating.from_mapping(bad)
        assert message in str(caught.value)


def test_tariff_accepts_kind_names() -> None:
    """A tariff's kind may be given as its name and is stored as a UnitKind."""
    assert Tariff("events").kind is UnitKind.EVENTS  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Tariff(UnitKind.SECONDS, rate=True)


def test_policy_validation() -> None:
    """Only the two final-unit styles exist; durations are non-negative whole seconds."""
    assert CreditPolicy().final_unit_style == "fui"
    with pytest.raises(ValueError, match="final_unit_style"):
        CreditPolicy(final_unit_style="terminate")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="stale_grace"):
        CreditPolicy(stale_grace=-1)


def test_request_numbers_wrap() -> None:
    """CC-Request-Number is an Unsigned32 and wraps to 0."""
    assert next_request_number(0) == 1
    assert next_request_number(2**32 - 1) == 0


def test_request_types_and_actions() -> None:
    """Operations map onto CC-Request-Type and Requested-Action values of RFC 4006."""
    assert [CC_REQUEST_TYPE[o] for o in (Operation.INITIAL, Operation.UPDATE)] == [1, 2]
    assert CC_REQUEST_TYPE[Operation.TERMINATE] == 3
    assert REQUESTED_ACTION == {
        Operation.DIRECT_DEBIT: 0,
        Operation.REFUND: 1,
        Operation.CHECK_BALANCE: 2,
        Operation.PRICE_ENQUIRY: 3,
    }
    assert CC_REQUEST_TYPE[Operation.PRICE_ENQUIRY] == 4


def test_result_codes() -> None:
    """The Result-Code values are the RFC's."""
    assert [int(code) for code in ResultCode] == [2001, 4012, 5002, 5012, 5030, 5031]


def test_credit_result_round_trip() -> None:
    """A stored answer survives JSON and comes back flagged as a duplicate."""
    result = CreditResult(
        ResultCode.SUCCESS, "15550100", 100, "seconds", granted=10, final=True, validity=60,
        debited=15, cost=15, balance_after=10, reserved_after=10,
    )  # fmt: skip
    assert result.success
    stored = json.loads(json.dumps(result.to_dict()))
    assert CreditResult.from_dict(stored) == result
    replayed = CreditResult.from_dict(stored, duplicate=True)
    assert replayed.duplicate and replayed.granted == 10
    refused = CreditResult(ResultCode.USER_UNKNOWN, "x", 100)
    assert not refused.success
    assert CreditResult.from_dict(refused.to_dict()) == refused


def test_balance_result_check_value() -> None:
    """Check-Balance-Result follows enough_credit."""
    assert BalanceResult(2001, "x", 100, enough_credit=True).check_balance_result == 0
    no = BalanceResult(2001, "x", 100, enough_credit=False).check_balance_result
    assert no is CheckBalanceResult.NO_CREDIT
