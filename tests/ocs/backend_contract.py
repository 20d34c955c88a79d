"""The behaviour every `OcsBackend` must have: one mixin, run against memory and Redis.

The tests are coroutines awaiting the backend's Deferreds, wrapped by `contract`, which
hands each to the subclass's `run`: the memory backend runs it to completion at once
(its Deferreds have all fired: `result_of`), the Redis backend returns the Deferred of
`ensureDeferred` for pytest-twisted to wait on in the reactor. A subclass also supplies
`make_backend` (a fresh, empty backend). The tests only use the `OcsBackend` interface,
so both backends must give identical answers.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

import pytest
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.python.failure import Failure

from b2bua.ocs.accounts import (
    Account,
    AccountExistsError,
    OcsBackend,
    UnknownSubscriberError,
)
from b2bua.ocs.ledger import Ledger
from b2bua.ocs.rating import (
    CheckBalanceResult,
    CreditPolicy,
    CreditResult,
    ExpiredReservation,
    FinalUnitStyle,
    Rating,
    ResultCode,
    Tariff,
    UnitKind,
)

T = TypeVar("T")
Test = Callable[..., Coroutine[Any, Any, None]]

VOICE, VIDEO, SMS = 100, 200, 300
ALICE = "tel:+1-555-0100"  # normalised: 15550100
ALICE_KEY = "15550100"
BOB = "sip:bob@Lab.Example"  # normalised: sip:bob@lab.example
BOB_KEY = "sip:bob@lab.example"

ACCOUNTS = (
    Account(ALICE, {"seconds": 75, "events": 3}),
    Account(BOB, {"seconds": 600, "events": 10}, {VIDEO: 1}),
)


def result_of(deferred: Deferred[T]) -> T:
    """The result of a Deferred that has already fired (trial's successResultOf).

    Raises the failure if it failed; fails the test if it has not fired.
    """
    outcome: list[Any] = []
    deferred.addBoth(outcome.append)
    assert outcome, f"{deferred!r} has not fired"
    if isinstance(outcome[0], Failure):
        outcome[0].raiseException()
    return outcome[0]  # type: ignore[no-any-return]


def run_now(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that awaits only fired Deferreds, to its end, right now."""
    return result_of(ensureDeferred(coroutine))


def contract(test: Test) -> Callable[..., Any]:
    """Make a coroutine test a plain test method that the subclass's `run` drives."""

    @functools.wraps(test)
    def call(self: BackendContract, *args: Any, **kwargs: Any) -> Any:
        return self.run(test(self, *args, **kwargs))

    return call


class BackendContract:
    """Contract tests; subclasses provide `make_backend` and `run`."""

    ledger: Ledger

    def make_backend(
        self, *, rating: Rating, policy: CreditPolicy, ledger: Ledger
    ) -> Deferred[OcsBackend]:
        """A new backend with no accounts and no sessions."""
        raise NotImplementedError

    def run(self, test: Coroutine[Any, Any, None]) -> Deferred[None] | None:
        """Run one contract test: to its end, or as a Deferred for pytest-twisted."""
        raise NotImplementedError

    async def backend(
        self,
        accounts: Sequence[Account] = ACCOUNTS,
        *,
        style: FinalUnitStyle = "fui",
        rating: Rating | None = None,
        **policy: Any,
    ) -> OcsBackend:
        """A backend provisioned with `accounts`, its ledger kept in `self.ledger`."""
        self.ledger = Ledger(keep=True)
        backend = await self.make_backend(
            rating=rating if rating is not None else Rating.default(),
            policy=CreditPolicy(final_unit_style=style, **policy),
            ledger=self.ledger,
        )
        await backend.provision(accounts)
        return backend

    async def balance(self, backend: OcsBackend, subscriber: str, kind: str = "seconds") -> int:
        """Balance of `kind` now."""
        snapshot = await backend.get_account(subscriber)
        assert snapshot is not None
        return snapshot.balances[kind]

    async def reserved(self, backend: OcsBackend, subscriber: str, kind: str = "seconds") -> int:
        """Credit of `kind` reserved by all sessions now."""
        snapshot = await backend.get_account(subscriber)
        assert snapshot is not None
        return snapshot.reserved[kind]

    # -- accounts --

    @contract
    async def test_provision_and_lookup_by_any_spelling(self) -> None:
        """Provisioned accounts are found under every spelling of the identity."""
        backend = await self.backend()
        assert (await backend.list_subscribers()) == sorted([ALICE_KEY, BOB_KEY])
        for spelling in (
            "+15550100",
            "tel:+15550100;phone-context=x",
            "sip:+15550100@h;user=phone",
        ):
            snapshot = await backend.get_account(spelling)
            assert snapshot is not None
            assert snapshot.subscriber == ALICE_KEY
            assert snapshot.balances == {"seconds": 75, "events": 3}
            assert snapshot.reserved == {"seconds": 0, "events": 0}
        bob = await backend.get_account("sips:bob@lab.example:5061;transport=tls")
        assert bob is not None
        assert bob.rates == {VIDEO: 1}
        assert (await backend.get_account("sip:nobody@lab.example")) is None

    @contract
    async def test_provision_replaces_balances_and_rates_keeps_reservations(self) -> None:
        """Re-provisioning sets balances and rates but leaves open reservations alone."""
        backend = await self.backend()
        await backend.reserve(BOB, "s1", 0, VOICE, requested=30, now=0)
        count = await backend.provision([Account(BOB, {"seconds": 100})])
        assert count == 1
        snapshot = await backend.get_account(BOB)
        assert snapshot is not None
        assert snapshot.balances == {"seconds": 100, "events": 0}
        assert snapshot.reserved["seconds"] == 30
        assert snapshot.rates == {}

    @contract
    async def test_create_delete_top_up_set_balance(self) -> None:
        """Run-time administration: create, refuse a second create, top up, set, delete."""
        backend = await self.backend()
        carol = Account("sip:carol@lab.example", {"seconds": 10})
        await backend.create_account(carol)
        with pytest.raises(AccountExistsError):
            await backend.create_account(carol)
        assert (await backend.top_up("sip:carol@LAB.example", "seconds", 50)) == 60
        assert (await backend.top_up(carol.subscriber, "events", 2)) == 2
        assert (await backend.set_balance(carol.subscriber, "seconds", 5)) == 5
        assert await self.balance(backend, carol.subscriber) == 5
        assert (await backend.delete_account(carol.subscriber)) is True
        assert (await backend.delete_account(carol.subscriber)) is False
        assert (await backend.get_account(carol.subscriber)) is None
        with pytest.raises(UnknownSubscriberError):
            await backend.top_up(carol.subscriber, "seconds", 1)
        with pytest.raises(UnknownSubscriberError):
            await backend.set_balance(carol.subscriber, "seconds", 1)

    @contract
    async def test_admin_rejects_bad_arguments(self) -> None:
        """Unknown unit kinds and negative amounts are programming errors (ValueError)."""
        backend = await self.backend()
        with pytest.raises(ValueError, match="unknown unit kind"):
            backend.top_up(ALICE, "octets", 1)
        with pytest.raises(ValueError, match="non-negative"):
            backend.set_balance(ALICE, "seconds", -1)

    # -- SCUR: reserve, update, terminate --

    @contract
    async def test_reserve_grants_what_is_asked_within_the_balance(self) -> None:
        """CCR-I grants min(requested, balance) and reserves it."""
        backend = await self.backend()
        first = await backend.reserve(ALICE, "s1", 0, VOICE, requested=30, now=0)
        assert first == CreditResult(
            ResultCode.SUCCESS, ALICE_KEY, VOICE, "seconds", granted=30, validity=600,
            balance_after=75, reserved_after=30,
        )  # fmt: skip
        big = await backend.reserve(ALICE, "s2", 0, VOICE, requested=100, now=0)
        assert (big.granted, big.final, big.reserved_after) == (45, False, 75)

    @contract
    async def test_reserve_refused_when_nothing_is_left(self) -> None:
        """4012 when no unit can be granted; the refused session is closed."""
        backend = await self.backend()
        await backend.reserve(ALICE, "s1", 0, VOICE, requested=75, now=0)
        refused = await backend.reserve(ALICE, "s2", 0, VOICE, requested=30, now=1)
        assert refused.result_code == ResultCode.CREDIT_LIMIT_REACHED
        assert (refused.granted, refused.validity, refused.reserved_after) == (0, None, 75)
        late = await backend.update("s2", 1, VOICE, used=0, requested=30, now=2)
        assert late.result_code == ResultCode.UNKNOWN_SESSION_ID

    @contract
    async def test_unknown_user_and_unrateable_service(self) -> None:
        """5030 for an unknown subscriber, 5031 for a rating group without tariff."""
        backend = await self.backend()
        unknown = await backend.reserve("sip:eve@x", "s1", 0, VOICE, requested=30, now=0)
        assert unknown.result_code == ResultCode.USER_UNKNOWN
        assert unknown.subscriber == "sip:eve@x"
        empty = await backend.reserve("  ", "s2", 0, VOICE, requested=30, now=0)
        assert empty.result_code == ResultCode.USER_UNKNOWN
        unrated = await backend.reserve(ALICE, "s3", 0, 999, requested=30, now=0)
        assert unrated.result_code == ResultCode.RATING_FAILED
        assert await self.reserved(backend, ALICE) == 0
        # No session was opened by either refusal: a CCR-U for them is unknown.
        late = await backend.update("s3", 1, VOICE, used=0, requested=30, now=1)
        assert late.result_code == ResultCode.UNKNOWN_SESSION_ID

    @contract
    async def test_reserve_without_requested_units_uses_the_tariff_default(self) -> None:
        """A CCR-I without Requested-Service-Unit gets the tariff's default units."""
        backend = await self.backend()
        voice = await backend.reserve(BOB, "s1", 0, VOICE, requested=None, now=0)
        sms = await backend.reserve(BOB, "s2", 0, SMS, requested=None, now=0)
        assert (voice.granted, sms.granted, sms.kind) == (30, 1, "events")
        assert self.ledger.entries[0].requested == 30

    @contract
    async def test_update_debits_used_and_reserves_anew(self) -> None:
        """CCR-U debits the used units, releases the old grant and grants again."""
        backend = await self.backend()
        await backend.reserve(BOB, "s1", 0, VOICE, requested=30, now=0)
        result = await backend.update("s1", 1, VOICE, used=25, requested=60, now=25)
        assert (result.debited, result.cost, result.granted) == (25, 25, 60)
        assert (result.balance_after, result.reserved_after) == (575, 60)

    @contract
    async def test_used_beyond_the_grant_is_capped_and_recorded(self) -> None:
        """A report of more than was granted debits only the grant; the ledger keeps both."""
        backend = await self.backend()
        await backend.reserve(BOB, "s1", 0, VOICE, requested=30, now=0)
        result = await backend.update("s1", 1, VOICE, used=45, requested=30, now=45)
        assert result.debited == 30
        assert result.balance_after == 570
        entry = self.ledger.entries[-1]
        assert (entry.used, entry.debited) == (45, 30)
        final = await backend.terminate("s1", 2, VOICE, used=31, now=80)
        assert (final.debited, final.balance_after, final.reserved_after) == (30, 540, 0)

    @contract
    async def test_terminate_debits_and_releases_then_session_is_gone(self) -> None:
        """CCR-T debits, releases the rest and closes; later requests get 5002."""
        backend = await self.backend()
        await backend.reserve(ALICE, "s1", 0, VOICE, requested=30, now=0)
        result = await backend.terminate("s1", 1, VOICE, used=12, now=12)
        assert (result.granted, result.debited, result.validity) == (0, 12, None)
        assert (result.balance_after, result.reserved_after) == (63, 0)
        for late in (
            backend.update("s1", 2, VOICE, used=0, requested=30, now=13),
            backend.terminate("s1", 2, VOICE, used=0, now=13),
        ):
            assert (await late).result_code == ResultCode.UNKNOWN_SESSION_ID

    @contract
    async def test_update_or_terminate_of_unknown_session(self) -> None:
        """CCR-U/CCR-T for a session never opened is DIAMETER_UNKNOWN_SESSION_ID."""
        backend = await self.backend()
        update = await backend.update("ghost", 1, VOICE, used=10, requested=30, now=0)
        terminate = await backend.terminate("ghost", 1, VOICE, used=10, now=0)
        assert update.result_code == terminate.result_code == ResultCode.UNKNOWN_SESSION_ID
        assert update.subscriber == ""

    @contract
    async def test_update_refused_still_debits_used(self) -> None:
        """A CCR-U answered 4012 debits what was used (RFC 4006 §9.1) and holds nothing."""
        backend = await self.backend()
        await backend.reserve(ALICE, "s1", 0, VOICE, requested=75, now=0)
        result = await backend.update("s1", 1, VOICE, used=75, requested=30, now=75)
        assert result.result_code == ResultCode.CREDIT_LIMIT_REACHED
        assert (result.debited, result.balance_after, result.reserved_after) == (75, 0, 0)
        end = await backend.terminate("s1", 2, VOICE, used=0, now=75)
        assert end.success

    @contract
    async def test_update_with_zero_requested_only_reports(self) -> None:
        """Requesting 0 units is not a refusal: the used units are debited, nothing held."""
        backend = await self.backend()
        await backend.reserve(ALICE, "s1", 0, VOICE, requested=30, now=0)
        result = await backend.update("s1", 1, VOICE, used=30, requested=0, now=30)
        assert (result.result_code, result.granted, result.reserved_after) == (2001, 0, 0)

    @contract
    async def test_validity_is_returned_with_grants(self) -> None:
        """Grants carry the Validity-Time asked for, else the policy default."""
        backend = await self.backend(default_validity=900)
        named = await backend.reserve(BOB, "s1", 0, VOICE, requested=30, now=0, validity=120)
        default = await backend.reserve(BOB, "s2", 0, VOICE, requested=30, now=0)
        assert (named.validity, default.validity) == (120, 900)

    @contract
    async def test_balance_lowered_below_reservations_goes_negative(self) -> None:
        """Units granted stay the subscriber's: an operator's cut cannot take them back."""
        backend = await self.backend()
        await backend.reserve(ALICE, "s1", 0, VOICE, requested=30, now=0)
        await backend.set_balance(ALICE, "seconds", 10)
        result = await backend.terminate("s1", 1, VOICE, used=30, now=30)
        assert (result.debited, result.balance_after) == (30, -20)
        refused = await backend.reserve(ALICE, "s2", 0, VOICE, requested=1, now=31)
        assert refused.result_code == ResultCode.CREDIT_LIMIT_REACHED

    # -- rating groups and rates --

    @contract
    async def test_video_costs_two_credit_seconds_per_second(self) -> None:
        """Rating group 200 reserves and debits at 2 credit seconds per second."""
        backend = await self.backend()
        video = await backend.reserve(ALICE, "s1", 0, VIDEO, requested=30, now=0)
        assert (video.granted, video.reserved_after, video.final) == (30, 60, False)
        end = await backend.terminate("s1", 1, VIDEO, used=20, now=20)
        assert (end.debited, end.cost, end.balance_after) == (20, 40, 35)
        # 35 credit seconds buy 17 video seconds; the odd one is left for voice.
        last = await backend.reserve(ALICE, "s2", 0, VIDEO, requested=30, now=21)
        assert (last.granted, last.final, last.reserved_after) == (17, True, 34)

    @contract
    async def test_account_rate_override(self) -> None:
        """Bob's contract prices video like voice."""
        backend = await self.backend()
        video = await backend.reserve(BOB, "s1", 0, VIDEO, requested=30, now=0)
        assert video.reserved_after == 30

    @contract
    async def test_rate_is_fixed_at_grant_time(self) -> None:
        """A rate change does not reprice units already granted."""
        backend = await self.backend()
        await backend.reserve(BOB, "s1", 0, VIDEO, requested=30, now=0)
        await backend.provision([Account(BOB, {"seconds": 600, "events": 10}, {VIDEO: 3})])
        update = await backend.update("s1", 1, VIDEO, used=30, requested=10, now=30)
        assert (update.cost, update.balance_after, update.reserved_after) == (30, 570, 30)

    @contract
    async def test_several_rating_groups_in_one_request(self) -> None:
        """Voice and video MSCCs of one CCR share a request number and one time balance."""
        backend = await self.backend()
        voice = await backend.reserve(ALICE, "s1", 0, VOICE, requested=30, now=0)
        video = await backend.reserve(ALICE, "s1", 0, VIDEO, requested=30, now=0)
        assert (voice.granted, video.granted, video.reserved_after) == (30, 22, 74)
        # Voice's reservation may come back, so video's short grant is not final.
        assert not video.final
        upd_voice = await backend.update("s1", 1, VOICE, used=30, requested=30, now=30)
        upd_video = await backend.update("s1", 1, VIDEO, used=22, requested=30, now=30)
        # Video still held 44 credit seconds when voice asked again: 1 s was left.
        assert (upd_voice.granted, upd_voice.balance_after, upd_voice.final) == (1, 45, False)
        assert (upd_video.debited, upd_video.cost, upd_video.balance_after) == (22, 44, 1)
        assert (upd_video.result_code, upd_video.granted) == (ResultCode.CREDIT_LIMIT_REACHED, 0)
        end = await backend.terminate("s1", 2, VOICE, used=1, now=31)
        assert (end.balance_after, end.reserved_after) == (0, 0)
        # Video held nothing, so terminating voice ended the session.
        late = await backend.update("s1", 3, VOICE, used=0, requested=0, now=32)
        assert late.result_code == ResultCode.UNKNOWN_SESSION_ID

    @contract
    async def test_session_closes_with_its_last_reservation(self) -> None:
        """A CCR-T answers each rating group; the session ends when none holds credit."""
        backend = await self.backend()
        await backend.reserve(BOB, "s1", 0, VOICE, requested=30, now=0)
        await backend.reserve(BOB, "s1", 0, VIDEO, requested=30, now=0)
        voice = await backend.terminate("s1", 1, VOICE, used=10, now=10)
        assert (voice.balance_after, voice.reserved_after) == (590, 30)
        video = await backend.terminate("s1", 1, VIDEO, used=10, now=10)
        assert (video.balance_after, video.reserved_after) == (580, 0)
        late = await backend.update("s1", 2, VOICE, used=0, requested=30, now=11)
        assert late.result_code == ResultCode.UNKNOWN_SESSION_ID

    @contract
    async def test_free_rating_group(self) -> None:
        """Rate 0: whatever is asked is granted, nothing is debited, never final."""
        rating = Rating({VOICE: Tariff(UnitKind.SECONDS, 0)})
        backend = await self.backend(rating=rating)
        grant = await backend.reserve(ALICE, "s1", 0, VOICE, requested=1000, now=0)
        assert (grant.granted, grant.final, grant.reserved_after) == (1000, False, 0)
        end = await backend.terminate("s1", 1, VOICE, used=900, now=900)
        assert (end.debited, end.cost, end.balance_after) == (900, 0, 75)

    # -- final units --

    @contract
    async def test_final_grant_when_it_empties_the_balance(self) -> None:
        """fui: the grant that leaves nothing (no other holder) is final."""
        backend = await self.backend()
        exact = await backend.reserve(ALICE, "s1", 0, VOICE, requested=75, now=0)
        assert (exact.granted, exact.final) == (75, True)

    @contract
    async def test_not_final_while_another_session_holds_credit(self) -> None:
        """A short grant is not final while another session's reservation may return."""
        backend = await self.backend()
        await backend.reserve(ALICE, "s1", 0, VOICE, requested=60, now=0)
        short = await backend.reserve(ALICE, "s2", 0, VOICE, requested=30, now=0)
        assert (short.granted, short.final) == (15, False)

    @contract
    async def test_4012_style_never_flags_final(self) -> None:
        """4012 style: the emptying grant is plain; the next request is refused."""
        backend = await self.backend(style="4012")
        grant = await backend.reserve(ALICE, "s1", 0, VOICE, requested=75, now=0)
        assert (grant.granted, grant.final) == (75, False)
        refused = await backend.update("s1", 1, VOICE, used=75, requested=30, now=75)
        assert refused.result_code == ResultCode.CREDIT_LIMIT_REACHED

    @pytest.mark.parametrize("style", ["fui", "4012"])
    @contract
    async def test_worked_example(self, style: FinalUnitStyle) -> None:
        """The reference's worked example, both final-unit styles, 75 s billed."""
        # Imported here: test_worked_example imports this module's helpers.
        from tests.ocs.test_worked_example import WORKED_EXAMPLE, replay

        backend = await self.backend([Account(ALICE, {"seconds": 75})], style=style)
        await replay(backend, WORKED_EXAMPLE[style])
        assert self.ledger.billed_seconds(ALICE_KEY) == 75

    # -- request numbers: duplicates and order --

    @contract
    async def test_duplicate_initial_returns_stored_answer(self) -> None:
        """A retransmitted CCR-I replays the answer and reserves nothing more."""
        backend = await self.backend()
        first = await backend.reserve(ALICE, "s1", 0, VOICE, requested=30, now=0)
        again = await backend.reserve(ALICE, "s1", 0, VOICE, requested=30, now=3)
        assert again.duplicate and not first.duplicate
        assert again == CreditResult(**{**first.to_dict(), "duplicate": True})
        assert await self.reserved(backend, ALICE) == 30

    @contract
    async def test_duplicate_update_never_debits_twice(self) -> None:
        """A retransmitted CCR-U replays the answer; the balance moves once."""
        backend = await self.backend()
        await backend.reserve(ALICE, "s1", 0, VOICE, requested=30, now=0)
        first = await backend.update("s1", 1, VOICE, used=30, requested=30, now=30)
        for _ in range(3):
            again = await backend.update("s1", 1, VOICE, used=30, requested=30, now=31)
            assert again.duplicate
            assert again.balance_after == first.balance_after == 45
        assert await self.balance(backend, ALICE) == 45
        assert await self.reserved(backend, ALICE) == 30
        assert self.ledger.billed_seconds(ALICE_KEY) == 30

    @contract
    async def test_duplicate_terminate_after_close(self) -> None:
        """A retransmitted CCR-T after the session closed still gets its stored answer."""
        backend = await self.backend()
        await backend.reserve(ALICE, "s1", 0, VOICE, requested=30, now=0)
        first = await backend.terminate("s1", 1, VOICE, used=10, now=10)
        again = await backend.terminate("s1", 1, VOICE, used=10, now=11)
        assert again.duplicate
        assert again.balance_after == first.balance_after == 65
        assert await self.balance(backend, ALICE) == 65

    @contract
    async def test_duplicate_refusal_is_replayed(self) -> None:
        """A retransmitted CCR-I that was refused stays refused, even after a top-up."""
        backend = await self.backend()
        await backend.set_balance(ALICE, "seconds", 0)
        first = await backend.reserve(ALICE, "s1", 0, VOICE, requested=30, now=0)
        await backend.top_up(ALICE, "seconds", 100)
        again = await backend.reserve(ALICE, "s1", 0, VOICE, requested=30, now=1)
        assert first.result_code == again.result_code == ResultCode.CREDIT_LIMIT_REACHED
        assert again.duplicate

    @contract
    async def test_numbers_that_cannot_be_checked_are_refused(self) -> None:
        """Numbers outside the window or of another request type get 5012, change nothing."""
        backend = await self.backend(request_window=4)
        await backend.reserve(ALICE, "s1", 0, VOICE, requested=30, now=0)
        await backend.update("s1", 1, VOICE, used=10, requested=30, now=10)
        cases = [
            backend.update("s1", 6, VOICE, used=10, requested=30, now=20),  # too far ahead
            backend.terminate("s1", 1, VOICE, used=10, now=20),  # the number of a CCR-U
            backend.reserve(ALICE, "s1", 2, VOICE, requested=30, now=20),  # a CCR-I again
            backend.direct_debit(ALICE, "s1", 2, SMS, units=1, now=20),  # an event on it
        ]
        for deferred in cases:
            result = await deferred
            assert result.result_code == ResultCode.UNABLE_TO_COMPLY
            assert result.subscriber == ALICE_KEY
        assert (await self.balance(backend, ALICE), await self.reserved(backend, ALICE)) == (65, 30)
        for number in range(2, 6):
            await backend.update("s1", number, VOICE, used=1, requested=30, now=20 + number)
        assert await self.balance(backend, ALICE) == 61
        # Request 1 fell out of the window: it cannot be told from a new request any more.
        old = await backend.update("s1", 1, VOICE, used=10, requested=30, now=30)
        assert old.result_code == ResultCode.UNABLE_TO_COMPLY
        assert await self.balance(backend, ALICE) == 61
        recent = await backend.update("s1", 5, VOICE, used=1, requested=30, now=30)
        assert recent.duplicate

    @contract
    async def test_parallel_updates_out_of_sequence(self) -> None:
        """Parallel CCR-Us may overtake each other; each is answered (RFC 4006 §5.1)."""
        backend = await self.backend()
        await backend.reserve(BOB, "s1", 0, VOICE, requested=30, now=0)
        await backend.reserve(BOB, "s1", 0, VIDEO, requested=30, now=0)
        # The client sent #1 (voice) then #2 (video); #2 arrives first.
        video = await backend.update("s1", 2, VIDEO, used=30, requested=30, now=30)
        voice = await backend.update("s1", 1, VOICE, used=20, requested=30, now=30)
        assert video.success and voice.success
        assert (voice.balance_after, voice.reserved_after) == (550, 60)
        again = [
            await backend.update("s1", 1, VOICE, used=20, requested=30, now=31),
            await backend.update("s1", 2, VIDEO, used=30, requested=30, now=31),
        ]
        assert all(r.duplicate for r in again)
        # A gap: #3 is still on its way when #4 arrives.
        assert (await backend.update("s1", 4, VOICE, used=5, requested=30, now=35)).success
        assert (await backend.update("s1", 3, VIDEO, used=5, requested=30, now=35)).success
        assert await self.balance(backend, BOB) == 540
        await backend.terminate("s1", 5, VOICE, used=0, now=40)
        await backend.terminate("s1", 5, VIDEO, used=0, now=40)
        assert await self.reserved(backend, BOB) == 0

    @contract
    async def test_opening_a_closed_session_id_again_is_refused(self) -> None:
        """A CCR-I reusing a finished session id is out of sequence (5012)."""
        backend = await self.backend()
        await backend.reserve(ALICE, "s1", 0, VOICE, requested=30, now=0)
        await backend.terminate("s1", 1, VOICE, used=0, now=1)
        again = await backend.reserve(ALICE, "s1", 2, VOICE, requested=30, now=2)
        assert again.result_code == ResultCode.UNABLE_TO_COMPLY

    @contract
    async def test_request_number_wraps(self) -> None:
        """After 2**32 - 1 the next CC-Request-Number is 0 (Unsigned32)."""
        backend = await self.backend()
        top = 2**32 - 1
        await backend.reserve(ALICE, "s1", top, VOICE, requested=30, now=0)
        wrapped = await backend.update("s1", 0, VOICE, used=30, requested=30, now=30)
        assert wrapped.success and wrapped.balance_after == 45

    @contract
    async def test_invalid_arguments_raise(self) -> None:
        """Negative units or a request number beyond Unsigned32 are programming errors."""
        backend = await self.backend()
        with pytest.raises(ValueError):
            backend.reserve(ALICE, "s1", 2**32, VOICE, requested=30, now=0)
        with pytest.raises(ValueError):
            backend.reserve(ALICE, "s1", 0, VOICE, requested=-1, now=0)
        with pytest.raises(ValueError):
            backend.update("s1", 1, VOICE, used=-5, requested=30, now=0)
        with pytest.raises(ValueError):
            backend.direct_debit(ALICE, "e1", 0, SMS, units=-1, now=0)

    # -- events: IEC, ECUR, refund, balance check, price enquiry --

    @contract
    async def test_direct_debit(self) -> None:
        """IEC debits the events at once; a second SMS session is independent."""
        backend = await self.backend()
        sms = await backend.direct_debit(ALICE, "m1", 0, SMS, units=1, now=0)
        assert (sms.result_code, sms.granted, sms.debited, sms.kind) == (2001, 1, 1, "events")
        assert (sms.balance_after, sms.validity, sms.final) == (2, None, False)
        two = await backend.direct_debit(ALICE, "m2", 0, SMS, units=2, now=1)
        assert two.balance_after == 0
        assert self.ledger.billed_events(ALICE_KEY) == 3

    @contract
    async def test_direct_debit_all_or_nothing(self) -> None:
        """IEC beyond the unreserved events is refused and debits nothing."""
        backend = await self.backend()
        await backend.reserve(ALICE, "r1", 0, SMS, requested=2, now=0)
        refused = await backend.direct_debit(ALICE, "m1", 0, SMS, units=2, now=0)
        assert refused.result_code == ResultCode.CREDIT_LIMIT_REACHED
        assert (refused.granted, refused.debited, refused.balance_after) == (0, 0, 3)
        assert (await backend.direct_debit(ALICE, "m2", 0, SMS, units=1, now=0)).success

    @contract
    async def test_direct_debit_retransmission(self) -> None:
        """A retransmitted IEC replays its answer; the SMS is paid once."""
        backend = await self.backend()
        for _ in range(3):
            await backend.direct_debit(ALICE, "m1", 0, SMS, units=1, now=0)
        assert await self.balance(backend, ALICE, "events") == 2
        assert [e.duplicate for e in self.ledger.entries] == [False, True, True]

    @contract
    async def test_ecur_reserve_then_terminate(self) -> None:
        """ECUR: reserve an event, debit it on delivery; a failed delivery costs nothing."""
        backend = await self.backend()
        held = await backend.reserve(ALICE, "e1", 0, SMS, requested=1, now=0)
        assert (held.granted, held.reserved_after, held.balance_after) == (1, 1, 3)
        delivered = await backend.terminate("e1", 1, SMS, used=1, now=1)
        assert (delivered.debited, delivered.balance_after, delivered.reserved_after) == (1, 2, 0)
        await backend.reserve(ALICE, "e2", 0, SMS, requested=1, now=2)
        failed = await backend.terminate("e2", 1, SMS, used=0, now=3)
        assert (failed.debited, failed.balance_after, failed.reserved_after) == (0, 2, 0)

    @contract
    async def test_refund(self) -> None:
        """REFUND_ACCOUNT credits units back (negative debit) and is idempotent."""
        backend = await self.backend()
        await backend.direct_debit(ALICE, "m1", 0, SMS, units=2, now=0)
        refund = await backend.refund(ALICE, "m1-refund", 0, SMS, units=1, now=1)
        assert (refund.debited, refund.cost, refund.balance_after) == (-1, -1, 2)
        await backend.refund(ALICE, "m1-refund", 0, SMS, units=1, now=2)
        assert await self.balance(backend, ALICE, "events") == 2
        assert self.ledger.billed_events(ALICE_KEY) == 1

    @contract
    async def test_check_balance(self) -> None:
        """CHECK_BALANCE tells whether units could be granted, and changes nothing."""
        backend = await self.backend()
        await backend.reserve(ALICE, "s1", 0, VOICE, requested=30, now=0)
        enough = await backend.check_balance(ALICE, VOICE, now=1, units=45)
        short = await backend.check_balance(ALICE, VIDEO, now=1, units=23)
        assert enough.enough_credit and not short.enough_credit
        assert enough.check_balance_result == CheckBalanceResult.ENOUGH_CREDIT
        assert short.check_balance_result == CheckBalanceResult.NO_CREDIT
        assert (enough.balance, enough.reserved, short.rate) == (75, 30, 2)
        unknown = await backend.check_balance("sip:eve@x", VOICE, now=1)
        unrated = await backend.check_balance(ALICE, 999, now=1)
        assert unknown.result_code == ResultCode.USER_UNKNOWN
        assert unrated.result_code == ResultCode.RATING_FAILED
        assert (await self.balance(backend, ALICE), await self.reserved(backend, ALICE)) == (75, 30)
        assert self.ledger.entries[-1].request_type == "CHECK_BALANCE"

    @contract
    async def test_price_enquiry(self) -> None:
        """PRICE_ENQUIRY returns the cost in credit units, with the account's rates."""
        backend = await self.backend()
        alice = await backend.price_enquiry(ALICE, VIDEO, units=60, now=0)
        bob = await backend.price_enquiry(BOB, VIDEO, units=60, now=0)
        sms = await backend.price_enquiry(BOB, SMS, units=3, now=0)
        assert (alice.cost, alice.rate, alice.kind) == (120, 2, "seconds")
        assert bob.cost == 60
        assert (sms.cost, sms.kind) == (3, "events")
        unknown = await backend.price_enquiry("sip:eve@x", VOICE, units=1, now=0)
        assert unknown.result_code == ResultCode.USER_UNKNOWN
        assert await self.balance(backend, ALICE) == 75

    # -- supervision --

    @contract
    async def test_expire_stale_releases_silent_sessions(self) -> None:
        """A session silent past validity + grace loses its reservations and is closed."""
        backend = await self.backend(default_validity=100, stale_grace=20)
        await backend.reserve(ALICE, "old", 0, VOICE, requested=30, now=0)
        await backend.reserve(ALICE, "old", 0, VIDEO, requested=5, now=0)
        await backend.reserve(ALICE, "fresh", 0, VOICE, requested=20, now=50)
        assert (await backend.expire_stale(120)) == []
        released = await backend.expire_stale(121)
        assert released == [
            ExpiredReservation("old", ALICE_KEY, VOICE, "seconds", 30, 30, 75, 30),
            ExpiredReservation("old", ALICE_KEY, VIDEO, "seconds", 5, 10, 75, 20),
        ]
        assert await self.reserved(backend, ALICE) == 20
        late = await backend.update("old", 1, VOICE, used=30, requested=30, now=122)
        assert late.result_code == ResultCode.UNKNOWN_SESSION_ID
        assert [e.request_type for e in self.ledger.entries[-3:-1]] == ["EXPIRE", "EXPIRE"]

    @contract
    async def test_activity_keeps_a_session_alive(self) -> None:
        """Each request pushes the session's deadline to now + validity."""
        backend = await self.backend(default_validity=100, stale_grace=0)
        await backend.reserve(ALICE, "s1", 0, VOICE, requested=30, now=0)
        await backend.update("s1", 1, VOICE, used=30, requested=30, now=90, validity=50)
        assert (await backend.expire_stale(140)) == []
        assert len(await backend.expire_stale(141)) == 1

    @contract
    async def test_closed_sessions_are_forgotten_after_retention(self) -> None:
        """A closed session's answers are replayed during the retention, then purged."""
        backend = await self.backend(session_retention=100)
        await backend.reserve(ALICE, "s1", 0, VOICE, requested=10, now=0)
        await backend.terminate("s1", 1, VOICE, used=10, now=10)
        await backend.expire_stale(110)
        assert (await backend.terminate("s1", 1, VOICE, used=10, now=110)).duplicate
        await backend.expire_stale(111)
        forgotten = await backend.terminate("s1", 1, VOICE, used=10, now=111)
        assert forgotten.result_code == ResultCode.UNKNOWN_SESSION_ID
        assert await self.balance(backend, ALICE) == 65

    @contract
    async def test_sessions_of_a_deleted_account(self) -> None:
        """Requests of a session whose account was deleted get 5030 and end it."""
        backend = await self.backend()
        await backend.reserve(BOB, "s1", 0, VOICE, requested=30, now=0)
        await backend.delete_account(BOB)
        update = await backend.update("s1", 1, VOICE, used=10, requested=30, now=10)
        assert (update.result_code, update.subscriber) == (ResultCode.USER_UNKNOWN, BOB_KEY)
        end = await backend.terminate("s1", 2, VOICE, used=10, now=20)
        assert end.result_code == ResultCode.USER_UNKNOWN
        await backend.create_account(Account(BOB, {"seconds": 5}))
        assert await self.reserved(backend, BOB) == 0
        late = await backend.update("s1", 3, VOICE, used=0, requested=30, now=30)
        assert late.result_code == ResultCode.UNKNOWN_SESSION_ID
