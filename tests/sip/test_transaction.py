"""Transaction state machines (RFC 3261 §17, RFC 6026), driven in virtual time."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from b2bua.sip.errors import LocalProtocolError
from b2bua.sip.headers import parse_via
from b2bua.sip.message import Request, Response, make_response, parse_message
from b2bua.sip.transaction import (
    MAGIC_COOKIE,
    ClientKey,
    Deliver,
    Input,
    InviteClientTransaction,
    InviteServerTransaction,
    NonInviteClientTransaction,
    NonInviteServerTransaction,
    Send,
    ServerKey,
    State,
    Terminated,
    Timeout,
    TimerConfig,
    Transaction,
    TransactionTable,
    TransportError,
    cancel_key,
    client_key,
    make_ack,
    make_cancel,
    new_branch,
    response_address,
    server_key,
    stamp_via,
)
from tests.sip import factories

DEST = ("192.0.2.99", 5060)


def kinds(actions):
    return [type(a).__name__ for a in actions]


def sent(actions):
    return [a.message for a in actions if isinstance(a, Send)]


def reply(request: Request, status: int, tag: str | None = "totag") -> Response:
    """A response as the far end would send it (round-tripped through bytes)."""
    resp = make_response(request, status, to_tag=tag if status > 100 else None)
    parsed = parse_message(resp.serialize())
    assert isinstance(parsed, Response)
    return parsed


def run_timers(txn: Transaction, until: float) -> list[tuple[float, object]]:
    """Fire the transaction's timers in deadline order up to ``until``."""
    out: list[tuple[float, object]] = []
    while (deadline := txn.next_deadline()) is not None and deadline <= until:
        out.extend((deadline, a) for a in txn.on_timer(deadline))
    return out


# ---------------------------------------------------------------- constructing / starting


def new_ict(reliable=False, **kw):
    txn = InviteClientTransaction(factories.request("INVITE"), reliable=reliable, dest=DEST, **kw)
    return txn


def new_nict(reliable=False, method="OPTIONS", **kw):
    return NonInviteClientTransaction(factories.request(method), reliable=reliable, dest=DEST, **kw)


def new_ist(reliable=False, **kw):
    return InviteServerTransaction(factories.request("INVITE"), reliable=reliable, dest=DEST, **kw)


def new_nist(reliable=False, method="OPTIONS"):
    return NonInviteServerTransaction(factories.request(method), reliable=reliable, dest=DEST)


def drive(cls, state, reliable=False):
    """A transaction of ``cls`` brought to ``state`` at time 0."""
    if cls is InviteClientTransaction:
        txn = new_ict(reliable)
        txn.start(0.0)
        step = {State.PROCEEDING: 180, State.COMPLETED: 486, State.ACCEPTED: 200}
        if state in step:
            txn.receive(reply(txn.request, step[state]), 0.0)
    elif cls is NonInviteClientTransaction:
        txn = new_nict(reliable)
        txn.start(0.0)
        step = {State.PROCEEDING: 180, State.COMPLETED: 200}
        if state in step:
            txn.receive(reply(txn.request, step[state]), 0.0)
    elif cls is InviteServerTransaction:
        txn = new_ist(reliable)
        txn.start(0.0)
        if state in (State.COMPLETED, State.CONFIRMED):
            txn.respond(make_response(txn.request, 486, to_tag="x"), 0.0)
        if state is State.CONFIRMED:
            txn.receive(make_ack(txn.request, make_response(txn.request, 486, to_tag="x")), 0.0)
        if state is State.ACCEPTED:
            txn.respond(make_response(txn.request, 200, to_tag="x"), 0.0)
    else:
        txn = new_nist(reliable)
        txn.start(0.0)
        if state is State.PROCEEDING:
            txn.respond(make_response(txn.request, 180, to_tag="x"), 0.0)
        if state is State.COMPLETED:
            txn.respond(make_response(txn.request, 200, to_tag="x"), 0.0)
    assert txn.state is state
    return txn


def stimulus(txn, event):
    """The message (if any) that produces ``event`` for ``txn``."""
    req = txn.request
    if event in (Input.R1XX, Input.TU_1XX):
        return reply(req, 180)
    if event in (Input.R2XX, Input.RFINAL, Input.TU_2XX, Input.TU_FINAL):
        return reply(req, 200)
    if event in (Input.R300_699, Input.TU_300_699):
        return reply(req, 486)
    if event is Input.REQUEST:
        return parse_message(req.serialize())
    if event is Input.ACK:
        return make_ack(req, reply(req, 486, tag="x"))
    return None


IN = Input
S = State
ICT, NICT = InviteClientTransaction, NonInviteClientTransaction
IST, NIST = InviteServerTransaction, NonInviteServerTransaction

#: Every row of every table, with the actions it must produce (written out by hand).
EXPECTED: dict[tuple[Any, Any, Any], Any] = {
    # INVITE client, §17.1.1.2 + RFC 6026
    (ICT, S.CALLING, IN.TIMER_A): ["Send"],
    (ICT, S.CALLING, IN.TIMER_B): ["Timeout", "Terminated"],
    (ICT, S.CALLING, IN.R1XX): ["Deliver"],
    (ICT, S.CALLING, IN.R2XX): ["Deliver"],
    (ICT, S.CALLING, IN.R300_699): ["Deliver", "Send"],
    (ICT, S.CALLING, IN.TRANSPORT_ERROR): ["TransportError", "Terminated"],
    (ICT, S.PROCEEDING, IN.R1XX): ["Deliver"],
    (ICT, S.PROCEEDING, IN.R2XX): ["Deliver"],
    (ICT, S.PROCEEDING, IN.R300_699): ["Deliver", "Send"],
    (ICT, S.PROCEEDING, IN.TRANSPORT_ERROR): ["TransportError", "Terminated"],
    (ICT, S.COMPLETED, IN.R1XX): [],
    (ICT, S.COMPLETED, IN.R2XX): [],
    (ICT, S.COMPLETED, IN.R300_699): ["Send"],
    (ICT, S.COMPLETED, IN.TIMER_D): ["Terminated"],
    (ICT, S.COMPLETED, IN.TRANSPORT_ERROR): ["TransportError", "Terminated"],
    (ICT, S.ACCEPTED, IN.R1XX): [],
    (ICT, S.ACCEPTED, IN.R2XX): ["Deliver"],
    (ICT, S.ACCEPTED, IN.R300_699): [],
    (ICT, S.ACCEPTED, IN.TIMER_M): ["Terminated"],
    (ICT, S.ACCEPTED, IN.TRANSPORT_ERROR): ["TransportError", "Terminated"],
    # non-INVITE client, §17.1.2.2
    (NICT, S.TRYING, IN.TIMER_E): ["Send"],
    (NICT, S.TRYING, IN.TIMER_F): ["Timeout", "Terminated"],
    (NICT, S.TRYING, IN.R1XX): ["Deliver"],
    (NICT, S.TRYING, IN.RFINAL): ["Deliver"],
    (NICT, S.TRYING, IN.TRANSPORT_ERROR): ["TransportError", "Terminated"],
    (NICT, S.PROCEEDING, IN.TIMER_E): ["Send"],
    (NICT, S.PROCEEDING, IN.TIMER_F): ["Timeout", "Terminated"],
    (NICT, S.PROCEEDING, IN.R1XX): ["Deliver"],
    (NICT, S.PROCEEDING, IN.RFINAL): ["Deliver"],
    (NICT, S.PROCEEDING, IN.TRANSPORT_ERROR): ["TransportError", "Terminated"],
    (NICT, S.COMPLETED, IN.R1XX): [],
    (NICT, S.COMPLETED, IN.RFINAL): [],
    (NICT, S.COMPLETED, IN.TIMER_K): ["Terminated"],
    (NICT, S.COMPLETED, IN.TRANSPORT_ERROR): [],
    # INVITE server, §17.2.1 + RFC 6026
    (IST, S.PROCEEDING, IN.REQUEST): ["Send"],
    (IST, S.PROCEEDING, IN.ACK): [],
    (IST, S.PROCEEDING, IN.TU_1XX): ["Send"],
    (IST, S.PROCEEDING, IN.TU_2XX): ["Send"],
    (IST, S.PROCEEDING, IN.TU_300_699): ["Send"],
    (IST, S.PROCEEDING, IN.TRANSPORT_ERROR): ["TransportError", "Terminated"],
    (IST, S.COMPLETED, IN.REQUEST): ["Send"],
    (IST, S.COMPLETED, IN.ACK): [],
    (IST, S.COMPLETED, IN.TIMER_G): ["Send"],
    (IST, S.COMPLETED, IN.TIMER_H): ["Timeout", "Terminated"],
    (IST, S.COMPLETED, IN.TRANSPORT_ERROR): ["TransportError", "Terminated"],
    (IST, S.CONFIRMED, IN.REQUEST): [],
    (IST, S.CONFIRMED, IN.ACK): [],
    (IST, S.CONFIRMED, IN.TIMER_I): ["Terminated"],
    (IST, S.CONFIRMED, IN.TRANSPORT_ERROR): [],
    (IST, S.ACCEPTED, IN.REQUEST): [],
    (IST, S.ACCEPTED, IN.ACK): ["Deliver"],
    (IST, S.ACCEPTED, IN.TU_2XX): ["Send"],
    (IST, S.ACCEPTED, IN.TIMER_L): ["Terminated"],
    (IST, S.ACCEPTED, IN.TRANSPORT_ERROR): ["TransportError"],
    # non-INVITE server, §17.2.2
    (NIST, S.TRYING, IN.REQUEST): [],
    (NIST, S.TRYING, IN.TU_1XX): ["Send"],
    (NIST, S.TRYING, IN.TU_FINAL): ["Send"],
    (NIST, S.TRYING, IN.TRANSPORT_ERROR): ["TransportError", "Terminated"],
    (NIST, S.PROCEEDING, IN.REQUEST): ["Send"],
    (NIST, S.PROCEEDING, IN.TU_1XX): ["Send"],
    (NIST, S.PROCEEDING, IN.TU_FINAL): ["Send"],
    (NIST, S.PROCEEDING, IN.TRANSPORT_ERROR): ["TransportError", "Terminated"],
    (NIST, S.COMPLETED, IN.REQUEST): ["Send"],
    (NIST, S.COMPLETED, IN.TIMER_J): ["Terminated"],
    (NIST, S.COMPLETED, IN.TRANSPORT_ERROR): ["TransportError", "Terminated"],
}


def test_expectations_cover_every_table_row():
    """The hand-written expectations list exactly the rows of the four tables."""
    rows = {(cls, s, e) for cls in (ICT, NICT, IST, NIST) for (s, e) in cls.TABLE}
    assert rows == set(EXPECTED)


@pytest.mark.parametrize(
    ("cls", "state", "event"),
    sorted(EXPECTED, key=lambda k: (k[0].__name__, k[1].value, k[2].value)),  # type: ignore[index]
    ids=lambda v: getattr(v, "__name__", getattr(v, "value", str(v))),
)
def test_every_transition_row(cls, state, event):
    """Each (state, input) row produces its actions and reaches its next state."""
    txn = drive(cls, state)
    msg = stimulus(txn, event)
    actions = txn._fire(event, 1.0, msg)
    assert kinds(actions) == EXPECTED[(cls, state, event)]
    assert txn.state is cls.TABLE[(state, event)][1]
    if txn.state is not State.TERMINATED:
        assert set(txn.timers) <= cls.STATE_TIMERS[txn.state]
    else:
        assert txn.timers == {}


@pytest.mark.parametrize(
    ("cls", "state", "event"),
    [
        (IST, S.COMPLETED, IN.TU_2XX),
        (IST, S.CONFIRMED, IN.TU_1XX),
        (IST, S.ACCEPTED, IN.TU_1XX),
        (IST, S.ACCEPTED, IN.TU_300_699),
        (NIST, S.COMPLETED, IN.TU_FINAL),
        (NIST, S.COMPLETED, IN.TU_1XX),
        (ICT, S.PROCEEDING, IN.TIMER_A),
    ],
)
def test_missing_rows_raise(cls, state, event):
    """An input with no row (a TU bug) raises LocalProtocolError."""
    txn = drive(cls, state)
    with pytest.raises(LocalProtocolError, match="no transition"):
        txn._fire(event, 1.0, stimulus(txn, event))


# ------------------------------------------------------------ INVITE client, timers


def test_ict_udp_retransmits_on_timer_a_then_times_out_on_b():
    """§17.1.1.2: A doubles from T1 with no cap; B=64*T1 times out: 7 transmissions."""
    txn = new_ict()
    first = txn.start(0.0)
    assert kinds(first) == ["Send"]
    assert first[0] == Send(txn.request, DEST)
    assert txn.timers == {"A": 0.5, "B": 32.0}
    fired = run_timers(txn, 100.0)
    sends = [t for t, a in fired if isinstance(a, Send)]
    assert sends == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert [type(a) for t, a in fired if t == 32.0] == [Timeout, Terminated]
    assert txn.terminated
    assert txn.next_deadline() is None
    assert txn.on_timer(1000.0) == []
    assert txn.receive(reply(txn.request, 200), 1000.0) == []


def test_ict_reliable_has_no_timer_a():
    """§17.1.1.2: on a reliable transport only timer B runs."""
    txn = new_ict(reliable=True)
    txn.start(10.0)
    assert txn.timers == {"B": 42.0}
    assert kinds(txn.on_timer(41.9)) == []
    assert kinds(txn.on_timer(42.0)) == ["Timeout", "Terminated"]


def test_ict_provisional_stops_retransmissions():
    """A 1xx moves to Proceeding: no more retransmissions and no timer B."""
    txn = new_ict()
    txn.start(0.0)
    ringing = reply(txn.request, 180)
    assert txn.receive(ringing, 0.2) == [Deliver(ringing)]
    assert txn.state is State.PROCEEDING
    assert txn.next_deadline() is None
    assert kinds(txn.receive(reply(txn.request, 183), 5.0)) == ["Deliver"]


def test_ict_non_2xx_acks_and_absorbs_retransmissions():
    """§17.1.1.3: the ACK reuses the INVITE branch; retransmitted finals re-send it."""
    txn = new_ict()
    txn.start(0.0)
    busy = reply(txn.request, 486)
    actions = txn.receive(busy, 1.0)
    assert kinds(actions) == ["Deliver", "Send"]
    ack = actions[1].message
    assert isinstance(ack, Request)
    assert ack.method == "ACK"
    assert ack.top_via.branch == txn.request.top_via.branch
    assert ack.to_tag == "totag"
    assert txn.timers == {"D": 33.0}
    again = txn.receive(busy, 2.0)
    assert again == [Send(ack, DEST)]
    assert kinds(txn.on_timer(33.0)) == ["Terminated"]


def test_ict_reliable_timer_d_is_zero():
    """Timer D is zero on reliable transports."""
    txn = new_ict(reliable=True)
    txn.start(0.0)
    txn.receive(reply(txn.request, 503), 4.0)
    assert txn.timers == {"D": 4.0}
    assert kinds(txn.on_timer(4.0)) == ["Terminated"]


def test_ict_2xx_accepted_state():
    """RFC 6026: 2xx -> Accepted; later 2xx go up too; timer M ends it."""
    txn = new_ict()
    txn.start(0.0)
    ok = reply(txn.request, 200)
    assert txn.receive(ok, 1.0) == [Deliver(ok)]
    assert txn.state is State.ACCEPTED
    assert txn.timers == {"M": 33.0}
    other_fork = reply(txn.request, 200, tag="fork2")
    assert txn.receive(other_fork, 2.0) == [Deliver(other_fork)]
    assert txn.receive(reply(txn.request, 180), 2.0) == []
    assert kinds(txn.on_timer(33.0)) == ["Terminated"]


def test_ict_custom_timer_config():
    """T1 from TimerConfig scales A and B."""
    config = TimerConfig(t1=0.1, t2=1.0, t4=1.0, d=5.0)
    assert config.b == pytest.approx(6.4)
    txn = new_ict(config=config)
    txn.start(0.0)
    assert txn.timers == {"A": 0.1, "B": pytest.approx(6.4)}
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.t1 = 1.0  # type: ignore[misc]


def test_ict_transport_error_reason():
    """A transport error is reported with its reason and terminates."""
    txn = new_ict()
    txn.start(0.0)
    actions = txn.transport_error(0.1, "ICMP unreachable")
    assert actions == [TransportError("ICMP unreachable"), Terminated(txn.key)]


def test_start_twice_raises():
    """A transaction starts once."""
    for txn in (new_ict(), new_nict(), new_ist(), new_nist()):
        txn.start(0.0)
        if isinstance(txn, NonInviteServerTransaction):
            txn.respond(make_response(txn.request, 200), 0.0)
        with pytest.raises(LocalProtocolError):
            txn.start(1.0)


def test_constructor_checks():
    """Wrong methods and branches without the cookie are refused."""
    with pytest.raises(LocalProtocolError):
        NonInviteClientTransaction(factories.request("INVITE"))
    with pytest.raises(LocalProtocolError):
        NonInviteServerTransaction(factories.request("ACK"))
    with pytest.raises(LocalProtocolError):
        InviteServerTransaction(factories.request("OPTIONS"))
    with pytest.raises(LocalProtocolError):
        InviteClientTransaction(factories.request("INVITE", branch="old-style"))


# -------------------------------------------------------- non-INVITE client, timers


def test_nict_timer_e_doubles_up_to_t2_then_f():
    """§17.1.2.2: E = T1, 2T1, ... capped at T2 in Trying; F = 64*T1."""
    txn = new_nict()
    txn.start(0.0)
    assert txn.timers == {"E": 0.5, "F": 32.0}
    fired = run_timers(txn, 100.0)
    sends = [t for t, a in fired if isinstance(a, Send)]
    assert sends == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert kinds([a for t, a in fired if t == 32.0]) == ["Timeout", "Terminated"]


def test_nict_proceeding_retransmits_every_t2():
    """§17.1.2.2: in Proceeding E is reset to T2."""
    txn = new_nict()
    txn.start(0.0)
    run_timers(txn, 0.5)
    txn.receive(reply(txn.request, 100), 0.6)
    assert txn.state is State.PROCEEDING
    fired = run_timers(txn, 10.0)
    assert [t for t, a in fired if isinstance(a, Send)] == [1.5, 5.5, 9.5]


def test_nict_final_then_timer_k():
    """A final response goes up once; retransmissions are absorbed until K=T4."""
    txn = new_nict()
    txn.start(0.0)
    ok = reply(txn.request, 200)
    assert txn.receive(ok, 1.0) == [Deliver(ok)]
    assert txn.timers == {"K": 6.0}
    assert txn.receive(ok, 2.0) == []
    assert kinds(txn.on_timer(6.0)) == ["Terminated"]


def test_nict_reliable():
    """Reliable: no E, and K is zero."""
    txn = new_nict(reliable=True)
    txn.start(0.0)
    assert txn.timers == {"F": 32.0}
    txn.receive(reply(txn.request, 404), 1.0)
    assert txn.timers == {"K": 1.0}


# --------------------------------------------------------------------- INVITE server


def test_ist_sends_100_and_passes_invite_up():
    """§17.2.1: a 100 Trying (no To tag) is sent and the INVITE passed to the TU."""
    txn = new_ist()
    actions = txn.start(0.0)
    assert kinds(actions) == ["Send", "Deliver"]
    trying = actions[0].message
    assert isinstance(trying, Response)
    assert trying.status == 100
    assert trying.to_tag is None
    assert actions[1] == Deliver(txn.request)
    quiet = new_ist(send_trying=False)
    assert kinds(quiet.start(0.0)) == ["Deliver"]
    assert quiet._fire(Input.REQUEST, 0.1, quiet.request) == []


def test_ist_absorbs_invite_retransmissions_with_last_provisional():
    """A retransmitted INVITE gets the most recent provisional again."""
    txn = new_ist()
    txn.start(0.0)
    retrans = parse_message(txn.request.serialize())
    assert isinstance(retrans, Request)
    assert sent(txn.receive(retrans, 0.5))[0].status == 100
    ringing = make_response(txn.request, 180, to_tag="abc")
    assert txn.respond(ringing, 1.0) == [Send(ringing, DEST)]
    assert txn.receive(retrans, 1.5) == [Send(ringing, DEST)]


def test_ist_non_2xx_retransmitted_on_g_until_h():
    """§17.2.1: G doubles to T2; H=64*T1 times out without ACK."""
    txn = new_ist()
    txn.start(0.0)
    busy = make_response(txn.request, 486, to_tag="abc")
    txn.respond(busy, 0.0)
    assert txn.timers == {"G": 0.5, "H": 32.0}
    fired = run_timers(txn, 100.0)
    sends = [t for t, a in fired if isinstance(a, Send)]
    assert sends == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert all(a.message is busy for t, a in fired if isinstance(a, Send))
    assert kinds([a for t, a in fired if t == 32.0]) == ["Timeout", "Terminated"]


def test_ist_ack_confirms_then_timer_i():
    """§17.2.1: the ACK stops G/H; Confirmed absorbs until I=T4."""
    txn = new_ist()
    txn.start(0.0)
    busy = make_response(txn.request, 486, to_tag="abc")
    txn.respond(busy, 0.0)
    assert txn.receive(parse_message(txn.request.serialize()), 0.2) == [Send(busy, DEST)]
    ack = make_ack(txn.request, busy)
    assert txn.receive(ack, 1.0) == []
    assert txn.state is State.CONFIRMED
    assert txn.timers == {"I": 6.0}
    assert txn.receive(ack, 2.0) == []
    assert kinds(txn.on_timer(6.0)) == ["Terminated"]


def test_ist_reliable_no_g_and_zero_i():
    """Reliable: no G retransmissions, I is zero, H still runs."""
    txn = new_ist(reliable=True)
    txn.start(0.0)
    busy = make_response(txn.request, 486, to_tag="abc")
    txn.respond(busy, 0.0)
    assert txn.timers == {"H": 32.0}
    txn.receive(make_ack(txn.request, busy), 3.0)
    assert txn.timers == {"I": 3.0}


def test_ist_2xx_accepted_state():
    """RFC 6026: after a 2xx, INVITEs are absorbed, ACKs passed up, 2xx sent; L ends it."""
    txn = new_ist()
    txn.start(0.0)
    ok = make_response(txn.request, 200, to_tag="abc")
    assert txn.respond(ok, 1.0) == [Send(ok, DEST)]
    assert txn.state is State.ACCEPTED
    assert txn.timers == {"L": 33.0}
    assert txn.receive(parse_message(txn.request.serialize()), 2.0) == []
    ack = make_ack(txn.request, ok)
    assert txn.receive(ack, 2.0) == [Deliver(ack)]
    assert txn.respond(ok, 3.0) == [Send(ok, DEST)]
    with pytest.raises(LocalProtocolError):
        txn.respond(make_response(txn.request, 486), 3.0)
    assert kinds(txn.on_timer(33.0)) == ["Terminated"]


# ----------------------------------------------------------------- non-INVITE server


def test_nist_lifecycle_udp():
    """§17.2.2: Trying absorbs, Proceeding and Completed resend; J=64*T1."""
    txn = new_nist()
    assert txn.start(0.0) == [Deliver(txn.request)]
    retrans = parse_message(txn.request.serialize())
    assert txn.receive(retrans, 0.5) == []
    trying = make_response(txn.request, 100)
    txn.respond(trying, 0.6)
    assert txn.receive(retrans, 0.7) == [Send(trying, DEST)]
    ok = make_response(txn.request, 200, to_tag="t")
    assert txn.respond(ok, 1.0) == [Send(ok, DEST)]
    assert txn.timers == {"J": 33.0}
    assert txn.receive(retrans, 2.0) == [Send(ok, DEST)]
    with pytest.raises(LocalProtocolError):
        txn.respond(ok, 3.0)
    assert kinds(txn.on_timer(33.0)) == ["Terminated"]


def test_nist_reliable_j_zero():
    """Reliable: J is zero."""
    txn = new_nist(reliable=True)
    txn.start(0.0)
    txn.respond(make_response(txn.request, 404, to_tag="t"), 5.0)
    assert txn.timers == {"J": 5.0}


# ------------------------------------------------------------------------------ keys


def test_client_keys_match_request_and_response():
    """§17.1.3: branch + CSeq method; a CANCEL is a different transaction."""
    req = factories.request("INVITE")
    resp = reply(req, 180)
    assert client_key(req) == client_key(resp) == ClientKey(factories.BRANCH, "INVITE")
    cancel = make_cancel(req)
    assert client_key(cancel) == ClientKey(factories.BRANCH, "CANCEL")


def test_server_keys():
    """§17.2.3: branch + sent-by + method; ACK maps to INVITE; CANCEL to itself."""
    req = factories.request("INVITE")
    key = server_key(req)
    assert key == ServerKey(factories.BRANCH, ("192.0.2.10", 5060), "INVITE")
    ack = make_ack(req, reply(req, 486))
    assert server_key(ack) == key
    cancel = make_cancel(req)
    assert server_key(cancel).method == "CANCEL"
    assert cancel_key(cancel) == key


def test_rfc2543_fallback_key():
    """Without the magic cookie the key uses Request-URI, tags, Call-ID, CSeq, Via."""
    for branch in ("1234", MAGIC_COOKIE):
        req = factories.request("INVITE", branch=branch)
        key = server_key(req)
        assert key.branch is None
        assert key.call_id == req.call_id
        assert key.from_tag == req.from_tag
        assert key.cseq == req.cseq.seq
        assert key.request_uri == req.uri
        assert key.transport == "UDP"
        other = factories.request("INVITE", branch=branch, cseq=req.cseq.seq + 1)
        assert server_key(other) != key


def test_new_branch_is_unique_with_cookie():
    """Generated branches start with z9hG4bK and differ."""
    a, b = new_branch(), new_branch()
    assert a.startswith(MAGIC_COOKIE)
    assert len(a) > 7
    assert a != b


# ---------------------------------------------------------------- ACK and CANCEL


def test_make_ack_contents():
    """§17.1.1.3: ACK has the INVITE's R-URI, Call-ID, From, CSeq number, Route, top Via."""
    invite = factories.request("INVITE", extra=("Route: <sip:p1;lr>", "Route: <sip:p2;lr>"))
    busy = reply(invite, 486)
    ack = make_ack(invite, busy)
    assert ack.uri == invite.uri
    assert ack.call_id == invite.call_id
    assert ack.headers.get("from") == invite.headers.get("from")
    assert ack.to_tag == "totag"
    assert (ack.cseq.seq, ack.cseq.method) == (invite.cseq.seq, "ACK")
    assert [str(v) for v in ack.via] == [str(invite.top_via)]
    assert [str(r.uri) for r in ack.route] == ["sip:p1;lr", "sip:p2;lr"]
    assert ack.max_forwards == 70
    assert ack.body == b""


def test_make_cancel_contents():
    """§9.1: CANCEL has the INVITE's R-URI, To (no tag), From, Call-ID, CSeq number, Via."""
    invite = factories.request("INVITE")
    cancel = make_cancel(invite, reason='SIP;cause=487;text="Request Terminated"')
    assert cancel.method == "CANCEL"
    assert cancel.uri == invite.uri
    assert cancel.headers.get("to") == invite.headers.get("to")
    assert cancel.to_tag is None
    assert (cancel.cseq.seq, cancel.cseq.method) == (invite.cseq.seq, "CANCEL")
    assert cancel.top_via.branch == invite.top_via.branch
    assert len(cancel.via) == 1
    assert cancel.headers.get("reason") == 'SIP;cause=487;text="Request Terminated"'
    assert "reason" not in make_cancel(invite).headers


# --------------------------------------------------------------------- routing


def test_stamp_via_received_and_rport():
    """§18.2.1 received when the source differs; RFC 3581 rport filled in."""
    req = factories.request("OPTIONS")  # top Via: 192.0.2.10:5060 ... ;rport
    stamp_via(req, "203.0.113.5", 40000)
    via = req.top_via
    assert via.received == "203.0.113.5"
    assert via.rport == 40000
    assert via.branch == factories.BRANCH
    assert len(req.via) == 2
    assert response_address(via) == ("203.0.113.5", 40000)


def test_stamp_via_rport_same_host_still_adds_received():
    """RFC 3581 §4: with rport the received parameter is always added."""
    req = factories.request("OPTIONS")
    stamp_via(req, "192.0.2.10", 5062)
    assert req.top_via.received == "192.0.2.10"
    assert req.top_via.rport == 5062


def test_stamp_via_nothing_to_do():
    """Same source address and no rport: the Via is left alone."""
    req = factories.request("OPTIONS", via_host="192.0.2.10:5060", branch="z9hG4bKx")
    req.headers.set("Via", "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKx")
    before = req.serialize()
    stamp_via(req, "192.0.2.10", 5060)
    assert req.serialize() == before


@pytest.mark.parametrize(
    ("via", "expected"),
    [
        ("SIP/2.0/UDP host.example.com", ("host.example.com", 5060)),
        ("SIP/2.0/UDP host.example.com:5070", ("host.example.com", 5070)),
        ("SIP/2.0/TLS host.example.com", ("host.example.com", 5061)),
        ("SIP/2.0/UDP h:5070;received=192.0.2.1", ("192.0.2.1", 5070)),
        ("SIP/2.0/UDP h;received=192.0.2.1;rport=6000", ("192.0.2.1", 6000)),
        ("SIP/2.0/UDP h:5070;rport=6000", ("h", 6000)),
        ("SIP/2.0/UDP h:5070;maddr=239.1.1.1;received=192.0.2.1", ("239.1.1.1", 5070)),
        ("SIP/2.0/UDP [2001:db8::1];received=[2001:db8::2]", ("2001:db8::2", 5060)),
        ("SIP/2.0/UDP [2001:db8::1]:5099", ("2001:db8::1", 5099)),
    ],
)
def test_response_address(via, expected):
    """§18.2.2 with RFC 3581: maddr, then received (+rport), then sent-by."""
    assert response_address(parse_via(via)) == expected


def test_response_address_default_port_override():
    """The caller may say what a missing port means."""
    assert response_address(parse_via("SIP/2.0/TCP h"), 5080) == ("h", 5080)


# ------------------------------------------------------------------------------ table


def test_table_matches_responses_to_client_transactions():
    """match_response finds the client transaction; strays return None."""
    table = TransactionTable()
    txn = new_ict()
    table.add(txn)
    txn.start(0.0)
    assert len(table) == 1
    assert txn.key in table
    assert table.get(txn.key) is txn
    assert table.match_response(reply(txn.request, 180)) is txn
    stray = reply(factories.request("INVITE", branch="z9hG4bKother"), 180)
    assert table.match_response(stray) is None
    no_via = reply(txn.request, 180)
    no_via.headers.remove("via")
    assert table.match_response(no_via) is None
    with pytest.raises(LocalProtocolError):
        table.add(new_ict())
    assert "InviteClientTransaction" in repr(txn)


def test_table_matches_requests_acks_and_cancels():
    """Retransmissions and non-2xx ACKs match; a 2xx ACK (new branch) does not; CANCEL."""
    table = TransactionTable()
    txn = new_ist()
    table.add(txn)
    txn.start(0.0)
    retrans = parse_message(txn.request.serialize())
    assert isinstance(retrans, Request)
    assert table.match_request(retrans) is txn
    busy = make_response(txn.request, 486, to_tag="abc")
    txn.respond(busy, 0.0)
    assert table.match_request(make_ack(txn.request, busy)) is txn
    ack_2xx = make_ack(txn.request, busy)
    ack_2xx.headers.set("Via", "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKnewone")
    assert table.match_request(ack_2xx) is None
    cancel = make_cancel(txn.request)
    assert table.match_request(cancel) is None
    assert table.match_cancel(cancel) is txn
    cancel_txn = NonInviteServerTransaction(cancel)
    table.add(cancel_txn)
    assert table.match_request(cancel) is cancel_txn
    assert table.match_cancel(cancel_txn.request) is txn
    broken = factories.request("OPTIONS")
    broken.headers.remove("via")
    assert table.match_request(broken) is None
    assert table.match_cancel(broken) is None


def test_table_rfc2543_ack_needs_matching_to_tag():
    """§17.2.3: an RFC 2543 ACK matches only with the To tag of our final response."""
    table = TransactionTable()
    invite = factories.request("INVITE", branch="2543-branch")
    txn = InviteServerTransaction(invite)
    table.add(txn)
    txn.start(0.0)
    busy = make_response(invite, 486, to_tag="ours")
    txn.respond(busy, 0.0)
    good = make_ack(invite, busy)
    assert table.match_request(good) is txn
    bad = make_ack(invite, make_response(invite, 486, to_tag="theirs"))
    assert table.match_request(bad) is None
    assert table.match_request(parse_message(invite.serialize())) is txn  # type: ignore[arg-type]


def test_table_deadlines_and_expire_across_transactions():
    """next_deadline is the minimum over all; expire fires due ones and drops the dead."""
    table = TransactionTable()
    assert table.next_deadline() is None
    ict = new_ict()
    nict = new_nict()
    table.add(ict)
    table.add(nict)
    ict.start(0.0)
    nict.start(0.2)
    assert table.next_deadline() == 0.5
    fired = table.expire(0.5)
    assert [(t, type(a)) for t, a in fired] == [(ict, Send)]
    assert table.next_deadline() == pytest.approx(0.7)
    ict.receive(reply(ict.request, 180), 0.6)  # no timers left for the ICT
    nict.receive(reply(nict.request, 200), 0.6)  # K at 5.6
    assert table.next_deadline() == pytest.approx(5.6)
    fired = table.expire(100.0)
    assert [(t, type(a)) for t, a in fired] == [(nict, Terminated)]
    assert len(table) == 1
    assert table.next_deadline() is None
    ict.receive(reply(ict.request, 486), 1.0)
    assert table.next_deadline() == pytest.approx(33.0)
    assert [type(a) for _, a in table.expire(33.0)] == [Terminated]
    assert len(table) == 0


def test_table_skips_stale_deadlines():
    """A deadline that moved (here: cancelled by a 1xx) is skipped by expire()."""
    table = TransactionTable()
    txn = new_ict()
    table.add(txn)
    txn.start(0.0)
    txn.receive(reply(txn.request, 180), 0.1)
    assert table.expire(100.0) == []
    assert len(table) == 1


def test_table_terminated_by_message_leaves_table():
    """A transaction terminated by an input (not a timer) leaves the table at once."""
    table = TransactionTable()
    txn = new_ict()
    table.add(txn)
    txn.start(0.0)
    actions = txn.transport_error(0.1)
    assert kinds(actions) == ["TransportError", "Terminated"]
    assert len(table) == 0
    assert table.next_deadline() is None
    assert table.expire(100.0) == []


def test_table_remove_and_add_after_start():
    """A started transaction can join a table later; remove() forgets it."""
    table = TransactionTable()
    txn = new_nict()
    txn.start(0.0)
    table.add(txn)
    assert table.next_deadline() == 0.5
    table.remove(txn)
    assert len(table) == 0
    assert table.next_deadline() is None
    txn.on_timer(0.5)  # no table to notify: fine


def test_user_data_and_dest():
    """dest is copied into Send; user_data is free for the TU."""
    txn = new_nict()
    txn.user_data = "call-1"
    [send] = txn.start(0.0)
    assert isinstance(send, Send)
    assert send.dest == DEST
    assert txn.user_data == "call-1"


def test_ist_accepted_keeps_only_the_status_and_to_tag_of_its_2xx():
    """Accepted never resends (the TU retransmits its 2xx), so for its 64*T1 it keeps no
    2xx body or headers: the status and To tag (RFC 2543 ACK matching) are what is read."""
    txn = new_ist()
    txn.start(0.0)
    ok = make_response(txn.request, 200, to_tag="abc")
    ok.headers.add("Contact", "<sip:b2bua@192.0.2.1>")
    ok.headers.add("Content-Type", "application/sdp")
    ok.body = b"v=0\r\n"
    for now in (1.0, 2.0):  # the 2xx and the TU's retransmission of it
        assert txn.respond(ok, now) == [Send(ok, DEST)]
        kept = txn.last_response
        assert kept is not ok and kept.status == 200 and txn.to_tag == "abc"
        assert [name for name, _ in kept.headers] == ["To"] and kept.body == b""
    assert ok.body == b"v=0\r\n" and "contact" in ok.headers


def test_ict_accepted_keeps_only_what_a_cancel_reads_of_the_invite():
    """Accepted never resends the INVITE: it keeps Via, Route, From, To, Call-ID and CSeq
    (a CANCEL built from them is the same) and lets go of the body and the rest."""
    txn = new_ict()
    invite = txn.request
    assert invite.body and "contact" in invite.headers
    txn.start(0.0)
    txn.receive(reply(invite, 200), 1.0)
    kept = txn.request
    assert kept is not invite and kept.body == b"" and "contact" not in kept.headers
    assert make_cancel(kept, "x").serialize() == make_cancel(invite, "x").serialize()
    assert invite.body and "contact" in invite.headers  # the TU's copy is untouched
