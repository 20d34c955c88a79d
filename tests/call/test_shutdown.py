"""Shutdown of the call layer: drain, the grace period, then BYE for the rest, all bounded."""

from __future__ import annotations

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock

from b2bua.call.callmap import CallService
from b2bua.call.events import EndReason


class FakeCallMap:
    """Calls that end when the test says so; records drain and end_all."""

    def __init__(self, calls: int) -> None:
        self.calls = calls
        self.drained: Deferred[None] | None = None
        self.ended_with: list[EndReason] = []

    def __len__(self) -> int:
        return self.calls

    def drain(self) -> Deferred[None]:
        self.drained = Deferred() if self.calls else succeed(None)
        return self.drained

    def end_all(self, reason: EndReason) -> None:
        self.ended_with.append(reason)

    def resume(self) -> None:
        pass

    def hang_up_all(self) -> None:
        self.calls = 0
        assert self.drained is not None
        self.drained.callback(None)


class FakeEndpoint:
    tu: object = None


def service(calls: int, grace: float) -> tuple[CallService, FakeCallMap, Clock]:
    clock, callmap = Clock(), FakeCallMap(calls)
    svc = CallService(callmap, FakeEndpoint(), clock, grace=grace, stop_timeout=5)  # type: ignore[arg-type]
    svc.startService()
    return svc, callmap, clock


def test_calls_that_end_within_the_grace_are_not_cut() -> None:
    """With a 10 s grace, calls hung up at t=4 end normally: no BYE from b2bua, stop at t=4."""
    svc, callmap, clock = service(calls=2, grace=10)
    stopped = svc.stopService()
    assert callmap.drained is not None and not stopped.called
    clock.advance(4)
    callmap.hang_up_all()
    assert stopped.called and callmap.ended_with == []
    assert clock.getDelayedCalls() == []


def test_calls_still_up_after_the_grace_are_ended() -> None:
    """Calls still up when the grace runs out get BYE (end_all SHUTDOWN); stop once gone."""
    svc, callmap, clock = service(calls=1, grace=10)
    stopped = svc.stopService()
    clock.advance(9.9)
    assert callmap.ended_with == []
    clock.advance(0.1)
    assert callmap.ended_with == [EndReason.SHUTDOWN] and not stopped.called
    callmap.hang_up_all()
    assert stopped.called


def test_no_grace_ends_calls_at_once_and_the_wait_is_bounded() -> None:
    """Grace 0: end_all at once; calls that never finish still let the stop complete after 5 s."""
    svc, callmap, clock = service(calls=1, grace=0)
    stopped = svc.stopService()
    assert callmap.ended_with == [EndReason.SHUTDOWN]
    clock.advance(5)
    assert stopped.called


def test_no_calls_stops_at_once() -> None:
    """With no call in progress the service stops immediately, grace or not."""
    svc, callmap, _ = service(calls=0, grace=30)
    assert svc.stopService().called and callmap.ended_with == []
