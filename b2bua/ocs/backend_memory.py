"""In-memory OCS backend: the lab default, and the reference the Redis script mirrors.

All state lives in dictionaries of one process; every method answers at once with an
already-fired Deferred (`succeed`), so tests can check results synchronously. The
semantics (request numbers, grants, final units, expiry) are documented on `OcsBackend`;
`tests/ocs/backend_contract.py` holds both backends to them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from enum import Enum

from twisted.internet.defer import Deferred, fail, succeed

from b2bua.ocs.accounts import (
    Account,
    AccountExistsError,
    AccountSnapshot,
    UnknownSubscriberError,
    check_kind,
    check_request_number,
    check_units,
    normalise_subscriber,
)
from b2bua.ocs.ledger import Ledger
from b2bua.ocs.rating import (
    BalanceResult,
    CreditPolicy,
    CreditResult,
    ExpiredReservation,
    Operation,
    PriceResult,
    Rating,
    ResultCode,
    Tariff,
    compute_grant,
    number_position,
)

__all__ = ["MemoryBackend"]

#: Operations that open a session (the first request of SCUR/ECUR, or an event).
_OPENING = frozenset({Operation.INITIAL, Operation.DIRECT_DEBIT, Operation.REFUND})


@dataclass
class _Grant:
    """What a session holds for one rating group: units, their credit, at which rate."""

    units: int
    credit: int
    kind: str
    rate: int


@dataclass
class _Session:
    subscriber: str
    #: The highest CC-Request-Number seen.
    highest: int
    expires_at: float
    closed_at: float | None = None
    grants: dict[int, _Grant] = field(default_factory=dict)
    #: The operation of each request number remembered (the policy's window).
    requests: dict[int, Operation] = field(default_factory=dict)
    #: Answers per (request number, rating group), replayed to retransmissions.
    answers: dict[tuple[int, int], CreditResult] = field(default_factory=dict)

    def remember(self, number: int, operation: Operation, window: int) -> None:
        """Note a request number; forget those fallen out of the window."""
        self.requests[number] = operation
        if number_position(self.highest, number, window) == "ahead":
            self.highest = number
        for known in [n for n in self.requests if _outside(self.highest, n, window)]:
            del self.requests[known]
        for key in [k for k in self.answers if _outside(self.highest, k[0], window)]:
            del self.answers[key]


def _outside(highest: int, number: int, window: int) -> bool:
    return number_position(highest, number, window) not in ("same", "behind")


@dataclass
class _Account:
    balances: dict[str, int]
    reserved: dict[str, int]
    rates: dict[int, int]


class _Gate(Enum):
    NEW = "new"  # the first request of a session
    SAME = "same"  # another rating group of a request already answered in part
    NEXT = "next"  # a request number not seen yet, within the window


class MemoryBackend:
    """`OcsBackend` holding everything in this process."""

    def __init__(
        self,
        rating: Rating | None = None,
        policy: CreditPolicy | None = None,
        ledger: Ledger | None = None,
    ) -> None:
        self.rating = rating if rating is not None else Rating.default()
        self.policy = policy if policy is not None else CreditPolicy()
        self.ledger = ledger
        self._accounts: dict[str, _Account] = {}
        self._sessions: dict[str, _Session] = {}

    # -- credit control --

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
        """CCR-INITIAL; see `OcsBackend.reserve`."""
        return succeed(
            self._credit(
                Operation.INITIAL, subscriber, session_id, request_number, rating_group,
                requested=requested, used=None, now=now, validity=validity,
            )
        )  # fmt: skip

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
        """CCR-UPDATE; see `OcsBackend.update`."""
        return succeed(
            self._credit(
                Operation.UPDATE, None, session_id, request_number, rating_group,
                requested=requested, used=used, now=now, validity=validity,
            )
        )  # fmt: skip

    def terminate(
        self,
        session_id: str,
        request_number: int,
        rating_group: int,
        *,
        used: int,
        now: float,
    ) -> Deferred[CreditResult]:
        """CCR-TERMINATION; see `OcsBackend.terminate`."""
        return succeed(
            self._credit(
                Operation.TERMINATE, None, session_id, request_number, rating_group,
                requested=0, used=used, now=now, validity=None,
            )
        )  # fmt: skip

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
        """IEC DIRECT_DEBITING; see `OcsBackend.direct_debit`."""
        return succeed(
            self._credit(
                Operation.DIRECT_DEBIT, subscriber, session_id, request_number, rating_group,
                requested=units, used=None, now=now, validity=None,
            )
        )  # fmt: skip

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
        """REFUND_ACCOUNT; see `OcsBackend.refund`."""
        return succeed(
            self._credit(
                Operation.REFUND, subscriber, session_id, request_number, rating_group,
                requested=units, used=None, now=now, validity=None,
            )
        )  # fmt: skip

    def check_balance(
        self, subscriber: str, rating_group: int, *, now: float, units: int = 1
    ) -> Deferred[BalanceResult]:
        """CHECK_BALANCE; see `OcsBackend.check_balance`."""
        check_units("units", units)
        key, account = self._lookup(subscriber)
        tariff = self._tariff(account, rating_group)
        if account is None:
            result = BalanceResult(ResultCode.USER_UNKNOWN, key, rating_group, units=units)
        elif tariff is None:
            result = BalanceResult(ResultCode.RATING_FAILED, key, rating_group, units=units)
        else:
            kind = tariff.kind.value
            balance, reserved = account.balances[kind], account.reserved[kind]
            result = BalanceResult(
                ResultCode.SUCCESS,
                key,
                rating_group,
                kind=kind,
                units=units,
                enough_credit=units * tariff.rate <= max(0, balance - reserved),
                rate=tariff.rate,
                balance=balance,
                reserved=reserved,
            )
        if self.ledger is not None:
            self.ledger.balance_check(now, result)
        return succeed(result)

    def price_enquiry(
        self, subscriber: str, rating_group: int, *, units: int, now: float
    ) -> Deferred[PriceResult]:
        """PRICE_ENQUIRY; see `OcsBackend.price_enquiry`."""
        check_units("units", units)
        key, account = self._lookup(subscriber)
        tariff = self._tariff(account, rating_group)
        if account is None:
            result = PriceResult(ResultCode.USER_UNKNOWN, key, rating_group, units=units)
        elif tariff is None:
            result = PriceResult(ResultCode.RATING_FAILED, key, rating_group, units=units)
        else:
            result = PriceResult(
                ResultCode.SUCCESS,
                key,
                rating_group,
                kind=tariff.kind.value,
                units=units,
                rate=tariff.rate,
                cost=units * tariff.rate,
            )
        if self.ledger is not None:
            self.ledger.price(now, result)
        return succeed(result)

    def expire_stale(self, now: float) -> Deferred[list[ExpiredReservation]]:
        """Session supervision; see `OcsBackend.expire_stale`."""
        released: list[ExpiredReservation] = []
        for session_id in sorted(self._sessions):
            session = self._sessions[session_id]
            if session.closed_at is not None:
                if session.closed_at < now - self.policy.session_retention:
                    del self._sessions[session_id]
                continue
            if not session.expires_at < now - self.policy.stale_grace:
                continue
            account = self._accounts.get(session.subscriber)
            for rating_group in sorted(session.grants):
                grant = session.grants[rating_group]
                balance = reserved = 0
                if account is not None:
                    account.reserved[grant.kind] -= grant.credit
                    balance = account.balances[grant.kind]
                    reserved = account.reserved[grant.kind]
                released.append(
                    ExpiredReservation(
                        session_id, session.subscriber, rating_group, grant.kind,
                        grant.units, grant.credit, balance, reserved,
                    )
                )  # fmt: skip
            session.grants.clear()
            session.closed_at = now
        if self.ledger is not None:
            for item in released:
                self.ledger.expired(now, item)
        return succeed(released)

    # -- administration --

    def provision(self, accounts: Iterable[Account]) -> Deferred[int]:
        """Create or replace accounts; see `OcsBackend.provision`."""
        count = 0
        for account in accounts:
            current = self._accounts.get(account.subscriber)
            if current is None:
                self._accounts[account.subscriber] = self._new_account(account)
            else:
                current.balances.update(account.balances)
                current.rates = dict(account.rates)
            count += 1
        return succeed(count)

    def create_account(self, account: Account) -> Deferred[None]:
        """Add an account; see `OcsBackend.create_account`."""
        if account.subscriber in self._accounts:
            return fail(AccountExistsError(account.subscriber))
        self._accounts[account.subscriber] = self._new_account(account)
        return succeed(None)

    def delete_account(self, subscriber: str) -> Deferred[bool]:
        """Remove an account; see `OcsBackend.delete_account`."""
        return succeed(self._accounts.pop(normalise_subscriber(subscriber), None) is not None)

    def top_up(self, subscriber: str, kind: str, amount: int) -> Deferred[int]:
        """Add credit; see `OcsBackend.top_up`."""
        unit = check_kind(kind).value
        check_units("amount", amount)
        key = normalise_subscriber(subscriber)
        account = self._accounts.get(key)
        if account is None:
            return fail(UnknownSubscriberError(key))
        account.balances[unit] += amount
        return succeed(account.balances[unit])

    def set_balance(self, subscriber: str, kind: str, amount: int) -> Deferred[int]:
        """Set a balance; see `OcsBackend.set_balance`."""
        unit = check_kind(kind).value
        check_units("amount", amount)
        key = normalise_subscriber(subscriber)
        account = self._accounts.get(key)
        if account is None:
            return fail(UnknownSubscriberError(key))
        account.balances[unit] = amount
        return succeed(amount)

    def get_account(self, subscriber: str) -> Deferred[AccountSnapshot | None]:
        """The account now; see `OcsBackend.get_account`."""
        key = normalise_subscriber(subscriber)
        account = self._accounts.get(key)
        if account is None:
            return succeed(None)
        return succeed(
            AccountSnapshot(
                key, dict(account.balances), dict(account.reserved), dict(account.rates)
            )
        )

    def list_subscribers(self) -> Deferred[list[str]]:
        """Every subscriber; see `OcsBackend.list_subscribers`."""
        return succeed(sorted(self._accounts))

    # -- internals --

    @staticmethod
    def _new_account(account: Account) -> _Account:
        return _Account(
            dict(account.balances),
            dict.fromkeys(account.balances, 0),
            dict(account.rates),
        )

    def _lookup(self, subscriber: str) -> tuple[str, _Account | None]:
        """(key, account); an identity that does not normalise has no account."""
        try:
            key = normalise_subscriber(subscriber)
        except ValueError:
            return subscriber.strip(), None
        return key, self._accounts.get(key)

    def _tariff(self, account: _Account | None, rating_group: int) -> Tariff | None:
        """The tariff with the account's rate override applied."""
        tariff = self.rating.tariff(rating_group)
        if tariff is None or account is None or rating_group not in account.rates:
            return tariff
        return Tariff(tariff.kind, account.rates[rating_group], tariff.default_units)

    def _gate(
        self, operation: Operation, session_id: str, number: int, rating_group: int
    ) -> tuple[_Gate, _Session | None] | CreditResult | int:
        """Where a request stands against its session's request numbers.

        Returns the stored answer (a retransmission), a refusal code, or how to go on.
        """
        session = self._sessions.get(session_id)
        opening = operation in _OPENING
        if session is None:
            return (_Gate.NEW, None) if opening else ResultCode.UNKNOWN_SESSION_ID
        seen = session.requests.get(number)
        if seen is not None and seen is not operation:
            return ResultCode.UNABLE_TO_COMPLY
        stored = session.answers.get((number, rating_group))
        if stored is not None:
            return stored
        if seen is not None:
            return _Gate.SAME, session
        if session.closed_at is not None:
            return ResultCode.UNABLE_TO_COMPLY if opening else ResultCode.UNKNOWN_SESSION_ID
        if opening:
            return ResultCode.UNABLE_TO_COMPLY
        if number_position(session.highest, number, self.policy.request_window) == "outside":
            return ResultCode.UNABLE_TO_COMPLY
        return _Gate.NEXT, session

    def _credit(
        self,
        operation: Operation,
        subscriber: str | None,
        session_id: str,
        request_number: int,
        rating_group: int,
        *,
        requested: int | None,
        used: int | None,
        now: float,
        validity: int | None,
    ) -> CreditResult:
        """One rating group of one INITIAL, UPDATE, TERMINATE or event request."""
        check_request_number(request_number)
        check_units("rating group", rating_group)
        if requested is not None:
            check_units("requested units", requested)
        if used is not None:
            check_units("used units", used)
        if validity is not None:
            check_units("validity", validity)
        if requested is None and operation in (Operation.INITIAL, Operation.UPDATE):
            tariff = self.rating.tariff(rating_group)
            requested = tariff.default_units if tariff is not None else None
        result = self._decide(
            operation, subscriber, session_id, request_number, rating_group,
            requested=requested or 0, used=used or 0, now=now, validity=validity,
        )  # fmt: skip
        if self.ledger is not None:
            self.ledger.credit(
                now, operation, session_id, request_number,
                requested=None if operation is Operation.TERMINATE else requested,
                used=used, result=result,
            )  # fmt: skip
        return result

    def _decide(
        self,
        operation: Operation,
        subscriber: str | None,
        session_id: str,
        number: int,
        rating_group: int,
        *,
        requested: int,
        used: int,
        now: float,
        validity: int | None,
    ) -> CreditResult:
        """The answer for `_credit`, state changed accordingly."""
        gate = self._gate(operation, session_id, number, rating_group)
        if isinstance(gate, CreditResult):
            return replace(gate, duplicate=True)
        if isinstance(gate, int):
            session = self._sessions.get(session_id)
            if session is not None:
                key = session.subscriber
            elif subscriber is not None:
                key = self._lookup(subscriber)[0]
            else:
                key = ""
            return CreditResult(gate, key, rating_group)
        step, session = gate
        if session is not None:
            key, account = session.subscriber, self._accounts.get(session.subscriber)
        else:
            key, account = self._lookup(subscriber or "")
        if step is _Gate.NEXT and session is not None:
            session.remember(number, operation, self.policy.request_window)
        tariff = self._tariff(account, rating_group)
        if account is None or tariff is None:
            code = ResultCode.USER_UNKNOWN if account is None else ResultCode.RATING_FAILED
            result = CreditResult(code, key, rating_group)
            if session is not None:
                if account is None:
                    # Nothing to release into: the account is gone.
                    session.grants.pop(rating_group, None)
                self._settle(
                    session, operation, number, rating_group, result, now=now, validity=validity
                )
            return result
        if session is None:
            session = _Session(key, number, now, requests={number: operation})
            self._sessions[session_id] = session
        result = self._apply(
            operation, session, account, rating_group, tariff,
            requested=requested, used=used, validity=validity,
        )  # fmt: skip
        self._settle(session, operation, number, rating_group, result, now=now, validity=validity)
        return result

    def _apply(
        self,
        operation: Operation,
        session: _Session,
        account: _Account,
        rating_group: int,
        tariff: Tariff,
        *,
        requested: int,
        used: int,
        validity: int | None,
    ) -> CreditResult:
        """The balance arithmetic of one request on a known account and tariff."""
        kind = tariff.kind.value
        code = ResultCode.SUCCESS
        granted, final, debited, cost = 0, False, 0, 0
        if operation is Operation.DIRECT_DEBIT:
            price = requested * tariff.rate
            if price <= max(0, account.balances[kind] - account.reserved[kind]):
                account.balances[kind] -= price
                granted, debited, cost = requested, requested, price
            else:
                code = ResultCode.CREDIT_LIMIT_REACHED
        elif operation is Operation.REFUND:
            account.balances[kind] += requested * tariff.rate
            debited, cost = -requested, -requested * tariff.rate
        else:
            held = session.grants.pop(rating_group, None)
            if held is not None:
                debited = min(used, held.units)
                cost = debited * held.rate
                account.balances[held.kind] -= cost
                account.reserved[held.kind] -= held.credit
            if operation is not Operation.TERMINATE:
                granted, final = compute_grant(
                    requested, account.balances[kind], account.reserved[kind], tariff.rate,
                    self.policy.final_unit_style,
                )  # fmt: skip
                if granted > 0:
                    session.grants[rating_group] = _Grant(
                        granted, granted * tariff.rate, kind, tariff.rate
                    )
                    account.reserved[kind] += granted * tariff.rate
                elif requested > 0:
                    code = ResultCode.CREDIT_LIMIT_REACHED
        return CreditResult(
            code,
            session.subscriber,
            rating_group,
            kind=kind,
            granted=granted,
            final=final,
            validity=(validity if validity is not None else self.policy.default_validity)
            if granted > 0 and operation in (Operation.INITIAL, Operation.UPDATE)
            else None,
            debited=debited,
            cost=cost,
            balance_after=account.balances[kind],
            reserved_after=account.reserved[kind],
        )

    def _settle(
        self,
        session: _Session,
        operation: Operation,
        number: int,
        rating_group: int,
        result: CreditResult,
        *,
        now: float,
        validity: int | None,
    ) -> None:
        """Store the answer for retransmissions; open, keep or close the session."""
        session.answers[number, rating_group] = result
        if operation in (Operation.DIRECT_DEBIT, Operation.REFUND):
            closes = True
        elif operation is Operation.INITIAL:
            closes = not session.grants and not result.success
        elif operation is Operation.TERMINATE:
            closes = not session.grants
        else:
            closes = False
        if closes:
            session.closed_at = now
        else:
            session.closed_at = None
            session.expires_at = now + (
                validity if validity is not None else self.policy.default_validity
            )
