"""Diameter exceptions.

A :class:`DecodeError` carries everything needed to build the RFC 6733
section 7.2 error answer without re-parsing: the Result-Code, the bytes of
the offending AVP for Failed-AVP (section 7.5) and the message header when
it could be decoded (hop-by-hop, end-to-end, command, application, flags).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from b2bua.diameter.avp import Avp
    from b2bua.diameter.message import Header


class DiameterError(Exception):
    """Base class of all errors raised by the Diameter package."""


class DecodeError(DiameterError):
    """A message or AVP that cannot be accepted, with its RFC 6733 Result-Code.

    ``failed_avp`` holds the wire bytes to put inside Failed-AVP: the whole
    offending AVP, a zero-filled example of a missing one, or the grouped
    hierarchy down to the offending AVP.  ``fatal`` means the byte stream
    lost framing (bad version or length) and the connection must be closed.
    """

    def __init__(
        self,
        result_code: int,
        message: str = "",
        *,
        failed_avp: bytes | None = None,
        avp: Avp | None = None,
        header: Header | None = None,
        fatal: bool = False,
    ) -> None:
        super().__init__(message or f"Diameter decode error {result_code}")
        self.result_code = result_code
        self.failed_avp = failed_avp
        self.avp = avp
        self.header = header
        self.fatal = fatal

    @property
    def is_protocol_error(self) -> bool:
        """3xxx codes are answered with the E bit set (RFC 6733 7.1.3, 7.2)."""
        return 3000 <= self.result_code < 4000

    @property
    def answerable(self) -> bool:
        """True when the header is known and belongs to a request (7.2: never answer an answer)."""
        return self.header is not None and self.header.is_request

    def __repr__(self) -> str:
        return f"DecodeError({self.result_code}, {str(self)!r})"


if TYPE_CHECKING:
    from b2bua.diameter.message import Message


class RequestFailed(DiameterError):
    """A request sent with ``DiameterService.send_request`` got no usable answer.

    ``peer`` is the name of the last ``[peer:NAME]`` the request went to, and ``host``
    that peer's Origin-Host (None when it never left), so that the caller can retry
    elsewhere with ``exclude={peer}``.
    """

    def __init__(self, message: str, *, peer: str | None = None, host: str | None = None) -> None:
        super().__init__(message)
        self.peer = peer
        self.host = host


class RequestTimeout(RequestFailed):
    """RFC 4006 Tx expired before an answer arrived (section 13)."""


class NoPeerAvailable(RequestFailed):
    """No open, watchdog-OKAY peer serves the destination (or the forced peer is down)."""


class PeerDown(RequestFailed):
    """The connection carrying the request was lost and no alternate peer could take it."""


class InvalidAnswer(RequestFailed):
    """The answer failed decoding or dictionary checks; ``error`` says why.

    ``answer`` is the decoded message when only the dictionary check failed.
    """

    def __init__(
        self,
        message: str,
        *,
        error: DecodeError,
        answer: Message | None = None,
        peer: str | None = None,
        host: str | None = None,
    ) -> None:
        super().__init__(message, peer=peer, host=host)
        self.error = error
        self.answer = answer
