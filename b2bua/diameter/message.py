"""Diameter messages: header codec, builders, answers, framing, validation.

Header layout (RFC 6733 section 3), 20 octets::

    Version (1) | Message Length (3)
    Flags R P E T r r r r (1) | Command Code (3)
    Application-ID (4) | Hop-by-Hop Identifier (4) | End-to-End Identifier (4)

Everything here is sans-IO: bytes in, objects out.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from b2bua.diameter.avp import (
    FLAG_M,
    FLAG_V,
    MAX_AVPS,
    Avp,
    Level,
    encode_avps_into,
    example_avp,
    find_every,
    make_avp,
)
from b2bua.diameter.dictionary import (
    APP_BASE,
    APP_CREDIT_CONTROL,
    AVPS_BY_NAME,
    COMMANDS_BY_CODE,
    COMMANDS_BY_NAME,
    DIAMETER_APPLICATION_UNSUPPORTED,
    DIAMETER_AVP_OCCURS_TOO_MANY_TIMES,
    DIAMETER_AVP_UNSUPPORTED,
    DIAMETER_COMMAND_UNSUPPORTED,
    DIAMETER_INVALID_AVP_BITS,
    DIAMETER_INVALID_AVP_VALUE,
    DIAMETER_INVALID_BIT_IN_HEADER,
    DIAMETER_INVALID_HDR_BITS,
    DIAMETER_INVALID_MESSAGE_LENGTH,
    DIAMETER_MISSING_AVP,
    DIAMETER_UNSUPPORTED_VERSION,
    ERROR_ANSWER_RULES,
    AvpDef,
    AvpType,
    CommandDef,
    FlagRule,
    Occurrence,
)
from b2bua.diameter.errors import DecodeError

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "FLAG_ERROR",
    "FLAG_PROXIABLE",
    "FLAG_REQUEST",
    "FLAG_RETRANSMIT",
    "HEADER_LENGTH",
    "Header",
    "IdGenerator",
    "Message",
    "MessageFramer",
    "check_command",
    "decode",
    "encode",
    "make_answer",
    "make_error_answer",
]

HEADER_LENGTH: Final = 20
VERSION: Final = 1
FLAG_REQUEST: Final = 0x80
FLAG_PROXIABLE: Final = 0x40
FLAG_ERROR: Final = 0x20
FLAG_RETRANSMIT: Final = 0x10
_FLAG_RESERVED: Final = 0x0F
DEFAULT_MAX_MESSAGE_SIZE: Final = 1 << 18  # 256 KiB; Ro messages are a few KiB

_MSG_HDR = struct.Struct(">IIIII")
_VERSION_WORD = VERSION << 24


@dataclass(frozen=True, slots=True)
class Header:
    """A decoded message header, kept on DecodeError to build the answer."""

    version: int
    length: int
    flags: int
    command_code: int
    app_id: int
    hop_by_hop: int
    end_to_end: int

    @property
    def is_request(self) -> bool:
        """'R' bit."""
        return bool(self.flags & FLAG_REQUEST)

    @property
    def is_proxiable(self) -> bool:
        """'P' bit."""
        return bool(self.flags & FLAG_PROXIABLE)


def _header_from(data: bytes) -> Header:
    w0, w1, app, hbh, e2e = _MSG_HDR.unpack_from(data, 0)
    return Header(w0 >> 24, w0 & 0xFFFFFF, w1 >> 24, w1 & 0xFFFFFF, app, hbh, e2e)


class Message:
    """A Diameter message: header fields plus the top-level AVP list.

    A decoded message keeps its wire bytes; ``find``/``get`` scan them and
    only build the AVPs asked for, ``avps`` builds the full list on first
    use, and an untouched message re-encodes by copying its body.
    """

    __slots__ = (
        "_avps",
        "_level",
        "app_id",
        "command_code",
        "end_to_end",
        "flags",
        "hop_by_hop",
    )

    _avps: list[Avp] | None
    _level: Level | None

    def __init__(
        self,
        command_code: int,
        app_id: int = 0,
        flags: int = 0,
        avps: Iterable[Any] = (),
        *,
        hop_by_hop: int = 0,
        end_to_end: int = 0,
    ) -> None:
        self.command_code = command_code
        self.app_id = app_id
        self.flags = flags
        self.hop_by_hop = hop_by_hop
        self.end_to_end = end_to_end
        self._avps = [make_avp(a) for a in avps]
        self._level = None

    @property
    def avps(self) -> list[Avp]:
        """Top-level AVPs (built on first access for a decoded message)."""
        avps = self._avps
        if avps is None:
            level = self._level
            assert level is not None
            avps = self._avps = level.materialize()
            self._level = None
        return avps

    @avps.setter
    def avps(self, avps: list[Avp]) -> None:
        self._avps = avps
        self._level = None

    # -- builders --------------------------------------------------------------
    @classmethod
    def request(
        cls,
        cmd: str | int,
        app_id: int | None = None,
        avps: Iterable[Any] = (),
        *,
        hop_by_hop: int = 0,
        end_to_end: int = 0,
        proxiable: bool | None = None,
        retransmit: bool = False,
    ) -> Message:
        """Build a request from AVP specs ``(name, value)`` / ``Avp`` (R bit set).

        ``cmd`` is a command name ("Credit-Control", "CCR") or code; the
        application id and the P bit default to the command definition.
        """
        code, app, pxy = _command_defaults(cmd, app_id)
        flags = FLAG_REQUEST
        if pxy if proxiable is None else proxiable:
            flags |= FLAG_PROXIABLE
        if retransmit:
            flags |= FLAG_RETRANSMIT
        return cls(code, app, flags, avps, hop_by_hop=hop_by_hop, end_to_end=end_to_end)

    @classmethod
    def answer_to(cls, request: Message | Header, avps: Iterable[Any] = ()) -> Message:
        """Empty answer shell for ``request``: same ids, command, application, P bit."""
        return cls(
            request.command_code,
            request.app_id,
            request.flags & FLAG_PROXIABLE,
            avps,
            hop_by_hop=request.hop_by_hop,
            end_to_end=request.end_to_end,
        )

    # -- flags -----------------------------------------------------------------
    @property
    def is_request(self) -> bool:
        """'R' bit."""
        return bool(self.flags & FLAG_REQUEST)

    @property
    def is_proxiable(self) -> bool:
        """'P' bit."""
        return bool(self.flags & FLAG_PROXIABLE)

    @property
    def is_error(self) -> bool:
        """'E' bit: the answer follows the RFC 6733 7.2 error grammar."""
        return bool(self.flags & FLAG_ERROR)

    @property
    def is_retransmit(self) -> bool:
        """'T' bit: potentially retransmitted after failover."""
        return bool(self.flags & FLAG_RETRANSMIT)

    @property
    def header(self) -> Header:
        """Header snapshot (length is 0: it is only known once encoded)."""
        return Header(
            VERSION,
            0,
            self.flags,
            self.command_code,
            self.app_id,
            self.hop_by_hop,
            self.end_to_end,
        )

    @property
    def command(self) -> CommandDef | None:
        """Dictionary definition of the command, if known."""
        return COMMANDS_BY_CODE.get(self.command_code)

    @property
    def name(self) -> str:
        """Short name such as "CCR" or "CEA"; ``"<code>-R"`` when unknown."""
        cmd = COMMANDS_BY_CODE.get(self.command_code)
        if cmd is None:
            return f"{self.command_code}-{'R' if self.is_request else 'A'}"
        return cmd.abbrev_request if self.is_request else cmd.abbrev_answer

    # -- accessors ---------------------------------------------------------------
    def _lookup(self, name: str, first_only: bool) -> list[Avp]:
        code, vendor = AVPS_BY_NAME[name].key
        avps = self._avps
        if avps is None:
            level = self._level
            assert level is not None
            return level.lookup(code, vendor, first_only)
        return [a for a in avps if a.code == code and a.vendor == vendor]

    def find(self, name: str) -> Avp | None:
        """First top-level AVP with that name."""
        hits = self._lookup(name, True)
        return hits[0] if hits else None

    def find_all(self, name: str) -> list[Avp]:
        """All top-level AVPs with that name."""
        return self._lookup(name, False)

    def get(self, name: str, default: Any = None) -> Any:
        """Value of the first top-level AVP with that name, or ``default``."""
        hits = self._lookup(name, True)
        return hits[0].value if hits else default

    def find_path(self, *names: str) -> Avp | None:
        """Follow first matches through nested groups.

        ``msg.find_path("Multiple-Services-Credit-Control",
        "Granted-Service-Unit", "CC-Time")``
        """
        if not names:
            return None
        found = self.find(names[0])
        for name in names[1:]:
            if found is None or not found.is_grouped:
                return None
            found = found.find(name)
        return found

    def get_path(self, *names: str, default: Any = None) -> Any:
        """Value at the end of :meth:`find_path`, or ``default``."""
        avp = self.find_path(*names)
        return default if avp is None else avp.value

    @property
    def session_id(self) -> str | None:
        """Session-Id value (RFC 6733 8.8), if present."""
        value: str | None = self.get("Session-Id")
        return value

    @property
    def result_code(self) -> int | None:
        """Result-Code, else the Experimental-Result-Code, else None."""
        avp = self.find("Result-Code")
        if avp is not None:
            code: int = avp.value
            return code
        exp = self.find("Experimental-Result")
        if exp is not None and exp.is_grouped:
            inner = exp.find("Experimental-Result-Code")
            if inner is not None:
                code = inner.value
                return code
        return None

    @property
    def origin_host(self) -> str | None:
        """Origin-Host value, if present."""
        value: str | None = self.get("Origin-Host")
        return value

    @property
    def origin_realm(self) -> str | None:
        """Origin-Realm value, if present."""
        value: str | None = self.get("Origin-Realm")
        return value

    def append(self, name: str, value: Any) -> Avp:
        """Add a top-level AVP built from the dictionary; returns it."""
        avp = Avp.new(name, value)
        self.avps.append(avp)
        return avp

    # -- codec -------------------------------------------------------------------
    def encode(self) -> bytes:
        """Wire bytes of the message."""
        level = self._level
        if level is not None and not level.found:
            out = bytearray(level.buf)
        else:
            out = bytearray(HEADER_LENGTH)
            encode_avps_into(self.avps, out)
        length = len(out)
        if length > 0xFFFFFF:
            raise ValueError("message longer than 2**24-1 octets")
        _MSG_HDR.pack_into(
            out,
            0,
            _VERSION_WORD | length,
            (self.flags << 24) | self.command_code,
            self.app_id,
            self.hop_by_hop,
            self.end_to_end,
        )
        return bytes(out)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return self.encode() == other.encode()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"Message({self.name}, app={self.app_id}, hbh={self.hop_by_hop:#x}, "
            f"e2e={self.end_to_end:#x}, avps={self.avps!r})"
        )


def _command_defaults(cmd: str | int, app_id: int | None) -> tuple[int, int, bool]:
    if isinstance(cmd, int):
        defn = COMMANDS_BY_CODE.get(cmd)
        code = cmd
    else:
        defn = COMMANDS_BY_NAME[cmd]
        code = defn.code
    if app_id is None:
        if defn is None or defn.app_ids is None:
            app_id = APP_CREDIT_CONTROL if defn is not None else APP_BASE
        else:
            app_id = min(defn.app_ids)
    return code, app_id, bool(defn is not None and defn.proxiable)


def decode(data: bytes | bytearray | memoryview, *, max_avps: int = MAX_AVPS) -> Message:
    """Decode one complete message; raises only :class:`DecodeError`.

    Top-level AVP headers are validated here; values and grouped children
    are decoded lazily on access (see :func:`check_command` for a full walk).
    """
    if not isinstance(data, bytes):
        data = bytes(data)
    size = len(data)
    if size < HEADER_LENGTH:
        raise DecodeError(DIAMETER_INVALID_MESSAGE_LENGTH, "shorter than a header", fatal=True)
    w0, w1, app_id, hbh, e2e = _MSG_HDR.unpack_from(data, 0)
    flags = w1 >> 24
    if w0 >> 24 != VERSION:
        raise DecodeError(
            DIAMETER_UNSUPPORTED_VERSION, f"version {w0 >> 24}", header=_header_from(data)
        )
    length = w0 & 0xFFFFFF
    if length != size or length & 3:
        raise DecodeError(
            DIAMETER_INVALID_MESSAGE_LENGTH,
            f"length field {length} for {size} octets",
            header=_header_from(data),
        )
    if flags & _FLAG_RESERVED:
        raise DecodeError(
            DIAMETER_INVALID_BIT_IN_HEADER, "reserved header bit set", header=_header_from(data)
        )
    if flags & FLAG_REQUEST and flags & FLAG_ERROR:
        raise DecodeError(
            DIAMETER_INVALID_HDR_BITS, "request with the E bit", header=_header_from(data)
        )
    try:
        level = Level(data, HEADER_LENGTH, size, (0, [max_avps]), full=True)
    except DecodeError as exc:
        exc.header = _header_from(data)
        raise
    msg = Message.__new__(Message)
    msg.command_code = w1 & 0xFFFFFF
    msg.app_id = app_id
    msg.flags = flags
    msg.hop_by_hop = hbh
    msg.end_to_end = e2e
    msg._avps = None
    msg._level = level
    return msg


def encode(msg: Message) -> bytes:
    """Wire bytes of ``msg`` (same as ``msg.encode()``)."""
    return msg.encode()


# ---------------------------------------------------------------------------
# Answers (RFC 6733 section 6.2, 7.2)
# ---------------------------------------------------------------------------


def make_answer(
    request: Message,
    result_code: int | None = None,
    avps: Iterable[Any] = (),
    *,
    origin_host: str | None = None,
    origin_realm: str | None = None,
) -> Message:
    """Answer to ``request`` per RFC 6733 6.2.

    Same hop-by-hop and end-to-end ids, command code, application id and P
    bit; R cleared; Session-Id first; Result-Code and Origin-Host/-Realm when
    given, then ``avps``, then the request's Proxy-Info AVPs in order.  A
    3xxx ``result_code`` sets the E bit (7.1.3).
    """
    answer = Message.answer_to(request)
    out = answer.avps
    sid = request.find("Session-Id")
    if sid is not None:
        out.append(sid)
    if result_code is not None:
        out.append(Avp.new("Result-Code", result_code))
        if 3000 <= result_code < 4000:
            answer.flags |= FLAG_ERROR
    if origin_host is not None:
        out.append(Avp.new("Origin-Host", origin_host))
    if origin_realm is not None:
        out.append(Avp.new("Origin-Realm", origin_realm))
    out.extend(make_avp(a) for a in avps)
    out.extend(request.find_all("Proxy-Info"))
    return answer


def make_error_answer(
    request: Message | Header,
    error: DecodeError,
    origin_host: str,
    origin_realm: str,
    *,
    error_message: str | None = None,
    origin_state_id: int | None = None,
) -> Message:
    """Error answer for a rejected request (RFC 6733 7.1, 7.2, 7.5).

    The E bit is set for protocol errors (3xxx).  Failed-AVP carries the
    offending AVP (or the zero-filled example of a missing one).  For other
    codes the answer echoes the request AVPs the command's answer grammar
    requires exactly once (e.g. CC-Request-Type/-Number of a CCA), when the
    request could be decoded.
    """
    if not (request.flags & FLAG_REQUEST):
        raise ValueError("RFC 6733 7.2: never answer an answer")
    answer = Message.answer_to(request)
    out = answer.avps
    code = error.result_code
    msg = request if isinstance(request, Message) else None
    if msg is not None:
        sid = msg.find("Session-Id")
        if sid is not None and _well_formed(sid):
            out.append(sid)
    out.append(Avp.new("Origin-Host", origin_host))
    out.append(Avp.new("Origin-Realm", origin_realm))
    out.append(Avp.new("Result-Code", code))
    if 3000 <= code < 4000:
        answer.flags |= FLAG_ERROR
    elif msg is not None:
        cmd = COMMANDS_BY_CODE.get(msg.command_code)
        if cmd is not None:
            _echo_required(msg, cmd.answer_rules, out, error)
    if origin_state_id is not None:
        out.append(Avp.new("Origin-State-Id", origin_state_id))
    if error_message is not None:
        out.append(Avp.new("Error-Message", error_message))
    if error.failed_avp is not None:
        out.append(Avp(279, flags=FLAG_M, data=error.failed_avp))
    if msg is not None:
        out.extend(avp for avp in msg.find_all("Proxy-Info") if _well_formed(avp))
    return answer


def _well_formed(avp: Avp) -> bool:
    """Whether ``avp`` (and every child of a Grouped one) decodes: a rejected request's own
    malformed Session-Id or Proxy-Info must not make our error answer malformed too."""
    try:
        value = avp.value
        return not avp.is_grouped or all(_well_formed(child) for child in value)
    except DecodeError:
        return False


_NOT_ECHOED = frozenset(
    {"Session-Id", "Result-Code", "Origin-Host", "Origin-Realm", "Error-Message", "Failed-AVP"}
)


def _echo_required(
    msg: Message, rules: Mapping[str, Occurrence], out: list[Avp], error: DecodeError
) -> None:
    for name, (low, high) in rules.items():
        if low != 1 or high != 1 or name in _NOT_ECHOED:
            continue
        avp = msg.find(name)
        if avp is None or avp is error.avp:
            continue
        defn = avp.defn
        size = defn.fixed_size if defn is not None else None
        if (size is not None and len(avp.data) != size) or not _well_formed(avp):
            continue
        out.append(avp)


# ---------------------------------------------------------------------------
# Validation (RFC 6733 7.1, 7.5)
# ---------------------------------------------------------------------------

DEFAULT_SUPPORTED_APPS: Final = frozenset({APP_BASE, APP_CREDIT_CONTROL})


def check_command(msg: Message, *, supported_apps: frozenset[int] = DEFAULT_SUPPORTED_APPS) -> None:
    """Validate a decoded message against the dictionary; raise DecodeError.

    Reports the first error found, in this order: 3001 unknown command,
    3007 unsupported application, 3008 header bits inconsistent with the
    command, then per AVP (depth first) 5001 unknown AVP with M set, 3009
    M/V bits contradicting the dictionary, 5014 wrong length for a
    fixed-size type, 5004 invalid value (closed Enumerated, UTF-8,
    Address), and per level 5005 missing required AVP / 5009 too many.
    """
    try:
        _check_command(msg, supported_apps)
    except DecodeError as exc:
        if exc.header is None:
            exc.header = msg.header
        raise


def _check_command(msg: Message, supported_apps: frozenset[int]) -> None:
    cmd = COMMANDS_BY_CODE.get(msg.command_code)
    if cmd is None:
        raise DecodeError(DIAMETER_COMMAND_UNSUPPORTED, f"command {msg.command_code}")
    apps = cmd.app_ids if cmd.app_ids is not None else supported_apps
    if msg.app_id not in apps or msg.app_id not in supported_apps:
        raise DecodeError(DIAMETER_APPLICATION_UNSUPPORTED, f"application {msg.app_id}")
    if msg.is_proxiable and not cmd.proxiable:
        raise DecodeError(DIAMETER_INVALID_HDR_BITS, f"{cmd.abbrev_request} is not proxiable")
    _check_avps(msg.avps)
    if msg.is_error:
        rules: Mapping[str, Occurrence] = ERROR_ANSWER_RULES
    elif msg.is_request:
        rules = cmd.request_rules
    else:
        rules = cmd.answer_rules
    _check_occurrences(msg.avps, rules)


def _check_avps(avps: list[Avp]) -> None:
    for avp in avps:
        defn = avp.defn
        if defn is None:
            if avp.flags & FLAG_M:
                raise DecodeError(
                    DIAMETER_AVP_UNSUPPORTED,
                    f"unknown mandatory AVP {avp.vendor}/{avp.code}",
                    failed_avp=avp.encode(),
                    avp=avp,
                )
            continue
        _check_flags(avp, defn)
        if defn.type is AvpType.GROUPED:
            children = avp.value
            try:
                _check_avps(children)
                if defn.rules is not None:
                    _check_occurrences(children, defn.rules)
            except DecodeError as exc:
                raise avp.wrap_error(exc) from None
            continue
        value = avp.value  # 5014 / 5004 from the codec
        if defn.enum is not None and defn.closed_enum and value not in defn.enum:
            raise DecodeError(
                DIAMETER_INVALID_AVP_VALUE,
                f"{defn.name}: value {value} not defined",
                failed_avp=avp.encode(),
                avp=avp,
            )


def _check_flags(avp: Avp, defn: AvpDef) -> None:
    flags = avp.flags
    bad = False
    if flags & FLAG_V and avp.vendor == 0:
        bad = True  # 4.1.1: Vendor-ID zero MUST NOT be used
    elif defn.m_rule is FlagRule.MUST:
        bad = not flags & FLAG_M
    elif defn.m_rule is FlagRule.MUST_NOT:
        bad = bool(flags & FLAG_M)
    if bad or flags & 0x1F:
        raise DecodeError(
            DIAMETER_INVALID_AVP_BITS,
            f"{defn.name}: flags {flags:#04x} contradict its definition",
            failed_avp=avp.encode(),
            avp=avp,
        )


def _check_occurrences(avps: list[Avp], rules: Mapping[str, Occurrence]) -> None:
    counts: dict[tuple[int, int], int] = {}
    for avp in avps:
        key = (avp.code, avp.vendor)
        counts[key] = counts.get(key, 0) + 1
    for name, (low, high) in rules.items():
        defn = AVPS_BY_NAME[name]
        seen = counts.get(defn.key, 0)
        if seen < low:
            raise DecodeError(
                DIAMETER_MISSING_AVP,
                f"missing {name}",
                failed_avp=example_avp(defn),
            )
        if high is not None and seen > high:
            extra = find_every(avps, name)[high]
            raise DecodeError(
                DIAMETER_AVP_OCCURS_TOO_MANY_TIMES,
                f"{name} occurs {seen} times (max {high})",
                failed_avp=extra.encode(),
                avp=extra,
            )


# ---------------------------------------------------------------------------
# Stream framing
# ---------------------------------------------------------------------------


class MessageFramer:
    """Split a byte stream into messages using the header length field.

    ``feed`` returns decoded messages and DecodeErrors in arrival order.  A
    frame with a valid length but bad content yields a DecodeError and the
    stream continues.  A bad version, an impossible length or a length above
    ``max_size`` loses framing: a ``fatal`` DecodeError is returned, the
    framer stops, and the caller must close the connection.
    """

    __slots__ = ("_buf", "broken", "max_avps", "max_size")

    def __init__(self, max_size: int = DEFAULT_MAX_MESSAGE_SIZE, max_avps: int = MAX_AVPS) -> None:
        self._buf = bytearray()
        self.max_size = max_size
        self.max_avps = max_avps
        self.broken = False

    def feed(self, data: bytes) -> list[Message | DecodeError]:
        """Add received bytes; return every complete message they finish."""
        out: list[Message | DecodeError] = []
        if self.broken:
            return out
        buf = self._buf
        buf += data
        pos = 0
        end = len(buf)
        while end - pos >= 4:
            word = int.from_bytes(buf[pos : pos + 4], "big")
            version = word >> 24
            length = word & 0xFFFFFF
            if version != VERSION or length < HEADER_LENGTH or length & 3 or length > self.max_size:
                header = None
                if end - pos >= HEADER_LENGTH:
                    header = _header_from(bytes(buf[pos : pos + HEADER_LENGTH]))
                code = (
                    DIAMETER_UNSUPPORTED_VERSION
                    if version != VERSION
                    else DIAMETER_INVALID_MESSAGE_LENGTH
                )
                out.append(DecodeError(code, "stream framing lost", header=header, fatal=True))
                self.broken = True
                buf.clear()
                return out
            if end - pos < length:
                break
            frame = bytes(buf[pos : pos + length])
            pos += length
            try:
                out.append(decode(frame, max_avps=self.max_avps))
            except DecodeError as exc:
                out.append(exc)
        if pos:
            del buf[:pos]
        return out

    @property
    def pending(self) -> int:
        """Bytes buffered towards an incomplete message."""
        return len(self._buf)


# ---------------------------------------------------------------------------
# Identifiers (RFC 6733 section 3)
# ---------------------------------------------------------------------------


class IdGenerator:
    """Hop-by-hop and end-to-end identifier sources for one node.

    End-to-end ids start with the low 12 bits of the start time in the high
    bits and a random low 20 bits, then increment (RFC 6733 section 3);
    hop-by-hop ids start random and increment.
    """

    __slots__ = ("_e2e", "_hbh")

    def __init__(self, now: float, rng: random.Random | None = None) -> None:
        rng = rng or random.Random()
        self._e2e = ((int(now) & 0xFFF) << 20) | rng.getrandbits(20)
        self._hbh = rng.getrandbits(32)

    def next_hop_by_hop(self) -> int:
        """A new hop-by-hop identifier."""
        self._hbh = (self._hbh + 1) & 0xFFFFFFFF
        return self._hbh

    def next_end_to_end(self) -> int:
        """A new end-to-end identifier."""
        self._e2e = (self._e2e + 1) & 0xFFFFFFFF
        return self._e2e
