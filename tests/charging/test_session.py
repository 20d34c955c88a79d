"""Tests for the sans-IO Ro session core (RFC 4006 SCUR, time units)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from b2bua.charging.session import (
    Action,
    AdmitCall,
    Answer,
    Ccfh,
    ChargingConfig,
    ContinueUncharged,
    EndCall,
    EndReason,
    FinalUnitAction,
    Finished,
    RejectCall,
    RequestFailure,
    RequestType,
    RoSession,
    SendCcr,
)
from b2bua.charging.stats import STAT_NAMES, ChargingStats
from b2bua.charging.units import BillingRounding, final_seconds, whole_seconds

CCR_I, CCR_U, CCR_T = RequestType.INITIAL, RequestType.UPDATE, RequestType.TERMINATION
A = TypeVar("A")


def of(actions: Sequence[Action], cls: type[A]) -> list[A]:
    return [a for a in actions if isinstance(a, cls)]


def ccr(actions: Sequence[Action]) -> SendCcr:
    (request,) = of(actions, SendCcr)
    return request


def ok(grant: int | None = 30, **fields: object) -> Answer:
    return Answer(2001, granted_seconds=grant, origin_host="ocs1.lab", **fields)  # type: ignore[arg-type]


def opened(
    config: ChargingConfig | None = None,
    *,
    grant: int = 30,
    answered_at: float | None = 0.0,
    stats: ChargingStats | None = None,
    **answer_fields: object,
) -> RoSession:
    """A session whose CCA-I granted ``grant`` at t=0 and whose call was answered."""
    session = RoSession(config or ChargingConfig(), stats=stats)
    session.start(0.0)
    actions = session.on_answer(0.0, ok(grant, **answer_fields))
    assert of(actions, AdmitCall)
    if answered_at is not None:
        session.on_call_answered(answered_at)
    return session


def finish(session: RoSession, now: float, actions: Sequence[Action]) -> list[Action]:
    """Answer the CCR-T among ``actions`` and return everything that followed."""
    request = ccr(actions)
    assert request.request_type is CCR_T
    return list(session.on_answer(now, Answer(2001, request_number=request.request_number)))


# -- whole seconds -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "up", "nearest", "down"),
    [
        (0.0, 0, 0, 0),
        (12.5, 13, 13, 12),
        (12.49, 13, 12, 12),
        (30.000000000000004, 30, 30, 30),  # 30.1 - 0.1: float noise is not a second
        (29.999999999999996, 30, 30, 30),
        (-0.5, 0, 0, 0),
    ],
)
def test_final_rounding_modes(seconds: float, up: int, nearest: int, down: int) -> None:
    """billing_rounding up/nearest/down round the final remainder, ignoring float noise."""
    assert final_seconds(seconds, BillingRounding.UP) == up
    assert final_seconds(seconds, BillingRounding.NEAREST) == nearest
    assert final_seconds(seconds, BillingRounding.DOWN) == down


def test_interim_reports_truncate_to_whole_seconds() -> None:
    """Interim reports carry whole seconds; the fraction stays for later."""
    assert whole_seconds(22.9) == 22
    assert whole_seconds(21.999999999999996) == 22
    assert whole_seconds(-1.0) == 0


# -- CCR-I ---------------------------------------------------------------------------------


def test_start_sends_ccr_i_for_the_reservation() -> None:
    """start() sends CCR-I number 0 requesting reservation_units, reporting nothing."""
    session = RoSession(ChargingConfig(), reservation_units=45)
    request = ccr(session.start(100.0))
    assert request == SendCcr(CCR_I, 0, 45, None, False)
    assert session.start(100.0) == []


def test_successful_cca_i_admits_the_call_and_remembers_the_ocs() -> None:
    """CCA-I success lets the B leg go; later requests carry Destination-Host."""
    session = RoSession()
    session.start(0.0)
    assert session.on_answer(0.2, ok(30)) == [AdmitCall()]
    assert session.destination_host == "ocs1.lab"
    session.on_call_answered(1.0)
    update = ccr(session.on_timer(23.0))
    assert update.destination_host == "ocs1.lab"


@pytest.mark.parametrize(
    ("code", "status", "reason_part"),
    [
        (4010, 402, "Insufficient funds"),
        (4012, 402, "Credit limit"),
        (5030, 403, "User unknown"),
        (5006, 486, "Line limit"),
        (5031, 402, "(5031)"),
    ],
)
def test_refused_cca_i_rejects_through_the_result_code_map(
    code: int, status: int, reason_part: str
) -> None:
    """4010/4012 -> 402, 5030 -> 403, 5006 -> 486, any other -> 402 with the code; no CCR-T."""
    session = RoSession()
    session.start(0.0)
    actions = session.on_answer(0.1, Answer(code))
    (reject,) = of(actions, RejectCall)
    assert reject.sip_status == status
    assert reason_part in reject.reason
    assert reject.result_code == code
    assert of(actions, SendCcr) == []
    assert actions[-1] == Finished(0)
    assert session.next_deadline() is None
    assert session.on_call_ended(0.2, "rejected") == []


def test_result_code_map_is_configurable() -> None:
    """A site map overrides the defaults."""
    config = ChargingConfig(result_codes={4012: (480, "Temporarily Unavailable")})
    session = RoSession(config)
    session.start(0.0)
    (reject,) = of(session.on_answer(0.0, Answer(4012)), RejectCall)
    assert (reject.sip_status, reject.reason) == (480, "Temporarily Unavailable")


def test_zero_grant_on_cca_i_rejects_and_closes_the_session() -> None:
    """CCA-I success with 0 s granted: 402 to the caller and a CCR-T reporting 0."""
    session = RoSession()
    session.start(0.0)
    actions = session.on_answer(0.1, ok(0))
    assert of(actions, RejectCall)[0].sip_status == 402
    assert ccr(actions) == SendCcr(CCR_T, 1, None, 0, True, "ocs1.lab", cause="no units granted")
    assert finish(session, 0.2, actions) == [Finished(0)]


def test_4011_on_cca_i_continues_uncharged_without_ccr_t() -> None:
    """CREDIT_CONTROL_NOT_APPLICABLE: admit, no updates, no CCR-T (the OCS opened nothing)."""
    session = RoSession()
    session.start(0.0)
    actions = session.on_answer(0.0, Answer(4011))
    assert actions == [AdmitCall(), ContinueUncharged("credit control not applicable (4011)")]
    session.on_call_answered(1.0)
    assert session.next_deadline() == 7200.0  # only the Ro session lifetime
    assert session.on_call_ended(5000.0, "BYE") == [Finished(0)]


# -- units, buffer, validity -----------------------------------------------------------------


def test_units_count_from_the_200_ok_not_before() -> None:
    """Ringing is free: answered at 10 s, a 30 s grant's CCR-U goes at 32 s reporting 22."""
    session = opened(answered_at=10.0)
    assert session.next_deadline() == 32.0
    assert session.on_timer(31.9) == []
    update = ccr(session.on_timer(32.0))
    assert (update.request_type, update.request_number) == (CCR_U, 1)
    assert (update.used_seconds, update.requested_seconds) == (22, 30)


def test_no_update_before_the_call_is_answered() -> None:
    """Without a 200 OK (and no Validity-Time) no update is due: units are not used."""
    session = opened(answered_at=None)
    assert session.next_deadline() == 7200.0


def test_new_grant_counts_from_the_report() -> None:
    """After a CCR-U reporting 22 s, a 30 s grant allows talk up to 52 s: next CCR-U at 44 s."""
    session = opened()
    update = ccr(session.on_timer(22.0))
    assert update.used_seconds == 22
    assert session.next_deadline() == 30.0  # the grant's end: unanswered, the call ends
    assert session.on_answer(22.3, ok(30)) == []
    assert session.next_deadline() == 44.0


def test_grant_smaller_than_the_buffer_updates_halfway_through_it() -> None:
    """A 6 s grant with an 8 s buffer sends the CCR-U when 3 s of it are used, not at once."""
    session = opened(grant=6, answered_at=None)
    assert of(session.on_call_answered(3.0), SendCcr) == []
    assert session.next_deadline() == 6.0
    update = ccr(session.on_timer(6.0))
    assert update.request_type is CCR_U
    assert update.used_seconds == 3


def test_small_grants_do_not_cause_an_update_storm() -> None:
    """An OCS granting 5 s slices (buffer 8) gets a CCR-U every 2 s or more of talk, never 0 s."""
    session = opened(grant=5)
    now, updates = 0.0, []
    while now < 20.0:
        due = session.next_deadline()
        assert due is not None and due > now
        now = due
        update = ccr(session.on_timer(now))
        updates.append(update.used_seconds)
        session.on_answer(now, ok(5))
    assert len(updates) <= 10 and all(used is not None and used >= 2 for used in updates)


def test_time_quota_threshold_replaces_the_buffer_for_the_session() -> None:
    """Time-Quota-Threshold 3 from the CCA replaces timer_buffer 8, also for later grants."""
    session = opened(time_quota_threshold=3)
    assert session.next_deadline() == 27.0
    ccr(session.on_timer(27.0))
    session.on_answer(27.0, ok(30))
    assert session.next_deadline() == 54.0


def test_validity_time_clamps_the_grant() -> None:
    """Validity 20 s on a 30 s grant: the CCR-U is due 8 s before validity ends, at 12 s."""
    session = opened(validity_time=20)
    assert session.next_deadline() == 12.0
    assert ccr(session.on_timer(12.0)).used_seconds == 12


def test_validity_time_is_measured_from_the_cca_arrival() -> None:
    """CCA-I arriving at 2 s with validity 20 s and buffer 0: re-authorize at 22 s."""
    session = RoSession(ChargingConfig(timer_buffer=0))
    session.start(0.0)
    session.on_answer(2.0, ok(30, validity_time=20))
    session.on_call_answered(5.0)
    assert session.next_deadline() == 22.0
    update = ccr(session.on_timer(22.0))
    assert update.used_seconds == 17


def test_validity_expiry_reauthorizes_even_with_units_left_before_the_answer() -> None:
    """A ringing call whose grant validity ends re-authorizes, reporting 0 s used."""
    session = opened(answered_at=None, validity_time=15, config=ChargingConfig(timer_buffer=0))
    assert session.next_deadline() == 15.0
    update = ccr(session.on_timer(15.0))
    assert (update.request_type, update.used_seconds) == (CCR_U, 0)


def test_interim_reports_carry_the_fraction_to_the_final_report() -> None:
    """RAR at 7.6 s reports 7 s; a hang-up at 12.3 s reports 6 s: 13 s = ceil(12.3)."""
    session = opened()
    code, actions = session.on_reauth(7.6)
    assert code == 2002
    assert ccr(actions).used_seconds == 7
    session.on_answer(7.7, ok(30))
    assert ccr(session.on_call_ended(12.3, "BYE")).used_seconds == 6
    assert session.billed_seconds == 13


@pytest.mark.parametrize(
    ("rounding", "billed"),
    [(BillingRounding.UP, 13), (BillingRounding.NEAREST, 13), (BillingRounding.DOWN, 12)],
)
def test_billing_rounding_applies_to_the_final_report(
    rounding: BillingRounding, billed: int
) -> None:
    """A 12.5 s call is billed 13, 13 or 12 s under up, nearest, down."""
    session = opened(ChargingConfig(billing_rounding=rounding), answered_at=0.25)
    actions = session.on_call_ended(12.75, "BYE")
    assert ccr(actions).used_seconds == billed
    assert finish(session, 12.8, actions) == [Finished(billed)]


# -- final grants --------------------------------------------------------------------------


def test_final_grant_ends_the_call_exactly_when_used_up() -> None:
    """FUI TERMINATE on a 10 s grant answered at 0.25 s: EndCall + CCR-T(10) at 10.25 s."""
    stats = ChargingStats()
    session = opened(
        grant=10, answered_at=0.25, stats=stats, final_unit_action=FinalUnitAction.TERMINATE
    )
    assert session.next_deadline() == 10.25
    assert session.on_timer(10.2499) == []
    actions = session.on_timer(10.25)
    assert actions[0] == EndCall(EndReason.CREDIT_EXHAUSTED)
    assert ccr(actions) == SendCcr(CCR_T, 1, None, 10, True, "ocs1.lab", cause="credit exhausted")
    assert session.killed
    assert stats.killed_calls == 1
    assert session.on_call_ended(10.26, "BYE") == []
    assert finish(session, 10.3, actions) == [Finished(10)]
    assert stats.billed_secs == 10


def test_a_late_timer_still_reports_no_more_than_the_final_grant() -> None:
    """If the wheel fires late, the call is billed the grant, not the lateness."""
    session = opened(grant=10, final_unit_action=FinalUnitAction.TERMINATE)
    actions = session.on_timer(11.9)
    assert ccr(actions).used_seconds == 10


@pytest.mark.parametrize("action", list(FinalUnitAction))
def test_every_final_unit_action_ends_a_voice_call(action: FinalUnitAction) -> None:
    """REDIRECT and RESTRICT_ACCESS fall back to TERMINATE for a call (RFC 4006 §5.6.1)."""
    session = opened(grant=10, final_unit_action=action)
    assert session.next_deadline() == 10.0
    assert of(session.on_timer(10.0), EndCall)


def test_final_grant_sends_no_further_update() -> None:
    """A final CCA-U stops the updates: the next event is the end of the call."""
    session = opened()
    ccr(session.on_timer(22.0))
    session.on_answer(22.0, ok(10, final_unit_action=FinalUnitAction.TERMINATE))
    assert session.next_deadline() == 32.0
    actions = session.on_timer(32.0)
    assert [type(a) for a in actions] == [EndCall, SendCcr]
    assert ccr(actions).used_seconds == 10


def test_refused_update_keeps_the_current_grant() -> None:
    """CCR-U at 22 s refused (4012): the call is not cut, it ends at 30 s reporting 8 s."""
    session = opened()
    ccr(session.on_timer(22.0))
    assert session.on_answer(22.5, Answer(4012)) == []
    assert session.next_deadline() == 30.0
    assert session.on_timer(29.99) == []
    actions = session.on_timer(30.0)
    assert actions[0] == EndCall(EndReason.CREDIT_EXHAUSTED)
    assert ccr(actions).used_seconds == 8
    assert session.billed_seconds == 30


def test_zero_grant_on_update_is_final_and_keeps_the_current_grant() -> None:
    """A CCA-U granting 0 s is a final grant: the call ends when the old grant runs out."""
    session = opened()
    ccr(session.on_timer(22.0))
    session.on_answer(22.0, ok(0))
    assert session.next_deadline() == 30.0
    assert ccr(session.on_timer(30.0)).used_seconds == 8


def test_rar_on_a_final_grant_can_lift_the_limit() -> None:
    """After a top-up, RAR -> CCR-U -> a non-final grant: the call goes on."""
    session = opened(grant=10, final_unit_action=FinalUnitAction.TERMINATE)
    code, actions = session.on_reauth(5.0)
    assert code == 2002
    assert ccr(actions).used_seconds == 5
    session.on_answer(5.1, ok(30))
    assert session.next_deadline() == 27.0
    assert session.on_timer(10.0) == []


def test_call_runs_past_a_non_final_grant_with_continue_while_the_update_is_pending() -> None:
    """CCFH CONTINUE: a slow OCS does not cut the call, the new grant counts from 22 s, and
    the talk past the old grant is reported in full."""
    session = opened(ChargingConfig(failure_handling=Ccfh.CONTINUE))
    ccr(session.on_timer(22.0))
    assert session.next_deadline() == 7200.0
    assert session.on_timer(31.0) == []
    update = ccr(session.on_answer(33.0, ok(5)))  # talk allowed to 27 s: 6 s already over
    assert (update.request_number, update.used_seconds) == (2, 11)  # at once, uncapped
    session.on_answer(33.1, ok(30, request_number=2))
    assert ccr(session.on_call_ended(34.5, "BYE")).used_seconds == 2
    assert session.billed_seconds == 35  # 34.5 s talked, rounded up


def test_continue_overrun_answered_by_a_refusal_reports_all_the_talk() -> None:
    """CCFH CONTINUE, past the grant when a refusal arrives: end now, report every second."""
    session = opened(ChargingConfig(failure_handling=Ccfh.CONTINUE))
    ccr(session.on_timer(22.0))
    actions = session.on_answer(35.0, Answer(4012))
    assert actions[0] == EndCall(EndReason.CREDIT_EXHAUSTED)
    assert ccr(actions).used_seconds == 13
    assert session.billed_seconds == 35


def test_unanswered_update_ends_the_call_when_the_grant_is_used_up() -> None:
    """TERMINATE: the grant runs out while its CCR-U waits: BYE at the grant's end, as for
    credit exhaustion; the CCR-T follows the CCR-U's fate and reports the 30 s talked."""
    session = opened()
    ccr(session.on_timer(22.0))
    assert session.next_deadline() == 30.0
    assert session.on_timer(30.0) == [EndCall(EndReason.CREDIT_EXHAUSTED)]
    assert session.killed and session.next_deadline() is None
    actions = session.on_request_failed(32.0, RequestFailure.TX_TIMEOUT)
    assert ccr(actions).request_type is CCR_T and ccr(actions).used_seconds == 8
    assert session.billed_seconds == 30


def test_overrun_answered_by_a_refusal_ends_at_once_capped() -> None:
    """Past the grant when a refusal arrives: end now, report only what was granted."""
    session = opened()
    ccr(session.on_timer(22.0))
    actions = session.on_answer(35.0, Answer(4012))
    assert actions[0] == EndCall(EndReason.CREDIT_EXHAUSTED)
    assert ccr(actions).used_seconds == 8
    assert session.billed_seconds == 30


# -- RAR / ASR -------------------------------------------------------------------------------


def test_rar_when_open_answers_2002_and_sends_ccr_u() -> None:
    """RFC 4006 §5.5: RAA 2002 and a CCR-U reporting the used seconds."""
    session = opened()
    code, actions = session.on_reauth(10.5)
    assert code == 2002
    assert ccr(actions) == SendCcr(CCR_U, 1, 30, 10, False, "ocs1.lab")


def test_rar_while_an_update_is_pending_answers_2001_and_sends_nothing() -> None:
    """RFC 4006 §5.5 RAR-CCR collision: 2001, no second CCR-U."""
    session = opened()
    ccr(session.on_timer(22.0))
    assert session.on_reauth(23.0) == (2001, [])


def test_rar_for_a_finished_session_is_unknown() -> None:
    """A finished session answers RAR and ASR with 5002."""
    session = opened()
    actions = session.on_call_ended(3.0, "BYE")
    finish(session, 3.1, actions)
    assert session.on_reauth(4.0) == (5002, [])
    assert session.on_abort(4.0) == (5002, [])


def test_asr_ends_the_call_and_sends_ccr_t() -> None:
    """ASR: 2001, EndCall (aborted), then the CCR-T with the used seconds."""
    session = opened()
    code, actions = session.on_abort(12.4)
    assert code == 2001
    assert actions[0] == EndCall(EndReason.ABORTED)
    assert ccr(actions).used_seconds == 13
    assert not session.killed


def test_asr_after_hang_up_sends_no_second_ccr_t() -> None:
    """A hang-up then an ASR: one CCR-T only."""
    session = opened()
    ccr(session.on_call_ended(5.0, "BYE"))
    assert session.on_abort(5.1) == (2001, [])


def test_asr_while_cca_i_pending_queues_the_ccr_t() -> None:
    """ASR before the CCA-I: the call ends now, the CCR-T waits for the CCA-I."""
    session = RoSession()
    session.start(0.0)
    code, actions = session.on_abort(0.1)
    assert (code, actions) == (2001, [EndCall(EndReason.ABORTED)])
    after = session.on_answer(0.2, ok(30))
    assert ccr(after) == SendCcr(CCR_T, 1, None, 0, True, "ocs1.lab", cause="aborted by OCS")


# -- hang-ups and races -----------------------------------------------------------------------


def test_hang_up_while_cca_i_pending_queues_the_ccr_t() -> None:
    """RFC 4006 §7: never a CCR-T before its CCA-I; it goes once the CCA-I is in."""
    session = RoSession()
    session.start(0.0)
    assert session.on_call_ended(0.05, "CANCEL") == []
    actions = session.on_answer(0.3, ok(30))
    assert of(actions, AdmitCall) == []
    assert ccr(actions) == SendCcr(CCR_T, 1, None, 0, True, "ocs1.lab", cause="CANCEL")
    assert finish(session, 0.4, actions) == [Finished(0)]


def test_hang_up_while_cca_i_pending_then_refused() -> None:
    """A cancelled call whose CCA-I is refused: no reject (nobody to answer), no CCR-T."""
    session = RoSession()
    session.start(0.0)
    session.on_call_ended(0.05, "CANCEL")
    assert session.on_answer(0.3, Answer(4012)) == [Finished(0)]


def test_hang_up_while_ccr_u_pending_queues_the_ccr_t() -> None:
    """The CCR-T waits for the CCA-U, then reports the rest of the talk time."""
    session = opened()
    assert ccr(session.on_timer(22.0)).used_seconds == 22
    assert session.on_call_ended(25.2, "BYE") == []
    actions = session.on_answer(25.5, ok(30))
    assert ccr(actions) == SendCcr(CCR_T, 2, None, 4, True, "ocs1.lab", cause="BYE")
    assert finish(session, 26.0, actions) == [Finished(26)]


@pytest.mark.parametrize(
    "answer", [Answer(4012), Answer(4011), ok(0)], ids=["refused", "4011", "zero"]
)
def test_hang_up_while_ccr_u_pending_whatever_the_answer(answer: Answer) -> None:
    """Whatever the CCA-U says, the queued termination sends exactly one CCR-T."""
    session = opened()
    ccr(session.on_timer(22.0))
    session.on_call_ended(25.2, "BYE")
    actions = session.on_answer(25.5, answer)
    assert of(actions, EndCall) == []
    assert of(actions, ContinueUncharged) == []
    assert ccr(actions).request_type is CCR_T
    assert ccr(actions).used_seconds == 4


def test_hang_up_then_timer_at_the_same_instant() -> None:
    """Hang-up and grant end racing: the hang-up wins, the timer finds nothing to do."""
    session = opened(grant=10, final_unit_action=FinalUnitAction.TERMINATE)
    actions = session.on_call_ended(10.0, "BYE")
    assert ccr(actions).used_seconds == 10
    assert session.on_timer(10.0) == []
    assert session.next_deadline() is None


def test_timer_then_hang_up_at_the_same_instant() -> None:
    """Grant end first: EndCall + CCR-T; the hang-up that crosses the BYE is ignored."""
    session = opened(grant=10, final_unit_action=FinalUnitAction.TERMINATE)
    actions = session.on_timer(10.0)
    assert [type(a) for a in actions] == [EndCall, SendCcr]
    assert session.on_call_ended(10.0, "BYE") == []
    assert session.on_abort(10.0) == (2001, [])


def test_unanswered_call_reports_zero() -> None:
    """Admitted but never answered (busy, cancelled): CCR-T reporting 0 s."""
    session = opened(answered_at=None)
    actions = session.on_call_ended(20.0, "486 Busy Here")
    assert ccr(actions).used_seconds == 0
    assert finish(session, 20.1, actions) == [Finished(0)]


def test_hang_up_before_start_finishes_without_requests() -> None:
    """A call that went away before the charging route ran sends nothing."""
    session = RoSession()
    assert session.on_call_ended(0.0, "CANCEL") == []
    assert session.start(0.0) == [Finished(0)]


def test_answer_after_the_call_ended_is_not_admitted() -> None:
    """A 200 OK after the end does not start the talk clock."""
    session = opened(answered_at=None)
    actions = session.on_call_ended(1.0, "CANCEL")
    assert session.on_call_answered(1.5) == []
    assert ccr(actions).used_seconds == 0


def test_ro_auth_expiry_ends_the_call() -> None:
    """The Ro session lifetime (ro_auth_expiry) ends even a well-funded call."""
    session = opened(ChargingConfig(ro_auth_expiry=60), grant=3600)
    assert session.next_deadline() == 60.0
    actions = session.on_timer(60.0)
    assert actions[0] == EndCall(EndReason.AUTH_EXPIRED)
    assert ccr(actions).used_seconds == 60
    assert not session.killed


# -- failures (RFC 4006 §5.7) ----------------------------------------------------------------


def started(config: ChargingConfig | None = None) -> RoSession:
    session = RoSession(config or ChargingConfig())
    session.start(0.0)
    return session


def test_ccr_i_timeout_with_terminate_rejects_500() -> None:
    """Tx expiry, CCFH TERMINATE: no retry (RFC 4006 §5.7), 500 Charging Error."""
    session = started()
    actions = session.on_request_failed(10.0, RequestFailure.TX_TIMEOUT)
    assert actions == [RejectCall(500, "Charging Error"), Finished(0)]


def test_ccr_i_no_peer_with_terminate_retries_once_then_rejects() -> None:
    """A failure to send may move to an alternate peer (same number, T flag), then 500."""
    session = started()
    retry = ccr(session.on_request_failed(0.1, RequestFailure.NO_PEER))
    assert retry == SendCcr(CCR_I, 0, 30, None, False, None, retry=True)
    actions = session.on_request_failed(0.2, RequestFailure.PEER_DOWN)
    assert actions == [RejectCall(500, "Charging Error"), Finished(0)]


def test_ccr_i_failure_with_continue_retries_then_admits_uncharged() -> None:
    """CCFH CONTINUE: retry on an alternate peer, then let the call go on uncharged."""
    session = started(ChargingConfig(failure_handling=Ccfh.CONTINUE))
    assert ccr(session.on_request_failed(10.0, RequestFailure.TX_TIMEOUT)).retry
    actions = session.on_request_failed(20.0, RequestFailure.TX_TIMEOUT)
    assert [type(a) for a in actions] == [AdmitCall, ContinueUncharged]
    session.on_call_answered(21.0)
    assert session.on_call_ended(100.0, "BYE") == [Finished(0)]


def test_ccr_i_failure_with_retry_and_terminate() -> None:
    """RETRY_AND_TERMINATE: first a retry on an alternate peer, then 500."""
    session = started(ChargingConfig(failure_handling=Ccfh.RETRY_AND_TERMINATE))
    assert ccr(session.on_request_failed(10.0, RequestFailure.TX_TIMEOUT)).retry
    actions = session.on_request_failed(20.0, RequestFailure.TX_TIMEOUT)
    assert actions == [RejectCall(500, "Charging Error"), Finished(0)]


def test_a_new_session_fails_over_even_without_session_failover() -> None:
    """CC-Session-Failover is about moving an ongoing session; a CCR-I SHOULD fail over."""
    config = ChargingConfig(failure_handling=Ccfh.CONTINUE, session_failover=False)
    session = started(config)
    assert ccr(session.on_request_failed(10.0, RequestFailure.NO_PEER)).retry


def test_no_retry_of_an_update_when_failover_is_not_supported() -> None:
    """CC-Session-Failover NOT_SUPPORTED forbids moving an ongoing session to another peer."""
    session = opened(ChargingConfig(failure_handling=Ccfh.CONTINUE, session_failover=False))
    ccr(session.on_timer(22.0))
    actions = session.on_request_failed(22.5, RequestFailure.PEER_DOWN)
    assert actions == [ContinueUncharged("OCS unreachable, CCFH CONTINUE")]


def test_cc_session_failover_from_the_cca_overrides_the_config() -> None:
    """FAILOVER_SUPPORTED in the CCA-I allows the retry the config would forbid."""
    config = ChargingConfig(session_failover=False)
    session = opened(config, cc_session_failover=True)
    ccr(session.on_timer(22.0))
    assert ccr(session.on_request_failed(22.5, RequestFailure.PEER_DOWN)).retry


def test_hang_up_while_cca_i_pending_then_no_answer() -> None:
    """A cancelled call whose CCR-I is lost: no reject, no CCR-T, just the end."""
    session = started(ChargingConfig(session_failover=False))
    session.on_call_ended(0.05, "CANCEL")
    assert session.on_request_failed(10.0, RequestFailure.TX_TIMEOUT) == [Finished(0)]


def test_hang_up_while_cca_i_pending_then_lost_with_continue() -> None:
    """CCFH CONTINUE after a CANCEL: nothing to admit, the session just ends."""
    session = started(ChargingConfig(failure_handling=Ccfh.CONTINUE))
    session.on_call_ended(0.05, "CANCEL")
    assert ccr(session.on_request_failed(10.0, RequestFailure.TX_TIMEOUT)).retry
    assert session.on_request_failed(20.0, RequestFailure.TX_TIMEOUT) == [Finished(0)]


def test_hang_up_while_ccr_u_pending_then_lost() -> None:
    """The queued CCR-T still goes out after the CCR-U is given up on."""
    session = opened(ChargingConfig(session_failover=False))
    ccr(session.on_timer(22.0))
    session.on_call_ended(24.0, "BYE")
    actions = session.on_request_failed(32.0, RequestFailure.TX_TIMEOUT)
    assert of(actions, EndCall) == []
    assert ccr(actions).request_type is CCR_T
    assert ccr(actions).used_seconds == 2


def test_temporary_error_answer_is_a_failure() -> None:
    """3004 DIAMETER_TOO_BUSY is retried on an alternate peer like a failure to send."""
    session = started()
    assert ccr(session.on_answer(0.1, Answer(3004))).retry
    assert session.on_answer(0.2, ok(30)) == [AdmitCall()]


def test_ccr_u_timeout_with_terminate_ends_the_call() -> None:
    """CCR-U Tx expiry, CCFH TERMINATE: EndCall (charging failure) and one CCR-T."""
    session = opened()
    ccr(session.on_timer(22.0))
    actions = session.on_request_failed(32.0, RequestFailure.TX_TIMEOUT)
    assert actions[0] == EndCall(EndReason.CHARGING_FAILURE)
    request = ccr(actions)
    assert (request.request_type, request.request_number, request.used_seconds) == (CCR_T, 2, 8)
    assert not session.killed


def test_ccfh_from_the_cca_overrides_the_configured_value() -> None:
    """CCFH CONTINUE in the CCA-I beats the configured TERMINATE (RFC 4006 §5.7)."""
    session = opened(credit_control_failure_handling=Ccfh.CONTINUE, cc_session_failover=False)
    ccr(session.on_timer(22.0))
    actions = session.on_request_failed(32.0, RequestFailure.TX_TIMEOUT)
    assert actions == [ContinueUncharged("OCS unreachable, CCFH CONTINUE")]
    assert session.next_deadline() == 7200.0
    end = session.on_call_ended(500.0, "BYE")
    assert ccr(end).used_seconds == 478  # every second talked: 500 - 22 reported


def test_ccr_u_failure_with_retry_and_terminate() -> None:
    """RETRY_AND_TERMINATE on a CCR-U: retry with the same number, then end the call."""
    session = opened(credit_control_failure_handling=Ccfh.RETRY_AND_TERMINATE)
    first = ccr(session.on_timer(22.0))
    retry = ccr(session.on_request_failed(25.0, RequestFailure.TX_TIMEOUT))
    assert (retry.request_number, retry.used_seconds, retry.retry) == (1, 22, True)
    assert retry.destination_host is None
    assert first.destination_host == "ocs1.lab"
    actions = session.on_request_failed(28.0, RequestFailure.TX_TIMEOUT)
    assert actions[0] == EndCall(EndReason.CHARGING_FAILURE)
    assert ccr(actions).request_number == 2


def test_retry_and_terminate_ends_the_call_at_the_grant_end_while_retrying() -> None:
    """RETRY_AND_TERMINATE: the retry to the alternate is still unanswered when the grant
    is used up: the call ends then; the CCR-T follows the retry's answer, 30 s in all."""
    session = opened(credit_control_failure_handling=Ccfh.RETRY_AND_TERMINATE)
    ccr(session.on_timer(22.0))
    assert ccr(session.on_request_failed(28.0, RequestFailure.TX_TIMEOUT)).retry
    assert session.on_timer(30.0) == [EndCall(EndReason.CREDIT_EXHAUSTED)]
    final = ccr(session.on_answer(38.0, ok(30, request_number=1)))
    assert (final.request_type, final.used_seconds) == (CCR_T, 8)
    assert session.billed_seconds == 30


def test_retry_success_continues_with_the_backup_ocs() -> None:
    """A successful answer from the alternate peer makes it the session's OCS."""
    session = opened(credit_control_failure_handling=Ccfh.CONTINUE)
    ccr(session.on_timer(22.0))
    ccr(session.on_request_failed(32.0, RequestFailure.PEER_DOWN))
    session.on_answer(33.0, Answer(2001, granted_seconds=30, origin_host="ocs2.lab"))
    assert session.destination_host == "ocs2.lab"
    assert session.next_deadline() == 44.0


def test_failure_during_a_final_grant_keeps_the_final_units_only() -> None:
    """With CONTINUE, a failed re-authorization on a final grant does not lift the limit."""
    session = opened(
        grant=20,
        final_unit_action=FinalUnitAction.TERMINATE,
        credit_control_failure_handling=Ccfh.CONTINUE,
        cc_session_failover=False,
    )
    session.on_reauth(5.0)
    assert session.on_request_failed(15.0, RequestFailure.TX_TIMEOUT) == []
    assert session.next_deadline() == 20.0
    assert of(session.on_timer(20.0), EndCall)


def test_ccr_t_failure_retries_once_then_finishes() -> None:
    """A lost CCR-T is retried on an alternate peer once; then the session is over."""
    session = opened(credit_control_failure_handling=Ccfh.CONTINUE)
    ccr(session.on_call_ended(12.0, "BYE"))
    retry = ccr(session.on_request_failed(22.0, RequestFailure.TX_TIMEOUT))
    assert (retry.request_type, retry.used_seconds, retry.retry) == (CCR_T, 12, True)
    assert session.on_request_failed(32.0, RequestFailure.TX_TIMEOUT) == [Finished(12)]


def test_4011_on_update_continues_uncharged_and_still_closes() -> None:
    """4011 on a CCA-U: no more updates, the call goes on, one CCR-T with all the talk."""
    session = opened()
    ccr(session.on_timer(22.0))
    assert session.on_answer(22.0, Answer(4011)) == [
        ContinueUncharged("credit control not applicable (4011)")
    ]
    assert session.on_timer(100.0) == []
    assert ccr(session.on_call_ended(100.0, "BYE")).used_seconds == 78


# -- bookkeeping ------------------------------------------------------------------------------


def test_stale_and_unexpected_answers_are_ignored() -> None:
    """An answer with another CC-Request-Number, or with nothing pending, changes nothing."""
    session = RoSession()
    assert session.on_answer(0.0, ok(30)) == []
    session.start(0.0)
    assert session.on_answer(0.1, ok(30, request_number=7)) == []
    assert session.on_answer(0.2, ok(30, request_number=0)) == [AdmitCall()]
    assert session.on_answer(0.3, ok(30)) == []
    assert session.on_request_failed(0.4, RequestFailure.NO_PEER) == []


def test_request_numbers_continue_from_a_restored_session() -> None:
    """A restored session never repeats CC-Request-Numbers (first_request_number)."""
    session = RoSession(first_request_number=5)
    assert ccr(session.start(0.0)).request_number == 5
    session.on_answer(0.0, ok(30))
    session.on_call_answered(0.0)
    assert ccr(session.on_timer(22.0)).request_number == 6
    assert session.next_request_number == 7


def test_statistics_follow_the_session() -> None:
    """Requests, answers, timeouts, response times, billed seconds are counted."""
    stats = ChargingStats()
    session = RoSession(ChargingConfig(), stats=stats)
    session.start(0.0)
    session.on_answer(0.05, ok(30))
    session.on_call_answered(0.0)
    session.on_timer(22.0)
    session.on_request_failed(32.0, RequestFailure.TX_TIMEOUT)  # TERMINATE: end + CCR-T
    session.on_answer(32.1, Answer(2001))
    snap = stats.snapshot()
    assert tuple(snap) == STAT_NAMES
    assert len(snap) == 14
    assert (snap["initial_ccrs"], snap["interim_ccrs"], snap["final_ccrs"]) == (1, 1, 1)
    assert snap["successful_initial_ccrs"] == 1
    assert snap["failed_interim_ccrs"] == 1
    assert snap["successful_final_ccrs"] == 1
    assert snap["ccr_timeouts"] == 1
    assert snap["billed_secs"] == 30
    assert snap["killed_calls"] == 0
    assert snap["ccr_responses_time"] == pytest.approx(150.0)
    assert snap["ccr_avg_response_time"] == pytest.approx(75.0)


def test_statistics_count_each_request_kind() -> None:
    """Sent, successful and failed counters exist for initial, interim and final CCRs."""
    stats = ChargingStats()
    for kind in ("initial", "interim", "final"):
        stats.request_sent(kind)
        stats.answer_received(kind, success=True, elapsed_ms=10.0)
        stats.answer_received(kind, success=False, elapsed_ms=30.0)
        stats.request_failed(kind, timeout=False)
    snap = stats.snapshot()
    for prefix in ("initial", "interim", "final"):
        assert snap[f"{prefix}_ccrs"] == 1
        assert snap[f"successful_{prefix}_ccrs"] == 1
        assert snap[f"failed_{prefix}_ccrs"] == 2
    assert snap["ccr_timeouts"] == 0
    assert snap["ccr_avg_response_time"] == pytest.approx(20.0)


def test_statistics_average_is_zero_before_any_answer() -> None:
    """ccr_avg_response_time is 0 with no answers rather than a division error."""
    assert ChargingStats().ccr_avg_response_time == 0.0


@pytest.mark.parametrize(
    "field_name",
    ["interim_update_credits", "timer_buffer", "ro_auth_expiry", "reservation_units"],
)
def test_config_refuses_negative_values(field_name: str) -> None:
    """Negative seconds in the config are refused."""
    with pytest.raises(ValueError, match=field_name):
        ChargingConfig(**{field_name: -1})  # type: ignore[arg-type]


def test_negative_reservation_units_refused() -> None:
    """A charging route asking for negative units is refused."""
    with pytest.raises(ValueError, match="reservation_units"):
        RoSession(reservation_units=-1)


# -- property: random event sequences ---------------------------------------------------------

quarter_seconds = st.integers(0, 160).map(lambda q: q / 4)  # exact binary fractions, 0..40 s

successes = st.builds(
    Answer,
    result_code=st.just(2001),
    granted_seconds=st.sampled_from([0, 1, 2, 5, 10, 30, 30]),
    validity_time=st.sampled_from([None, None, 3, 10, 60]),
    final_unit_action=st.sampled_from([None, None, FinalUnitAction.TERMINATE]),
    time_quota_threshold=st.sampled_from([None, None, 0, 2, 5]),
    cc_session_failover=st.sampled_from([None, True, False]),
    credit_control_failure_handling=st.sampled_from([None, *Ccfh]),
    origin_host=st.sampled_from([None, "ocs1.lab", "ocs2.lab"]),
)
failures = st.sampled_from([Answer(code) for code in (4011, 4012, 4010, 5030, 3004)])
answers = st.one_of(successes, successes, failures)
first_answers = st.one_of(successes, successes, successes, failures)

events = st.one_of(
    st.just(("answer_call", None)),
    st.just(("answer_call", None)),
    st.just(("hang_up", None)),
    st.just(("rar", None)),
    st.just(("asr", None)),
    st.tuples(st.just("reply"), answers),
    st.tuples(st.just("reply"), answers),
    st.tuples(st.just("reply"), answers),
    st.tuples(st.just("fail"), st.sampled_from(list(RequestFailure))),
)

configs = st.builds(
    ChargingConfig,
    timer_buffer=st.sampled_from([0, 3, 8]),
    billing_rounding=st.sampled_from(list(BillingRounding)),
    failure_handling=st.sampled_from(list(Ccfh)),
    session_failover=st.booleans(),
    ro_auth_expiry=st.sampled_from([120, 7200]),
)


@dataclass
class Run:
    """What an observer of one session saw, and the checks made as it went."""

    session: RoSession
    now: float = 0.0
    sent: list[SendCcr] = field(default_factory=list)  # new requests, retries excluded
    pending: SendCcr | None = None
    reported_after: dict[int, int] = field(default_factory=dict)
    budget: int = 0
    granted_total: int = 0
    opened: bool = False
    admitted: bool = False
    rejected: bool = False
    answered_at: float | None = None
    talk_end: float | None = None
    finished: list[Finished] = field(default_factory=list)
    uncharged: bool = False  # ContinueUncharged: no cap on the seconds reported any more
    continue_seen: bool = False  # CCFH CONTINUE was in force at some point

    def __post_init__(self) -> None:
        self.continue_seen = self.session.snapshot()["ccfh"] == Ccfh.CONTINUE

    def apply(self, actions: Sequence[Action]) -> None:
        for action in actions:
            assert not self.finished, "nothing may follow Finished"
            if isinstance(action, SendCcr):
                self.on_send(action)
            elif isinstance(action, AdmitCall):
                assert not self.admitted and not self.rejected and self.talk_end is None
                self.admitted = True
            elif isinstance(action, RejectCall):
                assert not self.admitted and self.talk_end is None
                self.rejected = True
                self.talk_end = self.now
            elif isinstance(action, EndCall):
                assert self.talk_end is None
                self.talk_end = self.now
                assert self.session.on_call_ended(self.now, "BYE") == []
            elif isinstance(action, Finished):
                self.finished.append(action)
            elif isinstance(action, ContinueUncharged):
                self.uncharged = True

    def on_send(self, request: SendCcr) -> None:
        if request.retry:
            assert self.pending is not None
            assert self.pending.request_number == request.request_number
            assert self.pending.request_type is request.request_type
            return
        assert self.pending is None, "one request in flight at a time"
        assert request.request_number == len(self.sent), "numbers 0, 1, 2... without gaps"
        assert not any(r.request_type is CCR_T for r in self.sent), "nothing after the CCR-T"
        if request.request_type is CCR_T:
            assert self.opened, "never a CCR-T before a successful CCA-I"
        self.sent.append(request)
        self.reported_after[request.request_number] = sum(r.used_seconds or 0 for r in self.sent)
        self.pending = request

    def advance(self, target: float) -> None:
        """Let virtual time run to ``target``, firing the session's timer exactly on time."""
        for _ in range(1000):
            deadline = self.session.next_deadline()
            if deadline is None or deadline > target:
                break
            self.now = max(self.now, deadline)
            self.apply(self.session.on_timer(self.now))
        else:
            raise AssertionError("timer loop")
        self.now = max(self.now, target)

    def reply(self, template: Answer) -> None:
        request = self.pending
        if request is None:
            return
        self.pending = None
        answer = replace(template, request_number=request.request_number)
        if answer.credit_control_failure_handling is Ccfh.CONTINUE:
            self.continue_seen = True
        if 2000 <= answer.result_code < 3000 and request.request_type is not CCR_T:
            granted = answer.granted_seconds or 0
            self.granted_total += granted
            self.budget = max(self.budget, self.reported_after[request.request_number] + granted)
            if request.request_type is CCR_I:
                self.opened = True
        self.pending = request  # a retry may follow for a temporary error
        actions = self.session.on_answer(self.now, answer)
        if not any(isinstance(a, SendCcr) and a.retry for a in actions):
            self.pending = None
        self.apply(actions)

    def fail(self, kind: RequestFailure) -> None:
        if self.pending is None:
            return
        actions = self.session.on_request_failed(self.now, kind)
        if not any(isinstance(a, SendCcr) and a.retry for a in actions):
            self.pending = None
        self.apply(actions)

    def event(self, name: str, arg: object) -> None:
        if name == "answer_call":
            if self.admitted and self.talk_end is None and self.answered_at is None:
                self.answered_at = self.now
                self.apply(self.session.on_call_answered(self.now))
        elif name == "hang_up":
            if self.talk_end is None:
                self.talk_end = self.now
                self.apply(self.session.on_call_ended(self.now, "BYE"))
        elif name == "rar":
            code, actions = self.session.on_reauth(self.now)
            assert code in (2001, 2002, 5002)
            assert (code == 2002) == any(isinstance(a, SendCcr) for a in actions)
            self.apply(actions)
        elif name == "asr":
            _, actions = self.session.on_abort(self.now)
            self.apply(actions)
        elif name == "reply":
            assert isinstance(arg, Answer)
            self.reply(arg)
        else:
            assert isinstance(arg, RequestFailure)
            self.fail(arg)


@settings(max_examples=200, deadline=None)
@given(
    config=configs,
    first=first_answers,
    ring=st.one_of(st.none(), quarter_seconds),
    steps=st.lists(st.tuples(quarter_seconds, events), max_size=25),
)
def test_random_event_sequences_keep_the_charging_invariants(
    config: ChargingConfig,
    first: Answer,
    ring: float | None,
    steps: list[tuple[float, tuple[str, object]]],
) -> None:
    """Any event order: one CCR-T iff opened, contiguous numbers, exact bill: the talk,
    capped at the grant unless the call went on without credit control or with CCFH
    CONTINUE's leave past its grant (then never fewer seconds than talked)."""
    run = Run(RoSession(config))
    run.apply(run.session.start(0.0))
    run.reply(first)
    if ring is not None:  # most calls are answered after some ringing
        run.advance(ring)
        run.event("answer_call", None)
    for delay, (name, arg) in steps:
        run.advance(run.now + delay)
        if run.finished:
            break
        run.event(name, arg)
    if run.talk_end is None and not run.finished:
        run.event("hang_up", None)
    for _ in range(10):
        if run.finished:
            break
        run.reply(Answer(2001, granted_seconds=30))
    assert len(run.finished) == 1
    assert run.session.finished
    assert run.session.next_deadline() is None

    used = sum(r.used_seconds or 0 for r in run.sent)
    terminations = [r for r in run.sent if r.request_type is CCR_T]
    assert len(terminations) == (1 if run.opened else 0)
    if not run.opened:
        assert [r.request_type for r in run.sent] == [CCR_I]
    assert run.finished[0].billed_seconds == used
    if run.opened:
        talk = 0.0
        if run.answered_at is not None:
            assert run.talk_end is not None
            talk = run.talk_end - run.answered_at
        talked = final_seconds(talk, config.billing_rounding)
        if run.uncharged:
            assert used == talked
        elif run.continue_seen:
            assert min(talked, run.budget) <= used <= talked
        else:
            assert used == min(talked, run.budget) and used <= run.granted_total


def test_the_session_core_is_sans_io_and_codec_free() -> None:
    """The charging core imports neither twisted nor the Diameter codec."""
    code = (
        "import sys, b2bua.charging.session; "
        "bad = sorted(m for m in sys.modules if m.startswith(('twisted', 'b2bua.diameter'))); "
        "print(bad); sys.exit(bool(bad))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, check=False)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


# -- persistence ----------------------------------------------------------------------------


def reborn(session: RoSession, config: ChargingConfig | None = None) -> RoSession:
    """The session as a restart sees it: through a JSON snapshot."""
    import json

    return RoSession.restore(json.loads(json.dumps(session.snapshot())), config)


def test_only_an_opened_session_is_persistent() -> None:
    """Before the CCA-I grant and after the CCA-T there is nothing to keep."""
    session = RoSession()
    assert not session.persistent
    request = ccr(session.start(0.0))
    assert not session.persistent
    session.on_answer(0.0, ok(30, request_number=request.request_number))
    assert session.persistent
    ending = session.on_call_ended(5.0, "bye")
    assert session.persistent  # the CCR-T is owed until answered
    finish(session, 5.1, ending)
    assert not session.persistent


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["tick", "answer", "refuse", "fail", "rar"]), max_size=12))
def test_a_restored_session_behaves_as_the_original(steps: list[str]) -> None:
    """After every input, a session rebuilt from its snapshot acts exactly as the original."""
    config = ChargingConfig(timer_buffer=5)
    first, second = opened(config), reborn(opened(config), config)
    now = 0.0
    for step in steps:
        second = reborn(second, config)
        assert second.snapshot() == first.snapshot()
        now += 7.5
        outs: list[list[Action]] = []
        for session in (first, second):
            if step == "tick":
                outs.append(session.on_timer(now))
            elif step in ("answer", "refuse"):
                code = 2001 if step == "answer" else 4012
                outs.append(session.on_answer(now, Answer(code, granted_seconds=20)))
            elif step == "fail":
                outs.append(session.on_request_failed(now, RequestFailure.NO_PEER))
            else:
                outs.append(session.on_reauth(now)[1])
        assert outs[0] == outs[1]
    assert reborn(second, config).snapshot() == first.snapshot()


def test_resume_resends_a_pending_update_with_the_t_flag() -> None:
    """A CCR-U in flight at the crash goes again: same number, retry, no Destination-Host."""
    session = opened(ChargingConfig(timer_buffer=8))
    update = ccr(session.on_timer(22.0))
    assert update.request_type is CCR_U and update.request_number == 1
    again = ccr(reborn(session).resume(30.0))
    assert again == replace(update, retry=True, destination_host=None)


def test_resume_ends_a_call_whose_grant_ran_out_while_down() -> None:
    """Past the end of a (non-final) grant: EndCall, and a CCR-T for the grant, not for now."""
    session = reborn(opened(ChargingConfig(timer_buffer=8), grant=30))
    actions = session.resume(100.0)
    assert of(actions, EndCall) == [EndCall(EndReason.CREDIT_EXHAUSTED)]
    request = ccr(actions)
    assert (request.request_type, request.request_number, request.used_seconds) == (CCR_T, 1, 30)
    assert session.killed


def test_resume_sends_a_due_update_when_the_grant_still_runs() -> None:
    """Past the CCR-U point but within the grant: the CCR-U goes at once, numbered 1."""
    session = reborn(opened(ChargingConfig(timer_buffer=8), grant=30))
    request = ccr(session.resume(25.0))
    assert (request.request_type, request.request_number, request.used_seconds) == (CCR_U, 1, 25)


def test_resume_with_an_end_reports_up_to_that_end() -> None:
    """end_at: the call is over then; the CCR-T reports the talk up to it (capped by the grant)."""
    session = reborn(opened(grant=30))
    request = ccr(session.resume(50.0, end_at=12.0))
    assert (request.request_type, request.used_seconds) == (CCR_T, 12)
    capped = ccr(reborn(opened(grant=30)).resume(80.0, end_at=80.0))
    assert capped.used_seconds == 30


def test_resume_of_a_never_answered_session_reports_zero() -> None:
    """A session whose call never got its 200 OK: CCR-T with 0 seconds used."""
    session = reborn(opened(answered_at=None))
    request = ccr(session.resume(40.0, end_at=20.0))
    assert request.request_type is CCR_T and request.used_seconds == 0


@pytest.mark.parametrize(
    ("name", "value"),
    [("next_number", 1.5), ("state", "NOPE"), ("ccfh", 9), ("answered_at", "0"), ("final", None)],
)
def test_restore_refuses_a_bad_snapshot(name: str, value: object) -> None:
    """Wrong types and unknown enum values raise; a missing field raises KeyError."""
    data = opened().snapshot()
    if value is None:
        del data[name]
    else:
        data[name] = value
    with pytest.raises((KeyError, TypeError, ValueError)):
        RoSession.restore(data)


def test_restore_refuses_a_pending_state_without_its_request() -> None:
    """PENDING_U without the request it waits for is not a session."""
    session = opened(ChargingConfig(timer_buffer=8))
    session.on_timer(22.0)
    data = session.snapshot()
    data["pending"] = None
    with pytest.raises(ValueError):
        RoSession.restore(data)
