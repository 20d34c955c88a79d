# mypy: disable-error-code="union-attr,arg-type,comparison-overlap,unreachable,index,misc"
# (tests poke Optional results and state attributes mypy narrows too eagerly)
"""RFC 6733 5.6 peer state machine in virtual time; every table row is exercised."""

from __future__ import annotations

import random

import pytest

from b2bua.diameter.dictionary import (
    DIAMETER_NO_COMMON_APPLICATION,
    DIAMETER_SUCCESS,
    DIAMETER_UNKNOWN_PEER,
    DISCONNECT_BUSY,
    DISCONNECT_DO_NOT_WANT_TO_TALK_TO_YOU,
)
from b2bua.diameter.message import IdGenerator, Message, check_command, decode, make_answer
from b2bua.diameter.peer import (
    TRANSITIONS,
    Closed,
    Connect,
    Deliver,
    Disconnect,
    DwaReceived,
    Opened,
    Peer,
    PeerConfig,
    PeerEvent,
    PeerNotOpen,
    PeerState,
    Send,
    answer_cer,
    elect,
)
from tests.diameter import factories

S = PeerState
E = PeerEvent
LOCAL = "b2bua.example.com"
LOSER_REMOTE = "ocs.example.net"  # sorts after LOCAL: the remote wins elections
WINNER_REMOTE = "a-ocs.example.net"  # sorts before LOCAL: the local node wins
CFG = PeerConfig(
    LOCAL,
    "example.com",
    allowed_peers=frozenset({LOSER_REMOTE, WINNER_REMOTE}),
    origin_state_id=7,
)
SEEN: set[tuple[PeerState, PeerEvent]] = set()


@pytest.fixture(autouse=True)
def _record(monkeypatch):
    """Record every (state, event) that reaches a table entry."""
    original = Peer._fire

    def fire(self, now, event, conn=None, msg=None):
        if (self.state, event) in TRANSITIONS:
            SEEN.add((self.state, event))
        before = self.state
        out = original(self, now, event, conn, msg)
        won = any(isinstance(a, Disconnect) and a.reason == "won election" for a in out)
        if won and before is not S.WAIT_RETURNS and self.state is S.R_OPEN:
            SEEN.add((S.WAIT_RETURNS, E.WIN_ELECTION))
        return out

    monkeypatch.setattr(Peer, "_fire", fire)


class Conn:
    """Opaque transport handle."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


def new_peer() -> Peer:
    return Peer(CFG, 0.0, ids=IdGenerator(0.0, random.Random(3)))


def remote_cer(host: str = LOSER_REMOTE, apps: tuple[int, ...] = (4,)) -> Message:
    return factories.cer(origin_host=host, origin_realm="example.net", apps=apps)


def cea_to(request: Message, code: int = DIAMETER_SUCCESS, apps=(4,)) -> Message:
    return make_answer(
        request,
        code,
        [("Host-IP-Address", "127.0.0.2"), ("Vendor-Id", 0), ("Product-Name", "ocs")]
        + [("Auth-Application-Id", a) for a in apps],
        origin_host=LOSER_REMOTE,
        origin_realm="example.net",
    )


def sent(actions, conn=None) -> list[Message]:
    return [a.message for a in actions if isinstance(a, Send) and (conn is None or a.conn is conn)]


def kinds(actions) -> list[str]:
    return [type(a).__name__ for a in actions]


def connecting(now: float = 0.0) -> tuple[Peer, Conn, Message]:
    """Peer in Wait-I-CEA with the CER it sent."""
    peer = new_peer()
    assert peer.start(now) == [Connect()]
    i = Conn("I")
    out = peer.connected(now, i)
    (cer,) = sent(out, i)
    return peer, i, cer


def i_open() -> tuple[Peer, Conn]:
    peer, i, cer = connecting()
    peer.receive(1.0, i, cea_to(cer))
    assert peer.state is S.I_OPEN
    return peer, i


def r_open() -> tuple[Peer, Conn]:
    peer = new_peer()
    r = Conn("R")
    peer.incoming_cer(1.0, r, remote_cer())
    assert peer.state is S.R_OPEN
    return peer, r


def elect_state(remote: str = LOSER_REMOTE) -> tuple[Peer, Conn]:
    """Peer in Wait-Conn-Ack/Elect holding a responder connection."""
    peer = new_peer()
    peer.start(0.0)
    r = Conn("R")
    out = peer.incoming_cer(0.5, r, remote_cer(remote))
    assert kinds(out) == ["Accept"] and peer.state is S.WAIT_CONN_ACK_ELECT
    return peer, r


# --- Closed ---------------------------------------------------------------------


def test_start_connects_with_timer():
    """Closed + Start: I-Snd-Conn-Req, Wait-Conn-Ack with the connect timer."""
    peer = new_peer()
    assert peer.start(5.0) == [Connect()]
    assert peer.state is S.WAIT_CONN_ACK and peer.next_deadline() == 15.0
    assert peer.on_timer(14.9) == []


def test_closed_r_conn_cer_opens():
    """Closed + R-Conn-CER: R-Accept, Process-CER, R-Snd-CEA, R-Open."""
    peer = new_peer()
    r = Conn("R")
    out = peer.incoming_cer(1.0, r, remote_cer())
    assert kinds(out) == ["Accept", "Send", "Opened"]
    (cea,) = sent(out, r)
    assert cea.result_code == DIAMETER_SUCCESS and cea.name == "CEA"
    check_command(decode(cea.encode()))
    assert peer.remote.origin_host == LOSER_REMOTE and peer.active_conn is r
    assert peer.next_deadline() is None


def test_unknown_peer_gets_3010_and_close():
    """A CER from a host not configured: CEA 3010 with the E bit, connection rejected."""
    peer = new_peer()
    r = Conn("R")
    out = peer.incoming_cer(1.0, r, remote_cer("stranger.example.org"))
    (cea,) = sent(out, r)
    assert cea.result_code == DIAMETER_UNKNOWN_PEER and cea.is_error
    assert out[-1] == Disconnect(r, "CER rejected with 3010")
    assert peer.state is S.CLOSED


def test_no_common_application_gets_5010():
    """A CER without application 4: CEA 5010 and close."""
    peer = new_peer()
    r = Conn("R")
    out = peer.incoming_cer(1.0, r, remote_cer(apps=(16777238,)))
    (cea,) = sent(out, r)
    assert cea.result_code == DIAMETER_NO_COMMON_APPLICATION and not cea.is_error
    assert isinstance(out[-1], Disconnect) and peer.state is S.CLOSED


def test_relay_application_is_common():
    """A peer advertising the relay application id shares every application."""
    cea, info = answer_cer(CFG, remote_cer(apps=(0xFFFFFFFF,)))
    assert cea.result_code == DIAMETER_SUCCESS and info is not None


def test_answer_cer_malformed():
    """A CER whose values do not decode is answered with the codec's result code."""
    cer = remote_cer()
    cer.find("Vendor-Id").value = 1
    cer.find("Vendor-Id")._data = b"\x00"
    cea, info = answer_cer(CFG, decode(cer.encode()))
    assert cea.result_code == 5014 and info is None


# --- Wait-Conn-Ack --------------------------------------------------------------------


def test_conn_ack_sends_cer():
    """Wait-Conn-Ack + I-Rcv-Conn-Ack: I-Snd-CER with the b2bua capabilities."""
    peer, _i, cer = connecting(2.0)
    assert peer.state is S.WAIT_I_CEA and peer.next_deadline() == 12.0
    check_command(decode(cer.encode()))
    assert cer.get("Product-Name") == "b2bua"
    assert cer.get("Auth-Application-Id") == 4
    assert cer.get("Supported-Vendor-Id") == 10415
    assert cer.get("Origin-State-Id") == 7 and cer.get("Firmware-Revision") == 1
    assert str(cer.get("Host-IP-Address")) == "127.0.0.1"


def test_conn_nack_cleans_up():
    """Wait-Conn-Ack + I-Rcv-Conn-Nack: Cleanup, Closed."""
    peer = new_peer()
    peer.start(0.0)
    assert peer.connect_failed(1.0) == [Closed("connection failed")]
    assert peer.state is S.CLOSED and peer.next_deadline() is None


def test_conn_ack_timeout():
    """Wait-Conn-Ack + Timeout: Error, Closed."""
    peer = new_peer()
    peer.start(0.0)
    out = peer.on_timer(10.0)
    assert kinds(out) == ["Closed"] and peer.state is S.CLOSED


# --- Wait-I-CEA -------------------------------------------------------------------------


def test_cea_opens_initiator():
    """Wait-I-CEA + I-Rcv-CEA: Process-CEA, I-Open."""
    peer, i, cer = connecting()
    out = peer.receive(1.0, i, cea_to(cer))
    assert out == [Opened(i, peer.remote)] and peer.state is S.I_OPEN
    assert peer.is_open and peer.active_conn is i and peer.next_deadline() is None


@pytest.mark.parametrize(
    ("code", "apps", "reason"),
    [(DIAMETER_UNKNOWN_PEER, (4,), "CEA result 3010"), (2001, (1,), "no common application")],
)
def test_cea_rejected(code, apps, reason):
    """A failed CEA or one without application 4 closes the connection."""
    peer, i, cer = connecting()
    out = peer.receive(1.0, i, cea_to(cer, code, apps))
    assert isinstance(out[0], Disconnect) and out[0].conn is i
    assert isinstance(out[-1], Closed) and reason in out[-1].reason
    assert peer.state is S.CLOSED and peer.i_conn is None


def test_cea_malformed():
    """A CEA whose values do not decode is an Error."""
    peer, i, cer = connecting()
    cea = cea_to(cer)
    cea.find("Vendor-Id")._data = b"\x00"
    out = peer.receive(1.0, i, decode(cea.encode()))
    assert "malformed CEA" in out[-1].reason


def test_non_cea_while_waiting():
    """Wait-I-CEA + I-Rcv-Non-CEA: Error, Closed."""
    peer, i, _ = connecting()
    out = peer.receive(1.0, i, factories.dwr())
    assert kinds(out) == ["Disconnect", "Closed"] and peer.state is S.CLOSED


def test_initiator_disconnect_while_waiting():
    """Wait-I-CEA + I-Peer-Disc: I-Disc, Closed."""
    peer, i, _ = connecting()
    out = peer.disconnected(1.0, i)
    assert kinds(out) == ["Disconnect", "Closed"] and peer.state is S.CLOSED


def test_cea_timeout():
    """Wait-I-CEA + Timeout: Error, Closed."""
    peer, i, _ = connecting()
    out = peer.on_timer(10.0)
    assert out[0] == Disconnect(i, "timeout in Wait-I-CEA") and peer.state is S.CLOSED


def test_cer_while_waiting_lose_election():
    """Wait-I-CEA + R-Conn-CER from a higher host: Elect lost, Wait-Returns, then I-Open."""
    peer, i, cer = connecting()
    r = Conn("R")
    out = peer.incoming_cer(1.0, r, remote_cer(LOSER_REMOTE))
    assert kinds(out) == ["Accept"] and peer.state is S.WAIT_RETURNS
    out = peer.receive(2.0, i, cea_to(cer))
    assert out[0] == Disconnect(r, "lost election") and isinstance(out[1], Opened)
    assert peer.state is S.I_OPEN


def test_cer_while_waiting_win_election():
    """Wait-I-CEA + R-Conn-CER from a lower host: Win-Election, I-Disc, R-Snd-CEA, R-Open."""
    peer, i, _ = connecting()
    r = Conn("R")
    out = peer.incoming_cer(1.0, r, remote_cer(WINNER_REMOTE))
    assert kinds(out) == ["Accept", "Disconnect", "Send", "Opened"]
    assert out[1] == Disconnect(i, "won election")
    assert peer.state is S.R_OPEN and peer.active_conn is r


def test_bad_cer_while_waiting():
    """Wait-I-CEA + a rejected R-Conn-CER: the new connection is refused, state kept."""
    peer, _i, _ = connecting()
    r = Conn("R")
    out = peer.incoming_cer(1.0, r, remote_cer("stranger.example.org"))
    assert isinstance(out[-1], Disconnect) and peer.state is S.WAIT_I_CEA
    peer2 = new_peer()
    peer2.start(0.0)
    peer2.incoming_cer(1.0, r, remote_cer("stranger.example.org"))
    assert peer2.state is S.WAIT_CONN_ACK


# --- Wait-Conn-Ack/Elect --------------------------------------------------------------------


def test_elect_ack_lose():
    """Wait-Conn-Ack/Elect + I-Rcv-Conn-Ack: I-Snd-CER, Elect (lost), Wait-Returns."""
    peer, _r = elect_state(LOSER_REMOTE)
    i = Conn("I")
    out = peer.connected(1.0, i)
    assert len(sent(out, i)) == 1 and peer.state is S.WAIT_RETURNS


def test_elect_ack_win():
    """Wait-Conn-Ack/Elect + I-Rcv-Conn-Ack with a won election ends in R-Open."""
    peer, r = elect_state(WINNER_REMOTE)
    i = Conn("I")
    out = peer.connected(1.0, i)
    assert kinds(out) == ["Send", "Disconnect", "Send", "Opened"]
    assert sent(out, r)[0].name == "CEA" and peer.state is S.R_OPEN


def test_elect_nack():
    """Wait-Conn-Ack/Elect + I-Rcv-Conn-Nack: R-Snd-CEA, R-Open."""
    peer, _r = elect_state()
    out = peer.connect_failed(1.0)
    assert kinds(out) == ["Send", "Opened"] and peer.state is S.R_OPEN


def test_elect_r_peer_disc():
    """Wait-Conn-Ack/Elect + R-Peer-Disc: R-Disc, Wait-Conn-Ack."""
    peer, r = elect_state()
    out = peer.disconnected(1.0, r)
    assert out == [Disconnect(r, "responder closed")] and peer.state is S.WAIT_CONN_ACK


def test_elect_second_cer_rejected():
    """Wait-Conn-Ack/Elect + R-Conn-CER: R-Reject."""
    peer, r = elect_state()
    r2 = Conn("R2")
    out = peer.incoming_cer(1.0, r2, remote_cer())
    assert kinds(out) == ["Disconnect"] and out[0].conn is r2
    assert peer.state is S.WAIT_CONN_ACK_ELECT and peer.r_conn is r


def test_elect_timeout():
    """Wait-Conn-Ack/Elect + Timeout: Error, Closed (responder dropped)."""
    peer, r = elect_state()
    out = peer.on_timer(100.0)
    assert Disconnect(r, "timeout in Wait-Conn-Ack/Elect") in out
    assert peer.state is S.CLOSED


# --- Wait-Returns ----------------------------------------------------------------------------


def returns() -> tuple[Peer, Conn, Conn, Message]:
    peer, i, cer = connecting()
    r = Conn("R")
    peer.incoming_cer(1.0, r, remote_cer(LOSER_REMOTE))
    assert peer.state is S.WAIT_RETURNS
    return peer, i, r, cer


def test_returns_i_peer_disc():
    """Wait-Returns + I-Peer-Disc: I-Disc, R-Snd-CEA, R-Open."""
    peer, i, _r, _ = returns()
    out = peer.disconnected(2.0, i)
    assert kinds(out) == ["Disconnect", "Send", "Opened"] and peer.state is S.R_OPEN


def test_returns_r_peer_disc():
    """Wait-Returns + R-Peer-Disc: R-Disc, Wait-I-CEA."""
    peer, i, r, cer = returns()
    peer.disconnected(2.0, r)
    assert peer.state is S.WAIT_I_CEA and peer.r_conn is None
    peer.receive(3.0, i, cea_to(cer))
    assert peer.state is S.I_OPEN


def test_returns_reject_and_timeout():
    """Wait-Returns + R-Conn-CER: R-Reject; + Timeout: Error, Closed."""
    peer, i, r, _ = returns()
    r2 = Conn("R2")
    assert peer.incoming_cer(2.0, r2, remote_cer()) == [
        Disconnect(r2, "R-Reject: connection already established or elected")
    ]
    out = peer.on_timer(50.0)
    assert {a.conn for a in out if isinstance(a, Disconnect)} == {i, r}
    assert peer.state is S.CLOSED


def test_returns_non_cea():
    """Wait-Returns + a non-CEA on the initiator: Error, Closed."""
    peer, i, _r, _ = returns()
    peer.receive(2.0, i, factories.dwr())
    assert peer.state is S.CLOSED


# --- Open states ---------------------------------------------------------------------------------


@pytest.fixture(params=["I", "R"])
def opened(request):
    return i_open() if request.param == "I" else r_open()


def test_send_message(opened):
    """X-Open + Send-Message: X-Snd-Message on the open connection."""
    peer, conn = opened
    ccr = factories.ccr_initial()
    out = peer.send(5.0, ccr)
    assert out == [Send(conn, ccr, ccr.encode())]


def test_receive_message_delivered(opened):
    """X-Open + X-Rcv-Message: Process (deliver to the application)."""
    peer, conn = opened
    cca = factories.cca_grant(factories.ccr_initial())
    assert peer.receive(5.0, conn, cca) == [Deliver(conn, cca)]


def test_dwr_answered(opened):
    """X-Open + X-Rcv-DWR: Process-DWR, X-Snd-DWA with 2001 and the same ids."""
    peer, conn = opened
    dwr = factories.dwr("ocs.example.net", hop_by_hop=99)
    (action,) = peer.receive(5.0, conn, dwr)
    dwa = action.message
    assert action.conn is conn and dwa.name == "DWA" and dwa.hop_by_hop == 99
    assert dwa.result_code == DIAMETER_SUCCESS and dwa.get("Origin-State-Id") == 7
    check_command(decode(dwa.encode()))


def test_dwa_reported(opened):
    """X-Open + X-Rcv-DWA: Process-DWA (reported for the watchdog)."""
    peer, conn = opened
    dwa = make_answer(factories.dwr(), DIAMETER_SUCCESS, origin_host="o", origin_realm="r")
    assert peer.receive(5.0, conn, dwa) == [DwaReceived(conn, dwa)]


def test_send_dwr_helper(opened):
    """send_dwr emits a DWR on the open connection (watchdog SendWatchdog)."""
    peer, conn = opened
    (action,) = peer.send_dwr(5.0)
    assert action.conn is conn and action.message.name == "DWR"


def test_open_rejects_new_cer(opened):
    """X-Open + R-Conn-CER: R-Reject."""
    peer, _conn = opened
    extra = Conn("extra")
    assert peer.incoming_cer(5.0, extra, remote_cer())[0].conn is extra
    assert peer.is_open


def test_stop_sends_dpr_then_dpa_closes(opened):
    """X-Open + Stop: X-Snd-DPR with the cause, Closing; Rcv-DPA: Disc, Closed."""
    peer, conn = opened
    (action,) = peer.stop(5.0, DISCONNECT_DO_NOT_WANT_TO_TALK_TO_YOU)
    dpr = action.message
    assert dpr.name == "DPR" and dpr.get("Disconnect-Cause") == 2
    assert peer.state is S.CLOSING and peer.next_deadline() == 10.0
    dpa = make_answer(dpr, DIAMETER_SUCCESS, origin_host="o", origin_realm="r")
    out = peer.receive(6.0, conn, dpa)
    assert out == [
        Disconnect(conn, "DPA received"),
        Closed("disconnected by DPR/DPA", DISCONNECT_DO_NOT_WANT_TO_TALK_TO_YOU),
    ]
    assert peer.state is S.CLOSED and peer.i_conn is None and peer.r_conn is None


def test_rcv_dpr_answers_and_waits_for_close(opened):
    """X-Open + X-Rcv-DPR: X-Snd-DPA, Closing; peer then disconnects: Closed with its cause."""
    peer, conn = opened
    dpr = Message.request(
        "DPR",
        avps=[("Origin-Host", "o"), ("Origin-Realm", "r"), ("Disconnect-Cause", DISCONNECT_BUSY)],
    )
    (action,) = peer.receive(5.0, conn, dpr)
    assert action.message.name == "DPA" and action.message.result_code == DIAMETER_SUCCESS
    assert peer.state is S.CLOSING
    out = peer.disconnected(5.5, conn)
    assert out[-1] == Closed("disconnected by DPR/DPA", DISCONNECT_BUSY)


def test_open_peer_disconnect(opened):
    """X-Open + X-Peer-Disc: X-Disc, Closed."""
    peer, conn = opened
    out = peer.disconnected(5.0, conn)
    assert out == [Disconnect(conn, "peer closed"), Closed("peer closed the connection")]
    with pytest.raises(PeerNotOpen):
        peer.send(6.0, factories.ccr_initial())
    assert peer.send_dwr(6.0) == []


def test_closing_timeout_and_late_answers(opened):
    """Closing + Timeout: Error, Closed; answers still in flight are delivered."""
    peer, conn = opened
    peer.stop(5.0)
    cca = factories.cca_grant(factories.ccr_initial())
    assert peer.receive(6.0, conn, cca) == [Deliver(conn, cca)]
    out = peer.on_timer(10.0)
    assert isinstance(out[-1], Closed) and peer.state is S.CLOSED


def test_message_on_foreign_connection():
    """A message on a connection the peer does not own is answered by closing it."""
    peer, _i = i_open()
    stray = Conn("stray")
    assert peer.receive(1.0, stray, factories.dwr()) == [
        Disconnect(stray, "message on a connection not bound to this peer")
    ]
    assert peer.disconnected(1.0, stray) == []


def test_unlisted_events_ignored():
    """Events absent from the table (e.g. Stop while Closed) do nothing."""
    peer = new_peer()
    assert peer.stop(0.0) == []
    assert peer.connect_failed(0.0) == []
    assert peer.on_timer(100.0) == []


def test_election_rule():
    """5.6.4: the local node wins when its Origin-Host sorts higher, case-insensitively."""
    assert elect("b.example.com", "A.example.com")
    assert not elect("A.example.com", "b.example.com")
    assert not elect("Same.example", "same.EXAMPLE")


def test_config_advertises_vendor_specific_apps():
    """Vendor-Specific-Application-Id entries are advertised and count as supported."""
    cfg = PeerConfig("h", "r", vendor_specific_application_ids=((10415, 16777238),))
    assert 16777238 in cfg.applications
    cer = Message.request(
        "CER", avps=[("Origin-Host", "h"), ("Origin-Realm", "r"), *cfg.capability_avps()]
    )
    check_command(decode(cer.encode()))
    _cea, info = answer_cer(cfg, decode(cer.encode()))
    assert info is not None and 16777238 in info.applications


def test_zz_every_transition_covered():
    """Every row of the RFC 6733 5.6 table was driven by the tests above."""
    missing = set(TRANSITIONS) - SEEN
    assert not missing, sorted((s.value, e.value) for s, e in missing)
