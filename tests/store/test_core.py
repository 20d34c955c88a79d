"""The store's sans-IO decisions: the write queue, the turn batcher, the link, the lease."""

from __future__ import annotations

import pytest

from b2bua.store.core import Batcher, Lease, Link, WriteQueue, adoption_candidates


def test_queue_keeps_one_entry_per_key_with_its_latest_state() -> None:
    """A newer state replaces the queued one and moves to the end; None is a delete."""
    queue = WriteQueue(10)
    queue.put("a", b"a1")
    queue.put("b", b"b1")
    queue.put("a", b"a2")
    queue.put("c", None)
    assert queue.take() == [("b", b"b1"), ("a", b"a2"), ("c", None)]
    assert len(queue) == 0


def test_queue_refuses_new_keys_when_full_and_says_it_overflowed() -> None:
    """At the limit a new key is refused (counted); known keys still take newer states."""
    queue = WriteQueue(2)
    assert queue.put("a", b"1")
    assert queue.put("b", b"1")
    assert not queue.put("c", b"1")
    assert queue.put("a", b"2")
    assert (queue.overflowed, queue.dropped, len(queue)) == (True, 1, 2)
    queue.reset()
    assert (queue.overflowed, len(queue)) == (False, 0)


def test_queue_limit_must_be_positive() -> None:
    """A queue that could hold nothing is a programming error."""
    with pytest.raises(ValueError, match="at least 1"):
        WriteQueue(0)


def test_batcher_asks_for_one_flush_per_turn() -> None:
    """Only the first change of a turn asks for a flush; a key changed twice is taken once."""
    batch = Batcher()
    assert batch.changed("a")
    assert not batch.changed("b")
    assert not batch.changed("a")
    assert batch.take() == ["a", "b"]
    assert batch.changed("c")


def test_link_reports_transitions_only() -> None:
    """The first outcome and every change of state are transitions; repeats are not."""
    link = Link()
    assert link.succeeded()
    assert not link.succeeded()
    assert link.failed()
    assert not link.failed()
    assert link.succeeded()
    assert link.transitions == 3


def test_lease_may_be_lost_after_lease_time_without_renewal() -> None:
    """Unknown before the first renewal; lost once lease_time has passed since the last."""
    lease = Lease(lease_time=10.0, renew_interval=3.0)
    assert lease.may_be_lost(0.0)
    lease.renewed(100.0)
    assert not lease.may_be_lost(109.9)
    assert lease.may_be_lost(110.0)


def test_adoption_candidates_are_the_other_instances_in_order() -> None:
    """Never oneself; each other instance once, sorted."""
    assert adoption_candidates(["c", "me", "a", "c"], "me") == ["a", "c"]
