"""The daemons' garbage-collector settings."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from b2bua.ops.gctune import THRESHOLDS, tune_gc


@pytest.fixture
def restored_gc() -> Iterator[None]:
    """Put this test process's collector back as it was."""
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


def test_tune_gc_freezes_start_up_objects_and_raises_thresholds(restored_gc: None) -> None:
    """After tune_gc what start-up built is out of the collector's sight, and young
    collections happen every THRESHOLDS[0] allocations instead of 700."""
    start_up_object = {"config": ["kept for the process's life"]}
    tune_gc()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == THRESHOLDS
    assert gc.is_tracked(start_up_object)
    assert all(start_up_object is not obj for obj in gc.get_objects())
