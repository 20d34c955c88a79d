"""What an operator does to the running lab OCS: top up, set a balance, look, re-authorize.

`Operator` works on the backend, the registry of open sessions and whatever sends
requests to clients (`SessionSignaller`, the `OcsServer`). Every method returns a Deferred,
already fired with the memory backend, so a test can take its result at once and a manhole
(``twisted.conch.manhole``) shows it on the next line. `Operator.namespace` is a ready-made
manhole namespace.

A top-up sends a Re-Auth-Request to every open session of the subscriber (RFC 4006 §5.5):
each client answers DIAMETER_LIMITED_SUCCESS (2002) and asks for credit again with a
CCR-UPDATE, so a call running on a final grant (Final-Unit-Indication) or refused with 4012
gets the new credit without waiting for its next report. The result lists each session's
RAA Result-Code, or why the RAR got no answer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from twisted.internet.defer import Deferred, DeferredList, fail, succeed

from b2bua.ocs.accounts import (
    Account,
    AccountSnapshot,
    OcsBackend,
    UnknownSubscriberError,
    check_kind,
    normalise_subscriber,
)
from b2bua.ocs.handler import OpenSession, SessionRegistry

__all__ = [
    "AccountView",
    "BalanceChange",
    "Operator",
    "SessionSignaller",
    "gather_outcomes",
]


class SessionSignaller(Protocol):
    """Sends server-initiated requests to the client that opened a session."""

    def send_rar(self, session_id: str) -> Deferred[int]:
        """Re-Auth-Request; fires with the RAA's Result-Code."""
        ...

    def send_asr(self, session_id: str) -> Deferred[int]:
        """Abort-Session-Request; fires with the ASA's Result-Code."""
        ...


@dataclass(frozen=True)
class BalanceChange:
    """The outcome of a top-up or a balance change."""

    subscriber: str
    kind: str
    balance: int
    #: Session-Id -> RAA Result-Code, or the reason the RAR failed.
    reauthorized: Mapping[str, int | str] = field(default_factory=dict)

    def __str__(self) -> str:
        text = f"{self.subscriber}: {self.kind} balance {self.balance}"
        for session_id, outcome in self.reauthorized.items():
            text += f"\n  RAR {session_id}: {outcome}"
        return text


@dataclass(frozen=True)
class AccountView:
    """An account as it stands and the sessions it has open."""

    account: AccountSnapshot
    sessions: tuple[OpenSession, ...]

    def __str__(self) -> str:
        account = self.account
        lines = [f"subscriber {account.subscriber}"]
        for kind in sorted(account.balances):
            lines.append(
                f"  {kind}: balance {account.balances[kind]}, "
                f"reserved {account.reserved.get(kind, 0)}, "
                f"available {account.available(kind)}"
            )
        for rating_group, rate in sorted(account.rates.items()):
            lines.append(f"  rate of rating group {rating_group}: {rate}")
        if not self.sessions:
            lines.append("  no open sessions")
        for session in self.sessions:
            groups = ", ".join(str(rg) for rg in sorted(session.rating_groups)) or "-"
            lines.append(
                f"  session {session.session_id} from {session.peer_host}, "
                f"rating groups {groups}, last seen {session.last_seen:.3f}"
            )
        return "\n".join(lines)


def gather_outcomes(calls: Sequence[tuple[str, Deferred[int]]]) -> Deferred[dict[str, int | str]]:
    """Wait for several requests: key -> Result-Code, or ``"ErrorType: message"``."""
    if not calls:
        return succeed({})

    def collect(results: list[tuple[bool, Any]]) -> dict[str, int | str]:
        outcome: dict[str, int | str] = {}
        for (key, _), (ok, value) in zip(calls, results, strict=True):
            if ok:
                outcome[key] = int(value)
            else:
                error = value.value
                outcome[key] = f"{type(error).__name__}: {error}"
        return outcome

    waiting: Deferred[list[tuple[bool, Any]]] = DeferredList(
        [deferred for _, deferred in calls], consumeErrors=True
    )
    return waiting.addCallback(collect)


class Operator:
    """Operator actions on the OCS (see the module doc)."""

    def __init__(
        self,
        backend: OcsBackend,
        registry: SessionRegistry,
        signaller: SessionSignaller | None = None,
    ) -> None:
        self.backend = backend
        self.registry = registry
        self.signaller = signaller

    # -- balances --

    def top_up(
        self, subscriber: str, amount: int, kind: str = "seconds", *, reauth: bool = True
    ) -> Deferred[BalanceChange]:
        """Add `amount` credit units of `kind`; then RAR to the subscriber's open sessions.

        Fails with `UnknownSubscriberError` (no account) or ValueError (bad kind or amount).
        """
        return self._change(self.backend.top_up, subscriber, amount, kind, reauth)

    def set_balance(
        self, subscriber: str, amount: int, kind: str = "seconds", *, reauth: bool = False
    ) -> Deferred[BalanceChange]:
        """Set the balance of `kind`; reservations stay. `reauth` sends RARs as a top-up does."""
        return self._change(self.backend.set_balance, subscriber, amount, kind, reauth)

    def _change(
        self, change: Any, subscriber: str, amount: int, kind: str, reauth: bool
    ) -> Deferred[BalanceChange]:
        try:
            key = normalise_subscriber(subscriber)
            unit = check_kind(kind).value
        except ValueError as error:
            return fail(error)
        changed: Deferred[int] = change(key, unit, amount)

        def signal(balance: int) -> Deferred[BalanceChange]:
            reauthorized = self.reauth_subscriber(key) if reauth else succeed({})
            return reauthorized.addCallback(
                lambda outcomes: BalanceChange(key, unit, balance, outcomes)
            )

        return changed.addCallback(signal)

    def create_account(
        self,
        subscriber: str,
        seconds: int = 0,
        events: int = 0,
        rates: Mapping[int, int] | None = None,
    ) -> Deferred[None]:
        """Add a subscriber; fails with `AccountExistsError` if it has an account."""
        try:
            account = Account(subscriber, {"seconds": seconds, "events": events}, rates or {})
        except ValueError as error:
            return fail(error)
        return self.backend.create_account(account)

    def subscribers(self) -> Deferred[list[str]]:
        """Every subscriber with an account."""
        return self.backend.list_subscribers()

    # -- looking --

    def show(self, subscriber: str) -> Deferred[AccountView]:
        """The account with its open sessions; `UnknownSubscriberError` if absent."""
        try:
            key = normalise_subscriber(subscriber)
        except ValueError as error:
            return fail(error)

        def view(snapshot: AccountSnapshot | None) -> AccountView:
            if snapshot is None:
                raise UnknownSubscriberError(key)
            return AccountView(snapshot, tuple(self.registry.of_subscriber(key)))

        return self.backend.get_account(key).addCallback(view)

    def sessions(self, subscriber: str | None = None) -> list[OpenSession]:
        """Open sessions: all of them, or those of `subscriber`."""
        if subscriber is not None:
            return self.registry.of_subscriber(subscriber)
        return sorted(self.registry, key=lambda s: (s.opened_at, s.session_id))

    # -- signalling --

    def reauth(self, session_id: str) -> Deferred[int]:
        """Send a Re-Auth-Request to one session; the RAA's Result-Code."""
        if self.signaller is None:
            return fail(RuntimeError("the OCS is not serving clients"))
        return self.signaller.send_rar(session_id)

    def abort(self, session_id: str) -> Deferred[int]:
        """Send an Abort-Session-Request to one session; the ASA's Result-Code."""
        if self.signaller is None:
            return fail(RuntimeError("the OCS is not serving clients"))
        return self.signaller.send_asr(session_id)

    def reauth_subscriber(self, subscriber: str) -> Deferred[dict[str, int | str]]:
        """RAR to every open session of `subscriber`: Session-Id -> Result-Code or error."""
        signaller = self.signaller
        if signaller is None:
            return succeed({})
        sessions = self.registry.of_subscriber(subscriber)
        return gather_outcomes([(s.session_id, signaller.send_rar(s.session_id)) for s in sessions])

    def namespace(self) -> dict[str, Any]:
        """Names for a manhole: ``ocs`` (this object) and its actions as functions."""
        return {"ocs": self} | {name: getattr(self, name) for name in OPERATOR_ACTIONS}


#: The operator actions a console offers, by name.
OPERATOR_ACTIONS = (
    "top_up",
    "set_balance",
    "show",
    "sessions",
    "reauth",
    "abort",
    "create_account",
    "subscribers",
)


def late_namespace(operator: Callable[[], Operator | None]) -> dict[str, Any]:
    """Console names for an operator that exists only once the OCS service has started.

    Each name looks the operator up when it is called, so a console built before the
    OCS starts (its namespace is fixed at construction) still reaches it.
    """

    def action(name: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            current = operator()
            if current is None:
                raise RuntimeError("the OCS is not running")
            return getattr(current, name)(*args, **kwargs)

        call.__name__ = name
        call.__doc__ = getattr(Operator, name).__doc__
        return call

    return {name: action(name) for name in OPERATOR_ACTIONS}
