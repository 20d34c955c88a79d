"""The store contract against a real redis-server, and the Redis-only behaviour.

Each test works under its own key prefix on the session-wide server (``redis_server``).
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
import pytest_twisted  # type: ignore[import-untyped]  # no py.typed
from twisted.internet.defer import Deferred, ensureDeferred

from b2bua.config import RedisUrl, StoreSettings
from b2bua.store.base import CallStore
from b2bua.store.redis import RedisStore, connect_store
from tests.ocs.redis_fixture import RedisServer, ping, redis_server
from tests.ocs.test_backend_redis import in_reactor
from tests.store.store_contract import LEASE, StoreContract
from tests.support.freediameter import Pki, make_pki
from tests.support.ports import free_port

pytestmark = pytest.mark.integration

__all__ = ["redis_server"]  # the session fixture, re-exported for pytest to find here


def settings_for(server: RedisServer, **options: Any) -> StoreSettings:
    """[store] settings on the test server under a fresh prefix."""
    options.setdefault("key_prefix", f"test:{uuid4().hex[:12]}:")
    options.setdefault("connect_timeout", 2.0)
    return StoreSettings(mode="realtime", url=RedisUrl(server.host, server.port), **options)


class _Stores:
    """Stores opened by one test, closed at its end."""

    def __init__(self, server: RedisServer) -> None:
        from twisted.internet import reactor  # noqa: TID251 - pytest-twisted's running reactor

        self.server = server
        self.reactor: Any = reactor
        self.opened: list[RedisStore] = []

    def open(self, **options: Any) -> RedisStore:
        store = connect_store(settings_for(self.server, **options), self.reactor)
        self.opened.append(store)
        return store

    def close(self) -> None:
        for store in self.opened:
            pytest_twisted.blockon(store.close())


@pytest.fixture
def stores(redis_server: RedisServer) -> Iterator[_Stores]:
    """Opens stores on the test server; closes them after the test."""
    opened = _Stores(redis_server)
    try:
        yield opened
    finally:
        opened.close()


class TestRedisContract(StoreContract):
    """The shared contract against Redis, one key prefix per test."""

    @pytest.fixture(autouse=True)
    def _server(self, stores: _Stores) -> None:
        self.stores = stores

    def make_store(self) -> CallStore:
        """A store under a fresh prefix."""
        return self.stores.open()

    def expire(self, store: CallStore, instance: str) -> Deferred[None]:
        """Delete the lease key: what its TTL does, without waiting for it."""
        assert isinstance(store, RedisStore)
        deleted: Deferred[Any] = store.redis.delete(store._key("lease", instance))
        return deleted.addCallback(lambda _: None)

    def run(self, test: Any) -> Deferred[None]:
        """pytest-twisted waits in the reactor for the Deferred a test returns."""
        return ensureDeferred(test)


@in_reactor
async def test_lease_key_has_the_lease_time_as_ttl(stores: _Stores) -> None:
    """take_over sets the lease with a TTL of lease_time, and the instance in the set."""
    store = stores.open()
    await store.take_over("a", 12.5)
    ttl = await store.redis.execute_command("PTTL", store._key("lease", "a"))
    assert 12_000 < ttl <= 12_500
    assert await store.redis.smembers(store._key("instances")) == {b"a"}


@in_reactor
async def test_records_live_in_one_hash_per_instance(stores: _Stores) -> None:
    """The documented key schema: P calls:ID is a hash of call key -> record bytes."""
    store = stores.open()
    await store.take_over("a", LEASE)
    await store.write("a", [("c1", b"{}")])
    assert await store.redis.hgetall(store._key("calls", "a")) == {b"c1": b"{}"}


@in_reactor
async def test_unreachable_redis_fails_within_the_deadline(stores: _Stores) -> None:
    """With nothing listening, a command fails after connect_timeout instead of hanging."""
    dead = RedisServer(stores.server.host, 1, stores.server.directory, stores.server.process)
    store = connect_store(settings_for(dead, connect_timeout=0.2), stores.reactor)
    with pytest.raises(Exception):  # noqa: B017 - refused or timed out, both fine
        await store.take_over("a", LEASE)
    store.redis._factory.stopTrying()


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[RedisServer, Pki]]:
    """A redis-server that speaks TLS only, with an ACL user b2bua (password s3cret)."""
    pki = make_pki(tmp_path / "pki")
    port = free_port()
    process = subprocess.Popen(
        [
            "redis-server",
            *("--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1"),
            *("--tls-cert-file", str(pki.server_cert), "--tls-key-file", str(pki.server_key)),
            *("--tls-ca-cert-file", str(pki.ca), "--tls-auth-clients", "no"),
            *("--save", "", "--appendonly", "no", "--dir", str(tmp_path)),
            *("--user", "b2bua", "on", ">s3cret", "~*", "&*", "+@all"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = RedisServer("127.0.0.1", port, tmp_path, process)
    deadline = time.monotonic() + 10
    while process.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            break
        time.sleep(0.05)
    if process.poll() is not None:
        pytest.fail("redis-server did not start with TLS")
    try:
        yield server, pki
    finally:
        server.stop()


def _tls_settings(server: RedisServer, ca: Path) -> StoreSettings:
    return StoreSettings(
        mode="realtime",
        url=RedisUrl("127.0.0.1", server.port, 0, "s3cret", "b2bua", tls=True),
        ca_file=str(ca),
        key_prefix=f"test:{uuid4().hex[:12]}:",
        connect_timeout=3.0,
    )


@in_reactor
async def test_rediss_with_an_acl_user_and_a_verified_certificate(
    tls_redis: tuple[RedisServer, Pki], stores: _Stores
) -> None:
    """rediss://b2bua:s3cret@...: TLS checked against ca_file, AUTH as the ACL user, works."""
    server, pki = tls_redis
    store = connect_store(_tls_settings(server, pki.ca), stores.reactor)
    stores.opened.append(store)
    await store.take_over("a", LEASE)
    await store.write("a", [("c1", b"one")])
    assert await store.take_over("a", LEASE) == {"c1": b"one"}


@in_reactor
async def test_rediss_refuses_a_server_the_ca_does_not_vouch_for(
    tls_redis: tuple[RedisServer, Pki], stores: _Stores, tmp_path: Path
) -> None:
    """A server certificate from another CA is not accepted: the command fails."""
    server, _ = tls_redis
    other = make_pki(tmp_path / "other")
    store = connect_store(_tls_settings(server, other.ca), stores.reactor)
    with pytest.raises(Exception):  # noqa: B017 - the TLS handshake fails, then the deadline
        await store.take_over("a", LEASE)
    store.redis._factory.stopTrying()


@pytest.fixture
def sentinel(redis_server: RedisServer, tmp_path: Path) -> Iterator[tuple[str, int]]:
    """A Redis Sentinel (redis-server --sentinel) watching the test server as "testmaster"."""
    port = free_port()
    config = tmp_path / "sentinel.conf"
    config.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor testmaster {redis_server.host} {redis_server.port} 1\n"
    )
    process = subprocess.Popen(
        ["redis-server", str(config), "--sentinel", "--logfile", str(tmp_path / "sentinel.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = RedisServer("127.0.0.1", port, tmp_path, process)
    deadline = time.monotonic() + 10
    while not ping("127.0.0.1", port) and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield ("127.0.0.1", port)
    finally:
        server.stop()


@in_reactor
async def test_the_master_is_found_through_sentinel(
    sentinel: tuple[str, int], stores: _Stores
) -> None:
    """With sentinels set, the store asks them for the master and works on it."""
    settings = replace(
        settings_for(stores.server), sentinels=(sentinel,), sentinel_master="testmaster"
    )
    store = connect_store(settings, stores.reactor)
    stores.opened.append(store)
    await store.take_over("a", LEASE)
    await store.write("a", [("c1", b"one")])
    direct = stores.open(key_prefix=settings.key_prefix)
    assert await direct.take_over("a", LEASE) == {"c1": b"one"}
