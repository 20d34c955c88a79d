# mypy: disable-error-code="union-attr,arg-type,comparison-overlap,unreachable,index,misc"
# (tests poke Optional results and state attributes mypy narrows too eagerly)
"""Property tests: generated messages round-trip; mutated bytes only raise DecodeError."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from b2bua.diameter.avp import Avp
from b2bua.diameter.dictionary import ALL_AVPS, ALL_COMMANDS, AvpDef, AvpType
from b2bua.diameter.errors import DecodeError
from b2bua.diameter.message import Message, MessageFramer, check_command, decode
from tests.diameter import factories

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_SCALARS = [d for d in ALL_AVPS if d.type is not AvpType.GROUPED]
_GROUPS = [d for d in ALL_AVPS if d.type is AvpType.GROUPED]
_text = st.text(st.characters(blacklist_categories=["Cs"]), max_size=24)


def _value(defn: AvpDef) -> st.SearchStrategy[Any]:
    typ = defn.type
    if typ in (AvpType.UNSIGNED32,):
        return st.integers(0, 2**32 - 1)
    if typ is AvpType.UNSIGNED64:
        return st.integers(0, 2**64 - 1)
    if typ in (AvpType.INTEGER32, AvpType.ENUMERATED):
        return st.integers(-(2**31), 2**31 - 1)
    if typ is AvpType.INTEGER64:
        return st.integers(-(2**63), 2**63 - 1)
    if typ is AvpType.TIME:
        return st.datetimes(
            min_value=datetime(1970, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
        ).map(lambda d: d.replace(microsecond=0))
    if typ is AvpType.ADDRESS:
        return st.one_of(st.ip_addresses(), st.tuples(st.integers(3, 65535), st.binary(max_size=8)))
    if typ is AvpType.OCTET_STRING:
        return st.binary(max_size=24)
    return _text


_scalar_avp = st.sampled_from(_SCALARS).flatmap(
    lambda d: _value(d).map(lambda v, d=d: Avp(d.code, v, vendor=d.vendor))
)
_unknown_avp = st.builds(
    lambda code, vendor, flags, data: Avp(code, vendor=vendor, flags=flags, data=data),
    st.integers(100_000, 2**32 - 1),
    st.sampled_from([0, 10415, 99]),
    st.sampled_from([0x00, 0x40, 0x80, 0xC0]),
    st.binary(max_size=16),
)
_avp = st.recursive(
    st.one_of(_scalar_avp, _unknown_avp),
    lambda children: st.builds(
        lambda d, kids: Avp(d.code, kids, vendor=d.vendor),
        st.sampled_from(_GROUPS),
        st.lists(children, max_size=4),
    ),
    max_leaves=12,
)
_message = st.builds(
    lambda cmd, request, hbh, e2e, avps: Message(
        cmd.code, 4, 0x80 if request else 0, avps, hop_by_hop=hbh, end_to_end=e2e
    ),
    st.sampled_from(ALL_COMMANDS),
    st.booleans(),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
    st.lists(_avp, max_size=8),
)


def walk(avps: list[Avp]) -> None:
    """Force every lazy decode: group children and every value."""
    for avp in avps:
        value = avp.value
        if avp.is_grouped:
            walk(value)


@SETTINGS
@given(_message)
def test_roundtrip_generated_messages(msg):
    """encode -> decode -> encode is the identity and values survive."""
    raw = msg.encode()
    back = decode(raw)
    assert back.encode() == raw
    walk(back.avps)
    assert back.avps == msg.avps
    assert (back.command_code, back.flags, back.hop_by_hop) == (
        msg.command_code,
        msg.flags,
        msg.hop_by_hop,
    )


_SEEDS = [
    factories.ccr_initial().encode(),
    factories.cca_grant(factories.ccr_initial(), final=True).encode(),
    factories.cer().encode(),
]


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(_SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "set", "truncate", "insert", "delete"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and data:
            data[pos] = draw(st.integers(0, 255))
        elif kind == "truncate":
            del data[pos:]
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif data:
            del data[pos : pos + draw(st.integers(1, 8))]
    return bytes(data)


@SETTINGS
@given(_mutated())
def test_mutated_messages_only_raise_decode_error(raw):
    """Corrupted bytes: decode, full walk, validation and re-encode raise only DecodeError."""
    try:
        msg = decode(raw)
        msg.find_path("Service-Information", "IMS-Information", "Calling-Party-Address")
        walk(msg.avps)
        check_command(msg)
        decode(msg.encode())
    except DecodeError as exc:
        assert isinstance(exc.result_code, int)
        if exc.failed_avp is not None:
            assert isinstance(exc.failed_avp, bytes)


@SETTINGS
@given(st.binary(max_size=300))
def test_random_bytes_only_raise_decode_error(raw):
    """Arbitrary bytes through decode and the framer never raise anything else."""
    try:
        walk(decode(raw).avps)
    except DecodeError:
        pass
    framer = MessageFramer(max_size=4096)
    for item in framer.feed(raw):
        if isinstance(item, Message):
            try:
                walk(item.avps)
            except DecodeError:
                pass


@SETTINGS
@given(st.lists(st.integers(1, 64), min_size=1, max_size=40))
def test_framer_any_chunking(cuts):
    """However the stream is chunked, the framer yields the same messages."""
    stream = b"".join(_SEEDS) * 2
    framer = MessageFramer()
    out: list[Any] = []
    pos = 0
    i = 0
    while pos < len(stream):
        step = cuts[i % len(cuts)]
        out += framer.feed(stream[pos : pos + step])
        pos += step
        i += 1
    assert [m.encode() for m in out] == [decode(s).encode() for s in _SEEDS * 2]
