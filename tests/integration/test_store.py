"""Calls survive restarts and the loss of an instance: [store] on a real redis-server (issue 8).

Real processes on loopback: ``twistd ocs`` on its own (so that it outlives b2bua), one or
two ``twistd b2bua`` with ``[store] mode = realtime`` on one redis-server, SIPp on both
legs. The OCS ledger is read back: every Ro session has exactly one CCR-Termination, and
what was debited is the talk time (from the CCR-I to the CCR-T) within a second.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest

from b2bua.ocs.ledger import LedgerEntry, read_ledger
from tests.integration.test_ocs_shared_redis import redis_command
from tests.ocs.redis_fixture import RedisServer, redis_server, start_redis_server
from tests.support.daemon import Daemon, start_plugin
from tests.support.ports import free_port
from tests.support.sipp import Sipp, run_until_done

__all__ = ["redis_server"]  # the session fixture, re-exported for pytest to find here

pytestmark = pytest.mark.integration

SUBSCRIBER = "+15550101"
ACCOUNT = "15550101"
# 10 s grants, the CCR-U 1 s before the end: long enough for a restart or an adoption
# (lease_time 4 s) to happen within the first grant on a loaded machine.
CHARGING = "reservation_units = 10\ninterim_update_credits = 10\ntimer_buffer = 1\n"


class StoreLab:
    """The OCS, b2bua instances sharing Redis under one key prefix, SIPp legs."""

    def __init__(
        self,
        workdir: Path,
        redis: RedisServer,
        seconds: int,
        store: str = "",
        mode: str = "realtime",
    ) -> None:
        self.mode = mode
        self.dir = workdir
        self.redis = redis
        self.prefix = f"test:issue8:{uuid4().hex[:8]}:"
        self.store = store
        self.callee_port, self.ocs_port = free_port(), free_port()
        (workdir / "accounts.json").write_text(
            json.dumps({"accounts": [{"subscriber": SUBSCRIBER, "seconds": seconds}]})
        )
        self.ledger = workdir / "ledger.jsonl"
        ocs_conf = workdir / "ocs.conf"
        ocs_conf.write_text(
            f"[ocs]\nlisten = aaa://127.0.0.1:{self.ocs_port}\n"
            "origin_host = ocs.test\norigin_realm = test\n"
            f"accounts = accounts.json\nledger = {self.ledger}\n"
        )
        self.ocs = start_plugin("ocs", ocs_conf, log_path=workdir / "ocs.log")
        self.ocs.wait_for_log("OCS listening on")
        self.daemons: list[Daemon] = []
        self.sip_ports: dict[str, int] = {}
        self.sipps: list[Sipp] = []

    def config(self, instance: str) -> Path:
        port = self.sip_ports.setdefault(instance, free_port())
        path = self.dir / f"{instance}.conf"
        path.write_text(
            f"[sip]\nlisten = udp:127.0.0.1:{port}\n"
            "[calls]\ntrusted = 127.0.0.0/8\n"
            f"[route:all]\nnext_hop = 127.0.0.1:{self.callee_port}\ncharging = orig\n"
            f"[diameter]\norigin_host = {instance}.test\norigin_realm = test\n"
            "destination_realm = test\nreconnect_interval = 1\n"
            f"[peer:ocs]\nuri = aaa://127.0.0.1:{self.ocs_port}\nhost = ocs.test\n"
            f"[charging]\n{CHARGING}"
            "[metrics]\nlisten =\n"
            f"[store]\nmode = {self.mode}\n"
            f"url = redis://{self.redis.host}:{self.redis.port}/0\n"
            f"key_prefix = {self.prefix}\ninstance_id = {instance}\n"
            "lease_time = 4\nrenew_interval = 1\n" + self.store
        )
        return path

    def start(self, instance: str, run: int = 1) -> Daemon:
        """Start ``instance`` (again: a new log file) and wait until it took over."""
        daemon = Daemon(self.config(instance), log_path=self.dir / f"{instance}-{run}.log")
        self.daemons.append(daemon)
        daemon.wait_for_log(f"store: instance {instance} holds its lease")
        daemon.wait_for_log("Diameter peer ocs open")
        return daemon

    def callee(self) -> Sipp:
        sipp = Sipp("uas", self.dir, self.callee_port, timeout=60)
        self.sipps.append(sipp)
        return sipp.start()

    def caller(self, instance: str, scenario: str, hold_ms: int = 0) -> Sipp:
        extra = ["-key", "caller", SUBSCRIBER, "-d", str(hold_ms)]
        sipp = Sipp(
            scenario,
            self.dir,
            free_port(),
            remote=f"127.0.0.1:{self.sip_ports[instance]}",
            timeout=60,
            service="15550199",
            extra=extra,
        )
        self.sipps.append(sipp)
        return sipp.start()

    def entries(self) -> list[LedgerEntry]:
        return read_ledger(self.ledger) if self.ledger.exists() else []

    def wait_for_ledger(self, request_type: str, count: int = 1, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sum(e.request_type == request_type for e in self.entries()) >= count:
                return
            time.sleep(0.05)
        raise AssertionError(f"{count} {request_type} not in the ledger:\n{self.entries()}")

    def stored_calls(self, instance: str) -> list[str]:
        """The keys of ``instance``'s records in Redis now (the key schema of b2bua.store.redis)."""
        keys: list[str] = redis_command(self.redis, "HKEYS", f"{self.prefix}calls:{instance}")
        return keys

    def wait_until_stored_empty(self, instance: str, timeout: float = 5) -> None:
        deadline = time.monotonic() + timeout
        while self.stored_calls(instance) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert self.stored_calls(instance) == []

    def check_ledger_is_exact(self) -> list[LedgerEntry]:
        """One session, one CCR-I and one CCR-T; debited = CCR-I..CCR-T time within 1 s."""
        entries = [e for e in self.entries() if not e.duplicate]
        kinds = [e.request_type for e in entries]
        assert kinds[0] == "INITIAL" and kinds.count("INITIAL") == 1, kinds
        assert kinds[-1] == "TERMINATE" and kinds.count("TERMINATE") == 1, kinds
        assert len({e.session_id for e in entries}) == 1
        talk = entries[-1].time - entries[0].time
        debited = sum(e.debited for e in entries)
        assert abs(debited - talk) <= 1.0, (debited, talk, entries)
        return entries

    def close(self) -> None:
        for sipp in self.sipps:
            sipp.stop()
        for daemon in self.daemons:
            daemon.stop()
        self.ocs.stop()


@pytest.fixture
def make_lab(redis_server: RedisServer, tmp_path: Path) -> Iterator[object]:
    labs: list[StoreLab] = []

    def make(
        seconds: int = 600,
        store: str = "",
        redis: RedisServer | None = None,
        mode: str = "realtime",
    ) -> StoreLab:
        lab = StoreLab(tmp_path, redis or redis_server, seconds, store, mode)
        labs.append(lab)
        return lab

    yield make
    for lab in labs:
        lab.close()
        for daemon in lab.daemons:
            assert "Traceback" not in daemon.log_text(), daemon.log_text()


@pytest.mark.parametrize(
    ("mode", "stop"), [("realtime", "SIGKILL"), ("realtime", "SIGTERM"), ("shutdown", "SIGTERM")]
)
def test_a_call_survives_a_restart_and_is_charged_exactly(make_lab, mode: str, stop: str) -> None:
    """Killed (or stopped for an upgrade) mid-call and started again: the call keeps being
    charged (a CCR-U from the new process), the caller's BYE is relayed, the ledger is exact.
    mode = shutdown writes the call only at the stop."""
    lab = make_lab(mode=mode)
    first = lab.start("b2b-1")
    callee = lab.callee()
    caller = lab.caller("b2b-1", "charged_uac.xml", hold_ms=12000)
    first.wait_for_log(": answered")
    time.sleep(1.0)  # let the call be written after its answer
    assert len(lab.stored_calls("b2b-1")) == (1 if mode == "realtime" else 0)
    first.process.send_signal(getattr(signal, stop))
    status = first.process.wait(20)
    if stop == "SIGTERM":
        assert status == 0
        assert "leaving 1 call(s) up for the next start" in first.log_text()
    updates_before = sum(e.request_type == "UPDATE" for e in lab.entries())
    assert not any(e.request_type == "TERMINATE" for e in lab.entries())
    second = lab.start("b2b-1", run=2)
    assert "1 record(s) to restore" in second.log_text()
    assert run_until_done(caller, callee, timeout=40) == [0, 0], caller.report() + callee.report()
    lab.wait_for_ledger("TERMINATE")
    entries = lab.check_ledger_is_exact()
    assert sum(e.request_type == "UPDATE" for e in entries) > updates_before
    lab.wait_until_stored_empty("b2b-1")


def test_a_survivor_ends_the_calls_of_a_dead_instance(make_lab) -> None:
    """Two instances, adopt = end: after one is killed, the other adopts its call within the
    lease time, sends BYE to both legs and the CCR-T; the ledger is exact."""
    lab = make_lab(store="adopt = end\n")
    dead = lab.start("b2b-a")
    survivor = lab.start("b2b-b")
    callee = lab.callee()
    caller = lab.caller("b2b-a", "charged_uac_wait_bye.xml")
    dead.wait_for_log(": answered")
    time.sleep(1.0)
    dead.process.kill()
    killed_at = time.monotonic()
    survivor.wait_for_log("store: instance b2b-a is dead", timeout=15)
    assert time.monotonic() - killed_at < 4 + 1 + 2  # lease_time + renew_interval + slack
    assert run_until_done(caller, callee, timeout=30) == [0, 0], caller.report() + callee.report()
    lab.wait_for_ledger("TERMINATE")
    lab.check_ledger_is_exact()
    assert lab.stored_calls("b2b-a") == []


def test_a_survivor_continues_charging_the_calls_of_a_dead_instance(make_lab) -> None:
    """adopt = continue: the survivor sends the CCR-U and ends the call when the 12 s of
    credit are used up; exactly the credit is debited."""
    lab = make_lab(seconds=12, store="adopt = continue\n")
    dead = lab.start("b2b-a")
    survivor = lab.start("b2b-b")
    callee = lab.callee()
    caller = lab.caller("b2b-a", "charged_uac_wait_bye.xml")
    dead.wait_for_log(": answered")
    time.sleep(0.5)
    dead.process.kill()
    survivor.wait_for_log("store: instance b2b-a is dead", timeout=15)
    assert run_until_done(caller, callee, timeout=40) == [0, 0], caller.report() + callee.report()
    lab.wait_for_ledger("TERMINATE")
    entries = lab.entries()
    assert sum(e.debited for e in entries) == 12
    kinds = [e.request_type for e in entries]
    assert kinds == ["INITIAL", "UPDATE", "TERMINATE"], kinds
    assert "ended: credit exhausted" in survivor.log_text()


def test_redis_restarted_mid_call_drops_nothing(make_lab, tmp_path: Path) -> None:
    """Redis stopped and started again (without its data) mid-call: the call goes on and is
    billed exactly, the store is written again when Redis is back and empty at the end."""
    redis = start_redis_server(tmp_path / "redis")
    try:
        lab = make_lab(redis=redis, store="connect_timeout = 0.5\n")
        daemon = lab.start("b2b-1")
        callee = lab.callee()
        caller = lab.caller("b2b-1", "charged_uac.xml", hold_ms=14000)
        daemon.wait_for_log(": answered")
        redis.stop()
        daemon.wait_for_log("is unreachable", timeout=10)
        time.sleep(3.0)
        redis = start_redis_server(tmp_path / "redis", port=redis.port)
        lab.redis = redis
        daemon.wait_for_log("is back", timeout=10)
        daemon.wait_for_log("call(s) written", timeout=10)
        assert len(lab.stored_calls("b2b-1")) == 1
        assert run_until_done(caller, callee, timeout=40) == [0, 0], (
            caller.report() + callee.report()
        )
        lab.wait_for_ledger("TERMINATE")
        lab.check_ledger_is_exact()
        lab.wait_until_stored_empty("b2b-1")
    finally:
        redis.stop()


def test_redis_down_at_start_refuses_to_start(tmp_path: Path) -> None:
    """realtime with Redis unreachable: one critical line (password masked) and exit 1."""
    config = tmp_path / "b2bua.conf"
    config.write_text(
        f"[sip]\nlisten = udp:127.0.0.1:{free_port()}\n[metrics]\nlisten =\n"
        f"[store]\nmode = realtime\nurl = redis://:hunter2@127.0.0.1:{free_port()}/0\n"
        "connect_timeout = 1\n"
    )
    daemon = Daemon(config, log_path=tmp_path / "b2bua.log")
    assert daemon.process.wait(20) == 1
    log = daemon.log_text()
    assert "cannot start: [store] mode = realtime: Redis at redis://:***@127.0.0.1:" in log, log
    assert "hunter2" not in log
    daemon.stop()
