"""SIP dialogs (RFC 3261 §12), sans-IO.

A dialog is the peer-to-peer relationship one leg of a call has with its far end.  This
module keeps its state and builds the requests sent inside it:

* §12.1.1 (we are the UAS: the dialog comes from a request and our To tag) and §12.1.2
  (we are the UAC: it comes from a 1xx/2xx with a To tag), early and confirmed, with the
  route set recomputed when an early dialog is confirmed by a 2xx (§12.2.1.2);
* §12.2.1.1 building a request inside the dialog: Request-URI and Route from the route set
  and remote target, loose (``lr``) and strict routing, From/To with the tags, Call-ID,
  the local CSeq (an empty one starts at a random value below 2**31, §8.1.1.5);
* §13.2.2.4 the ACK for a 2xx (CSeq number of the INVITE it acknowledges);
* §12.2.2 checking the remote CSeq of a received request (lower than the last: 500);
* target refresh (§12.2: INVITE, UPDATE and their 2xx replace the remote target);
* where an in-dialog request goes (:class:`Hop`: the first route, else the remote target);
* :meth:`Dialog.snapshot` / :meth:`Dialog.restore`: the state as plain JSON-able values, so
  a confirmed dialog survives a restart (``b2bua.store.recovery``).

Nothing here sends, schedules or reads a clock.  Fresh tags and Call-IDs come from
:func:`new_tag` / :func:`new_call_id` (random, so they say nothing about this host).
"""

from __future__ import annotations

import secrets
from typing import Any, Final, NamedTuple

from b2bua.sip.errors import SipParseError
from b2bua.sip.headers import CSEQ_MAX, NameAddr, SipURI, Uri, parse_name_addr, parse_uri
from b2bua.sip.message import Headers, Message, Request, Response

__all__ = [
    "TARGET_REFRESH_METHODS",
    "Dialog",
    "DialogId",
    "Hop",
    "initial_cseq",
    "new_call_id",
    "new_tag",
    "uri_hop",
]

#: §12.2 and RFC 3311: requests (and their 2xx) that replace the remote target.
TARGET_REFRESH_METHODS: Final = frozenset({"INVITE", "UPDATE"})

#: Request-URI parameters a Route URI may carry but a Request-URI must not (§19.1.1 table).
_NOT_IN_REQUEST_URI: Final = ("method",)


def new_tag() -> str:
    """A fresh From/To tag: 64 random bits (§19.3 asks for at least 32)."""
    return secrets.token_hex(8)


def new_call_id() -> str:
    """A fresh Call-ID: 128 random bits, no host name (§8.1.1.4)."""
    return secrets.token_hex(16)


def initial_cseq() -> int:
    """A first local CSeq number, random and below 2**31 (§8.1.1.5)."""
    return secrets.randbelow(2**31 - 1) + 1


class DialogId(NamedTuple):
    """§12: Call-ID, local tag and remote tag identify a dialog."""

    call_id: str
    local_tag: str
    remote_tag: str


class Hop(NamedTuple):
    """Where a request goes: transport name (lower case), host (IP or name), port."""

    transport: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port};transport={self.transport}"


def uri_hop(uri: Uri, default_transport: str = "udp") -> Hop | None:
    """The hop a SIP URI names (RFC 3263 without DNS): maddr or host, port, transport.

    A ``sips`` URI means TLS; without a ``transport`` parameter ``default_transport`` is
    used (the transport the leg already uses).  ``tel:`` and other URIs have no hop.
    """
    if not isinstance(uri, SipURI):
        return None
    transport = uri.transport or ("tls" if uri.secure else default_transport)
    if uri.secure and transport == "tcp":
        transport = "tls"
    host = uri.maddr or uri.bare_host
    host = host.strip("[]")
    port = uri.port or (5061 if transport == "tls" else 5060)
    return Hop(transport, host, port)


def _without_tag(addr: NameAddr) -> NameAddr:
    copy = addr.copy()
    copy.params.pop("tag", None)
    return copy


def _with_tag(addr: NameAddr, tag: str) -> NameAddr:
    copy = addr.copy()
    if tag:
        copy.params["tag"] = tag
    return copy


def _single_contact(message: Message) -> Uri | None:
    """The URI of the one Contact of ``message``, None when absent (SipParseError if bad)."""
    contacts = message.contact
    if not contacts:
        return None
    if len(contacts) != 1 or contacts[0].is_wildcard:
        raise SipParseError("a dialog needs exactly one Contact URI", 400)
    return contacts[0].uri


class Dialog:
    """The state of one dialog (§12): identifiers, sequence numbers, route set, target.

    ``local_seq`` is the CSeq number of the last request we sent in the dialog (None
    until we send one, for a dialog we created as UAS); ``remote_seq`` that of the last
    request received (None until one arrives, for a dialog we created as UAC).
    ``local_uri`` / ``remote_uri`` are the From / To of our requests, without tags.
    """

    __slots__ = (
        "call_id",
        "early",
        "local_seq",
        "local_tag",
        "local_uri",
        "remote_seq",
        "remote_tag",
        "remote_target",
        "remote_uri",
        "route_set",
        "secure",
    )

    def __init__(
        self,
        call_id: str,
        local_tag: str,
        remote_tag: str,
        local_uri: NameAddr,
        remote_uri: NameAddr,
        remote_target: Uri,
        route_set: list[NameAddr] | None = None,
        *,
        local_seq: int | None = None,
        remote_seq: int | None = None,
        secure: bool = False,
        early: bool = False,
    ) -> None:
        self.call_id = call_id
        self.local_tag = local_tag
        self.remote_tag = remote_tag
        self.local_uri = local_uri
        self.remote_uri = remote_uri
        self.remote_target = remote_target
        self.route_set: list[NameAddr] = [] if route_set is None else route_set
        self.local_seq = local_seq
        self.remote_seq = remote_seq
        self.secure = secure
        self.early = early

    def __repr__(self) -> str:
        state = "early" if self.early else "confirmed"
        return f"<Dialog {self.call_id} {self.local_tag}/{self.remote_tag} {state}>"

    # ------------------------------------------------------------------ creation

    @classmethod
    def as_uas(
        cls, request: Request, local_tag: str, *, early: bool = True, secure: bool = False
    ) -> Dialog:
        """§12.1.1: the dialog a UAS creates by answering ``request`` with ``local_tag``.

        Route set: the request's Record-Route values in order; remote target: its Contact;
        remote CSeq: its CSeq; the local CSeq stays empty.  ``secure`` when the request
        came over TLS with a ``sips`` Request-URI.  SipParseError (400) without exactly one
        Contact.
        """
        target = _single_contact(request)
        if target is None:
            raise SipParseError("a dialog-creating request needs a Contact", 400)
        return cls(
            request.call_id,
            local_tag,
            request.from_tag or "",
            _without_tag(request.to),
            _without_tag(request.from_),
            target,
            [addr.copy() for addr in request.record_route],
            remote_seq=request.cseq.seq,
            secure=secure,
            early=early,
        )

    @classmethod
    def as_uac(cls, request: Request, response: Response) -> Dialog:
        """§12.1.2: the dialog a 1xx (early) or 2xx to our ``request`` creates.

        Route set: the response's Record-Route values in reverse order; remote target: its
        Contact (a provisional without one keeps the Request-URI until a later response
        gives one); local CSeq: the request's.  The response must carry a To tag.
        """
        remote_tag = response.to_tag
        if not remote_tag:
            raise SipParseError("a dialog needs a To tag", 400)
        target = _single_contact(response)
        if target is None:
            if response.status >= 200:
                raise SipParseError("a 2xx creating a dialog needs a Contact", 400)
            target = request.request_uri
        return cls(
            request.call_id,
            request.from_tag or "",
            remote_tag,
            _without_tag(request.from_),
            _without_tag(request.to),
            target,
            [addr.copy() for addr in reversed(response.record_route)],
            local_seq=request.cseq.seq,
            secure=isinstance(request.request_uri, SipURI) and request.request_uri.secure,
            early=response.status < 200,
        )

    @property
    def id(self) -> DialogId:
        return DialogId(self.call_id, self.local_tag, self.remote_tag)

    # ------------------------------------------------------------------ persistence

    def snapshot(self) -> dict[str, Any]:
        """Every field as JSON-able values (URIs and name-addrs as their text)."""
        return {
            "call_id": self.call_id,
            "local_tag": self.local_tag,
            "remote_tag": self.remote_tag,
            "local_uri": str(self.local_uri),
            "remote_uri": str(self.remote_uri),
            "remote_target": str(self.remote_target),
            "route_set": [str(addr) for addr in self.route_set],
            "local_seq": self.local_seq,
            "remote_seq": self.remote_seq,
            "secure": self.secure,
            "early": self.early,
        }

    @classmethod
    def restore(cls, data: dict[str, Any], *, cseq_margin: int = 0) -> Dialog:
        """The dialog of a :meth:`snapshot`; KeyError, TypeError or SipParseError if bad.

        ``cseq_margin`` is added to the local CSeq: requests sent after the snapshot was
        taken used numbers up to that many higher, and §12.2.1.1 only asks that ours
        increase, so a restored dialog never repeats one without a write per request.
        """
        local_seq = data["local_seq"]
        remote_seq = data["remote_seq"]
        for seq in (local_seq, remote_seq):
            if seq is not None and (not isinstance(seq, int) or isinstance(seq, bool)):
                raise TypeError(f"a CSeq number must be an integer, not {seq!r}")
        if local_seq is not None and cseq_margin:
            local_seq = min(local_seq + cseq_margin, CSEQ_MAX)
        return cls(
            str(data["call_id"]),
            str(data["local_tag"]),
            str(data["remote_tag"]),
            parse_name_addr(data["local_uri"]),
            parse_name_addr(data["remote_uri"]),
            parse_uri(data["remote_target"]),
            [parse_name_addr(text) for text in data["route_set"]],
            local_seq=local_seq,
            remote_seq=remote_seq,
            secure=bool(data["secure"]),
            early=bool(data["early"]),
        )

    # ------------------------------------------------------------------ updates

    def confirm_by(self, response: Response) -> None:
        """A 2xx confirms our early dialog (§12.2.1.2): new route set and remote target."""
        if self.early:
            self.route_set = [addr.copy() for addr in reversed(response.record_route)]
            self.early = False
        self.refresh_target(response)

    def refresh_target(self, message: Message) -> None:
        """Replace the remote target with the Contact of a target refresh (§12.2)."""
        target = _single_contact(message)
        if target is not None:
            self.remote_target = target

    def receive_request(self, request: Request) -> bool:
        """§12.2.2: accept the CSeq of an in-dialog request; False means answer 500.

        ACK and CANCEL share the CSeq of their INVITE and are not checked.
        """
        if request.method in ("ACK", "CANCEL"):
            return True
        seq = request.cseq.seq
        if self.remote_seq is not None and seq < self.remote_seq:
            return False
        self.remote_seq = seq
        return True

    def next_cseq(self) -> int:
        """Take the next local CSeq number (an empty one starts at random, §12.2.1.1)."""
        seq = initial_cseq() if self.local_seq is None else self.local_seq + 1
        if seq > CSEQ_MAX:
            seq = 1  # 2**32 requests later; wrapping is all that is left to do
        self.local_seq = seq
        return seq

    # ------------------------------------------------------------------ requests

    def create_request(
        self,
        method: str,
        *,
        contact: SipURI | None = None,
        max_forwards: int = 70,
        cseq: int | None = None,
    ) -> Request:
        """A request inside this dialog (§12.2.1.1), without Via (the endpoint adds it).

        ``cseq`` defaults to the next local sequence number; ``contact`` is required for
        target refresh requests (§12.2.1.1 / RFC 3311).
        """
        seq = self.next_cseq() if cseq is None else cseq
        headers = Headers()
        request_uri, routes = self._request_uri_and_routes()
        for route in routes:
            headers.add("Route", route)
        headers.add("Max-Forwards", max_forwards)
        headers.add("From", _with_tag(self.local_uri, self.local_tag))
        headers.add("To", _with_tag(self.remote_uri, self.remote_tag))
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", f"{seq} {method}")
        if contact is not None:
            headers.add("Contact", NameAddr(contact))
        return Request(method, request_uri, headers)

    def create_ack(self, invite_cseq: int) -> Request:
        """The ACK for a 2xx to our INVITE numbered ``invite_cseq`` (§13.2.2.4)."""
        return self.create_request("ACK", cseq=invite_cseq)

    def _request_uri_and_routes(self) -> tuple[Uri | str, list[NameAddr]]:
        """§12.2.1.1: loose routing keeps the target in the Request-URI; strict does not."""
        routes = self.route_set
        if not routes:
            return self.remote_target.copy(), []
        first = routes[0].uri
        if isinstance(first, SipURI) and not first.lr:
            uri = first.copy()
            uri.headers.clear()
            for name in _NOT_IN_REQUEST_URI:
                uri.params.pop(name, None)
            rest = [addr.copy() for addr in routes[1:]]
            rest.append(NameAddr(self.remote_target.copy()))
            return uri, rest
        return self.remote_target.copy(), [addr.copy() for addr in routes]

    def next_hop(self, default_transport: str = "udp") -> Hop | None:
        """Where requests of this dialog go: the first route, else the remote target."""
        uri = self.route_set[0].uri if self.route_set else self.remote_target
        return uri_hop(uri, default_transport)

    def matches(self, message: Message, *, incoming: bool) -> bool:
        """Whether ``message`` belongs to this dialog (received request: ``incoming``)."""
        if message.call_id != self.call_id:
            return False
        ours, theirs = (message.to_tag, message.from_tag) if incoming else (
            message.from_tag, message.to_tag
        )  # fmt: skip
        return (ours or "") == self.local_tag and (theirs or "") == self.remote_tag
