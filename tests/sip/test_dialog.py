"""RFC 3261 §12 dialogs: creation as UAS and UAC, in-dialog requests, CSeq, routing."""

from __future__ import annotations

import pytest

from b2bua.sip.dialog import Dialog, Hop, initial_cseq, new_call_id, new_tag, uri_hop
from b2bua.sip.errors import SipParseError
from b2bua.sip.headers import SipURI, TelURI, parse_name_addr, parse_uri
from b2bua.sip.message import Request, Response, make_response, parse_message
from tests.sip.factories import request, response


def uas_dialog() -> Dialog:
    """The dialog b2bua creates answering the factory INVITE with tag 'ours'."""
    return Dialog.as_uas(request("INVITE"), "ours")


def test_uas_dialog_takes_ids_route_set_and_target_from_the_request() -> None:
    """§12.1.1: Call-ID, tags, Record-Route in order, Contact target, remote CSeq."""
    dialog = uas_dialog()
    assert dialog.id == ("a84b4c76e66710@pc33.example.com", "ours", "1928301774")
    assert [str(r.uri) for r in dialog.route_set] == ["sip:198.51.100.7;lr"]
    assert str(dialog.remote_target) == "sip:alice@192.0.2.10:5060;transport=udp"
    assert dialog.remote_seq == 314159
    assert dialog.local_seq is None
    assert dialog.early
    assert "tag" not in dialog.local_uri.params and "tag" not in dialog.remote_uri.params


def test_uas_dialog_needs_a_contact() -> None:
    """A dialog-creating request without Contact cannot make a dialog (400)."""
    invite = request("INVITE")
    invite.headers.remove("Contact")
    with pytest.raises(SipParseError) as info:
        Dialog.as_uas(invite, "ours")
    assert info.value.status_hint == 400


def test_first_request_of_a_uas_dialog_gets_a_random_cseq_then_counts_up() -> None:
    """§12.2.1.1: an empty local CSeq starts at a random value below 2**31, then +1."""
    dialog = uas_dialog()
    bye = dialog.create_request("BYE")
    first = bye.cseq.seq
    assert 0 < first < 2**31
    assert dialog.create_request("INFO").cseq.seq == first + 1


def test_in_dialog_request_swaps_tags_and_uses_the_loose_route() -> None:
    """§12.2.1.1: From is ours with our tag, To theirs; lr keeps the target in the R-URI."""
    dialog = uas_dialog()
    bye = dialog.create_request("BYE")
    assert bye.method == "BYE"
    assert bye.uri == "sip:alice@192.0.2.10:5060;transport=udp"
    assert bye.from_tag == "ours"
    assert bye.to_tag == "1928301774"
    assert str(bye.from_.uri) == "sip:+15551234567@example.com;user=phone"
    assert bye.headers.get_all("Route") == ["<sip:198.51.100.7;lr>"]
    assert bye.call_id == dialog.call_id
    assert bye.max_forwards == 70
    assert "Via" not in bye.headers
    assert dialog.next_hop() == Hop("udp", "198.51.100.7", 5060)


def test_strict_route_moves_the_target_into_the_last_route() -> None:
    """§12.2.1.1: without lr the first route becomes the R-URI, the target the last Route."""
    dialog = uas_dialog()
    dialog.route_set = [parse_name_addr("<sip:proxy.example.com;method=INVITE>")]
    req = dialog.create_request("INFO")
    assert req.uri == "sip:proxy.example.com"
    assert req.headers.get_all("Route") == ["<sip:alice@192.0.2.10:5060;transport=udp>"]


def test_contact_added_when_asked() -> None:
    """Target refresh requests carry our Contact."""
    dialog = uas_dialog()
    req = dialog.create_request("INVITE", contact=SipURI("10.0.0.1", "b2bua", 5060))
    assert req.headers.get("Contact") == "<sip:b2bua@10.0.0.1:5060>"


def test_ack_uses_the_invite_cseq_and_does_not_advance_the_local_cseq() -> None:
    """§13.2.2.4: the ACK for a 2xx has the INVITE's CSeq number and method ACK."""
    dialog = uas_dialog()
    invite = dialog.create_request("INVITE")
    ack = dialog.create_ack(invite.cseq.seq)
    assert str(ack.cseq) == f"{invite.cseq.seq} ACK"
    assert dialog.local_seq == invite.cseq.seq


def invite_we_send() -> Request:
    msg = parse_message(
        b"INVITE sip:bob@example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx\r\n"
        b"Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=mine\r\n"
        b"To: <sip:bob@example.com>\r\nCall-ID: cid\r\nCSeq: 7 INVITE\r\n"
        b"Contact: <sip:b2bua@10.0.0.1>\r\nContent-Length: 0\r\n\r\n"
    )
    assert isinstance(msg, Request)
    return msg


def answer(invite: Request, status: int, tag: str, *extra: tuple[str, str]) -> Response:
    resp = make_response(invite, status, to_tag=tag)
    for name, value in extra:
        resp.headers.add(name, value)
    return resp


def test_uac_dialog_reverses_record_route_and_keeps_local_cseq() -> None:
    """§12.1.2: route set is the Record-Route reversed; local CSeq from the request."""
    invite = invite_we_send()
    resp = answer(
        invite,
        200,
        "theirs",
        ("Record-Route", "<sip:p2.example.com;lr>, <sip:p1.example.com;lr>"),
        ("Contact", "<sip:bob@192.0.2.20:5070>"),
    )
    dialog = Dialog.as_uac(invite, resp)
    assert dialog.id == ("cid", "mine", "theirs")
    assert [str(r.uri) for r in dialog.route_set] == [
        "sip:p1.example.com;lr",
        "sip:p2.example.com;lr",
    ]
    assert dialog.local_seq == 7 and dialog.remote_seq is None
    assert not dialog.early
    assert dialog.create_request("BYE").cseq.seq == 8


def test_early_dialog_is_confirmed_with_the_route_set_of_the_2xx() -> None:
    """§12.2.1.2: confirming an early dialog recomputes its route set and target."""
    invite = invite_we_send()
    early = Dialog.as_uac(
        invite, answer(invite, 180, "t", ("Record-Route", "<sip:old.example.com;lr>"))
    )
    assert early.early and str(early.remote_target) == "sip:bob@example.com"
    ok = answer(invite, 200, "t", ("Contact", "<sip:bob@192.0.2.20>"))
    early.confirm_by(ok)
    assert not early.early
    assert early.route_set == []
    assert str(early.remote_target) == "sip:bob@192.0.2.20"
    assert early.next_hop() == Hop("udp", "192.0.2.20", 5060)


def test_uac_dialog_needs_a_to_tag_and_a_2xx_needs_a_contact() -> None:
    """No To tag, or a 2xx without Contact, makes no dialog."""
    invite = invite_we_send()
    with pytest.raises(SipParseError):
        Dialog.as_uac(invite, make_response(invite, 180))
    with pytest.raises(SipParseError):
        Dialog.as_uac(invite, answer(invite, 200, "t"))


def test_remote_cseq_out_of_order_is_refused() -> None:
    """§12.2.2: a lower CSeq than the last one is refused; ACK and CANCEL are exempt."""
    dialog = uas_dialog()
    assert dialog.receive_request(request("INFO", cseq=314160, to_tag="ours"))
    assert dialog.remote_seq == 314160
    assert not dialog.receive_request(request("INFO", cseq=314150, to_tag="ours"))
    assert dialog.receive_request(request("ACK", cseq=1, to_tag="ours"))


def test_target_refresh_replaces_the_remote_target() -> None:
    """§12.2: the Contact of a re-INVITE becomes the new remote target."""
    dialog = uas_dialog()
    reinvite = request("INVITE", to_tag="ours")
    reinvite.headers.set("Contact", "<sip:alice@192.0.2.99:5062>")
    dialog.refresh_target(reinvite)
    assert str(dialog.remote_target) == "sip:alice@192.0.2.99:5062"


def test_matches_requests_and_responses_of_the_dialog() -> None:
    """A received request matches by its To tag; a response to ours by its From tag."""
    dialog = uas_dialog()
    assert dialog.matches(request("BYE", to_tag="ours"), incoming=True)
    assert not dialog.matches(request("BYE", to_tag="other"), incoming=True)
    mine = dialog.create_request("BYE")
    assert dialog.matches(make_response(mine, 200), incoming=False)


@pytest.mark.parametrize(
    ("uri", "hop"),
    [
        ("sip:a@10.0.0.1", Hop("udp", "10.0.0.1", 5060)),
        ("sip:a@10.0.0.1:5070;transport=TCP", Hop("tcp", "10.0.0.1", 5070)),
        ("sips:a@example.com", Hop("tls", "example.com", 5061)),
        ("sip:a@example.com;maddr=10.9.9.9", Hop("udp", "10.9.9.9", 5060)),
        ("sip:[2001:db8::1]:5080", Hop("udp", "2001:db8::1", 5080)),
    ],
)
def test_uri_hop(uri: str, hop: Hop) -> None:
    """A SIP URI names transport, host and port; defaults 5060/5061 and UDP/TLS."""
    assert uri_hop(parse_uri(uri)) == hop


def test_tel_uri_has_no_hop_and_hop_prints_like_next_hop() -> None:
    """tel: URIs are not routable here; a Hop prints as host:port;transport=x."""
    assert uri_hop(TelURI("+4930123")) is None
    assert str(Hop("tcp", "::1", 5060)) == "[::1]:5060;transport=tcp"


def test_fresh_identifiers_are_random() -> None:
    """Tags, Call-IDs and first CSeqs differ every time and carry no host name."""
    assert new_tag() != new_tag()
    call_id = new_call_id()
    assert call_id != new_call_id() and "@" not in call_id and len(call_id) == 32
    assert 0 < initial_cseq() < 2**31


def test_response_factory_is_usable() -> None:
    """The factory 200 parses (sanity check of the helpers used above)."""
    assert response(200).to_tag == "a6c85cf"


# -- persistence ----------------------------------------------------------------------------


def test_snapshot_restore_round_trips_every_field() -> None:
    """Dialog.restore(snapshot) is the same dialog: ids, URIs, route set, CSeqs, flags."""
    dialog = uas_dialog()
    dialog.create_request("INFO")
    dialog.early = False
    again = Dialog.restore(dialog.snapshot())
    assert again.snapshot() == dialog.snapshot()
    bye, bye_again = dialog.create_request("BYE"), again.create_request("BYE")
    assert bye.serialize() == bye_again.serialize()


def test_restore_raises_the_local_cseq_by_the_margin() -> None:
    """cseq_margin moves our CSeq past anything sent after the snapshot (§12.2.1.1)."""
    dialog = uas_dialog()
    first = dialog.create_request("INFO").cseq.seq
    again = Dialog.restore(dialog.snapshot(), cseq_margin=1000)
    assert again.create_request("BYE").cseq.seq == first + 1001
    assert again.remote_seq == dialog.remote_seq


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [
        ("local_seq", "12", TypeError),
        ("remote_seq", True, TypeError),
        ("remote_target", "sip:<<", SipParseError),
        ("call_id", None, None),
    ],
)
def test_restore_refuses_a_bad_snapshot(name: str, value: object, error: type | None) -> None:
    """A wrong type or an unparsable URI raises; a missing field raises KeyError."""
    data = uas_dialog().snapshot()
    if error is None:
        del data[name]
        error = KeyError
    else:
        data[name] = value
    with pytest.raises(error):
        Dialog.restore(data)
