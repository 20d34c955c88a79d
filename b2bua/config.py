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
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar

__all__ = [
    "Config",
    "ConfigError",
    "ListenAddress",
    "LogSettings",
    "SipSettings",
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


# Sections that appear once, and named sections ([peer:NAME]) that may appear many times.
# A named section type has `name` as its first field and its Config field holds a tuple.
SECTIONS: tuple[Any, ...] = (SipSettings, LogSettings)
NAMED_SECTIONS: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Config:
    """The whole validated configuration; each subsystem is given only its own section."""

    path: str
    sip: SipSettings = field(default_factory=SipSettings)
    log: LogSettings = field(default_factory=LogSettings)


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
    return section_type(**kwargs)


def _suggest(word: str, candidates: Mapping[str, object] | list[str]) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
