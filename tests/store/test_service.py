"""The store service on the in-memory twin and a Clock: write-through, queue, leases."""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock

from b2bua.config import RedisUrl, StoreSettings
from b2bua.ops.metrics import Sources, collect
from b2bua.store.gate import CcrGate
from b2bua.store.memory import MemoryStore
from b2bua.store.recovery import RecordError, decode_record, encode_record, session_ids
from b2bua.store.service import Codec, StoreService, instance_name, make_store_service
from tests.diameter.factories import ccr_update
from tests.store.test_gate import FakePeers

CODEC = Codec(encode_record, decode_record, RecordError)
SETTINGS = StoreSettings(
    mode="realtime",
    url=RedisUrl("redis.example", password="s3cret-pw"),
    lease_time=10.0,
    renew_interval=2.0,
    queue_limit=100,
)


class FakeRecorder:
    """Records as dicts; restore keeps what it was given (RecordError for a bad one)."""

    def __init__(self) -> None:
        self.live: dict[str, dict[str, Any]] = {}
        self.listeners: list[Callable[[str], None]] = []
        self.restored: list[tuple[str, bool]] = []
        self.forgotten: list[str] = []
        self.client: CcrGate | None = None  # restore sends the record's CCRs through it

    def listen(self, changed: Callable[[str], None]) -> None:
        self.listeners.append(changed)

    def change(self, key: str, state: int) -> None:
        self.live[key] = {"v": 1, "key": key, "state": state}
        for listener in self.listeners:
            listener(key)

    def end(self, key: str) -> None:
        del self.live[key]
        for listener in self.listeners:
            listener(key)

    def record_of(self, key: str, now: float) -> dict[str, Any] | None:
        return self.live.get(key)

    def keys(self) -> list[str]:
        return sorted(self.live)

    def restore(self, record: dict[str, Any], now: float, *, end: bool = False) -> None:
        if record.get("bad"):
            raise RecordError("bad record")
        self.restored.append((record["key"], end))
        if not end:
            self.live[record["key"]] = record
        if self.client is not None:
            for session_id in session_ids(record):
                self.client.send_request(ccr_update(session_id))

    def forget(self, key: str) -> list[str]:
        self.forgotten.append(key)
        self.live.pop(key, None)
        return [f"s-{key}"]


class Harness:
    """One instance: a service on a shared twin and clock, with a fake recorder."""

    def __init__(
        self,
        store: MemoryStore,
        clock: Clock,
        instance: str = "me",
        **settings: Any,
    ) -> None:
        self.refused: list[str] = []
        self.recorder = FakeRecorder()
        self.service = StoreService(
            store,
            replace(SETTINGS, **settings),
            clock,
            CODEC,
            instance=instance,
            refuse=self.refused.append,
        )
        self.service.attach(self.recorder)


def record(key: str, state: int = 0) -> bytes:
    return encode_record({"v": 1, "key": key, "state": state})


def stored(store: MemoryStore, instance: str = "me") -> dict[str, int]:
    return {
        key: decode_record(data)["state"] for key, data in store.records.get(instance, {}).items()
    }


def started(**settings: Any) -> tuple[Harness, MemoryStore, Clock]:
    clock = Clock()
    store = MemoryStore(clock.seconds)
    harness = Harness(store, clock, **settings)
    harness.service.startService()
    clock.advance(0)
    return harness, store, clock


def test_changes_in_one_turn_make_one_write() -> None:
    """Three changes of two calls in one reactor turn: one write holding the latest states."""
    harness, store, clock = started()
    before = store.commands
    harness.recorder.change("c1", 1)
    harness.recorder.change("c1", 2)
    harness.recorder.change("c2", 1)
    assert store.commands == before
    clock.advance(0)
    assert store.commands == before + 1
    assert stored(store) == {"c1": 2, "c2": 1}
    assert harness.service.stats.writes == 2


def test_an_ended_call_is_deleted() -> None:
    """When the recorder has no record left for a key, the stored record goes."""
    harness, store, clock = started()
    harness.recorder.change("c1", 1)
    clock.advance(0)
    harness.recorder.end("c1")
    clock.advance(0)
    assert stored(store) == {}


def test_start_restores_own_records_and_deletes_bad_ones() -> None:
    """At start the instance's records are restored; one that cannot be is counted and deleted."""
    clock = Clock()
    store = MemoryStore(clock.seconds)
    store.records["me"] = {"c1": record("c1"), "c2": b"not json", "c3": record("c3")}
    store.records["other"] = {"x": record("x")}
    harness = Harness(store, clock)
    harness.service.startService()
    assert harness.recorder.restored == []  # not before the other services have started
    clock.advance(0)
    assert harness.recorder.restored == [("c1", False), ("c3", False)]
    assert harness.service.stats.restored == 2
    assert harness.service.stats.bad_records == 1
    assert sorted(store.records["me"]) == ["c1", "c3"]


def test_a_record_the_recorder_refuses_is_deleted() -> None:
    """A RecordError from restore() deletes the record too."""
    clock = Clock()
    store = MemoryStore(clock.seconds)
    store.records["me"] = {"c1": encode_record({"v": 1, "key": "c1", "bad": True})}
    harness = Harness(store, clock)
    harness.service.startService()
    clock.advance(0)
    assert (harness.service.stats.bad_records, store.records.get("me")) == (1, None)


def test_redis_down_at_start_refuses_with_the_password_masked() -> None:
    """No Redis at start in realtime mode: refuse() is told why, without the password."""
    clock = Clock()
    store = MemoryStore(clock.seconds)
    store.available = False
    harness = Harness(store, clock)
    harness.service.startService()
    clock.advance(0)
    assert len(harness.refused) == 1
    assert "redis://:***@redis.example:6379/0" in harness.refused[0]
    assert "s3cret-pw" not in harness.refused[0] + repr(harness.service)


def test_start_without_redis_queues_and_restores_when_it_answers() -> None:
    """Degraded start: changes wait; once Redis answers, old records come back, then the queue."""
    clock = Clock()
    store = MemoryStore(clock.seconds)
    store.records["me"] = {"old": record("old", 7)}
    store.available = False
    harness = Harness(store, clock, start_without_redis=True)
    harness.service.startService()
    clock.advance(0)
    harness.recorder.change("new", 1)
    clock.advance(0)
    service = harness.service
    assert (harness.refused, service.queue_depth, service.redis_up) == ([], 1, False)
    store.available = True
    clock.advance(2.0)
    assert harness.recorder.restored == [("old", False)]
    assert stored(store) == {"old": 7, "new": 1}
    assert (harness.service.queue_depth, harness.service.redis_up) == (0, True)


def test_writes_wait_while_redis_is_down_and_are_replayed_in_order() -> None:
    """Redis lost mid-call: calls go on, each call's latest state waits, then is written."""
    harness, store, clock = started()
    harness.recorder.change("c1", 1)
    clock.advance(0)
    store.available = False
    harness.recorder.change("c1", 2)
    clock.advance(0)
    assert (harness.service.redis_up, harness.service.stats.write_errors) == (False, 1)
    harness.recorder.change("c2", 1)
    harness.recorder.change("c1", 3)
    clock.advance(0)
    harness.recorder.change("c2", 2)
    clock.advance(0)
    assert harness.service.queue_depth == 2
    assert stored(store) == {"c1": 1}
    store.available = True
    clock.advance(2.0)
    assert stored(store) == {"c1": 3, "c2": 2}
    assert harness.service.queue_depth == 0


def test_an_overflowing_queue_leads_to_every_call_written_again() -> None:
    """Past queue_limit the queue is not trusted: the stored set becomes exactly the live one."""
    harness, store, clock = started(queue_limit=2)
    harness.recorder.change("gone", 1)
    clock.advance(0)
    store.available = False
    for n in range(5):
        harness.recorder.change(f"c{n}", n)
        clock.advance(0)
    harness.recorder.end("gone")
    clock.advance(0)
    assert harness.service.queue.overflowed
    store.available = True
    clock.advance(2.0)
    assert stored(store) == {f"c{n}": n for n in range(5)}
    assert harness.service.stats.resyncs == 1


def test_a_survivor_adopts_a_dead_instance_once_its_lease_ran_out() -> None:
    """One instance stops renewing; after lease_time exactly one survivor restores its calls."""
    clock = Clock()
    store = MemoryStore(clock.seconds)
    dead = Harness(store, clock, "dead")
    survivor = Harness(store, clock, "survivor", adopt="continue")
    other = Harness(store, clock, "other")
    for harness in (dead, survivor, other):
        harness.service.startService()
    clock.advance(0)
    dead.recorder.change("c1", 5)
    clock.advance(0)
    dead.service._loop.stop()  # SIGKILL: no more renewals
    clock.advance(8.0)
    assert survivor.recorder.restored == other.recorder.restored == []
    for _ in range(3):
        clock.advance(2.0)
    adopted = survivor.recorder.restored + other.recorder.restored
    assert adopted == [("c1", False)]
    assert survivor.service.stats.adopted + other.service.stats.adopted == 1
    assert "dead" not in store.records


def test_adopt_end_restores_with_end() -> None:
    """adopt = end: the adopted calls are restored to be ended."""
    clock = Clock()
    store = MemoryStore(clock.seconds)
    store.records["dead"] = {"c1": record("c1")}
    store._registered.add("dead")
    survivor = Harness(store, clock, "survivor", adopt="end")
    survivor.service.startService()
    clock.advance(0)
    assert survivor.recorder.restored == [("c1", True)]


def test_shutdown_mode_writes_at_stop_and_reads_back_once() -> None:
    """mode = shutdown: nothing written per change; all calls at stop; read and cleared at start."""
    harness, store, clock = started(mode="shutdown")
    harness.recorder.change("c1", 1)
    harness.recorder.change("c2", 2)
    clock.advance(0)
    assert stored(store) == {}
    harness.service.stopService()
    assert stored(store) == {"c1": 1, "c2": 2}
    again = Harness(store, clock, mode="shutdown")
    again.service.startService()
    clock.advance(0)
    assert sorted(again.recorder.restored) == [("c1", False), ("c2", False)]
    assert stored(store) == {}


def test_stop_flushes_the_changes_of_the_current_turn() -> None:
    """A change made in the same turn as the stop is still written."""
    harness, store, _ = started()
    harness.recorder.change("c1", 1)
    done = harness.service.stopService()
    assert done.called
    assert stored(store) == {"c1": 1}


def test_lease_is_renewed_every_interval() -> None:
    """The lease stays alive as long as the instance renews it."""
    _, store, clock = started()
    for _ in range(20):
        clock.advance(2.0)
    assert store._leased("me")


def test_instance_name_defaults_to_the_host_name() -> None:
    """An empty instance_id means the host name; a set one is used as is."""
    assert instance_name(SETTINGS) == socket.gethostname()
    assert instance_name(replace(SETTINGS, instance_id="b2b-1")) == "b2b-1"


def test_a_lost_lease_means_every_call_is_written_again() -> None:
    """Redis restarted without its data (lease and records gone): the next renewal rewrites all."""
    harness, store, clock = started(mode="realtime")
    harness.recorder.change("c1", 1)
    harness.recorder.change("c2", 2)
    clock.advance(0)
    store.records.clear()
    store._leases.clear()
    clock.advance(2.0)
    assert stored(store) == {"c1": 1, "c2": 2}
    assert harness.service.stats.resyncs == 1


def test_metrics_show_the_store() -> None:
    """/metrics carries Redis up/down, the queue depth and the store's counters."""
    harness, store, clock = started()
    harness.recorder.change("c1", 1)
    clock.advance(0)
    store.available = False
    harness.recorder.change("c2", 1)
    clock.advance(0)
    values = {
        family.name: family.samples[0].value for family in collect(Sources(store=harness.service))
    }
    assert values["b2bua_store_redis_up"] == 0
    assert values["b2bua_store_queue_depth"] == 1
    assert values["b2bua_store_writes_total"] == 1
    assert values["b2bua_store_write_errors_total"] == 1
    assert values["b2bua_store_records_restored_total"] == 0


def test_redis_lost_during_the_adoption_check_is_a_link_failure() -> None:
    """A failing instances()/adopt() marks Redis down (one warning), no traceback."""
    harness, store, clock = started()
    calls = {"n": 0}
    real = store.instances

    def flaky() -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            return fail(ConnectionError("gone"))
        return real()

    store.instances = flaky  # type: ignore[method-assign]
    clock.advance(2.0)
    assert harness.service.redis_up is False
    clock.advance(2.0)
    assert harness.service.redis_up is True


def test_shutdown_mode_retries_the_delete_of_restored_records_not_a_write() -> None:
    """shutdown mode: if deleting the records read back fails, the delete is retried later;
    the live state is never written while running (it would be stale after a crash)."""
    clock = Clock()
    store = MemoryStore(clock.seconds)
    store.records["me"] = {"c1": record("c1", 4)}
    harness = Harness(store, clock, mode="shutdown")
    real_write = store.write
    failing = {"on": True}

    def write(instance: str, changes: Any) -> Any:
        if failing["on"]:
            return fail(ConnectionError("gone"))
        return real_write(instance, changes)

    store.write = write  # type: ignore[method-assign]
    harness.service.startService()
    clock.advance(0)
    assert harness.recorder.restored == [("c1", False)]
    assert harness.service.queue.take() == [("c1", None)]
    harness.service.queue.put("c1", None)
    failing["on"] = False
    clock.advance(2.0)
    assert stored(store) == {}


def test_records_arriving_after_the_stop_are_not_restored() -> None:
    """A take-over answered after the stop began restores nothing; the records stay stored."""
    clock = Clock()
    store = MemoryStore(clock.seconds)
    store.records["me"] = {"c1": record("c1")}
    harness = Harness(store, clock)
    answer: Deferred[dict[str, bytes]] = Deferred()
    store.take_over = lambda instance, lease: answer  # type: ignore[method-assign]
    harness.service.startService()
    clock.advance(0)
    harness.service.stopService()
    answer.callback({"c1": record("c1")})
    assert harness.recorder.restored == []
    assert "c1" in store.records["me"]


def test_a_ca_file_without_certificates_is_a_configuration_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """rediss:// with a ca_file that holds no PEM certificate: one line on stderr, exit 2."""
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate\n")
    settings = replace(SETTINGS, url=RedisUrl("redis.example", tls=True), ca_file=str(bad))
    with pytest.raises(SystemExit) as stopped:
        make_store_service(settings, Clock())
    assert stopped.value.code == 2
    assert capsys.readouterr().err.startswith("[store] ca_file ")


def test_restored_calls_ccrs_wait_for_a_usable_diameter_peer() -> None:
    """A restore one turn after the start holds its sessions' CCRs until a peer is usable."""
    clock = Clock()
    store = MemoryStore(clock.seconds)
    ro = {"sessions": [{"session_id": "s1"}]}
    store.records["me"] = {"c1": encode_record({"v": 1, "key": "c1", "ro": ro})}
    harness = Harness(store, clock)
    peers = FakePeers()
    harness.recorder.client = harness.service.guard(peers)
    harness.service.startService()
    clock.advance(0)
    assert harness.recorder.restored == [("c1", False)]
    assert peers.sent == []
    clock.advance(1.0)
    peers.come_up()
    assert peers.sent == [("s1", 2)]


def paused_pair() -> tuple[Harness, Harness, MemoryStore, Clock, FakePeers]:
    """Instances a and b; a wrote c1, then paused past its lease and b adopted c1."""
    clock = Clock()
    store = MemoryStore(clock.seconds)
    a, b = Harness(store, clock, "a"), Harness(store, clock, "b", adopt="continue")
    peers = FakePeers(usable=True)
    gate = a.service.guard(peers)
    for harness in (a, b):
        harness.service.startService()
    clock.advance(0)
    a.recorder.change("c1", 1)
    clock.advance(2.0)  # a renewal round: each sees the other
    assert stored(store, "a") == {"c1": 1}
    a.service._loop.stop()  # SIGSTOP
    for _ in range(6):
        clock.advance(2.0)
    assert b.recorder.restored == [("c1", False)]
    assert a.service.fenced()
    gate.send_request(ccr_update("s-c1"))  # its timers fire on SIGCONT, before the renewal
    a.recorder.change("c2", 2)  # a call set up meanwhile: never written, not adopted
    clock.advance(0)
    return a, b, store, clock, peers


def test_a_paused_instance_drops_the_calls_a_survivor_adopted_without_a_word() -> None:
    """SIGCONT after the lease: nothing is sent or written until the renewal, which names
    the adopted calls; they are dropped silently, the others written again."""
    a, _, store, clock, peers = paused_pair()
    assert peers.sent == []
    assert "c2" not in store.records.get("a", {})
    a.service._loop.start(2.0, now=True)  # SIGCONT: the renewal
    assert a.recorder.forgotten == ["c1"]
    assert a.service.stats.leases_lost == 1
    assert peers.sent == [] and a.service.gate is not None and a.service.gate.dropped == 1
    assert stored(store, "a") == {"c2": 2}
    assert stored(store, "b") == {"c1": 1}
    assert not a.service.fenced()
    clock.advance(2.0)
    assert stored(store, "a") == {"c2": 2}


def test_a_paused_instance_not_adopted_sends_what_it_held() -> None:
    """Back before any survivor took its calls: the held CCRs go after the renewal."""
    clock = Clock()
    store = MemoryStore(clock.seconds)
    a, b = Harness(store, clock, "a"), Harness(store, clock, "b")
    peers = FakePeers(usable=True)
    gate = a.service.guard(peers)
    for harness in (a, b):
        harness.service.startService()
    clock.advance(0)
    a.recorder.change("c1", 1)
    clock.advance(2.0)
    a.service._loop.stop()
    b.service._loop.stop()  # nobody adopts
    clock.advance(11.0)
    gate.send_request(ccr_update("s-c1"))
    a.recorder.change("c1", 3)
    clock.advance(0)
    assert peers.sent == [] and stored(store, "a") == {"c1": 1}
    a.service._loop.start(2.0, now=True)
    assert peers.sent == [("s-c1", 2)]
    assert stored(store, "a") == {"c1": 3}
    assert a.recorder.forgotten == []


def test_a_single_instance_is_never_fenced_from_diameter() -> None:
    """Without other instances nobody can adopt: CCRs go on even past the lease."""
    harness, _, clock = started()
    peers = FakePeers(usable=True)
    gate = harness.service.guard(peers)
    clock.advance(2.0)
    harness.service._loop.stop()
    clock.advance(11.0)
    assert not harness.service.fenced()
    gate.send_request(ccr_update("s1"))
    assert peers.sent == [("s1", 2)]
