"""Charged events and mid-call rating-group switches against the real lab OCS, in virtual
time: the :class:`EventCharger` and the :class:`ChargingEngine` on one ``task.Clock``, the
OCS's :class:`CreditControlHandler` behind :class:`~tests.charging.ocs_pipe.OcsPipe`.

"Money is exact" is read back from the OCS account and ledger after each failure path:
an event is debited once or not at all, every reservation ends released, and every opened
session has its one CCR-T.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from twisted.internet.task import Clock
from twisted.logger import ILogObserver, globalLogPublisher

from b2bua.charging.engine import ChargingEngine, RoIdentity
from b2bua.charging.event import EventMode
from b2bua.charging.messages import (
    RoSettings,
    SessionIdGenerator,
    context_for_message,
    with_video,
)
from b2bua.charging.messaging import EventCharger, EventFigures
from b2bua.charging.session import ChargingConfig
from b2bua.charging.stats import ChargingStats
from b2bua.ocs.accounts import Account, AccountSnapshot
from b2bua.ocs.backend_memory import MemoryBackend
from b2bua.ocs.handler import CreditControlHandler
from b2bua.ocs.ledger import Ledger
from b2bua.timers.driver import WheelDriver
from b2bua.timers.wheel import TimerWheel
from tests.charging.ocs_pipe import OcsPipe
from tests.charging.test_engine_with_ocs import RecordingCalls, context, result_of
from tests.charging.test_event_messages import message_request

HOST, REALM = "b2bua.lab.example", "lab.example"
SUBSCRIBER = "tel:+15550100"
SMS, VOICE, VIDEO = 300, 100, 200
CALL = "call-1@sbc.lab.example"


@dataclass
class Relay:
    """The message relay as the charger sees it: every verdict, in order."""

    verdicts: list[tuple[Any, ...]] = field(default_factory=list)
    charger: EventCharger | None = None  # asked for the event's figures at each verdict
    figures: list[EventFigures | None] = field(default_factory=list)

    def forward(self, event_id: str, charged: bool) -> None:
        self.verdicts.append(("forward", event_id, charged))
        self._figures(event_id)

    def refuse(self, event_id: str, status: int, reason: str, reason_header: str) -> None:
        self.verdicts.append(("refuse", event_id, status))
        self._figures(event_id)

    def _figures(self, event_id: str) -> None:
        if self.charger is not None:
            self.figures.append(self.charger.figures_of(event_id))


@dataclass
class Lab:
    clock: Clock
    wheel: TimerWheel
    ledger: Ledger
    backend: MemoryBackend
    handler: CreditControlHandler
    pipe: OcsPipe
    engine: ChargingEngine
    calls: RecordingCalls
    charger: EventCharger
    relay: Relay
    stats: ChargingStats

    def advance(self, seconds: float) -> None:
        """Run every delayed call due within ``seconds`` at its own time."""
        when = self.clock.seconds() + seconds
        while True:
            due = [c.getTime() for c in self.clock.getDelayedCalls() if c.getTime() <= when]
            if not due:
                break
            self.clock.advance(max(0.0, min(due) - self.clock.seconds()))
        self.clock.advance(when - self.clock.seconds())

    def account(self) -> AccountSnapshot:
        snapshot: AccountSnapshot | None = result_of(self.backend.get_account(SUBSCRIBER))
        assert snapshot is not None
        return snapshot

    def events(self) -> tuple[int, int]:
        """(balance, reserved) of the subscriber's events."""
        account = self.account()
        return account.balances["events"], account.reserved["events"]

    def seconds(self) -> tuple[int, int]:
        account = self.account()
        return account.balances["seconds"], account.reserved["seconds"]

    def rows(self, *keys: str) -> list[tuple[Any, ...]]:
        return [tuple(getattr(e, key) for key in keys) for e in self.ledger.entries]

    def charge(self, mode: EventMode, event_id: str = "m1") -> None:
        ctx = context_for_message(
            message_request(), direction="orig", settings=RoSettings(), now=self.clock.seconds()
        )
        assert self.charger.charge(event_id, ctx, mode) is not None

    def assert_idle(self) -> None:
        assert self.charger.active_events == 0
        assert self.engine.active_sessions == 0
        assert self.engine.pending_terminations == []
        assert len(self.handler.registry) == 0
        assert self.events()[1] == 0 and self.seconds()[1] == 0


def make_lab(
    *, events: int = 2, seconds: int = 300, rates: dict[int, int] | None = None, **config: Any
) -> Lab:
    clock = Clock()
    wheel = TimerWheel()
    driver = WheelDriver(wheel, clock)
    ledger = Ledger(keep=True)
    backend = MemoryBackend(ledger=ledger)
    balances = {"seconds": seconds, "events": events}
    result_of(backend.provision([Account(SUBSCRIBER, balances, rates or {})]))
    handler = CreditControlHandler(backend, origin_host="ocs.lab.example", origin_realm=REALM)
    pipe = OcsPipe(driver, handler, tx_timeout=10.0)
    stats = ChargingStats()
    identity = RoIdentity(HOST, REALM, REALM)
    charging = ChargingConfig(**config)
    calls = RecordingCalls(clock)
    engine = ChargingEngine(
        client=pipe,
        calls=calls,
        driver=driver,
        identity=identity,
        config=charging,
        stats=stats,
        session_ids=SessionIdGenerator(HOST, 0.0, random.Random(6)),
        termination_retry_interval=30.0,
    )
    pipe.client = engine
    relay = Relay()
    charger = EventCharger(
        client=pipe,
        control=relay,
        driver=driver,
        identity=identity,
        session_ids=SessionIdGenerator(HOST, 0.0, random.Random(7)),
        config=charging,
        stats=stats,
        keep_termination=engine.keep_termination,
    )
    relay.charger = charger
    return Lab(clock, wheel, ledger, backend, handler, pipe, engine, calls, charger, relay, stats)


@pytest.fixture(autouse=True)
def no_logged_failures() -> Iterator[None]:
    """Nothing may fail behind the test's back (log.failure)."""
    seen: list[dict[str, Any]] = []
    observer = cast(ILogObserver, seen.append)
    globalLogPublisher.addObserver(observer)
    yield
    globalLogPublisher.removeObserver(observer)
    assert [event["log_failure"] for event in seen if "log_failure" in event] == []


# -- Immediate Event Charging --------------------------------------------------------------


def test_iec_debits_one_event_and_forwards() -> None:
    """One CCR-EVENT, one event debited on rating group 300, then the MESSAGE may leave."""
    lab = make_lab()
    lab.charge(EventMode.IMMEDIATE)
    lab.advance(0)
    assert lab.relay.verdicts == [("forward", "m1", True)]
    assert lab.rows("request_type", "rating_group", "debited") == [("DIRECT_DEBIT", SMS, 1)]
    assert lab.events() == (1, 0)
    lab.assert_idle()


def test_iec_without_credit_is_refused_402() -> None:
    """No events left: 4012, the MESSAGE is refused 402 and the balance is untouched."""
    lab = make_lab(events=0)
    lab.charge(EventMode.IMMEDIATE)
    lab.advance(0)
    assert lab.relay.verdicts == [("refuse", "m1", 402)]
    assert lab.events() == (0, 0)
    assert lab.stats.refused_events == 1


def test_iec_lost_answer_is_retransmitted_and_debited_once() -> None:
    """Money is exact: the OCS debited but its CCA was lost; Tx, the T-flagged retry is
    recognised as the same request: forwarded, and one event debited, not two."""
    lab = make_lab()
    lab.pipe.lose_answers = 1
    lab.charge(EventMode.IMMEDIATE)
    lab.advance(10.0)  # Tx of the first CCR
    requests = lab.pipe.requests()
    assert len(requests) == 2 and requests[1].is_retransmit
    assert requests[0].end_to_end == requests[1].end_to_end
    lab.advance(0)
    assert lab.relay.verdicts == [("forward", "m1", True)]
    assert lab.events() == (1, 0)
    assert lab.rows("debited", "duplicate") == [(1, False), (0, True)]
    lab.assert_idle()


def test_iec_ocs_unreachable_refuses_500_and_debits_nothing() -> None:
    """Money is exact: no OCS answers either try: 500 (TERMINATE_OR_BUFFER), nothing debited."""
    lab = make_lab()
    lab.pipe.drop = True
    lab.charge(EventMode.IMMEDIATE)
    lab.advance(20.0)
    assert lab.relay.verdicts == [("refuse", "m1", 500)]
    assert lab.events() == (2, 0)
    assert lab.ledger.entries == []
    assert (lab.stats.event_ccrs, lab.stats.failed_event_ccrs, lab.stats.ccr_timeouts) == (2, 2, 2)
    lab.assert_idle()


def test_event_figures_at_the_verdict_carry_the_result_code_and_the_units() -> None:
    """What the MESSAGE's CDR reads: at the verdict, the Session-Id, the CCA's Result-Code
    and the units debited (IEC: 1, then 0 and 4012 once the events are gone)."""
    lab = make_lab(events=1)
    lab.charge(EventMode.IMMEDIATE, "m1")
    lab.advance(0)
    lab.charge(EventMode.IMMEDIATE, "m2")
    lab.advance(0)
    first, second = lab.relay.figures
    assert first is not None and second is not None
    assert (first.result_code, first.units) == (2001, 1)
    assert (second.result_code, second.units) == (4012, 0)
    sessions = {entry.session_id for entry in lab.ledger.entries}
    assert {first.session_id, second.session_id} == sessions and len(sessions) == 2
    assert lab.charger.figures_of("m1") is None  # finished: the relay keeps what it was told


# -- Event Charging with Unit Reservation --------------------------------------------------


@pytest.mark.parametrize(("status", "debited"), [(200, 1), (202, 1), (480, 0), (None, 0)])
def test_ecur_debits_only_a_delivered_message(status: int | None, debited: int) -> None:
    """Money is exact: CCR-I reserves 1 event; the next hop's 2xx makes the CCR-T debit it,
    a 4xx or a timeout (None) releases it: one CCR-T either way."""
    lab = make_lab()
    lab.charge(EventMode.RESERVATION)
    lab.advance(0)
    assert lab.relay.verdicts == [("forward", "m1", True)]
    assert lab.events() == (2, 1)
    lab.advance(32.0)
    lab.charger.delivered("m1", status)
    figures = lab.charger.figures_of("m1")  # the CCR-T has left: the units it reports
    assert figures is not None and (figures.result_code, figures.units) == (2001, debited)
    lab.advance(0)
    assert lab.rows("request_type", "used", "debited") == [
        ("INITIAL", None, 0),
        ("TERMINATE", 1 if debited else 0, debited),
    ]
    assert lab.events() == (2 - debited, 0)
    lab.assert_idle()


def test_ecur_termination_no_ocs_took_is_resent_until_one_does() -> None:
    """Money is exact: the CCR-T is lost twice; the engine keeps it and resends it (T flag)
    every 30 s; once the OCS is back it debits the event, exactly once."""
    lab = make_lab()
    lab.charge(EventMode.RESERVATION)
    lab.advance(0)
    lab.pipe.drop = True
    lab.charger.delivered("m1", 200)
    lab.advance(20.0)  # the CCR-T and its retry time out
    assert lab.charger.active_events == 0
    assert len(lab.engine.pending_terminations) == 1
    assert lab.events() == (2, 1)  # still reserved: the OCS has not heard
    lab.pipe.drop = False
    lab.advance(30.0)
    assert lab.engine.pending_terminations == []
    assert lab.events() == (1, 0)
    assert lab.rows("request_type", "debited") == [("INITIAL", 0), ("TERMINATE", 1)]
    lab.assert_idle()


def test_ecur_initial_no_ocs_answered_refuses_and_reserves_nothing() -> None:
    """No answer to the CCR-I (twice): 500 with CCFH TERMINATE, no reservation, no CCR-T."""
    lab = make_lab()
    lab.pipe.drop = True
    lab.charge(EventMode.RESERVATION)
    lab.advance(20.0)
    assert lab.relay.verdicts == [("refuse", "m1", 500)]
    assert [r.get("CC-Request-Type") for r in lab.pipe.requests()] == [1, 1]
    lab.assert_idle()


# -- video: a mid-call rating group switch -------------------------------------------------


def video(on: bool) -> Any:
    settings = RoSettings()
    return lambda ctx: with_video(ctx, settings, on)


def start_voice_call(lab: Lab) -> None:
    assert lab.engine.start_call(CALL, context(CALL, 0.0), reservation_units=30) is not None
    lab.advance(0)
    lab.engine.call_answered(CALL)


def test_switch_to_video_reports_voice_and_reserves_video_in_one_ccr_u() -> None:
    """Video added at 10 s: one CCR-U, 10 s debited on 100 (reservation released) and 30 s
    reserved on 200; hangup at 25: CCR-T 15 s on 200 at 2 credits a second."""
    lab = make_lab(timer_buffer=8)
    start_voice_call(lab)
    lab.advance(10.0)
    lab.engine.media_changed(CALL, video(True))
    lab.advance(0)
    update = lab.pipe.requests()[-1]
    groups = [m.get("Rating-Group") for m in update.find_all("Multiple-Services-Credit-Control")]
    assert (update.get("CC-Request-Type"), groups) == (2, [VOICE, VIDEO])
    lab.advance(15.0)
    lab.engine.call_ended(CALL)
    lab.advance(0)
    assert lab.rows("request_type", "rating_group", "used", "debited", "granted") == [
        ("INITIAL", VOICE, None, 0, 30),
        ("UPDATE", VOICE, 10, 10, 0),
        ("UPDATE", VIDEO, 0, 0, 30),
        ("TERMINATE", VIDEO, 15, 15, 0),
    ]
    assert lab.seconds() == (300 - 10 - 2 * 15, 0)
    lab.assert_idle()


def test_the_timer_follows_the_new_grant() -> None:
    """After the switch at 10 s the next CCR-U is due 30 - 8 s after it: at 32 s, on 200."""
    lab = make_lab(timer_buffer=8)
    start_voice_call(lab)
    lab.advance(10.0)
    lab.engine.media_changed(CALL, video(True))
    lab.advance(21.9)
    assert len(lab.pipe.requests()) == 2
    lab.advance(0.1)
    requests = lab.pipe.requests()
    assert len(requests) == 3
    assert requests[2].get_path("Multiple-Services-Credit-Control", "Rating-Group") == VIDEO
    assert requests[2].get_path("Multiple-Services-Credit-Control", "Used-Service-Unit",
                                "CC-Time") == 22  # fmt: skip
    lab.engine.call_ended(CALL)
    lab.advance(0)
    lab.assert_idle()


def test_a_switch_waits_for_the_pending_update() -> None:
    """Video added while a CCR-U is in flight: the switch CCR-U goes right after its answer."""
    lab = make_lab(timer_buffer=8)
    start_voice_call(lab)
    lab.pipe.hold = True
    lab.advance(22.0)  # the regular CCR-U goes out, its answer held
    assert len(lab.pipe.requests()) == 2
    lab.advance(1.0)
    lab.engine.media_changed(CALL, video(True))
    assert len(lab.pipe.requests()) == 2
    lab.pipe.hold = False
    lab.pipe.release()
    lab.advance(0)
    requests = lab.pipe.requests()
    assert len(requests) == 3
    assert [m.get("Rating-Group") for m in requests[2].find_all("Multiple-Services-Credit-Control")
            ] == [VOICE, VIDEO]  # fmt: skip
    lab.engine.call_ended(CALL)
    lab.advance(0)
    lab.assert_idle()


def test_no_ccr_when_the_media_did_not_change_the_rating_group() -> None:
    """A media change that keeps voice (e.g. hold) sends nothing."""
    lab = make_lab()
    start_voice_call(lab)
    lab.advance(5.0)
    lab.engine.media_changed(CALL, video(False))
    assert len(lab.pipe.requests()) == 1
    lab.engine.call_ended(CALL)
    lab.advance(0)
    lab.assert_idle()


def test_a_refused_switch_ends_the_call_and_keeps_money_exact() -> None:
    """Money is exact: video priced out of reach (rate 100), the switch CCR-U at 5 s debits
    5 s of voice and gets 4012 on video: the call ends at once (credit exhausted), its CCR-T
    reports nothing more, and no reservation is left."""
    lab = make_lab(seconds=20, rates={VIDEO: 100})
    start_voice_call(lab)
    lab.advance(5.0)
    lab.engine.media_changed(CALL, video(True))
    lab.advance(0)
    assert [event[1] for event in lab.calls.of(CALL)] == ["admit", "end"]
    assert lab.rows("request_type", "rating_group", "used", "debited", "result_code") == [
        ("INITIAL", VOICE, None, 0, 2001),
        ("UPDATE", VOICE, 5, 5, 2001),
        ("UPDATE", VIDEO, 0, 0, 4012),
        ("TERMINATE", VIDEO, 0, 0, 2001),
    ]
    assert lab.seconds() == (15, 0)
    assert lab.stats.killed_calls == 1
    lab.assert_idle()
