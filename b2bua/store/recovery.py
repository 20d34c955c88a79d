"""A live call as a JSON-able record, and a working call rebuilt from one (sans-IO).

Issue 8: calls and their charging survive a restart or the loss of an instance. This module
composes the snapshots the owning classes take of themselves
(:meth:`~b2bua.call.bridge.Bridge.snapshot` with its legs and dialogs,
:meth:`~b2bua.charging.engine.ChargingEngine.snapshot_call` with each
:class:`~b2bua.charging.session.RoSession`) into one record per call, keyed by the A-leg
Call-ID, and a record per kept CCR-Termination (``ccrt:<Session-Id>``). The store
(``b2bua.store.service``) listens for changes, writes :func:`encode_record` bytes and, after
a restart, hands decoded records to :meth:`CallStateRecorder.restore`.

A record::

    {"v": 1, "key": "<A-leg Call-ID>", "saved_at": <wall clock>,
     "call": <Bridge.snapshot> | null,      # only a confirmed call, not ending
     "ro": <ChargingEngine.snapshot_call> | null,   # sessions the OCS holds open
     "ccrt": <ChargingEngine.snapshot_termination>} # only in "ccrt:" records

Decisions:

* What is restorable. A call is recorded once the caller's ACK confirmed it; before that its
  INVITE transaction is needed and does not survive a restart. An Ro session is recorded
  from its successful CCA-I until its CCR-T is answered, so that it always gets its CCR-T:
  when its call cannot be restored, the CCR-T reports the talk time up to ``saved_at``
  (0 if the call was never answered).
* CSeq without a write per request. Records are written on state changes (confirmation,
  target refresh, session-timer refresh, charging events), not on every in-dialog request.
  On restore each leg's local CSeq is raised by :data:`CSEQ_MARGIN` (RFC 3261 §12.2.1.1
  only asks that it increase), and the restored call is written again at once, so a second
  restart raises it from the raised value. Remote CSeqs may be older than the last request
  received, which only makes the check of §12.2.2 more lenient.
* A CCR in flight at the crash. Its answer is lost; it is sent again with the same
  CC-Request-Number and the T flag (RFC 4006 §5.7, RFC 6733 §3), which the OCS recognises as
  a possible duplicate. A CCR-U in flight keeps the call waiting for that answer as usual.
  The SIP side is restored at once (in-dialog requests find their call); the store holds
  the restored sessions' CCRs until a Diameter peer is usable (``b2bua.store.gate``), so
  that the resend does not fail as NO_PEER (which would keep a CCR-T for 30 s, or end the
  call under CCFH TERMINATE). :func:`session_ids` names them.
* A grant that ran out while we were down (talk time reached the granted seconds): the call
  is ended with BYE to both legs (Reason as for credit exhaustion) and a CCR-T reporting the
  seconds up to the end of the grant. A non-final grant still running gets its CCR-U when
  due, with the next CC-Request-Number.
* ``end=True`` (calls adopted from a dead instance, ``adopt = end``): BYE to both legs and a
  CCR-T reporting the seconds up to ``min(now, end of the grant)``; a session never reports
  more than it was granted.
* Adopted while alive (cut off from Redis beyond the lease): :meth:`CallStateRecorder.forget`
  drops the call and its sessions here without BYE or CCR-T; the survivor owns them.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from b2bua.call.events import CallObserver, EndReason
from b2bua.diameter.errors import DecodeError
from b2bua.sip.errors import SipParseError

if TYPE_CHECKING:
    from b2bua.call.bridge import Bridge, Call
    from b2bua.call.callmap import CallMap
    from b2bua.charging.engine import ChargingEngine

__all__ = [
    "CSEQ_MARGIN",
    "RECORD_VERSION",
    "CallStateRecorder",
    "RecordError",
    "decode_record",
    "encode_record",
    "session_ids",
]

#: The record layout; a record of another version is refused (RecordError).
RECORD_VERSION: Final = 1
#: Added to each leg's local CSeq on restore: more requests than this between two writes
#: of the same call could repeat a CSeq number (refreshes and charging events write).
CSEQ_MARGIN: Final = 10_000
#: Key prefix of a kept CCR-T's record.
CCRT_PREFIX: Final = "ccrt:"

#: What a bad record raises while being read back.
_BAD: Final = (KeyError, TypeError, ValueError, SipParseError, DecodeError, binascii.Error)


class RecordError(ValueError):
    """A record that cannot be restored: bad JSON, unknown version, missing or bad field."""


def encode_record(record: dict[str, Any]) -> bytes:
    """Compact JSON (UTF-8) of a record."""
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def decode_record(data: bytes) -> dict[str, Any]:
    """The record of :func:`encode_record` bytes; RecordError if not one."""
    try:
        record = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RecordError(f"not a JSON record: {err}") from err
    if not isinstance(record, dict):
        raise RecordError("a record is a JSON object")
    version = record.get("v")
    if version != RECORD_VERSION:
        raise RecordError(f"record version {version!r}, expected {RECORD_VERSION}")
    if not isinstance(record.get("key"), str):
        raise RecordError("a record needs its key")
    return record


def session_ids(record: dict[str, Any]) -> list[str]:
    """The Session-Ids of the Ro sessions (or the kept CCR-T) in a decoded record."""
    kept = record.get("ccrt")
    if isinstance(kept, dict):
        return [str(kept.get("session_id"))]
    ro = record.get("ro")
    sessions = ro.get("sessions") if isinstance(ro, dict) else None
    if not isinstance(sessions, list):
        return []
    return [str(item["session_id"]) for item in sessions if isinstance(item, dict)]


class CallStateRecorder(CallObserver):
    """Records of the live calls and Ro sessions; tells listeners when one changes."""

    def __init__(
        self,
        calls: CallMap,
        engine: ChargingEngine | None,
        *,
        cseq_margin: int = CSEQ_MARGIN,
    ) -> None:
        self._calls = calls
        self._engine = engine
        self._cseq_margin = cseq_margin
        self._listeners: list[Callable[[str], None]] = []
        #: key -> the engine's id of the call (the call map's ``Call.id``).
        self._charged: dict[str, str] = {}
        calls.add_observer(self)
        if engine is not None:
            engine.add_listener(self._engine_changed)

    # -- listening ------------------------------------------------------------------------

    def listen(self, changed: Callable[[str], None]) -> None:
        """Call ``changed(key)`` after every change to persist (see the module docstring)."""
        self._listeners.append(changed)

    def _changed(self, key: str) -> None:
        for listener in list(self._listeners):
            listener(key)

    def _engine_changed(self, call_id: str, key: str) -> None:
        engine = self._engine
        if not key.startswith(CCRT_PREFIX) and engine is not None:
            if engine.keeps(call_id):
                self._charged[key] = call_id
            else:  # the last session ended: forget the call even if nobody asks record_of
                self._charged.pop(key, None)
        self._changed(key)

    def call_changed(self, call: Call) -> None:
        """The call was confirmed, or a target or session timer refreshed."""
        self._changed(call.a.call_id)

    def call_ended(self, call: Call) -> None:
        """An ended call is no longer restorable (one never answered never was one)."""
        if call.answered_at is not None:
            self._changed(call.a.call_id)

    def call_restored(self, call: Call) -> None:
        """Write a restored call at once: its raised CSeqs must be what a restart sees."""
        self._changed(call.a.call_id)

    # -- records --------------------------------------------------------------------------

    def record_of(self, key: str, now: float) -> dict[str, Any] | None:
        """What a restart needs for ``key``, or None when nothing is left to persist."""
        engine = self._engine
        if key.startswith(CCRT_PREFIX):
            kept = None if engine is None else engine.snapshot_termination(key[len(CCRT_PREFIX) :])
            if kept is None:
                return None
            return {"v": RECORD_VERSION, "key": key, "saved_at": now, "ccrt": kept}
        call = self._calls.snapshot_of(key)
        call_id = self._charged.get(key) or (None if call is None else str(call["id"]))
        ro = None if engine is None or call_id is None else engine.snapshot_call(call_id)
        if call is None and ro is None:
            return None
        return {"v": RECORD_VERSION, "key": key, "saved_at": now, "call": call, "ro": ro}

    def keys(self) -> list[str]:
        """Every key that has a record now (what shutdown mode writes)."""
        keys = {
            bridge_key
            for bridge_key in (call.a.call_id for call in self._calls.calls())
            if self._calls.snapshot_of(bridge_key) is not None
        }
        engine = self._engine
        if engine is not None:
            charged = engine.persistent_calls()
            self._charged = dict(charged)
            keys.update(charged)
            keys.update(CCRT_PREFIX + kept.session_id for kept in engine.pending_terminations)
        return sorted(keys)

    def forget(self, key: str) -> list[str]:
        """Drop ``key``'s call and Ro sessions here, silently; returns the Session-Ids dropped.

        A survivor adopted the record while this instance was cut off from Redis: it ends
        or charges the call now, and one CCR-T per session must come from it alone.
        """
        engine = self._engine
        if key.startswith(CCRT_PREFIX):
            session_id = key[len(CCRT_PREFIX) :]
            forgotten = engine is not None and engine.forget_termination(session_id)
            return [session_id] if forgotten else []
        call = self._calls.get(key)
        call_id = self._charged.pop(key, None) or (None if call is None else call.id)
        self._calls.forget_call(key)
        if engine is None or call_id is None:
            return []
        return engine.forget_call(call_id)

    # -- restoring ------------------------------------------------------------------------

    def restore(self, record: dict[str, Any], now: float, *, end: bool = False) -> None:
        """Rebuild the call and its Ro sessions of ``record`` (module docstring: decisions).

        Everything is read and checked before anything is installed: a bad record raises
        RecordError and leaves no state behind.
        """
        engine = self._engine
        try:
            if record.get("v") != RECORD_VERSION:
                raise RecordError(f"record version {record.get('v')!r}")
            key = record["key"]
            saved_at = float(record["saved_at"])
            if not isinstance(key, str):
                raise TypeError("the key is not a string")
            if key.startswith(CCRT_PREFIX):
                if engine is None:
                    raise RecordError(f"{key}: a CCR-T to send but charging is off")
                engine.restore_termination(record["ccrt"])
                self._changed(key)
                return
            call_data = record["call"]
            ro_data = record["ro"]
            if call_data is None and ro_data is None:
                raise RecordError(f"{key}: neither a call nor Ro sessions")
            if ro_data is not None and engine is None:
                raise RecordError(f"{key}: Ro sessions to end but charging is off")
            bridge: Bridge | None = None
            if call_data is not None:
                bridge = self._calls.load_call(call_data, cseq_margin=self._cseq_margin)
                if bridge.a.call_id != key:
                    raise ValueError(f"the call's A-leg Call-ID is not {key}")
            loaded = None
            if ro_data is not None and engine is not None:
                loaded = engine.load_call(ro_data)
                if bridge is not None and loaded.call_id != bridge.call.id:
                    raise ValueError("the Ro sessions belong to another call")
        except RecordError:
            raise
        except _BAD as err:
            raise RecordError(f"record {record.get('key')!r}: {err!r}") from err
        if bridge is not None:
            self._calls.install_call(bridge)
        if loaded is not None and engine is not None:
            self._charged[key] = loaded.call_id
            if bridge is None:
                end_at: float | None = saved_at  # the call did not survive: it ended then
            else:
                end_at = now if end else None
            engine.install_call(loaded, end_at=end_at, cause="ended on restore")
        if bridge is not None and end:
            bridge.call.end(EndReason.SHUTDOWN)
        self._changed(key)
