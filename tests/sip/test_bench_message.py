"""Micro-benchmarks of the message core (run with --benchmark-enable; never asserts time)."""

from __future__ import annotations

import pytest

from b2bua.sip.message import parse_message
from tests.sip import factories

INVITE = factories.request_bytes()


def parse_access_serialize(data: bytes) -> bytes:
    msg = parse_message(data)
    _ = msg.top_via.branch
    _ = msg.call_id
    _ = msg.cseq
    _ = msg.from_tag
    return msg.serialize()


def forward_like_a_b2bua(data: bytes) -> bytes:
    msg = parse_message(data)
    _ = msg.top_via.branch
    _ = msg.call_id
    _ = msg.cseq
    _ = msg.from_tag
    msg.headers.insert_top("Via", "SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bKb2bua1;rport")
    msg.headers.set("Max-Forwards", "68")
    return msg.serialize()


@pytest.mark.benchmark
def test_bench_parse_access_serialize_invite(benchmark):
    """Parse a ~1 KB INVITE, read Via branch/Call-ID/CSeq/From tag, serialize it."""
    assert len(INVITE) > 1000
    out = benchmark(parse_access_serialize, INVITE)
    assert out == INVITE


@pytest.mark.benchmark
def test_bench_parse_modify_serialize_invite(benchmark):
    """The same plus pushing a Via and rewriting Max-Forwards before serializing."""
    out = benchmark(forward_like_a_b2bua, INVITE)
    assert out.count(b"\r\nVia: ") == 3


@pytest.mark.benchmark
def test_bench_parse_only(benchmark):
    """Lazy parse alone: start line and header lines, no structured values."""
    msg = benchmark(parse_message, INVITE)
    assert msg.body == factories.SDP
