"""Call detail records: one JSON line per ended call, sans-IO but for a plain file.

:func:`cdr_record` turns a :class:`~b2bua.call.bridge.Call` into the record (see the
fields in :data:`FIELDS`), :func:`format_line` into one line of JSON; :class:`CdrFile`
appends lines to a file, renames it to ``FILE.1`` (``FILE.1`` to ``FILE.2``...) when a
line would make it larger than ``max_bytes``, and opens ``FILE`` again when something
else (logrotate) renamed or removed it, or on :meth:`CdrFile.reopen` (for SIGHUP).
:class:`CdrWriter` is the call observer joining them.

A record holds no secret: no header but From and the Request-URI, no credential, no SDP.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any

from b2bua import logs
from b2bua.call.events import CallObserver

if TYPE_CHECKING:
    from b2bua.call.bridge import Call
    from b2bua.charging.engine import ChargingEngine

__all__ = [
    "FIELDS",
    "CdrFile",
    "CdrWriter",
    "SessionFigures",
    "cdr_record",
    "engine_lookup",
    "format_line",
    "iso",
    "session_figures",
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
)

#: What charging knows of a call when it ends: its Ro Session-Ids and billed seconds.
ChargingLookup = Callable[[str], tuple[list[str], int | None]]


def iso(timestamp: float | None) -> str | None:
    """ISO 8601 in UTC with milliseconds, e.g. ``2026-11-23T16:15:14.123Z``; None stays None."""
    if timestamp is None:
        return None
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def cdr_record(
    call: Call, *, ro_session_ids: list[str] | None = None, billed_secs: int | None = None
) -> dict[str, Any]:
    """The record of an ended call (``billed_secs`` None: not charged, or not known)."""
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
    }


def format_line(record: Mapping[str, Any]) -> str:
    """One line of compact JSON, keys in :data:`FIELDS` order, newline-terminated."""
    ordered = {key: record.get(key) for key in FIELDS}
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


@dataclass(frozen=True, slots=True)
class SessionFigures:
    """What one Ro session of a call stands at: seconds granted so far, seconds reported."""

    session_id: str
    granted: int  # every CCA's grant, cumulated (RoSession's budget)
    used: int  # seconds reported to the OCS so far
    over: bool  # the CCR-T left (or the session ended without one): ``used`` is final


def session_figures(engine: ChargingEngine, call_id: str) -> list[SessionFigures]:
    """The figures of each Ro session of a call; [] for a call the engine does not charge.

    The engine has no public per-call figure; this reads its session table (one place,
    for the CDRs and the manhole's ``calls()``).
    """
    call = engine._by_call.get(call_id)
    if call is None:
        return []
    figures = []
    for live in call.sessions:
        session = live.session
        figures.append(
            SessionFigures(
                live.session_id,
                int(session.snapshot()["budget"]),
                session.billed_seconds,
                session.finished or session._terminated,
            )
        )
    return figures


def engine_lookup(engine: ChargingEngine) -> ChargingLookup:
    """What the charging engine knows of a call at its end, for :class:`CdrWriter`.

    The engine's live sessions are read right after it was told of the end (the writer
    observes after the charging controller), when each session has sent its CCR-T: the
    seconds it reported are final.  Billed seconds are None when the call had no Ro
    session, or when a CCR-T is still waiting behind a CCR-U in flight (not known yet).
    """

    def lookup(call_id: str) -> tuple[list[str], int | None]:
        session_ids = engine.session_ids_of(call_id)
        figures = session_figures(engine, call_id)
        if not figures or not all(figure.over for figure in figures):
            return session_ids, None
        return session_ids, sum(figure.used for figure in figures)

    return lookup


class CdrWriter(CallObserver):
    """Writes the record of every ended call; a failed write is logged, never raised."""

    def __init__(self, output: CdrFile, charging: ChargingLookup | None = None) -> None:
        self.output = output
        self.charging = charging
        self.written = 0
        self.failed = 0

    def call_ended(self, call: Call) -> None:
        session_ids: list[str] = []
        billed: int | None = None
        try:
            if self.charging is not None:
                session_ids, billed = self.charging(call.id)
            self.output.write(
                format_line(cdr_record(call, ro_session_ids=session_ids, billed_secs=billed))
            )
            self.written += 1
        except Exception as err:  # an observer must not raise; the call is over anyway
            self.failed += 1
            log.error("CDR of call {call} not written: {error}", call=call.id, error=err)

    def reopen(self) -> None:
        """Reopen the file (SIGHUP after logrotate)."""
        self.output.reopen()
