"""Stopping with a persistent store: stored calls stay up (no BYE, no CCR-T), others end."""

from __future__ import annotations

from dataclasses import dataclass, field

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from b2bua.call.callmap import CallService
from b2bua.call.events import EndReason


@dataclass
class FakeCall:
    """A call that records how it was ended."""

    id: str
    stored: bool
    ended: list[EndReason] = field(default_factory=list)

    def end(self, reason: EndReason) -> None:
        self.ended.append(reason)


class FakeCallMap:
    """Calls by id; end_all must not be used when a store keeps calls."""

    def __init__(self, *calls: FakeCall) -> None:
        self.by_id = {call.id: call for call in calls}
        self.end_all_called = False

    def __len__(self) -> int:
        return len(self.by_id)

    def calls(self) -> list[FakeCall]:
        return list(self.by_id.values())

    def get(self, call_id: str) -> FakeCall | None:
        return self.by_id.get(call_id)

    def drain(self) -> Deferred[None]:
        return Deferred()

    def end_all(self, reason: EndReason) -> None:
        self.end_all_called = True

    def resume(self) -> None:
        pass


class FakeEndpoint:
    tu: object = None


def stopping(*calls: FakeCall, grace: float = 30.0) -> tuple[Deferred[None], FakeCallMap, Clock]:
    clock, callmap = Clock(), FakeCallMap(*calls)
    svc = CallService(callmap, FakeEndpoint(), clock, grace=grace, stop_timeout=5)  # type: ignore[arg-type]
    svc.keep_on_stop = lambda call: call.stored  # type: ignore[attr-defined]
    svc.startService()
    return svc.stopService(), callmap, clock


def test_stored_calls_stay_up_and_the_stop_does_not_wait_for_the_grace() -> None:
    """Every call stored: none is ended, end_all is not used, the stop completes at once."""
    kept = FakeCall("c1", stored=True)
    stopped, callmap, _ = stopping(kept)
    assert stopped.called
    assert kept.ended == [] and not callmap.end_all_called


def test_calls_that_cannot_be_stored_are_ended_and_awaited_bounded() -> None:
    """A call still being set up is ended (SHUTDOWN); the stop waits for it, at most 5 s."""
    kept, early = FakeCall("c1", stored=True), FakeCall("c2", stored=False)
    stopped, callmap, clock = stopping(kept, early)
    assert early.ended == [EndReason.SHUTDOWN] and kept.ended == []
    clock.advance(1.0)
    assert not stopped.called
    del callmap.by_id["c2"]  # its BYE was answered: it left the map
    clock.advance(0.05)
    assert stopped.called


def test_the_wait_for_ending_calls_is_bounded() -> None:
    """A call that never finishes still lets the stop complete after stop_timeout."""
    stopped, _, clock = stopping(FakeCall("c1", stored=False))
    clock.advance(4.9)
    assert not stopped.called
    clock.advance(0.2)
    assert stopped.called
