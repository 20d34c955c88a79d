"""The worked example of the charging reference, in virtual time.

A subscriber has 75 s of credit; two calls share it; reservations are 30 s; timer_buffer is
0; calls are answered at once. The sessions run on the real timer wheel and driver under a
``task.Clock``; the OCS is a tiny balance model kept in this file.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from twisted.internet.task import Clock

from b2bua.charging.session import (
    Action,
    AdmitCall,
    Answer,
    ChargingConfig,
    EndCall,
    EndReason,
    FinalUnitAction,
    Finished,
    RequestType,
    RoSession,
    SendCcr,
)
from b2bua.charging.stats import ChargingStats
from b2bua.timers.driver import WheelDriver
from b2bua.timers.wheel import TimerHandle, TimerWheel

CCR_I, CCR_U, CCR_T = RequestType.INITIAL, RequestType.UPDATE, RequestType.TERMINATION


@dataclass
class BalanceOcs:
    """A one-subscriber OCS: debit reported units, release, then reserve what is free.

    With ``flag_final`` a grant that takes the whole remaining balance carries
    Final-Unit-Indication TERMINATE; without it the next CCR-U is answered 4012.
    """

    balance: int
    flag_final: bool
    reserved: dict[str, int] = field(default_factory=dict)

    def handle(self, call: str, ccr: SendCcr) -> Answer:
        used = ccr.used_seconds or 0
        self.balance -= min(used, self.balance)  # RFC 4006 §5.3: deduct the used amount
        self.reserved.pop(call, None)  # the new request replaces the old reservation
        if ccr.request_type is CCR_T:
            return Answer(2001, origin_host="ocs.lab", request_number=ccr.request_number)
        free = self.balance - sum(self.reserved.values())
        grant = min(ccr.requested_seconds or 0, free)
        if grant <= 0:
            return Answer(4012, origin_host="ocs.lab", request_number=ccr.request_number)
        self.reserved[call] = grant
        final = self.flag_final and grant == self.balance
        return Answer(
            2001,
            granted_seconds=grant,
            final_unit_action=FinalUnitAction.TERMINATE if final else None,
            origin_host="ocs.lab",
            request_number=ccr.request_number,
        )

    @property
    def total_reserved(self) -> int:
        return sum(self.reserved.values())


# (t, call, type, requested, used reported, granted, balance after, reserved after)
Row = tuple[float, str, RequestType, int | None, int | None, int | None, int, int]


@dataclass
class Call:
    session: RoSession
    timer: TimerHandle | None = None
    actions: list[tuple[float, Action]] = field(default_factory=list)


class Lab:
    """Calls wired to sessions, the OCS model and the timer wheel, as the controller would."""

    def __init__(self, flag_final: bool) -> None:
        self.clock = Clock()
        self.driver = WheelDriver(TimerWheel(resolution=0.1), self.clock)
        self.ocs = BalanceOcs(balance=75, flag_final=flag_final)
        self.stats = ChargingStats()
        self.config = ChargingConfig(timer_buffer=0, interim_update_credits=30)
        self.calls: dict[str, Call] = {}
        self.rows: list[Row] = []

    def now(self) -> float:
        return self.clock.seconds()

    def start_call(self, name: str) -> None:
        session = RoSession(self.config, reservation_units=30, stats=self.stats)
        self.calls[name] = Call(session)
        self.dispatch(name, session.start(self.now()))

    def hang_up(self, name: str) -> None:
        call = self.calls[name]
        self.dispatch(name, call.session.on_call_ended(self.now(), "caller BYE"))

    def dispatch(self, name: str, actions: list[Action]) -> None:
        call = self.calls[name]
        for action in actions:
            call.actions.append((self.now(), action))
            if isinstance(action, SendCcr):
                answer = self.ocs.handle(name, action)
                self.rows.append(
                    (
                        self.now(),
                        name,
                        action.request_type,
                        action.requested_seconds,
                        action.used_seconds,
                        answer.granted_seconds if answer.result_code == 2001 else None,
                        self.ocs.balance,
                        self.ocs.total_reserved,
                    )
                )
                self.dispatch(name, call.session.on_answer(self.now(), answer))
            elif isinstance(action, AdmitCall):  # the callee answers at once
                self.dispatch(name, call.session.on_call_answered(self.now()))
            elif isinstance(action, EndCall):  # BYE to both legs; the bridge reports back
                self.dispatch(name, call.session.on_call_ended(self.now(), "BYE"))
        self.reschedule(name)

    def reschedule(self, name: str) -> None:
        call = self.calls[name]
        if call.timer is not None:
            call.timer.cancel()
        deadline = call.session.next_deadline()
        call.timer = None if deadline is None else self.driver.schedule(deadline, self.fire, name)

    def fire(self, name: str) -> None:
        self.calls[name].timer = None
        self.dispatch(name, self.calls[name].session.on_timer(self.now()))

    def run_until(self, end: float) -> None:
        """Advance virtual time from one delayed call to the next, exactly."""
        while True:
            pending = [c.getTime() for c in self.clock.getDelayedCalls()]
            if not pending or min(pending) > end:
                break
            self.clock.advance(max(0.0, min(pending) - self.now()))
        self.clock.advance(end - self.now())

    def play(self) -> None:
        self.start_call("call1")
        self.clock.callLater(40, self.start_call, "call2")
        self.clock.callLater(50, self.hang_up, "call1")
        self.run_until(200)


COMMON_ROWS: list[Row] = [
    (0, "call1", CCR_I, 30, None, 30, 75, 30),
    (30, "call1", CCR_U, 30, 30, 30, 45, 30),
    (40, "call2", CCR_I, 30, None, 15, 45, 45),
    (50, "call1", CCR_T, None, 20, None, 25, 15),
    (55, "call2", CCR_U, 30, 15, 10, 10, 10),
]


def ended_calls(lab: Lab) -> list[tuple[float, str, EndReason]]:
    return [
        (t, name, a.reason)
        for name, call in lab.calls.items()
        for t, a in call.actions
        if isinstance(a, EndCall)
    ]


def billed(lab: Lab) -> dict[str, int]:
    return {
        name: a.billed_seconds
        for name, call in lab.calls.items()
        for _, a in call.actions
        if isinstance(a, Finished)
    }


def test_final_unit_indication_path_matches_every_row() -> None:
    """OCS flags the 10 s grant final: no further CCR-U, call 2 torn down at t=65, 75 s billed."""
    lab = Lab(flag_final=True)
    lab.play()
    assert lab.rows == [*COMMON_ROWS, (65, "call2", CCR_T, None, 10, None, 0, 0)]
    assert ended_calls(lab) == [(65, "call2", EndReason.CREDIT_EXHAUSTED)]
    assert billed(lab) == {"call1": 50, "call2": 25}
    assert lab.stats.billed_secs == 75
    assert lab.stats.killed_calls == 1
    assert lab.ocs.balance == 0
    assert lab.ocs.reserved == {}
    assert (lab.stats.initial_ccrs, lab.stats.interim_ccrs, lab.stats.final_ccrs) == (2, 2, 2)
    assert lab.stats.successful_interim_ccrs == 2
    assert lab.stats.failed_interim_ccrs == 0
    assert lab.calls["call2"].session.killed
    assert not lab.calls["call1"].session.killed


def test_credit_limit_reached_path_matches_every_row() -> None:
    """OCS answers the t=65 CCR-U with 4012: call 2 ends at once at t=65, 75 s billed."""
    lab = Lab(flag_final=False)
    lab.play()
    assert lab.rows == [
        *COMMON_ROWS,
        (65, "call2", CCR_U, 30, 10, None, 0, 0),  # refused: DIAMETER_CREDIT_LIMIT_REACHED
        (65, "call2", CCR_T, None, 0, None, 0, 0),
    ]
    assert ended_calls(lab) == [(65, "call2", EndReason.CREDIT_EXHAUSTED)]
    assert billed(lab) == {"call1": 50, "call2": 25}
    assert lab.stats.billed_secs == 75
    assert lab.stats.killed_calls == 1
    assert lab.ocs.balance == 0
    assert lab.ocs.reserved == {}
    assert lab.stats.failed_interim_ccrs == 1
    assert lab.stats.successful_final_ccrs == 2


@pytest.mark.parametrize("flag_final", [True, False])
def test_every_session_sends_exactly_one_ccr_t_with_contiguous_numbers(flag_final: bool) -> None:
    """Both calls: request numbers 0, 1, 2... without gaps and a single CCR-T, sent last."""
    lab = Lab(flag_final=flag_final)
    lab.play()
    for call in lab.calls.values():
        ccrs = [a for _, a in call.actions if isinstance(a, SendCcr)]
        assert [c.request_number for c in ccrs] == list(range(len(ccrs)))
        assert [c.request_type for c in ccrs].count(CCR_T) == 1
        assert ccrs[-1].request_type is CCR_T
        assert all(c.destination_host == "ocs.lab" for c in ccrs[1:])
        assert call.session.finished
        assert call.session.next_deadline() is None
    assert lab.clock.getDelayedCalls() == []
