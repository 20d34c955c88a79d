"""The in-memory twin of the Redis store, for tests and single-process use (core).

Same semantics as :class:`~b2bua.store.redis.RedisStore`, leases included, with time
taken from an injected clock; every operation completes at once, which is what makes it
atomic. ``available = False`` makes every operation fail, the way Redis does when it
is down.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from twisted.internet.defer import Deferred, fail, succeed

from b2bua.store.base import Change, Renewal, Renewed

__all__ = ["MemoryStore", "StoreUnavailable"]

T = TypeVar("T")


class StoreUnavailable(ConnectionError):
    """The twin plays an unreachable Redis."""


class MemoryStore:
    """A :class:`~b2bua.store.base.CallStore` in a few dicts."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._now = clock
        self.available = True
        self.commands = 0
        self.records: dict[str, dict[str, bytes]] = {}
        self._leases: dict[str, float] = {}  # instance -> expiry
        self._adopted: dict[str, tuple[str, ...]] = {}  # dead instance -> keys taken
        self._registered: set[str] = set()

    def _leased(self, instance: str) -> bool:
        expiry = self._leases.get(instance)
        return expiry is not None and expiry > self._now()

    def _run(self, operation: Callable[[], T]) -> Deferred[T]:
        if not self.available:
            return fail(StoreUnavailable("the store is unavailable"))
        self.commands += 1
        return succeed(operation())

    def take_over(self, instance: str, lease: float) -> Deferred[dict[str, bytes]]:
        def take() -> dict[str, bytes]:
            self._leases[instance] = self._now() + lease
            self._registered.add(instance)
            self._adopted.pop(instance, None)
            return dict(self.records.get(instance, {}))

        return self._run(take)

    def renew(self, instance: str, lease: float) -> Deferred[Renewed]:
        def renew() -> Renewed:
            kept = self._leased(instance)
            self._leases[instance] = self._now() + lease
            self._registered.add(instance)
            if kept:
                return Renewed(Renewal.KEPT)
            taken = self._adopted.pop(instance, ())
            return Renewed(Renewal.ADOPTED, taken) if taken else Renewed(Renewal.EXPIRED)

        return self._run(renew)

    def write(self, instance: str, changes: Sequence[Change]) -> Deferred[None]:
        def write() -> None:
            records = self.records.setdefault(instance, {})
            for key, value in changes:
                if value is None:
                    records.pop(key, None)
                else:
                    records[key] = value
            if not records:
                del self.records[instance]

        return self._run(write)

    def replace(self, instance: str, records: Mapping[str, bytes]) -> Deferred[None]:
        def replace() -> None:
            if records:
                self.records[instance] = dict(records)
            else:
                self.records.pop(instance, None)

        return self._run(replace)

    def instances(self) -> Deferred[list[str]]:
        return self._run(lambda: sorted(self._registered))

    def adopt(self, dead: str, survivor: str) -> Deferred[dict[str, bytes]]:
        def adopt() -> dict[str, bytes]:
            if dead == survivor or self._leased(dead):
                return {}
            self._registered.discard(dead)
            self._leases.pop(dead, None)
            taken = self.records.pop(dead, {})
            if taken:
                self._adopted[dead] = self._adopted.get(dead, ()) + tuple(sorted(taken))
                self.records.setdefault(survivor, {}).update(taken)
            return taken

        return self._run(adopt)

    def close(self) -> Deferred[None]:
        return succeed(None)
