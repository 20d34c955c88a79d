"""The bridge state machine, sans-IO: what each event makes b2bua send, on which leg."""

from __future__ import annotations

import gc
from dataclasses import replace

import pytest

from b2bua.call.bridge import (
    ALLOW,
    ALLOW_NO_MESSAGE,
    Action,
    Answered,
    Bridge,
    BridgeConfig,
    Call,
    CancelRequest,
    Ended,
    Finished,
    MediaChanged,
    Respond,
    SendAck,
    SendRequest,
    StartTimer,
    StateChanged,
    StopTimer,
    answer_out_of_dialog,
    screen_invite,
)
from b2bua.call.events import CallState, EndReason, Side
from b2bua.call.routing import DEFAULT_ROUTE
from b2bua.call.session_timer import TimerSettings
from b2bua.sip.message import Request, Response
from tests.call.fakes import (
    A_CONTACT,
    B_CONTACT,
    CALLEE,
    SBC,
    SDP_A,
    SDP_B,
    FakeServer,
    answer,
    callee_request,
    caller_invite,
)


class Run:
    """One bridge with everything it asked for recorded, driven in virtual time."""

    def __init__(self, invite: Request | None = None, config: BridgeConfig | None = None):
        self.invite = invite or caller_invite()
        self.server = FakeServer(self.invite)
        self.now = 0.0
        self.bridge = Bridge(
            self.invite,
            self.server,
            route=DEFAULT_ROUTE,
            source=SBC,
            b_hop=CALLEE,
            a_contact=A_CONTACT,
            b_contact=B_CONTACT,
            config=config or BridgeConfig(),
            now=0.0,
        )
        self.requests: dict[int, SendRequest] = {}
        self.acks: list[SendAck] = []
        self.cancels: list[CancelRequest] = []
        self.timers: dict[str, float] = {}
        self.events: list[Action] = []
        self.finished = False
        self.run(self.bridge.start(0.0))

    @property
    def call(self) -> Call:
        return self.bridge.call

    def state(self) -> CallState:
        return self.bridge.call.state

    def run(self, actions: list[Action]) -> list[Action]:
        assert not self.finished or not actions, actions
        for action in actions:
            if isinstance(action, Respond):
                action.server.respond(action.response)
            elif isinstance(action, SendRequest):
                self.requests[action.key] = action
            elif isinstance(action, SendAck):
                self.acks.append(action)
            elif isinstance(action, CancelRequest):
                self.cancels.append(action)
            elif isinstance(action, StartTimer):
                self.timers[action.name] = action.deadline
            elif isinstance(action, StopTimer):
                self.timers.pop(action.name, None)
            elif isinstance(action, Finished):
                self.finished = True
                self.timers.clear()
            else:
                self.events.append(action)
        return actions

    def sent(self, method: str, side: Side = Side.B) -> list[SendRequest]:
        return [s for s in self.requests.values() if s.side is side and s.request.method == method]

    def last(self, method: str, side: Side = Side.B) -> SendRequest:
        return self.sent(method, side)[-1]

    def reply(self, sent: SendRequest, status: int, **kwargs: object) -> Response:
        response = answer(sent.request, status, **kwargs)  # type: ignore[arg-type]
        self.run(self.bridge.on_response(sent.key, response, self.now))
        return response

    def fire(self, name: str, at: float | None = None) -> None:
        deadline = self.timers.pop(name)
        self.now = deadline if at is None else at
        self.run(self.bridge.on_timer(name, self.now))

    def from_a(self, method: str, cseq: int, **kwargs: object) -> FakeServer:
        request = caller_invite(
            method=method,
            cseq=cseq,
            to_tag=self.bridge.a.local_tag,
            body=kwargs.pop("body", b""),  # type: ignore[arg-type]
            **kwargs,  # type: ignore[arg-type]
        )
        server = FakeServer(request)
        self.run(self.bridge.on_request(Side.A, request, server, self.now))
        return server

    def from_b(self, method: str, cseq: int, body: bytes = b"") -> FakeServer:
        ref = self.last("INVITE").request
        dialog_ref = answer(ref, 200)  # carries the B tag as To tag
        request = callee_request(_as_request(ref, dialog_ref), method, cseq, body=body)
        server = FakeServer(request)
        self.run(self.bridge.on_request(Side.B, request, server, self.now))
        return server

    def ack_from_a(self, cseq: int = 1, body: bytes = b"") -> None:
        ack = caller_invite(method="ACK", cseq=cseq, to_tag=self.bridge.a.local_tag, body=body)
        self.run(self.bridge.on_ack(Side.A, ack, self.now))

    def connect(self) -> None:
        """Admit, ring, answer and ACK: the call is up."""
        self.run(self.bridge.admit(self.now))
        invite = self.last("INVITE")
        self.reply(invite, 180)
        self.reply(invite, 200, body=SDP_B)
        self.ack_from_a()


def _as_request(ref: Request, response: Response) -> Request:
    """``ref`` with the To tag of ``response`` (so callee_request can swap the tags)."""
    copy = ref.copy()
    copy.headers.set("To", response.headers.get("To"))
    return copy


# ------------------------------------------------------------------ basic call


def test_b_leg_invite_shares_nothing_identifying_with_the_a_leg() -> None:
    """New Call-ID, From tag, CSeq, Contact; no Via/Record-Route; policy headers and body."""
    run = Run()
    assert run.state() is CallState.ADMITTING and "admit" in run.timers
    run.run(run.bridge.admit(0.0))
    (sent,) = run.sent("INVITE")
    invite = sent.request
    assert sent.hop == CALLEE
    assert invite.uri == run.invite.uri
    assert invite.call_id != run.invite.call_id
    assert invite.from_tag not in (None, "a-tag")
    assert invite.to_tag is None
    assert str(invite.cseq) == "1 INVITE"
    assert invite.max_forwards == 69
    assert invite.headers.get("Contact") == "<sip:b2bua@10.0.0.5:5060>"
    for name in ("Via", "Record-Route", "Route", "User-Agent", "X-Secret"):
        assert name not in invite.headers, name
    assert invite.headers.get("P-Asserted-Identity") == "<sip:+4930999@example.com>"
    assert invite.body == SDP_A and invite.media_type == "application/sdp"
    assert invite.headers.get("Supported") == "timer"
    assert invite.headers.get("Session-Expires") == "1800"
    assert invite.headers.get("Min-SE") == "90"
    assert invite.headers.get_fields("Allow") == [ALLOW]
    assert run.state() is CallState.CALLING
    assert "admit" not in run.timers


def test_provisionals_are_relayed_with_our_tag_and_contact_but_100_is_not() -> None:
    """180/183 reach the caller from b2bua's early dialog; 100 Trying is hop by hop."""
    run = Run()
    run.run(run.bridge.admit(0.0))
    invite = run.last("INVITE")
    run.reply(invite, 100, tag=None)
    assert run.server.responses == []
    run.reply(invite, 183, body=SDP_B)
    ringing = run.server.last
    assert ringing.status == 183 and ringing.body == SDP_B
    assert ringing.to_tag == run.bridge.a.local_tag != "b-tag"
    assert ringing.headers.get("Contact") == "<sip:b2bua@10.0.0.5:5060>"
    assert ringing.call_id == run.invite.call_id
    assert ringing.headers.get_all("Record-Route") == ["<sip:10.0.0.1;lr>"]
    assert run.state() is CallState.EARLY


def test_answer_is_relayed_retransmitted_until_ack_and_ack_goes_end_to_end() -> None:
    """The 2xx reaches A with our session timer; ACK from A makes the ACK to B."""
    run = Run(config=BridgeConfig(max_call_duration=3600))
    run.run(run.bridge.admit(0.0))
    invite = run.last("INVITE")
    run.now = 2.0
    run.reply(invite, 200, body=SDP_B, extra=(("P-Charging-Vector", "icid-value=1"),))
    ok = run.server.last
    assert ok.status == 200 and ok.body == SDP_B
    assert ok.headers.get("Session-Expires") == "1800;refresher=uas"
    assert ok.headers.get("P-Charging-Vector") == "icid-value=1"
    assert "Require" not in ok.headers  # the factory caller does not support timer
    assert Answered() in run.events
    assert run.call.answered_at == 2.0 and run.state() is CallState.ANSWERED
    assert run.timers["2xx:A"] == 2.5 and run.timers["maxdur"] == 3602.0
    assert run.acks == []  # the callee's ACK waits for the caller's
    run.fire("2xx:A")
    run.fire("2xx:A")
    assert run.server.statuses == [200, 200, 200]
    assert run.timers["2xx:A"] == 2.5 + 1.0 + 2.0
    run.ack_from_a()
    (ack,) = run.acks
    assert str(ack.ack.cseq) == "1 ACK"
    assert ack.ack.call_id == invite.request.call_id and ack.ack.to_tag == "b-tag"
    assert ack.ack.uri == "sip:bob@10.0.0.9:5060" and ack.hop == CALLEE
    assert "2xx:A" not in run.timers
    assert run.state() is CallState.CONFIRMED
    run.ack_from_a()  # a retransmitted ACK changes nothing
    assert len(run.acks) == 1


def test_caller_bye_ends_both_legs() -> None:
    """BYE from A: 200 at once, BYE to B; the call is finished when B answers it."""
    run = Run()
    run.connect()
    run.now = 65.0
    bye_server = run.from_a("BYE", 2, extra=('Reason: Q.850;cause=16;text="Normal"',))
    assert bye_server.statuses == [200]
    bye = run.last("BYE")
    assert bye.request.call_id == run.last("INVITE").request.call_id
    assert bye.request.headers.get("Reason") == 'Q.850;cause=16;text="Normal"'
    assert run.call.end_reason is EndReason.CALLER_HANGUP
    assert run.call.duration == 65.0
    assert Ended() in run.events and not run.finished
    run.reply(bye, 200)
    assert run.finished and run.state() is CallState.ENDED
    assert run.timers == {}


def test_callee_bye_ends_both_legs() -> None:
    """BYE from B: 200, then BYE to the caller inside the A dialog."""
    run = Run()
    run.connect()
    server = run.from_b("BYE", 1)
    assert server.statuses == [200]
    bye = run.last("BYE", Side.A)
    assert bye.request.call_id == run.invite.call_id
    assert bye.request.from_tag == run.bridge.a.local_tag
    assert bye.request.to_tag == "a-tag"
    assert bye.request.headers.get_all("Route") == ["<sip:10.0.0.1;lr>"]
    assert bye.hop == SBC
    assert run.call.end_reason is EndReason.CALLEE_HANGUP
    run.reply(bye, 200)
    assert run.finished


def test_bye_timeout_still_finishes_the_call() -> None:
    """A BYE that never gets an answer does not keep the call."""
    run = Run()
    run.connect()
    run.from_a("BYE", 2)
    bye = run.last("BYE")
    run.run(run.bridge.on_timeout(bye.key, 40.0))
    assert run.finished


# ------------------------------------------------------------ failures, CANCEL


def test_busy_callee_is_relayed_and_ends_the_call() -> None:
    """486 from B reaches A (with our tag); the call ends rejected with 486."""
    run = Run()
    run.run(run.bridge.admit(0.0))
    run.reply(run.last("INVITE"), 486, extra=(("Retry-After", "60"), ("X-Secret", "no")))
    final = run.server.last
    assert final.status == 486 and final.to_tag == run.bridge.a.local_tag
    assert final.headers.get("Retry-After") == "60" and "X-Secret" not in final.headers
    assert run.call.end_reason is EndReason.REJECTED and run.call.end_status == 486
    assert run.finished


def test_redirect_contacts_are_relayed() -> None:
    """A 302 keeps its Contact targets (where the caller should go)."""
    run = Run()
    run.run(run.bridge.admit(0.0))
    run.reply(run.last("INVITE"), 302, contact="<sip:elsewhere@example.net>")
    assert run.server.last.headers.get_all("Contact") == ["<sip:elsewhere@example.net>"]


def test_cancel_cancels_the_b_leg_and_answers_487() -> None:
    """CANCEL from A: 487 to A, CANCEL to B (with the caller's Reason); done on B's 487."""
    run = Run()
    run.run(run.bridge.admit(0.0))
    invite = run.last("INVITE")
    run.reply(invite, 180)
    cancel = caller_invite(method="CANCEL", extra=("Reason: SIP;cause=200",))
    run.run(run.bridge.on_cancel(run.server, cancel, 1.0))
    assert run.server.statuses == [180, 487]
    assert run.cancels == [CancelRequest(invite.key, "SIP;cause=200")]
    assert run.call.end_reason is EndReason.CANCELLED and not run.finished
    run.reply(invite, 487)
    assert run.finished
    assert run.server.statuses == [180, 487]


def test_a_2xx_crossing_the_cancel_is_acked_and_byed() -> None:
    """B answers 200 while the CANCEL is in flight: ACK, then BYE the B-leg."""
    run = Run()
    run.run(run.bridge.admit(0.0))
    invite = run.last("INVITE")
    run.reply(invite, 180)
    run.run(run.bridge.on_cancel(run.server, caller_invite(method="CANCEL"), 1.0))
    run.reply(invite, 200, body=SDP_B)
    assert [str(a.ack.cseq) for a in run.acks] == ["1 ACK"]
    bye = run.last("BYE")
    assert run.server.statuses == [180, 487]
    assert Answered() not in run.events
    run.reply(bye, 200)
    assert run.finished


def test_cancel_before_admission_answers_487_and_sends_nothing() -> None:
    """A call held for charging and cancelled never reaches the callee."""
    run = Run()
    run.run(run.bridge.on_cancel(run.server, caller_invite(method="CANCEL"), 1.0))
    assert run.server.statuses == [487]
    assert run.requests == {} and run.finished
    run.run(run.bridge.admit(2.0))
    assert run.requests == {}


def test_callee_timeout_gives_408_and_transport_failure_503() -> None:
    """No answer at all from B (timer B) and a transport failure are answered for B."""
    run = Run()
    run.run(run.bridge.admit(0.0))
    run.run(run.bridge.on_timeout(run.last("INVITE").key, 32.0))
    assert run.server.statuses == [408] and run.finished
    assert run.call.end_reason is EndReason.ERROR and run.call.end_status == 408
    other = Run()
    other.run(other.bridge.admit(0.0))
    other.run(other.bridge.on_transport_error(other.last("INVITE").key, 0.1))
    assert other.server.statuses == [503] and other.finished


def test_forked_answers_take_the_first_and_bye_the_others() -> None:
    """A second 2xx from another fork is ACKed and BYEd; the caller sees one answer."""
    run = Run()
    run.run(run.bridge.admit(0.0))
    invite = run.last("INVITE")
    run.reply(invite, 180, tag="fork1")
    run.reply(invite, 183, tag="fork2", body=SDP_B)
    assert set(run.bridge.b.forks) == {"fork1", "fork2"}
    run.reply(invite, 200, tag="fork2", body=SDP_B)
    run.reply(invite, 200, tag="fork1", body=SDP_B)
    assert [a.ack.to_tag for a in run.acks] == ["fork1"]
    (bye,) = run.sent("BYE")
    assert bye.request.to_tag == "fork1"
    assert run.server.statuses == [180, 183, 200]
    assert run.bridge.b.dialog is not None and run.bridge.b.dialog.remote_tag == "fork2"
    run.reply(bye, 200)
    assert not run.finished


def test_retransmitted_2xx_gets_the_same_ack_again() -> None:
    """After the end-to-end ACK, a repeated 2xx from B is ACKed again by b2bua."""
    run = Run()
    run.connect()
    invite = run.last("INVITE")
    run.reply(invite, 200, body=SDP_B)
    assert len(run.acks) == 2 and run.acks[0].ack is run.acks[1].ack
    response = answer(invite.request, 200, body=SDP_B)
    run.run(run.bridge.on_stray_response(Side.B, response, 40.0))
    assert len(run.acks) == 3


def test_missing_ack_ends_the_call_after_64_t1() -> None:
    """The 2xx to A is retransmitted T1, 2T1, 4T1.. capped at T2, then both legs get BYE."""
    run = Run()
    run.run(run.bridge.admit(0.0))
    run.reply(run.last("INVITE"), 200, body=SDP_B)
    fired = []
    while run.call.end_reason is None:
        fired.append(run.timers["2xx:A"])
        run.fire("2xx:A")
    assert fired[:5] == [0.5, 1.5, 3.5, 7.5, 11.5]
    assert run.call.end_reason is EndReason.ACK_TIMEOUT
    assert run.sent("BYE", Side.A) and run.sent("BYE", Side.B)
    assert [str(a.ack.cseq) for a in run.acks] == ["1 ACK"]  # B's 2xx was ACKed first


def test_late_offer_answer_in_ack_crosses() -> None:
    """INVITE without SDP: the offer comes in B's 2xx, A's answer in its ACK goes to B."""
    run = Run(invite=caller_invite(body=None))
    run.run(run.bridge.admit(0.0))
    assert run.last("INVITE").request.body == b""
    run.reply(run.last("INVITE"), 200, body=SDP_B)
    run.ack_from_a(body=SDP_A)
    (ack,) = run.acks
    assert ack.ack.body == SDP_A and ack.ack.media_type == "application/sdp"


def test_reliable_provisional_is_pracked_here_and_its_answer_repeated_in_the_2xx() -> None:
    """A caller without 100rel: b2bua PRACKs B; A gets the 183 unreliably, the SDP in the 200."""
    run = Run()
    run.run(run.bridge.admit(0.0))
    invite = run.last("INVITE")
    run.reply(invite, 183, body=SDP_B, extra=(("Require", "100rel"), ("RSeq", "5")))
    prack = run.last("PRACK")
    assert prack.request.headers.get("RAck") == "5 1 INVITE"
    assert prack.request.to_tag == "b-tag"
    relayed = run.server.last
    assert "Require" not in relayed.headers and "RSeq" not in relayed.headers
    run.reply(prack, 200)
    run.reply(invite, 200)
    assert run.server.last.status == 200 and run.server.last.body == SDP_B


def test_reliable_provisionals_are_relayed_end_to_end() -> None:
    """RFC 3262 both ways: RSeq of our own to A, A's PRACK relayed to B with B's RAck."""
    run = Run(invite=caller_invite(extra=("Supported: 100rel, timer",)))
    run.run(run.bridge.admit(0.0))
    invite = run.last("INVITE")
    assert invite.request.headers.get_fields("Supported") == ["timer, 100rel"]
    assert "Require" not in invite.request.headers
    run.reply(invite, 183, body=SDP_B, extra=(("Require", "100rel"), ("RSeq", "7")))
    run.reply(invite, 180, extra=(("Require", "100rel"), ("RSeq", "8")))
    assert run.sent("PRACK") == []  # the caller PRACKs, not b2bua
    first = run.server.last
    assert first.status == 183 and first.headers.get("Require") == "100rel"
    rseq = int(first.headers.get("RSeq") or "0")
    assert len(run.server.responses) == 1  # the 180 waits for the 183's PRACK
    run.fire("rel1xx")
    run.fire("rel1xx")
    assert run.server.statuses == [183, 183, 183]
    prack = run.from_a("PRACK", 2, extra=(f"RAck: {rseq} 1 INVITE",))
    relayed = run.last("PRACK")
    assert relayed.request.headers.get("RAck") == "7 1 INVITE"
    assert relayed.request.to_tag == "b-tag"
    assert "rel1xx" in run.timers and run.server.last.status == 180
    assert run.server.last.headers.get("RSeq") == str(rseq + 1)
    run.reply(relayed, 200)
    assert prack.statuses == [200] and str(prack.last.cseq) == "2 PRACK"
    late = run.from_a("PRACK", 3, extra=(f"RAck: {rseq} 1 INVITE",))
    assert late.statuses == [200]
    bogus = run.from_a("PRACK", 4, extra=(f"RAck: {rseq + 5} 1 INVITE",))
    assert bogus.statuses == [481]
    run.reply(invite, 200, body=SDP_B)
    assert "rel1xx" not in run.timers and run.server.last.status == 200


def test_caller_requiring_100rel_gets_every_provisional_reliably() -> None:
    """Require: 100rel from A: B is required too; an unPRACKed 1xx ends the call (500)."""
    run = Run(invite=caller_invite(extra=("Require: 100rel",)))
    run.run(run.bridge.admit(0.0))
    invite = run.last("INVITE")
    assert invite.request.headers.get("Require") == "100rel"
    run.reply(invite, 180)
    assert run.server.last.headers.get("Require") == "100rel"
    while "rel1xx" in run.timers:
        run.fire("rel1xx")
    assert run.server.last.status == 500
    assert run.cancels and run.call.end_reason is EndReason.ERROR


# ------------------------------------------------------------ in-dialog requests


def test_reinvite_from_a_is_relayed_with_b_cseq_and_answered_with_a_cseq() -> None:
    """Hold: re-INVITE relayed with B's CSeq space; 200 back with A's; ACK crosses."""
    run = Run()
    run.connect()
    hold = SDP_A.replace(b"o=alice 1 1", b"o=alice 1 2") + b"a=sendonly\r\n"
    server = run.from_a("INVITE", 2, body=hold)
    relayed = run.last("INVITE")
    assert str(relayed.request.cseq) == "2 INVITE"
    assert relayed.request.to_tag == "b-tag"
    assert relayed.request.headers.get("Session-Expires") == "1800;refresher=uac"
    assert relayed.request.body == hold
    assert relayed.request.max_forwards == 69
    run.reply(relayed, 200, body=SDP_B)
    ok = server.last
    assert ok.status == 200 and str(ok.cseq) == "2 INVITE" and ok.body == SDP_B
    assert ok.headers.get("Contact") == "<sip:b2bua@10.0.0.5:5060>"
    assert MediaChanged(Side.A, hold) in run.events
    run.ack_from_a(cseq=2)
    assert str(run.acks[-1].ack.cseq) == "2 ACK"


def test_reinvite_from_b_is_relayed_to_a() -> None:
    """The callee's re-INVITE goes to the caller inside the A dialog, and back."""
    run = Run()
    run.connect()
    server = run.from_b("INVITE", 10, body=SDP_B)
    relayed = run.last("INVITE", Side.A)
    assert relayed.request.call_id == run.invite.call_id
    assert relayed.request.to_tag == "a-tag"
    assert relayed.request.uri == "sip:alice@10.0.0.1:5060"
    run.reply(relayed, 200, tag=None, body=SDP_A)
    assert server.last.status == 200 and str(server.last.cseq) == "10 INVITE"
    assert "2xx:B" in run.timers
    ack = callee_request(
        _as_request(run.last("INVITE").request, answer(run.last("INVITE").request, 200)),
        "ACK",
        10,
    )
    run.run(run.bridge.on_ack(Side.B, ack, run.now))
    assert run.acks[-1].side is Side.A and "2xx:B" not in run.timers


def test_update_in_the_early_dialog_goes_to_the_ringing_fork() -> None:
    """RFC 3311 before the answer: A's UPDATE reaches the fork that rang last."""
    run = Run()
    run.run(run.bridge.admit(0.0))
    invite = run.last("INVITE")
    run.reply(invite, 183, tag="fork9", body=SDP_B)
    server = run.from_a("UPDATE", 2, body=SDP_A)
    update = run.last("UPDATE")
    assert update.request.to_tag == "fork9" and update.request.body == SDP_A
    run.reply(update, 200, tag="fork9", body=SDP_B)
    assert server.statuses == [200]
    assert not any(name.startswith("st:") for name in run.timers)
    assert run.state() is CallState.EARLY


def test_glare_gets_491() -> None:
    """A second re-INVITE while one is in progress is refused with 491."""
    run = Run()
    run.connect()
    run.from_a("INVITE", 2, body=SDP_A)
    assert run.from_b("INVITE", 5, body=SDP_B).statuses == [491]


def test_info_is_relayed_with_cseq_mapping() -> None:
    """INFO crosses with the far leg's CSeq and its answer comes back."""
    run = Run()
    run.connect()
    server = run.from_a("INFO", 3, extra=("Info-Package: dtmf",))
    relayed = run.last("INFO")
    assert str(relayed.request.cseq) == "2 INFO"
    assert relayed.request.headers.get("Info-Package") == "dtmf"
    run.reply(relayed, 200)
    assert server.statuses == [200] and str(server.last.cseq) == "3 INFO"


def test_unknown_dialog_and_old_cseq_and_prack() -> None:
    """Wrong remote tag: 481; lower CSeq: 500; PRACK (we send no reliable 1xx): 481."""
    run = Run()
    run.connect()
    request = caller_invite(method="INFO", cseq=5, to_tag=run.bridge.a.local_tag, from_tag="x")
    server = FakeServer(request)
    run.run(run.bridge.on_request(Side.A, request, server, 1.0))
    assert server.statuses == [481]
    assert run.from_a("INFO", 0).statuses == [500]
    assert run.from_a("PRACK", 7).statuses == [481]


def test_relayed_request_answered_481_ends_the_call() -> None:
    """§12.2.1.2: the far end lost the dialog: relay the 481 and tear the call down."""
    run = Run()
    run.connect()
    server = run.from_a("INFO", 3)
    run.reply(run.last("INFO"), 481)
    assert server.statuses == [481]
    assert run.call.end_reason is EndReason.ERROR
    assert run.sent("BYE", Side.A) and run.sent("BYE", Side.B)


def test_cancel_of_a_relayed_reinvite() -> None:
    """CANCEL of a re-INVITE: 487 to its sender, CANCEL toward the far end."""
    run = Run()
    run.connect()
    server = run.from_a("INVITE", 2, body=SDP_A)
    relayed = run.last("INVITE")
    run.run(run.bridge.on_cancel(server, caller_invite(method="CANCEL", cseq=2), 1.0))
    assert server.statuses == [487]
    assert run.cancels[-1].key == relayed.key
    run.reply(relayed, 200, body=SDP_B)  # crossed the CANCEL: ACKed here
    assert str(run.acks[-1].ack.cseq) == "2 ACK"
    assert run.state() is CallState.CONFIRMED


# ----------------------------------------------------------------- ending


def test_end_from_outside_sends_bye_with_reason_to_both_legs() -> None:
    """call.end(...) by charging: BYE to both legs carrying the given Reason."""
    run = Run()
    run.connect()
    header = 'SIP;cause=402;text="Credit exhausted"'
    run.run(run.bridge.end(EndReason.CREDIT_EXHAUSTED, 30.0, reason_header=header))
    for side in (Side.A, Side.B):
        assert run.last("BYE", side).request.headers.get("Reason") == header
    assert run.call.end_reason is EndReason.CREDIT_EXHAUSTED
    run.run(run.bridge.end(EndReason.OPERATOR_KILL, 31.0))
    assert run.call.end_reason is EndReason.CREDIT_EXHAUSTED  # the first reason stays


def test_end_before_answer_cancels_and_answers_the_caller() -> None:
    """Ending a ringing call: the caller gets a final answer, the callee a CANCEL."""
    run = Run()
    run.run(run.bridge.admit(0.0))
    run.reply(run.last("INVITE"), 180)
    run.run(run.bridge.end(EndReason.SHUTDOWN, 5.0))
    assert run.server.last.status == 503
    assert run.server.last.headers.get("Reason") == 'SIP;text="shutdown"'
    assert len(run.cancels) == 1


def test_end_while_waiting_for_the_ack_byes_the_caller_after_it() -> None:
    """§15: the BYE to the caller waits for its ACK of our 2xx."""
    run = Run()
    run.run(run.bridge.admit(0.0))
    run.reply(run.last("INVITE"), 200, body=SDP_B)
    run.run(run.bridge.end(EndReason.OPERATOR_KILL, 0.2))
    assert run.sent("BYE", Side.A) == [] and run.sent("BYE", Side.B)
    run.ack_from_a()
    assert run.sent("BYE", Side.A)


def test_reject_during_admission() -> None:
    """reject(): the held caller gets the status and Reason, the callee nothing."""
    run = Run()
    run.run(run.bridge.reject(402, 1.0, "Payment Required", 'SIP;cause=402;text="No credit"'))
    assert run.server.last.status == 402
    assert run.server.last.headers.get("Reason") == 'SIP;cause=402;text="No credit"'
    assert run.requests == {} and run.finished
    assert run.call.end_reason is EndReason.REJECTED and run.call.end_status == 402


def test_admission_timeout_gives_500() -> None:
    """Nobody admitted the held call in time."""
    run = Run(config=BridgeConfig(admission_timeout=5.0))
    run.fire("admit")
    assert run.server.statuses == [500] and run.finished


def test_no_answer_timeout_cancels() -> None:
    """A callee that rings too long: 480 to A, CANCEL to B."""
    run = Run(config=BridgeConfig(no_answer_timeout=60.0))
    run.run(run.bridge.admit(0.0))
    run.reply(run.last("INVITE"), 180)
    run.fire("noanswer")
    assert run.server.last.status == 480 and run.cancels
    assert run.call.end_reason is EndReason.NO_ANSWER


def test_max_call_duration() -> None:
    """An answered call is ended when max_call_duration has passed."""
    run = Run(config=BridgeConfig(max_call_duration=100.0))
    run.connect()
    run.fire("maxdur")
    assert run.call.end_reason is EndReason.MAX_DURATION
    assert run.last("BYE", Side.A).request.headers.get("Reason") == 'SIP;text="max call duration"'


# ----------------------------------------------------------- session timers


def short_timers(**kwargs: object) -> BridgeConfig:
    return BridgeConfig(timers=TimerSettings(session_expires=90, min_se=90), **kwargs)  # type: ignore[arg-type]


def test_session_expiry_when_the_refresher_caller_vanishes() -> None:
    """A refreshes (refresher=uac); nothing comes: at 90-30 s both legs get BYE."""
    invite = caller_invite(extra=("Supported: timer", "Session-Expires: 90;refresher=uac"))
    run = Run(invite=invite, config=short_timers())
    run.connect()
    assert run.server.responses[-1].headers.get("Session-Expires") == "90;refresher=uac"
    assert run.server.responses[-1].headers.get("Require") == "timer"
    assert run.timers["st:A"] == 60.0
    run.fire("st:A")
    assert run.call.end_reason is EndReason.SESSION_TIMER
    assert run.sent("BYE", Side.A) and run.sent("BYE", Side.B)


def test_refresh_by_reinvite_when_b_runs_no_timer() -> None:
    """No Session-Expires in B's 2xx: b2bua refreshes B at half the interval."""
    run = Run(config=short_timers())
    run.connect()
    assert run.timers["st:B"] == 45.0
    run.fire("st:B")
    refresh = run.last("INVITE")
    assert str(refresh.request.cseq) == "2 INVITE"
    assert refresh.request.body == SDP_A  # the last offer sent to B, unchanged
    assert refresh.request.headers.get("Session-Expires") == "90;refresher=uac"
    run.reply(refresh, 200, body=SDP_B)
    assert str(run.acks[-1].ack.cseq) == "2 ACK"
    assert run.timers["st:B"] == 45.0 + 45.0
    assert run.server.statuses[-1] == 200 and len(run.server.responses) == 2  # A saw nothing


def test_refresh_by_update_when_allowed_and_failure_ends_the_call() -> None:
    """Allow: UPDATE in B's 2xx: refresh with UPDATE; a 408 to it ends the call."""
    run = Run(config=short_timers())
    run.run(run.bridge.admit(0.0))
    run.reply(run.last("INVITE"), 200, body=SDP_B, extra=(("Allow", "INVITE, ACK, UPDATE, BYE"),))
    run.ack_from_a()
    run.fire("st:B")
    update = run.last("UPDATE")
    assert update.request.body == b""
    run.reply(update, 408)
    assert run.call.end_reason is EndReason.SESSION_TIMER


def test_422_from_callee_is_retried_with_its_min_se() -> None:
    """RFC 4028 §7.4: the INVITE is sent again with Session-Expires >= the 422's Min-SE."""
    run = Run()
    run.run(run.bridge.admit(0.0))
    first = run.last("INVITE")
    run.reply(first, 422, extra=(("Min-SE", "3600"),))
    second = run.last("INVITE")
    assert second.key != first.key
    assert str(second.request.cseq) == "2 INVITE"
    assert second.request.call_id == first.request.call_id
    assert second.request.headers.get("Session-Expires") == "3600"
    assert second.request.headers.get("Min-SE") == "3600"
    assert run.server.responses == []


# ------------------------------------------------------------ stateless answers


@pytest.mark.parametrize(
    ("extra", "max_forwards", "status"),
    [
        (("Require: precondition",), 70, 420),
        ((), 0, 483),
        (("Session-Expires: 30",), 70, 422),
    ],
)
def test_screen_invite_refusals(extra: tuple[str, ...], max_forwards: int, status: int) -> None:
    """420 (with Unsupported), 483 and 422 (with Min-SE) before any state."""
    invite = caller_invite(extra=extra, max_forwards=max_forwards)
    response = screen_invite(invite, BridgeConfig())
    assert response is not None and response.status == status
    assert response.to_tag
    if status == 420:
        assert response.headers.get("Unsupported") == "precondition"
    if status == 422:
        assert response.headers.get("Min-SE") == "90"


def test_screen_invite_needs_a_contact_and_passes_good_invites() -> None:
    """No Contact: 400; a normal INVITE passes."""
    invite = caller_invite()
    assert screen_invite(invite, BridgeConfig()) is None
    invite.headers.remove("Contact")
    response = screen_invite(invite, BridgeConfig())
    assert response is not None and response.status == 400


def test_require_timer_is_refused_when_timers_are_off() -> None:
    """session_expires = 0 turns timers off: Require: timer is then unsupported."""
    config = replace(BridgeConfig(), timers=TimerSettings(session_expires=0))
    response = screen_invite(caller_invite(extra=("Require: timer",)), config)
    assert response is not None and response.status == 420


def test_options_and_other_methods_out_of_dialog() -> None:
    """OPTIONS gets 200 with Allow/Accept/Supported; MESSAGE and others get 405; Allow
    names MESSAGE only where a route relays it (event charging), as a dialog's Allow does."""
    ok = answer_out_of_dialog(caller_invite(method="OPTIONS", body=None), BridgeConfig())
    assert ok.status == 200 and ok.headers.get_fields("Allow") == [ALLOW_NO_MESSAGE]
    assert ok.headers.get("Accept") == "application/sdp"
    assert ok.headers.get_fields("Supported") == ["100rel, timer"]
    refused = answer_out_of_dialog(caller_invite(method="MESSAGE", body=None), BridgeConfig())
    assert refused.status == 405 and refused.headers.get_fields("Allow") == [ALLOW_NO_MESSAGE]
    assert "MESSAGE" not in ALLOW_NO_MESSAGE and ALLOW.endswith(", MESSAGE")
    relayed = answer_out_of_dialog(
        caller_invite(method="OPTIONS", body=None), BridgeConfig(), message=True
    )
    assert relayed.headers.get_fields("Allow") == [ALLOW]


# ------------------------------------------------------------------ persistence


def restored(run: Run, config: BridgeConfig | None = None, margin: int = 0) -> Run:
    """A second Run whose bridge is ``run``'s rebuilt from its snapshot."""
    import json

    data = json.loads(json.dumps(run.bridge.snapshot()))
    again = Run(config=config)
    again.bridge = Bridge.restore(
        data,
        route=DEFAULT_ROUTE,
        a_contact=A_CONTACT,
        b_contact=B_CONTACT,
        config=config or BridgeConfig(),
        cseq_margin=margin,
    )
    again.server = FakeServer(again.bridge.call.invite)
    again.timers.clear()
    again.now = run.now
    again.run(again.bridge.resume(run.now))
    return again


def test_state_changes_once_when_the_call_is_confirmed() -> None:
    """The caller's ACK confirms the call: one StateChanged; before it, not restorable."""
    run = Run()
    run.run(run.bridge.admit(0.0))
    run.reply(run.last("INVITE"), 200, body=SDP_B)
    assert not run.bridge.restorable and StateChanged() not in run.events
    run.ack_from_a()
    assert run.bridge.restorable and run.events.count(StateChanged()) == 1


def test_state_changes_on_target_refresh_and_session_refresh() -> None:
    """A relayed re-INVITE's 2xx and our own refresh's 2xx each emit StateChanged."""
    run = Run(config=short_timers())
    run.connect()
    count = run.events.count(StateChanged())
    run.from_a("INVITE", 2, body=SDP_A)
    run.reply(run.last("INVITE"), 200, body=SDP_B, contact="<sip:bob@10.0.0.77:5060>")
    assert run.events.count(StateChanged()) == count + 1
    assert str(run.bridge.b.dialog.remote_target) == "sip:bob@10.0.0.77:5060"
    run.ack_from_a(cseq=2)
    run.fire("st:B")
    run.reply(run.last("INVITE"), 200, body=SDP_B)
    assert run.events.count(StateChanged()) == count + 2


def test_restored_bridge_snapshots_the_same_and_relays_bye() -> None:
    """Bridge.restore(snapshot) gives the same snapshot, and a BYE from A reaches B."""
    run = Run()
    run.connect()
    run.now = 12.0
    again = restored(run)
    assert again.bridge.snapshot() == run.bridge.snapshot()
    assert again.state() is CallState.CONFIRMED and again.call.answered_at == 0.0
    assert again.call.answer_sdp == SDP_B and again.call.invite.body == SDP_A
    again.from_a("BYE", 2)
    bye = again.last("BYE")
    assert bye.request.to_tag == "b-tag" and bye.hop == CALLEE
    assert again.call.end_reason is EndReason.CALLER_HANGUP


def test_restored_bridge_rearms_session_timers_and_max_duration() -> None:
    """resume() starts st:A/st:B from their last refresh and maxdur from the answer."""
    run = Run(config=short_timers(max_call_duration=600.0))
    run.connect()
    run.now = 30.0
    again = restored(run, short_timers(max_call_duration=600.0))
    assert again.timers == {"st:A": 45.0, "st:B": 45.0, "maxdur": 600.0}
    assert {name: run.timers[name] for name in again.timers} == again.timers


def test_restored_bridge_cseq_margin_and_a_bad_snapshot() -> None:
    """The margin raises both legs' CSeqs; a snapshot without dialogs is refused."""
    run = Run()
    run.connect()
    again = restored(run, margin=500)
    again.from_a("BYE", 2)
    assert again.last("BYE").request.cseq.seq == 1 + 500 + 1  # B's INVITE was CSeq 1
    data = run.bridge.snapshot()
    data["b"]["dialog"] = None
    with pytest.raises(ValueError):
        Bridge.restore(
            data, route=DEFAULT_ROUTE, a_contact=A_CONTACT, b_contact=B_CONTACT,
            config=BridgeConfig(),
        )  # fmt: skip


def test_restore_keeps_the_timer_of_a_call_below_a_raised_min_se() -> None:
    """A Min-SE raised since the call began does not refuse the restored call's INVITE."""
    invite = caller_invite(extra=("Supported: timer", "Session-Expires: 90;refresher=uac"))
    run = Run(invite=invite, config=short_timers())
    run.connect()
    stricter = BridgeConfig(timers=TimerSettings(session_expires=1800, min_se=600))
    again = restored(run, stricter)
    assert again.bridge.a.timer == run.bridge.a.timer
    assert again.bridge.config is stricter


def _reachable(root: object, target: object) -> bool:
    """Whether ``target`` is reachable from ``root`` through references (gc referents)."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        obj = stack.pop()
        if obj is target:
            return True
        if id(obj) in seen or isinstance(obj, type):
            continue
        seen.add(id(obj))
        stack.extend(gc.get_referents(obj))
    return False


def test_a_confirmed_call_lets_go_of_the_setup_messages() -> None:
    """After the caller's ACK the bridge holds neither the caller's INVITE transaction nor
    the whole B-leg INVITE (its body, Contact, Allow...): memory per call."""
    run = Run()
    run.connect()
    assert run.state() is CallState.CONFIRMED
    b_invite = run.last("INVITE").request
    assert not _reachable(run.bridge, run.server)
    assert not _reachable(run.bridge, b_invite)
    assert _reachable(run.bridge, run.invite)  # snapshots and charging still read it
    assert run.call.caller == "sip:alice@example.com"  # parsed again on demand
    assert run.bridge.snapshot()["invite"] == run.invite.serialize().decode("latin-1")


def test_a_late_2xx_from_another_fork_after_the_ack_is_acked_and_byed() -> None:
    """The reduced B-leg INVITE still builds the ACK and BYE of a second fork's 2xx
    (§13.2.2.4): same Call-ID, From, CSeq, the new fork's To tag."""
    run = Run()
    run.connect()
    invite = run.last("INVITE")
    run.reply(invite, 200, tag="late-fork", body=SDP_B)
    ack = run.acks[-1].ack
    assert ack.to_tag == "late-fork" and str(ack.cseq) == "1 ACK"
    assert ack.call_id == invite.request.call_id
    assert ack.from_tag == invite.request.from_tag
    (bye,) = run.sent("BYE")
    assert bye.request.to_tag == "late-fork" and bye.request.call_id == ack.call_id
    assert run.state() is CallState.CONFIRMED
