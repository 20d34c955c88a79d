"""Structured SIP header field values, parsed on first access.

Implements the value grammars of RFC 3261 §25.1 that a B2BUA needs:

* SIP and SIPS URIs (§19.1.1, §19.1.2 escaping, §19.1.4 comparison), with IPv6
  references (§25.1 ``IPv6reference``; RFC 5118 §4.3/§4.10, RFC 5954), ``tel:`` URIs
  (RFC 3966, numbers and parameters only) and any other ``absoluteURI`` kept opaque
  (RFC 4475 §3.3.2-§3.3.4);
* ``name-addr`` / ``addr-spec`` values of From, To, Contact, Route, Record-Route
  (§20.10, §20.20, §20.39, with the header parameters such as ``tag``);
* Via (§20.42, §18.2.1 ``received``, RFC 3581 ``rport``);
* CSeq (§20.16), Max-Forwards (§20.22), Call-ID (§20.8);
* splitting a comma-separated field value into its elements (§7.3.1), respecting
  quoted strings and ``<...>``.

Every ``parse_*`` function raises :class:`~b2bua.sip.errors.SipParseError` (400) on bad
input and nothing else; every value class serializes with ``str()``.  Value objects are
mutable slotted classes for speed, but a parsed value cached by a message is shared:
treat it as read-only and use ``copy()`` / ``with_*()`` before changing it.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final
from urllib.parse import unquote

from b2bua.sip.errors import SipParseError

__all__ = [
    "KNOWN_METHODS",
    "AbsoluteURI",
    "CSeq",
    "NameAddr",
    "SipURI",
    "TelURI",
    "Uri",
    "Via",
    "escape",
    "format_params",
    "parse_call_id",
    "parse_cseq",
    "parse_max_forwards",
    "parse_name_addr",
    "parse_params",
    "parse_uri",
    "parse_via",
    "quote_string",
    "split_header_values",
    "strip_brackets",
]

#: RFC 3261 §25.1 ``token``.
_TOKEN_RE: Final = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
#: ``scheme`` of RFC 3986 / RFC 3261 §25.1 ``absoluteURI``.
_SCHEME_RE: Final = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
#: Characters allowed unescaped in each URI component (§25.1), plus ``%`` for escapes.
_USER_RE: Final = re.compile(r"[A-Za-z0-9\-_.!~*'()&=+$,;?/%]+")
_PASSWORD_RE: Final = re.compile(r"[A-Za-z0-9\-_.!~*'()&=+$,%]*")
_PARAM_RE: Final = re.compile(r"[A-Za-z0-9\-_.!~*'()\[\]/:&+$%]+")
_HNAME_RE: Final = re.compile(r"[A-Za-z0-9\-_.!~*'()\[\]/?:+$%]+")
_HVALUE_RE: Final = re.compile(r"[A-Za-z0-9\-_.!~*'()\[\]/?:+$%]*")
_BAD_ESCAPE_RE: Final = re.compile(r"%(?![0-9A-Fa-f]{2})")
#: ``hostname`` / ``IPv4address`` (§25.1); '_' tolerated as many stacks send it.
_HOSTNAME_RE: Final = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_\-.]*[A-Za-z0-9_.])?")
_IPV6_CHARS_RE: Final = re.compile(r"[0-9A-Fa-f:.]+")
#: ``global-number-digits`` / ``local-number-digits`` of RFC 3966 (loosely).
_TEL_RE: Final = re.compile(r"[0-9A-Fa-f*#+\-.()]+")
_DIGITS_RE: Final = re.compile(r"[0-9]+")
_LWS: Final = " \t"

_TCHARS: Final = r"[A-Za-z0-9\-.!%*_+`'~]+"  # RFC 3261 §25.1 token
#: generic-param value: ``token / host`` (a host may be an IPv6 reference).
_GEN_VALUE: Final = r"[A-Za-z0-9\-.!%*_+`'~:\[\]]+"
_QUOTED: Final = r'"(?:[^"\\\r\n]|\\[^\r\n])*"'
#: ``*( SEMI generic-param )`` as a whole, so items need no further checks.
_PARAMS_RE: Final = re.compile(
    rf"(?:[ \t]*;[ \t]*{_TCHARS}(?:[ \t]*=[ \t]*(?:{_GEN_VALUE}|{_QUOTED}))?)*[ \t]*"
)
#: The usual shape of a Via value, parsed in one match (fast path of ``parse_via``).
_VIA_FAST_RE: Final = re.compile(
    rf"SIP/2\.0/({_TCHARS}) ([A-Za-z0-9_.\-]+)(?::([0-9]{{1,5}}))?"
    rf"((?:;{_TCHARS}(?:={_GEN_VALUE})?)*)"
)
#: One ``;name=value`` parameter, the most common case (fast path of ``parse_params``).
_ONE_PARAM_RE: Final = re.compile(rf"[ \t]*;[ \t]*({_TCHARS})[ \t]*=[ \t]*({_GEN_VALUE})[ \t]*")
#: The usual shape of a name-addr (fast path of ``parse_name_addr``).
_NAME_ADDR_FAST_RE: Final = re.compile(
    rf'(?:"([^"\\\r\n]*)"[ \t]*|({_TCHARS}(?:[ \t]+{_TCHARS})*)?[ \t]*)<([^ \t<>"]+)>(.*)',
    re.DOTALL,
)
#: Methods seen every day, accepted without a regex check.
KNOWN_METHODS: Final = frozenset(
    {
        "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK", "UPDATE",
        "INFO", "SUBSCRIBE", "NOTIFY", "REFER", "MESSAGE", "PUBLISH",
    }
)  # fmt: skip

#: Unescaped characters kept as-is when serializing each URI component (§25.1).
_UNRESERVED: Final = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.!~*'()"
)
_USER_SAFE: Final = _UNRESERVED | frozenset("&=+$,;?/")
_PASSWORD_SAFE: Final = _UNRESERVED | frozenset("&=+$,")
_PARAM_SAFE: Final = _UNRESERVED | frozenset("[]/:&+$")
_HEADER_SAFE: Final = _UNRESERVED | frozenset("[]/?:+$")


def _err(reason: str) -> SipParseError:
    return SipParseError(reason, 400)


# --------------------------------------------------------------------------- escaping


def _unescape(text: str, what: str) -> str:
    """Decode ``%HH`` escapes (§19.1.2); bytes that are not UTF-8 survive round trips."""
    if "%" not in text:
        return text
    if _BAD_ESCAPE_RE.search(text):
        raise _err(f"bad escape in {what}")
    return unquote(text, errors="surrogateescape")


def escape(text: str, safe: frozenset[str] = _UNRESERVED) -> str:
    """%-escape every character of ``text`` not in ``safe`` (§19.1.2), UTF-8 encoded."""
    for ch in text:
        if ch not in safe:
            break
    else:
        return text
    out: list[str] = []
    for ch in text:
        if ch in safe:
            out.append(ch)
        else:
            out.extend(f"%{b:02X}" for b in ch.encode("utf-8", "surrogateescape"))
    return "".join(out)


def quote_string(text: str) -> str:
    """Serialize ``text`` as a ``quoted-string`` (§25.1), escaping ``"`` and ``\\``."""
    if '"' in text or "\\" in text:
        text = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def _read_quoted(text: str, pos: int) -> tuple[str, int]:
    """Read the quoted-string starting at ``text[pos] == '"'``; return (content, end)."""
    end = text.find('"', pos + 1)
    if end >= 0 and "\\" not in text[pos + 1 : end]:
        return text[pos + 1 : end], end + 1
    out: list[str] = []
    i = pos + 1
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == '"':
            return "".join(out), i + 1
        if ch == "\\":
            if i + 1 >= n or text[i + 1] in "\r\n":
                break
            out.append(text[i + 1])
            i += 2
            continue
        out.append(ch)
        i += 1
    raise _err("unterminated quoted string")


# ------------------------------------------------------------------------ hosts, ports


def _valid_ipv6(addr: str) -> bool:
    """IPv6 literal check (RFC 5954), tolerating RFC 3261's ``:::`` before an IPv4 tail.

    RFC 5118 §4.10: "an implementation must tolerate both" forms.
    """
    if not _IPV6_CHARS_RE.fullmatch(addr):
        return False
    try:
        ipaddress.IPv6Address(addr)
    except ValueError:
        i = addr.find(":::")
        if i < 0 or addr.count(":::") != 1 or "." not in addr[i + 3 :]:
            return False
        try:
            ipaddress.IPv6Address(addr[:i] + "::" + addr[i + 3 :])
        except ValueError:
            return False
    return True


def _check_host(host: str) -> str:
    """Validate a ``host`` (§25.1: hostname / IPv4address / IPv6reference)."""
    if host.startswith("["):
        if not host.endswith("]") or not _valid_ipv6(host[1:-1]):
            raise _err("bad IPv6 reference")
        return host
    if not _HOSTNAME_RE.fullmatch(host):
        raise _err("bad host")
    return host


def _parse_port(text: str) -> int:
    if not _DIGITS_RE.fullmatch(text):
        raise _err("bad port")
    port = int(text)
    if port > 65535:
        raise _err("port out of range")
    return port


def _split_hostport(text: str) -> tuple[str, int | None]:
    """Split ``host [":" port]`` (§25.1 ``hostport``); IPv6 ports sit outside ``]``."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise _err("unterminated IPv6 reference")
        host = text[: end + 1]
        rest = text[end + 1 :].lstrip(_LWS)
        if not rest:
            return _check_host(host), None
        if rest[0] != ":":
            raise _err("junk after IPv6 reference")
        return _check_host(host), _parse_port(rest[1:].strip(_LWS))
    host, sep, port = text.partition(":")
    host = host.rstrip(_LWS)
    if not sep:
        return _check_host(host), None
    return _check_host(host), _parse_port(port.strip(_LWS))


def strip_brackets(host: str) -> str:
    """``[2001:db8::1]`` -> ``2001:db8::1``; other hosts unchanged."""
    if host.startswith("[") and host.endswith("]"):
        return host[1:-1]
    return host


# ------------------------------------------------------------------- generic params


def parse_params(text: str) -> dict[str, str | None]:
    """Parse ``*( SEMI generic-param )`` (§25.1); names are lower-cased.

    ``text`` must be empty or start (after LWS) with ``;``.  Values are kept as written
    (a quoted-string keeps its quotes) so that serialization round-trips.  Empty
    parameters (``;;``) are rejected (RFC 4475 §3.1.2.1).
    """
    if not text:
        return {}
    one = _ONE_PARAM_RE.fullmatch(text)
    if one is not None:
        return {one[1].lower(): one[2]}
    params: dict[str, str | None] = {}
    if not _PARAMS_RE.fullmatch(text):
        raise _err("bad parameters")
    items = _split_outside_quotes(text, ";") if '"' in text else text.split(";")
    for i in range(1, len(items)):
        name, eq, value = items[i].partition("=")
        params[name.strip(_LWS).lower()] = value.strip(_LWS) if eq else None
    return params


def format_params(params: dict[str, str | None]) -> str:
    """Serialize parameters as ``;name=value;flag``."""
    if not params:
        return ""
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


def _split_outside_quotes(text: str, sep: str) -> list[str]:
    out: list[str] = []
    start = 0
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == '"':
            _content, i = _read_quoted(text, i)
            continue
        if ch == sep:
            out.append(text[start:i])
            start = i + 1
        i += 1
    out.append(text[start:])
    return out


def split_header_values(value: str) -> list[str]:
    """Split a comma-separated field value into elements (§7.3.1).

    Commas inside quoted strings and inside ``<...>`` do not separate.  Elements are
    stripped of surrounding LWS; empty elements are kept (callers reject them).
    """
    if "," not in value:
        return [value]
    if '"' not in value and "<" not in value:
        return [v.strip(_LWS) for v in value.split(",")]
    out: list[str] = []
    start = 0
    i = 0
    n = len(value)
    while i < n:
        ch = value[i]
        if ch == '"':
            j = i + 1
            while j < n:
                c = value[j]
                if c == "\\":
                    j += 2
                    continue
                if c == '"':
                    break
                j += 1
            i = j + 1
            continue
        if ch == "<":
            j = value.find(">", i + 1)
            i = n if j < 0 else j + 1
            continue
        if ch == ",":
            out.append(value[start:i].strip(_LWS))
            start = i + 1
        i += 1
    out.append(value[start:].strip(_LWS))
    return out


# ------------------------------------------------------------------------------ URIs


class SipURI:
    """A ``sip:`` or ``sips:`` URI (§19.1.1).

    ``user``, ``password``, parameter and header names/values hold *unescaped* text;
    ``str()`` re-escapes what needs escaping (§19.1.2).  ``host`` is kept as written,
    an IPv6 reference with its brackets (see :attr:`bare_host`).  Parameter names are
    lower-cased; a parameter without value maps to ``None``.  Equality is §19.1.4.
    """

    __slots__ = ("headers", "host", "params", "password", "port", "scheme", "user")

    def __init__(
        self,
        host: str,
        user: str | None = None,
        port: int | None = None,
        *,
        scheme: str = "sip",
        password: str | None = None,
        params: dict[str, str | None] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.scheme = scheme
        self.user = user
        self.password = password
        self.host = host
        self.port = port
        self.params: dict[str, str | None] = {} if params is None else params
        self.headers: dict[str, str] = {} if headers is None else headers

    @classmethod
    def parse(cls, text: str) -> SipURI:
        """Parse a SIP/SIPS URI; raise SipParseError(400) when malformed."""
        uri = parse_uri(text)
        if not isinstance(uri, SipURI):
            raise _err("not a SIP URI")
        return uri

    @property
    def bare_host(self) -> str:
        """The host without IPv6 brackets, ready for a socket address."""
        return strip_brackets(self.host)

    @property
    def transport(self) -> str | None:
        """The ``transport`` parameter, lower-cased (§19.1.1)."""
        t = self.params.get("transport")
        return t.lower() if t else None

    @property
    def lr(self) -> bool:
        """Whether the URI carries the loose-routing ``lr`` flag (§19.1.1, §16.12)."""
        return "lr" in self.params

    @property
    def maddr(self) -> str | None:
        return self.params.get("maddr")

    @property
    def secure(self) -> bool:
        return self.scheme == "sips"

    def copy(self) -> SipURI:
        """A copy whose params and headers can be changed independently."""
        return SipURI(
            self.host,
            self.user,
            self.port,
            scheme=self.scheme,
            password=self.password,
            params=dict(self.params),
            headers=dict(self.headers),
        )

    def __str__(self) -> str:
        parts = [self.scheme, ":"]
        if self.user is not None:
            parts.append(escape(self.user, _USER_SAFE))
            if self.password is not None:
                parts.append(":")
                parts.append(escape(self.password, _PASSWORD_SAFE))
            parts.append("@")
        parts.append(self.host)
        if self.port is not None:
            parts.append(f":{self.port}")
        for k, v in self.params.items():
            parts.append(";")
            parts.append(escape(k, _PARAM_SAFE))
            if v is not None:
                parts.append("=")
                parts.append(escape(v, _PARAM_SAFE))
        sep = "?"
        for k, v in self.headers.items():
            parts.append(sep)
            parts.append(escape(k, _HEADER_SAFE))
            parts.append("=")
            parts.append(escape(v, _HEADER_SAFE))
            sep = "&"
        return "".join(parts)

    def __repr__(self) -> str:
        return f"SipURI({str(self)!r})"

    # §19.1.4: parameters that must match when present in either URI.
    _STRICT_PARAMS: Final = ("user", "ttl", "method", "maddr", "transport")

    def __eq__(self, other: object) -> bool:
        """URI comparison of RFC 3261 §19.1.4."""
        if not isinstance(other, SipURI):
            return NotImplemented
        if (
            self.scheme != other.scheme
            or self.user != other.user
            or self.password != other.password
            or self.host.lower() != other.host.lower()
            or self.port != other.port
        ):
            return False
        for name in self._STRICT_PARAMS:
            a = self.params.get(name, "\0absent")
            b = other.params.get(name, "\0absent")
            if (a or "").lower() != (b or "").lower():
                return False
        for name, a in self.params.items():
            if name in other.params and (a or "").lower() != (other.params[name] or "").lower():
                return False
        mine = {k.lower(): v for k, v in self.headers.items()}
        theirs = {k.lower(): v for k, v in other.headers.items()}
        return mine == theirs

    def __hash__(self) -> int:
        return hash((self.scheme, self.user, self.password, self.host.lower(), self.port))


class TelURI:
    """A ``tel:`` URI (RFC 3966): the number as written plus its parameters."""

    __slots__ = ("number", "params")

    def __init__(self, number: str, params: dict[str, str | None] | None = None) -> None:
        self.number = number
        self.params: dict[str, str | None] = {} if params is None else params

    scheme: Final = "tel"

    @property
    def is_global(self) -> bool:
        """A global number starts with ``+`` (RFC 3966 §5.1.4)."""
        return self.number.startswith("+")

    def copy(self) -> TelURI:
        return TelURI(self.number, dict(self.params))

    def __str__(self) -> str:
        out = [f"tel:{self.number}"]
        for k, v in self.params.items():
            out.append(f";{k}" if v is None else f";{k}={escape(v, _PARAM_SAFE)}")
        return "".join(out)

    def __repr__(self) -> str:
        return f"TelURI({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TelURI):
            return NotImplemented
        # RFC 3966 §4: visual separators are not significant.
        return _tel_digits(self.number) == _tel_digits(other.number) and {
            k: (v or "").lower() for k, v in self.params.items()
        } == {k: (v or "").lower() for k, v in other.params.items()}

    def __hash__(self) -> int:
        return hash(_tel_digits(self.number))


def _tel_digits(number: str) -> str:
    return "".join(ch for ch in number.lower() if ch not in "-.()")


class AbsoluteURI:
    """Any other URI (§25.1 ``absoluteURI``), kept opaque: ``scheme:rest``.

    RFC 4475 §3.3.2-§3.3.4: parsers must accept unknown schemes; what to do with them
    (416 in a Request-URI) is up to the element.
    """

    __slots__ = ("rest", "scheme")

    def __init__(self, scheme: str, rest: str) -> None:
        self.scheme = scheme
        self.rest = rest

    def copy(self) -> AbsoluteURI:
        return AbsoluteURI(self.scheme, self.rest)

    def __str__(self) -> str:
        return f"{self.scheme}:{self.rest}"

    def __repr__(self) -> str:
        return f"AbsoluteURI({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AbsoluteURI):
            return NotImplemented
        return self.scheme.lower() == other.scheme.lower() and self.rest == other.rest

    def __hash__(self) -> int:
        return hash((self.scheme.lower(), self.rest))


Uri = SipURI | TelURI | AbsoluteURI


def parse_uri(text: str) -> Uri:
    """Parse a URI: SIP/SIPS fully, ``tel:`` loosely, anything else opaquely.

    Raises SipParseError(400) on syntax errors, including LWS inside the URI
    (RFC 4475 §3.1.2.8, §3.1.2.14) and an IPv6 address outside brackets (RFC 5118 §4.2).
    """
    colon = text.find(":")
    if colon <= 0:
        raise _err("URI without scheme")
    scheme = text[:colon]
    rest = text[colon + 1 :]
    lscheme = scheme.lower()
    if lscheme in ("sip", "sips"):
        return _parse_sip_uri(lscheme, rest)
    if not _SCHEME_RE.fullmatch(scheme):
        raise _err("bad URI scheme")
    if not rest or any(ch in rest for ch in ' \t\r\n<>"'):
        raise _err("bad URI")
    if lscheme == "tel":
        number, _sep, ptext = rest.partition(";")
        if not _TEL_RE.fullmatch(number):
            raise _err("bad tel number")
        params = _parse_uri_params(ptext) if _sep else {}
        return TelURI(number, params)
    return AbsoluteURI(scheme, rest)


def _parse_sip_uri(scheme: str, rest: str) -> SipURI:
    at = rest.find("@")
    user: str | None = None
    password: str | None = None
    if at >= 0:
        userinfo = rest[:at]
        rest = rest[at + 1 :]
        u, sep, p = userinfo.partition(":")
        if not _USER_RE.fullmatch(u):
            raise _err("bad URI user")
        user = _unescape(u, "user")
        if sep:
            if not _PASSWORD_RE.fullmatch(p):
                raise _err("bad URI password")
            password = _unescape(p, "password")
    # hostport ends at the first ';' or '?' (neither can occur in a host).
    end = len(rest)
    semi = rest.find(";")
    if semi >= 0:
        end = semi
    q = rest.find("?", 0, end)
    if q >= 0:
        end = q
    hostport = rest[:end]
    if not hostport or " " in hostport or "\t" in hostport:
        raise _err("bad URI host")
    host, port = _split_hostport(hostport)
    params: dict[str, str | None] = {}
    headers: dict[str, str] = {}
    tail = rest[end:]
    if tail:
        ptext, qsep, htext = tail.partition("?")
        if ptext:
            params = _parse_uri_params(ptext[1:])
        if qsep:
            headers = _parse_uri_headers(htext)
    return SipURI(
        host, user, port, scheme=scheme, password=password, params=params, headers=headers
    )


def _parse_uri_params(text: str) -> dict[str, str | None]:
    """``uri-parameters`` after the first ';' (§19.1.1); names lower-cased, unescaped."""
    params: dict[str, str | None] = {}
    for item in text.split(";"):
        name, eq, value = item.partition("=")
        if not _PARAM_RE.fullmatch(name):
            raise _err("bad URI parameter")
        key = _unescape(name, "parameter").lower()
        if eq:
            if not _PARAM_RE.fullmatch(value):
                raise _err("bad URI parameter value")
            params[key] = _unescape(value, "parameter")
        else:
            params[key] = None
    return params


def _parse_uri_headers(text: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    for item in text.split("&"):
        name, eq, value = item.partition("=")
        if not eq or not _HNAME_RE.fullmatch(name) or not _HVALUE_RE.fullmatch(value):
            raise _err("bad URI header")
        headers[_unescape(name, "header")] = _unescape(value, "header")
    return headers


# --------------------------------------------------------------------- name-addr


class NameAddr:
    """A ``name-addr`` or ``addr-spec`` with header parameters (§20.10, §20.20, §20.39).

    The URI is parsed on first access of :attr:`uri`.  ``display_name`` is the
    unquoted display name or ``None``; ``params`` are the header parameters (``tag``,
    ``expires``, ``q``...).  ``str()`` always uses the ``<...>`` form, which is valid
    for every URI.  The Contact wildcard ``*`` (§10.2.2) is ``is_wildcard``.
    """

    __slots__ = ("_uri", "_uri_text", "display_name", "params")

    def __init__(
        self,
        uri: Uri | str,
        display_name: str | None = None,
        params: dict[str, str | None] | None = None,
    ) -> None:
        if isinstance(uri, str):
            self._uri: Uri | None = None
            self._uri_text = uri
        else:
            self._uri = uri
            self._uri_text = ""
        self.display_name = display_name
        self.params: dict[str, str | None] = {} if params is None else params

    @property
    def uri(self) -> Uri:
        """The URI, parsed on first access (SipParseError if malformed)."""
        uri = self._uri
        if uri is None:
            uri = self._uri = parse_uri(self._uri_text)
        return uri

    @uri.setter
    def uri(self, value: Uri) -> None:
        self._uri = value

    @property
    def tag(self) -> str | None:
        """The ``tag`` parameter (§19.3)."""
        return self.params.get("tag")

    @property
    def is_wildcard(self) -> bool:
        return self._uri is None and self._uri_text == "*"

    def with_tag(self, tag: str) -> NameAddr:
        """A copy carrying ``tag`` (for the To of a response, §8.2.6.2)."""
        params = dict(self.params)
        params["tag"] = tag
        return NameAddr(
            self._uri if self._uri is not None else self._uri_text, self.display_name, params
        )

    def copy(self) -> NameAddr:
        uri = self._uri.copy() if self._uri is not None else self._uri_text
        return NameAddr(uri, self.display_name, dict(self.params))

    def __str__(self) -> str:
        if self.is_wildcard:
            return "*"
        uri = str(self._uri) if self._uri is not None else self._uri_text
        head = f"{quote_string(self.display_name)} <{uri}>" if self.display_name else f"<{uri}>"
        return head + format_params(self.params) if self.params else head

    def __repr__(self) -> str:
        return f"NameAddr({str(self)!r})"


def _check_display_tokens(text: str) -> None:
    """An unquoted display name is ``*(token LWS)`` (§25.1)."""
    for tok in text.split():
        if not _TOKEN_RE.fullmatch(tok):
            raise _err("display name needs quotes")


def parse_name_addr(text: str) -> NameAddr:
    """Parse ``(name-addr / addr-spec) *(SEMI param)`` (§20.10).

    In the ``addr-spec`` form a ``;`` starts the header parameters and ``?`` / ``,``
    are not allowed (RFC 4475 §3.1.2.13).  The URI itself is parsed lazily.
    """
    s = text.strip(_LWS)
    m = _NAME_ADDR_FAST_RE.fullmatch(s)
    if m is not None:
        quoted, tokens, uri_text, ptext = m.groups()
        return NameAddr(
            uri_text,
            quoted if quoted is not None else tokens,
            parse_params(ptext) if ptext else {},
        )
    if not s:
        raise _err("empty address")
    if s == "*":
        return NameAddr("*")
    display: str | None = None
    if s[0] == '"':
        display, end = _read_quoted(s, 0)
        rest = s[end:].lstrip(_LWS)
        if not rest.startswith("<"):
            raise _err("quoted display name without <URI>")
        lt = 0
        s = rest
    else:
        lt = s.find("<")
    if lt >= 0:
        if lt > 0:
            name = s[:lt].strip(_LWS)
            _check_display_tokens(name)
            display = name or None
        gt = s.find(">", lt + 1)
        if gt < 0:
            raise _err("unterminated <URI>")
        uri_text = s[lt + 1 : gt]
        if not uri_text or any(ch in uri_text for ch in " \t<"):
            raise _err("bad URI in <>")
        ptext = s[gt + 1 :]
        params = parse_params(ptext) if ptext else {}
        return NameAddr(uri_text, display, params)
    # addr-spec form: the URI ends at the first ';' (header params follow).
    uri_text, sep, ptext = s.partition(";")
    uri_text = uri_text.rstrip(_LWS)
    if not uri_text or any(ch in uri_text for ch in ' \t?,"<>'):
        raise _err("addr-spec with reserved characters must use <>")
    params = parse_params(";" + ptext) if sep else {}
    return NameAddr(uri_text, None, params)


# ----------------------------------------------------------------------------- Via


class Via:
    """One Via field value (§20.42): ``SIP/2.0/UDP host:port;branch=...``.

    ``transport`` is upper-cased; ``host`` is kept as written (IPv6 with brackets);
    ``params`` keep their order, names lower-cased.
    """

    __slots__ = ("host", "params", "port", "protocol", "transport")

    def __init__(
        self,
        transport: str,
        host: str,
        port: int | None = None,
        params: dict[str, str | None] | None = None,
        protocol: str = "SIP/2.0",
    ) -> None:
        self.transport = transport
        self.host = host
        self.port = port
        self.params: dict[str, str | None] = {} if params is None else params
        self.protocol = protocol

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        """The ``received`` parameter (§18.2.1), brackets stripped if any (RFC 5118 §4.5)."""
        r = self.params.get("received")
        return strip_brackets(r) if r else None

    @property
    def rport_requested(self) -> bool:
        """Whether ``rport`` is present, with or without value (RFC 3581 §3, §4)."""
        return "rport" in self.params

    @property
    def rport(self) -> int | None:
        """The numeric ``rport`` value filled in by a server (RFC 3581 §4)."""
        v = self.params.get("rport")
        if v is None or not v.isdigit():
            return None
        return int(v)

    @property
    def maddr(self) -> str | None:
        return self.params.get("maddr")

    @property
    def ttl(self) -> int | None:
        v = self.params.get("ttl")
        return int(v) if v is not None and v.isdigit() else None

    @property
    def bare_host(self) -> str:
        return strip_brackets(self.host)

    @property
    def sent_by(self) -> tuple[str, int | None]:
        """``(host, port)`` as written by the sender (used in §17.2.3 matching)."""
        return self.host.lower(), self.port

    def copy(self) -> Via:
        return Via(self.transport, self.host, self.port, dict(self.params), self.protocol)

    def __str__(self) -> str:
        hostport = self.host if self.port is None else f"{self.host}:{self.port}"
        return f"{self.protocol}/{self.transport} {hostport}{format_params(self.params)}"

    def __repr__(self) -> str:
        return f"Via({str(self)!r})"


def parse_via(text: str) -> Via:
    """Parse one ``via-parm`` (§20.42, §25.1): sent-protocol LWS sent-by *(SEMI param).

    ``received`` may be an IPv6 address with or without brackets (RFC 5118 §4.5);
    ``rport`` may be a flag or a port (RFC 3581).  Empty parameters are rejected
    (RFC 4475 §3.1.2.1).
    """
    m = _VIA_FAST_RE.fullmatch(text)
    if m is not None and m[2][0] not in "-." and m[2][-1] != "-":
        transport, host, port_text, ptext = m.groups()
        params: dict[str, str | None] = {}
        if ptext:
            for item in ptext[1:].split(";"):
                name, eq, value = item.partition("=")
                params[name.lower()] = value if eq else None
        port = None
        if port_text is not None:
            port = int(port_text)
            if port > 65535:
                raise _err("port out of range")
        via = Via(transport.upper(), host, port, params)
    else:
        via = _parse_via_slow(text)
    params = via.params
    if "received" in params:
        rec = params["received"]
        if not rec:
            raise _err("empty Via received")
        if not (_HOSTNAME_RE.fullmatch(rec) or _valid_ipv6(strip_brackets(rec))):
            raise _err("bad Via received")
    if "rport" in params:
        r = params["rport"]
        if r is not None and (not r.isdigit() or not 0 < int(r) <= 65535):
            raise _err("bad Via rport")
    if "ttl" in params:
        ttl = params["ttl"]
        if ttl is None or not ttl.isdigit() or int(ttl) > 255:
            raise _err("bad Via ttl")
    return via


def _parse_via_slow(text: str) -> Via:
    """Via with LWS inside, IPv6 sent-by, quoted parameters... (§20.42)."""
    semi = text.find(";")
    head = text if semi < 0 else text[:semi]
    try:
        name, version, rest = head.split("/", 2)
    except ValueError:
        raise _err("bad Via sent-protocol") from None
    name = name.strip(_LWS)
    version = version.strip(_LWS)
    rest = rest.lstrip(_LWS)
    i = 0
    n = len(rest)
    while i < n and rest[i] not in _LWS:
        i += 1
    transport = rest[:i]
    sent_by = rest[i:].strip(_LWS)
    if (
        not _TOKEN_RE.fullmatch(name)
        or not _TOKEN_RE.fullmatch(version)
        or not _TOKEN_RE.fullmatch(transport)
        or not sent_by
    ):
        raise _err("bad Via")
    host, port = _split_hostport(sent_by)
    params = parse_params(text[semi:]) if semi >= 0 else {}
    protocol = "SIP/2.0" if name == "SIP" and version == "2.0" else f"{name.upper()}/{version}"
    return Via(transport.upper(), host, port, params, protocol)


# ------------------------------------------------------------- CSeq, Max-Forwards...


class CSeq:
    """A CSeq value (§20.16): sequence number and method."""

    __slots__ = ("method", "seq")

    def __init__(self, seq: int, method: str) -> None:
        self.seq = seq
        self.method = method

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"

    def __repr__(self) -> str:
        return f"CSeq({self.seq}, {self.method!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CSeq):
            return NotImplemented
        return self.seq == other.seq and self.method == other.method

    def __hash__(self) -> int:
        return hash((self.seq, self.method))


#: §8.1.1.5: the sequence number must be a 32-bit unsigned integer.
CSEQ_MAX: Final = 2**32 - 1


def parse_cseq(text: str) -> CSeq:
    """Parse ``1*DIGIT LWS Method``; numbers above 2**32-1 are rejected (RFC 4475 §3.1.2.4)."""
    parts = text.split()
    if len(parts) != 2:
        raise _err("bad CSeq")
    num, method = parts
    if not (num.isdigit() and num.isascii()) or (
        method not in KNOWN_METHODS and not _TOKEN_RE.fullmatch(method)
    ):
        raise _err("bad CSeq")
    seq = int(num)
    if seq > CSEQ_MAX:
        raise _err("CSeq number out of range")
    return CSeq(seq, method)


def parse_max_forwards(text: str) -> int:
    """Parse Max-Forwards (§20.22): 0..255 (RFC 4475 §3.1.2.4 treats more as invalid)."""
    text = text.strip(_LWS)
    if not _DIGITS_RE.fullmatch(text):
        raise _err("bad Max-Forwards")
    value = int(text)
    if value > 255:
        raise _err("Max-Forwards out of range")
    return value


def parse_call_id(text: str) -> str:
    """Parse Call-ID (§20.8, ``word ["@" word]``): any non-empty run without LWS."""
    text = text.strip(_LWS)
    if not text or " " in text or "\t" in text:
        raise _err("bad Call-ID")
    return text
