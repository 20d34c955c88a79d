"""Message parsing, mutation, serialization, responses and validation."""

from __future__ import annotations

import pytest

from b2bua.sip.errors import LocalProtocolError, RemoteProtocolError, SipError, SipParseError
from b2bua.sip.headers import SipURI, TelURI
from b2bua.sip.message import (
    COMPACT_FORMS,
    Headers,
    Request,
    Response,
    accepts,
    canonical_key,
    make_response,
    parse_message,
    validate_request,
    validate_response,
)
from tests.sip import factories

# --------------------------------------------------------------------------- parsing


def test_parse_typical_invite():
    """A typical INVITE parses into method, URI, headers and body."""
    data = factories.request_bytes()
    msg = parse_message(data)
    assert isinstance(msg, Request)
    assert msg.method == "INVITE"
    assert msg.uri == "sip:+15551234567@gw.example.com:5060;user=phone"
    assert msg.version == "SIP/2.0"
    assert msg.top_via.branch == factories.BRANCH
    assert [v.host for v in msg.via] == ["192.0.2.10", "198.51.100.7"]
    assert msg.call_id == "a84b4c76e66710@pc33.example.com"
    assert msg.cseq.seq == 314159
    assert msg.cseq.method == "INVITE"
    assert msg.from_tag == "1928301774"
    assert msg.to_tag is None
    assert msg.to.display_name == "Bob"
    assert msg.max_forwards == 69
    assert msg.body == factories.SDP
    assert msg.content_type == "application/sdp"
    assert msg.media_type == "application/sdp"
    assert [str(r.uri) for r in msg.record_route] == ["sip:198.51.100.7;lr"]
    assert msg.route == []
    assert str(msg.contact[0].uri) == "sip:alice@192.0.2.10:5060;transport=udp"
    assert repr(msg) == "<Request INVITE sip:+15551234567@gw.example.com:5060;user=phone>"


def test_parse_response():
    """A response parses into status, reason and headers."""
    msg = parse_message(factories.response_bytes(180, "Ringing"))
    assert isinstance(msg, Response)
    assert msg.status == 180
    assert msg.reason == "Ringing"
    assert msg.to_tag == "a6c85cf"
    assert repr(msg) == "<Response 180 Ringing>"


def test_request_uri_parsed_lazily_and_settable():
    """request_uri parses the URI text once; assigning uri resets it."""
    msg = factories.request()
    ruri = msg.request_uri
    assert isinstance(ruri, SipURI)
    assert ruri.params == {"user": "phone"}
    assert msg.request_uri is ruri
    msg.uri = "tel:+15551234567"
    assert isinstance(msg.request_uri, TelURI)
    msg.uri = SipURI("example.com", "bob")
    assert msg.uri == "sip:bob@example.com"
    assert msg.serialize().startswith(b"INVITE sip:bob@example.com SIP/2.0\r\n")


@pytest.mark.parametrize(("compact", "full"), sorted(COMPACT_FORMS.items()))
def test_compact_forms(compact, full):
    """Every compact header name maps to its full name, in either case (§7.3.3)."""
    assert canonical_key(compact) == full
    assert canonical_key(compact.upper()) == full
    if full == "content-length":
        data = b"OPTIONS sip:a@b SIP/2.0\r\n" + compact.upper().encode() + b": 0\r\n\r\n"
        assert parse_message(data, stream=True).headers.get(full) == "0"
        return
    data = factories.minimal_request_bytes(extra=f"{compact.upper()}: <sip:v@h>\r\n")
    msg = parse_message(data)
    assert "<sip:v@h>" in msg.headers.get_all(full)
    assert msg.serialize() == data


def test_compact_headers_give_the_same_values():
    """A message written in compact form gives the same structured values."""
    data = (
        b"OPTIONS sip:bob@example.com SIP/2.0\r\n"
        b"v: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
        b"t: <sip:bob@example.com>\r\nf: <sip:a@example.com>;tag=9\r\n"
        b"i: cid\r\nCSeq: 2 OPTIONS\r\nm: <sip:a@h>\r\nl: 0\r\n\r\n"
    )
    msg = parse_message(data)
    assert msg.top_via.branch == "z9hG4bK1"
    assert msg.from_tag == "9"
    assert msg.call_id == "cid"
    assert msg.headers.get("Contact") == "<sip:a@h>"
    assert msg.headers.get("content-length") == "0"
    assert msg.serialize() == data


def test_header_names_are_case_insensitive_and_lws_before_colon():
    """Names match in any case, with LWS allowed before the colon (§7.3.1)."""
    data = factories.minimal_request_bytes(extra="x-FOO : bar\r\nMaX-fOrWaRdS2: 1\r\n")
    msg = parse_message(data)
    assert msg.headers.get("X-Foo") == "bar"
    assert msg.headers.get("max-forwards2") == "1"
    assert "X-FOO" in msg.headers
    assert 42 not in msg.headers
    assert msg.serialize() == data


def test_repeated_and_comma_separated_values():
    """get_all gathers repeated fields and splits list headers, in order."""
    data = factories.minimal_request_bytes(
        extra=(
            "Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n"
            "Route: <sip:p3.example.com;lr>\r\n"
            "X-List: a, b\r\n"
        )
    )
    msg = parse_message(data)
    assert [str(r.uri.host) for r in msg.route] == [
        "p1.example.com",
        "p2.example.com",
        "p3.example.com",
    ]
    assert msg.headers.get("route") == "<sip:p1.example.com;lr>"
    assert msg.headers.get_fields("route") == [
        "<sip:p1.example.com;lr>, <sip:p2.example.com;lr>",
        "<sip:p3.example.com;lr>",
    ]
    assert msg.headers.count("route") == 2
    assert msg.headers.get_all("x-list") == ["a, b"]  # unknown headers are not split
    assert msg.headers.get("x-missing", "dflt") == "dflt"


def test_via_list_in_one_field():
    """Several Via values in one field: top_via takes the first."""
    data = factories.minimal_request_bytes().replace(
        b"branch=z9hG4bKabc\r\n", b"branch=z9hG4bKabc, SIP/2.0/TCP h2;branch=z9hG4bK2\r\n"
    )
    msg = parse_message(data)
    assert msg.top_via.branch == "z9hG4bKabc"
    assert [v.branch for v in msg.via] == ["z9hG4bKabc", "z9hG4bK2"]


def test_line_folding_is_unfolded_and_raw_kept():
    """Folded lines read as one value with single SPs; serialization keeps the folds."""
    data = factories.minimal_request_bytes(
        extra="Subject: first\r\n   second\r\n\tthird\r\nContact:\r\n  <sip:a@h>\r\n"
    )
    msg = parse_message(data)
    assert msg.headers.get("subject") == "first second third"
    assert str(msg.contact[0].uri) == "sip:a@h"
    assert msg.serialize() == data


def test_fold_before_any_header_is_rejected():
    """A continuation line right after the start line is an error."""
    with pytest.raises(SipParseError):
        parse_message(b"OPTIONS sip:a@b SIP/2.0\r\n folded: x\r\nl: 0\r\n\r\n")


def test_leading_crlf_ignored():
    """CRLFs before the start line are skipped (§7.5)."""
    data = factories.minimal_request_bytes()
    assert parse_message(b"\r\n\r\n" + data).serialize() == data


def test_unknown_headers_preserved_byte_for_byte():
    """Unknown and oddly spaced fields come back out exactly, in order."""
    extra = "X-B:   spaced  value\r\nx-a: 1\r\nWeird-Header!~: ;;,,;;\r\nX-B: again\r\n"
    data = factories.minimal_request_bytes(extra=extra)
    msg = parse_message(data)
    assert msg.serialize() == data
    assert bytes(msg) == data
    assert msg.headers.get_all("x-b") == ["spaced  value", "again"]
    names = [n for n, _ in msg.headers]
    assert names[-5:-1] == ["X-B", "x-a", "Weird-Header!~", "X-B"]


def test_non_utf8_bytes_round_trip():
    """Header bytes that are not UTF-8 survive parse + serialize untouched."""
    data = factories.minimal_request_bytes().replace(
        b"Content-Length", b"X-Bin: \xff\xfe\r\nContent-Length"
    )
    assert parse_message(data).serialize() == data


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\r\n\r\n",
        b"INVITE sip:a@b\r\n\r\n",
        b"INVITE  sip:a@b SIP/2.0\r\n\r\n",
        b"INVITE sip:a@b SIP/2.0 \r\n\r\n",
        b"INVITE sip:a@b; lr SIP/2.0\r\n\r\n",
        b"INV(ITE sip:a@b SIP/2.0\r\n\r\n",
        b"INVITE sip:a@b HTTP/1.1\r\n\r\n",
        b"INVITE sip:a@b SIP/2\r\n\r\n",
        b"SIP/2.0\r\n\r\n",
        b"SIP/2.0 2000 OK\r\n\r\n",
        b"SIP/2.0 20 OK\r\n\r\n",
        b"SIP/2.0 099 Low\r\n\r\n",
        b"SIP/2.0 700 High\r\n\r\n",
        b"SIP/2.0 2x0 OK\r\n\r\n",
        b"OPTIONS sip:a@b SIP/2.0\r\nNoColon\r\n\r\n",
        b"OPTIONS sip:a@b SIP/2.0\r\nBad Name: x\r\n\r\n",
        b"OPTIONS sip:a@b SIP/2.0\r\n: empty name\r\n\r\n",
        b"OPTIONS sip:a@b SIP/2.0\r\nVia\r\n\r\n",
    ],
)
def test_bad_start_and_header_lines(data):
    """Malformed start lines and header lines raise SipParseError(400)."""
    with pytest.raises(SipParseError) as info:
        parse_message(data)
    assert info.value.status_hint == 400


def test_status_line_variants():
    """An empty reason phrase and an unusual version are accepted by the parser."""
    assert parse_message(b"SIP/2.0 100 \r\nl: 0\r\n\r\n").reason == ""
    assert parse_message(b"SIP/2.0 100\r\nl: 0\r\n\r\n").reason == ""
    assert parse_message(b"sip/3.1 200 OK\r\nl: 0\r\n\r\n").version == "SIP/3.1"


# -------------------------------------------------------------------- Content-Length


def test_udp_body_longer_than_content_length_is_truncated():
    """§18.3: extra octets after Content-Length are dropped on a datagram."""
    data = factories.minimal_request_bytes(body=b"hello") + b"garbage"
    msg = parse_message(data)
    assert msg.body == b"hello"
    assert msg.serialize() == data[: -len(b"garbage")]


def test_udp_body_shorter_than_content_length_is_an_error():
    """§18.3: a datagram shorter than Content-Length gets a 400, with the message kept."""
    data = factories.minimal_request_bytes(body=b"hello")[:-2]
    with pytest.raises(SipParseError) as info:
        parse_message(data)
    assert info.value.status_hint == 400
    assert isinstance(info.value.message, Request)
    assert info.value.message.call_id == "c1@example.com"


def test_udp_without_content_length_body_runs_to_end():
    """Without Content-Length the datagram's remaining bytes are the body."""
    data = b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: x\r\n\r\nbody bytes\r\n"
    msg = parse_message(data)
    assert msg.body == b"body bytes\r\n"
    assert msg.serialize().endswith(b"Content-Length: 12\r\n\r\nbody bytes\r\n")


def test_udp_without_empty_line():
    """A datagram without the closing empty line still parses (RFC 4475 baddn)."""
    msg = parse_message(b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: x\r\nl: 0\r\n")
    assert msg.call_id == "x"
    assert msg.body == b""


def test_stream_requires_content_length_and_complete_head():
    """§18.3: on a stream Content-Length is mandatory and the head must be complete."""
    with pytest.raises(SipParseError):
        parse_message(b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: x\r\n\r\n", stream=True)
    with pytest.raises(SipParseError):
        parse_message(b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: x\r\n", stream=True)
    data = factories.minimal_request_bytes(body=b"abc")
    assert parse_message(data, stream=True).body == b"abc"


@pytest.mark.parametrize("value", [b"-999", b"five", b"1 2", b"", b"\xd9\xa1"])
def test_bad_content_length(value):
    """Negative or non-numeric Content-Length is a 400 (RFC 4475 §3.1.2.3)."""
    data = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: " + value + b"\r\n\r\n"
    with pytest.raises(SipParseError) as info:
        parse_message(data)
    assert info.value.status_hint == 400


def test_multiple_content_length_is_an_error():
    """Two Content-Length fields are a 400 (RFC 4475 §3.3.9)."""
    with pytest.raises(SipParseError):
        parse_message(b"OPTIONS sip:a@b SIP/2.0\r\nl: 0\r\nContent-Length: 0\r\n\r\n")


def test_max_size():
    """A message over the caller's limit is rejected with 513."""
    data = factories.request_bytes()
    parse_message(data, max_size=len(data))
    with pytest.raises(SipParseError) as info:
        parse_message(data, max_size=len(data) - 1)
    assert info.value.status_hint == 513


# -------------------------------------------------------------------- serialization


def test_serialize_round_trip_is_exact():
    """An unmodified message serializes to the bytes it was parsed from."""
    for data in (factories.request_bytes(), factories.response_bytes(body=b"v=0\r\n")):
        assert parse_message(data).serialize() == data


def test_serialize_fixes_content_length():
    """After the body changes, Content-Length follows it."""
    msg = factories.request()
    msg.body = b"x" * 7
    out = msg.serialize()
    assert b"\r\nContent-Length: 7\r\n\r\nxxxxxxx" in out
    assert parse_message(out).body == b"x" * 7


def test_built_messages_serialize():
    """Messages built from scratch get a Content-Length and canonical names."""
    req = Request("OPTIONS", "sip:bob@example.com", [("via", "SIP/2.0/UDP h;branch=z9hG4bKx")])
    assert req.serialize() == (
        b"OPTIONS sip:bob@example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP h;branch=z9hG4bKx\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    resp = Response(486)
    assert resp.reason == "Busy Here"
    assert Response(299).reason == "Unknown"
    assert resp.serialize() == b"SIP/2.0 486 Busy Here\r\nContent-Length: 0\r\n\r\n"
    assert Response(200, "Fine", Headers([("X-A", "1")]), b"b").serialize() == (
        b"SIP/2.0 200 Fine\r\nX-A: 1\r\nContent-Length: 1\r\n\r\nb"
    )


# ------------------------------------------------------------------------- mutation


def test_insert_top_pushes_a_via():
    """insert_top puts the new value above the existing Vias (§8.1.1.7)."""
    msg = factories.request()
    _ = msg.top_via
    msg.headers.insert_top("v", "SIP/2.0/UDP b2bua.example.com;branch=z9hG4bKnew")
    assert msg.top_via.branch == "z9hG4bKnew"
    assert len(msg.via) == 3
    out = msg.serialize()
    assert (
        b"\r\nVia: SIP/2.0/UDP b2bua.example.com;branch=z9hG4bKnew\r\nVia: SIP/2.0/UDP 192" in out
    )


def test_insert_top_without_existing_field_goes_first():
    """With no field of that name, insert_top puts it first."""
    h = Headers([("To", "<sip:a@b>")])
    h.insert_top("Record-Route", "<sip:p;lr>")
    assert list(h) == [("Record-Route", "<sip:p;lr>"), ("To", "<sip:a@b>")]


def test_set_replaces_all_in_place_and_invalidates_cache():
    """set() replaces every field at the first one's position; cached values refresh."""
    msg = factories.request()
    assert msg.max_forwards == 69
    msg.headers.set("max-forwards", 68)
    assert msg.max_forwards == 68
    assert b"\r\nMax-Forwards: 68\r\nRecord-Route" in msg.serialize()
    msg.headers.set("X-New", "v")
    assert msg.headers.get("x-new") == "v"
    assert list(msg.headers)[-1] == ("X-New", "v")


def test_set_with_value_object():
    """set() accepts a value object and stores its str()."""
    msg = factories.request()
    msg.headers.set("To", msg.to.with_tag("abc"))
    assert msg.to_tag == "abc"
    assert msg.headers.get("to") == '"Bob" <sip:+15551234567@example.com;user=phone>;tag=abc'


def test_remove_and_pop_first():
    """remove() drops all fields; pop_first() takes the first list value only."""
    msg = parse_message(
        factories.minimal_request_bytes().replace(
            b"branch=z9hG4bKabc\r\n", b"branch=z9hG4bKabc, SIP/2.0/TCP h2;branch=z9hG4bK2\r\n"
        )
    )
    _ = msg.via
    assert msg.headers.pop_first("via") == "SIP/2.0/UDP host.example.com;branch=z9hG4bKabc"
    assert [v.branch for v in msg.via] == ["z9hG4bK2"]
    assert msg.headers.pop_first("via") == "SIP/2.0/TCP h2;branch=z9hG4bK2"
    assert msg.headers.pop_first("via") is None
    with pytest.raises(SipParseError):
        _ = msg.top_via
    assert msg.headers.remove("max-forwards") == 1
    assert msg.max_forwards is None
    assert msg.headers.remove("max-forwards") == 0


def test_header_values_with_newlines_are_refused():
    """Values containing CR or LF would inject headers: refused."""
    with pytest.raises(ValueError, match="CR or LF"):
        Headers().add("X", "a\r\nEvil: 1")
    with pytest.raises(ValueError, match="bad header name"):
        Headers().add("X: y", "z")
    with pytest.raises(ValueError, match="CR or LF"):
        Response(200, "OK\r\nEvil: 1")


def test_copy_is_independent():
    """A copied message can be changed without touching the original."""
    msg = factories.request()
    branch = msg.top_via.branch
    other = msg.copy()
    other.headers.insert_top("Via", "SIP/2.0/UDP x;branch=z9hG4bKcopy")
    other.headers.set("Max-Forwards", "10")
    other.uri = "sip:elsewhere@example.com"
    assert msg.top_via.branch == branch
    assert msg.max_forwards == 69
    assert msg.uri.startswith("sip:+1555")
    assert other.top_via.branch == "z9hG4bKcopy"
    resp = factories.response()
    rcopy = resp.copy()
    rcopy.status = 404
    assert resp.status == 200
    assert rcopy.headers.get("call-id") == resp.headers.get("call-id")
    assert "Headers([" in repr(resp.headers)


def test_missing_mandatory_headers_raise_on_access():
    """Accessing a missing mandatory header raises SipParseError."""
    msg = parse_message(b"OPTIONS sip:a@b SIP/2.0\r\nl: 0\r\n\r\n")
    for attr in ("call_id", "cseq", "from_", "to", "top_via"):
        with pytest.raises(SipParseError):
            getattr(msg, attr)
    assert msg.via == []
    assert msg.contact == []
    assert msg.max_forwards is None
    assert msg.content_type is None
    assert msg.media_type is None


# -------------------------------------------------------------------- make_response


def test_make_response_copies_per_8_2_6():
    """Via, From, Call-ID, CSeq copied as-is; To gets the tag; body empty."""
    req = factories.request()
    resp = make_response(req, 486, to_tag="xyz")
    assert resp.status == 486
    assert resp.reason == "Busy Here"
    assert [n for n, _ in resp.headers] == ["Via", "Via", "To", "From", "Call-ID", "CSeq"]
    assert resp.headers.get_all("via") == req.headers.get_all("via")
    assert resp.from_tag == req.from_tag
    assert resp.to_tag == "xyz"
    assert resp.call_id == req.call_id
    assert resp.cseq == req.cseq
    assert resp.body == b""
    assert resp.serialize().endswith(b"Content-Length: 0\r\n\r\n")


def test_make_response_keeps_existing_to_tag_and_custom_reason():
    """An in-dialog request's To tag is kept; a custom reason is used."""
    req = factories.request("BYE", to_tag="old")
    resp = make_response(req, 200, "Fine", to_tag="new")
    assert resp.to_tag == "old"
    assert resp.reason == "Fine"
    assert "Record-Route" not in resp.headers


def test_make_response_to_a_malformed_request():
    """A 400 can be built for a request whose To does not parse; To is copied as-is."""
    req = parse_message(factories.minimal_request_bytes().replace(b"<sip:bob", b'"x <sip:bob'))
    assert isinstance(req, Request)
    with pytest.raises(SipParseError):
        validate_request(req)
    resp = make_response(req, 400, to_tag="t")
    assert resp.headers.get("to") == req.headers.get("to")
    assert resp.serialize().startswith(b"SIP/2.0 400 Bad Request\r\n")


def test_make_response_record_route_and_timestamp():
    """Record-Route goes into 1xx/2xx to INVITE; Timestamp into 100 only."""
    req = factories.request(extra=("Timestamp: 54",))
    trying = make_response(req, 100)
    assert trying.headers.get("timestamp") == "54"
    assert "record-route" not in trying.headers
    ok = make_response(req, 200, to_tag="t")
    assert ok.headers.get("record-route") == "<sip:198.51.100.7;lr>"
    assert "timestamp" not in ok.headers
    assert "record-route" not in make_response(req, 404, to_tag="t").headers


# ---------------------------------------------------------------------- validation


def test_valid_request_passes():
    """A well-formed request passes validate_request."""
    validate_request(factories.request())
    validate_request(factories.request("OPTIONS"))


@pytest.mark.parametrize("missing", ["Via", "From", "To", "Call-ID", "CSeq"])
def test_missing_mandatory_header_is_400(missing):
    """Each of Via/From/To/Call-ID/CSeq is required (§8.1.1)."""
    msg = factories.request("OPTIONS")
    msg.headers.remove(missing)
    with pytest.raises(SipParseError) as info:
        validate_request(msg)
    assert info.value.status_hint == 400
    assert info.value.message is msg


def test_max_forwards_optional_but_numeric():
    """Max-Forwards may be absent (RFC 2543) but must be numeric when present."""
    msg = factories.request("OPTIONS")
    msg.headers.remove("Max-Forwards")
    validate_request(msg)
    msg.headers.set("Max-Forwards", "ten")
    with pytest.raises(SipParseError):
        validate_request(msg)


def test_version_505_and_mismatch_400():
    """Another SIP version gets 505; a CSeq method mismatch gets 400."""
    msg = factories.request("OPTIONS")
    msg.version = "SIP/3.0"
    with pytest.raises(SipParseError) as info:
        validate_request(msg)
    assert info.value.status_hint == 505
    msg = factories.request("OPTIONS", cseq_method="INVITE")
    with pytest.raises(SipParseError) as info:
        validate_request(msg)
    assert info.value.status_hint == 400


def test_scheme_and_extension_and_media_checks():
    """416 for other schemes, 420 with Unsupported, 415 with Accept."""
    msg = factories.request("OPTIONS", uri="im:bob@example.com")
    with pytest.raises(SipParseError) as info:
        validate_request(msg)
    assert info.value.status_hint == 416
    validate_request(msg, schemes=frozenset({"im"}))

    msg = factories.request("OPTIONS", extra=("Require: foo, 100rel",))
    validate_request(msg)
    with pytest.raises(SipParseError) as info:
        validate_request(msg, supported=frozenset({"100rel"}))
    assert info.value.status_hint == 420
    assert info.value.headers == (("Unsupported", "foo"),)
    validate_request(msg, supported=frozenset({"100rel", "foo"}))

    ack = factories.request("ACK", extra=("Require: foo",))
    validate_request(ack, supported=frozenset())

    inv = factories.request()
    validate_request(inv, accepted_types=frozenset({"application/sdp"}))
    with pytest.raises(SipParseError) as info:
        validate_request(inv, accepted_types=frozenset({"text/plain"}))
    assert info.value.status_hint == 415
    assert info.value.headers == (("Accept", "text/plain"),)
    inv.headers.remove("Content-Type")
    with pytest.raises(SipParseError) as info:
        validate_request(inv, accepted_types=frozenset({"application/sdp"}))
    assert info.value.status_hint == 400


def test_request_uri_problems():
    """A malformed Request-URI or one with headers gets 400."""
    for uri in ("sip:2001:db8::10", "sip:a@b?Route=x"):
        with pytest.raises(SipParseError) as info:
            validate_request(factories.request("OPTIONS", uri=uri))
        assert info.value.status_hint == 400


def test_response_validation():
    """validate_response wants mandatory headers and exactly one Via."""
    validate_response(factories.response())
    resp = factories.response(extra=("Via: SIP/2.0/UDP 255.255.255.255;branch=z9hG4bKx",))
    with pytest.raises(SipParseError):
        validate_response(resp)
    validate_response(resp, single_via=False)
    resp.version = "SIP/3.0"
    with pytest.raises(SipParseError) as info:
        validate_response(resp)
    assert info.value.status_hint == 505


def test_accepts():
    """Accept matching with wildcards; absent Accept means SDP (§20.1)."""
    req = factories.request("OPTIONS")
    assert accepts(req, "application/sdp")
    assert not accepts(req, "text/plain")
    req.headers.set("Accept", "text/*;q=0.5, application/pidf+xml")
    assert accepts(req, "text/plain")
    assert accepts(req, "application/PIDF+xml")
    assert not accepts(req, "application/sdp")
    req.headers.set("Accept", "*/*")
    assert accepts(req, "image/png")


def test_error_classes():
    """The error hierarchy carries status hints and reasons."""
    err = SipParseError("bad", 513)
    assert isinstance(err, SipError)
    assert err.reason == "bad"
    assert repr(err) == "SipParseError('bad', status_hint=513)"
    assert LocalProtocolError("x").status_hint == 500
    assert RemoteProtocolError("y", 481).status_hint == 481


def test_forget_parsed_keeps_odd_header_lines_byte_for_byte() -> None:
    """A kept message stops storing "Name: value" lines twice; any other spelling (no
    space, two spaces, trailing blanks, folding) still goes out exactly as it came."""
    raw = (
        b"OPTIONS sip:b@example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK-1\r\n"
        b"From:<sip:a@example.com>;tag=1\r\n"
        b"To:  <sip:b@example.com>\r\n"
        b"Call-ID: x@y \r\n"
        b"CSeq: 1 OPTIONS\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    message = parse_message(raw)
    message.forget_parsed()
    assert message.serialize() == raw
    raws = {f[0]: f[3] for f in message.headers._fields}
    assert raws["via"] is None and raws["cseq"] is None
    assert raws["from"] == "From:<sip:a@example.com>;tag=1" and raws["to"] is not None
    assert raws["call-id"] is not None
    assert message.call_id == "x@y" and str(message.to.uri) == "sip:b@example.com"
    folded = raw.replace(b"CSeq: 1 OPTIONS\r\n", b"CSeq: 1 OPTIONS\r\nSubject: one\r\n two\r\n")
    message = parse_message(folded)
    message.forget_parsed()
    assert message.serialize() == folded


def test_forget_parsed_drops_the_parses_and_parses_again_on_use() -> None:
    """A long-kept message lets go of its parsed headers; the next access parses again
    and gives the same values."""
    request = factories.request()
    before = (request.from_, request.cseq, request.request_uri, request.via)
    request.forget_parsed()
    assert request.headers._cache == {} and request._ruri is None
    after = (request.from_, request.cseq, request.request_uri, request.via)
    assert [str(v) for v in after] == [str(v) for v in before]
    assert after[0] is not before[0]


def test_reduced_keeps_only_the_named_fields_and_no_body() -> None:
    """The copy keeps method, Request-URI and the named fields; the original is unchanged."""
    request = factories.request()
    assert request.body
    small = request.reduced("Call-ID", "from", "TO", "cseq")
    assert sorted(name for name, _ in small.headers) == ["CSeq", "Call-ID", "From", "To"]
    assert small.method == "INVITE" and small.uri == request.uri and small.body == b""
    assert small.cseq == request.cseq and small.from_tag == request.from_tag
    assert "via" in request.headers and request.body
