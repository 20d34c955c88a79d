"""Message framing on stream transports (TCP, TLS): sans-IO reassembly.

Implements RFC 3261 §18.3 (Content-Length delimits each message on a stream), §7.5
(CRLFs before a start line are ignored) and the RFC 5626 §3.5.1 keep-alive: a
double CRLF "ping" asks for a single CRLF "pong", reported as :data:`PING`; a lone
CRLF (a pong, or padding) is skipped.

A framing error (no or bad Content-Length, a message over the size bound) cannot be
recovered from on a stream (RFC 4475 §3.1.2.3), nor can a header section that does
not parse (there is no Content-Length to skip its body by): the reassembler reports one
:class:`~b2bua.sip.errors.SipParseError` and then stops (``failed``); the glue should
close the connection.  Structured header values are parsed lazily, so a message with,
say, a bad To is delivered and caught later by ``validate_request``.
"""

from __future__ import annotations

from typing import Final

from b2bua.sip.errors import SipParseError
from b2bua.sip.message import Message, Request, Response, _parse_head

__all__ = ["DEFAULT_MAX_MESSAGE_SIZE", "PING", "KeepAlivePing", "StreamFramer"]

DEFAULT_MAX_MESSAGE_SIZE: Final = 65535


class KeepAlivePing:
    """A CRLFCRLF keep-alive ping was received; answer with b"\\r\\n" (RFC 5626 §3.5.1)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "PING"


PING: Final = KeepAlivePing()

Event = Request | Response | SipParseError | KeepAlivePing


class StreamFramer:
    """Feed bytes from a stream; get complete messages, keep-alive pings and errors."""

    __slots__ = ("_buf", "_crlfs", "_failed", "_pending", "_scan_from", "max_message_size")

    def __init__(self, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        self.max_message_size = max_message_size
        self._buf = bytearray()
        self._scan_from = 0
        self._crlfs = 0
        self._failed = False
        # A message whose header section is parsed, waiting for its body:
        # (message, offset of the body, offset past the body).
        self._pending: tuple[Request | Response, int, int] | None = None

    @property
    def failed(self) -> bool:
        """True after a framing error: the stream cannot be resynchronised."""
        return self._failed

    @property
    def buffered(self) -> int:
        """Bytes received but not yet framed."""
        return len(self._buf)

    def _fail(self, reason: str, status: int, msg: Message | None = None) -> SipParseError:
        self._failed = True
        self._buf.clear()
        self._pending = None
        return SipParseError(reason, status, message=msg)

    def feed(self, data: bytes) -> list[Event]:
        """Append ``data``; return every event it completes, in order."""
        if self._failed:
            return []
        buf = self._buf
        buf += data
        out: list[Event] = []
        limit = self.max_message_size
        while buf:
            pending = self._pending
            if pending is None:
                # §7.5 / RFC 5626 §3.5.1: CRLFs between messages are keep-alives.
                if buf[0] == 0x0D:
                    if len(buf) < 2:
                        break
                    if buf[1] != 0x0A:
                        out.append(self._fail("stray CR", 400))
                        return out
                    del buf[:2]
                    self._crlfs += 1
                    if self._crlfs == 2:
                        self._crlfs = 0
                        out.append(PING)
                    continue
                self._crlfs = 0
                end = buf.find(b"\r\n\r\n", max(0, self._scan_from - 3))
                if end < 0:
                    if len(buf) > limit:
                        out.append(self._fail("message too large", 513))
                        return out
                    self._scan_from = len(buf)
                    break
                self._scan_from = 0
                body_start = end + 4
                try:
                    msg, clen = _parse_head(bytes(buf[:end]))
                except SipParseError as exc:
                    # Without the header fields there is no Content-Length to go on.
                    out.append(self._fail(exc.reason, exc.status_hint, exc.message))
                    return out
                if clen is None:
                    out.append(self._fail("missing Content-Length", 400, msg))
                    return out
                total = body_start + clen
                if total > limit:
                    out.append(self._fail("message too large", 513, msg))
                    return out
                pending = self._pending = (msg, body_start, total)
            msg, body_start, total = pending
            if len(buf) < total:
                break
            msg.body = bytes(buf[body_start:total])
            del buf[:total]
            self._pending = None
            out.append(msg)
        return out
