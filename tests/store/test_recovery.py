"""Live calls as records and back (b2bua.store.recovery), in virtual time.

Each :class:`Node` is one b2bua process: the call map on a real SIP endpoint with a fake
UDP socket (``tests.call.test_callmap.World``), the charging engine with its controller
and the fake Diameter client answering from ``TinyOcs`` (``tests.charging.fakes``), and a
:class:`CallStateRecorder` writing through to a dict standing in for Redis. A "crash" is
dropping a node; a restart is a new node at a later wall-clock time restoring the records.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from twisted.internet.defer import Deferred

from b2bua.call.events import EndReason
from b2bua.charging.controller import ChargingController
from b2bua.charging.engine import ChargingEngine, RoIdentity
from b2bua.charging.messages import RoSettings
from b2bua.charging.session import ChargingConfig
from b2bua.config import StoreSettings
from b2bua.diameter.message import FLAG_RETRANSMIT, Message
from b2bua.sip.message import Request, Response, make_response
from b2bua.store.gate import CcrGate
from b2bua.store.memory import MemoryStore
from b2bua.store.recovery import (
    RECORD_VERSION,
    CallStateRecorder,
    RecordError,
    decode_record,
    encode_record,
)
from b2bua.store.service import Codec, StoreService
from tests.call.test_callmap import (
    CALLEE,
    SBC,
    World,
    callee_request,
    in_dialog,
    invite,
    reply,
    requests,
    statuses,
)
from tests.charging.fakes import FakeDiameterClient, NoPeerAvailable, TinyOcs

START = 1_700_000_000.0
SUBSCRIBER = "sip:alice@example.com"
KEY = "call-a@sbc"
IDENTITY = RoIdentity("b2bua.lab.example", "lab.example", "lab.example")
CCR_I, CCR_U, CCR_T = 1, 2, 3


class PeersOf:
    """A fake Diameter client behind peers the test brings up (what the gate asks of it)."""

    def __init__(self, client: FakeDiameterClient, *, usable: bool) -> None:
        self.client = client
        self.usable = usable
        self.waiters: list[Deferred[None]] = []

    def send_request(
        self, message: Message, *, destination_host: str | None = None
    ) -> Deferred[Message]:
        return self.client.send_request(message, destination_host=destination_host)

    def has_usable_peer(self, realm: str | None = None) -> bool:
        return self.usable

    def when_usable(self) -> Deferred[None]:
        waiter: Deferred[None] = Deferred(self.waiters.remove)
        self.waiters.append(waiter)
        return waiter

    def come_up(self) -> None:
        self.usable = True
        waiters, self.waiters = self.waiters, []
        for waiter in waiters:
            waiter.callback(None)


class Node:
    """One b2bua process with write-through to ``store`` (key -> record bytes)."""

    def __init__(
        self,
        ocs: TinyOcs,
        store: dict[str, bytes],
        *,
        at: float = START,
        config: ChargingConfig | None = None,
        cseq_margin: int = 10_000,
        charging: str = "orig",
        usable: bool | None = None,
    ) -> None:
        self.world = World(route=f"charging = {charging}\n")
        self.world.clock.advance(at - self.world.clock.seconds())
        self.callmap = self.world.callmap
        self.client = FakeDiameterClient(self.world.clock, ocs, delay=0.05)
        #: usable given: the engine sends through a store gate, its peers usable or not yet.
        self.peers = PeersOf(self.client, usable=bool(usable))
        self.gate = None if usable is None else CcrGate(self.peers, self.world.clock)
        controller = ChargingController(self.callmap, RoSettings(), self.world.clock)
        self.engine = ChargingEngine(
            client=self.client if self.gate is None else self.gate,
            calls=controller,
            driver=self.world.driver,
            identity=IDENTITY,
            config=config or ChargingConfig(),
        )
        controller.engine = self.engine
        self.callmap.add_observer(controller)
        self.recorder = CallStateRecorder(self.callmap, self.engine, cseq_margin=cseq_margin)
        self.store = store
        self.changes: list[str] = []
        self.recorder.listen(self.changed)

    def changed(self, key: str) -> None:
        self.changes.append(key)
        record = self.recorder.record_of(key, self.world.clock.seconds())
        if record is None:
            self.store.pop(key, None)
        else:
            self.store[key] = encode_record(record)

    def restore_all(self, *, end: bool = False) -> None:
        for data in list(self.store.values()):
            self.recorder.restore(decode_record(data), self.world.clock.seconds(), end=end)

    def ccrs(self) -> list[Message]:
        return self.client.requests()

    def advance(self, seconds: float) -> None:
        self.world.advance(seconds, step=0.05)


def used_of(ccr: Message) -> int | None:
    value = ccr.get_path("Multiple-Services-Credit-Control", "Used-Service-Unit", "CC-Time")
    return None if value is None else int(value)


def kind(ccr: Message) -> tuple[int, int]:
    """CC-Request-Type and CC-Request-Number."""
    return int(ccr.get("CC-Request-Type")), int(ccr.get("CC-Request-Number"))


def connect(node: Node) -> tuple[Request, Response]:
    """A charged call up to the caller's ACK; the B-leg INVITE and the caller's 200."""
    world = node.world
    world.send(invite())
    node.advance(0.1)  # the CCA-I
    (b_invite,) = requests(world.take(CALLEE), "INVITE")
    world.send(reply(b_invite, 200), CALLEE)
    ok = world.take(SBC)[-1]
    assert isinstance(ok, Response) and ok.status == 200
    world.send(in_dialog("ACK", ok, cseq=1, branch="z9hG4bK-ack"))
    requests(world.take(CALLEE), "ACK")
    return b_invite, ok


def record(node: Node) -> dict[str, Any]:
    return decode_record(node.store[KEY])


def without_time(data: dict[str, Any]) -> dict[str, Any]:
    data = copy.deepcopy(data)
    data.pop("saved_at")
    return data


def assert_gone(node: Node) -> None:
    """No call, no Ro session, no record left."""
    assert len(node.callmap) == 0
    assert node.engine.active_sessions == 0
    assert node.store == {}


# -- records --------------------------------------------------------------------------------


def test_encode_decode_round_trip() -> None:
    """encode_record gives compact JSON that decode_record reads back unchanged."""
    data = {"v": RECORD_VERSION, "key": "k", "saved_at": 1.5, "call": None, "ro": {"x": [1]}}
    raw = encode_record(data)
    assert b" " not in raw
    assert decode_record(raw) == data


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b"[1, 2]", b'{"v": 99, "key": "k"}', b'{"v": 1}', b"\xff\xfe"],
)
def test_decode_refuses_what_is_not_a_record(raw: bytes) -> None:
    """Bad JSON, a non-object, an unknown version or a missing key raise RecordError."""
    with pytest.raises(RecordError):
        decode_record(raw)


def test_confirmed_call_record_round_trips() -> None:
    """record -> encode -> decode -> restore -> record is the same, saved_at aside."""
    store: dict[str, bytes] = {}
    ocs = TinyOcs({SUBSCRIBER: 600})
    node = Node(ocs, store, cseq_margin=0)
    connect(node)
    node.advance(5)
    before = record(node)
    assert before["call"] is not None and before["ro"] is not None
    (session,) = before["ro"]["sessions"]
    assert session["session"]["next_number"] == 1 and session["session"]["budget"] == 30
    assert session["context"]["subscriber"] == SUBSCRIBER
    second = Node(ocs, {}, at=START + 20, cseq_margin=0)
    second.recorder.restore(decode_record(encode_record(before)), second.world.clock.seconds())
    after = second.recorder.record_of(KEY, second.world.clock.seconds())
    assert after is not None
    assert without_time(after) == without_time(before)
    assert second.ccrs() == []  # nothing due yet: the CCR-U comes at 22 s of talk


def test_restore_raises_local_cseq_by_the_margin() -> None:
    """A restored dialog's next request has a CSeq above anything sent before the crash."""
    store: dict[str, bytes] = {}
    ocs = TinyOcs({SUBSCRIBER: 600})
    node = Node(ocs, store)
    _b_invite, ok = connect(node)
    seq = record(node)["call"]["b"]["dialog"]["local_seq"]
    second = Node(ocs, store, at=START + 10)
    second.restore_all()
    assert record(second)["call"]["b"]["dialog"]["local_seq"] == seq + 10_000  # written again
    second.world.send(in_dialog("BYE", ok, cseq=2, branch="z9hG4bK-bye"))
    (bye,) = requests(second.world.take(CALLEE), "BYE")
    assert bye.cseq.seq == seq + 10_001


# -- a restored call goes on ---------------------------------------------------------------


@pytest.mark.parametrize("side", ["caller", "callee"])
def test_restored_call_relays_bye_and_reports_talk_time(side: str) -> None:
    """After a restart, a BYE from either side is relayed and the CCR-T reports the talk."""
    store: dict[str, bytes] = {}
    ocs = TinyOcs({SUBSCRIBER: 600})
    node = Node(ocs, store)
    b_invite, ok = connect(node)
    answered = node.world.clock.seconds()
    node.advance(10)
    second = Node(ocs, store, at=answered + 15)  # down for 5 s
    second.restore_all()
    assert len(second.callmap) == 1 and second.engine.active_sessions == 1
    second.advance(3)  # 18 s of talk
    world = second.world
    if side == "caller":
        world.send(in_dialog("BYE", ok, cseq=2, branch="z9hG4bK-bye"))
        assert statuses(world.take(SBC)) == [200]
        (bye,) = requests(world.take(CALLEE), "BYE")
        assert bye.call_id == b_invite.call_id and bye.from_tag == b_invite.from_tag
        world.send(make_response(bye, 200), CALLEE)
    else:
        world.send(callee_request(b_invite, "BYE", 7, "z9hG4bK-bbye"), CALLEE)
        assert statuses(world.take(CALLEE)) == [200]
        (bye,) = requests(world.take(SBC), "BYE")
        assert bye.call_id == KEY and bye.from_tag == ok.to_tag
        world.send(make_response(bye, 200))
    second.advance(1)
    (ccr_t,) = second.ccrs()
    assert kind(ccr_t) == (CCR_T, 1)
    assert used_of(ccr_t) == 18
    assert_gone(second)


def test_restored_call_relays_a_reinvite_and_records_the_new_target() -> None:
    """A re-INVITE after a restart is relayed; its 2xx's new Contact is written at once."""
    store: dict[str, bytes] = {}
    ocs = TinyOcs({SUBSCRIBER: 600})
    node = Node(ocs, store)
    _b_invite, ok = connect(node)
    second = Node(ocs, store, at=node.world.clock.seconds() + 5)
    second.restore_all()
    world = second.world
    reinvite = in_dialog("INVITE", ok, cseq=2, branch="z9hG4bK-re").replace(
        b"Max-Forwards: 70\r\n", b"Max-Forwards: 70\r\nContact: <sip:alice@127.0.0.1:5070>\r\n"
    )
    world.send(reinvite)
    (relayed,) = requests(world.take(CALLEE), "INVITE")
    ok2 = make_response(relayed, 200)
    ok2.headers.add("Contact", "<sip:bob@127.0.0.1:5090>")
    world.send(ok2, CALLEE)
    assert 200 in statuses(world.take(SBC))
    assert record(second)["call"]["b"]["dialog"]["remote_target"] == "sip:bob@127.0.0.1:5090"


def test_restored_call_gets_its_ccr_u_on_time_with_the_next_number() -> None:
    """The CCR-U of a restored call goes out at grant - timer_buffer, numbered 1."""
    store: dict[str, bytes] = {}
    ocs = TinyOcs({SUBSCRIBER: 600})
    node = Node(ocs, store)
    connect(node)
    answered = node.world.clock.seconds()
    node.advance(10)
    second = Node(ocs, store, at=answered + 15)
    second.restore_all()
    second.advance(6.9)
    assert second.ccrs() == []
    second.advance(0.2)  # 22 s of talk: 30 granted, 8 of buffer
    (ccr_u,) = second.ccrs()
    assert kind(ccr_u) == (CCR_U, 1)
    assert used_of(ccr_u) == 22
    second.advance(1)
    assert decode_record(store[KEY])["ro"]["sessions"][0]["session"]["next_number"] == 2


# -- a restored call is ended ---------------------------------------------------------------


def bye_reasons(node: Node) -> tuple[str | None, str | None]:
    """The Reason headers of the BYEs sent to the caller and to the callee."""
    (a_bye,) = requests(node.world.take(SBC), "BYE")
    (b_bye,) = requests(node.world.take(CALLEE), "BYE")
    return a_bye.headers.get("reason"), b_bye.headers.get("reason")


@pytest.mark.parametrize("final", [True, False])
def test_grant_run_out_while_down_ends_the_call_at_its_deadline(final: bool) -> None:
    """BYE to both legs, CCR-T for the seconds up to the end of the grant, not up to now."""
    store: dict[str, bytes] = {}
    ocs = TinyOcs({SUBSCRIBER: 30 if final else 600})
    node = Node(ocs, store)
    connect(node)
    answered = node.world.clock.seconds()
    node.advance(10)
    assert record(node)["ro"]["sessions"][0]["session"]["final"] is final
    second = Node(ocs, store, at=answered + 40)
    second.restore_all()
    a_reason, b_reason = bye_reasons(second)
    assert a_reason == b_reason == 'SIP;cause=402;text="credit exhausted"'
    (ccr_t,) = second.ccrs()
    assert kind(ccr_t) == (CCR_T, 1)
    assert used_of(ccr_t) == 30
    assert second.engine.stats.killed_calls == 1


def test_adopted_with_end_byes_both_legs_and_reports_up_to_now() -> None:
    """end=True: BYE to both legs and a CCR-T for the seconds up to now."""
    store: dict[str, bytes] = {}
    ocs = TinyOcs({SUBSCRIBER: 600})
    node = Node(ocs, store)
    connect(node)
    answered = node.world.clock.seconds()
    node.advance(10)
    second = Node(ocs, store, at=answered + 15)
    second.restore_all(end=True)
    a_reason, b_reason = bye_reasons(second)
    assert a_reason == b_reason == 'SIP;text="shutdown"'
    (ccr_t,) = second.ccrs()
    assert kind(ccr_t) == (CCR_T, 1)
    assert used_of(ccr_t) == 15
    (call,) = second.callmap.calls()
    assert call.end_reason is EndReason.SHUTDOWN


def test_adopted_with_end_after_the_deadline_reports_the_grant() -> None:
    """end=True after the grant ran out: the CCR-T reports the grant, min(now, deadline)."""
    store: dict[str, bytes] = {}
    ocs = TinyOcs({SUBSCRIBER: 600})
    node = Node(ocs, store)
    connect(node)
    answered = node.world.clock.seconds()
    second = Node(ocs, store, at=answered + 100)
    second.restore_all(end=True)
    (ccr_t,) = second.ccrs()
    assert used_of(ccr_t) == 30


# -- Ro sessions without a restorable call --------------------------------------------------


def test_ringing_call_gets_a_ccr_t_for_zero_seconds() -> None:
    """A call still ringing at the crash is not restored; its Ro session's CCR-T reports 0."""
    store: dict[str, bytes] = {}
    ocs = TinyOcs({SUBSCRIBER: 600})
    node = Node(ocs, store)
    node.world.send(invite())
    node.advance(0.1)
    (b_invite,) = requests(node.world.take(CALLEE), "INVITE")
    node.world.send(reply(b_invite, 180), CALLEE)
    data = record(node)
    assert data["call"] is None and data["ro"] is not None
    second = Node(ocs, store, at=START + 30)
    second.restore_all()
    assert len(second.callmap) == 0
    (ccr_t,) = second.ccrs()
    assert kind(ccr_t) == (CCR_T, 1) and used_of(ccr_t) == 0
    second.advance(1)
    assert_gone(second)


def test_answered_unconfirmed_call_reports_talk_up_to_saved_at() -> None:
    """Answered but not ACKed at the crash: the CCR-T reports answer -> saved_at."""
    store: dict[str, bytes] = {}
    ocs = TinyOcs({SUBSCRIBER: 600})
    node = Node(ocs, store)
    node.world.send(invite())
    node.advance(0.1)
    (b_invite,) = requests(node.world.take(CALLEE), "INVITE")
    node.world.send(reply(b_invite, 200), CALLEE)
    answered = node.world.clock.seconds()
    node.world.clock.advance(4)
    node.changed(KEY)  # a write at 4 s of talk (the store writes what it is told to)
    second = Node(ocs, store, at=answered + 50)
    second.restore_all()
    (ccr_t,) = second.ccrs()
    assert used_of(ccr_t) == 4


def test_ccr_u_in_flight_is_sent_again_with_the_t_flag() -> None:
    """A CCR-U unanswered at the crash goes again: same number, T flag, no Destination-Host."""
    store: dict[str, bytes] = {}
    ocs = TinyOcs({SUBSCRIBER: 600})
    node = Node(ocs, store)
    connect(node)
    answered = node.world.clock.seconds()
    node.client.hold = True
    node.advance(23)
    assert kind(node.ccrs()[-1]) == (CCR_U, 1)
    assert record(node)["ro"]["sessions"][0]["session"]["pending"]["number"] == 1
    second = Node(ocs, store, at=answered + 25)
    second.restore_all()
    (again,) = second.ccrs()
    assert kind(again) == (CCR_U, 1) and used_of(again) == 22
    assert again.flags & FLAG_RETRANSMIT and again.get("Destination-Host") is None
    second.advance(1)
    assert decode_record(store[KEY])["ro"]["sessions"][0]["session"]["pending"] is None


def test_kept_ccr_t_is_sent_again_after_a_restart() -> None:
    """A CCR-T no OCS took has its own record; a restart sends it again with the T flag."""
    store: dict[str, bytes] = {}
    ocs = TinyOcs({SUBSCRIBER: 600})
    node = Node(ocs, store)
    _b_invite, ok = connect(node)
    node.advance(12)
    node.client.failures.extend([NoPeerAvailable(), NoPeerAvailable()])
    node.world.send(in_dialog("BYE", ok, cseq=2, branch="z9hG4bK-bye"))
    node.advance(1)
    (kept,) = node.engine.pending_terminations
    key = f"ccrt:{kept.session_id}"
    assert sorted(store) == [key] == node.recorder.keys()
    second = Node(ocs, store, at=START + 100)
    second.restore_all()
    second.advance(1)
    (again,) = second.ccrs()
    assert kind(again) == (CCR_T, 1) and used_of(again) == 12
    assert again.flags & FLAG_RETRANSMIT
    assert second.engine.pending_terminations == [] and store == {}


def test_ccr_t_in_flight_is_sent_again_after_a_restart() -> None:
    """A CCR-T unanswered at the crash goes again (T flag, same number, same seconds)."""
    store: dict[str, bytes] = {}
    ocs = TinyOcs({SUBSCRIBER: 600})
    node = Node(ocs, store)
    _b_invite, ok = connect(node)
    node.advance(12)
    node.client.hold = True
    node.world.send(in_dialog("BYE", ok, cseq=2, branch="z9hG4bK-bye"))
    assert kind(node.ccrs()[-1]) == (CCR_T, 1)
    data = record(node)
    assert data["call"] is None and data["ro"]["sessions"][0]["session"]["state"] == "PENDING_T"
    second = Node(ocs, store, at=START + 300)
    second.restore_all()
    (again,) = second.ccrs()
    assert kind(again) == (CCR_T, 1) and used_of(again) == 12
    assert again.flags & FLAG_RETRANSMIT
    second.advance(1)
    assert_gone(second)


def test_refused_call_is_never_written() -> None:
    """A CCR-I refused (no credit): no listener call, no record."""
    store: dict[str, bytes] = {}
    node = Node(TinyOcs({}), store)  # unknown subscriber: 5030
    node.world.send(invite())
    node.advance(1)
    assert statuses(node.world.take(SBC))[-1] == 403
    assert node.changes == [] and store == {}


def test_uncharged_call_is_recorded_and_restored_without_ro() -> None:
    """A route without charging: the record has the call only; restored, a BYE is relayed."""
    store: dict[str, bytes] = {}
    ocs = TinyOcs({})
    node = Node(ocs, store, charging="off")
    world = node.world
    world.send(invite())
    (b_invite,) = requests(world.take(CALLEE), "INVITE")
    world.send(reply(b_invite, 200), CALLEE)
    ok = world.take(SBC)[-1]
    assert isinstance(ok, Response)
    world.send(in_dialog("ACK", ok, cseq=1, branch="z9hG4bK-ack"))
    data = record(node)
    assert data["ro"] is None and data["call"]["route"] == "out"
    second = Node(ocs, store, at=START + 60)
    second.restore_all()
    second.world.send(callee_request(b_invite, "BYE", 3, "z9hG4bK-bbye"), CALLEE)
    (bye,) = requests(second.world.take(SBC), "BYE")
    second.world.send(make_response(bye, 200))
    assert second.ccrs() == [] and store == {}


# -- bad records ----------------------------------------------------------------------------


def _break(data: dict[str, Any], how: str) -> None:
    if how == "version":
        data["v"] = 2
    elif how == "dialog":
        del data["call"]["b"]["dialog"]["local_tag"]
    elif how == "uri":
        data["call"]["a"]["dialog"]["remote_target"] = "sip:<<bad"
    elif how == "session":
        data["ro"]["sessions"][0]["session"]["next_number"] = "one"
    elif how == "context":
        del data["ro"]["sessions"][0]["context"]["subscriber"]
    elif how == "state":
        data["ro"]["sessions"][0]["session"]["state"] = "WHATEVER"


@pytest.mark.parametrize("how", ["version", "dialog", "uri", "session", "context", "state"])
def test_bad_record_raises_and_leaves_nothing_behind(how: str) -> None:
    """A record that cannot be restored raises RecordError; no call, session or timer stays."""
    store: dict[str, bytes] = {}
    ocs = TinyOcs({SUBSCRIBER: 600})
    node = Node(ocs, store)
    connect(node)
    data = json.loads(store[KEY])
    _break(data, how)
    second = Node(ocs, {}, at=START + 5)
    with pytest.raises(RecordError):
        second.recorder.restore(data, second.world.clock.seconds())
    assert len(second.callmap) == 0 and second.engine.active_sessions == 0
    assert len(second.world.wheel) == 0 and second.ccrs() == [] and second.changes == []


def test_restoring_twice_is_refused() -> None:
    """The same record restored twice: the second time raises, the first call is intact."""
    store: dict[str, bytes] = {}
    ocs = TinyOcs({SUBSCRIBER: 600})
    node = Node(ocs, store)
    connect(node)
    second = Node(ocs, store, at=START + 5)
    data = record(node)
    second.recorder.restore(data, second.world.clock.seconds())
    with pytest.raises(RecordError):
        second.recorder.restore(data, second.world.clock.seconds())
    assert len(second.callmap) == 1 and second.engine.active_sessions == 1


# -- the listener ---------------------------------------------------------------------------


def test_listener_hears_each_change_and_finally_nothing_is_left() -> None:
    """CCA-I, answer, confirmation, CCR-U/CCA-U, BYE, CCA-T each notify; then no record."""
    store: dict[str, bytes] = {}
    ocs = TinyOcs({SUBSCRIBER: 600})
    node = Node(ocs, store)
    node.world.send(invite())
    assert node.changes == [] and store == {}  # CCR-I sent: nothing to keep yet
    node.advance(0.1)
    assert node.changes == [KEY] and KEY in store  # CCA-I granted
    (b_invite,) = requests(node.world.take(CALLEE), "INVITE")
    node.world.send(reply(b_invite, 200), CALLEE)
    assert record(node)["call"] is None  # answered, not confirmed
    ok = node.world.take(SBC)[-1]
    assert isinstance(ok, Response)
    count = len(node.changes)
    node.world.send(in_dialog("ACK", ok, cseq=1, branch="z9hG4bK-ack"))
    assert len(node.changes) == count + 1 and record(node)["call"] is not None
    count = len(node.changes)
    node.advance(22.1)
    assert len(node.changes) >= count + 2  # CCR-U sent (number 2 next), CCA-U answered
    assert record(node)["ro"]["sessions"][0]["session"]["budget"] == 52
    node.world.send(in_dialog("BYE", ok, cseq=2, branch="z9hG4bK-bye"))
    assert record(node)["call"] is None
    assert record(node)["ro"]["sessions"][0]["session"]["pending"]["type"] == CCR_T
    node.advance(1)
    assert store == {} and node.changes[-1] == KEY
    assert node.recorder.record_of(KEY, node.world.clock.seconds()) is None
    assert node.recorder.keys() == []


def test_keys_lists_every_record() -> None:
    """keys() names the confirmed calls and the charged calls (for shutdown mode)."""
    store: dict[str, bytes] = {}
    node = Node(TinyOcs({SUBSCRIBER: 600}), store)
    connect(node)
    assert node.recorder.keys() == [KEY] == sorted(store)


def test_without_a_listener_records_are_still_complete() -> None:
    """Shutdown mode (nobody listening): keys() and record_of() still give every call."""
    node = Node(TinyOcs({SUBSCRIBER: 600}), {})
    node.recorder._listeners.clear()
    _b_invite, ok = connect(node)
    node.advance(5)
    assert node.recorder.keys() == [KEY]
    data = node.recorder.record_of(KEY, node.world.clock.seconds())
    assert data is not None and data["call"] is not None and data["ro"] is not None
    node.world.send(in_dialog("BYE", ok, cseq=2, branch="z9hG4bK-bye"))
    node.advance(1)
    assert node.recorder.keys() == [] and node.recorder._charged == {}


# -- through the store service (b2bua.store.service on its in-memory twin) ------------------


def served(node: Node, store: MemoryStore, instance: str, adopt: str) -> StoreService:
    """A realtime store service of ``node`` on ``store``, started."""
    settings = StoreSettings(mode="realtime", lease_time=10.0, renew_interval=2.0, adopt=adopt)
    service = StoreService(
        store,
        settings,
        node.world.clock,
        Codec(encode_record, decode_record, RecordError),
        instance=instance,
        refuse=lambda reason: None,
    )
    service.attach(node.recorder)
    if node.gate is not None:
        service.use_gate(node.gate)
    service.startService()
    node.world.clock.advance(0)
    return service


@pytest.mark.parametrize("adopt", ["end", "continue"])
def test_a_survivor_adopts_the_calls_of_a_dead_instance(adopt: str) -> None:
    """Two instances on one store; the one holding a call dies; the other ends or continues it.

    Either way the subscriber is charged exactly the talk time, once.
    """
    ocs = TinyOcs({SUBSCRIBER: 600})
    dead, survivor = Node(ocs, {}), Node(ocs, {})
    store = MemoryStore(survivor.world.clock.seconds)
    served(dead, store, "i1", adopt)
    served(survivor, store, "i2", adopt)
    b_invite, _ok = connect(dead)
    answered = dead.world.clock.seconds()
    survivor.advance(answered - survivor.world.clock.seconds())
    for _ in range(200):  # both alive for 10 s, in step
        dead.world.clock.advance(0.05)
        survivor.world.clock.advance(0.05)
    assert set(store.records.get("i1", {})) == {KEY}
    adopted_at = None
    for _ in range(60):  # the lease (10 s) runs out; the next renewal round adopts
        survivor.advance(0.25)
        if adopted_at is None and survivor.callmap.calls():
            adopted_at = survivor.world.clock.seconds()
    assert adopted_at is not None and 19.9 <= adopted_at - answered <= 22.1
    if adopt == "end":
        assert requests(survivor.world.take(SBC), "BYE")
        assert requests(survivor.world.take(CALLEE), "BYE")
        talk = adopted_at - answered
    else:
        survivor.world.send(callee_request(b_invite, "BYE", 7, "z9hG4bK-bbye"), CALLEE)
        (bye,) = requests(survivor.world.take(SBC), "BYE")
        survivor.world.send(make_response(bye, 200))
        talk = survivor.world.clock.seconds() - answered
    survivor.advance(2)
    ccrs = dead.ccrs() + survivor.ccrs()
    assert [kind(ccr)[0] for ccr in ccrs].count(CCR_T) == 1
    billed = sum(used_of(ccr) or 0 for ccr in ccrs)
    assert talk <= billed < talk + 1
    assert ocs.balances[SUBSCRIBER] == 600 - billed
    assert store.records.get("i1", {}) == {} and store.records.get("i2", {}) == {}


def test_a_restarted_instance_takes_its_calls_back_through_the_store() -> None:
    """Same instance id after a crash: its records come back, the call is charged to the end."""
    ocs = TinyOcs({SUBSCRIBER: 600})
    first = Node(ocs, {})
    clock = {"now": first.world.clock.seconds}

    def now() -> float:  # the store's clock: whichever process is running
        return clock["now"]()

    store = MemoryStore(now)
    served(first, store, "i1", "end")
    _b_invite, ok = connect(first)
    answered = first.world.clock.seconds()
    first.advance(10)
    second = Node(ocs, {}, at=answered + 15)
    clock["now"] = second.world.clock.seconds
    service = served(second, store, "i1", "end")
    assert service.stats.restored == 1 and len(second.callmap) == 1
    second.advance(10)  # the CCR-U at 22 s of talk, from the restarted instance
    second.world.send(in_dialog("BYE", ok, cseq=2, branch="z9hG4bK-bye"))
    (bye,) = requests(second.world.take(CALLEE), "BYE")
    second.world.send(make_response(bye, 200), CALLEE)
    second.advance(1)
    ccrs = first.ccrs() + second.ccrs()
    assert [kind(ccr) for ccr in ccrs] == [(CCR_I, 0), (CCR_U, 1), (CCR_T, 2)]
    assert sum(used_of(ccr) or 0 for ccr in ccrs) == 25
    assert store.records.get("i1", {}) == {}


def test_a_restore_before_the_peers_are_up_relays_at_once_and_charges_later() -> None:
    """Restarted while Diameter still connects: the BYE is relayed at once (no 481), the
    CCR-U due meanwhile and the CCR-T wait for the peer; the talk time is billed exactly."""
    ocs = TinyOcs({SUBSCRIBER: 600})
    first = Node(ocs, {})
    clock = {"now": first.world.clock.seconds}

    def now() -> float:  # the store's clock: whichever process is running
        return clock["now"]()

    store = MemoryStore(now)
    served(first, store, "i1", "end")
    _b_invite, ok = connect(first)
    answered = first.world.clock.seconds()
    first.advance(10)
    second = Node(ocs, {}, at=answered + 25, usable=False)  # the CCR-U at 22 s is overdue
    clock["now"] = second.world.clock.seconds
    served(second, store, "i1", "end")
    assert len(second.callmap) == 1 and second.ccrs() == []
    second.advance(2)
    second.world.send(in_dialog("BYE", ok, cseq=2, branch="z9hG4bK-bye"))
    (bye,) = requests(second.world.take(CALLEE), "BYE")
    second.world.send(make_response(bye, 200), CALLEE)
    second.advance(1)
    assert second.ccrs() == [] and second.engine.active_sessions == 1
    second.peers.come_up()
    second.advance(1)
    ccrs = first.ccrs() + second.ccrs()
    assert [kind(ccr)[0] for ccr in ccrs] == [CCR_I, CCR_U, CCR_T]
    assert sum(used_of(ccr) or 0 for ccr in ccrs) == 27
    assert second.engine.active_sessions == 0 and len(second.callmap) == 0
    assert store.records.get("i1", {}) == {}


def test_a_paused_instance_adopted_meanwhile_leaves_the_call_to_the_survivor() -> None:
    """SIGSTOP past the lease, a survivor ends the call (adopt = end), SIGCONT: the paused
    instance drops the call without BYE or CCR; one CCR-T in all, the talk billed once."""
    ocs = TinyOcs({SUBSCRIBER: 600})
    paused, survivor = Node(ocs, {}, usable=True), Node(ocs, {})
    store = MemoryStore(survivor.world.clock.seconds)
    paused_store = served(paused, store, "i1", "end")
    served(survivor, store, "i2", "end")
    _b_invite, _ok = connect(paused)
    answered = paused.world.clock.seconds()
    survivor.advance(answered - survivor.world.clock.seconds())
    for _ in range(100):  # both alive for 5 s, in step
        paused.world.clock.advance(0.05)
        survivor.world.clock.advance(0.05)
    assert set(store.records.get("i1", {})) == {KEY}
    adopted_at = None
    for _ in range(80):  # SIGSTOP: only the survivor's time runs; it adopts and ends
        survivor.advance(0.25)
        if adopted_at is None and survivor.callmap.calls():
            adopted_at = survivor.world.clock.seconds()
    assert adopted_at is not None
    assert requests(survivor.world.take(SBC), "BYE")
    assert requests(survivor.world.take(CALLEE), "BYE")
    sent_before = len(paused.ccrs())
    paused.world.take(SBC)
    paused.world.take(CALLEE)
    store.available = False  # SIGCONT, and Redis is slow to answer the renewal
    paused.advance(survivor.world.clock.seconds() - paused.world.clock.seconds())
    assert paused_store.fenced() and paused.gate is not None and paused.gate.held == 1
    store.available = True
    paused.advance(2.5)  # the renewal: the call was adopted
    assert paused_store.stats.leases_lost == 1 and paused.gate.dropped == 1
    assert len(paused.ccrs()) == sent_before
    assert paused.world.take(SBC) == [] and paused.world.take(CALLEE) == []
    assert len(paused.callmap) == 0 and paused.engine.active_sessions == 0
    ccrs = paused.ccrs() + survivor.ccrs()
    assert [kind(ccr)[0] for ccr in ccrs].count(CCR_T) == 1
    billed = sum(used_of(ccr) or 0 for ccr in ccrs)
    talk = adopted_at - answered
    assert talk <= billed < talk + 1
    assert ocs.balances[SUBSCRIBER] == 600 - billed
    survivor.advance(2)
    paused.advance(2)
    assert store.records.get("i1", {}) == {} and store.records.get("i2", {}) == {}


def test_forgetting_a_kept_ccr_t_drops_it_unsent() -> None:
    """A kept CCR-T a survivor adopted is dropped here: never resent by this instance."""
    store: dict[str, bytes] = {}
    ocs = TinyOcs({SUBSCRIBER: 600})
    node = Node(ocs, store)
    _b_invite, ok = connect(node)
    node.advance(5)
    node.client.failures.extend([NoPeerAvailable(), NoPeerAvailable()])
    node.world.send(in_dialog("BYE", ok, cseq=2, branch="z9hG4bK-bye"))
    node.advance(1)
    (kept,) = node.engine.pending_terminations
    sent = len(node.ccrs())
    assert node.recorder.forget(f"ccrt:{kept.session_id}") == [kept.session_id]
    node.advance(120)
    assert node.engine.pending_terminations == [] and len(node.ccrs()) == sent
    assert node.recorder.forget(f"ccrt:{kept.session_id}") == []


def test_forgetting_a_call_sends_nothing_on_either_side() -> None:
    """A call a survivor adopted is dropped without BYE, CCR or CDR event; its later
    in-dialog requests find no call."""
    store: dict[str, bytes] = {}
    ocs = TinyOcs({SUBSCRIBER: 600})
    node = Node(ocs, store)
    _b_invite, ok = connect(node)
    node.advance(5)
    sent = len(node.ccrs())
    (session_id,) = node.engine.session_ids_of(node.callmap.calls()[0].id)
    assert node.recorder.forget(KEY) == [session_id]
    node.advance(60)
    assert len(node.ccrs()) == sent
    assert node.world.take(SBC) == [] and node.world.take(CALLEE) == []
    assert len(node.callmap) == 0 and node.engine.active_sessions == 0
    node.world.send(in_dialog("BYE", ok, cseq=2, branch="z9hG4bK-bye"))
    assert statuses(node.world.take(SBC)) == [481]
    assert node.recorder.forget(KEY) == []
