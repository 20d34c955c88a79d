"""Exceptions of the sans-IO SIP core.

Every error that comes from bytes received off the wire is a :class:`SipParseError`
(RFC 3261 §7, §25 syntax; §8.2 request validation), carrying the status code an element
should answer with (``status_hint``: 400, 505, 513, 416, ...) and a short ``reason`` fit
for a Warning or Reason header.  Errors in what the local TU asks for are
:class:`LocalProtocolError`; protocol violations by the peer that are not syntax errors
are :class:`RemoteProtocolError`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from b2bua.sip.message import Message

__all__ = [
    "LocalProtocolError",
    "RemoteProtocolError",
    "SipError",
    "SipParseError",
]


class SipError(Exception):
    """Base class of every error raised by :mod:`b2bua.sip`."""


class SipParseError(SipError):
    """Received bytes that are not an acceptable SIP message.

    ``status_hint`` is the response code a UAS should send (RFC 3261 §8.2, §21.4);
    ``reason`` is a short phrase for a Warning/Reason header; ``headers`` are extra
    header fields the error response needs (``Unsupported`` for 420, ``Accept`` for 415);
    ``message`` is the partly parsed message when the start line and header fields could
    be read (so a 400 can still be built from it with ``make_response``).
    """

    __slots__ = ("headers", "message", "reason", "status_hint")

    def __init__(
        self,
        reason: str,
        status_hint: int = 400,
        *,
        headers: tuple[tuple[str, str], ...] = (),
        message: Message | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status_hint = status_hint
        self.headers = headers
        self.message = message

    def __repr__(self) -> str:
        return f"SipParseError({self.reason!r}, status_hint={self.status_hint})"


class LocalProtocolError(SipError):
    """The local TU asked for something the protocol forbids (a bug on our side)."""

    __slots__ = ("status_hint",)

    def __init__(self, reason: str, status_hint: int = 500) -> None:
        super().__init__(reason)
        self.status_hint = status_hint


class RemoteProtocolError(SipError):
    """The peer violated the protocol in a way that is not a parse error."""

    __slots__ = ("status_hint",)

    def __init__(self, reason: str, status_hint: int = 400) -> None:
        super().__init__(reason)
        self.status_hint = status_hint
