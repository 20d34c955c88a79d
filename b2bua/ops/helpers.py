"""The operator's helpers: what the manhole's Python prompt offers, as short readable text.

Each helper returns a :class:`Report`, a ``str`` whose ``repr`` is the text itself, so
that the interactive prompt prints a table as a table (and code can still use it as a
string).  The helpers only read the service tree, except ``kill``, ``reload``, ``drain``
and ``undrain``, which act on it the way a signal or the shutdown would.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import fields, is_dataclass
from typing import TYPE_CHECKING, Any

from b2bua.call.events import CallState, EndReason

if TYPE_CHECKING:
    from b2bua.call.bridge import Call

__all__ = ["HELPERS", "Operator", "Report", "table"]


class Report(str):
    """Text whose repr is the text: the manhole prints it as it is."""

    __slots__ = ()

    def __repr__(self) -> str:
        return str(self)


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Left-aligned columns separated by two spaces, a header line first."""
    text_rows = [[str(cell) for cell in row] for row in rows]
    widths = [len(header) for header in headers]
    for row in text_rows:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [list(headers), *text_rows]
    ]
    return "\n".join(lines)


def pairs(items: Iterable[tuple[str, object]]) -> str:
    """``name  value`` lines, names aligned."""
    items = list(items)
    width = max((len(name) for name, _ in items), default=0)
    return "\n".join(f"{name.ljust(width)}  {value}" for name, value in items)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"


def _ago(now: float, then: float | None) -> str:
    return "never" if then is None else f"{max(0.0, now - then):.1f}s ago"


def _brief(text: str, limit: int = 100) -> str:
    """``text`` cut to ``limit`` characters (an SDP body would fill the screen)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _number(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))
    return str(value)


def _counters(obj: object, prefix: str = "") -> list[tuple[str, object]]:
    """A dataclass's counters as (name, value), nested dataclasses and Counters flattened."""
    result: list[tuple[str, object]] = []
    if not is_dataclass(obj):
        return result
    for f in fields(obj):
        value = getattr(obj, f.name)
        if is_dataclass(value):
            result.extend(_counters(value, f"{prefix}{f.name}."))
        elif isinstance(value, dict):
            result.extend((f"{prefix}{f.name}.{key}", n) for key, n in sorted(value.items()))
        elif isinstance(value, int | float):
            result.append((f"{prefix}{f.name}", value))
    return result


#: name, signature, what it does: what help() prints.
HELPERS: tuple[tuple[str, str, str], ...] = (
    ("calls", "calls()", "calls in progress: caller, callee, state, duration, Ro units, sessions"),
    ("call", "call(id)", "everything known about one call (its id or either leg's Call-ID)"),
    ("kill", "kill(id, reason='operator')", "end a call: BYE to both legs, CCR-T to the OCS"),
    ("stats", "stats()", "the 14 Ro statistics (Kamailio names), SIP and Diameter counters"),
    ("peers", "peers()", "Diameter peers: state, last DWA, latency, requests pending"),
    ("routes", "routes()", "the routes new calls are matched against, in order"),
    ("reload", "reload()", "re-read the configuration file, as SIGHUP does"),
    ("drain", "drain()", "refuse new calls with 503; calls in progress go on"),
    ("undrain", "undrain()", "accept new calls again"),
    ("help", "help()", "this list"),
)


class Operator:
    """The helpers, bound to the root service (``root``) of a running b2bua.

    ``reload`` re-reads the configuration and returns the problems found (none: applied);
    ``clock`` gives the time (the reactor's ``seconds``).
    """

    def __init__(
        self,
        root: Any,
        *,
        reload: Callable[[], list[str]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.root = root
        self._reload = reload
        self._clock = clock

    def namespace(self) -> dict[str, object]:
        """What the manhole's prompt sees: ``root`` and each helper by name."""
        names: dict[str, object] = {"root": self.root}
        for name, _, _ in HELPERS:
            names[name] = getattr(self, name)
        return names

    # ---------------------------------------------------------------------- calls

    def _sessions(self, call: Call) -> list[str]:
        charging = getattr(self.root, "charging", None)
        if charging is None:
            return []
        return list(charging.session_ids_of(call.id))

    def _units(self, call: Call, *, long: bool = False) -> str:
        """Seconds granted and used of each Ro session: ``60/30s``, or spelt out; ``-``."""
        charging = getattr(self.root, "charging", None)
        if charging is None:
            return "-"
        figures = charging.call_figures(call.id).sessions
        if long:
            return "; ".join(f"granted {f.granted}, used {f.used}" for f in figures) or "-"
        return " ".join(f"{f.granted}/{f.used}s" for f in figures) or "-"

    def _duration(self, call: Call) -> float:
        if call.answered_at is None:
            return 0.0
        end = call.ended_at if call.ended_at is not None else self._clock()
        return max(0.0, end - call.answered_at)

    def calls(self) -> Report:
        """The calls in progress, one line each."""
        calls = self.root.calls.calls()
        if not calls:
            return Report("no calls")
        rows = [
            (
                call.id,
                call.caller,
                call.callee,
                call.state.value,
                _seconds(self._duration(call)),
                self._units(call),
                " ".join(self._sessions(call)) or "-",
            )
            for call in sorted(calls, key=lambda call: call.received_at)
        ]
        headers = ("id", "caller", "callee", "state", "duration", "granted/used", "ro sessions")
        return Report(table(headers, rows) + f"\n{len(calls)} call(s)")

    def _find(self, call_id: str) -> Call | None:
        return self.root.calls.get(str(call_id))  # type: ignore[no-any-return]

    def call(self, call_id: str) -> Report:
        """Everything known about one call."""
        call = self._find(call_id)
        if call is None:
            return Report(f"no call {call_id!r}")
        now = self._clock()
        items: list[tuple[str, object]] = [
            ("id", call.id),
            ("state", call.state.value),
            ("caller", call.caller),
            ("callee", call.callee),
            ("route", call.route.name),
            ("source", str(call.source)),
            ("a-leg", f"Call-ID {call.a.call_id} tag {call.a.local_tag} via {call.a.hop()}"),
            ("b-leg", f"Call-ID {call.b.call_id} tag {call.b.local_tag} via {call.b.hop()}"),
            ("received", _ago(now, call.received_at)),
            ("answered", _ago(now, call.answered_at)),
            ("duration", _seconds(self._duration(call))),
            ("ro sessions", ", ".join(self._sessions(call)) or "-"),
            ("ro seconds", self._units(call, long=True)),
        ]
        if call.end_reason is not None:
            status = f" ({call.end_status})" if call.end_status is not None else ""
            items.append(("ended", f"{call.end_reason.value}{status}"))
        for key, value in sorted(call.data.items()):
            items.append((f"data.{key}", _brief(repr(value))))
        return Report(pairs(items))

    def kill(self, call_id: str, reason: str = "operator") -> Report:
        """End a call: BYE (or CANCEL, or a final answer) to both legs; CCR-T when charged."""
        call = self._find(call_id)
        if call is None:
            return Report(f"no call {call_id!r}")
        if call.end_reason is not None or call.state is CallState.ENDING:
            return Report(f"call {call.id} is already ending ({call.end_reason})")
        text = str(reason).replace("\\", "").replace('"', "'")
        call.end(EndReason.OPERATOR_KILL, f'SIP;cause=200;text="{text}"')
        return Report(f"call {call.id} ended: {EndReason.OPERATOR_KILL.value} ({text})")

    # --------------------------------------------------------------------- status

    def stats(self) -> Report:
        """Charging, call, SIP and Diameter counters."""
        root = self.root
        sections: list[str] = []
        charging = getattr(root, "charging", None)
        if charging is not None:
            items: list[tuple[str, object]] = [
                (name, _number(value)) for name, value in charging.stats.snapshot().items()
            ]
            items += [(name, value) for name, value in charging.stats.event_snapshot().items()]
            items.append(("active_sessions", charging.active_sessions))
            sections.append("[charging]\n" + pairs(items))
        else:
            sections.append("[charging]\noff (no Diameter peer)")
        calls = root.calls
        call_items: list[tuple[str, object]] = [("active", calls.active), ("in map", len(calls))]
        call_items += _counters(calls.stats)
        sections.append("[calls]\n" + pairs(call_items))
        endpoint = getattr(root, "endpoint", None)
        if endpoint is not None:
            sections.append("[sip]\n" + pairs(_counters(endpoint.stats)))
        diameter = getattr(root, "diameter", None)
        if diameter is not None:
            items = [("pending", diameter.pending_count), *_counters(diameter.stats)]
            sections.append("[diameter]\n" + pairs(items))
        return Report("\n\n".join(sections))

    def peers(self) -> Report:
        """The Diameter peers and how they are doing."""
        diameter = getattr(self.root, "diameter", None)
        if diameter is None:
            return Report("no Diameter peers configured")
        now = self._clock()
        rows = [
            (
                peer.name,
                peer.uri,
                f"{peer.state}/{peer.watchdog}",
                "yes" if peer.usable else "no",
                _ago(now, peer.last_dwa),
                "-" if peer.latency is None else f"{peer.latency * 1000:.1f}ms",
                peer.pending,
            )
            for peer in diameter.peer_status()
        ]
        headers = ("peer", "uri", "state/watchdog", "usable", "last DWA", "latency", "pending")
        return Report(table(headers, rows))

    def routes(self) -> Report:
        """The routes, in the order new calls are matched against them."""
        routes = self.root.calls.router.routes
        if not routes:
            return Report("no routes: every call is refused 404")
        rows = [
            (
                route.name,
                route.priority,
                ",".join(str(net) for net in route.source) or "*",
                route.trunk or "*",
                ",".join(route.user_prefix) or "*",
                route.domain or "*",
                route.next_hop or "(back to source)",
                route.charging,
                route.max_calls or "-",
            )
            for route in routes
        ]
        headers = ("route", "prio", "source", "trunk", "prefix", "domain", "next hop", "charging",
                   "max")  # fmt: skip
        return Report(table(headers, rows))

    # -------------------------------------------------------------------- actions

    def reload(self) -> Report:
        """Re-read the configuration (routes, trusted sources, manhole users), as SIGHUP does."""
        if self._reload is None:
            return Report("reload is not available here")
        problems = self._reload()
        if problems:
            return Report("reload refused; the old configuration stays:\n" + "\n".join(problems))
        return Report(f"reloaded: {len(self.root.calls.router.routes)} route(s)")

    def drain(self) -> Report:
        """Refuse new calls (503); the calls in progress go on."""
        callmap = self.root.calls
        callmap.drain()
        return Report(
            f"draining: new calls get 503; {callmap.active} call(s) in progress; undrain() to stop"
        )

    def undrain(self) -> Report:
        """Accept new calls again."""
        self.root.calls.resume()
        return Report("accepting new calls")

    def help(self) -> Report:
        """The helpers and what they do."""
        width = max(len(signature) for _, signature, _ in HELPERS)
        lines = [f"{signature.ljust(width)}  {why}" for _, signature, why in HELPERS]
        lines.append(f"{'root'.ljust(width)}  the service tree (root.calls, root.charging, ...)")
        return Report("\n".join(lines))
