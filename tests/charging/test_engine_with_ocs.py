"""The real charging engine against the real lab OCS, in virtual time (GitHub issue 6).

The engine talks to :class:`~b2bua.ocs.handler.CreditControlHandler` on the memory backend
through :class:`~tests.charging.ocs_pipe.OcsPipe`, which encodes and decodes every CCR,
CCA, RAR, RAA, ASR and ASA; one ``task.Clock`` drives one ``WheelDriver`` for the engine's
timers, the pipe's deliveries and its Tx timers. The test plays the SIP side: it builds
the charging context from a parsed INVITE and reports the 200 OK and the hangups at
chosen virtual times; :class:`RecordingCalls` notes what charging asked of the calls.
Figures are read back from the OCS ledger (``Ledger(keep=True)``) and the account.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import ILogObserver, globalLogPublisher
from twisted.python.failure import Failure

from b2bua.charging.engine import ChargingEngine, RoIdentity, reason_header
from b2bua.charging.messages import (
    ChargingContext,
    RoSettings,
    SessionIdGenerator,
    context_from_invite,
)
from b2bua.charging.session import Ccfh, ChargingConfig
from b2bua.charging.stats import ChargingStats
from b2bua.diameter.message import Message
from b2bua.ocs.accounts import Account, AccountSnapshot
from b2bua.ocs.backend_memory import MemoryBackend
from b2bua.ocs.handler import CreditControlHandler, OpenSession, build_asr, build_rar
from b2bua.ocs.ledger import Ledger, LedgerEntry
from b2bua.ocs.operator import Operator
from b2bua.ocs.rating import CreditPolicy, FinalUnitStyle
from b2bua.sip.message import Request, parse_message
from b2bua.timers.driver import WheelDriver
from b2bua.timers.wheel import TimerWheel
from tests.charging.ocs_pipe import OcsPipe, Outcome

B2BUA_HOST = "b2bua.lab.example"
OCS_HOST = "ocs.lab.example"
REALM = "lab.example"
IDENTITY = RoIdentity(B2BUA_HOST, REALM, REALM)
SUBSCRIBER = "tel:+15550100"
KEY = "15550100"  # the OCS's account key for SUBSCRIBER
CALL1 = "call-1@sbc.lab.example"
CALL2 = "call-2@sbc.lab.example"
CCR_I, CCR_U, CCR_T = 1, 2, 3

SDP = (
    "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
    "m=audio 49170 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


def invite(call_id: str) -> Request:
    """The A-leg INVITE from the SBC, asserting the caller as tel:+15550100."""
    head = (
        "INVITE sip:+15550199@b2bua.lab.example;user=phone SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-{call_id.partition('@')[0]}\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:alice@sbc.lab.example>;tag=a1\r\n"
        "To: <sip:+15550199@lab.example;user=phone>\r\n"
        f"Call-ID: {call_id}\r\n"
        "CSeq: 1 INVITE\r\n"
        "Contact: <sip:alice@192.0.2.1:5060>\r\n"
        "P-Asserted-Identity: <tel:+15550100>\r\n"
        "P-Charging-Vector: icid-value=icid-" + call_id.partition("@")[0] + "\r\n"
        "Content-Type: application/sdp\r\n"
        f"Content-Length: {len(SDP.encode())}\r\n\r\n"
    )
    request = parse_message((head + SDP).encode())
    assert isinstance(request, Request)
    return request


def context(call_id: str, now: float) -> ChargingContext:
    """The charging context of :func:`invite` for an ``orig`` charging route."""
    return context_from_invite(invite(call_id), direction="orig", settings=RoSettings(), now=now)


class RecordingCalls:
    """The call side: every admit, reject and end, with the virtual time it came at."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.events: list[tuple[Any, ...]] = []
        self.on_end: Callable[[str], None] | None = None  # the B2BUA's BYE to both legs

    def admit(self, call_id: str) -> None:
        self.events.append((self._clock.seconds(), "admit", call_id))

    def reject(self, call_id: str, status: int, reason: str, reason_header: str) -> None:
        self.events.append(
            (self._clock.seconds(), "reject", call_id, status, reason, reason_header)
        )

    def end(self, call_id: str, reason: str, reason_header: str) -> None:
        self.events.append((self._clock.seconds(), "end", call_id, reason, reason_header))
        if self.on_end is not None:
            self.on_end(call_id)

    def of(self, call_id: str) -> list[tuple[Any, ...]]:
        """The events of one call."""
        return [event for event in self.events if event[2] == call_id]


def result_of(deferred: Deferred[Any]) -> Any:
    """The result of a Deferred that has already fired."""
    box: list[Any] = []
    deferred.addBoth(box.append)
    assert box, "the Deferred has not fired"
    if isinstance(box[0], Failure):
        box[0].raiseException()
    return box[0]


@dataclass
class Lab:
    clock: Clock
    wheel: TimerWheel
    ledger: Ledger
    backend: MemoryBackend
    handler: CreditControlHandler
    pipe: OcsPipe
    calls: RecordingCalls
    stats: ChargingStats
    engine: ChargingEngine
    operator: Operator

    def now(self) -> float:
        return self.clock.seconds()

    def advance_to(self, when: float) -> None:
        """Run every delayed call due by ``when`` at its own time, then move to ``when``."""
        while True:
            due = [c.getTime() for c in self.clock.getDelayedCalls() if c.getTime() <= when]
            if not due:
                break
            self.clock.advance(max(0.0, min(due) - self.now()))
        self.clock.advance(when - self.now())

    def start(self, call_id: str) -> str:
        """The INVITE arrived now and its charging route matched: CCR-I for 30 s."""
        session_id = self.engine.start_call(
            call_id, context(call_id, self.now()), reservation_units=30
        )
        assert session_id is not None
        return session_id

    def account(self) -> AccountSnapshot:
        snapshot: AccountSnapshot | None = result_of(self.backend.get_account(SUBSCRIBER))
        assert snapshot is not None
        return snapshot

    def money(self) -> tuple[int, int]:
        """(balance, reserved) of the subscriber's seconds, read from the OCS."""
        account = self.account()
        return account.balances["seconds"], account.reserved["seconds"]

    def ledger_rows(self) -> list[tuple[Any, ...]]:
        return [ledger_row(entry) for entry in self.ledger.entries]

    def assert_idle(self) -> None:
        """Nothing left anywhere: no session, call, wheel timer, held answer or reservation."""
        assert self.engine.active_sessions == 0
        assert self.engine.active_calls == 0
        assert self.engine.pending_terminations == []
        assert len(self.wheel) == 0  # the driver may still be armed for a cancelled timer
        assert self.pipe.held == []
        assert all(x.outcome is not Outcome.PENDING for x in self.pipe.exchanges)
        assert len(self.handler.registry) == 0
        assert self.money()[1] == 0


def make_lab(
    *,
    seconds: int = 300,
    style: FinalUnitStyle = "fui",
    tx_timeout: float = 10.0,
    **config: Any,
) -> Lab:
    clock = Clock()
    wheel = TimerWheel()
    driver = WheelDriver(wheel, clock)
    ledger = Ledger(keep=True)
    backend = MemoryBackend(policy=CreditPolicy(final_unit_style=style), ledger=ledger)
    result_of(backend.provision([Account(SUBSCRIBER, {"seconds": seconds})]))
    handler = CreditControlHandler(backend, origin_host=OCS_HOST, origin_realm=REALM)
    pipe = OcsPipe(driver, handler, tx_timeout=tx_timeout)
    calls = RecordingCalls(clock)
    stats = ChargingStats()
    engine = ChargingEngine(
        client=pipe,
        calls=calls,
        driver=driver,
        identity=IDENTITY,
        config=ChargingConfig(**config),
        stats=stats,
        session_ids=SessionIdGenerator(B2BUA_HOST, 0.0, random.Random(6)),
    )
    pipe.client = engine
    operator = Operator(backend, handler.registry, pipe)
    return Lab(clock, wheel, ledger, backend, handler, pipe, calls, stats, engine, operator)


# -- reading messages ----------------------------------------------------------------------


def mscc(message: Message, *names: str) -> Any:
    return message.get_path("Multiple-Services-Credit-Control", *names)


def ims(message: Message, *names: str) -> Any:
    return message.get_path("Service-Information", "IMS-Information", *names)


def ccr_row(request: Message) -> tuple[Any, ...]:
    """(CC-Request-Type, CC-Request-Number, requested CC-Time, used CC-Time)."""
    return (
        request.get("CC-Request-Type"),
        request.get("CC-Request-Number"),
        mscc(request, "Requested-Service-Unit", "CC-Time"),
        mscc(request, "Used-Service-Unit", "CC-Time"),
    )


def cca_row(answer: Message) -> tuple[Any, ...]:
    """(Result-Code, granted CC-Time, Final-Unit-Indication present)."""
    return (
        answer.result_code,
        mscc(answer, "Granted-Service-Unit", "CC-Time"),
        answer.find_path("Multiple-Services-Credit-Control", "Final-Unit-Indication") is not None,
    )


def ledger_row(entry: LedgerEntry) -> tuple[Any, ...]:
    """(time, type, requested, used, debited, granted, result, final, balance, reserved)."""
    return (
        entry.time,
        entry.request_type,
        entry.requested,
        entry.used,
        entry.debited,
        entry.granted,
        entry.result_code,
        entry.final,
        entry.balance_after,
        entry.reserved_after,
    )


@pytest.fixture(autouse=True)
def no_logged_failures() -> Iterator[None]:
    """Nothing in the engine, the driver or the pipe may fail behind the test's back."""
    seen: list[dict[str, Any]] = []
    observer = cast(ILogObserver, seen.append)
    globalLogPublisher.addObserver(observer)
    yield
    globalLogPublisher.removeObserver(observer)
    failures = [event["log_failure"] for event in seen if "log_failure" in event]
    assert failures == []


# -- 1. the worked example of REFERENCE.md -------------------------------------------------

# (t, call, CC-Request-Type, CC-Request-Number, requested, used,
#  Result-Code, granted, Final-Unit-Indication, balance after, reserved after)
_COMMON = [
    (0.0, CALL1, CCR_I, 0, 30, None, 2001, 30, False, 75, 30),
    (30.0, CALL1, CCR_U, 1, 30, 30, 2001, 30, False, 45, 30),
    (40.0, CALL2, CCR_I, 0, 30, None, 2001, 15, False, 45, 45),
    (50.0, CALL1, CCR_T, 2, None, 20, 2001, None, False, 25, 15),
]
WORKED_EXAMPLE: dict[str, list[tuple[Any, ...]]] = {
    "fui": [
        *_COMMON,
        (55.0, CALL2, CCR_U, 1, 30, 15, 2001, 10, True, 10, 10),
        (65.0, CALL2, CCR_T, 2, None, 10, 2001, None, False, 0, 0),
    ],
    "4012": [
        *_COMMON,
        (55.0, CALL2, CCR_U, 1, 30, 15, 2001, 10, False, 10, 10),
        (65.0, CALL2, CCR_U, 2, 30, 10, 4012, None, False, 0, 0),
        (65.0, CALL2, CCR_T, 3, None, 0, 2001, None, False, 0, 0),
    ],
}


@pytest.mark.parametrize("style", ["fui", "4012"])
def test_worked_example_end_to_end(style: FinalUnitStyle) -> None:
    """REFERENCE.md's table, CCR by CCR against the lab OCS: call 2 ends at 65, 75 s billed."""
    lab = make_lab(
        seconds=75, style=style, timer_buffer=0, interim_update_credits=30, reservation_units=30
    )
    byes: list[tuple[float, str]] = []

    def bye(call_id: str) -> None:  # BYE to both legs; their 200 OK comes back at once
        byes.append((lab.now(), call_id))
        lab.engine.call_ended(call_id, "BYE sent to both legs")

    lab.calls.on_end = bye
    names = {lab.start(CALL1): CALL1}
    lab.clock.advance(0)  # the CCA-I
    assert lab.calls.events == [(0.0, "admit", CALL1)]
    lab.engine.call_answered(CALL1, 0.0)
    assert lab.money() == (75, 30)

    lab.advance_to(40.0)
    assert lab.money() == (45, 30)  # t = 30: CCR-U reported 30 and reserved 30 again
    names[lab.start(CALL2)] = CALL2
    lab.clock.advance(0)
    assert lab.calls.events[-1] == (40.0, "admit", CALL2)
    lab.engine.call_answered(CALL2, 40.0)
    assert lab.money() == (45, 45)
    assert lab.engine.active_sessions == 2

    lab.advance_to(50.0)
    lab.engine.call_ended(CALL1, "caller hung up")
    lab.clock.advance(0)
    assert lab.money() == (25, 15)
    assert lab.engine.active_sessions == 1

    lab.advance_to(64.999)
    assert [event[1] for event in lab.calls.events] == ["admit", "admit"]
    lab.advance_to(65.0)
    exhausted = reason_header(402, "credit exhausted")
    assert lab.calls.events[2:] == [(65.0, "end", CALL2, "credit exhausted", exhausted)]
    assert byes == [(65.0, CALL2)]
    lab.advance_to(200.0)

    rows = []
    for exchange in lab.pipe.exchanges:
        assert exchange.answer is not None
        rows.append(
            (
                exchange.sent_at,
                names[exchange.request.session_id or ""],
                *ccr_row(exchange.request),
                *cca_row(exchange.answer),
            )
        )
    ledger = lab.ledger_rows()
    # The OCS saw what the engine sent: time, requested and used seconds of every CCR.
    assert [(e[0], e[2], e[3]) for e in ledger] == [(r[0], r[4], r[5]) for r in rows]
    rows = [(*row, entry[8], entry[9]) for row, entry in zip(rows, ledger, strict=True)]
    assert rows == WORKED_EXAMPLE[style]
    final = lab.pipe.requests()[-1]
    assert final.get("Termination-Cause") == 2  # DIAMETER_SERVICE_NOT_PROVIDED
    assert ims(final, "Event-Type", "SIP-Method") == "BYE"
    initial = [r for r in lab.pipe.requests() if r.get("CC-Request-Type") == CCR_I]
    later = [r for r in lab.pipe.requests() if r.get("CC-Request-Type") != CCR_I]
    assert [r.get("Destination-Host") for r in initial] == [None, None]  # routed by realm
    assert {r.get("Destination-Host") for r in later} == {OCS_HOST}  # learned from the CCA-I

    assert lab.ledger.billed_seconds(KEY) == 75
    assert [(e.time, e.debited) for e in lab.ledger.entries if e.debited] == [
        (30.0, 30),
        (50.0, 20),
        (55.0, 15),
        (65.0, 10),
    ]
    assert lab.money() == (0, 0)
    assert lab.stats.billed_secs == 75
    assert lab.stats.killed_calls == 1
    interim = 2 if style == "fui" else 3
    assert (lab.stats.initial_ccrs, lab.stats.interim_ccrs, lab.stats.final_ccrs) == (
        2,
        interim,
        2,
    )
    assert lab.stats.failed_interim_ccrs == (0 if style == "fui" else 1)
    assert (lab.stats.successful_final_ccrs, lab.stats.ccr_timeouts) == (2, 0)
    assert lab.engine.active_sessions == 0
    lab.assert_idle()


# -- 2. Re-Auth-Request --------------------------------------------------------------------


def _answered_call(lab: Lab, call_id: str = CALL1) -> str:
    """A call admitted and answered at the current time; its Session-Id."""
    session_id = lab.start(call_id)
    lab.clock.advance(0)
    assert lab.calls.of(call_id) == [(lab.now(), "admit", call_id)]
    lab.engine.call_answered(call_id, lab.now())
    return session_id


def test_rar_on_an_open_session_answers_2002_and_reports_the_seconds_used() -> None:
    """RAR while open: RAA 2002 first, then a CCR-U reporting 12 s that the OCS debits."""
    lab = make_lab(seconds=300)
    session_id = _answered_call(lab)
    lab.advance_to(12.5)
    assert result_of(lab.operator.reauth(session_id)) == 2002
    ((rar, raa),) = lab.pipe.signals
    assert (rar.get("Session-Id"), rar.get("Re-Auth-Request-Type")) == (session_id, 0)
    assert rar.origin_host == OCS_HOST and rar.get("Destination-Host") == B2BUA_HOST
    assert (raa.result_code, raa.session_id, raa.origin_host) == (2002, session_id, B2BUA_HOST)
    assert len(lab.pipe.exchanges) == 1  # the CCR-U waits until the RAA has gone
    lab.clock.advance(0)
    update = lab.pipe.exchanges[-1]
    assert (update.sent_at, ccr_row(update.request)) == (12.5, (CCR_U, 1, 30, 12))
    assert lab.ledger_rows()[-1] == (12.5, "UPDATE", 30, 12, 12, 30, 2001, False, 288, 30)

    lab.advance_to(20.0)
    lab.engine.call_ended(CALL1)
    lab.clock.advance(0)
    assert ccr_row(lab.pipe.requests()[-1]) == (CCR_T, 2, None, 8)
    assert lab.ledger_rows()[-1] == (20.0, "TERMINATE", None, 8, 8, 0, 2001, False, 280, 0)
    assert lab.ledger.billed_seconds(KEY) == 20 and lab.stats.billed_secs == 20
    assert [kind for _, kind, _ in lab.calls.events] == ["admit"]
    lab.assert_idle()


def test_rar_while_an_update_is_pending_answers_2001_without_a_second_ccr_u() -> None:
    """RAR colliding with a pending CCR-U (its CCA held): RAA 2001 and no new CCR-U."""
    lab = make_lab(seconds=300)  # timer_buffer 8: the CCR-U leaves at 30 - 8 = 22
    session_id = _answered_call(lab)
    lab.pipe.hold = True
    lab.advance_to(22.0)
    assert [ccr_row(r) for r in lab.pipe.requests()] == [
        (CCR_I, 0, 30, None),
        (CCR_U, 1, 30, 22),
    ]
    assert len(lab.pipe.held) == 1
    assert result_of(lab.operator.reauth(session_id)) == 2001
    lab.advance_to(23.0)
    assert len(lab.pipe.exchanges) == 2
    lab.pipe.hold = False
    lab.pipe.release()
    lab.advance_to(30.0)
    lab.engine.call_ended(CALL1)
    lab.clock.advance(0)
    assert [ccr_row(r) for r in lab.pipe.requests()] == [
        (CCR_I, 0, 30, None),
        (CCR_U, 1, 30, 22),
        (CCR_T, 2, None, 8),
    ]
    assert [row[1] for row in lab.ledger_rows()] == ["INITIAL", "UPDATE", "TERMINATE"]
    assert lab.money() == (270, 0)
    assert lab.ledger.billed_seconds(KEY) == 30
    lab.assert_idle()


@pytest.mark.parametrize("build", [build_rar, build_asr], ids=["RAR", "ASR"])
def test_rar_or_asr_for_an_unknown_session_is_answered_5002(build: Any) -> None:
    """A RAR (or ASR) naming a Session-Id the engine does not hold gets 5002."""
    lab = make_lab()
    session_id = _answered_call(lab)
    ghost = OpenSession(f"{B2BUA_HOST};0;99;0badf00d", KEY, B2BUA_HOST, REALM, 0.0, 0.0)
    answer = lab.pipe.to_client(lab.pipe.request_for(ghost, build))
    assert (answer.result_code, answer.session_id) == (5002, ghost.session_id)
    assert answer.origin_realm == REALM
    lab.clock.advance(0)
    assert len(lab.pipe.exchanges) == 1  # the live session is untouched
    assert lab.engine.session_ids_of(CALL1) == [session_id]
    lab.engine.call_ended(CALL1)
    lab.clock.advance(0)
    lab.assert_idle()


# -- 3. Abort-Session-Request --------------------------------------------------------------


def test_asr_answers_2001_ends_the_call_and_reports_the_seconds_used() -> None:
    """ASR: ASA 2001, the call ended (aborted by OCS), one CCR-T reporting 13 s."""
    lab = make_lab(seconds=300)
    session_id = _answered_call(lab)
    lab.calls.on_end = lambda call_id: lab.engine.call_ended(call_id, "BYE sent")
    lab.advance_to(12.5)
    assert result_of(lab.operator.abort(session_id)) == 2001
    ((asr, asa),) = lab.pipe.signals
    assert asr.get("Session-Id") == session_id and asr.origin_host == OCS_HOST
    assert (asa.result_code, asa.session_id) == (2001, session_id)
    assert [kind for _, kind, _ in lab.calls.events] == ["admit"]  # the ASA went first
    lab.clock.advance(0)
    aborted = reason_header(403, "aborted by OCS")
    assert lab.calls.events[-1] == (12.5, "end", CALL1, "aborted by OCS", aborted)
    terminations = [r for r in lab.pipe.requests() if r.get("CC-Request-Type") == CCR_T]
    assert [ccr_row(r) for r in terminations] == [(CCR_T, 1, None, 13)]  # 12.5 s, rounded up
    assert terminations[0].get("Termination-Cause") == 4  # DIAMETER_ADMINISTRATIVE
    assert lab.ledger_rows()[-1] == (12.5, "TERMINATE", None, 13, 13, 0, 2001, False, 287, 0)
    lab.advance_to(20.0)
    assert len(lab.pipe.exchanges) == 2
    assert lab.stats.billed_secs == 13 and lab.stats.killed_calls == 0
    assert lab.ledger.billed_seconds(KEY) == 13
    assert lab.money() == (287, 0)
    lab.assert_idle()


# -- 4. top-up on a final grant ------------------------------------------------------------


def test_top_up_during_a_final_grant_reauthorises_and_the_call_goes_on() -> None:
    """20 s (a final grant); a 100 s top-up at t = 10 sends RAR, the call outlives t = 20."""
    lab = make_lab(seconds=20)
    session_id = _answered_call(lab)
    first = lab.pipe.exchanges[0]
    assert first.answer is not None and cca_row(first.answer) == (2001, 20, True)

    lab.advance_to(10.0)
    change = result_of(lab.operator.top_up(SUBSCRIBER, 100))
    assert (change.balance, dict(change.reauthorized)) == (120, {session_id: 2002})
    lab.clock.advance(0)
    update = lab.pipe.exchanges[-1]
    assert update.answer is not None
    assert (update.sent_at, ccr_row(update.request)) == (10.0, (CCR_U, 1, 30, 10))
    assert cca_row(update.answer) == (2001, 30, False)
    assert lab.ledger_rows()[-1] == (10.0, "UPDATE", 30, 10, 10, 30, 2001, False, 110, 30)

    lab.advance_to(25.0)
    assert [kind for _, kind, _ in lab.calls.events] == ["admit"]  # not ended at 20
    lab.advance_to(32.0)  # 10 + 30 - timer_buffer 8
    assert ccr_row(lab.pipe.requests()[-1]) == (CCR_U, 2, 30, 22)
    assert lab.money() == (88, 30)
    lab.advance_to(45.0)
    lab.engine.call_ended(CALL1)
    lab.clock.advance(0)
    assert ccr_row(lab.pipe.requests()[-1]) == (CCR_T, 3, None, 13)
    assert lab.money() == (75, 0)
    assert lab.ledger.billed_seconds(KEY) == 45
    assert (lab.stats.billed_secs, lab.stats.killed_calls) == (45, 0)
    assert [kind for _, kind, _ in lab.calls.events] == ["admit"]
    lab.assert_idle()


# -- 5. CANCEL racing the CCA-I ------------------------------------------------------------


def test_cancel_before_the_cca_i_sends_one_ccr_t_after_it() -> None:
    """CANCEL while the CCR-I is pending: nothing until the CCA-I, then one CCR-T of 0 s."""
    lab = make_lab(seconds=75)
    lab.pipe.hold = True
    lab.start(CALL1)
    lab.advance_to(0.5)
    lab.engine.call_ended(CALL1, "caller cancelled", sip_method="CANCEL")
    lab.advance_to(2.0)
    assert len(lab.pipe.exchanges) == 1
    assert lab.money() == (75, 30)  # the OCS reserved on the CCR-I it answered
    lab.pipe.hold = False
    lab.pipe.release()  # the CCA-I arrives at t = 2
    assert len(lab.pipe.exchanges) == 2
    final = lab.pipe.exchanges[1]
    assert (final.sent_at, ccr_row(final.request)) == (2.0, (CCR_T, 1, None, 0))
    assert ims(final.request, "Event-Type", "SIP-Method") == "CANCEL"
    assert ims(final.request, "Cause-Code") == 2  # unsuccessful session setup
    lab.advance_to(3.0)
    assert lab.calls.events == []  # neither admitted nor rejected: the caller went away
    assert [ccr_row(r)[0] for r in lab.pipe.requests()].count(CCR_T) == 1
    assert lab.ledger_rows() == [
        (0.0, "INITIAL", 30, None, 0, 30, 2001, False, 75, 30),
        (2.0, "TERMINATE", None, 0, 0, 0, 2001, False, 75, 0),
    ]
    assert lab.stats.billed_secs == 0
    lab.assert_idle()


# -- 6. Tx timeout and Credit-Control-Failure-Handling --------------------------------------


def test_tx_timeout_with_ccfh_terminate_rejects_500() -> None:
    """TERMINATE: the unanswered CCR-I is not retried; the caller gets 500 at Tx."""
    lab = make_lab(failure_handling=Ccfh.TERMINATE)
    lab.pipe.drop = True
    lab.start(CALL1)
    lab.advance_to(9.999)
    assert lab.calls.events == []
    lab.advance_to(10.0)
    error = reason_header(500, "Charging Error")
    assert lab.calls.events == [(10.0, "reject", CALL1, 500, "Charging Error", error)]
    assert [x.outcome for x in lab.pipe.exchanges] == [Outcome.TIMED_OUT]
    assert (lab.stats.ccr_timeouts, lab.stats.failed_initial_ccrs) == (1, 1)
    lab.advance_to(60.0)
    assert len(lab.pipe.exchanges) == 1 and lab.ledger.entries == []
    lab.assert_idle()


def test_tx_timeout_with_ccfh_continue_admits_the_call_uncharged() -> None:
    """CONTINUE: one T-flag retry, then at its Tx the call is admitted and goes on free."""
    lab = make_lab(failure_handling=Ccfh.CONTINUE)
    lab.pipe.drop = True
    lab.start(CALL1)
    lab.advance_to(10.0)
    first, retry = lab.pipe.exchanges
    assert retry.sent_at == 10.0 and retry.request.is_retransmit
    assert not first.request.is_retransmit
    assert ccr_row(retry.request) == ccr_row(first.request) == (CCR_I, 0, 30, None)
    assert retry.request.end_to_end == first.request.end_to_end
    assert retry.destination_host is None and retry.request.get("Destination-Host") is None
    assert lab.calls.events == []
    lab.advance_to(20.0)
    assert lab.calls.events == [(20.0, "admit", CALL1)]
    lab.engine.call_answered(CALL1, 20.0)
    lab.advance_to(500.0)
    lab.engine.call_ended(CALL1)
    lab.clock.advance(0)
    assert len(lab.pipe.exchanges) == 2  # the OCS never opened a session: no CCR-T
    assert (lab.stats.initial_ccrs, lab.stats.ccr_timeouts, lab.stats.billed_secs) == (2, 2, 0)
    assert lab.ledger.entries == []
    lab.assert_idle()


def test_tx_timeout_with_ccfh_retry_and_terminate_retries_then_rejects() -> None:
    """RETRY_AND_TERMINATE: the retry (T flag) goes out at Tx, the reject at the retry's Tx."""
    lab = make_lab(failure_handling=Ccfh.RETRY_AND_TERMINATE)
    lab.pipe.drop = True
    lab.start(CALL1)
    lab.advance_to(10.0)
    first, retry = lab.pipe.exchanges
    assert retry.request.is_retransmit and not first.request.is_retransmit
    assert retry.request.get("CC-Request-Number") == 0
    assert retry.request.end_to_end == first.request.end_to_end
    assert lab.calls.events == []
    lab.advance_to(20.0)
    error = reason_header(500, "Charging Error")
    assert lab.calls.events == [(20.0, "reject", CALL1, 500, "Charging Error", error)]
    assert (lab.stats.initial_ccrs, lab.stats.ccr_timeouts, lab.stats.failed_initial_ccrs) == (
        2,
        2,
        2,
    )
    lab.advance_to(60.0)
    assert len(lab.pipe.exchanges) == 2 and lab.ledger.entries == []
    lab.assert_idle()


def test_lost_cca_i_is_recovered_by_the_retry_without_reserving_twice() -> None:
    """The OCS answered the CCR-I but the CCA was lost: the T-flag retry gets the same grant."""
    lab = make_lab(seconds=75, failure_handling=Ccfh.RETRY_AND_TERMINATE)
    lab.pipe.lose_answers = 1
    lab.start(CALL1)
    lab.advance_to(10.0)
    assert lab.calls.events == [(10.0, "admit", CALL1)]
    retry = lab.pipe.exchanges[1]
    assert retry.request.is_retransmit and retry.answer is not None
    assert cca_row(retry.answer) == (2001, 30, False)
    assert [(e.request_type, e.duplicate) for e in lab.ledger.entries] == [
        ("INITIAL", False),
        ("INITIAL", True),
    ]
    assert lab.money() == (75, 30)  # reserved once
    lab.engine.call_answered(CALL1, 10.0)
    lab.advance_to(20.0)
    lab.engine.call_ended(CALL1)
    lab.clock.advance(0)
    assert ccr_row(lab.pipe.requests()[-1]) == (CCR_T, 1, None, 10)
    assert lab.money() == (65, 0)
    assert lab.ledger.billed_seconds(KEY) == 10
    lab.assert_idle()
