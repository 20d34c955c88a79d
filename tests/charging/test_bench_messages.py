"""Micro-benchmark of what charging pays per CCR: build it from the call's context, encode it.

Run with ``make bench-micro``; by default the suite passes ``--benchmark-disable`` and the
body runs once as a smoke test.  Every charged call builds at least two (CCR-I, CCR-T).
"""

from __future__ import annotations

from typing import Any

import pytest

from b2bua.charging.messages import build_ccr
from b2bua.charging.session import RequestType, SendCcr
from b2bua.diameter.message import decode
from tests.charging.test_messages import NOW, full_context


@pytest.mark.benchmark
def test_bench_build_and_encode_ccr_initial(benchmark: Any) -> None:
    """A CCR-I with every optional IMS-Information field, built and encoded."""
    context = full_context()
    send = SendCcr(RequestType.INITIAL, 0, 30, None, False)

    def build() -> bytes:
        message = build_ccr(
            context,
            send,
            session_id="b2bua.lab.example;1767225600;0;0000abcd",
            origin_host="b2bua.lab.example",
            origin_realm="lab.example",
            destination_realm="ocs.lab.example",
            now=NOW,
        )
        return message.encode()

    raw = benchmark(build)
    assert decode(raw).get("CC-Request-Type") == 1
