"""The store side of the fault matrix (issues 8 and 11): killed b2bua, Redis away, paused instance.

Same lab and checks as the other fault cases (`tests.support.faultlab`), with ``[store] mode =
realtime`` on a real redis-server and the lab OCS as its own process behind the Diameter
relay, so that it outlives a killed b2bua. Each case checks the SIP outcome, one
CCR-Termination per Ro session opened (from the relay's log), the seconds reported equal
to the talk time within 1 s (from the CDRs), nothing left live in the daemon (calls, Ro
sessions, transactions, Diameter requests, kept CCR-Ts, wheel timers), no record left in
Redis, and no traceback in any log. The last case is the matrix's "memory back to its
baseline": live objects counted through the manhole after a burst of calls.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest

from tests.integration.test_ocs_shared_redis import redis_command
from tests.ocs.redis_fixture import RedisServer, redis_server, start_redis_server
from tests.support.faultlab import TRACKED, FaultLab, wait_until
from tests.support.sipp import run_until_done, stat

__all__ = ["redis_server"]  # the session fixture, re-exported for pytest to find here

pytestmark = pytest.mark.integration

#: 10 s grants, the CCR-U 1 s before the end: a restart (or an adoption, lease_time 4 s)
#: happens within the first grant, so the talk time is all granted.
UNITS = "reservation_units = 10\ninterim_update_credits = 10\ntimer_buffer = 1\n"


def store(redis: RedisServer, prefix: str, instance: str, extra: str = "") -> str:
    """A realtime ``[store]`` section: lease 4 s, renewed every second."""
    return (
        f"[store]\nmode = realtime\nurl = redis://{redis.host}:{redis.port}/0\n"
        f"key_prefix = {prefix}\ninstance_id = {instance}\n"
        "lease_time = 4\nrenew_interval = 1\nconnect_timeout = 0.5\n" + extra
    )


def stored(redis: RedisServer, prefix: str) -> list[str]:
    """Every call hash under ``prefix`` in Redis (an empty hash does not exist)."""
    keys: list[str] = redis_command(redis, "KEYS", f"{prefix}calls:*")
    return keys


@pytest.fixture
def labs(tmp_path: Path) -> Iterator[list[FaultLab]]:
    """Labs a test starts; all closed (and their logs checked) at the end."""
    started: list[FaultLab] = []
    yield started
    for lab in started:
        lab.close()


@pytest.fixture
def prefix() -> str:
    return f"test:faults:{uuid4().hex[:8]}:"


def test_b2bua_killed_mid_call_and_restarted(
    labs: list[FaultLab], tmp_path: Path, redis_server: RedisServer, prefix: str
) -> None:
    """SIGKILL mid-call, started again: the call is restored, charged on (a CCR-U from the new
    process), the caller's BYE relayed; one CCR-T, the talk time billed, nothing left."""
    lab = FaultLab(
        tmp_path, charging=UNITS, ocs="standalone", store=store(redis_server, prefix, "b2b-1")
    )
    labs.append(lab)
    callee = lab.callee()
    caller = lab.caller(hold_ms=12000)
    lab.daemon.wait_for_log(": answered")
    wait_until(lambda: stored(redis_server, prefix), "the call in Redis")
    lab.restart(kill=True)
    lab.daemon.wait_for_log("1 record(s) to restore")
    assert run_until_done(caller, callee, timeout=40) == [0, 0], caller.report()
    cdr = wait_until(lab.cdrs, "a CDR")[0]
    assert cdr["end_reason"] == "caller hung up", cdr
    lab.check_clean(timeout=30)
    (used,) = lab.check_money().values()
    assert used >= 11, used
    updates = [r for r in lab.relay_records() if r["dir"] == "request" and r["type"] == 2]
    assert updates, lab.relay_records()  # the grant ran on past the restart
    wait_until(lambda: not stored(redis_server, prefix), "no record left in Redis")


def test_redis_stopped_and_restarted_mid_call(
    labs: list[FaultLab], tmp_path: Path, prefix: str
) -> None:
    """Redis away longer than the lease mid-call, back without its data: the call goes on,
    its writes wait and are replayed; billed exactly, Redis empty at the end."""
    redis = start_redis_server(tmp_path / "redis")
    try:
        lab = FaultLab(tmp_path, charging=UNITS, ocs="standalone", store=store(redis, prefix, "r1"))
        labs.append(lab)
        callee = lab.callee()
        caller = lab.caller(hold_ms=12000)
        lab.daemon.wait_for_log(": answered")
        wait_until(lambda: stored(redis, prefix), "the call in Redis")
        redis.stop()
        lab.daemon.wait_for_log("is unreachable", timeout=10)
        time.sleep(5.0)  # past lease_time (4 s): alone on its Redis, b2bua is not fenced
        redis = start_redis_server(tmp_path / "redis", port=redis.port)
        lab.daemon.wait_for_log("is back", timeout=10)
        wait_until(lambda: stored(redis, prefix), "the call written again")
        assert run_until_done(caller, callee, timeout=40) == [0, 0], caller.report()
        cdr = wait_until(lab.cdrs, "a CDR")[0]
        assert cdr["end_reason"] == "caller hung up", cdr
        lab.check_clean(timeout=30)
        assert len(lab.check_money()) == 1
        wait_until(lambda: not stored(redis, prefix), "no record left in Redis")
    finally:
        redis.stop()


def test_instance_paused_beyond_its_lease(
    labs: list[FaultLab], tmp_path: Path, redis_server: RedisServer, prefix: str
) -> None:
    """SIGSTOP past the lease: the survivor adopts the call and ends it (BYE both legs,
    CCR-T); SIGCONT: the paused instance drops it without BYE or CCR (its CCR-U falls due
    then and is held, then dropped). One CCR-T, the talk time billed once."""
    lab = FaultLab(
        tmp_path, charging=UNITS, ocs="standalone", store=store(redis_server, prefix, "b2b-a")
    )
    labs.append(lab)
    survivor, console = lab.start_instance(
        "b2b-b", store(redis_server, prefix, "b2b-b", "adopt = end\n")
    )
    callee = lab.callee()
    caller = lab.caller("charged_uac_wait_bye.xml")
    lab.daemon.wait_for_log(": answered")
    answered = time.monotonic()
    wait_until(lambda: stored(redis_server, prefix), "the call in Redis")
    lab.daemon.process.send_signal(signal.SIGSTOP)
    try:
        survivor.wait_for_log("store: instance b2b-a is dead", timeout=15)
        assert run_until_done(caller, callee, timeout=30) == [0, 0], caller.report()
        time.sleep(max(0.0, answered + 9.5 - time.monotonic()))  # the CCR-U is due at 9 s
    finally:
        lab.daemon.process.send_signal(signal.SIGCONT)
    lab.daemon.wait_for_log("dropped here without BYE or CCR-T", timeout=10)
    assert "adopted by another instance; forgotten here" in lab.daemon.log_text()
    assert ": ended" not in lab.daemon.log_text()  # no BYE, no CCR-T, no CDR from it
    held = lab.console.run("print('DROPPED', store.gate.dropped)")
    assert "DROPPED 1" in held, held  # the CCR-U due at SIGCONT was held, then dropped
    cdr = wait_until(lab.cdrs, "a CDR")[0]
    assert cdr["end_reason"] == "shutdown", cdr
    lab.check_clean(timeout=20)
    lab.settle(console=console)
    (used,) = lab.check_money().values()
    requests = [r for r in lab.relay_records() if r["dir"] == "request"]
    assert [r["type"] for r in requests] == [1, 3], requests  # no CCR-U from either
    assert used >= 4, used  # at least the lease
    wait_until(lambda: not stored(redis_server, prefix), "no record left in Redis")


def test_memory_back_to_its_baseline_after_a_burst(
    labs: list[FaultLab], tmp_path: Path, redis_server: RedisServer, prefix: str
) -> None:
    """200 short charged calls, all ended: as many call, dialog, transaction, Ro session and
    Deferred objects live as before, and the total within less than one object per call."""
    lab = FaultLab(  # the OCS in its own process: its session history is not b2bua's memory
        tmp_path,
        ocs="standalone",
        charging="reservation_units = 30\n",
        sip="t1 = 0.05\nt4 = 0.1\n",
        store=store(redis_server, prefix, "burst"),
    )
    labs.append(lab)

    def burst(calls: int) -> dict[str, int]:
        callee = lab.callee(calls=calls)
        caller = lab.caller(hold_ms=100, calls=calls, rate=50)
        assert run_until_done(caller, callee, timeout=60) == [0, 0], caller.report()
        assert stat(caller, "SuccessfulCall") == calls
        lab.check_clean(timeout=30)
        return lab.objects()

    baseline = burst(20)  # the first calls fill caches (compiled patterns, interned names)
    after = burst(200)
    assert {name: after[name] for name in TRACKED} == {name: baseline[name] for name in TRACKED}
    assert after["total"] - baseline["total"] < 200, (baseline, after)
    assert len(lab.check_money()) == 220
    assert not stored(redis_server, prefix)
