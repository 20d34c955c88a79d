# mypy: disable-error-code="union-attr,arg-type,comparison-overlap,unreachable,index,misc"
# (tests poke Optional results and state attributes mypy narrows too eagerly)
"""AVP codec tests (RFC 6733 section 4)."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime

import pytest

from b2bua.diameter.avp import (
    FLAG_M,
    FLAG_V,
    MAX_DEPTH,
    TIME_MAX_UNIX,
    TIME_MIN_UNIX,
    Avp,
    decode_avps,
    make_avp,
    ntp_to_unix,
    unix_to_ntp,
)
from b2bua.diameter.dictionary import VENDOR_3GPP
from b2bua.diameter.errors import DecodeError


def roundtrip(avp: Avp) -> Avp:
    raw = avp.encode()
    (back,) = decode_avps(raw, 0, len(raw), (0, [100]))
    return back


def test_unsigned32_layout():
    """Unsigned32 without vendor: 8-octet header, length 12, M flag from the dictionary."""
    raw = Avp.new("CC-Request-Number", 7).encode()
    assert raw.hex() == "0000019f" + "4000000c" + "00000007"


def test_vendor_avp_layout():
    """A 3GPP AVP carries V and the Vendor-ID field; length counts the 12-octet header."""
    raw = Avp.new("Node-Functionality", 6).encode()
    assert raw.hex() == "0000035e" + "c0000010" + "000028af" + "00000006"


def test_octetstring_padding():
    """Data not a multiple of 4 is zero padded, and padding is excluded from the length."""
    raw = Avp.new("Session-Id", "abcde").encode()
    assert len(raw) == 16
    assert raw[5:8] == b"\x00\x00\x0d"
    assert raw[-3:] == b"\x00\x00\x00"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("Session-Id", "sip;ü;1"),
        ("Origin-Host", "host.example.com"),
        ("Redirect-Host", "aaa://host.example.com:3868;transport=tcp"),
        ("Class", b"\x00\x01\xff"),
        ("CC-Request-Number", 0xFFFFFFFF),
        ("Exponent", -3),
        ("Value-Digits", -(2**63)),
        ("CC-Total-Octets", 2**64 - 1),
        ("Multiple-Services-Indicator", 1),
        ("Restriction-Filter-Rule", "permit out ip from any to assigned"),
        ("Cause-Code", -1),
    ],
)
def test_scalar_roundtrip(name, value):
    """Every scalar type decodes to the value it was built from."""
    assert roundtrip(Avp.new(name, value)).value == value


def test_float_types_roundtrip():
    """Float32 and Float64 codecs (no dictionary AVP uses them, so build by type)."""
    from b2bua.diameter.avp import _DECODERS, _ENCODERS
    from b2bua.diameter.dictionary import AvpType

    for typ, value in ((AvpType.FLOAT32, 1.5), (AvpType.FLOAT64, -2.25e300)):
        assert _DECODERS[typ](_ENCODERS[typ](value)) == value


def test_address_ipv4_and_ipv6():
    """Address carries the IANA family (1 = IPv4, 2 = IPv6) before the octets."""
    v4 = Avp.new("Host-IP-Address", "192.0.2.1")
    assert v4.data == b"\x00\x01\xc0\x00\x02\x01"
    assert roundtrip(v4).value == ipaddress.IPv4Address("192.0.2.1")
    v6 = Avp.new("Host-IP-Address", ipaddress.IPv6Address("2001:db8::1"))
    assert v6.data[:2] == b"\x00\x02" and len(v6.data) == 18
    assert roundtrip(v6).value == ipaddress.IPv6Address("2001:db8::1")


def test_address_other_family_kept_raw():
    """An address family other than IPv4/IPv6 decodes to (family, bytes)."""
    avp = Avp.new("Host-IP-Address", (8, b"\x01\x02"))
    assert roundtrip(avp).value == (8, b"\x01\x02")


def test_address_bad_length_is_5004():
    """An IPv4 family with 3 address octets is an invalid value."""
    avp = Avp(257, data=b"\x00\x01\x01\x02\x03")
    with pytest.raises(DecodeError) as exc:
        _ = avp.value
    assert exc.value.result_code == 5004
    assert exc.value.failed_avp == avp.encode()


def test_time_roundtrip_and_epoch():
    """Time is NTP seconds since 1900 (RFC 6733 4.3.1)."""
    avp = Avp.new("Event-Timestamp", 1_700_000_000)
    assert int.from_bytes(avp.data, "big") == 1_700_000_000 + 2_208_988_800
    assert roundtrip(avp).value == datetime.fromtimestamp(1_700_000_000, UTC)
    dt = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert roundtrip(Avp.new("Event-Timestamp", dt)).value == dt


def test_time_2036_rollover():
    """MSB clear means the era starting 2036-02-07T06:28:16Z (RFC 5905 / 6733 4.3.1)."""
    era1 = datetime(2036, 2, 7, 6, 28, 16, tzinfo=UTC)
    assert ntp_to_unix(0) == int(era1.timestamp())
    assert unix_to_ntp(int(era1.timestamp())) == 0
    later = datetime(2040, 5, 1, tzinfo=UTC)
    avp = Avp.new("Event-Timestamp", later)
    assert avp.data[0] & 0x80 == 0
    assert roundtrip(avp).value == later
    assert ntp_to_unix(0x80000000) == TIME_MIN_UNIX
    assert unix_to_ntp(TIME_MAX_UNIX) == 0x7FFFFFFF


def test_time_out_of_range_rejected():
    """Times before 1968 or after 2104 cannot be encoded."""
    with pytest.raises(ValueError):
        Avp.new("Event-Timestamp", TIME_MIN_UNIX - 1).encode()
    with pytest.raises(ValueError):
        Avp.new("Event-Timestamp", datetime(2030, 1, 1)).encode()


def test_enumerated_by_label():
    """Enumerated values can be given by their label."""
    assert Avp.new("CC-Request-Type", "TERMINATION_REQUEST").value == 3
    with pytest.raises(KeyError):
        Avp.new("CC-Request-Type", "NOPE")


def test_integer_range_checked():
    """Out-of-range or non-integer values fail at encode time."""
    with pytest.raises(ValueError):
        Avp.new("CC-Time", -1).encode()
    with pytest.raises(TypeError):
        Avp.new("CC-Time", "30").encode()
    with pytest.raises(TypeError):
        Avp.new("CC-Time", True).encode()


def test_fixed_size_length_is_5014():
    """A 5-octet Unsigned32 payload is DIAMETER_INVALID_AVP_LENGTH with the AVP as Failed-AVP."""
    avp = Avp(415, data=b"\x00\x00\x00\x00\x01")
    with pytest.raises(DecodeError) as exc:
        _ = avp.value
    assert exc.value.result_code == 5014
    assert exc.value.failed_avp == avp.encode()


def test_bad_utf8_is_5004():
    """Invalid UTF-8 in a UTF8String is DIAMETER_INVALID_AVP_VALUE."""
    avp = Avp(263, data=b"\xff\xfe")
    with pytest.raises(DecodeError) as exc:
        _ = avp.value
    assert exc.value.result_code == 5004


def test_grouped_build_and_find():
    """Grouped AVPs hold children; find/get work on built and decoded groups."""
    mscc = Avp.new(
        "Multiple-Services-Credit-Control",
        [("Requested-Service-Unit", [("CC-Time", 30)]), ("Rating-Group", 7)],
    )
    for avp in (mscc, roundtrip(mscc)):
        assert avp.get("Rating-Group") == 7
        assert avp.find("Requested-Service-Unit").get("CC-Time") == 30
        assert avp.find("Granted-Service-Unit") is None
        assert [c.name for c in avp.children] == ["Requested-Service-Unit", "Rating-Group"]


def test_grouped_length_includes_children():
    """Grouped length = header + children with their padding (RFC 6733 4.4)."""
    raw = Avp.new(
        "Subscription-Id", [("Subscription-Id-Type", 0), ("Subscription-Id-Data", "1")]
    ).encode()
    assert int.from_bytes(raw[5:8], "big") == 8 + 12 + 12 == len(raw)


def test_unknown_avp_reencodes_byte_for_byte():
    """An AVP missing from the dictionary stays raw bytes and re-encodes identically."""
    raw = bytes.fromhex("0001869fc000000f0000123401020300")
    (avp,) = decode_avps(raw, 0, len(raw), (0, [10]))
    assert avp.defn is None and avp.name == "Unknown-4660-99999"
    assert avp.value == b"\x01\x02\x03"
    assert avp.encode() == raw


def test_unknown_inside_group_reencodes():
    """Unknown children of a known group survive decode, access and re-encode."""
    inner = bytes.fromhex("0000270f0000000b61626300")
    group = Avp(456, data=inner + Avp.new("Rating-Group", 1).encode())
    back = roundtrip(group)
    assert [c.code for c in back.children] == [9999, 432]
    assert back.encode() == group.encode()


def test_mutating_found_child_is_encoded():
    """A child obtained by find() and changed is reflected when the group re-encodes."""
    back = roundtrip(Avp.new("Granted-Service-Unit", [("CC-Time", 30)]))
    back.find("CC-Time").value = 99
    assert roundtrip(back).get("CC-Time") == 99


def test_header_length_too_small_is_5014():
    """A header length below 8 octets is DIAMETER_INVALID_AVP_LENGTH."""
    raw = bytes.fromhex("0000019f4000000400000000")
    with pytest.raises(DecodeError) as exc:
        decode_avps(raw, 0, len(raw), (0, [10]))
    assert exc.value.result_code == 5014
    assert exc.value.failed_avp[:4] == raw[:4]


def test_header_length_past_end_is_5014():
    """A length running past the enclosing data is DIAMETER_INVALID_AVP_LENGTH."""
    raw = bytes.fromhex("0000019f4000002000000000")
    with pytest.raises(DecodeError) as exc:
        decode_avps(raw, 0, len(raw), (0, [10]))
    assert exc.value.result_code == 5014
    failed = exc.value.failed_avp
    assert failed == bytes.fromhex("0000019f4000000c00000000")


def test_truncated_header_is_5014():
    """Fewer than 8 octets left for a header is DIAMETER_INVALID_AVP_LENGTH."""
    with pytest.raises(DecodeError) as exc:
        decode_avps(b"\x00\x00\x01", 0, 3, (0, [10]))
    assert exc.value.result_code == 5014


def test_nesting_depth_bounded():
    """Groups nested deeper than MAX_DEPTH are refused with DIAMETER_UNABLE_TO_COMPLY."""
    payload = Avp.new("Rating-Group", 1).encode()
    for _ in range(MAX_DEPTH + 2):
        payload = Avp(456, data=payload).encode()
    (top,) = decode_avps(payload, 0, len(payload), (0, [10_000]))
    node = top
    with pytest.raises(DecodeError) as exc:
        while True:
            node = node.children[0]
    assert exc.value.result_code == 5012


def test_avp_budget_bounded():
    """The shared per-message budget caps how many AVPs are decoded."""
    raw = Avp.new("Rating-Group", 1).encode() * 5
    with pytest.raises(DecodeError) as exc:
        decode_avps(raw, 0, len(raw), (0, [4]))
    assert exc.value.result_code == 5012


def test_flags_properties_and_override():
    """M/V/P accessors reflect the flag byte; an explicit flags value wins."""
    avp = Avp.new("Origin-Host", "h", flags=0x20)
    assert avp.protected and not avp.mandatory and not avp.vendor_specific
    tgpp = Avp.new("IMS-Charging-Identifier", "x")
    assert tgpp.vendor == VENDOR_3GPP and tgpp.vendor_specific and tgpp.flags & FLAG_V
    assert Avp.new("Product-Name", "b2bua").flags & FLAG_M == 0


def test_make_avp_specs():
    """Builder specs: Avp passthrough, (name, value) and (name, value, flags)."""
    avp = Avp.new("CC-Time", 1)
    assert make_avp(avp) is avp
    assert make_avp(("CC-Time", 2)).value == 2
    assert make_avp(("CC-Time", 3, 0)).flags == 0


def test_equality_and_repr():
    """AVPs compare by header and payload; repr shows name and value."""
    assert Avp.new("CC-Time", 5) == roundtrip(Avp.new("CC-Time", 5))
    assert Avp.new("CC-Time", 5) != Avp.new("CC-Time", 6)
    assert "CC-Time" in repr(Avp.new("CC-Time", 5))
    assert Avp.new("CC-Time", 5).__eq__(5) is NotImplemented


def test_children_of_scalar_rejected():
    """children/find on a non-grouped AVP raise ValueError."""
    with pytest.raises(ValueError):
        _ = Avp.new("CC-Time", 5).children
    with pytest.raises(ValueError):
        roundtrip(Avp.new("CC-Time", 5)).find("CC-Time")
