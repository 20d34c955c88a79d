"""What every `CallStore` must do: one mixin, run against MemoryStore and a real Redis.

As in ``tests/ocs/backend_contract.py``: each test is a coroutine awaiting the store's
Deferreds, handed to the subclass's `run` (memory: at once; Redis: a Deferred that
pytest-twisted waits on). A subclass supplies `make_store` (a fresh, empty store) and
`expire` (make an instance's lease run out now: the clock moves, or the key goes).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, gatherResults

from b2bua.store.base import CallStore, Renewal
from tests.ocs.backend_contract import contract

LEASE = 30.0


class StoreContract:
    """Contract tests; subclasses provide `make_store`, `expire` and `run`."""

    def make_store(self) -> CallStore:
        """A new store with no instances and no records."""
        raise NotImplementedError

    def expire(self, store: CallStore, instance: str) -> Deferred[None]:
        """Let ``instance``'s lease run out now."""
        raise NotImplementedError

    def run(self, test: Any) -> Deferred[None] | None:
        """Run one contract test: to its end, or as a Deferred for pytest-twisted."""
        raise NotImplementedError

    @contract
    async def test_take_over_reads_own_records(self) -> None:
        """Records written by an instance are what its next take-over returns."""
        store = self.make_store()
        assert await store.take_over("a", LEASE) == {}
        await store.write("a", [("c1", b"one"), ("c2", b"\x00two\xff")])
        await store.write("b", [("c9", b"other")])
        assert await store.take_over("a", LEASE) == {"c1": b"one", "c2": b"\x00two\xff"}

    @contract
    async def test_write_updates_and_deletes(self) -> None:
        """A newer record replaces the older one; None deletes it."""
        store = self.make_store()
        await store.take_over("a", LEASE)
        await store.write("a", [("c1", b"v1"), ("c2", b"v1")])
        await store.write("a", [("c1", b"v2"), ("c2", None)])
        await store.write("a", [("c3", None)])
        assert await store.take_over("a", LEASE) == {"c1": b"v2"}

    @contract
    async def test_replace_leaves_exactly_the_given_records(self) -> None:
        """replace() makes the given records the only ones, and {} clears them."""
        store = self.make_store()
        await store.take_over("a", LEASE)
        await store.write("a", [("old", b"x")])
        await store.replace("a", {"new": b"y", "other": b"z"})
        assert await store.take_over("a", LEASE) == {"new": b"y", "other": b"z"}
        await store.replace("a", {})
        assert await store.take_over("a", LEASE) == {}

    @contract
    async def test_instances_are_registered_by_take_over(self) -> None:
        """Every instance that took over is listed."""
        store = self.make_store()
        await store.take_over("b", LEASE)
        await store.take_over("a", LEASE)
        assert sorted(await store.instances()) == ["a", "b"]

    @contract
    async def test_no_adoption_while_the_lease_lives(self) -> None:
        """An instance whose lease is alive keeps its records."""
        store = self.make_store()
        await store.take_over("a", LEASE)
        await store.write("a", [("c1", b"one")])
        await store.take_over("b", LEASE)
        assert await store.adopt("a", "b") == {}
        assert await store.take_over("a", LEASE) == {"c1": b"one"}

    @contract
    async def test_adoption_moves_the_records_to_the_survivor(self) -> None:
        """After the lease ran out, the survivor gets the records, and they are its own."""
        store = self.make_store()
        await store.take_over("a", LEASE)
        await store.write("a", [("c1", b"one"), ("c2", b"two")])
        await store.take_over("b", LEASE)
        await store.write("b", [("c3", b"three")])
        await self.expire(store, "a")
        assert await store.adopt("a", "b") == {"c1": b"one", "c2": b"two"}
        assert await store.adopt("a", "b") == {}
        assert await store.instances() == ["b"]
        assert await store.take_over("b", LEASE) == {"c1": b"one", "c2": b"two", "c3": b"three"}

    @contract
    async def test_exactly_one_of_racing_survivors_adopts(self) -> None:
        """Three survivors adopting at once: one gets every record, the others none."""
        store = self.make_store()
        await store.take_over("dead", LEASE)
        await store.write("dead", [(f"c{n}", b"r") for n in range(20)])
        for survivor in ("s1", "s2", "s3"):
            await store.take_over(survivor, LEASE)
        await self.expire(store, "dead")
        results = await gatherResults(
            [store.adopt("dead", survivor) for survivor in ("s1", "s2", "s3")]
        )
        assert sorted(len(result) for result in results) == [0, 0, 20]

    @contract
    async def test_restart_after_adoption_finds_nothing(self) -> None:
        """An instance starting again after a survivor adopted its calls gets no records."""
        store = self.make_store()
        await store.take_over("a", LEASE)
        await store.write("a", [("c1", b"one")])
        await store.take_over("b", LEASE)
        await self.expire(store, "a")
        await store.adopt("a", "b")
        assert await store.take_over("a", LEASE) == {}

    @contract
    async def test_restart_before_adoption_keeps_the_records(self) -> None:
        """Once an instance took over again, a late adoption attempt gets nothing."""
        store = self.make_store()
        await store.take_over("a", LEASE)
        await store.write("a", [("c1", b"one")])
        await store.take_over("b", LEASE)
        await self.expire(store, "a")
        assert await store.take_over("a", LEASE) == {"c1": b"one"}
        assert await store.adopt("a", "b") == {}

    @contract
    async def test_renew_says_whether_the_lease_was_lost(self) -> None:
        """Renewal: kept while alive; expired after a lapse; adopted when a survivor took over."""
        store = self.make_store()
        await store.take_over("a", LEASE)
        assert await store.renew("a", LEASE) == (Renewal.KEPT, ())
        await self.expire(store, "a")
        assert await store.renew("a", LEASE) == (Renewal.EXPIRED, ())
        await store.write("a", [("c2", b"two"), ("c1", b"one")])
        await store.take_over("b", LEASE)
        await self.expire(store, "a")
        await store.adopt("a", "b")
        assert await store.renew("a", LEASE) == (Renewal.ADOPTED, ("c1", "c2"))
        assert await store.renew("a", LEASE) == (Renewal.KEPT, ())
        assert "a" in await store.instances()

    @contract
    async def test_a_restart_forgets_the_adoption_note(self) -> None:
        """take_over starts afresh: a later lapse is EXPIRED, not ADOPTED again."""
        store = self.make_store()
        await store.take_over("a", LEASE)
        await store.write("a", [("c1", b"one")])
        await store.take_over("b", LEASE)
        await self.expire(store, "a")
        await store.adopt("a", "b")
        assert await store.take_over("a", LEASE) == {}
        await self.expire(store, "a")
        assert await store.renew("a", LEASE) == (Renewal.EXPIRED, ())

    @contract
    async def test_an_instance_never_adopts_itself(self) -> None:
        """adopt(x, x) is refused even with the lease gone."""
        store = self.make_store()
        await store.take_over("a", LEASE)
        await store.write("a", [("c1", b"one")])
        await self.expire(store, "a")
        assert await store.adopt("a", "a") == {}
