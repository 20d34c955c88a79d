"""SIP messages: lazy parsing, mutation and serialization.

Implements RFC 3261:

* §7 message format: start line, header fields, body; §7.3.1 header field format
  (case-insensitive names, LWS around the colon, line folding, repeated fields and
  comma-separated values); §7.3.3 compact forms; §7.4.1 bodies as opaque bytes;
* §7.5 leading CRLFs before the start line are ignored;
* §18.3 framing: Content-Length mandatory on streams; on a datagram a longer body is
  truncated, a shorter one is an error, an absent one runs to the end of the datagram;
* §8.2.6 building a response from a request (``make_response``);
* the §8.2 / §8.1.3.3 checks an element makes before processing a message
  (``validate_request`` / ``validate_response``), with the status codes RFC 4475
  expects (400, 505, 416, 420, 415).

Parsing is lazy: ``parse_message`` splits the start line and header lines once;
structured values (Via, From, CSeq...) are decoded on first access and cached until the
header is changed.  Header lines never touched are re-serialized byte for byte.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Iterator
from collections.abc import Set as AbstractSet
from typing import Any, Final, Self

from b2bua.sip.errors import SipParseError
from b2bua.sip.headers import (
    KNOWN_METHODS,
    CSeq,
    NameAddr,
    SipURI,
    Uri,
    Via,
    parse_call_id,
    parse_cseq,
    parse_max_forwards,
    parse_name_addr,
    parse_uri,
    parse_via,
    split_header_values,
)

__all__ = [
    "COMPACT_FORMS",
    "MAX_HEADER_LINES",
    "REASON_PHRASES",
    "SUPPORTED_SCHEMES",
    "Headers",
    "Message",
    "Request",
    "Response",
    "accepts",
    "canonical_key",
    "make_response",
    "parse_message",
    "validate_request",
    "validate_response",
]

SIP_VERSION: Final = "SIP/2.0"

#: Header lines (continuation lines included) a message may carry: a header flood or a
#: message of thousands of Via lines is refused (513) before any field is parsed.
MAX_HEADER_LINES: Final = 256

#: §7.3.3 and later extensions: compact form -> canonical (lower-case) name.
COMPACT_FORMS: Final[dict[str, str]] = {
    "i": "call-id",
    "m": "contact",
    "f": "from",
    "t": "to",
    "v": "via",
    "l": "content-length",
    "c": "content-type",
    "k": "supported",
    "s": "subject",
    "e": "content-encoding",
    "o": "event",  # RFC 6665
    "r": "refer-to",  # RFC 3515
    "u": "allow-events",  # RFC 6665
    "a": "accept-contact",  # RFC 3841
    "b": "referred-by",  # RFC 3892
    "x": "session-expires",  # RFC 4028
    "y": "identity",  # RFC 8224
    "n": "identity-info",  # RFC 4474
    "j": "reject-contact",  # RFC 3841
    "d": "request-disposition",  # RFC 3841
}

#: Canonical spelling used when we write a header field ourselves.
_PRETTY: Final[dict[str, str]] = {
    k.lower(): k
    for k in (
        "Via", "From", "To", "Call-ID", "CSeq", "Contact", "Max-Forwards",
        "Content-Length", "Content-Type", "Route", "Record-Route", "Subject",
        "Supported", "Require", "Proxy-Require", "Unsupported", "Allow", "Accept",
        "Accept-Encoding", "Accept-Language", "Content-Encoding", "Content-Language",
        "Content-Disposition", "Expires", "Min-Expires", "User-Agent", "Server",
        "Warning", "WWW-Authenticate", "Authorization", "Proxy-Authenticate",
        "Proxy-Authorization", "Authentication-Info", "Date", "Timestamp",
        "Retry-After", "Reply-To", "Priority", "Organization", "In-Reply-To",
        "Alert-Info", "Call-Info", "Error-Info", "MIME-Version", "Event", "Refer-To",
        "Referred-By", "Allow-Events", "Session-Expires", "Min-SE", "RSeq", "RAck",
        "Reason", "Identity", "Identity-Info", "Subscription-State", "Accept-Contact",
        "Reject-Contact", "Request-Disposition", "P-Asserted-Identity",
        "P-Preferred-Identity", "Privacy", "Path", "Service-Route", "History-Info",
    )
}  # fmt: skip

#: Lower-case full or compact name -> canonical key.
_KEY_OF: Final[dict[str, str]] = {**{k: k for k in _PRETTY}, **COMPACT_FORMS}
#: The same for the usual spellings as written on the wire (saves a lower() per line).
_KEY_EXACT: Final[dict[str, str]] = {
    **_KEY_OF,
    **{_PRETTY[k]: k for k in _PRETTY},
    **{k.title(): k for k in _PRETTY},
    **{k.upper(): v for k, v in _KEY_OF.items()},
}

#: The same, giving the header name too as one shared string: the fields of a message
#: kept for a whole call (``forget_parsed``) then do not each hold a copy of their name.
_KEY_AND_NAME: Final[dict[str, tuple[str, str]]] = {n: (k, n) for n, k in _KEY_EXACT.items()}

#: Headers whose grammar is a comma-separated list (§7.3.1), split by ``get_all``.
_LIST_KEYS: Final = frozenset(
    {
        "via", "contact", "route", "record-route", "accept", "accept-encoding",
        "accept-language", "allow", "supported", "require", "proxy-require",
        "unsupported", "content-encoding", "content-language", "allow-events",
        "in-reply-to", "alert-info", "call-info", "error-info", "warning", "path",
        "service-route", "p-asserted-identity", "p-preferred-identity",
        "history-info", "accept-contact", "reject-contact", "request-disposition",
        "reason",
    }
)  # fmt: skip


_TOKEN_RE: Final = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_VERSION_RE: Final = re.compile(r"SIP/[0-9]+\.[0-9]+", re.IGNORECASE)

#: Default reason phrases (§21).
REASON_PHRASES: Final[dict[int, str]] = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 199: "Early Dialog Terminated", 200: "OK", 202: "Accepted",
    204: "No Notification", 300: "Multiple Choices", 301: "Moved Permanently",
    302: "Moved Temporarily", 305: "Use Proxy", 380: "Alternative Service",
    400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
    407: "Proxy Authentication Required", 408: "Request Timeout", 410: "Gone",
    413: "Request Entity Too Large", 414: "Request-URI Too Long",
    415: "Unsupported Media Type", 416: "Unsupported URI Scheme", 420: "Bad Extension",
    421: "Extension Required", 422: "Session Interval Too Small",
    423: "Interval Too Brief", 480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist", 482: "Loop Detected",
    483: "Too Many Hops", 484: "Address Incomplete", 485: "Ambiguous",
    486: "Busy Here", 487: "Request Terminated", 488: "Not Acceptable Here",
    489: "Bad Event", 491: "Request Pending", 493: "Undecipherable",
    500: "Server Internal Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Server Time-out", 505: "Version Not Supported",
    513: "Message Too Large", 580: "Precondition Failure", 600: "Busy Everywhere",
    603: "Decline", 604: "Does Not Exist Anywhere", 606: "Not Acceptable",
}  # fmt: skip

#: Request-URI schemes this element serves (§8.2.2.1; others get 416).
SUPPORTED_SCHEMES: Final = frozenset({"sip", "sips", "tel"})

# A header field: (canonical key, name as written, unfolded value, raw line(s) or None).
_Field = tuple[str, str, str, str | None]


def canonical_key(name: str) -> str:
    """The lower-case full name of a header (``"v"`` and ``"VIA"`` -> ``"via"``)."""
    key = _KEY_EXACT.get(name)  # the usual spellings of the known headers: one look-up
    if key is not None:
        return key
    lname = name.strip(" \t").lower()
    return _KEY_OF.get(lname, lname)


def _display_name(name: str, key: str) -> str:
    return _PRETTY.get(key, name)


# ------------------------------------------------------------------------- Headers


class Headers:
    """The header fields of a message, in order, with case-insensitive access.

    Values are strings; for list headers (Via, Contact, Route, ...) ``get_all`` splits
    comma-separated values.  Unchanged fields keep their exact original text.  Parsed
    structured values are cached per header and dropped when that header changes.
    """

    __slots__ = ("_cache", "_fields")

    def __init__(self, fields: Iterable[tuple[str, str]] | None = None) -> None:
        self._fields: list[_Field] = []
        self._cache: dict[str, Any] = {}
        if fields is not None:
            for name, value in fields:
                self.add(name, value)

    @classmethod
    def _wrap(cls, fields: list[_Field]) -> Headers:
        h = cls.__new__(cls)
        h._fields = fields
        h._cache = {}
        return h

    # ----------------------------------------------------------------- reading

    def _first(self, key: str) -> str | None:
        for f in self._fields:
            if f[0] == key:
                return f[2]
        return None

    def _values(self, key: str) -> list[str]:
        out: list[str] = []
        split = key in _LIST_KEYS
        for f in self._fields:
            if f[0] == key:
                if split and "," in f[2]:
                    out.extend(split_header_values(f[2]))
                else:
                    out.append(f[2])
        return out

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of header ``name`` (first list element for list headers)."""
        key = canonical_key(name)
        v = self._first(key)
        if v is None:
            return default
        if key in _LIST_KEYS and "," in v:
            return split_header_values(v)[0]
        return v

    def get_all(self, name: str) -> list[str]:
        """Every value of header ``name``, in order, list headers split at commas."""
        return self._values(canonical_key(name))

    def get_fields(self, name: str) -> list[str]:
        """The value of each field line of ``name``, unsplit."""
        key = canonical_key(name)
        return [f[2] for f in self._fields if f[0] == key]

    def count(self, name: str) -> int:
        """How many field lines of ``name`` there are."""
        key = canonical_key(name)
        return sum(1 for f in self._fields if f[0] == key)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = canonical_key(name)
        return any(f[0] == key for f in self._fields)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        """``(name as written, value)`` for every field line, in order."""
        for f in self._fields:
            yield f[1], f[2]

    def keyed(self) -> Iterator[tuple[str, str, str]]:
        """``(canonical key, name as written, value)`` for every field line, in order."""
        for f in self._fields:
            yield f[0], f[1], f[2]

    def __len__(self) -> int:
        return len(self._fields)

    def __repr__(self) -> str:
        return f"Headers({list(self)!r})"

    def copy(self) -> Headers:
        """An independent copy (fields are immutable tuples, so this is shallow)."""
        h = Headers.__new__(Headers)
        h._fields = self._fields.copy()
        h._cache = self._cache.copy()
        return h

    # ----------------------------------------------------------------- writing

    def _invalidate(self, key: str) -> None:
        cache = self._cache
        if cache:
            cache.pop(key, None)
            cache.pop(key + "#1", None)

    @staticmethod
    def _field(name: str, value: object) -> _Field:
        key = canonical_key(name)
        if key not in _PRETTY and not _TOKEN_RE.fullmatch(key):
            raise ValueError(f"bad header name {name!r}")
        text = str(value)
        if "\r" in text or "\n" in text:
            raise ValueError("header values must not contain CR or LF")
        return (key, _display_name(name.strip(" \t"), key), text, None)

    def add(self, name: str, value: object) -> None:
        """Append a field ``name: str(value)`` after all others."""
        f = self._field(name, value)
        self._fields.append(f)
        self._invalidate(f[0])

    def insert_top(self, name: str, value: object) -> None:
        """Insert a field before the first field of the same name (at the top if none).

        This is how a Via or Record-Route value is pushed (§16.6, §8.1.1.7).
        """
        f = self._field(name, value)
        key = f[0]
        fields = self._fields
        for i, g in enumerate(fields):
            if g[0] == key:
                fields.insert(i, f)
                break
        else:
            fields.insert(0, f)
        self._invalidate(key)

    def set(self, name: str, value: object) -> None:
        """Replace every field of ``name`` by one field, where the first one was."""
        f = self._field(name, value)
        key = f[0]
        fields = self._fields
        pos = -1
        out: list[_Field] = []
        for g in fields:
            if g[0] == key:
                if pos < 0:
                    pos = len(out)
                    out.append(f)
            else:
                out.append(g)
        if pos < 0:
            out.append(f)
        self._fields = out
        self._invalidate(key)

    def remove_keys(self, keys: AbstractSet[str]) -> None:
        """Remove every field whose canonical key is in ``keys`` (one pass over the fields)."""
        fields = self._fields
        if any(f[0] in keys for f in fields):
            self._fields = [f for f in fields if f[0] not in keys]
            for key in keys:
                self._invalidate(key)

    def remove(self, name: str) -> int:
        """Remove every field of ``name``; return how many were removed."""
        key = canonical_key(name)
        before = len(self._fields)
        self._fields = [f for f in self._fields if f[0] != key]
        self._invalidate(key)
        return before - len(self._fields)

    def pop_first(self, name: str) -> str | None:
        """Remove and return the first value of ``name`` (splitting a list field).

        A response's own Via is removed this way (§18.1.2).
        """
        key = canonical_key(name)
        fields = self._fields
        for i, f in enumerate(fields):
            if f[0] != key:
                continue
            if key in _LIST_KEYS and "," in f[2]:
                values = split_header_values(f[2])
                if len(values) > 1:
                    fields[i] = (key, f[1], ", ".join(values[1:]), None)
                    self._invalidate(key)
                    return values[0]
            del fields[i]
            self._invalidate(key)
            return f[2]
        return None


# ------------------------------------------------------------------------ Messages


class Message:
    """Common part of requests and responses: version, headers, body (bytes).

    The structured accessors (``via``, ``from_``, ``cseq``...) parse on first use and
    raise :class:`SipParseError` when the header is malformed, or missing for the
    mandatory ones.  Returned objects are cached and shared: do not mutate them; write
    changes back with ``headers.set(...)``.
    """

    __slots__ = ("body", "headers", "version")

    headers: Headers
    body: bytes
    version: str

    def __init__(
        self,
        headers: Headers | Iterable[tuple[str, str]] | None = None,
        body: bytes = b"",
        version: str = SIP_VERSION,
    ) -> None:
        self.headers = headers if isinstance(headers, Headers) else Headers(headers)
        self.body = body
        self.version = version

    # ----------------------------------------------------------- accessors

    def _required(self, key: str, what: str) -> str:
        v = self.headers._first(key)
        if v is None:
            raise SipParseError(f"missing {what}", 400)
        return v

    @property
    def call_id(self) -> str:
        """Call-ID (§20.8)."""
        c = self.headers._cache
        v = c.get("call-id")
        if v is None:
            v = c["call-id"] = parse_call_id(self._required("call-id", "Call-ID"))
        return v

    @property
    def cseq(self) -> CSeq:
        """CSeq (§20.16)."""
        c = self.headers._cache
        v = c.get("cseq")
        if v is None:
            v = c["cseq"] = parse_cseq(self._required("cseq", "CSeq"))
        return v

    @property
    def from_(self) -> NameAddr:
        """From (§20.20); the URI inside is parsed on its first access."""
        c = self.headers._cache
        v = c.get("from")
        if v is None:
            v = c["from"] = parse_name_addr(self._required("from", "From"))
        return v

    @property
    def to(self) -> NameAddr:
        """To (§20.39)."""
        c = self.headers._cache
        v = c.get("to")
        if v is None:
            v = c["to"] = parse_name_addr(self._required("to", "To"))
        return v

    @property
    def from_tag(self) -> str | None:
        return self.from_.params.get("tag")

    @property
    def to_tag(self) -> str | None:
        return self.to.params.get("tag")

    @property
    def top_via(self) -> Via:
        """The topmost Via value (§8.2.6.2, §17.2.3, §18.2.2), parsed alone."""
        c = self.headers._cache
        v = c.get("via#1")
        if v is None:
            every: list[Via] | None = c.get("via")
            if every:
                top = c["via#1"] = every[0]
                return top
            raw = self._required("via", "Via")
            if "," in raw:
                raw = split_header_values(raw)[0]
            v = c["via#1"] = parse_via(raw)
        return v

    @property
    def via(self) -> list[Via]:
        """Every Via value, top first."""
        c = self.headers._cache
        v = c.get("via")
        if v is None:
            values = self.headers._values("via")
            top = c.get("via#1")  # already parsed alone (every received message's is)
            if top is not None and values:
                v = [top, *(parse_via(x) for x in values[1:])]
            else:
                v = [parse_via(x) for x in values]
            c["via"] = v
        return v

    def _addresses(self, key: str) -> list[NameAddr]:
        c = self.headers._cache
        v = c.get(key)
        if v is None:
            v = c[key] = [parse_name_addr(x) for x in self.headers._values(key)]
        return v

    @property
    def contact(self) -> list[NameAddr]:
        """Contact values (§20.10); the wildcard ``*`` is a NameAddr with is_wildcard."""
        return self._addresses("contact")

    @property
    def route(self) -> list[NameAddr]:
        return self._addresses("route")

    @property
    def record_route(self) -> list[NameAddr]:
        return self._addresses("record-route")

    @property
    def max_forwards(self) -> int | None:
        """Max-Forwards (§20.22), ``None`` when absent (RFC 2543 peers omit it)."""
        c = self.headers._cache
        if "max-forwards" in c:
            cached: int | None = c["max-forwards"]
            return cached
        raw = self.headers._first("max-forwards")
        v = c["max-forwards"] = None if raw is None else parse_max_forwards(raw)
        return v

    @property
    def content_type(self) -> str | None:
        """The Content-Type value as written, or ``None``."""
        return self.headers._first("content-type")

    @property
    def media_type(self) -> str | None:
        """The media type of the body, lower-cased, without parameters."""
        ct = self.headers._first("content-type")
        if ct is None:
            return None
        return ct.partition(";")[0].strip(" \t").lower()

    def forget_parsed(self) -> None:
        """Drop the cached parses of the headers (made again on their next use) and the raw
        lines that serialization rebuilds the same ("Name: value").

        A message kept for the whole call (the caller's INVITE) then holds each header's
        text once: the parsed Via, From, To, Contact... were most of its size.
        """
        headers = self.headers
        headers._cache.clear()
        shared = _KEY_AND_NAME.get
        fields: list[_Field] = []
        for key, written, value, raw in headers._fields:
            name = shared(written, (key, written))[1]  # one string for every message's "Via"
            plain = raw is not None and raw[len(name) :] == f": {value}" and raw.startswith(name)
            fields.append((key, name, value, None if plain else raw))
        headers._fields = fields

    def reduced(self, *names: str) -> Self:
        """A copy with only the header fields ``names``, no body and nothing parsed.

        What a message kept after its transaction needs (e.g. Call-ID, From, To and CSeq
        of an INVITE to build a dialog from a late 2xx), without the rest of it.
        """
        keys = {canonical_key(name) for name in names}
        new = copy.copy(self)
        new.headers = Headers._wrap([f for f in self.headers._fields if f[0] in keys])
        new.body = b""
        new.forget_parsed()
        return new

    # -------------------------------------------------------- serialization

    def _start_line(self) -> str:
        raise NotImplementedError

    def serialize(self) -> bytes:
        """The message as bytes; Content-Length is always made to match the body."""
        body = self.body
        blen = str(len(body))
        parts = [self._start_line()]
        append = parts.append
        cl_done = False
        for key, name, value, raw in self.headers._fields:
            if key == "content-length":
                if cl_done:
                    continue
                cl_done = True
                if value != blen:
                    append(f"{name}: {blen}")
                    continue
            append(raw if raw is not None else f"{name}: {value}")
        if not cl_done:
            append(f"Content-Length: {blen}")
        append("\r\n")
        return "\r\n".join(parts).encode("utf-8", "surrogateescape") + body

    def __bytes__(self) -> bytes:
        return self.serialize()


class Request(Message):
    """A SIP request (§7.1).  ``uri`` is the Request-URI text; ``request_uri`` its parse."""

    __slots__ = ("_ruri", "_uri", "method")

    method: str

    def __init__(
        self,
        method: str,
        uri: Uri | str,
        headers: Headers | Iterable[tuple[str, str]] | None = None,
        body: bytes = b"",
        version: str = SIP_VERSION,
    ) -> None:
        super().__init__(headers, body, version)
        self.method = method
        self._uri = str(uri)
        self._ruri: Uri | None = None if isinstance(uri, str) else uri

    @property
    def uri(self) -> str:
        return self._uri

    @uri.setter
    def uri(self, value: Uri | str) -> None:
        self._uri = str(value)
        self._ruri = None if isinstance(value, str) else value

    @property
    def request_uri(self) -> Uri:
        """The parsed Request-URI (cached); SipParseError(400) when malformed."""
        r = self._ruri
        if r is None:
            r = self._ruri = parse_uri(self._uri)
        return r

    def _start_line(self) -> str:
        return f"{self.method} {self._uri} {self.version}"

    def copy(self) -> Request:
        """A copy sharing the body and the parsed values; headers are independent."""
        new = Request.__new__(Request)
        new.method = self.method
        new._uri = self._uri
        new._ruri = self._ruri
        new.headers = self.headers.copy()
        new.body = self.body
        new.version = self.version
        return new

    def forget_parsed(self) -> None:
        super().forget_parsed()
        self._ruri = None

    def __repr__(self) -> str:
        return f"<Request {self.method} {self._uri}>"


class Response(Message):
    """A SIP response (§7.2)."""

    __slots__ = ("reason", "status")

    status: int
    reason: str

    def __init__(
        self,
        status: int,
        reason: str | None = None,
        headers: Headers | Iterable[tuple[str, str]] | None = None,
        body: bytes = b"",
        version: str = SIP_VERSION,
    ) -> None:
        super().__init__(headers, body, version)
        if reason is not None and ("\r" in reason or "\n" in reason):
            raise ValueError("reason phrases must not contain CR or LF")
        self.status = status
        self.reason = REASON_PHRASES.get(status, "Unknown") if reason is None else reason

    def _start_line(self) -> str:
        return f"{self.version} {self.status} {self.reason}"

    def copy(self) -> Response:
        new = Response.__new__(Response)
        new.status = self.status
        new.reason = self.reason
        new.headers = self.headers.copy()
        new.body = self.body
        new.version = self.version
        return new

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason}>"


# ----------------------------------------------------------------------------- parsing


def _check_version(version: str) -> str:
    if version == SIP_VERSION:
        return version
    if not _VERSION_RE.fullmatch(version):
        raise SipParseError("bad SIP-Version", 400)
    return version.upper()


def _parse_start_line(line: str) -> Request | Response:
    if line.startswith("SIP/") or line[:4].upper() == "SIP/":
        # Status-Line = SIP-Version SP Status-Code SP Reason-Phrase (§7.2)
        parts = line.split(" ", 2)
        if len(parts) < 2:
            raise SipParseError("bad Status-Line", 400)
        code = parts[1]
        if len(code) != 3 or not code.isdigit() or not code.isascii():
            raise SipParseError("bad Status-Code", 400)  # RFC 4475 §3.1.2.19
        status = int(code)
        if status < 100 or status > 699:
            raise SipParseError("Status-Code out of range", 400)
        resp = Response.__new__(Response)
        resp.version = _check_version(parts[0])
        resp.status = status
        resp.reason = parts[2] if len(parts) == 3 else ""
        return resp
    # Request-Line = Method SP Request-URI SP SIP-Version (§7.1): exactly two single
    # SPs (RFC 4475 §3.1.2.8-§3.1.2.10 reject embedded, doubled and trailing SP).
    parts = line.split(" ")
    if len(parts) != 3:
        raise SipParseError("bad Request-Line", 400)
    method, uri, version = parts
    if not uri or (method not in KNOWN_METHODS and not _TOKEN_RE.fullmatch(method)):
        raise SipParseError("bad Request-Line", 400)
    req = Request.__new__(Request)
    req.version = _check_version(version)
    req.method = method
    req._uri = uri
    req._ruri = None
    return req


class _Folded(Exception):
    """Internal signal: the header section uses line folding (slow path)."""


def _slow_key(name: str, sep: str) -> tuple[str, str]:
    """Key and cleaned name of a header line whose name is not spelled the usual way."""
    if name[:1] in (" ", "\t"):
        raise _Folded
    if not sep:
        raise SipParseError("bad header line", 400)
    name = name.rstrip(" \t")
    lname = name.lower()
    key = _KEY_OF.get(lname)
    if key is None:
        if not _TOKEN_RE.fullmatch(name):
            raise SipParseError("bad header name", 400)
        key = lname
    return key, name


def _parse_fields(lines: list[str]) -> list[_Field]:
    """Header lines (after the start line) to fields; folding handled by the caller."""
    fields: list[_Field] = []
    append = fields.append
    key_of = _KEY_EXACT.get
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        key = key_of(name)
        if key is None or not sep:
            key, name = _slow_key(name, sep)
        append((key, name, value.strip(" \t"), line))
    return fields


def _parse_folded_fields(lines: list[str]) -> list[_Field]:
    lines = _unfold(lines)
    fields: list[_Field] = []
    for i in range(1, len(lines), 2):
        name, sep, value = lines[i].partition(":")
        key = _KEY_EXACT.get(name)
        if key is None or not sep:
            key, name = _slow_key(name, sep)
        fields.append((key, name, value.strip(" \t"), lines[i + 1]))
    return fields


def _parse_head(head: bytes) -> tuple[Request | Response, int | None]:
    """Parse start line + header fields; return the message and its Content-Length."""
    lines = head.decode("utf-8", "surrogateescape").split("\r\n")
    if len(lines) > MAX_HEADER_LINES + 1:
        raise SipParseError("too many header fields", 513)
    try:
        msg = _parse_start_line(lines[0])
    except SipParseError as err:
        # A request whose Request-Line is malformed (RFC 4475 §3.1.2.8-§3.1.2.10) still
        # gets its 400 when its header fields can route one (§8.2): hand them over.
        err.message = _partial_request(lines)
        raise
    fields = _fields(lines)
    msg.headers = Headers._wrap(fields)
    msg.body = b""
    cls = [f[2] for f in fields if f[0] == "content-length"]
    if not cls:
        return msg, None
    if len(cls) > 1:
        # RFC 4475 §3.3.9: there is no way to know which one is right.
        raise SipParseError("multiple Content-Length", 400, message=msg)
    raw_cl = cls[0]
    if not raw_cl.isdigit() or not raw_cl.isascii():
        # RFC 4475 §3.1.2.3: negative or non-numeric Content-Length.
        raise SipParseError("bad Content-Length", 400, message=msg)
    return msg, int(raw_cl)


def _fields(lines: list[str]) -> list[_Field]:
    try:
        return _parse_fields(lines)
    except _Folded:
        return _parse_folded_fields(lines)


def _partial_request(lines: list[str]) -> Request | None:
    """The header fields of a request with a bad Request-Line, to answer it; else None."""
    method = lines[0].split(" ", 1)[0]
    if not _TOKEN_RE.fullmatch(method) or method.upper().startswith("SIP/"):
        return None
    try:
        fields = _fields(lines)
    except SipParseError:
        return None
    req = Request.__new__(Request)
    req.version = SIP_VERSION
    req.method = method
    req._uri = "sip:invalid"
    req._ruri = None
    req.headers = Headers._wrap(fields)
    req.body = b""
    return req


def _unfold(lines: list[str]) -> list[str]:
    """Join continuation lines (§7.3.1: folding LWS means one SP).

    Returns ``[start_line, unfolded_1, raw_1, unfolded_2, raw_2, ...]``.
    """
    out = [lines[0]]
    for i in range(1, len(lines)):
        line = lines[i]
        if line[:1] in (" ", "\t"):
            if len(out) == 1:
                raise SipParseError("continuation line before any header", 400)
            cont = line.strip(" \t")
            if cont:
                prev = out[-2]
                out[-2] = f"{prev} {cont}" if prev[-1:] != ":" else f"{prev}{cont}"
            out[-1] = f"{out[-1]}\r\n{line}"
        else:
            out.append(line)
            out.append(line)
    return out


def parse_message(
    data: bytes, *, stream: bool = False, max_size: int | None = None
) -> Request | Response:
    """Parse one SIP message (§7) from ``data``.

    With ``stream=False`` (a datagram, §18.3) a missing Content-Length means the body
    runs to the end of ``data``, a body longer than Content-Length is truncated and a
    shorter one is an error; a missing empty line ends the headers at the end of data.
    With ``stream=True`` the header section must be complete and Content-Length present.
    ``max_size`` bounds ``len(data)`` (SipParseError with status_hint 513, §21.5.14).
    Raises SipParseError only.
    """
    n = len(data)
    if max_size is not None and n > max_size:
        raise SipParseError("message too large", 513)
    start = 0
    while data.startswith(b"\r\n", start):
        start += 2  # §7.5
    end = data.find(b"\r\n\r\n", start)
    if end < 0:
        if stream:
            raise SipParseError("incomplete header section", 400)
        head = data[start:].rstrip(b"\r\n")
        body_start = n
    else:
        head = data[start:end]
        body_start = end + 4
    if not head:
        raise SipParseError("empty message", 400)
    msg, clen = _parse_head(head)
    if clen is None:
        if stream:
            raise SipParseError("missing Content-Length", 400, message=msg)
        msg.body = data[body_start:]
    elif clen:
        if body_start + clen > n:
            raise SipParseError("body shorter than Content-Length", 400, message=msg)
        msg.body = data[body_start : body_start + clen]
    return msg


# ------------------------------------------------------------------ building messages


def make_response(
    request: Request,
    status: int,
    reason: str | None = None,
    to_tag: str | None = None,
) -> Response:
    """Build a response to ``request`` as §8.2.6 says.

    Via (all values, in order), From, Call-ID and CSeq are copied byte for byte; To is
    copied and gets ``;tag=to_tag`` if it has no tag yet (§8.2.6.2).  Timestamp is copied
    into a 100 (§8.2.6.1); Record-Route into a 101-299 to a dialog-creating request
    (§12.1.1).  The body is empty; Content-Length is added on serialization.
    """
    copy_rr = 100 < status < 300 and request.method in ("INVITE", "SUBSCRIBE", "REFER", "NOTIFY")
    fields: list[_Field] = []
    append = fields.append
    for f in request.headers._fields:
        key = f[0]
        if key in ("via", "from", "call-id", "cseq"):
            append(f)
        elif key == "to":
            if to_tag is not None and _lacks_tag(request):
                append((key, f[1], f"{f[2]};tag={to_tag}", None))
            else:
                append(f)
        elif (key == "record-route" and copy_rr) or (key == "timestamp" and status == 100):
            append(f)
    resp = Response.__new__(Response)
    resp.version = SIP_VERSION
    resp.status = status
    resp.reason = REASON_PHRASES.get(status, "Unknown") if reason is None else reason
    resp.headers = Headers._wrap(fields)
    resp.body = b""
    return resp


def _lacks_tag(request: Request) -> bool:
    """Whether the To of ``request`` has no tag (a malformed To is copied untouched)."""
    try:
        return request.to.tag is None
    except SipParseError:
        return False


# -------------------------------------------------------------------------- validation

_MANDATORY: Final = (
    ("via", "Via"),
    ("from", "From"),
    ("to", "To"),
    ("call-id", "Call-ID"),
    ("cseq", "CSeq"),
)
_SINGLE: Final = ("from", "to", "call-id", "cseq", "max-forwards", "content-type")


def _check_common(msg: Message) -> None:
    h = msg.headers
    counts: dict[str, int] = {}
    for f in h._fields:
        counts[f[0]] = counts.get(f[0], 0) + 1
    for key, what in _MANDATORY:
        if key not in counts:
            raise SipParseError(f"missing {what}", 400, message=msg)
    for key in _SINGLE:
        if counts.get(key, 0) > 1:
            # RFC 4475 §3.3.8
            raise SipParseError(f"more than one {_PRETTY[key]}", 400, message=msg)
    try:
        msg.cseq  # noqa: B018 - parse for validation
        msg.call_id  # noqa: B018
        msg.via  # noqa: B018
        msg.from_.uri  # noqa: B018
        msg.to.uri  # noqa: B018
        for addr in msg.contact:
            if not addr.is_wildcard:
                addr.uri  # noqa: B018
        for addr in msg.route:
            addr.uri  # noqa: B018
        for addr in msg.record_route:
            addr.uri  # noqa: B018
        msg.max_forwards  # noqa: B018
    except SipParseError as exc:
        raise SipParseError(exc.reason, 400, message=msg) from None


def validate_request(
    request: Request,
    *,
    schemes: frozenset[str] = SUPPORTED_SCHEMES,
    supported: frozenset[str] | None = None,
    accepted_types: frozenset[str] | None = None,
) -> None:
    """The checks a UAS makes before processing a request (§8.2), raising SipParseError.

    * SIP-Version other than 2.0 -> 505 (§8.2 / RFC 4475 §3.1.2.16);
    * Via, From, To, Call-ID, CSeq missing, repeated single-value headers, malformed
      Via/From/To/Contact/Route/Record-Route/CSeq/Max-Forwards, CSeq method differing
      from the request method -> 400 (§8.1.1, RFC 4475 §3.1.2, §3.3.1, §3.3.8);
      Max-Forwards may be absent (RFC 2543 peers, RFC 4475 §3.4.1);
    * malformed Request-URI or one carrying URI headers -> 400 (§19.1.1 table,
      RFC 4475 §3.1.2.7, §3.1.2.11; RFC 5118 §4.2);
    * Request-URI scheme not in ``schemes`` -> 416 (§8.2.2.1);
    * with ``supported`` given, Require option tags not in it -> 420 with an
      Unsupported header in ``exc.headers`` (§8.2.2.3; not for ACK/CANCEL);
    * with ``accepted_types`` given, a body of another type -> 415 with an Accept
      header (§8.2.3).
    """
    if request.version != SIP_VERSION:
        raise SipParseError("SIP version not supported", 505, message=request)
    _check_common(request)
    if request.cseq.method != request.method:
        raise SipParseError("CSeq method does not match", 400, message=request)
    try:
        ruri = request.request_uri
    except SipParseError as exc:
        raise SipParseError(exc.reason, 400, message=request) from None
    if isinstance(ruri, SipURI) and ruri.headers:
        raise SipParseError("headers in Request-URI", 400, message=request)
    if ruri.scheme.lower() not in schemes:
        raise SipParseError("unsupported URI scheme", 416, message=request)
    if supported is not None and request.method not in ("ACK", "CANCEL"):
        unknown = [
            tag for tag in request.headers._values("require") if tag.lower() not in supported
        ]
        if unknown:
            raise SipParseError(
                "bad extension",
                420,
                headers=(("Unsupported", ", ".join(unknown)),),
                message=request,
            )
    if accepted_types is not None and request.body:
        media = request.media_type
        if media is None:
            raise SipParseError("body without Content-Type", 400, message=request)
        if media not in accepted_types:
            raise SipParseError(
                "unsupported media type",
                415,
                headers=(("Accept", ", ".join(sorted(accepted_types))),),
                message=request,
            )


def validate_response(response: Response, *, single_via: bool = True) -> None:
    """The checks a UAC makes on a response; a failing response is discarded.

    Mandatory headers present and well formed (RFC 4475 §3.1.2.5), version 2.0, and
    with ``single_via`` exactly one Via value (§8.1.3.3, RFC 4475 §3.3.10).
    """
    if response.version != SIP_VERSION:
        raise SipParseError("SIP version not supported", 505, message=response)
    _check_common(response)
    if single_via and len(response.via) != 1:
        raise SipParseError("response with more than one Via", 400, message=response)


def accepts(message: Message, media_type: str) -> bool:
    """Whether the Accept header allows ``media_type`` (§20.1; absent -> SDP only)."""
    values = message.headers._values("accept")
    media_type = media_type.lower()
    if not values:
        return media_type == "application/sdp"
    major = media_type.partition("/")[0]
    for v in values:
        m = v.partition(";")[0].strip(" \t").lower()
        if m in (media_type, "*/*", f"{major}/*"):
            return True
    return False
