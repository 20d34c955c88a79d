"""Hypothesis properties: round trips are stable; bad input only ever raises SipParseError."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from b2bua.sip.errors import SipParseError
from b2bua.sip.framing import StreamFramer
from b2bua.sip.headers import NameAddr, SipURI, Via, parse_name_addr, parse_uri, parse_via
from b2bua.sip.message import Request, parse_message, validate_request, validate_response
from tests.sip import factories

PROPS = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)

TOKEN_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"
tokens = st.text(TOKEN_CHARS, min_size=1, max_size=12)
lower_tokens = st.text("abcdefghijklmnopqrstuvwxyz0123456789-._", min_size=1, max_size=10)
labels = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=10)
hostnames = st.lists(labels, min_size=1, max_size=4).map(".".join)
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(lambda a: f"[{ipaddress.IPv6Address(a).compressed}]")
hosts = st.one_of(hostnames, ipv4, ipv6)
ports = st.none() | st.integers(0, 65535)
safe_text = st.text(st.characters(blacklist_characters="\r\n"), max_size=20)


@st.composite
def sip_uris(draw: st.DrawFn) -> SipURI:
    user = draw(st.none() | st.text(min_size=1, max_size=15))
    password = draw(st.none() | st.text(max_size=8)) if user is not None else None
    params = draw(st.dictionaries(lower_tokens, st.none() | st.text(min_size=1, max_size=8),
                                  max_size=3))  # fmt: skip
    headers = draw(st.dictionaries(st.text(min_size=1, max_size=6), st.text(max_size=8),
                                   max_size=2))  # fmt: skip
    return SipURI(
        draw(hosts),
        user,
        draw(ports),
        scheme=draw(st.sampled_from(["sip", "sips"])),
        password=password,
        params=params,
        headers=headers,
    )


@given(sip_uris())
@PROPS
def test_sip_uri_round_trip(uri):
    """str() then parse gives back every component of any SIP URI."""
    again = parse_uri(str(uri))
    assert isinstance(again, SipURI)
    assert (again.scheme, again.user, again.password, again.host, again.port) == (
        uri.scheme,
        uri.user,
        uri.password,
        uri.host,
        uri.port,
    )
    assert again.params == uri.params
    assert again.headers == uri.headers
    assert again == uri
    assert str(again) == str(uri)


@given(
    sip_uris(),
    st.none() | safe_text.filter(bool),
    st.dictionaries(lower_tokens, st.none() | tokens, max_size=3),
)
@PROPS
def test_name_addr_round_trip(uri, display, params):
    """A name-addr with any display name and params survives str() + parse."""
    na = NameAddr(uri, display, params)
    again = parse_name_addr(str(na))
    assert again.display_name == display
    assert again.params == params
    assert again.uri == uri


@given(
    st.sampled_from(["UDP", "TCP", "TLS", "SCTP", "WS"]),
    hosts,
    st.none() | st.integers(1, 65535),
    st.dictionaries(
        lower_tokens.filter(lambda n: n not in ("received", "rport", "ttl")),
        st.none() | tokens,
        max_size=3,
    ),
)
@PROPS
def test_via_round_trip(transport, host, port, params):
    """A Via value survives str() + parse."""
    via = Via(transport, host, port, params)
    again = parse_via(str(via))
    assert (again.transport, again.host, again.port, again.params) == (
        transport,
        host,
        port,
        params,
    )


@st.composite
def request_bytes(draw: st.DrawFn) -> bytes:
    method = draw(st.sampled_from(["INVITE", "OPTIONS", "BYE", "REGISTER"]) | tokens)
    uri = draw(sip_uris())
    uri.headers.clear()
    extra = draw(
        st.lists(
            st.tuples(
                st.text("abcdefghijklmnopqrstuvwxyzXYZ-", min_size=1, max_size=10).map(
                    lambda n: "X-" + n
                ),
                st.text(st.characters(blacklist_characters="\r\n"), max_size=30),
            ),
            max_size=5,
        )
    )
    display = draw(st.none() | safe_text.filter(bool))
    frm = NameAddr(SipURI(draw(hostnames), "alice"), display, {"tag": draw(tokens)})
    body = draw(st.binary(max_size=60))
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/UDP {draw(hosts)};branch=z9hG4bK{draw(tokens)}",
        "Max-Forwards: 70",
        f"From: {frm}",
        "To: <sip:bob@example.com>",
        f"Call-ID: {draw(tokens)}@{draw(hostnames)}",
        f"CSeq: {draw(st.integers(0, 2**32 - 1))} {method}",
        *(f"{n}: {v}" for n, v in extra),
        f"Content-Length: {len(body)}",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogatepass") + body


@given(request_bytes())
@PROPS
def test_serialize_parse_is_exact_for_canonical_messages(data):
    """serialize(parse(x)) == x for canonically written messages, fields read back."""
    msg = parse_message(data)
    assert msg.serialize() == data
    assert isinstance(msg, Request)
    validate_request(msg, schemes=frozenset({"sip", "sips"}))
    assert msg.top_via.branch is not None
    assert msg.from_tag is not None
    assert parse_message(data, stream=True).serialize() == data
    [framed] = StreamFramer().feed(data)
    assert framed.serialize() == data


# ------------------------------------------------------------------ mutation fuzzing

_DATA = Path(__file__).resolve().parents[1] / "data" / "sip-torture"
SEEDS = [
    factories.request_bytes(),
    factories.response_bytes(body=b"v=0\r\n"),
    factories.minimal_request_bytes(extra="Route: <sip:p;lr>, <sip:q;lr>\r\n"),
    *(p.read_bytes() for p in sorted(_DATA.glob("*/*.dat"))),
]

_INTERESTING = [*b'\r\n :;,<>"\\@[]=%/\x00\xff09']


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        pos = draw(st.integers(0, len(data) - 1))
        op = draw(st.integers(0, 4))
        if op == 0:
            data[pos] = draw(st.sampled_from(_INTERESTING) | st.integers(0, 255))
        elif op == 1:
            data[pos:pos] = draw(st.binary(min_size=1, max_size=4))
        elif op == 2:
            del data[pos : pos + draw(st.integers(1, 20))]
        elif op == 3:
            data[pos:pos] = b"\r\n" if draw(st.booleans()) else b"\r\n "
        else:
            end = data.find(b"\r\n", pos)
            if end > 0:
                data[pos:pos] = data[data.rfind(b"\n", 0, pos) + 1 : end + 2]
    return bytes(data)


def _exercise(msg):
    for attr in ("call_id", "cseq", "from_", "to", "top_via", "via", "contact", "route",
                 "record_route", "max_forwards", "from_tag", "to_tag", "media_type"):  # fmt: skip
        try:
            getattr(msg, attr)
        except SipParseError:
            pass
    try:
        if isinstance(msg, Request):
            msg.request_uri  # noqa: B018
            validate_request(msg, supported=frozenset(), accepted_types=frozenset({"a/b"}))
        else:
            validate_response(msg)
    except SipParseError:
        pass
    for na in _safe_list(msg, "contact") + _safe_list(msg, "route"):
        try:
            na.uri  # noqa: B018
        except SipParseError:
            pass


def _safe_list(msg, attr):
    try:
        return list(getattr(msg, attr))
    except SipParseError:
        return []


@given(mutated())
@settings(PROPS, max_examples=300)
def test_mutated_messages_only_raise_sip_parse_error(data):
    """Parsing and validating mutated messages raises SipParseError or nothing."""
    for stream in (False, True):
        try:
            msg = parse_message(data, stream=stream, max_size=4000)
        except SipParseError as exc:
            assert 400 <= exc.status_hint <= 599
            continue
        _exercise(msg)
        once = msg.serialize()
        assert parse_message(once).serialize() == once


@given(mutated(), st.lists(st.integers(1, 64), min_size=1, max_size=20))
@settings(PROPS, max_examples=200)
def test_framer_never_raises_on_mutated_streams(data, cuts):
    """Fed mutated bytes in arbitrary chunks, the framer only returns events."""
    framer = StreamFramer(max_message_size=4000)
    pos = 0
    events = []
    for size in cuts:
        events.extend(framer.feed(data[pos : pos + size]))
        pos += size
    events.extend(framer.feed(data[pos:]))
    for event in events:
        if not isinstance(event, SipParseError) and hasattr(event, "serialize"):
            _exercise(event)
