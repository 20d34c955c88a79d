# mypy: disable-error-code="union-attr,arg-type,comparison-overlap,unreachable,index,misc"
# (tests poke Optional results and state attributes mypy narrows too eagerly)
"""Codec micro-benchmarks (run with --benchmark-enable; never asserts timing)."""

from __future__ import annotations

import pytest

from b2bua.diameter.message import Message, decode
from tests.diameter import factories


def read_ccr_fields(msg: Message) -> tuple[object, ...]:
    """The fields an online-charging peer reads from a CCR-I."""
    ims = msg.find_path("Service-Information", "IMS-Information")
    assert ims is not None
    sub = msg.find("Subscription-Id")
    assert sub is not None
    return (
        msg.session_id,
        msg.get("CC-Request-Type"),
        msg.get("CC-Request-Number"),
        sub.get("Subscription-Id-Data"),
        msg.get_path("Multiple-Services-Credit-Control", "Requested-Service-Unit", "CC-Time"),
        ims.get("Calling-Party-Address"),
        ims.get("Called-Party-Address"),
    )


def read_cca_fields(msg: Message) -> tuple[object, ...]:
    """The fields the charging client reads from a CCA."""
    mscc = msg.find("Multiple-Services-Credit-Control")
    assert mscc is not None
    return (
        msg.session_id,
        msg.result_code,
        msg.get("CC-Request-Number"),
        mscc.get("Result-Code"),
        mscc.find("Granted-Service-Unit").get("CC-Time"),
        mscc.get("Validity-Time"),
        mscc.find("Final-Unit-Indication"),
    )


@pytest.mark.benchmark
def test_bench_ccr_initial_encode_decode(benchmark):
    """Encode a freshly built CCR-I with full IMS-Information, decode it, read its fields."""

    def setup():
        return (factories.ccr_initial(),), {}

    def run(msg: Message):
        return read_ccr_fields(decode(msg.encode()))

    fields = benchmark.pedantic(run, setup=setup, rounds=2000, warmup_rounds=50)
    assert fields[4] == 30


@pytest.mark.benchmark
def test_bench_cca_decode(benchmark):
    """Decode a CCA with an MSCC grant and read what the client needs."""
    raw = factories.cca_grant(factories.ccr_initial()).encode()
    fields = benchmark(lambda: read_cca_fields(decode(raw)))
    assert fields[4] == 30


@pytest.mark.benchmark
def test_bench_ccr_build_and_encode(benchmark):
    """Build a CCR-I from name/value specs and encode it (client send path)."""
    raw = benchmark(lambda: factories.ccr_initial().encode())
    assert decode(raw).name == "CCR"
