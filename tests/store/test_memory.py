"""The store contract against MemoryStore, and what only the twin does."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock

from b2bua.store.base import CallStore
from b2bua.store.memory import MemoryStore, StoreUnavailable
from tests.ocs.backend_contract import result_of, run_now
from tests.store.store_contract import LEASE, StoreContract


class TestMemoryContract(StoreContract):
    """The shared contract against the in-memory twin."""

    def make_store(self) -> CallStore:
        """A fresh twin on its own clock."""
        self.clock = Clock()
        return MemoryStore(self.clock.seconds)

    def expire(self, store: CallStore, instance: str) -> Deferred[None]:
        """Move the clock past every lease."""
        self.clock.advance(LEASE)
        return succeed(None)

    def run(self, test: Any) -> None:
        """The twin's answers have all fired: the test runs to its end at once."""
        run_now(test)


def test_unavailable_twin_fails_every_operation() -> None:
    """With available = False each operation gives a failed Deferred, not an exception."""
    store = MemoryStore(Clock().seconds)
    store.available = False
    failed = store.write("a", [("k", b"v")])
    failures: list[Any] = []
    failed.addErrback(failures.append)
    assert failures[0].check(StoreUnavailable)
    store.available = True
    assert result_of(store.take_over("a", LEASE)) == {}
