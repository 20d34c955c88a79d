"""Call detail records: one JSON line per ended call, sans-IO but for a plain file.

:func:`cdr_record` turns a :class:`~b2bua.call.bridge.Call` into the record (see the
fields in :data:`FIELDS`; ``"kind": "call"``), :func:`message_record` a relayed
out-of-dialog MESSAGE (:data:`MESSAGE_FIELDS`; ``"kind": "message"``, written when its
sender has the final answer), :func:`format_line` into one line of JSON; :class:`CdrFile`
appends lines to a file, renames it to ``FILE.1`` (``FILE.1`` to ``FILE.2``...) when a
line would make it larger than ``max_bytes``, and opens ``FILE`` again when something
else (logrotate) renamed or removed it, or on :meth:`CdrFile.reopen` (for SIGHUP).
:class:`CdrWriter` is the call and MESSAGE observer joining them.

A record holds no secret: no header but From and the Request-URI, no credential, no SDP.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any

from b2bua import logs
from b2bua.call.events import CallObserver
from b2bua.call.relay import MessageObserver, RelayedMessage
from b2bua.sip.errors import SipParseError

if TYPE_CHECKING:
    from b2bua.call.bridge import Call
    from b2bua.charging.engine import CallFigures, ChargingEngine
    from b2bua.charging.messaging import EventFigures

__all__ = [
    "FIELDS",
    "MESSAGE_FIELDS",
    "CdrFile",
    "CdrWriter",
    "cdr_record",
    "engine_lookup",
    "format_line",
    "iso",
    "message_record",
]

log = logs.logger(__name__)

#: The keys of a record, in the order they are written.
FIELDS: tuple[str, ...] = (
    "call_id",
    "a_call_id",
    "b_call_id",
    "caller",
    "callee",
    "route",
    "incoming_trunk_id",
    "outgoing_trunk_id",
    "invite_time",
    "answer_time",
    "end_time",
    "duration",
    "billed_secs",
    "end_reason",
    "sip_status",
    "ro_session_ids",
    "ro_result_codes",
    "kind",
)

#: The keys of a MESSAGE's record, in the order they are written.
MESSAGE_FIELDS: tuple[str, ...] = (
    "kind",
    "call_id",
    "caller",
    "callee",
    "route",
    "time",
    "sip_status",
    "charged",
    "ro_session_id",
    "result_code",
    "units",
)

#: What charging knows of a call when it ends (by call id): its Ro sessions' figures.
ChargingLookup = Callable[[str], "CallFigures"]
#: What charging knew of a relayed MESSAGE (None: not charged).
EventLookup = Callable[[RelayedMessage], "EventFigures | None"]


def iso(timestamp: float | None) -> str | None:
    """ISO 8601 in UTC with milliseconds, e.g. ``2026-11-23T16:15:14.123Z``; None stays None."""
    if timestamp is None:
        return None
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def cdr_record(
    call: Call,
    *,
    ro_session_ids: list[str] | None = None,
    billed_secs: int | None = None,
    ro_result_codes: list[int | None] | None = None,
) -> dict[str, Any]:
    """The record of an ended call (``billed_secs`` None: not charged, or not known);
    ``ro_result_codes`` holds each Ro session's last Result-Code, as ``ro_session_ids``."""
    route = call.route
    return {
        "call_id": call.id,
        "a_call_id": call.a.call_id,
        "b_call_id": call.b.call_id,
        "caller": call.caller,
        "callee": call.callee,
        "route": route.name if route is not None else None,
        "incoming_trunk_id": (route.incoming_trunk_id or None) if route is not None else None,
        "outgoing_trunk_id": (route.outgoing_trunk_id or None) if route is not None else None,
        "invite_time": iso(call.received_at),
        "answer_time": iso(call.answered_at),
        "end_time": iso(call.ended_at),
        "duration": round(call.duration, 3),
        "billed_secs": billed_secs,
        "end_reason": call.end_reason.value if call.end_reason is not None else None,
        "sip_status": call.end_status,
        "ro_session_ids": list(ro_session_ids or []),
        "ro_result_codes": list(ro_result_codes or []),
        "kind": "call",
    }


def message_record(message: RelayedMessage, figures: EventFigures | None) -> dict[str, Any]:
    """The record of a MESSAGE whose sender got its final answer (``figures`` None: no Ro
    session, e.g. refused as not chargeable or relayed without a charging engine)."""
    request = message.request
    try:
        caller = str(request.from_.uri)
    except SipParseError:
        caller = ""
    return {
        "kind": "message",
        "call_id": request.call_id,
        "caller": caller,
        "callee": request.uri,
        "route": message.route.name,
        "time": iso(message.received_at),
        "sip_status": message.status,
        "charged": message.charged,
        "ro_session_id": None if figures is None else figures.session_id,
        "result_code": None if figures is None else figures.result_code,
        "units": None if figures is None else figures.units,
    }


def format_line(record: Mapping[str, Any], fields: tuple[str, ...] = FIELDS) -> str:
    """One line of compact JSON, keys in ``fields`` order, newline-terminated."""
    ordered = {key: record.get(key) for key in fields}
    return json.dumps(ordered, separators=(",", ":"), ensure_ascii=False) + "\n"


class CdrFile:
    """An append-only file rotated by size and reopened on demand."""

    def __init__(self, path: str, *, max_bytes: int = 0, keep: int = 5) -> None:
        if max_bytes < 0 or keep < 0:
            raise ValueError("max_bytes and keep must not be negative")
        self.path = path
        self.max_bytes = max_bytes
        self.keep = keep
        self._file: IO[bytes] | None = None

    def write(self, line: str) -> None:
        """Append ``line``, rotating first if it would take the file past ``max_bytes``."""
        data = line.encode("utf-8")
        handle = self._open()
        if self.max_bytes and handle.tell() and handle.tell() + len(data) > self.max_bytes:
            self.rotate()
            handle = self._open()
        handle.write(data)
        handle.flush()

    def rotate(self) -> None:
        """FILE -> FILE.1 -> FILE.2 ... (the oldest beyond ``keep`` removed); a new FILE."""
        self.close()
        if self.keep == 0:
            if os.path.exists(self.path):
                os.remove(self.path)
            return
        oldest = f"{self.path}.{self.keep}"
        if os.path.exists(oldest):
            os.remove(oldest)
        for index in range(self.keep - 1, 0, -1):
            older = f"{self.path}.{index}"
            if os.path.exists(older):
                os.replace(older, f"{self.path}.{index + 1}")
        if os.path.exists(self.path):
            os.replace(self.path, f"{self.path}.1")

    def reopen(self) -> None:
        """Close the file; the next line opens ``path`` again (logrotate moved it)."""
        self.close()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _open(self) -> IO[bytes]:
        if self._file is not None and self._moved(self._file):
            self.close()
        if self._file is None:
            self._file = open(self.path, "ab")  # noqa: SIM115 - kept open across lines
            self._file.seek(0, os.SEEK_END)
        return self._file

    def _moved(self, handle: IO[bytes]) -> bool:
        """True when ``path`` is no longer the open file (logrotate renamed or removed it)."""
        try:
            on_disk = os.stat(self.path)
        except FileNotFoundError:
            return True
        opened = os.fstat(handle.fileno())
        return (on_disk.st_dev, on_disk.st_ino) != (opened.st_dev, opened.st_ino)


def engine_lookup(engine: ChargingEngine) -> ChargingLookup:
    """What the charging engine knows of a call at its end, for :class:`CdrWriter`.

    The engine's live sessions are read right after it was told of the end (the writer
    observes after the charging controller), when each session has sent its CCR-T: the
    seconds it reported are final.  Billed seconds are None when the call had no Ro
    session, or when a CCR-T is still waiting behind a CCR-U in flight (not known yet).
    """
    return engine.call_figures


class CdrWriter(CallObserver, MessageObserver):
    """Writes the record of every ended call and relayed MESSAGE; a failed write is logged,
    never raised."""

    def __init__(
        self,
        output: CdrFile,
        charging: ChargingLookup | None = None,
        events: EventLookup | None = None,
    ) -> None:
        self.output = output
        self.charging = charging
        self.events = events
        self.written = 0
        self.failed = 0

    def message_ended(self, message: RelayedMessage) -> None:
        try:
            figures = None if self.events is None else self.events(message)
            self.output.write(format_line(message_record(message, figures), MESSAGE_FIELDS))
            self.written += 1
        except Exception as err:  # an observer must not raise; the answer has gone anyway
            self.failed += 1
            log.error("CDR of message {id} not written: {error}", id=message.id, error=err)

    def call_ended(self, call: Call) -> None:
        try:
            if self.charging is None:
                record = cdr_record(call)
            else:
                figures = self.charging(call.id)
                record = cdr_record(
                    call,
                    ro_session_ids=figures.session_ids,
                    billed_secs=figures.billed_seconds,
                    ro_result_codes=figures.result_codes,
                )
            self.output.write(format_line(record))
            self.written += 1
        except Exception as err:  # an observer must not raise; the call is over anyway
            self.failed += 1
            log.error("CDR of call {call} not written: {error}", call=call.id, error=err)

    def reopen(self) -> None:
        """Reopen the file (SIGHUP after logrotate)."""
        self.output.reopen()
