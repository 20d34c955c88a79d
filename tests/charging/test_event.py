"""EventSession: IEC and ECUR of one SIP MESSAGE, the sans-IO core, input by input."""

from __future__ import annotations

import pytest

from b2bua.charging.event import (
    EventCcr,
    EventFinished,
    EventMode,
    EventRequestType,
    EventSession,
    ForwardEvent,
    RefuseEvent,
)
from b2bua.charging.session import Answer, Ccfh, ChargingConfig, RequestFailure
from b2bua.charging.stats import EVENT_STAT_NAMES, ChargingStats

EVENT, INITIAL, TERMINATION = (
    EventRequestType.EVENT,
    EventRequestType.INITIAL,
    EventRequestType.TERMINATION,
)


def iec(**kwargs: object) -> EventSession:
    return EventSession(EventMode.IMMEDIATE, **kwargs)  # type: ignore[arg-type]


def ecur(**kwargs: object) -> EventSession:
    return EventSession(EventMode.RESERVATION, **kwargs)  # type: ignore[arg-type]


def test_iec_debits_then_forwards() -> None:
    """IEC: CCR-EVENT asking 1 unit; a 2001 forwards the event charged and finishes, 1 debited."""
    stats = ChargingStats()
    session = iec(stats=stats)
    assert session.start(0.0) == [EventCcr(EVENT, 0, 1, None)]
    actions = session.on_answer(0.1, Answer(2001, granted_seconds=1, origin_host="ocs"))
    assert actions == [ForwardEvent(charged=True), EventFinished(1)]
    assert session.finished
    assert (stats.event_ccrs, stats.successful_event_ccrs, stats.billed_events) == (1, 1, 1)


def test_iec_refusal_is_answered_per_the_result_code_map() -> None:
    """IEC: 4012 refuses the event with 402 from the map; nothing debited, nothing forwarded."""
    stats = ChargingStats()
    session = iec(stats=stats)
    session.start(0.0)
    actions = session.on_answer(0.1, Answer(4012))
    assert actions == [
        RefuseEvent(402, "Payment Required - Credit limit reached", 4012),
        EventFinished(0),
    ]
    assert (stats.failed_event_ccrs, stats.refused_events, stats.billed_events) == (1, 1, 0)


def test_iec_unmapped_code_gets_the_default_402_with_the_code() -> None:
    """IEC: a Result-Code outside the map is answered 402 naming the code."""
    session = iec()
    session.start(0.0)
    assert session.on_answer(0.1, Answer(5031))[0] == RefuseEvent(
        402, "Payment Required (5031)", 5031
    )


def test_iec_4011_forwards_uncharged() -> None:
    """IEC: credit control not applicable (4011) lets the event through uncharged."""
    session = iec()
    session.start(0.0)
    assert session.on_answer(0.1, Answer(4011)) == [ForwardEvent(charged=False), EventFinished(0)]


@pytest.mark.parametrize("kind", list(RequestFailure))
def test_iec_failure_retries_once_then_refuses_with_terminate_or_buffer(
    kind: RequestFailure,
) -> None:
    """IEC: no answer: one retransmission (T flag, same number); no answer again: 500."""
    stats = ChargingStats()
    session = iec(stats=stats)
    session.start(0.0)
    assert session.on_request_failed(10.0, kind) == [EventCcr(EVENT, 0, 1, None, retry=True)]
    actions = session.on_request_failed(20.0, kind)
    assert actions == [RefuseEvent(500, "Charging Error"), EventFinished(0)]
    assert stats.event_ccrs == 2 and stats.failed_event_ccrs == 2
    assert stats.ccr_timeouts == (2 if kind is RequestFailure.TX_TIMEOUT else 0)


def test_iec_failure_with_continue_forwards_uncharged() -> None:
    """IEC with Direct-Debiting-Failure-Handling CONTINUE: the event goes on uncharged."""
    session = iec(continue_on_failure=True)
    session.start(0.0)
    session.on_request_failed(10.0, RequestFailure.NO_PEER)
    actions = session.on_request_failed(10.0, RequestFailure.NO_PEER)
    assert actions == [ForwardEvent(charged=False), EventFinished(0)]


def test_iec_temporary_error_answer_is_retried_like_a_failure() -> None:
    """IEC: 3002 (answered, but not by an OCS) goes to an alternate peer once."""
    session = iec()
    session.start(0.0)
    assert session.on_answer(0.1, Answer(3002)) == [EventCcr(EVENT, 0, 1, None, retry=True)]
    assert session.on_answer(0.2, Answer(2001)) == [ForwardEvent(True), EventFinished(1)]


def test_stale_answers_and_late_inputs_are_ignored() -> None:
    """An answer to another request number, and inputs after the end, change nothing."""
    session = iec()
    session.start(0.0)
    assert session.on_answer(0.1, Answer(2001, request_number=7)) == []
    assert session.on_delivered(0.1, 200) == []  # IEC has no delivery report
    session.on_answer(0.2, Answer(2001))
    assert session.on_answer(0.3, Answer(2001)) == []
    assert session.on_request_failed(0.3, RequestFailure.NO_PEER) == []
    assert session.start(0.3) == []


def test_ecur_delivered_debits_in_the_ccr_t() -> None:
    """ECUR: CCR-I reserves, the event goes on; a 2xx from the next hop: CCR-T used 1."""
    stats = ChargingStats()
    session = ecur(stats=stats)
    assert session.start(0.0) == [EventCcr(INITIAL, 0, 1, None)]
    assert session.on_answer(0.1, Answer(2001, granted_seconds=1, origin_host="ocs")) == [
        ForwardEvent(charged=True)
    ]
    assert session.waiting_for_delivery
    assert session.on_delivered(0.5, 200) == [
        EventCcr(TERMINATION, 1, None, 1, destination_host="ocs", cause_code=0)
    ]
    assert session.on_answer(0.6, Answer(2001)) == [EventFinished(1)]
    assert stats.billed_events == 1 and stats.event_ccrs == 2


@pytest.mark.parametrize(("status", "cause"), [(480, 480), (404, 404), (None, 408)])
def test_ecur_undelivered_reports_nothing_used(status: int | None, cause: int) -> None:
    """ECUR: a 4xx, a timeout or a transport error from the next hop: CCR-T used 0."""
    session = ecur()
    session.start(0.0)
    session.on_answer(0.1, Answer(2001, granted_seconds=1))
    assert session.on_delivered(32.0, status) == [
        EventCcr(TERMINATION, 1, None, 0, cause_code=cause)
    ]
    assert session.on_answer(32.1, Answer(2001)) == [EventFinished(0)]


def test_ecur_grant_smaller_than_the_event_refuses_and_releases() -> None:
    """ECUR: 0 units granted: 402, and the CCR-T still closes the opened session (0 used)."""
    session = ecur()
    session.start(0.0)
    actions = session.on_answer(0.1, Answer(2001, granted_seconds=0))
    assert actions == [
        RefuseEvent(402, "Payment Required - Credit limit reached", 4012),
        EventCcr(TERMINATION, 1, None, 0, cause_code=402),
    ]
    assert session.on_answer(0.2, Answer(2001)) == [EventFinished(0)]


def test_ecur_refused_initial_needs_no_termination() -> None:
    """ECUR: a refused CCR-I opened nothing at the OCS: refuse, finish, no CCR-T."""
    session = ecur()
    session.start(0.0)
    assert session.on_answer(0.1, Answer(4010)) == [
        RefuseEvent(402, "Payment Required - Insufficient funds", 4010),
        EventFinished(0),
    ]


@pytest.mark.parametrize(("ccfh", "forwarded"), [(Ccfh.TERMINATE, False), (Ccfh.CONTINUE, True)])
def test_ecur_initial_failure_follows_ccfh(ccfh: Ccfh, forwarded: bool) -> None:
    """ECUR: a CCR-I no OCS answered (twice): CCFH CONTINUE forwards uncharged, else 500."""
    session = ecur(config=ChargingConfig(failure_handling=ccfh))
    session.start(0.0)
    session.on_request_failed(10.0, RequestFailure.TX_TIMEOUT)
    actions = session.on_request_failed(20.0, RequestFailure.TX_TIMEOUT)
    expected = ForwardEvent(charged=False) if forwarded else RefuseEvent(500, "Charging Error")
    assert actions == [expected, EventFinished(0)]


def test_ecur_termination_no_peer_took_is_handed_back_to_be_kept() -> None:
    """ECUR: the CCR-T fails twice: finished with unsent_termination, the debit still owed."""
    session = ecur()
    session.start(0.0)
    session.on_answer(0.1, Answer(2001, granted_seconds=1))
    session.on_delivered(0.5, 200)
    retry = session.on_request_failed(10.5, RequestFailure.PEER_DOWN)
    assert retry == [EventCcr(TERMINATION, 1, None, 1, retry=True, cause_code=0)]
    assert session.on_request_failed(20.5, RequestFailure.PEER_DOWN) == [
        EventFinished(1, unsent_termination=True)
    ]


def test_ecur_termination_without_failover_is_not_retried() -> None:
    """ECUR: CC-Session-Failover NOT_SUPPORTED from the OCS: the CCR-T is kept at once."""
    session = ecur()
    session.start(0.0)
    session.on_answer(0.1, Answer(2001, granted_seconds=1, cc_session_failover=False))
    session.on_delivered(0.5, 200)
    assert session.on_request_failed(10.5, RequestFailure.NO_PEER) == [
        EventFinished(1, unsent_termination=True)
    ]


def test_a_free_event_is_refused_at_construction() -> None:
    """An event costs at least one unit."""
    with pytest.raises(ValueError, match="at least one unit"):
        EventSession(EventMode.IMMEDIATE, units=0)


def test_event_statistics_have_their_own_snapshot() -> None:
    """event_snapshot() names every event statistic; the 14 Kamailio ones stay as they are."""
    stats = ChargingStats()
    session = iec(stats=stats)
    session.start(0.0)
    session.on_answer(0.25, Answer(2001))
    snap = stats.event_snapshot()
    assert tuple(snap) == EVENT_STAT_NAMES
    assert snap == {
        "event_ccrs": 1,
        "successful_event_ccrs": 1,
        "failed_event_ccrs": 0,
        "billed_events": 1,
        "refused_events": 0,
    }
    assert len(stats.snapshot()) == 14
    assert stats.ccr_avg_response_time == pytest.approx(250.0)
