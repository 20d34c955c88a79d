"""The charging engine in virtual time: call events, CCRs through a fake client, the wheel."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import pytest
from twisted.internet.task import Clock

from b2bua.charging.engine import (
    ChargingEngine,
    RoIdentity,
    classify_failure,
    reason_header,
)
from b2bua.charging.messages import SessionIdGenerator
from b2bua.charging.session import Ccfh, ChargingConfig, RequestFailure
from b2bua.charging.stats import ChargingStats
from b2bua.diameter.errors import DecodeError
from b2bua.diameter.message import Message
from b2bua.timers.driver import WheelDriver
from b2bua.timers.wheel import TimerWheel
from tests.charging.fakes import (
    FakeCalls,
    FakeDiameterClient,
    NoPeerAvailable,
    PeerDown,
    RequestTimeout,
    TinyOcs,
    answer_for,
    make_context,
)

CALL = "call-1@sbc.lab.example"
SUBSCRIBER = "15550100"
IDENTITY = RoIdentity("b2bua.lab.example", "lab.example", "ocs.lab.example")


@dataclass
class Rig:
    clock: Clock
    wheel: TimerWheel
    ocs: TinyOcs
    client: FakeDiameterClient
    calls: FakeCalls
    engine: ChargingEngine
    stats: ChargingStats

    def advance_to(self, when: float) -> None:
        """Run every delayed call due by ``when`` at its own time, then move to ``when``."""
        while True:
            due = [c.getTime() for c in self.clock.getDelayedCalls() if c.getTime() <= when]
            if not due:
                break
            self.clock.advance(max(0.0, min(due) - self.clock.seconds()))
        self.clock.advance(when - self.clock.seconds())

    def requests(self) -> list[Message]:
        return self.client.requests()

    def start(self, call_id: str = CALL, **kwargs: Any) -> str:
        session_id = self.engine.start_call(call_id, make_context(call_id), **kwargs)
        assert session_id is not None
        return session_id

    def assert_idle(self) -> None:
        """No session, no call, no timer left."""
        assert self.engine.active_sessions == 0
        assert self.engine.active_calls == 0
        assert len(self.wheel) == 0


def make_rig(
    *,
    balance: int = 1000,
    ocs: TinyOcs | None = None,
    delay: float = 0.05,
    **config: Any,
) -> Rig:
    engine_kwargs = {
        key: config.pop(key)
        for key in ("single_ro_session_per_dialog", "termination_retry_interval")
        if key in config
    }
    clock = Clock()
    wheel = TimerWheel()
    driver = WheelDriver(wheel, clock)
    ocs = ocs or TinyOcs({SUBSCRIBER: balance})
    client = FakeDiameterClient(clock, ocs, delay=delay)
    calls = FakeCalls()
    stats = ChargingStats()
    engine = ChargingEngine(
        client=client,
        calls=calls,
        driver=driver,
        identity=IDENTITY,
        config=ChargingConfig(**config),
        stats=stats,
        session_ids=SessionIdGenerator(IDENTITY.origin_host, 0.0, random.Random(7)),
        **engine_kwargs,
    )
    return Rig(clock, wheel, ocs, client, calls, engine, stats)


def used(request: Message) -> int | None:
    value: int | None = request.get_path(
        "Multiple-Services-Credit-Control", "Used-Service-Unit", "CC-Time"
    )
    return value


def requested(request: Message) -> int | None:
    value: int | None = request.get_path(
        "Multiple-Services-Credit-Control", "Requested-Service-Unit", "CC-Time"
    )
    return value


def ims(request: Message, *names: str) -> Any:
    return request.get_path("Service-Information", "IMS-Information", *names)


def kinds(rig: Rig) -> list[int]:
    return [request.get("CC-Request-Type") for request in rig.requests()]


def rar(session_id: str) -> Message:
    return Message.request(
        "Re-Auth",
        4,
        [
            ("Session-Id", session_id),
            ("Origin-Host", "ocs1.lab.example"),
            ("Origin-Realm", "lab.example"),
            ("Destination-Realm", "lab.example"),
            ("Destination-Host", "b2bua.lab.example"),
            ("Auth-Application-Id", 4),
            ("Re-Auth-Request-Type", "AUTHORIZE_ONLY"),
        ],
    )


def asr(session_id: str) -> Message:
    return Message.request(
        "Abort-Session",
        4,
        [
            ("Session-Id", session_id),
            ("Origin-Host", "ocs1.lab.example"),
            ("Origin-Realm", "lab.example"),
            ("Destination-Realm", "lab.example"),
            ("Destination-Host", "b2bua.lab.example"),
            ("Auth-Application-Id", 4),
        ],
    )


# -- a whole call -------------------------------------------------------------------------


def test_full_call_reports_exact_seconds_and_counts_every_ccr() -> None:
    """CCR-I, admit, 200 OK, CCR-U at grant minus timer_buffer, BYE, CCR-T with the rest."""
    rig = make_rig()
    session_id = rig.start()
    assert kinds(rig) == [1] and rig.calls.events == []
    rig.advance_to(0.05)
    assert rig.calls.events == [("admit", CALL)]
    rig.engine.call_answered(CALL, 1.0)
    rig.advance_to(1.0)
    rig.advance_to(22.9)
    assert kinds(rig) == [1]
    rig.advance_to(23.0)  # 1 + 30 - 8
    assert kinds(rig) == [1, 2]
    update = rig.requests()[1]
    assert (used(update), requested(update)) == (22, 30)
    assert ims(update, "Time-Stamps", "SIP-Response-Timestamp").timestamp() == 1.0
    rig.advance_to(40.5)
    rig.engine.call_ended(CALL)
    final = rig.requests()[2]
    assert final.get("CC-Request-Type") == 3
    assert (used(final), requested(final)) == (18, None)  # 39.5 s talked, 22 reported: 18
    assert ims(final, "Event-Type", "SIP-Method") == "BYE"
    assert ims(final, "Cause-Code") == 0
    assert final.get("Termination-Cause") == 1
    assert final.get("Destination-Host") == "ocs1.lab.example"  # learned from the CCA-I
    assert [r.get("CC-Request-Number") for r in rig.requests()] == [0, 1, 2]
    assert {r.session_id for r in rig.requests()} == {session_id}
    assert rig.engine.active_sessions == 1
    rig.advance_to(40.55)
    snapshot = rig.stats.snapshot()
    assert snapshot == {
        "initial_ccrs": 1,
        "interim_ccrs": 1,
        "final_ccrs": 1,
        "successful_initial_ccrs": 1,
        "successful_interim_ccrs": 1,
        "successful_final_ccrs": 1,
        "failed_initial_ccrs": 0,
        "failed_interim_ccrs": 0,
        "failed_final_ccrs": 0,
        "ccr_avg_response_time": pytest.approx(50.0),
        "ccr_responses_time": pytest.approx(150.0),
        "ccr_timeouts": 0,
        "billed_secs": 40,
        "killed_calls": 0,
    }
    assert rig.ocs.balances[SUBSCRIBER] == 960 and rig.ocs.reserved == {}
    assert rig.calls.events == [("admit", CALL)]
    rig.assert_idle()


def test_active_gauge_counts_concurrent_sessions_up_and_down() -> None:
    """active_sessions rises with each call and falls back to 0 as they finish."""
    rig = make_rig()
    for n in range(3):
        rig.start(f"call-{n}")
    assert rig.engine.active_sessions == 3
    rig.advance_to(0.05)
    rig.engine.call_ended("call-1", sip_method="CANCEL")
    rig.advance_to(0.2)
    assert rig.engine.active_sessions == 2
    for n in (0, 2):
        rig.engine.call_ended(f"call-{n}")
    rig.advance_to(1.0)
    rig.assert_idle()


def test_unanswered_call_reports_zero_with_cancel_cause() -> None:
    """A call cancelled after the CCA-I gets a CCR-T reporting 0 s, CANCEL, Cause-Code 2."""
    rig = make_rig()
    rig.start()
    rig.advance_to(3.0)
    rig.engine.call_ended(CALL, "caller cancelled", sip_method="CANCEL")
    final = rig.requests()[-1]
    assert used(final) == 0
    assert ims(final, "Event-Type", "SIP-Method") == "CANCEL"
    assert ims(final, "Cause-Code") == 2
    rig.advance_to(4.0)
    assert rig.stats.billed_secs == 0
    rig.assert_idle()


def test_failed_setup_reports_the_sip_status_as_cause_code() -> None:
    """The callee's 486 is the CCR-T's Cause-Code when the call side passes it."""
    rig = make_rig()
    rig.start()
    rig.advance_to(1.0)
    rig.engine.call_ended(CALL, "busy", sip_method="INVITE", cause_code=486)
    assert ims(rig.requests()[-1], "Cause-Code") == 486
    rig.advance_to(2.0)
    rig.assert_idle()


def test_video_call_uses_the_video_rating_group() -> None:
    """A call whose SDP has active video is charged on the video service and rating group."""
    from tests.charging.fakes import SDP_VIDEO

    rig = make_rig()
    rig.engine.start_call(CALL, make_context(CALL, body=SDP_VIDEO))
    request = rig.requests()[0]
    assert request.get_path("Multiple-Services-Credit-Control", "Rating-Group") == 200
    assert request.get_path("Multiple-Services-Credit-Control", "Service-Identifier") == 1001
    rig.engine.call_ended(CALL, sip_method="CANCEL")
    rig.advance_to(1.0)
    rig.assert_idle()


# -- refusals -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status", "reason"),
    [
        (4010, 402, "Payment Required - Insufficient funds"),
        (4012, 402, "Payment Required - Credit limit reached"),
        (5030, 403, "Forbidden - User unknown"),
        (5006, 486, "Line limit exceeded"),
        (5031, 402, "Payment Required (5031)"),
    ],
)
@pytest.mark.parametrize("experimental", [False, True])
def test_refused_cca_i_rejects_with_the_mapped_status(
    code: int, status: int, reason: str, experimental: bool
) -> None:
    """A refused CCA-I (Result-Code or Experimental-Result) answers the caller per the map."""
    rig = make_rig(ocs=TinyOcs({SUBSCRIBER: 100}, refuse=code, experimental=experimental))
    rig.start()
    rig.advance_to(1.0)
    assert rig.calls.events == [("reject", CALL, status, reason, reason_header(status, reason))]
    assert kinds(rig) == [1]
    assert rig.stats.failed_initial_ccrs == 1 and rig.stats.successful_initial_ccrs == 0
    rig.assert_idle()


def test_zero_grant_rejects_and_closes_the_ocs_session() -> None:
    """A successful CCA-I granting 0 s refuses the call 402 and still sends the CCR-T."""
    rig = make_rig()
    rig.client.hold = True
    rig.start()
    rig.client.release(0, answer_for(rig.client.held[0].request, granted=0))
    reason = "Payment Required - Credit limit reached"
    assert rig.calls.events == [("reject", CALL, 402, reason, reason_header(402, reason))]
    final = rig.requests()[-1]
    assert final.get("CC-Request-Type") == 3 and used(final) == 0
    assert ims(final, "Cause-Code") == 402 and final.get("Termination-Cause") == 2
    rig.client.release(0)
    rig.assert_idle()


def test_empty_balance_is_refused_4012() -> None:
    """A subscriber without credit is refused by the OCS and answered 402."""
    rig = make_rig(balance=0)
    rig.start()
    rig.advance_to(1.0)
    assert rig.calls.events[0][:3] == ("reject", CALL, 402)
    assert kinds(rig) == [1]
    rig.assert_idle()


def test_credit_control_not_applicable_admits_uncharged() -> None:
    """4011 admits the call; no further CCR is sent, even at hangup."""
    rig = make_rig(ocs=TinyOcs({SUBSCRIBER: 100}, refuse=4011))
    rig.start()
    rig.advance_to(1.0)
    assert rig.calls.events == [("admit", CALL)]
    rig.engine.call_answered(CALL)
    rig.advance_to(100.0)
    rig.engine.call_ended(CALL)
    assert kinds(rig) == [1]
    rig.assert_idle()


# -- an OCS that does not answer ---------------------------------------------------------


def test_tx_timeout_with_ccfh_terminate_rejects_500() -> None:
    """TERMINATE: a timed-out CCR-I is not retried; the caller gets 500 Charging Error."""
    rig = make_rig(failure_handling=Ccfh.TERMINATE)
    rig.client.failures.append(RequestTimeout("Tx"))
    rig.client.fail_after = 10.0
    rig.start()
    rig.advance_to(10.0)
    assert len(rig.requests()) == 1
    header = reason_header(500, "Charging Error")
    assert rig.calls.events == [("reject", CALL, 500, "Charging Error", header)]
    assert (rig.stats.ccr_timeouts, rig.stats.failed_initial_ccrs) == (1, 1)
    rig.assert_idle()


def test_tx_timeout_with_ccfh_continue_fails_over_then_admits_uncharged() -> None:
    """CONTINUE: retried once on another peer with the T flag, then the call goes on free."""
    rig = make_rig(failure_handling=Ccfh.CONTINUE)
    rig.client.failures.extend([RequestTimeout("Tx"), RequestTimeout("Tx")])
    rig.client.fail_after = 10.0
    rig.start()
    rig.advance_to(10.0)
    retry, destination = rig.client.sent[1]
    assert retry.is_retransmit and retry.get("Destination-Host") is None
    assert destination is None
    assert retry.get("CC-Request-Number") == 0
    assert retry.end_to_end == rig.client.sent[0][0].end_to_end  # RFC 6733 §5.5.4
    rig.advance_to(20.0)
    assert rig.calls.events == [("admit", CALL)]
    assert rig.stats.initial_ccrs == 2 and rig.stats.ccr_timeouts == 2
    rig.engine.call_answered(CALL)
    rig.advance_to(200.0)
    rig.engine.call_ended(CALL)
    assert len(rig.requests()) == 2  # the OCS never opened a session: nothing to close
    rig.assert_idle()


def test_tx_timeout_with_retry_and_terminate_uses_the_alternate_answer() -> None:
    """RETRY_AND_TERMINATE: the retransmission's answer admits the call."""
    rig = make_rig(failure_handling=Ccfh.RETRY_AND_TERMINATE)
    rig.client.failures.append(RequestTimeout("Tx"))
    rig.client.fail_after = 10.0
    rig.start()
    rig.advance_to(10.05)
    assert rig.calls.events == [("admit", CALL)]
    assert rig.requests()[1].is_retransmit
    rig.engine.call_ended(CALL, sip_method="CANCEL")
    rig.advance_to(11.0)
    rig.assert_idle()


def test_tx_timeout_with_retry_and_terminate_rejects_when_both_fail() -> None:
    """RETRY_AND_TERMINATE: when the alternate times out too, the caller gets 500."""
    rig = make_rig(failure_handling=Ccfh.RETRY_AND_TERMINATE)
    rig.client.failures.extend([RequestTimeout("Tx"), RequestTimeout("Tx")])
    rig.client.fail_after = 10.0
    rig.start()
    rig.advance_to(20.0)
    assert rig.calls.events[0][:3] == ("reject", CALL, 500)
    rig.assert_idle()


def test_no_peer_for_a_new_session_fails_over_even_with_terminate() -> None:
    """A CCR-I that found no peer is retried on an alternate whatever the CCFH."""
    rig = make_rig(failure_handling=Ccfh.TERMINATE)
    rig.client.failures.append(NoPeerAvailable("none"))
    rig.start()
    rig.advance_to(0.05)
    assert rig.calls.events == [("admit", CALL)]
    rig.engine.call_ended(CALL, sip_method="CANCEL")
    rig.advance_to(1.0)
    rig.assert_idle()


def test_update_timeout_with_terminate_ends_the_call() -> None:
    """A CCR-U that times out under TERMINATE ends the call and sends the CCR-T."""
    rig = make_rig(failure_handling=Ccfh.TERMINATE)
    rig.start()
    rig.advance_to(0.05)
    rig.engine.call_answered(CALL, 0.05)
    rig.client.failures.append(RequestTimeout("Tx"))
    rig.client.fail_after = 5.0  # Tx fires before the grant (30 s) is used up
    rig.advance_to(22.05)  # CCR-U
    rig.advance_to(27.05)  # Tx
    assert rig.calls.events[-1] == (
        "end",
        CALL,
        "charging failure",
        reason_header(500, "charging failure"),
    )
    final = rig.requests()[-1]
    assert final.get("CC-Request-Type") == 3
    assert used(final) == 5  # 27 s talked, 22 reported
    assert ims(final, "Cause-Code") == 3
    assert final.get("Termination-Cause") == 5
    rig.advance_to(28.0)
    assert rig.stats.killed_calls == 0
    rig.assert_idle()


def test_grant_used_up_while_the_update_waits_for_tx_ends_the_call_with_terminate() -> None:
    """TERMINATE: the 30 s grant runs out at 30 s while the CCR-U (22 s) waits for Tx (32 s):
    BYE at 30 s as for credit exhaustion, and the CCR-T after Tx reports the 8 s left."""
    rig = make_rig(failure_handling=Ccfh.TERMINATE)
    rig.start()
    rig.advance_to(0.05)
    rig.engine.call_answered(CALL, 0.05)
    rig.client.failures.append(RequestTimeout("Tx"))
    rig.client.fail_after = 10.0
    rig.advance_to(30.0)
    assert rig.calls.events == [("admit", CALL)]
    rig.advance_to(30.05)
    header = reason_header(402, "credit exhausted")
    assert rig.calls.events[-1] == ("end", CALL, "credit exhausted", header)
    assert kinds(rig) == [1, 2]  # the CCR-T waits for the CCR-U's fate (RFC 4006 §7)
    rig.engine.call_ended(CALL, "ended by b2bua", now=30.06)  # the call side's echo
    rig.advance_to(32.05)  # Tx
    final = rig.requests()[-1]
    assert final.get("CC-Request-Type") == 3 and used(final) == 8  # 22 + 8 = 30 s talked
    assert rig.stats.killed_calls == 1
    rig.advance_to(33.0)
    rig.assert_idle()


def test_grant_used_up_while_the_update_waits_for_the_retry_with_retry_and_terminate() -> None:
    """RETRY_AND_TERMINATE: the CCR-U's retry to an alternate is still out when the grant
    is used up: the call ends then; the retry's answer releases the CCR-T, 30 s in all."""
    rig = make_rig(failure_handling=Ccfh.RETRY_AND_TERMINATE)
    rig.start()
    rig.advance_to(0.05)
    rig.engine.call_answered(CALL, 0.05)
    rig.client.failures.append(RequestTimeout("Tx"))
    rig.client.fail_after = 5.0
    rig.client.hold = True  # what is not failed waits for release()
    rig.advance_to(27.05)  # CCR-U at 22.05, Tx at 27.05: the retry leaves
    assert rig.requests()[-1].is_retransmit
    rig.advance_to(30.05)
    assert rig.calls.events[-1][:3] == ("end", CALL, "credit exhausted")
    rig.client.release()  # the alternate answers, granting more: too late
    rig.advance_to(31.0)
    final = rig.requests()[-1]
    assert final.get("CC-Request-Type") == 3 and used(final) == 8
    rig.client.hold = False
    rig.client.release()
    rig.advance_to(32.0)
    rig.assert_idle()


def test_grant_used_up_while_the_update_waits_with_continue_bills_every_second() -> None:
    """CONTINUE: the call talks on past its grant while the CCR-U waits, then uncharged
    after the retry fails too; the CCR-T reports every second talked (60 s in all)."""
    rig = make_rig(failure_handling=Ccfh.CONTINUE)
    rig.start()
    rig.advance_to(0.05)
    rig.engine.call_answered(CALL, 0.05)
    rig.client.failures.extend([RequestTimeout("Tx"), RequestTimeout("Tx")])
    rig.client.fail_after = 10.0
    rig.advance_to(42.05)  # CCR-U at 22.05, retry at 32.05, given up at 42.05
    assert rig.calls.events == [("admit", CALL)]
    rig.engine.call_ended(CALL, now=60.05)
    final = rig.requests()[-1]
    assert final.get("CC-Request-Type") == 3 and used(final) == 38  # 22 + 38 = 60 s talked
    rig.advance_to(61.0)
    assert rig.stats.killed_calls == 0
    rig.assert_idle()


def test_failed_termination_is_kept_and_resent_until_answered() -> None:
    """A CCR-T no peer took goes to pending_terminations and is resent with the T flag."""
    rig = make_rig(termination_retry_interval=30.0)
    rig.start()
    rig.advance_to(0.05)
    rig.engine.call_answered(CALL, 0.05)
    rig.advance_to(10.05)
    rig.client.failures.extend([PeerDown("lost"), NoPeerAvailable("none"), PeerDown("lost")])
    rig.engine.call_ended(CALL)
    rig.advance_to(10.1)
    assert rig.engine.active_sessions == 0
    (pending,) = rig.engine.pending_terminations
    assert rig.stats.billed_secs == 10
    rig.advance_to(40.1)  # first resend fails
    assert pending.attempts == 1 and rig.engine.pending_terminations == [pending]
    rig.advance_to(70.1)  # second resend answered
    rig.advance_to(70.2)
    assert rig.engine.pending_terminations == []
    resent = rig.requests()[-1]
    assert resent.is_retransmit and resent.get("Destination-Host") is None
    assert used(resent) == 10
    assert [used(r) for r in rig.requests()[1:]] == [10, 10, 10, 10]
    assert (rig.stats.final_ccrs, rig.stats.failed_final_ccrs) == (4, 3)
    assert rig.stats.successful_final_ccrs == 1
    assert rig.ocs.balances[SUBSCRIBER] == 990
    rig.assert_idle()


# -- RAR and ASR ---------------------------------------------------------------------------


def test_rar_on_an_open_session_answers_2002_then_sends_ccr_u() -> None:
    """RAR when open: RAA 2002 goes back first, the CCR-U follows at once."""
    rig = make_rig()
    session_id = rig.start()
    rig.advance_to(0.05)
    rig.engine.call_answered(CALL, 0.05)
    rig.advance_to(5.05)
    answer = rig.engine.handle_rar(rar(session_id))
    assert answer.result_code == 2002 and not answer.is_request
    assert answer.session_id == session_id
    assert answer.origin_host == "b2bua.lab.example"
    assert kinds(rig) == [1]  # not before the RAA has left
    rig.clock.advance(0)
    assert kinds(rig) == [1, 2]
    assert used(rig.requests()[-1]) == 5
    rig.engine.call_ended(CALL)
    rig.advance_to(6.0)
    rig.assert_idle()


def test_rar_while_an_update_is_pending_answers_2001_without_a_new_ccr() -> None:
    """RAR colliding with a pending CCR-U: RAA 2001 and no second CCR-U."""
    rig = make_rig()
    session_id = rig.start()
    rig.advance_to(0.05)
    rig.engine.call_answered(CALL, 0.05)
    rig.client.hold = True
    rig.advance_to(22.05)
    assert kinds(rig) == [1, 2]
    assert rig.engine.handle_rar(rar(session_id)).result_code == 2001
    rig.clock.advance(0)
    assert kinds(rig) == [1, 2]
    rig.client.hold = False
    rig.client.release(0)
    rig.engine.call_ended(CALL)
    rig.advance_to(30.0)
    rig.assert_idle()


def test_asr_answers_2001_ends_the_call_and_sends_ccr_t() -> None:
    """ASR: ASA 2001, the call is ended with a Reason, then the CCR-T reports the usage."""
    rig = make_rig()
    session_id = rig.start()
    rig.advance_to(0.05)
    rig.engine.call_answered(CALL, 0.05)
    rig.advance_to(12.55)
    answer = rig.engine.handle_asr(asr(session_id))
    assert answer.result_code == 2001
    assert rig.calls.events == [("admit", CALL)]
    rig.clock.advance(0)
    header = reason_header(403, "aborted by OCS")
    assert rig.calls.events[-1] == ("end", CALL, "aborted by OCS", header)
    final = rig.requests()[-1]
    assert final.get("CC-Request-Type") == 3 and used(final) == 13
    assert final.get("Termination-Cause") == 4
    rig.engine.call_ended(CALL)  # the BYE transaction completing changes nothing
    rig.advance_to(13.0)
    assert rig.stats.killed_calls == 0
    rig.assert_idle()


@pytest.mark.parametrize("build", [rar, asr])
def test_unknown_session_is_answered_5002(build: Any) -> None:
    """RAR or ASR for a Session-Id the engine does not hold is answered 5002."""
    rig = make_rig()
    handler = rig.engine.handle_rar if build is rar else rig.engine.handle_asr
    answer = handler(build("b2bua.lab.example;1;2;nope"))
    assert answer.result_code == 5002
    assert answer.get("Origin-Realm") == "lab.example"
    rig.assert_idle()


def test_register_handlers_routes_rar_and_asr() -> None:
    """register_handlers puts handle_rar and handle_asr on the Ro application."""
    rig = make_rig()
    seen: dict[tuple[int, int], Any] = {}

    class Registry:
        def register_handler(self, app_id: int, command_code: int, handler: Any) -> None:
            seen[(app_id, command_code)] = handler

    rig.engine.register_handlers(Registry())
    assert seen == {(4, 258): rig.engine.handle_rar, (4, 274): rig.engine.handle_asr}


# -- CANCEL racing the CCA-I --------------------------------------------------------------


def test_cancel_before_cca_i_queues_the_termination() -> None:
    """A CANCEL while the CCR-I is pending sends nothing until the CCA-I; then only CCR-T."""
    rig = make_rig()
    rig.client.hold = True
    rig.start()
    rig.advance_to(0.5)
    rig.engine.call_ended(CALL, "caller cancelled", sip_method="CANCEL")
    assert kinds(rig) == [1]
    rig.advance_to(3.0)
    rig.client.release(0)
    assert kinds(rig) == [1, 3]
    final = rig.requests()[-1]
    assert used(final) == 0 and ims(final, "Event-Type", "SIP-Method") == "CANCEL"
    assert rig.calls.events == []  # neither admitted nor rejected: the call is gone
    rig.client.release(0)
    rig.assert_idle()
    assert rig.ocs.reserved == {}


# -- credit exhaustion ---------------------------------------------------------------------


@pytest.mark.parametrize("final_style", ["fui", "4012"])
def test_credit_exhaustion_ends_the_call_exactly_at_the_balance(final_style: str) -> None:
    """45 s of credit: the call is ended at 45 s (FUI or 4012), 45 s billed, one kill."""
    rig = make_rig(ocs=TinyOcs({SUBSCRIBER: 45}, final_style=final_style), delay=0.0)
    ended_at: list[float] = []

    def on_end(call_id: str) -> None:
        ended_at.append(rig.clock.seconds())
        rig.engine.call_ended(call_id)  # the B2BUA sends BYE to both legs

    rig.calls.on_end = on_end
    rig.start()
    rig.clock.advance(0)
    rig.engine.call_answered(CALL)
    rig.advance_to(44.9)
    assert rig.calls.events == [("admit", CALL)]
    rig.advance_to(45.0)
    header = reason_header(402, "credit exhausted")
    assert rig.calls.events[-1] == ("end", CALL, "credit exhausted", header)
    assert ended_at == [45.0]
    final = rig.requests()[-1]
    assert final.get("CC-Request-Type") == 3
    assert final.get("Termination-Cause") == 2 and ims(final, "Cause-Code") == 0
    rig.clock.advance(0)
    assert rig.stats.billed_secs == 45
    assert rig.stats.killed_calls == 1
    assert rig.ocs.balances[SUBSCRIBER] == 0 and rig.ocs.reserved == {}
    rig.assert_idle()


@pytest.mark.parametrize("final_style", ["fui", "4012"])
def test_reference_worked_example_through_the_engine(final_style: str) -> None:
    """75 s, two calls, 30 s reservations, timer_buffer 0: call 2 ends at 65, 75 s billed."""
    rig = make_rig(
        ocs=TinyOcs({SUBSCRIBER: 75}, final_style=final_style), delay=0.0, timer_buffer=0
    )
    ended: list[tuple[str, float]] = []

    def on_end(call_id: str) -> None:
        ended.append((call_id, rig.clock.seconds()))
        rig.engine.call_ended(call_id)

    rig.calls.on_end = on_end
    rig.start("call-1")
    rig.clock.advance(0)
    rig.engine.call_answered("call-1")
    rig.advance_to(40.0)
    rig.start("call-2")
    rig.clock.advance(0)
    rig.engine.call_answered("call-2")
    assert rig.requests()[-1].get("CC-Request-Type") == 1
    assert rig.ocs.reserved[rig.requests()[-1].session_id or ""] == 15
    rig.advance_to(50.0)
    rig.engine.call_ended("call-1")
    rig.advance_to(70.0)
    assert ended == [("call-2", 65.0)]
    assert rig.stats.billed_secs == 75 and rig.stats.killed_calls == 1
    assert rig.ocs.balances[SUBSCRIBER] == 0 and rig.ocs.reserved == {}
    rig.assert_idle()


# -- several charging routes for one call -------------------------------------------------


def test_orig_and_term_sessions_admit_the_call_once_both_allow_it() -> None:
    """Two sessions for one call: one admit after both CCA-Is; hangup closes both."""
    rig = make_rig(ocs=TinyOcs({SUBSCRIBER: 100, "15550199": 100}))
    rig.client.hold = True
    first = rig.start()
    second = rig.engine.start_call(CALL, make_context(CALL, direction="term"))
    assert second is not None and second != first
    assert rig.engine.session_ids_of(CALL) == [first, second]
    assert ims(rig.requests()[1], "Role-Of-Node") == 1
    rig.client.release(0)
    assert rig.calls.events == []
    rig.client.release(0)
    assert rig.calls.events == [("admit", CALL)]
    rig.client.hold = False
    rig.engine.call_ended(CALL, sip_method="CANCEL")
    assert kinds(rig) == [1, 1, 3, 3]
    rig.advance_to(1.0)
    rig.assert_idle()


def test_one_refusal_rejects_the_call_and_closes_the_other_session() -> None:
    """When the second session is refused, the caller is rejected and the first closed."""
    rig = make_rig()
    rig.client.hold = True
    rig.start()
    rig.engine.start_call(CALL, make_context(CALL, direction="term"))
    rig.client.release(0)
    rig.client.release(0, answer_for(rig.client.held[0].request, 4010))
    assert [event[0] for event in rig.calls.events] == ["reject"]
    final = rig.requests()[-1]
    assert final.get("CC-Request-Type") == 3 and ims(final, "Cause-Code") == 402
    rig.client.release(0)
    rig.assert_idle()


def test_single_ro_session_per_dialog_keeps_one_session() -> None:
    """With single_ro_session_per_dialog a second charging route reuses the session."""
    rig = make_rig(single_ro_session_per_dialog=True)
    first = rig.start()
    assert rig.engine.start_call(CALL, make_context(CALL, direction="term")) == first
    assert kinds(rig) == [1] and rig.engine.active_sessions == 1
    rig.engine.call_ended(CALL, sip_method="CANCEL")
    rig.advance_to(1.0)
    assert rig.engine.start_call(CALL, make_context(CALL)) is not None  # a new call later
    rig.engine.call_ended(CALL, sip_method="CANCEL")
    rig.advance_to(2.0)
    rig.assert_idle()


# -- robustness ----------------------------------------------------------------------------


def test_events_for_unknown_calls_are_ignored() -> None:
    """call_answered and call_ended for calls without a session do nothing."""
    rig = make_rig()
    rig.engine.call_answered("nope")
    rig.engine.call_ended("nope")
    assert rig.requests() == [] and rig.calls.events == []


def test_call_side_errors_do_not_escape() -> None:
    """An exception raised by the call side is logged, and charging goes on."""
    rig = make_rig()

    def broken(call_id: str) -> None:
        raise RuntimeError("call side bug")

    rig.calls.admit = broken  # type: ignore[method-assign]
    rig.start()
    rig.advance_to(0.05)
    rig.engine.call_ended(CALL, sip_method="CANCEL")
    rig.advance_to(1.0)
    assert kinds(rig) == [1, 3]
    rig.assert_idle()


def test_client_raising_synchronously_counts_as_a_failure_to_send() -> None:
    """A send_request that raises is treated like a Deferred that failed: no peer."""
    rig = make_rig(failure_handling=Ccfh.CONTINUE)

    def raising(message: Message, *, destination_host: str | None = None) -> Any:
        raise NoPeerAvailable("none")

    rig.client.send_request = raising  # type: ignore[method-assign]
    rig.start()
    assert rig.calls.events == [("admit", CALL)]  # retried, failed again, CONTINUE
    rig.engine.call_ended(CALL, sip_method="CANCEL")
    rig.assert_idle()


def test_answer_with_a_wrong_request_number_counts_as_a_bad_answer() -> None:
    """A CCA whose CC-Request-Number does not match is not applied; the request fails over."""
    rig = make_rig()
    rig.client.hold = True
    rig.start()
    bogus = answer_for(rig.client.held[0].request, granted=30)
    bogus.avps = [a for a in bogus.avps if a.name != "CC-Request-Number"]
    bogus.append("CC-Request-Number", 9)
    rig.client.release(0, bogus)
    assert rig.calls.events == [] and rig.requests()[-1].is_retransmit
    rig.client.release(0)
    assert rig.calls.events == [("admit", CALL)]
    rig.client.hold = False
    rig.engine.call_ended(CALL, sip_method="CANCEL")
    rig.advance_to(1.0)
    rig.assert_idle()


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (RequestTimeout("t"), RequestFailure.TX_TIMEOUT),
        (NoPeerAvailable("n"), RequestFailure.NO_PEER),
        (PeerDown("p"), RequestFailure.PEER_DOWN),
        (ValueError("other"), RequestFailure.NO_PEER),
    ],
)
def test_failures_are_classified_by_class_name(error: Exception, kind: RequestFailure) -> None:
    """The Diameter service's exceptions are recognised by name, others mean 'no peer'."""
    assert classify_failure(error) is kind


def test_reason_header_quotes_its_text() -> None:
    """Quotes and backslashes in the Reason text are escaped (RFC 3261 quoted-string)."""
    assert reason_header(402, 'say "no"\\') == 'SIP;cause=402;text="say \\"no\\"\\\\"'


# -- persistence ----------------------------------------------------------------------------


def test_snapshot_of_two_sessions_restores_into_another_engine() -> None:
    """orig and term sessions of one call: snapshot, load into a fresh engine, same snapshot."""
    rig = make_rig(ocs=TinyOcs({SUBSCRIBER: 1000, "15550199": 1000}))
    rig.start()
    rig.engine.start_call(CALL, make_context(CALL, direction="term"))
    rig.advance_to(1.0)
    rig.engine.call_answered(CALL)
    data = rig.engine.snapshot_call(CALL)
    assert data is not None and len(data["sessions"]) == 2 and data["admitted"]
    other = make_rig()
    other.advance_to(5.0)
    other.engine.install_call(other.engine.load_call(data))
    assert other.engine.snapshot_call(CALL) == data
    assert other.engine.keeps(CALL) and other.engine.persistent_calls() == {CALL: CALL}
    with pytest.raises(ValueError):
        other.engine.load_call(data)  # already live


def test_unopened_session_has_no_snapshot_and_is_not_announced() -> None:
    """Before the CCA-I grant there is nothing to keep and listeners hear nothing."""
    rig = make_rig()
    heard: list[tuple[str, str]] = []
    rig.engine.add_listener(lambda call_id, key: heard.append((call_id, key)))
    rig.start()
    assert rig.engine.snapshot_call(CALL) is None and heard == []
    rig.advance_to(1.0)
    assert heard == [(CALL, CALL)] and rig.engine.snapshot_call(CALL) is not None


def test_a_failing_listener_is_logged_not_raised() -> None:
    """A listener that raises does not stop charging."""
    rig = make_rig()

    def broken(call_id: str, key: str) -> None:
        raise RuntimeError("store gone")

    rig.engine.add_listener(broken)
    rig.start()
    rig.advance_to(1.0)
    assert ("admit", CALL) in rig.calls.events
    assert rig.engine.snapshot_call(CALL) is not None


@pytest.mark.parametrize(
    "change",
    [
        {"message": "%%%"},
        {"message": "AAAA"},
        {"session_id": "someone-else"},
        {"attempts": "x"},
    ],
)
def test_bad_kept_ccr_t_raises_and_keeps_nothing(change: dict[str, Any]) -> None:
    """A kept CCR-T record that does not decode or names another session is refused."""
    rig = make_rig()
    rig.start()
    rig.advance_to(1.0)
    rig.client.failures.extend([NoPeerAvailable(), NoPeerAvailable()])
    rig.engine.call_ended(CALL)
    rig.advance_to(2.0)
    (kept,) = rig.engine.pending_terminations
    data = rig.engine.snapshot_termination(kept.session_id)
    assert data is not None
    other = make_rig()
    with pytest.raises((KeyError, TypeError, ValueError, DecodeError)):
        other.engine.restore_termination({**data, **change})
    assert other.engine.pending_terminations == [] and len(other.wheel) == 0
    other.engine.restore_termination(data)
    other.advance_to(1.0)
    assert [used(r) for r in other.requests()] == [0]
