# mypy: disable-error-code="union-attr,arg-type,comparison-overlap,unreachable,index,misc"
# (tests poke Optional results and state attributes mypy narrows too eagerly)
"""Message codec, builders, accessors, answers and framing (RFC 6733 sections 3, 6.2)."""

from __future__ import annotations

import random

import pytest

from b2bua.diameter.avp import Avp
from b2bua.diameter.dictionary import DIAMETER_SUCCESS, DIAMETER_UNABLE_TO_DELIVER
from b2bua.diameter.errors import DecodeError
from b2bua.diameter.message import (
    FLAG_ERROR,
    FLAG_PROXIABLE,
    FLAG_REQUEST,
    IdGenerator,
    Message,
    MessageFramer,
    decode,
    encode,
    make_answer,
)
from tests.diameter import factories

# Hand-assembled from the RFC 6733 section 3 / 4.1 layouts; one line per field.
CER_HEX = "".join(
    [
        "010000a0",  # version 1, length 160
        "80000101",  # flags R, command 257
        "00000000",  # application 0
        "11223344",  # hop-by-hop
        "55667788",  # end-to-end
        "000001084000001962326275612e6578616d706c652e636f6d000000",
        "00000128400000136578616d706c652e636f6d00",  # Origin-Realm
        "000001014000000e00017f0000010000",  # Host-IP-Address 127.0.0.1
        "0000010a4000000c00000000",  # Vendor-Id 0
        "0000010d0000000d6232627561000000",  # Product-Name, M clear
        "000001164000000c00000001",  # Origin-State-Id
        "000001094000000c000028af",  # Supported-Vendor-Id 10415
        "000001024000000c00000004",  # Auth-Application-Id 4
        "0000010b0000000c00000001",  # Firmware-Revision, M clear
    ]
)

CCR_I_HEX = "".join(
    [
        "010000c4",  # version 1, length 196
        "c0000110",  # flags R|P, command 272
        "000000040000000100000002",  # app 4, hop-by-hop 1, end-to-end 2
        "000001074000000b733b3100",  # Session-Id "s;1"
        "000001084000000b682e7800",  # Origin-Host "h.x"
        "000001284000000978000000",  # Origin-Realm "x"
        "0000011b4000000979000000",  # Destination-Realm "y"
        "000001024000000c00000004",  # Auth-Application-Id 4
        "000001cd40000016333232363040336770702e6f72670000",
        "000001a04000000c00000001",  # CC-Request-Type INITIAL_REQUEST
        "0000019f4000000c00000000",  # CC-Request-Number 0
        "000001c84000001c",  # Multiple-Services-Credit-Control, 28
        "000001b540000014",  # . Requested-Service-Unit, 20
        "000001a44000000c0000001e",  # . . CC-Time 30
        "00000369c0000028000028af",  # Service-Information (V,M 10415), 40
        "0000036cc000001c000028af",  # . IMS-Information, 28
        "0000035ec0000010000028af00000006",  # . . Node-Functionality AS
    ]
)


def _small_ccr_i() -> Message:
    return Message.request(
        "Credit-Control",
        4,
        [
            ("Session-Id", "s;1"),
            ("Origin-Host", "h.x"),
            ("Origin-Realm", "x"),
            ("Destination-Realm", "y"),
            ("Auth-Application-Id", 4),
            ("Service-Context-Id", "32260@3gpp.org"),
            ("CC-Request-Type", "INITIAL_REQUEST"),
            ("CC-Request-Number", 0),
            (
                "Multiple-Services-Credit-Control",
                [("Requested-Service-Unit", [("CC-Time", 30)])],
            ),
            ("Service-Information", [("IMS-Information", [("Node-Functionality", 6)])]),
        ],
        hop_by_hop=1,
        end_to_end=2,
    )


def test_cer_hex_vector():
    """The builder produces the hand-assembled CER byte for byte, and decodes it back."""
    cer = factories.cer(hop_by_hop=0x11223344, end_to_end=0x55667788)
    assert cer.encode().hex() == CER_HEX
    back = decode(bytes.fromhex(CER_HEX))
    assert back.is_request and not back.is_proxiable and back.command_code == 257
    assert back.origin_host == "b2bua.example.com"
    assert str(back.get("Host-IP-Address")) == "127.0.0.1"
    assert back.encode().hex() == CER_HEX


def test_ccr_initial_hex_vector():
    """CCR-I layout: R|P flags, app 4, nested grouped lengths, 3GPP vendor headers."""
    assert _small_ccr_i().encode().hex() == CCR_I_HEX
    back = decode(bytes.fromhex(CCR_I_HEX))
    assert back.name == "CCR" and back.app_id == 4
    assert back.hop_by_hop == 1 and back.end_to_end == 2
    assert (
        back.get_path("Multiple-Services-Credit-Control", "Requested-Service-Unit", "CC-Time") == 30
    )
    assert back.get_path("Service-Information", "IMS-Information", "Node-Functionality") == 6


def test_full_factories_roundtrip():
    """Every factory message survives encode -> decode -> encode unchanged."""
    req = factories.ccr_initial()
    msgs = [
        factories.cer(),
        factories.cea(factories.cer()),
        factories.dwr(),
        req,
        factories.ccr_update(),
        factories.ccr_terminate(),
        factories.cca_grant(req, final=True),
        factories.rar(),
        factories.asr(),
    ]
    for msg in msgs:
        raw = encode(msg)
        back = decode(raw)
        assert back.encode() == raw
        assert back.avps == msg.avps
        assert back == msg


def test_accessors_on_decoded_ccr():
    """session_id, get, find_all, find_path and get_path read a decoded CCR-I."""
    msg = decode(factories.ccr_initial().encode())
    assert msg.session_id == factories.SESSION_ID
    assert msg.get("CC-Request-Type") == 1
    assert msg.get("Validity-Time", 42) == 42
    subs = msg.find_all("Subscription-Id")
    assert [s.get("Subscription-Id-Data") for s in subs] == ["15551230001", "sip:alice@example.com"]
    ims = msg.find_path("Service-Information", "IMS-Information")
    assert ims.get("Called-Party-Address") == "tel:+15551230002"
    assert ims.find("Event-Type").get("SIP-Method") == "INVITE"
    assert (
        msg.get_path(
            "Service-Information",
            "IMS-Information",
            "Time-Stamps",
            "SIP-Request-Timestamp-Fraction",
        )
        == 250
    )
    assert msg.find_path("Session-Id", "CC-Time") is None
    assert msg.find_path() is None
    assert msg.get_path("Multiple-Services-Credit-Control", "Granted-Service-Unit", default=0) == 0
    assert msg.result_code is None


def test_lazy_find_then_materialize_keeps_identity():
    """An AVP returned by find() is the same object later seen in msg.avps."""
    msg = decode(factories.ccr_initial().encode())
    found = msg.find("CC-Request-Number")
    assert any(a is found for a in msg.avps)
    found.value = 7
    assert decode(msg.encode()).get("CC-Request-Number") == 7


def test_mutation_after_find_is_encoded():
    """Changing a nested value obtained via find_path changes the encoding."""
    msg = decode(factories.ccr_initial().encode())
    msg.find_path(
        "Multiple-Services-Credit-Control", "Requested-Service-Unit", "CC-Time"
    ).value = 60
    assert (
        decode(msg.encode()).get_path(
            "Multiple-Services-Credit-Control", "Requested-Service-Unit", "CC-Time"
        )
        == 60
    )


def test_header_fields_change_on_decoded_message():
    """Header fields edited on a decoded message are encoded (T bit on failover)."""
    msg = decode(factories.ccr_initial().encode())
    msg.flags |= 0x10
    msg.hop_by_hop = 0xABCDEF01
    back = decode(msg.encode())
    assert back.is_retransmit and back.hop_by_hop == 0xABCDEF01


def test_result_code_and_experimental_result():
    """result_code reads Result-Code, else Experimental-Result-Code."""
    ans = Message(
        272,
        4,
        0,
        [("Experimental-Result", [("Vendor-Id", 10415), ("Experimental-Result-Code", 5030)])],
    )
    assert decode(ans.encode()).result_code == 5030
    cca = factories.cca_grant(factories.ccr_initial())
    assert decode(cca.encode()).result_code == DIAMETER_SUCCESS


def test_make_answer_rfc6733_6_2():
    """Answer copies ids, command, app, P bit; Session-Id first; Proxy-Info copied."""
    req = factories.ccr_initial()
    req.avps.append(Avp.new("Proxy-Info", [("Proxy-Host", "p.example"), ("Proxy-State", b"st")]))
    ans = make_answer(
        req, DIAMETER_SUCCESS, [("CC-Request-Type", 1)], origin_host="o", origin_realm="r"
    )
    assert (ans.hop_by_hop, ans.end_to_end, ans.command_code, ans.app_id) == (
        req.hop_by_hop,
        req.end_to_end,
        272,
        4,
    )
    assert not ans.is_request and ans.is_proxiable and not ans.is_error
    assert ans.avps[0].name == "Session-Id"
    assert ans.avps[-1].name == "Proxy-Info"
    assert ans.name == "CCA"
    err = make_answer(req, DIAMETER_UNABLE_TO_DELIVER)
    assert err.flags & FLAG_ERROR


def test_request_builder_defaults():
    """Builder defaults app id and P bit from the command definition."""
    cer = Message.request("CER")
    assert cer.flags == FLAG_REQUEST and cer.app_id == 0
    ccr = Message.request("CCR")
    assert ccr.flags == FLAG_REQUEST | FLAG_PROXIABLE and ccr.app_id == 4
    rar = Message.request("Re-Auth")
    assert rar.app_id == 4
    raw = Message.request(999, 7, retransmit=True)
    assert raw.app_id == 7 and raw.is_retransmit and raw.name == "999-R"
    assert Message.request(999).app_id == 0
    assert "CCR" in repr(ccr)


def test_append_and_setter():
    """append builds from the dictionary; assigning avps replaces the list."""
    msg = Message.request("DWR")
    msg.append("Origin-Host", "a")
    assert msg.origin_host == "a" and msg.origin_realm is None
    decoded = decode(msg.encode())
    decoded.avps = [Avp.new("Origin-Realm", "r")]
    assert decode(decoded.encode()).origin_realm == "r"


def test_framer_splits_and_reassembles():
    """Messages split at arbitrary points are reassembled in order."""
    stream = b"".join(
        m.encode() for m in (factories.cer(), factories.dwr(), factories.ccr_initial())
    )
    rng = random.Random(5)
    framer = MessageFramer()
    out = []
    pos = 0
    while pos < len(stream):
        step = rng.randint(1, 300)
        out += framer.feed(stream[pos : pos + step])
        pos += step
    assert [m.name for m in out] == ["CER", "DWR", "CCR"]
    assert framer.pending == 0


def test_framer_bad_content_continues():
    """A well-framed but invalid message yields a DecodeError and the stream goes on."""
    bad = bytearray(factories.dwr().encode())
    bad[4] |= 0x01  # reserved command flag bit
    framer = MessageFramer()
    out = framer.feed(bytes(bad) + factories.dwr().encode())
    assert isinstance(out[0], DecodeError) and out[0].result_code == 5013 and not out[0].fatal
    assert isinstance(out[1], Message)


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda b: b"\x02" + b[1:], 5011),
        (lambda b: b[:1] + (10).to_bytes(3, "big") + b[4:], 5015),
        (lambda b: b[:1] + (1 << 22).to_bytes(3, "big") + b[4:], 5015),
    ],
)
def test_framer_fatal_errors(mutate, code):
    """Bad version, impossible or oversized length lose framing: fatal error, framer stops."""
    framer = MessageFramer(max_size=1 << 16)
    (err,) = framer.feed(mutate(factories.dwr().encode()))
    assert isinstance(err, DecodeError) and err.fatal and err.result_code == code
    assert err.header is not None
    assert framer.broken and framer.feed(factories.dwr().encode()) == []


def test_id_generator():
    """End-to-end ids carry the start time in the top 12 bits and increase."""
    gen = IdGenerator(0x12345678, random.Random(1))
    first = gen.next_end_to_end()
    assert first >> 20 == 0x678
    assert gen.next_end_to_end() == first + 1
    assert gen.next_hop_by_hop() + 1 == gen.next_hop_by_hop()


def test_header_snapshot():
    """Message.header reports flags and ids; Header.is_request mirrors the R bit."""
    msg = factories.rar()
    hdr = msg.header
    assert hdr.is_request and hdr.is_proxiable and hdr.hop_by_hop == msg.hop_by_hop
    assert msg.command.abbrev_request == "RAR"
    assert msg.__eq__(1) is NotImplemented
