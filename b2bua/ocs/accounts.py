"""Subscriber accounts of the lab OCS: identities, the accounts file, the backend interface.

Subscriber identities. Accounts are keyed by Subscription-Id-Data (RFC 4006 §8.48), which
arrives in several spellings for one subscriber: ``tel:+1-555-0100``, ``+15550100``,
``sip:+15550100@ims.example;user=phone``, ``sip:alice@Example.COM:5060;transport=tcp``,
``alice@example.com`` (an NAI). `normalise_subscriber` maps them onto one key:

- telephone numbers (``tel:`` URIs, SIP URIs with ``user=phone``, bare numbers with
  optional ``+`` and visual separators ``-.() ``) become their digits without ``+``, the
  form END_USER_E164 data takes on the wire (RFC 4006 §8.47); ``tel:`` parameters such as
  ``phone-context`` are dropped. Digit strings are one namespace, so an IMSI and an E.164
  number that share digits are the same account;
- ``sip:`` and ``sips:`` URIs become ``sip:user@host``: the scheme is not part of who is
  charged, the host is lowercased (RFC 3261 §19.1.4: hosts compare case-insensitively, user
  parts do not), and port, URI parameters and headers are dropped;
- ``user@host`` without a scheme (END_USER_NAI) is read as ``sip:user@host``;
- anything else (an END_USER_PRIVATE id, a URN) is kept as given, trimmed.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from twisted.internet.defer import Deferred

from b2bua.ocs.rating import (
    BalanceResult,
    CreditResult,
    ExpiredReservation,
    PriceResult,
    UnitKind,
)

__all__ = [
    "Account",
    "AccountExistsError",
    "AccountSnapshot",
    "AccountsFileError",
    "OcsBackend",
    "UnknownSubscriberError",
    "account_document",
    "check_kind",
    "check_request_number",
    "check_units",
    "load_accounts",
    "normalise_subscriber",
    "parse_accounts",
]

_VISUAL_SEPARATORS = re.compile(r"[-.()\s]")
_NUMBER = re.compile(r"\+?[0-9]+")


def _telephone_digits(text: str) -> str | None:
    """Digits of a telephone number written with optional + and visual separators."""
    compact = _VISUAL_SEPARATORS.sub("", text)
    if _NUMBER.fullmatch(compact):
        return compact.lstrip("+")
    return None


def _sip_subscriber(rest: str) -> str:
    """Canonical form of the part of a SIP URI after ``sip:``/``sips:``."""
    rest = rest.split("?", 1)[0]
    user, sep, host_part = rest.rpartition("@")
    if not sep:
        user, host_part = "", rest
    host_and_port, _, params = host_part.partition(";")
    if host_and_port.startswith("["):
        host = host_and_port[: host_and_port.find("]") + 1]
    else:
        host = host_and_port.partition(":")[0]
    host = host.lower()
    user_params = {p.strip().lower() for p in params.split(";") if p}
    if user and "user=phone" in user_params:
        digits = _telephone_digits(user.partition(";")[0])
        if digits is not None:
            return digits
    if not host:
        raise ValueError("SIP URI without a host")
    return f"sip:{user}@{host}" if user else f"sip:{host}"


def normalise_subscriber(raw: str) -> str:
    """The account key for one spelling of a subscriber identity (see the module doc).

    Raises ValueError for an empty or unusable identity.
    """
    text = raw.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    if not text:
        raise ValueError("empty subscriber identity")
    scheme, colon, rest = text.partition(":")
    scheme = scheme.lower() if colon else ""
    if scheme == "tel":
        digits = _telephone_digits(rest.partition(";")[0])
        if digits is None:
            raise ValueError(f"not a telephone number: {raw!r}")
        return digits
    if scheme in ("sip", "sips"):
        return _sip_subscriber(rest)
    digits = _telephone_digits(text)
    if digits is not None:
        return digits
    if not colon and "@" in text and not any(c.isspace() for c in text):
        return _sip_subscriber(text)
    return text


class UnknownSubscriberError(LookupError):
    """An administrative operation named a subscriber without an account."""


class AccountExistsError(ValueError):
    """`create_account` named a subscriber that already has an account."""


class AccountsFileError(ValueError):
    """The accounts file is unreadable or wrong; the message names the file and entry."""


def _check_amount(what: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what} must be a non-negative integer, got {value!r}")
    return value


@dataclass(frozen=True)
class Account:
    """One subscriber as provisioned: balances per unit kind and rate overrides.

    `balances` maps each `UnitKind` to credit units (kinds left out hold 0); `rates` maps
    rating groups to a rate replacing the tariff's for this subscriber (e.g. video at 1).
    """

    subscriber: str
    balances: Mapping[str, int] = field(default_factory=dict)
    rates: Mapping[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "subscriber", normalise_subscriber(self.subscriber))
        balances = {kind.value: 0 for kind in UnitKind}
        for kind, amount in self.balances.items():
            balances[UnitKind(kind).value] = _check_amount(f"balance of {kind}", amount)
        rates: dict[int, int] = {}
        for rating_group, rate in self.rates.items():
            rates[_check_amount("rating group", rating_group)] = _check_amount(
                f"rate of rating group {rating_group}", rate
            )
        object.__setattr__(self, "balances", balances)
        object.__setattr__(self, "rates", rates)

    @property
    def seconds(self) -> int:
        """The time balance, credit seconds."""
        return self.balances[UnitKind.SECONDS]

    @property
    def events(self) -> int:
        """The event balance (e.g. SMS), events."""
        return self.balances[UnitKind.EVENTS]


@dataclass(frozen=True)
class AccountSnapshot:
    """An account as it stands: balances, what all sessions hold reserved, rate overrides.

    A balance may be negative only after an operator lowered it below what was already
    granted: units granted are the subscriber's to use (REFERENCE.md).
    """

    subscriber: str
    balances: Mapping[str, int]
    reserved: Mapping[str, int]
    rates: Mapping[int, int]

    def available(self, kind: str) -> int:
        """Credit of `kind` that no session holds: what a new grant may take."""
        return max(0, self.balances.get(kind, 0) - self.reserved.get(kind, 0))


_ENTRY_KEYS = {"subscriber", "rates", *(kind.value for kind in UnitKind)}


def _parse_entry(index: int, raw: object) -> Account:
    if not isinstance(raw, dict):
        raise ValueError(f"accounts[{index}]: expected an object, got {type(raw).__name__}")
    name = raw.get("subscriber")
    label = f"accounts[{index}] ({name!r})" if isinstance(name, str) else f"accounts[{index}]"
    try:
        if not isinstance(name, str):
            raise ValueError("'subscriber' must be a string")
        unknown = sorted(k for k in raw if k not in _ENTRY_KEYS and not k.startswith("_"))
        if unknown:
            raise ValueError(
                f"unknown keys {unknown}; expected subscriber, "
                f"{', '.join(kind.value for kind in UnitKind)}, rates"
            )
        balances = {
            kind.value: _check_amount(f"'{kind.value}'", raw.get(kind.value, 0))
            for kind in UnitKind
        }
        raw_rates = raw.get("rates", {})
        if not isinstance(raw_rates, dict):
            raise ValueError("'rates' must be an object of rating group -> rate")
        rates: dict[int, int] = {}
        for key, rate in raw_rates.items():
            if not key.isdigit():
                raise ValueError(f"'rates' key {key!r} is not a rating group number")
            rates[int(key)] = _check_amount(f"'rates' of {key}", rate)
        return Account(name, balances, rates)
    except ValueError as exc:
        raise ValueError(f"{label}: {exc}") from exc


def parse_accounts(document: object) -> list[Account]:
    """Accounts from a decoded accounts document (see `load_accounts` for the format).

    Raises ValueError naming the entry at fault.
    """
    if not isinstance(document, dict) or not isinstance(document.get("accounts"), list):
        raise ValueError('expected an object with an "accounts" list')
    unknown = sorted(k for k in document if k != "accounts" and not k.startswith("_"))
    if unknown:
        raise ValueError(f"unknown top-level keys {unknown}")
    accounts: list[Account] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(document["accounts"]):
        account = _parse_entry(index, raw)
        if account.subscriber in seen:
            raise ValueError(
                f"accounts[{index}] ({raw['subscriber']!r}) is the same subscriber "
                f"{account.subscriber!r} as accounts[{seen[account.subscriber]}]"
            )
        seen[account.subscriber] = index
        accounts.append(account)
    return accounts


def load_accounts(path: str | os.PathLike[str]) -> list[Account]:
    """Read the accounts file the OCS provisions at start.

    Format (JSON)::

        {"_comment": "keys starting with _ are ignored",
         "accounts": [
           {"subscriber": "+15550100", "seconds": 75, "events": 10},
           {"subscriber": "sip:alice@lab.example", "seconds": 600, "rates": {"200": 1}}]}

    ``seconds`` and ``events`` are balances in credit units (default 0); ``rates``
    overrides the tariff rate of a rating group for this subscriber. Two entries that
    normalise to one subscriber are an error. Raises `AccountsFileError` naming the file
    and the entry at fault.
    """
    where = os.fspath(path)
    try:
        with open(where, encoding="utf-8") as handle:
            document = json.load(handle)
    except OSError as exc:
        raise AccountsFileError(f"{where}: cannot read: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise AccountsFileError(
            f"{where}: line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from exc
    except UnicodeDecodeError as exc:
        raise AccountsFileError(f"{where}: not UTF-8 text: {exc}") from exc
    try:
        return parse_accounts(document)
    except ValueError as exc:
        raise AccountsFileError(f"{where}: {exc}") from exc


class OcsBackend(Protocol):
    """Balances, reservations and credit-control sessions of the OCS (memory or Redis).

    Every method returns a Deferred. Subscriber identities are normalised with
    `normalise_subscriber`. Each credit-control call answers one rating group of one
    request; a CCR carrying several Multiple-Services-Credit-Control AVPs is one call per
    rating group with the same CC-Request-Number.

    Request numbers (RFC 4006 §8.2; with Session-Id, the application's replay protection,
    §14) are checked per session, which remembers the operation of each number and its
    answers within the policy's `request_window`:

    - a number already answered for that rating group replays the stored answer
      (``duplicate=True``, nothing debited again: T-flag retransmissions, failover to
      another OCS sharing the store, §5.7);
    - a number of the same request type not yet answered for that rating group is another
      Multiple-Services-Credit-Control AVP of that request, and is processed;
    - an UPDATE or TERMINATE with a number not seen yet, within the window on either side
      of the highest, is processed, even out of sequence: parallel CCR-Us for several
      rating groups may overtake each other and RFC 4006 §5.1 says the server SHOULD NOT
      take that as an error;
    - anything else is refused with DIAMETER_UNABLE_TO_COMPLY (5012): a number of another
      request type, an INITIAL or event request for a session id in use, or a number
      outside the window, which the OCS can no longer tell from a retransmission of a
      request it has forgotten; processing it could debit twice. RFC 4006 defines no code
      for this; 5012 is RFC 6733's permanent failure "rejected for unspecified reasons", so
      the client does not retry the request elsewhere, and unlike DIAMETER_INVALID_AVP_VALUE
      it does not claim the AVP is malformed.

    UPDATE or TERMINATE for a session the OCS does not hold (never opened, terminated,
    expired, forgotten) is DIAMETER_UNKNOWN_SESSION_ID (5002). A new session's first number
    is accepted as given. The order of checks: session and number, then account (5030),
    then rating (5031).

    `validity` None uses the policy's default Validity-Time. A session is open until its
    last reservation is terminated, its event is answered, or `expire_stale` finds it
    silent past validity + grace; closed sessions keep their answers for the policy's
    retention to recognise retransmissions.
    """

    def reserve(
        self,
        subscriber: str,
        session_id: str,
        request_number: int,
        rating_group: int,
        *,
        requested: int | None,
        now: float,
        validity: int | None = None,
    ) -> Deferred[CreditResult]:
        """CCR-INITIAL (RFC 4006 §5.2): reserve min(requested, unreserved credit).

        `requested` None reserves the tariff's default. Nothing grantable while units
        were requested is DIAMETER_CREDIT_LIMIT_REACHED (4012); the session then closes.
        """
        ...

    def update(
        self,
        session_id: str,
        request_number: int,
        rating_group: int,
        *,
        used: int,
        requested: int | None,
        now: float,
        validity: int | None = None,
    ) -> Deferred[CreditResult]:
        """CCR-UPDATE (RFC 4006 §5.3): debit `used`, release, reserve anew.

        `used` is capped at what this session holds for the rating group (the excess is
        recorded in the ledger, not debited). A 4012 answer still debits the used units
        (RFC 4006 §9.1, DIAMETER_CREDIT_LIMIT_REACHED: "if the CCR contained used-service-units they
        are deducted, if possible"). The account is the one the session
        was opened for.
        """
        ...

    def terminate(
        self,
        session_id: str,
        request_number: int,
        rating_group: int,
        *,
        used: int,
        now: float,
    ) -> Deferred[CreditResult]:
        """CCR-TERMINATION (RFC 4006 §5.4): debit `used` (capped), release the rest.

        Called once per rating group the session reserved (used 0 when none reported);
        the session closes when it holds no reservation.
        """
        ...

    def direct_debit(
        self,
        subscriber: str,
        session_id: str,
        request_number: int,
        rating_group: int,
        *,
        units: int,
        now: float,
    ) -> Deferred[CreditResult]:
        """Immediate event charging, Requested-Action DIRECT_DEBITING (RFC 4006 §6.3).

        All or nothing: 4012 when the unreserved credit cannot pay for `units`.
        """
        ...

    def refund(
        self,
        subscriber: str,
        session_id: str,
        request_number: int,
        rating_group: int,
        *,
        units: int,
        now: float,
    ) -> Deferred[CreditResult]:
        """Requested-Action REFUND_ACCOUNT (RFC 4006 §6.4): credit `units` back."""
        ...

    def check_balance(
        self, subscriber: str, rating_group: int, *, now: float, units: int = 1
    ) -> Deferred[BalanceResult]:
        """Requested-Action CHECK_BALANCE (RFC 4006 §6.2): could `units` be granted now?"""
        ...

    def price_enquiry(
        self, subscriber: str, rating_group: int, *, units: int, now: float
    ) -> Deferred[PriceResult]:
        """Requested-Action PRICE_ENQUIRY (RFC 4006 §6.1): the cost of `units`."""
        ...

    def expire_stale(self, now: float) -> Deferred[list[ExpiredReservation]]:
        """Release sessions silent past validity + grace; forget closed ones past retention.

        The server's session supervision (the Tcc timer, RFC 4006 §13); call it
        periodically. Returns the reservations released.
        """
        ...

    def provision(self, accounts: Iterable[Account]) -> Deferred[int]:
        """Create or replace the balances and rates of `accounts`; reservations stay."""
        ...

    def create_account(self, account: Account) -> Deferred[None]:
        """Add a subscriber; fails with `AccountExistsError` if present."""
        ...

    def delete_account(self, subscriber: str) -> Deferred[bool]:
        """Remove a subscriber; False if absent. Its open sessions then get 5030."""
        ...

    def top_up(self, subscriber: str, kind: str, amount: int) -> Deferred[int]:
        """Add `amount` credit units of `kind`; the new balance. `UnknownSubscriberError`."""
        ...

    def set_balance(self, subscriber: str, kind: str, amount: int) -> Deferred[int]:
        """Set the balance of `kind`; reservations stay. `UnknownSubscriberError`."""
        ...

    def get_account(self, subscriber: str) -> Deferred[AccountSnapshot | None]:
        """The account as it stands, None if absent."""
        ...

    def list_subscribers(self) -> Deferred[list[str]]:
        """Every subscriber with an account, sorted."""
        ...


def check_kind(kind: str) -> UnitKind:
    """`kind` as a UnitKind; ValueError naming the valid kinds."""
    try:
        return UnitKind(kind)
    except ValueError:
        valid = ", ".join(k.value for k in UnitKind)
        raise ValueError(f"unknown unit kind {kind!r}; expected one of {valid}") from None


def check_units(what: str, value: int) -> int:
    """A non-negative unit count (Unsigned32/Unsigned64 AVPs cannot carry less)."""
    return _check_amount(what, value)


def check_request_number(value: int) -> int:
    """A CC-Request-Number: an Unsigned32 (RFC 4006 §8.2)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**32:
        raise ValueError(f"CC-Request-Number must be an Unsigned32, got {value!r}")
    return value


def account_document(accounts: Iterable[Account]) -> dict[str, Any]:
    """The accounts-file form of `accounts` (inverse of `parse_accounts`)."""
    return {
        "accounts": [
            {
                "subscriber": account.subscriber,
                **dict(account.balances),
                **(
                    {"rates": {str(k): v for k, v in account.rates.items()}}
                    if account.rates
                    else {}
                ),
            }
            for account in accounts
        ]
    }
