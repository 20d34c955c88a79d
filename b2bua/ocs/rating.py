"""Rating and the credit-control decisions of the lab OCS, as pure data and arithmetic.

Nothing here knows Diameter encodings, storage or the reactor: the backends call these
functions (the Redis backend mirrors them in its Lua script) and the Diameter server glue
turns the result dataclasses into CCAs.

Units. A rating group (RFC 4006 §8.29) is priced by a `Tariff`: the unit kind it draws on
(``seconds`` of one time balance, or ``events`` of one event balance) and a rate in credit
units per service unit, e.g. video (rating group 200) costs 2 credit seconds per second.
Grants and reported use are in service units of the rating group (CC-Time seconds,
CC-Service-Specific-Units events); balances and reservations are in credit units of the
kind. Rates are whole numbers so that every sum stays exact; rate 0 is a free service.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any, Literal

__all__ = [
    "CC_REQUEST_NUMBER_MODULUS",
    "CC_REQUEST_TYPE",
    "REQUESTED_ACTION",
    "BalanceResult",
    "CheckBalanceResult",
    "CreditPolicy",
    "CreditResult",
    "ExpiredReservation",
    "FinalUnitStyle",
    "Operation",
    "PriceResult",
    "Rating",
    "ResultCode",
    "Tariff",
    "UnitKind",
    "compute_grant",
    "next_request_number",
    "number_position",
]

#: CC-Request-Number is an Unsigned32 (RFC 4006 §8.2); it wraps after 2**32 - 1.
CC_REQUEST_NUMBER_MODULUS = 2**32

FinalUnitStyle = Literal["fui", "4012"]


class UnitKind(StrEnum):
    """The balances an account holds, each in its own credit units."""

    SECONDS = "seconds"
    EVENTS = "events"


class ResultCode(IntEnum):
    """The Result-Code values the OCS core produces (RFC 6733 §7.1, RFC 4006 §9)."""

    SUCCESS = 2001
    CREDIT_LIMIT_REACHED = 4012
    UNKNOWN_SESSION_ID = 5002
    UNABLE_TO_COMPLY = 5012
    USER_UNKNOWN = 5030
    RATING_FAILED = 5031


class Operation(StrEnum):
    """What a ledger line or a stored answer is about.

    INITIAL, UPDATE and TERMINATE are the session requests of RFC 4006 §5 (CC-Request-Type
    1, 2, 3); the event requests (CC-Request-Type 4, §6) are told apart by their
    Requested-Action (§8.41). EXPIRE is the server's own release of a silent session.
    """

    INITIAL = "INITIAL"
    UPDATE = "UPDATE"
    TERMINATE = "TERMINATE"
    DIRECT_DEBIT = "DIRECT_DEBIT"
    REFUND = "REFUND"
    CHECK_BALANCE = "CHECK_BALANCE"
    PRICE_ENQUIRY = "PRICE_ENQUIRY"
    EXPIRE = "EXPIRE"


#: CC-Request-Type (RFC 4006 §8.3) of each operation that answers a request.
CC_REQUEST_TYPE: Mapping[Operation, int] = {
    Operation.INITIAL: 1,
    Operation.UPDATE: 2,
    Operation.TERMINATE: 3,
    Operation.DIRECT_DEBIT: 4,
    Operation.REFUND: 4,
    Operation.CHECK_BALANCE: 4,
    Operation.PRICE_ENQUIRY: 4,
}

#: Requested-Action (RFC 4006 §8.41) of each event operation.
REQUESTED_ACTION: Mapping[Operation, int] = {
    Operation.DIRECT_DEBIT: 0,
    Operation.REFUND: 1,
    Operation.CHECK_BALANCE: 2,
    Operation.PRICE_ENQUIRY: 3,
}


class CheckBalanceResult(IntEnum):
    """Check-Balance-Result values (RFC 4006 §8.6)."""

    ENOUGH_CREDIT = 0
    NO_CREDIT = 1


def next_request_number(number: int) -> int:
    """The CC-Request-Number that follows `number` (Unsigned32, wraps to 0)."""
    return (number + 1) % CC_REQUEST_NUMBER_MODULUS


NumberPosition = Literal["same", "ahead", "behind", "outside"]


def number_position(highest: int, number: int, window: int) -> NumberPosition:
    """Where `number` stands against the highest CC-Request-Number of a session.

    ``ahead``: up to `window` past the highest (the next one, or one overtaking a parallel
    request still in flight); ``behind``: less than `window` before it (a parallel request
    overtaken); ``outside``: anything else, too far to be checked against the numbers the
    session remembers. Distances are taken modulo 2**32 (the number wraps, §8.2).
    """
    if number == highest:
        return "same"
    if (number - highest) % CC_REQUEST_NUMBER_MODULUS <= window:
        return "ahead"
    if (highest - number) % CC_REQUEST_NUMBER_MODULUS < window:
        return "behind"
    return "outside"


@dataclass(frozen=True)
class Tariff:
    """How one rating group is charged: the balance it draws on and its price."""

    kind: UnitKind
    #: Credit units of `kind` per service unit; 0 means free.
    rate: int = 1
    #: Units reserved when a request carries no Requested-Service-Unit (RFC 4006 §5.2
    #: leaves the amount to the server).
    default_units: int = 30

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", UnitKind(self.kind))
        _check_count("rate", self.rate)
        _check_count("default_units", self.default_units)


@dataclass(frozen=True)
class Rating:
    """The tariff table: rating group -> `Tariff`. Accounts may override the rate only."""

    tariffs: Mapping[int, Tariff] = field(default_factory=dict)

    def tariff(self, rating_group: int) -> Tariff | None:
        """The tariff of `rating_group`, None when the OCS cannot rate it (5031)."""
        return self.tariffs.get(rating_group)

    @classmethod
    def default(cls) -> Rating:
        """The lab tariffs, on the rating groups b2bua's defaults use (REFERENCE.md).

        100 voice: 1 credit second per second; 200 video: 2 credit seconds per second;
        300 SMS: 1 event per message, one message reserved by default.
        """
        return cls(
            {
                100: Tariff(UnitKind.SECONDS, 1, 30),
                200: Tariff(UnitKind.SECONDS, 2, 30),
                300: Tariff(UnitKind.EVENTS, 1, 1),
            }
        )

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> Rating:
        """Build from ``{"100": {"kind": "seconds", "rate": 1, "default_units": 30}}``.

        Raises ValueError naming the bad entry, for configuration loaders.
        """
        tariffs: dict[int, Tariff] = {}
        for key, spec in raw.items():
            try:
                rating_group = int(key)
                if rating_group < 0 or not isinstance(spec, Mapping):
                    raise ValueError("expected a non-negative rating group and an object")
                unknown = set(spec) - {"kind", "rate", "default_units"}
                if unknown:
                    raise ValueError(f"unknown keys {sorted(unknown)}")
                tariffs[rating_group] = Tariff(
                    UnitKind(spec["kind"]), spec.get("rate", 1), spec.get("default_units", 30)
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"rating group {key!r}: {exc}") from exc
        return cls(tariffs)


@dataclass(frozen=True)
class CreditPolicy:
    """Server-side choices RFC 4006 leaves to the credit-control server."""

    #: ``fui``: the grant that leaves nothing more to grant carries Final-Unit-Indication
    #: with Final-Unit-Action TERMINATE (RFC 4006 §5.6, §8.34). ``4012``: that grant is plain
    #: and the next request is answered DIAMETER_CREDIT_LIMIT_REACHED.
    final_unit_style: FinalUnitStyle = "fui"
    #: Validity-Time (RFC 4006 §8.33) given with grants when the caller names none.
    default_validity: int = 600
    #: A session not heard of for validity + grace is taken as gone (the server's Tcc
    #: supervision, RFC 4006 §13, which suggests 2 x Validity-Time): its reservations are
    #: released and its state closed.
    stale_grace: int = 60
    #: How long a closed session's answers are kept to recognise retransmissions
    #: (T flag, RFC 4006 §5.7 / RFC 6733 §5.5.4).
    session_retention: int = 3600
    #: CC-Request-Numbers remembered per session. A number within this distance of the
    #: highest seen is answered even out of sequence (parallel CCR-Us of several rating
    #: groups, RFC 4006 §5.1); one further away cannot be told from a retransmission
    #: whose answer was forgotten, so it is refused.
    request_window: int = 32

    def __post_init__(self) -> None:
        if self.final_unit_style not in ("fui", "4012"):
            raise ValueError(
                f"final_unit_style must be 'fui' or '4012', not {self.final_unit_style!r}"
            )
        for name in ("default_validity", "stale_grace", "session_retention", "request_window"):
            _check_count(name, getattr(self, name))
        if not 1 <= self.request_window <= 2**16:
            raise ValueError(f"request_window must be 1..65536, not {self.request_window}")


def _check_count(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, not {value!r}")


def compute_grant(
    requested: int, balance: int, reserved_elsewhere: int, rate: int, style: FinalUnitStyle
) -> tuple[int, bool]:
    """(granted service units, final) for one reservation.

    The grant is what was asked, capped by the credit nobody else holds (balance minus
    every other reservation of that kind, this session's other rating groups included).
    The grant is final (style ``fui``) when it leaves less than one unit's price unreserved
    and no other reservation could come back: then no later request could be granted,
    so the client should not ask (RFC 4006 §5.6). While others hold reservations a short
    grant is not final, since their unused units may return (REFERENCE.md, t = 40).
    """
    if rate == 0:
        return requested, False
    available = max(0, balance - reserved_elsewhere)
    granted = min(requested, available // rate)
    final = (
        style == "fui"
        and granted > 0
        and reserved_elsewhere == 0
        and available - granted * rate < rate
    )
    return granted, final


@dataclass(frozen=True)
class CreditResult:
    """The answer to one rating group of one reservation or debit request.

    `granted` and `debited` are service units of the rating group (`debited` is negative
    for a refund); `cost` is what `debited` cost in credit units of `kind` (at the rate of
    the grant it was used from); `balance_after` and `reserved_after` are credit units on the
    whole account (every session). Balances are 0 when no account is involved (5002,
    5012, 5030). `validity` is set on grants only. `duplicate` marks a stored answer
    replayed for a retransmission: nothing was debited again.
    """

    result_code: int
    subscriber: str
    rating_group: int
    kind: str = ""
    granted: int = 0
    final: bool = False
    validity: int | None = None
    debited: int = 0
    cost: int = 0
    balance_after: int = 0
    reserved_after: int = 0
    duplicate: bool = False

    @property
    def success(self) -> bool:
        """True for DIAMETER_SUCCESS."""
        return self.result_code == ResultCode.SUCCESS

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form, as stored for retransmissions."""
        return {
            "result_code": self.result_code,
            "subscriber": self.subscriber,
            "rating_group": self.rating_group,
            "kind": self.kind,
            "granted": self.granted,
            "final": self.final,
            "validity": self.validity,
            "debited": self.debited,
            "cost": self.cost,
            "balance_after": self.balance_after,
            "reserved_after": self.reserved_after,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], *, duplicate: bool = False) -> CreditResult:
        """Inverse of `to_dict`."""
        validity = raw.get("validity")
        return cls(
            result_code=int(raw["result_code"]),
            subscriber=str(raw["subscriber"]),
            rating_group=int(raw["rating_group"]),
            kind=str(raw.get("kind", "")),
            granted=int(raw.get("granted", 0)),
            final=bool(raw.get("final", False)),
            validity=None if validity is None else int(validity),
            debited=int(raw.get("debited", 0)),
            cost=int(raw.get("cost", 0)),
            balance_after=int(raw.get("balance_after", 0)),
            reserved_after=int(raw.get("reserved_after", 0)),
            duplicate=duplicate,
        )


@dataclass(frozen=True)
class BalanceResult:
    """Answer to a balance check (Requested-Action CHECK_BALANCE, RFC 4006 §6.2).

    Nothing is reserved or debited. `enough_credit` says whether `units` service units of
    the rating group could be granted now (Check-Balance-Result, §8.6).
    """

    result_code: int
    subscriber: str
    rating_group: int
    kind: str = ""
    units: int = 0
    enough_credit: bool = False
    rate: int = 0
    balance: int = 0
    reserved: int = 0

    @property
    def check_balance_result(self) -> CheckBalanceResult:
        """The Check-Balance-Result AVP value."""
        if self.enough_credit:
            return CheckBalanceResult.ENOUGH_CREDIT
        return CheckBalanceResult.NO_CREDIT


@dataclass(frozen=True)
class PriceResult:
    """Answer to a price enquiry (Requested-Action PRICE_ENQUIRY, RFC 4006 §6.1).

    `cost` is in credit units of `kind`; the glue expresses it as Cost-Information
    (§8.7). Nothing is reserved or debited.
    """

    result_code: int
    subscriber: str
    rating_group: int
    kind: str = ""
    units: int = 0
    rate: int = 0
    cost: int = 0


@dataclass(frozen=True)
class ExpiredReservation:
    """One reservation released because its session went silent (`expire_stale`)."""

    session_id: str
    subscriber: str
    rating_group: int
    kind: str
    released_units: int
    released_credit: int
    #: The account after the release; 0 when the account was deleted meanwhile.
    balance_after: int = 0
    reserved_after: int = 0
