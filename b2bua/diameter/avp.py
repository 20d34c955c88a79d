"""AVP codec (RFC 6733 section 4).

Wire layout of one AVP (section 4.1)::

    AVP Code (4) | Flags V M P r r r r r (1) | AVP Length (3) | [Vendor-ID (4)] | Data | pad

Decoding is lazy: parsing a message only walks AVP headers and slices the
payload; a value is converted to a Python object on first access, and a
Grouped AVP is split into children on first access.  Every failure along
the way is a :class:`DecodeError` carrying the RFC 6733 Result-Code and the
bytes for Failed-AVP, so arbitrary input can never raise anything else.

Unknown AVPs keep their payload as bytes and re-encode unchanged.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Final, TypeAlias

from b2bua.diameter.dictionary import (
    AVPS_BY_CODE,
    AVPS_BY_NAME,
    DIAMETER_INVALID_AVP_LENGTH,
    DIAMETER_INVALID_AVP_VALUE,
    DIAMETER_UNABLE_TO_COMPLY,
    FLAG_M,
    FLAG_P,
    FLAG_V,
    MIN_SIZE,
    AvpDef,
    AvpType,
)
from b2bua.diameter.errors import DecodeError

__all__ = [
    "FLAG_M",
    "FLAG_P",
    "FLAG_V",
    "MAX_AVPS",
    "MAX_DEPTH",
    "Avp",
    "AvpSpec",
    "decode_avps",
    "make_avp",
    "ntp_to_unix",
    "unix_to_ntp",
]

MAX_DEPTH: Final = 16  # nesting bound for Grouped AVPs
MAX_AVPS: Final = 4096  # AVPs per message, all nesting levels included

_HDR = struct.Struct(">II")  # code, flags<<24 | length
_HDR_V = struct.Struct(">III")  # code, flags<<24 | length, vendor
_U32 = struct.Struct(">I")
_I32 = struct.Struct(">i")
_U64 = struct.Struct(">Q")
_I64 = struct.Struct(">q")
_F32 = struct.Struct(">f")
_F64 = struct.Struct(">d")
_PAD = (b"", b"\0\0\0", b"\0\0", b"\0")  # indexed by len % 4
_MAX_LENGTH = 0xFFFFFF

# RFC 6733 section 4.3.1 Time: NTP seconds since 1900 with the RFC 5905/4330
# era rule - MSB set means 1968..2036, MSB clear means 2036..2104.
NTP_UNIX_OFFSET: Final = 2_208_988_800
_NTP_ERA1: Final = 1 << 32
TIME_MIN_UNIX: Final = 0x80000000 - NTP_UNIX_OFFSET  # 1968-01-20T03:14:08Z
TIME_MAX_UNIX: Final = 0x80000000 + _NTP_ERA1 - NTP_UNIX_OFFSET - 1  # 2104-02-26

# IANA address family numbers used by the Address type (section 4.3.1).
AF_IPV4: Final = 1
AF_IPV6: Final = 2


def ntp_to_unix(seconds: int) -> int:
    """Unix time for a 32-bit NTP seconds field, applying the 2036 rollover."""
    if seconds & 0x80000000:
        return seconds - NTP_UNIX_OFFSET
    return seconds + _NTP_ERA1 - NTP_UNIX_OFFSET


def unix_to_ntp(unix: int) -> int:
    """32-bit NTP seconds for a Unix time in the representable 1968..2104 window."""
    if not TIME_MIN_UNIX <= unix <= TIME_MAX_UNIX:
        raise ValueError(f"time {unix} outside the Diameter Time range (1968..2104)")
    return (unix + NTP_UNIX_OFFSET) & 0xFFFFFFFF


class _Unset:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<unset>"


_UNSET: Final = _Unset()

# --- value decoders: payload bytes -> python value ---------------------------


def _dec_utf8(data: bytes) -> str:
    return data.decode("utf-8")


def _dec_time(data: bytes) -> datetime:
    return datetime.fromtimestamp(ntp_to_unix(_U32.unpack(data)[0]), UTC)


def _dec_address(data: bytes) -> Any:
    if len(data) < 2:
        raise ValueError("Address shorter than its family")
    family = (data[0] << 8) | data[1]
    if family == AF_IPV4:
        if len(data) != 6:
            raise ValueError("IPv4 Address must carry 4 octets")
        return ipaddress.IPv4Address(data[2:])
    if family == AF_IPV6:
        if len(data) != 18:
            raise ValueError("IPv6 Address must carry 16 octets")
        return ipaddress.IPv6Address(data[2:])
    return (family, data[2:])


_DECODERS: dict[AvpType, Callable[[bytes], Any]] = {
    AvpType.OCTET_STRING: bytes,
    AvpType.INTEGER32: lambda d: _I32.unpack(d)[0],
    AvpType.INTEGER64: lambda d: _I64.unpack(d)[0],
    AvpType.UNSIGNED32: lambda d: _U32.unpack(d)[0],
    AvpType.UNSIGNED64: lambda d: _U64.unpack(d)[0],
    AvpType.FLOAT32: lambda d: _F32.unpack(d)[0],
    AvpType.FLOAT64: lambda d: _F64.unpack(d)[0],
    AvpType.ENUMERATED: lambda d: _I32.unpack(d)[0],
    AvpType.TIME: _dec_time,
    AvpType.ADDRESS: _dec_address,
    AvpType.UTF8_STRING: _dec_utf8,
    AvpType.DIAMETER_IDENTITY: _dec_utf8,
    AvpType.DIAMETER_URI: _dec_utf8,
    AvpType.IP_FILTER_RULE: _dec_utf8,
}

# --- value encoders: python value -> payload bytes ---------------------------


def _enc_octets(value: Any) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    return bytes(value)


def _enc_text(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return str(value).encode("utf-8")


def _enc_time(value: Any) -> bytes:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("Time AVP needs an aware datetime")
        value = value.timestamp()
    return _U32.pack(unix_to_ntp(int(value)))


def _enc_address(value: Any) -> bytes:
    if isinstance(value, tuple):
        family, raw = value
        return bytes(((family >> 8) & 0xFF, family & 0xFF)) + bytes(raw)
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    addr = value if not isinstance(value, str) else ipaddress.ip_address(value)
    if isinstance(addr, ipaddress.IPv4Address):
        return b"\x00\x01" + addr.packed
    if isinstance(addr, ipaddress.IPv6Address):
        return b"\x00\x02" + addr.packed
    raise TypeError(f"cannot encode {value!r} as Address")


def _int_packer(fmt: struct.Struct) -> Callable[[Any], bytes]:
    pack = fmt.pack

    def enc(value: Any) -> bytes:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"integer AVP needs an int, got {value!r}")
        try:
            return pack(value)
        except struct.error as exc:
            raise ValueError(f"{value} out of range: {exc}") from None

    return enc


_ENCODERS: dict[AvpType, Callable[[Any], bytes]] = {
    AvpType.OCTET_STRING: _enc_octets,
    AvpType.INTEGER32: _int_packer(_I32),
    AvpType.INTEGER64: _int_packer(_I64),
    AvpType.UNSIGNED32: _int_packer(_U32),
    AvpType.UNSIGNED64: _int_packer(_U64),
    AvpType.FLOAT32: lambda v: _F32.pack(float(v)),
    AvpType.FLOAT64: lambda v: _F64.pack(float(v)),
    AvpType.ENUMERATED: _int_packer(_I32),
    AvpType.TIME: _enc_time,
    AvpType.ADDRESS: _enc_address,
    AvpType.UTF8_STRING: _enc_text,
    AvpType.DIAMETER_IDENTITY: _enc_text,
    AvpType.DIAMETER_URI: _enc_text,
    AvpType.IP_FILTER_RULE: _enc_text,
}


def _header(code: int, flags: int, vendor: int, data_len: int) -> bytes:
    """Header bytes; the vendor field is present iff V is set or vendor != 0."""
    if vendor or flags & FLAG_V:
        length = data_len + 12
        if length > _MAX_LENGTH:
            raise ValueError("AVP longer than 2**24-1 octets")
        return _HDR_V.pack(code, ((flags | FLAG_V) << 24) | length, vendor)
    length = data_len + 8
    if length > _MAX_LENGTH:
        raise ValueError("AVP longer than 2**24-1 octets")
    return _HDR.pack(code, (flags << 24) | length)


def example_avp(defn: AvpDef, flags: int | None = None) -> bytes:
    """Zero-filled AVP of the minimum length for ``defn`` (RFC 6733 7.5, 5005)."""
    data = b"\0" * MIN_SIZE.get(defn.type, 0)
    return _header(defn.code, defn.flags if flags is None else flags, defn.vendor, len(data)) + (
        data + _PAD[len(data) & 3]
    )


def _broken_header(buf: bytes, pos: int, end: int, code: int, flags: int) -> bytes:
    """Failed-AVP content for a lying length (RFC 6733 7.5 / 5014).

    A copy of the offending header (zero-padded if truncated) and a
    zero-filled payload of the minimum size for the type.  The length field
    is rewritten to describe what is actually sent, so the answer stays
    parseable by the peer.
    """
    vendor = 0
    if flags & FLAG_V:
        raw = bytes(buf[pos + 8 : min(pos + 12, end)]).ljust(4, b"\0")
        vendor = _U32.unpack(raw)[0]
    defn = AVPS_BY_CODE.get((code, vendor))
    size = MIN_SIZE.get(defn.type, 0) if defn is not None else 0
    return _header(code, flags, vendor, size) + b"\0" * (size + (-size & 3))


_Ctx: TypeAlias = tuple[int, list[int]]  # (depth of the level, shared AVP budget)


def _length_error(buf: bytes, pos: int, end: int) -> DecodeError:
    """5014 for a header that is truncated or whose length does not fit."""
    if end - pos < 8:
        raw = bytes(buf[pos:end]).ljust(8, b"\0")
        code, word = _HDR.unpack_from(raw, 0)
        failed = _broken_header(raw, 0, 8, code, (word >> 24) & ~FLAG_V)
        return DecodeError(DIAMETER_INVALID_AVP_LENGTH, "truncated AVP header", failed_avp=failed)
    code, word = _HDR.unpack_from(buf, pos)
    return DecodeError(
        DIAMETER_INVALID_AVP_LENGTH,
        f"AVP {code} length {word & 0xFFFFFF} does not fit",
        failed_avp=_broken_header(buf, pos, end, code, word >> 24),
    )


class Level:
    """Incremental header index of one undecoded AVP level.

    A level is a message body or a Grouped payload.  Headers are validated
    and indexed by ``(vendor << 32) | code`` only as far as a look-up needs
    (``full=True`` walks everything at once, as ``decode`` does for the
    top level); only the AVPs asked for become objects, cached in ``found``
    by offset so identities stay stable when the level is later materialised.
    """

    __slots__ = ("buf", "ctx", "end", "found", "index", "pos", "start")

    def __init__(self, buf: bytes, start: int, end: int, ctx: _Ctx, *, full: bool = False) -> None:
        self.buf = buf
        self.start = start
        self.end = end
        self.ctx = ctx
        self.pos = start
        self.found: dict[int, Avp] = {}
        self.index: dict[int, list[int]] = {}
        if full:
            self._scan(-1)

    def _scan(self, want: int) -> None:
        """Index headers from ``self.pos`` until key ``want`` is seen or the end."""
        buf = self.buf
        end = self.end
        pos = self.pos
        index = self.index
        get = index.get
        unpack_hdr = _HDR.unpack_from
        unpack_u32 = _U32.unpack_from
        while pos < end:
            if end - pos < 8:
                raise _length_error(buf, pos, end)
            code, word = unpack_hdr(buf, pos)
            length = word & 0xFFFFFF
            if word & 0x80000000:
                if length < 12 or length > end - pos:
                    raise _length_error(buf, pos, end)
                key = (unpack_u32(buf, pos + 8)[0] << 32) | code
            else:
                if length < 8 or length > end - pos:
                    raise _length_error(buf, pos, end)
                key = code
            offsets = get(key)
            if offsets is None:
                index[key] = [pos]
            else:
                offsets.append(pos)
            pos += (length + 3) & ~3
            if key == want:
                self.pos = pos
                return
        self.pos = end
        budget = self.ctx[1]
        budget[0] -= sum(len(v) for v in index.values())
        if budget[0] < 0:
            raise DecodeError(DIAMETER_UNABLE_TO_COMPLY, "too many AVPs in message")

    def lookup(self, code: int, vendor: int, first_only: bool) -> list[Avp]:
        """AVPs with that code and vendor, in message order."""
        key = (vendor << 32) | code
        offsets = self.index.get(key)
        if self.pos < self.end and (offsets is None or not first_only):
            self._scan(key if first_only else -1)
            offsets = self.index.get(key)
        if not offsets:
            return []
        found = self.found
        out: list[Avp] = []
        for pos in offsets:
            avp = found.get(pos)
            if avp is None:
                avp = found[pos] = _avp_at(self.buf, pos, self.ctx)
            out.append(avp)
            if first_only:
                break
        return out

    def materialize(self) -> list[Avp]:
        """Every AVP of the level, reusing objects already handed out."""
        charge = self.pos < self.end
        return decode_avps(self.buf, self.start, self.end, self.ctx, self.found, charge=charge)


def _avp_at(buf: bytes, pos: int, ctx: _Ctx) -> Avp:
    """Object for the (already validated) AVP header at ``pos``."""
    code, word = _HDR.unpack_from(buf, pos)
    length = word & 0xFFFFFF
    avp = Avp.__new__(Avp)
    avp.code = code
    if word & 0x80000000:
        vendor = _U32.unpack_from(buf, pos + 8)[0]
        avp._data = buf[pos + 12 : pos + length]
    else:
        vendor = 0
        avp._data = buf[pos + 8 : pos + length]
    avp.vendor = vendor
    avp.flags = word >> 24
    avp.defn = AVPS_BY_CODE.get((code, vendor))
    avp._value = _UNSET
    avp._ctx = ctx
    avp._level = None
    return avp


def decode_avps(
    buf: bytes,
    pos: int,
    end: int,
    ctx: _Ctx,
    found: dict[int, Avp] | None = None,
    *,
    charge: bool = True,
) -> list[Avp]:
    """Split ``buf[pos:end]`` into AVPs, validating every header length.

    ``ctx`` carries the nesting depth and the per-message AVP budget so that
    lazily decoded groups still respect :data:`MAX_DEPTH` and
    :data:`MAX_AVPS`.  Objects already handed out by a lazy look-up (keyed
    by offset in ``found``) are reused so their identity stays stable.
    """
    out: list[Avp] = []
    append = out.append
    unpack_hdr = _HDR.unpack_from
    lookup = AVPS_BY_CODE.get
    new = Avp.__new__
    unset = _UNSET
    while pos < end:
        if end - pos < 8:
            raise _length_error(buf, pos, end)
        code, word = unpack_hdr(buf, pos)
        length = word & 0xFFFFFF
        if word & 0x80000000:
            if length < 12 or length > end - pos:
                raise _length_error(buf, pos, end)
            vendor = _U32.unpack_from(buf, pos + 8)[0]
            hlen = 12
        else:
            if length < 8 or length > end - pos:
                raise _length_error(buf, pos, end)
            vendor = 0
            hlen = 8
        avp = found.get(pos) if found else None
        if avp is None:
            avp = new(Avp)
            avp.code = code
            avp.vendor = vendor
            avp.flags = word >> 24
            avp.defn = lookup((code, vendor))
            avp._data = buf[pos + hlen : pos + length]
            avp._value = unset
            avp._ctx = ctx
            avp._level = None
        append(avp)
        pos += (length + 3) & ~3
    if charge:
        budget = ctx[1]
        budget[0] -= len(out)
        if budget[0] < 0:
            raise DecodeError(DIAMETER_UNABLE_TO_COMPLY, "too many AVPs in message")
    return out


def encode_avps_into(avps: Iterable[Avp], out: bytearray) -> None:
    """Append the wire form of ``avps`` to ``out`` in one pass.

    Grouped AVPs get a placeholder header patched once their children are
    written, so nothing is joined twice.
    """
    for a in avps:
        data = a._data
        if data is None or (a._level is not None and a._level.found):
            value = a._value if data is None else a._materialize()
            if type(value) is list:
                code = a.code
                flags = a.flags
                vendor = a.vendor
                at = len(out)
                if vendor or flags & FLAG_V:
                    out += _ZERO12
                    encode_avps_into(value, out)
                    length = len(out) - at
                    if length > _MAX_LENGTH:
                        raise ValueError("AVP longer than 2**24-1 octets")
                    _HDR_V.pack_into(out, at, code, ((flags | FLAG_V) << 24) | length, vendor)
                else:
                    out += _ZERO8
                    encode_avps_into(value, out)
                    length = len(out) - at
                    if length > _MAX_LENGTH:
                        raise ValueError("AVP longer than 2**24-1 octets")
                    _HDR.pack_into(out, at, code, (flags << 24) | length)
                continue
            value = a._value
            typ = a.defn.type if a.defn is not None else None
            kind = type(value)
            if kind is str and typ in _TEXT_TYPES:
                data = a._data = value.encode()
            elif kind is int and typ in _U32_TYPES and 0 <= value <= 0xFFFFFFFF:
                data = a._data = _U32.pack(value)
            else:
                data = a._encode_data()
        n = len(data)
        flags = a.flags
        vendor = a.vendor
        if n > 0xFFFFF0:
            raise ValueError("AVP longer than 2**24-1 octets")
        if vendor or flags & FLAG_V:
            out += _HDR_V.pack(a.code, ((flags | FLAG_V) << 24) | (n + 12), vendor)
        else:
            out += _HDR.pack(a.code, (flags << 24) | (n + 8))
        out += data
        if n & 3:
            out += _PAD[n & 3]


_TEXT_TYPES = frozenset(
    {AvpType.UTF8_STRING, AvpType.DIAMETER_IDENTITY, AvpType.DIAMETER_URI, AvpType.IP_FILTER_RULE}
)
_U32_TYPES = frozenset({AvpType.UNSIGNED32})
_ZERO8 = bytes(8)
_ZERO12 = bytes(12)


AvpSpec: TypeAlias = "Avp | tuple[str, Any] | tuple[str, Any, int]"


class Avp:
    """One AVP: header fields plus a lazily decoded value.

    ``value`` is the Python form: ``int`` for integer and Enumerated types,
    ``float``, ``str`` for UTF8String / DiameterIdentity / DiameterURI,
    ``bytes`` for OctetString and unknown AVPs, ``datetime`` (UTC) for Time,
    ``IPv4Address``/``IPv6Address`` (or ``(family, bytes)``) for Address and
    ``list[Avp]`` for Grouped.  A decoded Grouped AVP answers ``find`` by
    scanning its payload; the child list is only built when asked for.
    """

    __slots__ = ("_ctx", "_data", "_level", "_value", "code", "defn", "flags", "vendor")

    code: int
    vendor: int
    flags: int
    defn: AvpDef | None
    _data: bytes | None
    _value: Any
    _ctx: _Ctx | None
    _level: Level | None

    def __init__(
        self,
        code: int,
        value: Any = _UNSET,
        *,
        vendor: int = 0,
        flags: int | None = None,
        data: bytes | None = None,
    ) -> None:
        """Build an AVP by code; give either a Python ``value`` or raw ``data``."""
        self.code = code
        self.vendor = vendor
        self.defn = AVPS_BY_CODE.get((code, vendor))
        if flags is None:
            flags = self.defn.flags if self.defn is not None else (FLAG_V if vendor else 0)
        self.flags = flags
        self._ctx = None
        self._level = None
        if data is not None:
            self._data = bytes(data)
            self._value = _UNSET
        elif value is _UNSET:
            raise TypeError("Avp needs a value or data")
        else:
            self._data = None
            self._value = _coerce_value(self.defn, value)

    @classmethod
    def new(cls, name: str, value: Any, flags: int | None = None) -> Avp:
        """Build an AVP by dictionary name; flags default to the dictionary rule."""
        defn = AVPS_BY_NAME[name]
        return cls(defn.code, value, vendor=defn.vendor, flags=flags)

    # -- flags ---------------------------------------------------------------
    @property
    def mandatory(self) -> bool:
        """'M' bit (RFC 6733 4.1)."""
        return bool(self.flags & FLAG_M)

    @property
    def vendor_specific(self) -> bool:
        """'V' bit: a Vendor-ID field is present."""
        return bool(self.flags & FLAG_V) or self.vendor != 0

    @property
    def protected(self) -> bool:
        """'P' bit (deprecated by RFC 6733, kept for round-trips)."""
        return bool(self.flags & FLAG_P)

    @property
    def name(self) -> str:
        """Dictionary name, or ``"Unknown-<vendor>-<code>"``."""
        defn = self.defn
        return defn.name if defn is not None else f"Unknown-{self.vendor}-{self.code}"

    @property
    def is_grouped(self) -> bool:
        """True when the dictionary types this AVP as Grouped."""
        defn = self.defn
        return defn is not None and defn.type is AvpType.GROUPED

    # -- value ---------------------------------------------------------------
    @property
    def value(self) -> Any:
        """Decoded value; raises DecodeError (5004/5014/...) on a malformed payload."""
        value = self._value
        if value is _UNSET:
            value = self._decode()
        return value

    @value.setter
    def value(self, value: Any) -> None:
        self._value = _coerce_value(self.defn, value)
        self._data = None
        self._level = None

    @property
    def children(self) -> list[Avp]:
        """Child AVPs of a Grouped AVP (ValueError for other types)."""
        if not self.is_grouped:
            raise ValueError(f"{self.name} is not Grouped")
        children: list[Avp] = self.value
        return children

    def _decode(self) -> Any:
        defn = self.defn
        data = self._data
        assert data is not None
        if defn is None:
            self._value = data
            return data
        typ = defn.type
        if typ is AvpType.GROUPED:
            return self._materialize()
        size = defn.fixed_size
        if size is not None and len(data) != size:
            raise DecodeError(
                DIAMETER_INVALID_AVP_LENGTH,
                f"{defn.name}: {len(data)} octets, type needs {size}",
                failed_avp=self.encode(),
                avp=self,
            )
        try:
            value = _DECODERS[typ](data)
        except (ValueError, struct.error, OverflowError, OSError) as exc:
            raise DecodeError(
                DIAMETER_INVALID_AVP_VALUE,
                f"{defn.name}: {exc}",
                failed_avp=self.encode(),
                avp=self,
            ) from None
        self._value = value
        return value

    def _child_ctx(self) -> _Ctx:
        ctx = self._ctx
        depth = ctx[0] + 1 if ctx is not None else 1
        if depth > MAX_DEPTH:
            raise DecodeError(
                DIAMETER_UNABLE_TO_COMPLY,
                "Grouped AVPs nested too deeply",
                failed_avp=_header(self.code, self.flags, self.vendor, 0),
                avp=self,
            )
        return (depth, ctx[1] if ctx is not None else [MAX_AVPS])

    def _materialize(self) -> list[Avp]:
        data = self._data
        if data is None:
            children: list[Avp] = self._value
            return children
        try:
            level = self._level
            if level is not None:
                children = level.materialize()
            else:
                children = decode_avps(data, 0, len(data), self._child_ctx())
        except DecodeError as exc:
            raise self.wrap_error(exc) from None
        # The list is mutable: from now on the payload is rebuilt from it.
        self._value = children
        self._data = None
        self._level = None
        return children

    def wrap_error(self, exc: DecodeError) -> DecodeError:
        """Nest a child's Failed-AVP inside this group (RFC 6733 7.5 hierarchy)."""
        if exc.failed_avp is not None:
            inner = exc.failed_avp
            exc.failed_avp = _header(self.code, self.flags, self.vendor, len(inner)) + inner
        return exc

    @property
    def data(self) -> bytes:
        """Payload bytes (no header, no padding)."""
        data = self._data
        level = self._level
        if data is not None and not (level is not None and level.found):
            return data
        if data is not None:
            self._materialize()
        value = self._value
        if isinstance(value, list):
            out = bytearray()
            encode_avps_into(value, out)
            return bytes(out)
        return self._encode_data()

    def _encode_data(self) -> bytes:
        value = self._value
        if isinstance(value, list):
            out = bytearray()
            encode_avps_into(value, out)
            return bytes(out)
        defn = self.defn
        data = bytes(value) if defn is None else _ENCODERS[defn.type](value)
        self._data = data
        return data

    def encode(self) -> bytes:
        """Wire bytes: header, payload and zero padding to a 4-octet boundary."""
        out = bytearray()
        encode_avps_into((self,), out)
        return bytes(out)

    # -- grouped helpers -----------------------------------------------------
    def _lookup(self, name: str, first_only: bool) -> list[Avp]:
        code, vendor = AVPS_BY_NAME[name].key
        value = self._value
        if value is _UNSET:
            level = self._level
            if level is None:
                if not self.is_grouped:
                    raise ValueError(f"{self.name} is not Grouped")
                data = self._data
                assert data is not None
                try:
                    level = self._level = Level(data, 0, len(data), self._child_ctx())
                except DecodeError as exc:
                    raise self.wrap_error(exc) from None
            return level.lookup(code, vendor, first_only)
        if not isinstance(value, list):
            raise ValueError(f"{self.name} is not Grouped")
        return [a for a in value if a.code == code and a.vendor == vendor]

    def find(self, name: str) -> Avp | None:
        """First child with that dictionary name, or None."""
        hits = self._lookup(name, True)
        return hits[0] if hits else None

    def find_all(self, name: str) -> list[Avp]:
        """All children with that dictionary name."""
        return self._lookup(name, False)

    def get(self, name: str, default: Any = None) -> Any:
        """Value of the first child with that name, or ``default``."""
        hits = self._lookup(name, True)
        return hits[0].value if hits else default

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Avp):
            return NotImplemented
        return (
            self.code == other.code
            and self.vendor == other.vendor
            and (self.flags | (FLAG_V if self.vendor else 0))
            == (other.flags | (FLAG_V if other.vendor else 0))
            and self.data == other.data
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        try:
            shown = self.value
        except DecodeError:
            shown = self._data
        return f"Avp({self.name}, {shown!r})"


def find_first(avps: Sequence[Avp], name: str) -> Avp | None:
    """First AVP in ``avps`` matching the dictionary name."""
    code, vendor = AVPS_BY_NAME[name].key
    for avp in avps:
        if avp.code == code and avp.vendor == vendor:
            return avp
    return None


def find_every(avps: Sequence[Avp], name: str) -> list[Avp]:
    """All AVPs in ``avps`` matching the dictionary name."""
    code, vendor = AVPS_BY_NAME[name].key
    return [a for a in avps if a.code == code and a.vendor == vendor]


def _coerce_value(defn: AvpDef | None, value: Any) -> Any:
    """Normalise builder input: specs for Grouped, labels for Enumerated."""
    if defn is None:
        if isinstance(value, list):
            return [make_avp(v) for v in value]
        return value
    typ = defn.type
    if typ is AvpType.GROUPED:
        if not isinstance(value, list | tuple):
            raise TypeError(f"{defn.name} is Grouped; give a list of AVPs")
        return [make_avp(v) for v in value]
    if typ is AvpType.ENUMERATED and isinstance(value, str):
        return defn.enum_value(value)
    return value


def make_avp(spec: Any) -> Avp:
    """Build an AVP from ``Avp`` | ``(name, value)`` | ``(name, value, flags)``.

    What ``Avp.new`` does, without its two extra calls: a CCR is ~40 of these, built
    twice per call (most of what building one costs).
    """
    if isinstance(spec, Avp):
        return spec
    if len(spec) == 2:
        name, value = spec
        flags = None
    else:
        name, value, flags = spec
    named = AVPS_BY_NAME[name]
    code = named.code
    vendor = named.vendor
    defn = AVPS_BY_CODE.get((code, vendor))
    avp = Avp.__new__(Avp)
    avp.code = code
    avp.vendor = vendor
    avp.defn = defn
    if flags is None:
        flags = defn.flags if defn is not None else (FLAG_V if vendor else 0)
    avp.flags = flags
    avp._ctx = None
    avp._level = None
    avp._data = None
    avp._value = _coerce_value(defn, value)
    return avp


def make_avps(specs: Iterable[Any]) -> list[Avp]:
    """Build a list of AVPs from builder specs."""
    return [make_avp(s) for s in specs]
