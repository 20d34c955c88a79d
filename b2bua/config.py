"""Configuration: one INI file, validated completely before anything binds.

Each section is a frozen dataclass; each of its fields carries, in its metadata, the
`Kind` that parses and checks the raw text and a one-line reason. That one declaration
is the schema: the validator walks it, and the tests check that ``conf/b2bua.conf`` and
``man/b2bua.conf.5`` name exactly the parameters it declares. Kamailio's ims_charging
parameters keep their names and defaults.

Problems are collected, not raised one at a time: an operator fixing a file sees every
mistake in one run, each as one line naming the file, line, section, key and what was
expected.
"""

from __future__ import annotations

import configparser
import difflib
import ipaddress
import math
import os
import re
import urllib.parse
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar

from b2bua.ocs.rating import Rating, Tariff, UnitKind

if TYPE_CHECKING:
    from b2bua.charging.messages import RoSettings
    from b2bua.charging.session import ChargingConfig

__all__ = [
    "CallSettings",
    "ChargingSettings",
    "Config",
    "ConfigError",
    "DiameterSettings",
    "DiameterUri",
    "ListenAddress",
    "LogSettings",
    "ManholeSettings",
    "OcsSettings",
    "PeerSettings",
    "Rates",
    "RedisUrl",
    "RouteSettings",
    "SipSettings",
    "StoreSettings",
    "load_config",
    "parse_config_text",
    "schema",
]


class ConfigError(Exception):
    """The configuration is unusable; `problems` holds one readable line per mistake."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


# -- kinds: how one raw value is parsed and what the operator is told when it is wrong --


class Kind(ABC):
    """Parses a raw string into a typed value or raises ValueError(what was expected)."""

    @property
    @abstractmethod
    def expected(self) -> str:
        """What a valid value looks like, in words for the operator."""

    @abstractmethod
    def parse(self, raw: str) -> Any:
        """The typed value of `raw`; ValueError(expected) when it is not valid."""


@dataclass(frozen=True)
class Integer(Kind):
    minimum: int | None = None
    maximum: int | None = None

    @property
    def expected(self) -> str:
        if self.minimum is not None and self.maximum is not None:
            return f"an integer from {self.minimum} to {self.maximum}"
        if self.minimum is not None:
            return f"an integer >= {self.minimum}"
        return "an integer"

    def parse(self, raw: str) -> int:
        try:
            value = int(raw, 10)
        except ValueError:
            raise ValueError(self.expected) from None
        if (self.minimum is not None and value < self.minimum) or (
            self.maximum is not None and value > self.maximum
        ):
            raise ValueError(self.expected)
        return value


@dataclass(frozen=True)
class Number(Kind):
    """A decimal number, e.g. seconds with a fraction."""

    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False

    @property
    def expected(self) -> str:
        low = ">" if self.exclusive_minimum else ">="
        if self.minimum is not None and self.maximum is not None:
            return f"a number {low} {self.minimum:g} and <= {self.maximum:g}"
        if self.minimum is not None:
            return f"a number {low} {self.minimum:g}"
        return "a number"

    def parse(self, raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(self.expected) from None
        if not math.isfinite(value):
            raise ValueError(self.expected)
        if self.minimum is not None and (
            value < self.minimum or (self.exclusive_minimum and value == self.minimum)
        ):
            raise ValueError(self.expected)
        if self.maximum is not None and value > self.maximum:
            raise ValueError(self.expected)
        return value


_TRUE = {"1", "yes", "true", "on"}
_FALSE = {"0", "no", "false", "off"}


@dataclass(frozen=True)
class Boolean(Kind):
    @property
    def expected(self) -> str:
        return "a boolean (yes/no, true/false, on/off, 1/0)"

    def parse(self, raw: str) -> bool:
        word = raw.lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise ValueError(self.expected)


@dataclass(frozen=True)
class Text(Kind):
    """Free text; `pattern` restricts it when the protocol does (e.g. a DiameterIdentity)."""

    pattern: str | None = None
    description: str = "text"

    @property
    def expected(self) -> str:
        return self.description

    def parse(self, raw: str) -> str:
        if self.pattern is not None and raw and not re.fullmatch(self.pattern, raw):
            raise ValueError(self.expected)
        return raw


@dataclass(frozen=True)
class Choice(Kind):
    choices: tuple[str, ...] = ()

    @property
    def expected(self) -> str:
        return "one of " + ", ".join(self.choices)

    def parse(self, raw: str) -> str:
        word = raw.lower()
        if word not in self.choices:
            raise ValueError(self.expected)
        return word


@dataclass(frozen=True)
class ReadableFile(Kind):
    """A path that must name a readable file when set; empty means unset."""

    @property
    def expected(self) -> str:
        return "the path of a readable file"

    def parse(self, raw: str) -> str:
        if raw and not (os.path.isfile(raw) and os.access(raw, os.R_OK)):
            raise ValueError(f"{self.expected} (cannot read {raw!r})")
        return raw


@dataclass(frozen=True, slots=True)
class ListenAddress:
    """One SIP listening socket: transport, IP literal and port."""

    transport: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}:{host}:{self.port}"


_LISTEN_RE = re.compile(r"(udp|tcp|tls):(\[[0-9A-Fa-f:.]+\]|[0-9.]+):(\d+)")


@dataclass(frozen=True)
class ListenList(Kind):
    """Comma-separated ``transport:address:port`` items, e.g. ``udp:127.0.0.1:5060``."""

    @property
    def expected(self) -> str:
        return (
            "a comma-separated list of transport:address:port with transport udp, tcp or tls "
            "and an IP address (IPv6 in brackets), e.g. udp:127.0.0.1:5060"
        )

    def parse(self, raw: str) -> tuple[ListenAddress, ...]:
        items = [item.strip() for item in raw.split(",") if item.strip()]
        if not items:
            raise ValueError(self.expected)
        result = []
        for item in items:
            match = _LISTEN_RE.fullmatch(item.lower())
            if match is None:
                raise ValueError(f"{self.expected}; {item!r} is not")
            transport, host, port_text = match.groups()
            host = host.strip("[]")
            try:
                ipaddress.ip_address(host)
            except ValueError:
                raise ValueError(f"{self.expected}; {host!r} is not an IP address") from None
            port = int(port_text)
            if not 0 < port < 65536:
                raise ValueError(f"{self.expected}; port {port} is out of range")
            result.append(ListenAddress(transport, host, port))
        return tuple(result)


@dataclass(frozen=True, slots=True)
class DiameterUri:
    """A Diameter peer or listener address (RFC 6733 4.3.1): TCP, or TLS for ``aaas``."""

    tls: bool
    host: str
    port: int

    @property
    def host_is_ip(self) -> bool:
        """True when `host` is an IP literal rather than a name."""
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'aaas' if self.tls else 'aaa'}://{host}:{self.port}"


DIAMETER_PORT = 3868  # RFC 6733 11.2: aaa:// over TCP
DIAMETER_TLS_PORT = 5658  # RFC 6733 11.2: aaas:// (TLS from the first octet)
_DIAMETER_URI_RE = re.compile(
    r"(aaas?)://(\[[0-9a-f:.]+\]|[a-z0-9.-]+)(?::(\d+))?((?:;[a-z]+=[a-z0-9]+)*)"
)
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
_DIAMETER_IDENTITY = rf"{_LABEL}(\.{_LABEL})*"


@dataclass(frozen=True)
class DiameterUriKind(Kind):
    """``aaa://host[:port]`` or ``aaas://host[:port]``; ``;transport=tcp`` is accepted."""

    ip_only: bool = False

    @property
    def expected(self) -> str:
        host = "IP address (IPv6 in brackets)" if self.ip_only else "host name or IP address"
        return (
            f"aaa://HOST:PORT (TCP) or aaas://HOST:PORT (TLS) with a {host}, "
            "e.g. aaa://127.0.0.1:3868"
        )

    def parse(self, raw: str) -> DiameterUri:
        match = _DIAMETER_URI_RE.fullmatch(raw.strip().lower())
        if match is None:
            raise ValueError(self.expected)
        scheme, host, port_text, params = match.groups()
        for item in filter(None, params.split(";")):
            key, _, value = item.partition("=")
            if (key, value) not in (("transport", "tcp"), ("protocol", "diameter")):
                raise ValueError(f"{self.expected}; only ;transport=tcp is supported")
        tls = scheme == "aaas"
        port = int(port_text) if port_text else (DIAMETER_TLS_PORT if tls else DIAMETER_PORT)
        if not 0 < port < 65536:
            raise ValueError(f"{self.expected}; port {port} is out of range")
        bracketed = host.startswith("[")
        host = host.strip("[]")
        uri = DiameterUri(tls, host, port)
        if (bracketed or self.ip_only) and not uri.host_is_ip:
            raise ValueError(f"{self.expected}; {host!r} is not an IP address")
        if not uri.host_is_ip and not re.fullmatch(_DIAMETER_IDENTITY, host):
            raise ValueError(f"{self.expected}; {host!r} is not a host name")
        return uri


@dataclass(frozen=True)
class DiameterUriList(Kind):
    """Comma-separated listener URIs with IP addresses; empty means none."""

    @property
    def expected(self) -> str:
        return "a comma-separated list of " + DiameterUriKind(ip_only=True).expected

    def parse(self, raw: str) -> tuple[DiameterUri, ...]:
        item_kind = DiameterUriKind(ip_only=True)
        result = []
        for item in (item.strip() for item in raw.split(",")):
            if not item:
                continue
            try:
                result.append(item_kind.parse(item))
            except ValueError as err:
                raise ValueError(f"{err}; {item!r} is not") from None
        return tuple(result)


def param(kind: Kind, default: Any, why: str) -> Any:
    """Declare one configuration parameter (a dataclass field with its schema)."""
    if isinstance(default, list):
        raise TypeError("use tuples for list defaults")
    return field(default=default, metadata={"kind": kind, "why": why})


def required_param(kind: Kind, why: str) -> Any:
    """Declare a parameter the file must set (declare these before those with defaults)."""
    return field(metadata={"kind": kind, "why": why, "required": True})


def section_name() -> Any:
    """The NAME of a named section such as ``[peer:NAME]``; set from the header, not a key."""
    return field(default="")


# -- sections --


@dataclass(frozen=True)
class SipSettings:
    """[sip]: listening sockets and RFC 3261 transaction timers."""

    SECTION: ClassVar[str] = "sip"

    listen: tuple[ListenAddress, ...] = param(
        ListenList(),
        (ListenAddress("udp", "127.0.0.1", 5060),),
        "where SIP is received; the SBC sends here",
    )
    t1: float = param(
        Number(0.0, 60.0, exclusive_minimum=True), 0.5, "RFC 3261 T1, RTT estimate (s)"
    )
    t2: float = param(
        Number(0.0, 600.0, exclusive_minimum=True),
        4.0,
        "RFC 3261 T2, longest retransmit interval for non-INVITE requests (s)",
    )
    t4: float = param(
        Number(0.0, 600.0, exclusive_minimum=True),
        5.0,
        "RFC 3261 T4, how long a message may stay in the network (s)",
    )
    max_message_size: int = param(
        Integer(1024, 1048576), 65536, "larger SIP messages are refused (bytes)"
    )
    tcp_idle_timeout: float = param(
        Number(1.0, 86400.0),
        600.0,
        "TCP/TLS connections without traffic this long are closed (s)",
    )
    tls_certificate: str = param(
        ReadableFile(), "", "PEM certificate chain presented on tls: listeners"
    )
    tls_private_key: str = param(ReadableFile(), "", "PEM private key of tls_certificate")
    tls_ca_certificates: str = param(
        ReadableFile(), "", "PEM CA bundle used to verify TLS peers (empty: system CAs)"
    )
    tls_require_client_certificate: bool = param(
        Boolean(), False, "refuse TLS clients (the SBC) that present no valid certificate"
    )


@dataclass(frozen=True)
class LogSettings:
    """[log]: what twisted.logger writes."""

    SECTION: ClassVar[str] = "log"

    level: str = param(
        Choice(("debug", "info", "warn", "error", "critical")),
        "info",
        "least severe level written; per-packet lines are debug",
    )
    format: str = param(
        Choice(("text", "json")),
        "text",
        "text: twistd's lines; json: one JSON object per line for log shippers",
    )


_IDENTITY = Text(_DIAMETER_IDENTITY, "a DiameterIdentity (a host name such as ocs1.example.net)")
_REALM = Text(_DIAMETER_IDENTITY, "a Diameter realm (a domain name such as example.net)")


@dataclass(frozen=True)
class DiameterSettings:
    """[diameter]: this node's Diameter identity, routing defaults, timers and TLS."""

    SECTION: ClassVar[str] = "diameter"

    origin_host: str = param(
        _IDENTITY, "", "this node's Origin-Host; empty: the machine's fully qualified name"
    )
    origin_realm: str = param(
        _REALM, "", "this node's Origin-Realm; empty: origin_host without its first label"
    )
    destination_realm: str = param(
        _REALM, "", "Destination-Realm of credit-control requests; empty: origin_realm"
    )
    destination_host: str = param(
        _IDENTITY, "", "Destination-Host of initial credit-control requests; empty: none"
    )
    ro_forced_peer: str = param(
        Text(r"[A-Za-z0-9_.-]+", "a [peer:NAME] name or a peer's host"),
        "",
        "send every request to this peer (NAME or host), bypassing realm routing",
    )
    cdp_event_latency: bool = param(Boolean(), True, "log answers slower than cdp_event_threshold")
    cdp_event_threshold: int = param(
        Integer(0, 3600000), 500, "answer latency that is logged (milliseconds)"
    )
    cdp_event_latency_log: int = param(
        Integer(-1, 3),
        0,
        "level of those lines, Kamailio's numbers: -1 error, 0 warn, 1 and 2 info, 3 debug",
    )
    tx_timeout: float = param(
        Number(0.0, 300.0, exclusive_minimum=True),
        10.0,
        "RFC 4006 Tx: a request without an answer after this fails (s)",
    )
    watchdog_interval: float = param(
        Number(6.0, 3600.0), 30.0, "RFC 3539 Tw: idle time before a DWR is sent (s)"
    )
    reconnect_interval: float = param(
        Number(0.0, 3600.0, exclusive_minimum=True),
        30.0,
        "RFC 6733 Tc: wait between connection attempts to a peer (s)",
    )
    listen: tuple[DiameterUri, ...] = param(
        DiameterUriList(), (), "where peers with accept_incoming may connect; empty: nowhere"
    )
    tls_certificate: str = param(
        ReadableFile(), "", "PEM certificate chain for aaas:// peers and listeners"
    )
    tls_private_key: str = param(ReadableFile(), "", "PEM private key of tls_certificate")
    tls_ca_certificates: str = param(
        ReadableFile(), "", "PEM CA bundle that verifies TLS peers (empty: system CAs)"
    )
    tls_require_client_certificate: bool = param(
        Boolean(), True, "aaas:// listeners refuse peers without a valid certificate"
    )


@dataclass(frozen=True, kw_only=True)
class PeerSettings:
    """[peer:NAME]: one Diameter peer (an OCS or a Diameter agent in front of OCSs)."""

    SECTION: ClassVar[str] = "peer"
    CONFIG_FIELD: ClassVar[str] = "peers"

    name: str = section_name()
    uri: DiameterUri = required_param(  # noqa: RUF009 - a field() declaration, no default
        DiameterUriKind(), "where to connect: aaa://host:port (TCP) or aaas://host:port (TLS)"
    )
    priority: int = param(
        Integer(0, 65535), 1, "lower is preferred; equal priorities share the requests"
    )
    realm: str = param(_REALM, "", "the realm this peer serves; empty: any realm")
    host: str = param(
        _IDENTITY, "", "expected Origin-Host of the peer; empty: the host of uri if a name"
    )
    accept_incoming: bool = param(
        Boolean(), False, "let this peer connect to us (listen) and send RAR/ASR"
    )


# -- [ocs]: the lab online charging system --


@dataclass(frozen=True, slots=True)
class RedisUrl:
    """Where a Redis server is: ``redis[s]://[[user]:password@]host[:port][/db]``.

    Printed with the password masked, so that it can be logged.
    """

    host: str
    port: int = 6379
    db: int = 0
    password: str | None = field(default=None, repr=False)  # never in a log line
    username: str | None = None  # a Redis 6 ACL user (AUTH user password)
    tls: bool = False  # rediss://: TLS with certificate verification

    def __str__(self) -> str:
        auth = f"{self.username or ''}:***@" if self.password else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{auth}{host}:{self.port}/{self.db}"


_REDIS_URL_RE = re.compile(
    r"(?P<scheme>rediss?)://(?:(?P<user>[^:@/]*):(?P<password>[^@]*)@)?"
    r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::(?P<port>\d+))?(?:/(?P<db>\d+))?"
)


@dataclass(frozen=True)
class RedisUrlKind(Kind):
    """``redis://[:password@]host[:port][/db]``; with `secure`, also rediss:// and a user."""

    secure: bool = False

    @property
    def expected(self) -> str:
        if self.secure:
            return (
                "redis[s]://[[user]:password@]host[:port][/db], "
                "e.g. rediss://b2bua:secret@redis.example.net:6380/0"
            )
        return "redis://[:password@]host[:port][/db], e.g. redis://127.0.0.1:6379/0"

    def parse(self, raw: str) -> RedisUrl:
        match = _REDIS_URL_RE.fullmatch(raw)
        tls = match is not None and match["scheme"] == "rediss"
        if match is None or (not self.secure and (tls or match["user"])):
            raise ValueError(self.expected)
        port = int(match["port"] or 6379)
        db = int(match["db"] or 0)
        if not 0 < port < 65536 or db > 65535:
            raise ValueError(f"{self.expected}; port or database number out of range")
        password = match["password"] or None
        username = match["user"] or None
        if self.secure:  # percent-escapes let a password hold ':', '@' or '/'
            password = urllib.parse.unquote(password) if password else None
            username = urllib.parse.unquote(username) if username else None
        return RedisUrl(match["host"].strip("[]"), port, db, password, username, tls)


@dataclass(frozen=True)
class WritableFile(Kind):
    """A file that can be created or appended to, in an existing directory; empty: none."""

    @property
    def expected(self) -> str:
        return "the path of a writable file in an existing directory"

    def parse(self, raw: str) -> str:
        if not raw:
            return raw
        directory = os.path.dirname(os.path.abspath(raw))
        if os.path.isdir(raw) or not os.path.isdir(directory):
            raise ValueError(f"{self.expected} (no directory for {raw!r})")
        target = raw if os.path.exists(raw) else directory
        if not os.access(target, os.W_OK):
            raise ValueError(f"{self.expected} (cannot write {raw!r})")
        return raw


@dataclass(frozen=True)
class Rates(Rating):
    """The tariff table of ``[ocs] rates``; prints back in the configuration syntax."""

    def __str__(self) -> str:
        return ", ".join(
            f"{rating_group}:{tariff.rate}:{tariff.kind.value}:{tariff.default_units}"
            for rating_group, tariff in self.tariffs.items()
        )


@dataclass(frozen=True)
class RatesKind(Kind):
    """Tariffs: ``RATING_GROUP:RATE[:KIND[:DEFAULT_UNITS]]``, comma-separated."""

    @property
    def expected(self) -> str:
        return (
            "a comma-separated list of rating_group:rate[:kind[:default_units]] with kind "
            "seconds or events, e.g. 100:1, 200:2, 300:1:events"
        )

    def parse(self, raw: str) -> Rates:
        tariffs: dict[int, Tariff] = {}
        for item in (item.strip() for item in raw.split(",")):
            if not item:
                continue
            parts = [part.strip() for part in item.split(":")]
            numbers = [parts[0], parts[1] if len(parts) > 1 else ""]
            if len(parts) == 4:
                numbers.append(parts[3])
            if not 2 <= len(parts) <= 4 or not all(p.isdigit() for p in numbers):
                raise ValueError(f"{self.expected}; {item!r} is not")
            kind = parts[2].lower() if len(parts) > 2 else UnitKind.SECONDS.value
            if kind not in {k.value for k in UnitKind}:
                raise ValueError(f"{self.expected}; {kind!r} is not a kind")
            rating_group = int(parts[0])
            if rating_group in tariffs or rating_group >= 2**32:
                raise ValueError(
                    f"{self.expected}; rating group {rating_group} repeated or too big"
                )
            default_units = int(parts[3]) if len(parts) == 4 else (30 if kind == "seconds" else 1)
            tariffs[rating_group] = Tariff(UnitKind(kind), int(parts[1]), default_units)
        if not tariffs:
            raise ValueError(self.expected)
        return Rates(tariffs)


@dataclass(frozen=True)
class TcpListenUriKind(DiameterUriKind):
    """``aaa://ADDRESS[:PORT]``: a Diameter TCP listener on an IP address (no TLS)."""

    ip_only: bool = True

    @property
    def expected(self) -> str:
        return "aaa://ADDRESS:PORT with an IP address (IPv6 in brackets), e.g. aaa://127.0.0.1:3868"

    def parse(self, raw: str) -> DiameterUri:
        uri = super().parse(raw)
        if uri.tls:
            raise ValueError(f"{self.expected}; aaas:// (TLS) is not supported here")
        return uri


@dataclass(frozen=True)
class OcsSettings:
    """[ocs]: the lab online charging system (``twistd ocs``, or inside ``twistd b2bua``)."""

    SECTION: ClassVar[str] = "ocs"

    enabled: bool = param(
        Boolean(), False, "also run the lab OCS inside twistd b2bua (a lab, not production)"
    )
    listen: DiameterUri = param(  # noqa: RUF009 - param() makes a field; the default is frozen
        TcpListenUriKind(),
        DiameterUri(False, "127.0.0.1", 3868),
        "where b2bua clients connect to the OCS (aaa:// only, TCP)",
    )
    origin_host: str = param(_IDENTITY, "ocs.lab.example", "the OCS's Origin-Host")
    origin_realm: str = param(_REALM, "lab.example", "the OCS's Origin-Realm")
    accounts: str = param(
        ReadableFile(), "", "accounts JSON provisioned at start (conf/accounts.json); empty: none"
    )
    backend: str = param(Choice(("memory", "redis")), "memory", "where balances and sessions live")
    redis_url: RedisUrl = param(  # noqa: RUF009 - param() makes a field; the default is frozen
        RedisUrlKind(), RedisUrl("127.0.0.1"), "the Redis server of backend = redis"
    )
    key_prefix: str = param(
        Text(r"\S+", "text without spaces"), "b2bua:ocs:", "prefix of every OCS key in Redis"
    )
    ledger: str = param(
        WritableFile(), "", "JSON-lines file every credit operation is appended to; empty: none"
    )
    final_unit_style: str = param(
        Choice(("fui", "4012")),
        "fui",
        "fui: mark the last grant with Final-Unit-Indication; 4012: refuse the next request",
    )
    validity_time: int = param(Integer(1, 86400), 600, "Validity-Time sent with every grant (s)")
    stale_grace: int = param(
        Integer(0, 86400),
        60,
        "a session silent for validity_time plus this is released (s)",
    )
    rates: Rates = param(  # noqa: RUF009 - param() makes a field; Rates is frozen
        RatesKind(),
        Rates(Rating.default().tariffs),
        "tariffs: rating_group:rate[:kind[:default_units]], rate in credit units per unit",
    )
    default_rating_group: int = param(
        Integer(0, 2**32 - 1),
        100,
        "rating group of a request without Multiple-Services-Credit-Control",
    )


@dataclass(frozen=True, slots=True)
class ResultCodeMapping:
    """One ``result_code_map`` item: a refused CCA-I's Result-Code and the SIP answer."""

    result_code: int
    sip_status: int
    reason: str

    def __str__(self) -> str:
        return f"{self.result_code}:{self.sip_status} {self.reason}"


_RESULT_CODE_ITEM = re.compile(r"(\d{4})\s*:\s*([4-6]\d\d)\s+(\S.*)")


@dataclass(frozen=True)
class ResultCodeMapKind(Kind):
    """``RESULT_CODE:SIP_STATUS REASON`` items, comma-separated; empty maps nothing."""

    @property
    def expected(self) -> str:
        return (
            "a comma-separated list of result_code:sip_status reason, with a 4-digit "
            "Diameter Result-Code and a SIP status from 400 to 699, "
            "e.g. 4012:402 Payment Required, 5006:486 Line limit exceeded"
        )

    def parse(self, raw: str) -> tuple[ResultCodeMapping, ...]:
        mappings: list[ResultCodeMapping] = []
        for item in (item.strip() for item in raw.split(",")):
            if not item:
                continue
            match = _RESULT_CODE_ITEM.fullmatch(item)
            if match is None:
                raise ValueError(f"{self.expected}; {item!r} is not")
            code = int(match.group(1))
            if any(m.result_code == code for m in mappings):
                raise ValueError(f"{self.expected}; Result-Code {code} appears twice")
            mappings.append(ResultCodeMapping(code, int(match.group(2)), match.group(3).strip()))
        return tuple(mappings)


_UNSIGNED32 = Integer(0, 2**32 - 1)
_SIP_HEADER_NAME = Text(r"[A-Za-z0-9!%*_+`'~.-]+", "a SIP header name, e.g. X-Charged-Party")


@dataclass(frozen=True)
class ChargingSettings:
    """[charging]: Ro online charging of calls; Kamailio ims_charging names and defaults."""

    SECTION: ClassVar[str] = "charging"

    interim_update_credits: int = param(Integer(1), 30, "seconds requested by each CCR-Update")
    timer_buffer: int = param(
        Integer(0), 8, "send the CCR-Update this long before the granted time runs out (s)"
    )
    ro_auth_expiry: int = param(
        Integer(1), 7200, "longest life of an Ro session; the call is ended then (s)"
    )
    single_ro_session_per_dialog: int = param(
        Integer(0, 1), 0, "1: one Ro session per call even when several routes charge it"
    )
    service_context_id_root: str = param(
        Text(r"\S+", "text without spaces"),
        "32260@3gpp.org",
        "last part of Service-Context-Id: the 3GPP service (32260@3gpp.org: IMS)",
    )
    service_context_id_ext: str = param(
        Text(r"[^\s.]+", "text without spaces or dots"),
        "ext",
        "first part of Service-Context-Id: operator extension; empty: left out",
    )
    service_context_id_mnc: str = param(
        Text(r"[0-9]{2,3}", "a mobile network code of 2 or 3 digits"),
        "01",
        "mobile network code in Service-Context-Id",
    )
    service_context_id_mcc: str = param(
        Text(r"[0-9]{3}", "a mobile country code of 3 digits"),
        "001",
        "mobile country code in Service-Context-Id",
    )
    service_context_id_release: str = param(
        Text(r"[0-9]+", "a 3GPP release number"), "8", "3GPP release in Service-Context-Id"
    )
    voice_service_identifier: int = param(_UNSIGNED32, 1000, "Service-Identifier of voice calls")
    voice_rating_group: int = param(_UNSIGNED32, 100, "Rating-Group of voice calls")
    video_service_identifier: int = param(
        _UNSIGNED32, 1001, "Service-Identifier of calls with an active video stream"
    )
    video_rating_group: int = param(
        _UNSIGNED32, 200, "Rating-Group of calls with an active video stream"
    )
    custom_user: str = param(
        _SIP_HEADER_NAME,
        "",
        "SIP header of the A-leg INVITE naming the charged subscriber; empty: "
        "P-Asserted-Identity or From (orig), Request-URI (term)",
    )
    app_provided_party: str = param(
        _SIP_HEADER_NAME,
        "",
        "SIP header whose URI is sent as Application-Provided-Called-Party-Address; empty: none",
    )
    vendor_specific_chargeinfo: int = param(
        Integer(0, 1),
        0,
        "1: add Vendor-Specific-Termination-Clause/-Reason (not yet sent: no codes defined)",
    )
    vendor_specific_id: int = param(
        _UNSIGNED32, 10, "vendor id of the vendor-specific charging information"
    )
    node_functionality: int = param(
        Integer(0, 2**31 - 1), 6, "Node-Functionality sent in IMS-Information (6: AS, 0: S-CSCF)"
    )
    billing_rounding: str = param(
        Choice(("up", "nearest", "down")),
        "up",
        "how the last fraction of a second of a call is billed",
    )
    failure_handling: str = param(
        Choice(("terminate", "continue", "retry_and_terminate")),
        "terminate",
        "RFC 4006 Credit-Control-Failure-Handling used until the OCS sends its own",
    )
    result_code_map: tuple[ResultCodeMapping, ...] = param(
        ResultCodeMapKind(),
        (
            ResultCodeMapping(4010, 402, "Payment Required - Insufficient funds"),
            ResultCodeMapping(4012, 402, "Payment Required - Credit limit reached"),
            ResultCodeMapping(5030, 403, "Forbidden - User unknown"),
            ResultCodeMapping(5006, 486, "Line limit exceeded"),
        ),
        "SIP answer to a refused CCA-Initial per Result-Code; others: 402 with the code",
    )
    reservation_units: int = param(
        Integer(0), 30, "seconds requested by the CCR-Initial when the route names none"
    )
    sms_service_identifier: int = param(
        _UNSIGNED32, 1002, "Service-Identifier of charged SIP MESSAGE events (SMS)"
    )
    sms_rating_group: int = param(
        _UNSIGNED32, 300, "Rating-Group of charged SIP MESSAGE events (SMS)"
    )
    direct_debiting_failure_handling: str = param(
        Choice(("terminate_or_buffer", "continue")),
        "terminate_or_buffer",
        "RFC 4006 Direct-Debiting-Failure-Handling of a MESSAGE no OCS answered: "
        "refuse it (500) or forward it uncharged",
    )
    termination_retry_interval: float = param(
        Number(0.0, 86400.0, exclusive_minimum=True),
        30.0,
        "resend a CCR-Termination that no OCS took (T flag) this often (s)",
    )
    termination_retry_limit: int = param(
        Integer(0), 0, "resends of such a CCR-Termination before it is dropped; 0: no limit"
    )

    def charging_config(self) -> ChargingConfig:
        """The per-process settings of :class:`b2bua.charging.session.RoSession`."""
        from types import MappingProxyType

        from b2bua.charging.session import Ccfh, ChargingConfig
        from b2bua.charging.units import BillingRounding

        return ChargingConfig(
            interim_update_credits=self.interim_update_credits,
            timer_buffer=self.timer_buffer,
            ro_auth_expiry=self.ro_auth_expiry,
            billing_rounding=BillingRounding(self.billing_rounding),
            failure_handling=Ccfh[self.failure_handling.upper()],
            reservation_units=self.reservation_units,
            result_codes=MappingProxyType(
                {m.result_code: (m.sip_status, m.reason) for m in self.result_code_map}
            ),
        )

    def ro_settings(self) -> RoSettings:
        """What :mod:`b2bua.charging.messages` needs to build CCRs."""
        from b2bua.charging.messages import RoSettings

        return RoSettings(
            service_context_id_root=self.service_context_id_root,
            service_context_id_ext=self.service_context_id_ext,
            service_context_id_mnc=self.service_context_id_mnc,
            service_context_id_mcc=self.service_context_id_mcc,
            service_context_id_release=self.service_context_id_release,
            voice_service_identifier=self.voice_service_identifier,
            voice_rating_group=self.voice_rating_group,
            video_service_identifier=self.video_service_identifier,
            video_rating_group=self.video_rating_group,
            node_functionality=self.node_functionality,
            custom_user=self.custom_user,
            app_provided_party=self.app_provided_party,
            sms_service_identifier=self.sms_service_identifier,
            sms_rating_group=self.sms_rating_group,
        )


# -- [calls] and [route:NAME]: the B2BUA call layer --

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class NetworkList(Kind):
    """Comma-separated IP addresses or networks (``10.0.0.0/8``); empty: none."""

    @property
    def expected(self) -> str:
        return (
            "a comma-separated list of IP addresses or networks, "
            "e.g. 10.1.2.3, 192.0.2.0/24, 2001:db8::/32"
        )

    def parse(self, raw: str) -> tuple[IpNetwork, ...]:
        result = []
        for item in (item.strip() for item in raw.split(",")):
            if not item:
                continue
            try:
                result.append(ipaddress.ip_network(item.strip("[]"), strict=False))
            except ValueError:
                raise ValueError(f"{self.expected}; {item!r} is not") from None
        return tuple(result)


_HEADER_NAME = r"[A-Za-z0-9!%*_+`'~.-]+"


@dataclass(frozen=True)
class HeaderNames(Kind):
    """Comma-separated SIP header field names that b2bua may copy between legs."""

    @property
    def expected(self) -> str:
        return "a comma-separated list of header field names, e.g. P-Asserted-Identity, Privacy"

    def parse(self, raw: str) -> tuple[str, ...]:
        from b2bua.call.policy import HeaderPolicy

        names = tuple(item.strip() for item in raw.split(",") if item.strip())
        for name in names:
            if not re.fullmatch(_HEADER_NAME, name):
                raise ValueError(f"{self.expected}; {name!r} is not")
        try:
            HeaderPolicy.from_names(names)
        except ValueError as err:
            raise ValueError(f"{self.expected}; {err}") from None
        return names


@dataclass(frozen=True)
class WordList(Kind):
    """Comma-separated words matching `pattern`; empty: none."""

    pattern: str = r"\S+"
    description: str = "words"

    @property
    def expected(self) -> str:
        return f"a comma-separated list of {self.description}"

    def parse(self, raw: str) -> tuple[str, ...]:
        words = tuple(item.strip() for item in raw.split(",") if item.strip())
        for word in words:
            if not re.fullmatch(self.pattern, word):
                raise ValueError(f"{self.expected}; {word!r} is not")
        return words


_HOP_RE = re.compile(
    r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.-]*)(?::(\d+))?(?:;transport=(udp|tcp|tls))?",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class HopKind(Kind):
    """``host[:port][;transport=udp|tcp|tls]``; empty: unset."""

    @property
    def expected(self) -> str:
        return (
            "host[:port][;transport=udp|tcp|tls] (IPv6 in brackets), "
            "e.g. 10.0.0.7:5060;transport=udp"
        )

    def parse(self, raw: str) -> str:
        if raw and split_hop(raw) is None:
            raise ValueError(self.expected)
        return raw


def split_hop(raw: str) -> tuple[str, str, int] | None:
    """``(transport, host, port)`` of a valid ``next_hop`` value, else None."""
    match = _HOP_RE.fullmatch(raw.strip())
    if match is None:
        return None
    host, port_text, transport = match.groups()
    transport = (transport or "udp").lower()
    port = int(port_text) if port_text else (5061 if transport == "tls" else 5060)
    if not 0 < port < 65536:
        return None
    return transport, host.strip("[]"), port


@dataclass(frozen=True)
class CallSettings:
    """[calls]: the B2BUA call layer: who may call, limits, session timers, headers."""

    SECTION: ClassVar[str] = "calls"

    trusted: tuple[IpNetwork, ...] = param(
        NetworkList(),
        (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")),
        "SBC addresses or networks allowed to send calls; others get 403, no state",
    )
    max_calls: int = param(
        Integer(0, 10_000_000), 0, "concurrent calls before new ones get 503; 0: no limit"
    )
    retry_after: int = param(
        Integer(0, 86400), 10, "Retry-After of a 503 for a limit or a drain (s); 0: none"
    )
    shutdown_grace: float = param(
        Number(0.0, 86400.0),
        0.0,
        "on SIGTERM, calls in progress may go on this long before BYE + CCR-T (s)",
    )
    max_call_duration: int = param(
        Integer(0, 604800), 43200, "answered calls are ended after this long (s); 0: no limit"
    )
    no_answer_timeout: int = param(
        Integer(0, 3600), 180, "unanswered calls are cancelled after this long (s); 0: none"
    )
    admission_timeout: float = param(
        Number(0.0, 600.0, exclusive_minimum=True),
        30.0,
        "a call held for admission (charging) longer than this gets 500 (s)",
    )
    session_expires: int = param(
        Integer(0, 86400), 1800, "RFC 4028 session interval asked for on both legs (s); 0: off"
    )
    min_se: int = param(
        Integer(1, 86400),
        90,
        "RFC 4028 Min-SE: shorter Session-Expires get 422 (s); the RFC floor is 90",
    )
    pass_headers: tuple[str, ...] = param(
        HeaderNames(),
        ("P-Asserted-Identity", "P-Charging-Vector", "Privacy", "Diversion"),
        "header fields copied from one leg to the other (bodies always are)",
    )
    trunk_header: str = param(
        Text(_HEADER_NAME, "a header field name"),
        "X-Trunk",
        "header the SBC sets to name the trunk a call came from; [route:NAME] trunk",
    )
    max_call_rate: float = param(
        Number(0.0, 1_000_000.0),
        0.0,
        "new calls per second before more get 503 + Retry-After, no CCR; 0: no limit",
    )
    overload_lag: float = param(
        Number(0.0, 60.0),
        0.5,
        "event-loop lag (s) that, 3 probes in a row, makes new calls get 503; 0: off",
    )


@dataclass(frozen=True, kw_only=True)
class RouteSettings:
    """[route:NAME]: where calls matching this rule go and how they are charged."""

    SECTION: ClassVar[str] = "route"
    CONFIG_FIELD: ClassVar[str] = "routes"

    name: str = section_name()
    priority: int = param(
        Integer(0, 65535), 100, "routes are tried in increasing priority, then by name"
    )
    source: tuple[IpNetwork, ...] = param(
        NetworkList(), (), "match calls sent from these addresses or networks; empty: any"
    )
    trunk: str = param(
        Text(r"\S+", "text without spaces"), "", "match the [calls] trunk_header value; empty: any"
    )
    user_prefix: tuple[str, ...] = param(
        WordList(r"[^\s,]+", "Request-URI user prefixes"),
        (),
        "match Request-URI users starting with one of these; empty: any",
    )
    domain: str = param(
        Text(r"[A-Za-z0-9.:\[\]-]+", "a host name or IP address"),
        "",
        "match this Request-URI host (case-insensitive); empty: any",
    )
    next_hop: str = param(
        HopKind(), "", "where the B-leg INVITE goes; empty: back to the SBC that sent it"
    )
    max_calls: int = param(
        Integer(0, 10_000_000), 0, "concurrent calls on this route before 503; 0: no limit"
    )
    charging: str = param(
        Choice(("off", "orig", "term")),
        "off",
        "Ro online charging of calls on this route: off, orig(inating) or term(inating)",
    )
    reservation_units: int = param(
        Integer(0, 86400),
        0,
        "seconds asked for by the CCR-Initial (Ro_CCR reservation_units); 0: [charging]'s",
    )
    incoming_trunk_id: str = param(
        Text(r"\S*", "text without spaces"), "", "Incoming-Trunk-Group-Id sent to the OCS"
    )
    outgoing_trunk_id: str = param(
        Text(r"\S*", "text without spaces"), "", "Outgoing-Trunk-Group-Id sent to the OCS"
    )
    event_charging: str = param(
        Choice(("off", "orig", "term")),
        "off",
        "relay and charge out-of-dialog SIP MESSAGE on this route: off (405), orig or term",
    )
    event_charging_mode: str = param(
        Choice(("immediate", "reservation")),
        "immediate",
        "immediate: one CCR-Event debits the MESSAGE; reservation: CCR-I reserves, "
        "CCR-T debits only if it was delivered (2xx)",
    )


@dataclass(frozen=True)
class MetricsSettings:
    """[metrics]: the Prometheus /metrics HTTP endpoint."""

    SECTION: ClassVar[str] = "metrics"

    listen: str = param(
        Text(
            r"tcp6?:(port=)?\d{1,5}(:(interface|backlog)=[^:\s]+)*|unix:[^:\s]+(:[a-z]+=[^:\s]+)*",
            "a Twisted server endpoint: tcp:PORT[:interface=ADDRESS] or unix:PATH",
        ),
        "tcp:9201:interface=127.0.0.1",
        "where Prometheus scrapes /metrics (a Twisted endpoint string); empty: off",
    )


@dataclass(frozen=True)
class CdrSettings:
    """[cdr]: call detail records, one JSON line per finished call."""

    SECTION: ClassVar[str] = "cdr"

    file: str = param(
        WritableFile(), "", "JSON-lines file one record per ended call is appended to; empty: off"
    )
    max_bytes: int = param(
        Integer(0, 2**62), 0, "rotate the file when a record would make it larger; 0: never"
    )
    keep: int = param(Integer(0, 1000), 5, "rotated files kept (FILE.1 is the newest)")


# -- [manhole]: the operator's telnet console --

_ENDPOINT_RE = re.compile(
    r"(tcp6?):(?:port=)?(\d{1,5})((?::(?:interface|backlog)=(?:\\:|[^:\s\\])+)*)"
)


def _endpoint_options(raw: str) -> dict[str, str] | None:
    """``{"port": ..., "interface": ...}`` of a ``tcp:`` endpoint string (``\\:`` unescaped)."""
    match = _ENDPOINT_RE.fullmatch(raw)
    if match is None:
        return None
    options = {"port": match.group(2)}
    for item in re.split(r"(?<!\\):", match.group(3)):
        if item:
            key, _, value = item.partition("=")
            options[key] = value.replace("\\:", ":")
    return options


@dataclass(frozen=True)
class ServerEndpoint(Kind):
    """A Twisted TCP server endpoint string, ``tcp:PORT[:interface=ADDRESS]``; empty: none."""

    @property
    def expected(self) -> str:
        return (
            "a Twisted server endpoint tcp:PORT[:interface=ADDRESS][:backlog=N] "
            "(tcp6 for IPv6, colons escaped as \\:), e.g. tcp:2323:interface=127.0.0.1"
        )

    def parse(self, raw: str) -> str:
        if not raw:
            return raw
        options = _endpoint_options(raw)
        if options is None or not 0 < int(options["port"]) < 65536:
            raise ValueError(self.expected)
        if "interface" in options:
            try:
                ipaddress.ip_address(options["interface"])
            except ValueError:
                raise ValueError(f"{self.expected}; interface must be an IP address") from None
        if "backlog" in options and not options["backlog"].isdigit():
            raise ValueError(f"{self.expected}; backlog must be a number")
        return raw


def endpoint_is_loopback(listen: str) -> bool:
    """True when a valid ``tcp:`` endpoint string binds a loopback address only."""
    options = _endpoint_options(listen)
    interface = options.get("interface") if options is not None else None
    return interface is not None and ipaddress.ip_address(interface).is_loopback


@dataclass(frozen=True)
class PasswdFile(ReadableFile):
    """A readable file of ``user:$pbkdf2-sha256$...`` lines (``python -m b2bua.ops.passwd``)."""

    @property
    def expected(self) -> str:
        return "the path of a readable passwd file of user:hash lines"

    def parse(self, raw: str) -> str:
        from b2bua.ops.passwd import PasswdError, read_passwd

        if not raw:
            return raw
        try:
            read_passwd(raw)
        except PasswdError as err:
            raise ValueError(f"{self.expected} ({err})") from None
        return raw


@dataclass(frozen=True)
class HostKeyFile(WritableFile):
    """An SSH host key: a readable file, or one that can be created at the first start."""

    @property
    def expected(self) -> str:
        return "the path of a readable SSH host key, or of one to create in a writable directory"

    def parse(self, raw: str) -> str:
        if raw and os.path.exists(raw):
            if os.path.isdir(raw) or not os.access(raw, os.R_OK):
                raise ValueError(f"{self.expected} (cannot read {raw!r})")
            return raw
        return super().parse(raw)


@dataclass(frozen=True)
class AuthorizedKeysFile(ReadableFile):
    """An OpenSSH authorized_keys file with at least one public key."""

    @property
    def expected(self) -> str:
        return "the path of a readable authorized_keys file of SSH public keys"

    def parse(self, raw: str) -> str:
        from b2bua.ops.sshkeys import SshKeyError, read_authorized_keys

        if not raw:
            return raw
        try:
            read_authorized_keys(raw)
        except SshKeyError as err:
            raise ValueError(f"{self.expected} ({err})") from None
        return raw


@dataclass(frozen=True)
class ManholeSettings:
    """[manhole]: the operator's console (a Python prompt with helpers), telnet and SSH."""

    SECTION: ClassVar[str] = "manhole"

    listen: str = param(
        ServerEndpoint(),
        "",
        "where the telnet console listens (a Twisted endpoint string); empty: no console",
    )
    passwd: str = param(
        PasswdFile(),
        "",
        "file of user:hash lines who may log in (python -m b2bua.ops.passwd USER)",
    )
    ssh_listen: str = param(
        ServerEndpoint(),
        "",
        "where the console listens for SSH (a Twisted endpoint string); empty: no SSH",
    )
    ssh_host_key: str = param(
        HostKeyFile(),
        "",
        "the SSH host key file; created (Ed25519, mode 0600) at the first start if absent",
    )
    ssh_authorized_keys: str = param(
        AuthorizedKeysFile(),
        "",
        "OpenSSH authorized_keys file of the public keys that may log in over SSH",
    )

    def cross_problems(self) -> list[tuple[str, str]]:
        """(key, what is wrong) for combinations of values that cannot work."""
        problems: list[tuple[str, str]] = []
        if self.listen and not self.passwd:
            if not endpoint_is_loopback(self.listen):
                problems.append(
                    ("listen", "a console on a non-loopback address needs [manhole] passwd")
                )
            else:
                problems.append(
                    ("listen", "the console always asks for a password: set [manhole] passwd")
                )
        if self.ssh_listen:
            if not self.ssh_host_key:
                problems.append(("ssh_listen", "an SSH console needs [manhole] ssh_host_key"))
            if not self.ssh_authorized_keys and not endpoint_is_loopback(self.ssh_listen):
                problems.append(
                    (
                        "ssh_listen",
                        "an SSH console on a non-loopback address needs "
                        "[manhole] ssh_authorized_keys",
                    )
                )
            elif not self.ssh_authorized_keys and not self.passwd:
                problems.append(
                    ("ssh_listen", "set [manhole] ssh_authorized_keys (or passwd, on loopback)")
                )
        return problems


# -- [store]: calls kept in Redis across restarts and shared by several instances --


@dataclass(frozen=True)
class AddressList(Kind):
    """Comma-separated ``host:port`` items (IPv6 in brackets); empty: none."""

    @property
    def expected(self) -> str:
        return "a comma-separated list of host:port, e.g. 10.0.0.1:26379, 10.0.0.2:26379"

    def parse(self, raw: str) -> tuple[tuple[str, int], ...]:
        result = []
        for item in (part.strip() for part in raw.split(",")):
            if not item:
                continue
            match = re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})", item)
            if match is None or not 0 < int(match[2]) < 65536:
                raise ValueError(f"{self.expected}; {item!r} is not")
            result.append((match[1].strip("[]"), int(match[2])))
        return tuple(result)


@dataclass(frozen=True)
class StoreSettings:
    """[store]: where live calls are kept so that they survive a restart or a lost host."""

    SECTION: ClassVar[str] = "store"

    mode: str = param(
        Choice(("memory", "realtime", "shutdown")),
        "memory",
        "memory: nothing kept; realtime: every change written; shutdown: written at stop",
    )
    url: RedisUrl = param(  # noqa: RUF009 - param() makes a field; the default is frozen
        RedisUrlKind(secure=True),
        RedisUrl("127.0.0.1"),
        "the Redis server (rediss:// for TLS; user:password@ for an ACL user)",
    )
    ca_file: str = param(
        ReadableFile(), "", "PEM CA bundle that verifies a rediss:// server (empty: system CAs)"
    )
    key_prefix: str = param(
        Text(r"\S+", "text without spaces"), "b2bua:store:", "prefix of every store key"
    )
    instance_id: str = param(
        Text(r"[A-Za-z0-9_.-]*", "letters, digits, '_', '.' or '-'"),
        "",
        "this instance's name in the store, unique per instance; empty: the host name",
    )
    sentinels: tuple[tuple[str, int], ...] = param(
        AddressList(), (), "Redis Sentinel addresses; set: the master is found through them"
    )
    sentinel_master: str = param(
        Text(r"\S+", "text without spaces"), "mymaster", "the master name the sentinels watch"
    )
    lease_time: float = param(
        Number(1.0, 3600.0),
        15.0,
        "an instance silent this long is dead; a survivor adopts its calls (s)",
    )
    renew_interval: float = param(
        Number(0.1, 3600.0), 5.0, "how often the lease is renewed and dead instances looked for (s)"
    )
    adopt: str = param(
        Choice(("end", "continue")),
        "end",
        "a dead instance's calls: end (BYE both legs, CCR-T) or continue charging them",
    )
    queue_limit: int = param(
        Integer(1, 10_000_000),
        10000,
        "calls whose writes wait while Redis is away; beyond it all are rewritten later",
    )
    start_without_redis: bool = param(
        Boolean(), False, "start even when Redis cannot be reached at start-up (no: refuse)"
    )
    connect_timeout: float = param(
        Number(0.1, 600.0), 5.0, "how long a Redis connection or command may take (s)"
    )
    diameter_wait: float = param(
        Number(0.0, 600.0),
        10.0,
        "restored calls' CCRs wait this long at most for a usable Diameter peer (s)",
    )

    def cross_problems(self) -> list[tuple[str, str]]:
        """(key, what is wrong) for combinations of values that cannot work."""
        problems = []
        if self.renew_interval >= self.lease_time:
            problems.append(("renew_interval", "must be shorter than lease_time"))
        if self.sentinels and self.url.tls:
            problems.append(("url", "rediss:// cannot be combined with sentinels (no TLS there)"))
        return problems


# Sections that appear once, and named sections ([peer:NAME]) that may appear many times.
# A named section type has `name` as its first field and its Config field holds a tuple.
SECTIONS: tuple[Any, ...] = (
    SipSettings,
    LogSettings,
    DiameterSettings,
    OcsSettings,
    ChargingSettings,
    CallSettings,
    MetricsSettings,
    CdrSettings,
    ManholeSettings,
    StoreSettings,
)
NAMED_SECTIONS: tuple[Any, ...] = (PeerSettings, RouteSettings)


@dataclass(frozen=True)
class Config:
    """The whole validated configuration; each subsystem is given only its own section."""

    path: str
    sip: SipSettings = field(default_factory=SipSettings)
    log: LogSettings = field(default_factory=LogSettings)
    diameter: DiameterSettings = field(default_factory=DiameterSettings)
    peers: tuple[PeerSettings, ...] = ()
    ocs: OcsSettings = field(default_factory=OcsSettings)
    charging: ChargingSettings = field(default_factory=ChargingSettings)
    calls: CallSettings = field(default_factory=CallSettings)
    routes: tuple[RouteSettings, ...] = ()
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    cdr: CdrSettings = field(default_factory=CdrSettings)
    manhole: ManholeSettings = field(default_factory=ManholeSettings)
    store: StoreSettings = field(default_factory=StoreSettings)


@dataclass(frozen=True, slots=True)
class SchemaEntry:
    section: str
    key: str
    kind: Kind
    default: Any
    why: str
    required: bool = False


def schema() -> Iterator[SchemaEntry]:
    """Every parameter the validator knows, in declaration order.

    Named sections are reported as ``peer:NAME``; a required parameter has no default.
    """
    for section_type in SECTIONS + NAMED_SECTIONS:
        section = section_type.SECTION
        if section_type in NAMED_SECTIONS:
            section += ":NAME"
        for f in fields(section_type):
            if "kind" not in f.metadata:
                continue
            default = f.default if f.default is not MISSING else None
            yield SchemaEntry(
                section,
                f.name,
                f.metadata["kind"],
                default,
                f.metadata["why"],
                bool(f.metadata.get("required")),
            )


# -- reading --


def _line_numbers(text: str) -> dict[tuple[str, str | None], int]:
    """Map (section, key) and (section, None) to the line where each first appears."""
    lines: dict[tuple[str, str | None], int] = {}
    section = None
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped[0] in "#;":
            continue
        header = re.fullmatch(r"\[([^\]]+)\]", stripped)
        if header:
            section = header.group(1).strip()
            lines.setdefault((section, None), number)
        elif section is not None and not line[:1].isspace():
            key = re.split(r"[=:]", stripped, maxsplit=1)[0].strip().lower()
            lines.setdefault((section, key), number)
    return lines


def load_config(path: str) -> Config:
    """Read and validate `path`; raise ConfigError listing every problem."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as err:
        raise ConfigError([f"{path}: cannot read the configuration file: {err.strerror}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: the configuration file is not UTF-8 text"]) from None
    return parse_config_text(text, path)


def parse_config_text(text: str, path: str = "<config>") -> Config:
    """Validate INI `text` (named `path` in messages) into a Config."""
    parser = configparser.ConfigParser(
        interpolation=None, strict=True, empty_lines_in_values=False, default_section="\0"
    )
    try:
        parser.read_string(text, source=path)
    except configparser.DuplicateSectionError as err:
        raise ConfigError(
            [f"{path}:{err.lineno}: [{err.section}]: section appears twice"]
        ) from None
    except configparser.DuplicateOptionError as err:
        raise ConfigError(
            [f"{path}:{err.lineno}: [{err.section}] {err.option}: key appears twice"]
        ) from None
    except configparser.MissingSectionHeaderError as err:
        raise ConfigError(
            [f"{path}:{err.lineno}: a key before any [section] header: {err.line.strip()!r}"]
        ) from None
    except configparser.ParsingError as err:
        raise ConfigError(
            [f"{path}:{lineno}: cannot parse line {line.strip()!r}" for lineno, line in err.errors]
        ) from None
    lines = _line_numbers(text)
    problems: list[str] = []
    known = {section_type.SECTION: section_type for section_type in SECTIONS}
    named = {section_type.SECTION: section_type for section_type in NAMED_SECTIONS}
    expected = [f"[{name}]" for name in known] + [f"[{name}:NAME]" for name in named]
    values: dict[str, Any] = {}
    for section in parser.sections():
        where = f"{path}:{lines.get((section, None), '?')}"
        prefix, colon, name = section.partition(":")
        section_type = named.get(prefix) if colon else known.get(section)
        if section_type is None or (colon and not re.fullmatch(r"[A-Za-z0-9_.-]+", name)):
            problems.append(
                f"{where}: [{section}]: unknown section{_suggest(section, known)}; "
                f"expected one of {', '.join(expected)}"
            )
            continue
        value = _read_section(parser[section], section_type, section, path, lines, problems)
        if colon:
            values.setdefault(section_type.CONFIG_FIELD, []).append(value)
        else:
            values[section] = value
    if problems:
        raise ConfigError(problems)
    for key, value in values.items():
        if isinstance(value, list):
            values[key] = tuple(value)
    return Config(path=path, **values)


def _read_section(
    raw: Mapping[str, str],
    section_type: Callable[..., Any],
    section: str,
    path: str,
    lines: Mapping[tuple[str, str | None], int],
    problems: list[str],
) -> Any:
    declared = {
        f.name: f
        for f in fields(section_type)  # type: ignore[arg-type]
        if "kind" in f.metadata
    }
    kwargs: dict[str, Any] = {}
    if ":" in section:
        kwargs["name"] = section.partition(":")[2]
    for key, raw_value in raw.items():
        where = f"{path}:{lines.get((section, key), '?')}"
        declared_field = declared.get(key)
        if declared_field is None:
            problems.append(
                f"{where}: [{section}] {key}: unknown key{_suggest(key, declared)}; "
                f"[{section}] knows {', '.join(declared)}"
            )
            continue
        value = raw_value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        kind: Kind = declared_field.metadata["kind"]
        try:
            if isinstance(kind, ReadableFile | WritableFile) and value:
                value = os.path.join(os.path.dirname(path), os.path.expanduser(value))
            kwargs[key] = kind.parse(value)
        except ValueError as err:
            problems.append(f"{where}: [{section}] {key} = {value}: expected {err}")
    missing = [
        name
        for name, declared_field in declared.items()
        if declared_field.metadata.get("required") and name not in raw
    ]
    for name in missing:
        kind = declared[name].metadata["kind"]
        where = f"{path}:{lines.get((section, None), '?')}"
        problems.append(f"{where}: [{section}] {name}: missing; expected {kind.expected}")
    if missing or problems:
        return None
    value = section_type(**kwargs)
    for key, message in getattr(value, "cross_problems", list)():
        where = f"{path}:{lines.get((section, key), lines.get((section, None), '?'))}"
        problems.append(f"{where}: [{section}] {key} = {raw.get(key, '')}: {message}")
    return value


def _suggest(word: str, candidates: Mapping[str, object] | list[str]) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
