"""The Redis backend against a real redis-server: the contract, concurrency, the script.

Each test works under its own key prefix on one session-wide server (`redis_server`).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, ParamSpec, cast
from uuid import uuid4

import pytest
import pytest_twisted  # type: ignore[import-untyped]  # no py.typed
from twisted.internet.defer import Deferred, ensureDeferred, gatherResults

from b2bua.ocs.accounts import Account, OcsBackend
from b2bua.ocs.backend_memory import MemoryBackend
from b2bua.ocs.backend_redis import SCRIPT_SHA, RedisBackend, connect_redis_backend
from b2bua.ocs.ledger import Ledger
from b2bua.ocs.rating import CreditPolicy, Rating, ResultCode
from tests.ocs.backend_contract import ALICE, ALICE_KEY, SMS, VIDEO, VOICE, BackendContract
from tests.ocs.backend_contract import result_of as memory_result
from tests.ocs.redis_fixture import RedisServer, redis_server

pytestmark = pytest.mark.integration
P = ParamSpec("P")

__all__ = ["redis_server"]  # the session fixture, re-exported for pytest to find here


def _prefix() -> str:
    return f"test:{uuid4().hex[:12]}:"


class _Connections:
    """Backends opened by one test, disconnected at its end."""

    def __init__(self, server: RedisServer) -> None:
        self.server = server
        self.opened: list[RedisBackend] = []

    def open(self, prefix: str, **options: Any) -> Deferred[RedisBackend]:
        def keep(backend: RedisBackend) -> RedisBackend:
            self.opened.append(backend)
            return backend

        return connect_redis_backend(
            self.server.host, self.server.port, prefix=prefix, **options
        ).addCallback(keep)

    def close(self) -> None:
        for backend in self.opened:
            pytest_twisted.blockon(backend.disconnect())


@pytest.fixture
def connections(redis_server: RedisServer) -> Iterator[_Connections]:
    """Opens backends on the test server; closes them after the test."""
    opened = _Connections(redis_server)
    try:
        yield opened
    finally:
        opened.close()


def in_reactor(test: Callable[P, Coroutine[Any, Any, None]]) -> Callable[P, Deferred[None]]:
    """pytest_twisted.ensureDeferred, typed: the coroutine test runs in the reactor."""
    wrapped: Callable[P, Deferred[None]] = pytest_twisted.ensureDeferred(test)
    return wrapped


async def _held(backend: OcsBackend, kind: str = "seconds") -> int:
    """What all sessions of ALICE hold reserved."""
    snapshot = await backend.get_account(ALICE)
    assert snapshot is not None
    return snapshot.reserved[kind]


class TestRedisContract(BackendContract):
    """The shared contract against Redis, one key prefix per test."""

    @pytest.fixture(autouse=True)
    def _server(self, connections: _Connections) -> None:
        self.connections = connections

    def make_backend(
        self, *, rating: Rating, policy: CreditPolicy, ledger: Ledger
    ) -> Deferred[OcsBackend]:
        """A Redis backend under a fresh prefix: no accounts, no sessions."""
        opened = self.connections.open(_prefix(), rating=rating, policy=policy, ledger=ledger)
        return cast("Deferred[OcsBackend]", opened)

    def run(self, test: Coroutine[Any, Any, None]) -> Deferred[None]:
        """pytest-twisted waits in the reactor for the Deferred a test returns."""
        return ensureDeferred(test)


@in_reactor
async def test_concurrent_reservations_never_over_grant(connections: _Connections) -> None:
    """Two OCS instances racing 200 reservations on one account grant exactly its balance."""
    prefix = _prefix()
    first = await connections.open(prefix)
    second = await connections.open(prefix)
    await first.provision([Account(ALICE, {"seconds": 500})])
    answers = await gatherResults(
        [
            (first if n % 2 else second).reserve(ALICE, f"c{n}", 0, VOICE, requested=7, now=0)
            for n in range(200)
        ]
    )
    assert sum(answer.granted for answer in answers) == 500
    assert sum(answer.success for answer in answers) == 72  # 71 x 7 s, then 3 s
    assert {a.result_code for a in answers if not a.success} == {ResultCode.CREDIT_LIMIT_REACHED}
    assert await _held(second) == 500
    ends = await gatherResults(
        [
            (second if n % 2 else first).terminate(f"c{n}", 1, VOICE, used=answer.granted, now=9)
            for n, answer in enumerate(answers)
            if answer.success
        ]
    )
    assert sum(end.debited for end in ends) == 500
    snapshot = await first.get_account(ALICE)
    assert snapshot is not None
    assert (snapshot.balances["seconds"], snapshot.reserved["seconds"]) == (0, 0)


@in_reactor
async def test_concurrent_direct_debits_never_overdraw(connections: _Connections) -> None:
    """100 SMS racing through two instances for 37 events: exactly 37 are paid for."""
    prefix = _prefix()
    first = await connections.open(prefix)
    second = await connections.open(prefix)
    await first.provision([Account(ALICE, {"events": 37})])
    answers = await gatherResults(
        [
            (first, second)[n % 2].direct_debit(ALICE, f"m{n}", 0, SMS, units=1, now=0)
            for n in range(100)
        ]
    )
    assert sum(answer.success for answer in answers) == 37
    assert await _held(first, "events") == 0
    snapshot = await second.get_account(ALICE)
    assert snapshot is not None
    assert snapshot.balances["events"] == 0


@in_reactor
async def test_concurrent_mixed_traffic_keeps_the_books(connections: _Connections) -> None:
    """Concurrent calls, updates and SMS debits from two instances: no credit made or lost."""
    prefix = _prefix()
    ledger = Ledger(keep=True)
    first = await connections.open(prefix, ledger=ledger)
    second = await connections.open(prefix, ledger=ledger)
    await first.provision([Account(ALICE, {"seconds": 300, "events": 20})])
    backends = (first, second)
    await gatherResults(
        [
            backends[n % 2].reserve(
                ALICE, f"c{n}", 0, VIDEO if n % 3 else VOICE, requested=20, now=0
            )
            for n in range(30)
        ]
    )
    updates = [
        backends[(n + 1) % 2].update(
            f"c{n}", 1, VIDEO if n % 3 else VOICE, used=n % 25, requested=10, now=20
        )
        for n in range(30)
    ]
    sms = [backends[n % 2].direct_debit(ALICE, f"m{n}", 0, SMS, units=1, now=20) for n in range(40)]
    results = await gatherResults(updates + sms)
    assert sum(r.success for r in results[30:]) == 20
    snapshot = await first.get_account(ALICE)
    assert snapshot is not None
    seconds_cost = sum(e.cost for e in ledger.entries if e.kind == "seconds")
    assert snapshot.balances["seconds"] == 300 - seconds_cost >= 0
    assert snapshot.balances["events"] == 0
    held = sum(r.granted * (2 if r.rating_group == VIDEO else 1) for r in results[:30])
    assert snapshot.reserved["seconds"] == held <= snapshot.balances["seconds"]


@in_reactor
async def test_retransmission_through_another_instance(connections: _Connections) -> None:
    """A CCR-U retried on a second OCS sharing the Redis gets the stored answer (failover)."""
    prefix = _prefix()
    first = await connections.open(prefix)
    second = await connections.open(prefix)
    await first.provision([Account(ALICE, {"seconds": 100})])
    await first.reserve(ALICE, "s1", 0, VOICE, requested=30, now=0)
    original = await first.update("s1", 1, VOICE, used=30, requested=30, now=30)
    retried = await second.update("s1", 1, VOICE, used=30, requested=30, now=31)
    assert retried.duplicate and retried.balance_after == original.balance_after == 70
    snapshot = await second.get_account(ALICE)
    assert snapshot is not None
    assert snapshot.balances["seconds"] == 70


@in_reactor
async def test_evalsha_falls_back_to_eval(connections: _Connections) -> None:
    """After SCRIPT FLUSH the backend reloads its script with EVAL and carries on."""
    backend = await connections.open(_prefix())
    await backend.provision([Account(ALICE, {"seconds": 100})])
    await backend.redis.execute_command("SCRIPT", "FLUSH")
    assert await backend.redis.execute_command("SCRIPT", "EXISTS", SCRIPT_SHA) == [0]
    result = await backend.reserve(ALICE, "s1", 0, VOICE, requested=30, now=0)
    assert result.granted == 30
    assert await backend.redis.execute_command("SCRIPT", "EXISTS", SCRIPT_SHA) == [1]


def _pairs(flat: list[str]) -> dict[str, str]:
    return dict(zip(flat[0::2], flat[1::2], strict=True))


@in_reactor
async def test_key_schema_and_prefix(connections: _Connections) -> None:
    """Keys live under the configured prefix in the documented layout; prefixes isolate."""
    prefix = _prefix()
    backend = await connections.open(prefix, policy=CreditPolicy(session_retention=77))
    other = await connections.open(_prefix())
    await backend.provision([Account(ALICE, {"seconds": 100}, {VIDEO: 1})])
    await backend.reserve(ALICE, "open", 0, VOICE, requested=30, now=0)
    await backend.reserve(ALICE, "done", 0, VOICE, requested=5, now=0)
    await backend.terminate("done", 1, VOICE, used=5, now=5)
    call = backend.redis.execute_command
    names = ("accounts", f"acct:{ALICE_KEY}", "sess:open", "ans:open", "sess:done", "ans:done")
    assert sorted(await call("KEYS", prefix + "*")) == sorted(
        prefix + name for name in (*names, "stale", "closed")
    )
    assert _pairs(await call("HGETALL", f"{prefix}acct:{ALICE_KEY}")) == {
        "bal:seconds": "95",
        "res:seconds": "30",
        "bal:events": "0",
        "res:events": "0",
        "rate:200": "1",
    }
    session = _pairs(await call("HGETALL", f"{prefix}sess:open"))
    assert session == {
        "sub": ALICE_KEY,
        "n": "0",
        "o:0": "INITIAL",
        "closed": "0",
        "exp": "600",
        "u:100": "30",
        "c:100": "30",
        "k:100": "seconds",
        "q:100": "1",
    }
    assert await call("HKEYS", f"{prefix}ans:open") == ["0:100"]
    assert await call("ZRANGE", prefix + "stale", 0, -1) == ["open"]
    assert await call("ZRANGE", prefix + "closed", 0, -1, "WITHSCORES") == ["done", "5"]
    assert 0 < await call("TTL", prefix + "sess:done") <= 77
    assert await call("TTL", prefix + "sess:open") == -1
    assert await other.get_account(ALICE) is None


Op = Callable[[OcsBackend], Deferred[Any]]


def _call(method: str, *args: Any, **kwargs: Any) -> Op:
    """An operation to replay on any backend."""
    return lambda backend: getattr(backend, method)(*args, **kwargs)


def _recreate(subscriber: str) -> Op:
    """Delete an account and create it again with a small balance."""

    def op(backend: OcsBackend) -> Deferred[Any]:
        account = Account(subscriber, {"seconds": 40, "events": 2})
        return backend.delete_account(subscriber).addCallback(
            lambda _: backend.create_account(account)
        )

    return op


def _top_up(subscriber: str, kind: str, amount: int) -> Op:
    """A top-up whose failure (unknown subscriber) is compared by its type."""

    def op(backend: OcsBackend) -> Deferred[Any]:
        return backend.top_up(subscriber, kind, amount).addErrback(
            lambda failure: type(failure.value).__name__
        )

    return op


def _random_traffic(seed: int, steps: int) -> list[Op]:
    """A reproducible mix of every operation, in and out of sequence, with retransmissions."""
    rng = random.Random(seed)
    subscribers = ["+15550100", "sip:bob@lab.example", "sip:carol@lab.example"] * 3 + ["+15559999"]
    numbers: dict[str, int] = {}
    last: dict[str, Op] = {}
    ops: list[Op] = []
    now = 0.0
    for index in range(steps):
        now += rng.choice([0, 0.5, 1, 2, 5, 10, 30, 120])
        sub = rng.choice(subscribers)
        rg = rng.choice([VOICE, VOICE, VIDEO, SMS] * 4 + [999])
        recent = sorted(numbers)[-6:]  # session ids sort by creation within a width
        pick = rng.random()
        if pick < 0.2 or not numbers:
            sid = f"s{index:04d}"
            numbers[sid] = 0
            requested = rng.choice([None, 0, 1, 10, 30, 60])
            validity = rng.choice([None, 30, 300])
            op = last[sid] = _call(
                "reserve", sub, sid, 0, rg, requested=requested, now=now, validity=validity
            )
        elif pick < 0.45:
            sid = rng.choice(recent)
            step = rng.choice([1, 1, 1, 1, 0, 2, -1, -3, -9, 12])
            numbers[sid] = (numbers[sid] + step) % 2**32
            op = last[sid] = _call(
                "update", sid, numbers[sid], rng.choice([VOICE, VIDEO, rg]),
                used=rng.randint(0, 70), requested=rng.choice([None, 0, 30]), now=now,
            )  # fmt: skip
        elif pick < 0.55:
            sid = rng.choice(recent)
            numbers[sid] = (numbers[sid] + 1) % 2**32
            op = last[sid] = _call(
                "terminate", sid, numbers[sid], rng.choice([VOICE, VIDEO, rg]),
                used=rng.randint(0, 70), now=now,
            )  # fmt: skip
        elif pick < 0.65:
            sid = f"e{index}"
            method = "refund" if rng.random() < 0.2 else "direct_debit"
            op = last[sid] = _call(method, sub, sid, 0, rg, units=rng.randint(0, 4), now=now)
        elif pick < 0.75:
            op = last[rng.choice(sorted(last))]  # a retransmission
        elif pick < 0.8:
            op = _call("check_balance", sub, rg, now=now, units=20)
        elif pick < 0.84:
            op = _call("price_enquiry", sub, rg, units=7, now=now)
        elif pick < 0.9:
            op = _call("expire_stale", now)
        elif pick < 0.96:
            op = _top_up(sub, rng.choice(["seconds", "events"]), rng.randint(0, 100))
        else:
            op = _recreate(sub)
        ops.append(op)
    return ops


@pytest.mark.parametrize("seed", range(8))
@in_reactor
async def test_memory_and_redis_agree_on_random_traffic(
    connections: _Connections, seed: int
) -> None:
    """Replaying one random request mix on both backends gives identical answers and books."""
    accounts = [
        Account("+15550100", {"seconds": 200, "events": 5}),
        Account("sip:bob@lab.example", {"seconds": 90, "events": 1}, {VIDEO: 1}),
        Account("sip:carol@lab.example", {"seconds": 0, "events": 9}),
    ]
    policy = CreditPolicy(default_validity=60, stale_grace=10, request_window=8)
    memory_ledger, redis_ledger = Ledger(keep=True), Ledger(keep=True)
    memory = MemoryBackend(policy=policy, ledger=memory_ledger)
    redis = await connections.open(_prefix(), policy=policy, ledger=redis_ledger)
    memory_result(memory.provision(accounts))
    await redis.provision(accounts)
    for index, op in enumerate(_random_traffic(seed, 400)):
        expected = memory_result(op(memory))
        observed = await op(redis)
        assert observed == expected, f"step {index}"
    for account in accounts:
        observed = await redis.get_account(account.subscriber)
        assert observed == memory_result(memory.get_account(account.subscriber))
    assert redis_ledger.entries == memory_ledger.entries
