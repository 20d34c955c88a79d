"""The operator's helpers against a fake service tree: short, readable text."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from b2bua.call.callmap import CallStats
from b2bua.call.events import CallState, EndReason
from b2bua.charging.engine import CallFigures, SessionFigures
from b2bua.charging.stats import STAT_NAMES, ChargingStats
from b2bua.config import parse_config_text
from b2bua.diameter.service import DiameterStats, PeerStatus
from b2bua.ops.helpers import HELPERS, Operator, Report, table
from b2bua.sip.dialog import Hop
from b2bua.sip.endpoint import EndpointStats

NOW = 1000.0


class FakeLeg:
    def __init__(self, call_id: str, tag: str) -> None:
        self.call_id = call_id
        self.local_tag = tag

    def hop(self) -> Hop:
        return Hop("udp", "127.0.0.1", 5080)


class FakeCall:
    """What the helpers read of a Call, and what ``end`` was asked."""

    def __init__(self, call_id: str, *, answered_at: float | None = None) -> None:
        self.id = call_id
        self.caller = "sip:+15550101@127.0.0.1"
        self.callee = "sip:15550199@127.0.0.1"
        self.state = CallState.CONFIRMED if answered_at is not None else CallState.CALLING
        self.route = SimpleNamespace(name="all")
        self.source = Hop("udp", "127.0.0.1", 5070)
        self.a = FakeLeg(f"{call_id}-a@sbc", "ta")
        self.b = FakeLeg(f"{call_id}-b", "tb")
        self.received_at = NOW - 20
        self.answered_at = answered_at
        self.ended_at: float | None = None
        self.end_reason: EndReason | None = None
        self.end_status: int | None = None
        self.data: dict[str, object] = {}
        self.ended: list[tuple[EndReason, str | None]] = []

    def end(self, reason: EndReason, reason_header: str | None = None) -> None:
        self.ended.append((reason, reason_header))
        self.end_reason = reason
        self.state = CallState.ENDING


class FakeCallMap:
    def __init__(self, *calls: FakeCall) -> None:
        self._calls = {call.id: call for call in calls}
        self.stats = CallStats(calls_received=3, calls_answered=2)
        self.router = SimpleNamespace(routes=parse_config_text(ROUTES).routes)
        self.draining = False

    def calls(self) -> list[FakeCall]:
        return list(self._calls.values())

    def get(self, call_id: str) -> FakeCall | None:
        return self._calls.get(call_id) or next(
            (c for c in self._calls.values() if call_id in (c.a.call_id, c.b.call_id)), None
        )

    @property
    def active(self) -> int:
        return len(self._calls)

    def __len__(self) -> int:
        return len(self._calls)

    def drain(self) -> None:
        self.draining = True

    def resume(self) -> None:
        self.draining = False


ROUTES = (
    "[route:premium]\npriority = 10\nuser_prefix = +1900\nnext_hop = 10.0.0.9:5060\n"
    "charging = orig\n[route:all]\nnext_hop = 127.0.0.1:5080\n"
)


@dataclass
class FakeCharging:
    stats: ChargingStats = field(default_factory=ChargingStats)
    sessions: dict[str, list[str]] = field(default_factory=dict)

    def call_figures(self, call_id: str) -> CallFigures:
        """Each session granted 30 s and has reported 12 s."""
        ids = self.sessions.get(call_id, [])
        return CallFigures(tuple(SessionFigures(sid, 30, 12, False, 2001) for sid in ids))

    @property
    def active_sessions(self) -> int:
        return sum(len(ids) for ids in self.sessions.values())

    def session_ids_of(self, call_id: str) -> list[str]:
        return self.sessions.get(call_id, [])


class FakeDiameter:
    pending_count = 1
    stats = DiameterStats(requests_sent=7, answers_received=6)

    def peer_status(self) -> list[PeerStatus]:
        return [
            PeerStatus(
                name="ocs",
                uri="aaa://127.0.0.1:3868",
                state="Open",
                watchdog="OKAY",
                usable=True,
                origin_host="ocs.test",
                realm="test",
                priority=1,
                connected_since=NOW - 60,
                last_dwa=NOW - 4.25,
                pending=1,
                latency=0.0021,
                last_latency=0.002,
                requests_sent=7,
                answers_received=6,
            )
        ]


def operator(*calls: FakeCall, charging: bool = True, **kwargs: Any) -> Operator:
    root = SimpleNamespace(
        calls=FakeCallMap(*calls),
        charging=FakeCharging(sessions={"c1": ["b2bua.test;1;1"]}) if charging else None,
        diameter=FakeDiameter() if charging else None,
        endpoint=SimpleNamespace(stats=EndpointStats(requests_received=5)),
    )
    return Operator(root, clock=lambda: NOW, **kwargs)


def test_reports_print_as_text_at_the_prompt() -> None:
    """A Report's repr is its text, so the manhole shows tables, not quoted strings."""
    report = Report("a\nb")
    assert repr(report) == "a\nb" and report == "a\nb"


def test_table_aligns_columns() -> None:
    """Columns are padded to their widest cell and separated by two spaces."""
    assert table(("id", "state"), [("c1", "up"), ("c22", "x")]).splitlines() == [
        "id   state",
        "c1   up",
        "c22  x",
    ]


def test_calls_lists_id_caller_callee_state_duration_and_ro_sessions() -> None:
    """calls() has one line per call: talk time so far, seconds granted/used, Session-Ids."""
    text = operator(FakeCall("c1", answered_at=NOW - 12.4), FakeCall("c2")).calls()
    lines = text.splitlines()
    assert lines[0].split() == [
        "id", "caller", "callee", "state", "duration", "granted/used", "ro", "sessions",
    ]  # fmt: skip
    assert lines[1].split() == [
        "c1", "sip:+15550101@127.0.0.1", "sip:15550199@127.0.0.1", "confirmed", "12.4s",
        "30/12s", "b2bua.test;1;1",
    ]  # fmt: skip
    assert lines[2].split()[3:] == ["calling", "0.0s", "-", "-"]
    assert lines[-1] == "2 call(s)"


def test_calls_says_so_when_there_are_none() -> None:
    """No calls: one short line."""
    assert operator().calls() == "no calls"


def test_call_shows_everything_known_about_one_call() -> None:
    """call(id) names legs, hops, times, route and Ro sessions; the A-leg Call-ID works too."""
    op = operator(FakeCall("c1", answered_at=NOW - 3))
    text = op.call("c1")
    assert "route        all" in text
    assert "a-leg        Call-ID c1-a@sbc tag ta via 127.0.0.1:5080;transport=udp" in text
    assert "answered     3.0s ago" in text
    assert "ro sessions  b2bua.test;1;1" in text
    assert "ro seconds   granted 30, used 12" in text
    assert op.call("c1-a@sbc") == text
    assert op.call("nope") == "no call 'nope'"


def test_kill_ends_the_call_as_an_operator_kill_with_a_reason_header() -> None:
    """kill(id) ends the call once, with OPERATOR_KILL and the reason in a Reason header."""
    call = FakeCall("c1", answered_at=NOW - 3)
    op = operator(call)
    assert op.kill("c1", reason='fraud "suspected"') == (
        "call c1 ended: operator kill (fraud 'suspected')"
    )
    assert call.ended == [(EndReason.OPERATOR_KILL, "SIP;cause=200;text=\"fraud 'suspected'\"")]
    assert "already ending" in op.kill("c1")
    assert len(call.ended) == 1
    assert op.kill("zz") == "no call 'zz'"


def test_stats_names_the_14_charging_statistics_and_the_counters() -> None:
    """stats() prints every Kamailio statistic, active sessions, call, SIP, Diameter counters."""
    op = operator()
    op.root.charging.stats.answer_received("initial", success=True, elapsed_ms=3.0)
    text = op.stats()
    names = {line.split()[0] for line in text.splitlines() if line and line[0] != "["}
    assert set(STAT_NAMES) <= names
    values = dict(line.split(None, 1) for line in text.splitlines() if "  " in line)
    assert values["ccr_avg_response_time"].strip() == "3"
    assert values["active_sessions"].strip() == "1"
    assert values["calls_received"].strip() == "3"
    assert "requests_received" in text.split("[sip]")[1].split("[diameter]")[0]
    assert "pending" in text.split("[diameter]")[1]


def test_stats_without_charging_says_it_is_off() -> None:
    """Without Diameter peers, stats() says charging is off and still lists the rest."""
    text = operator(charging=False).stats()
    assert "off (no Diameter peer)" in text and "[diameter]" not in text and "[sip]" in text


def test_peers_shows_state_last_dwa_latency_and_pending() -> None:
    """peers() has one line per peer."""
    lines = operator().peers().splitlines()
    assert lines[1].split() == [
        "ocs", "aaa://127.0.0.1:3868", "Open/OKAY", "yes", "4.2s", "ago", "2.1ms", "1",
    ]  # fmt: skip
    assert operator(charging=False).peers() == "no Diameter peers configured"


def test_routes_lists_the_routes_in_order() -> None:
    """routes() shows each route's match and next hop, in the router's order."""
    lines = operator().routes().splitlines()
    assert [line.split()[0] for line in lines] == ["route", "premium", "all"]
    assert "+1900" in lines[1] and "10.0.0.9:5060" in lines[1] and "orig" in lines[1]


def test_drain_and_undrain() -> None:
    """drain() refuses new calls, undrain() accepts them again."""
    op = operator(FakeCall("c1"))
    assert op.drain().startswith("draining: new calls get 503; 1 call(s) in progress")
    assert op.root.calls.draining
    assert op.undrain() == "accepting new calls"
    assert not op.root.calls.draining


def test_reload_reports_the_problems_or_the_routes() -> None:
    """reload() runs the reload function and says what happened."""
    problems: list[str] = []
    op = operator(reload=lambda: problems)
    assert op.reload() == "reloaded: 2 route(s)"
    problems.append("x.conf:3: [sip] t1 = -1: expected a number > 0 and <= 60")
    assert op.reload().splitlines() == [
        "reload refused; the old configuration stays:",
        "x.conf:3: [sip] t1 = -1: expected a number > 0 and <= 60",
    ]
    assert operator().reload() == "reload is not available here"


def test_help_lists_every_helper_and_the_namespace_has_them() -> None:
    """help() names every helper; the manhole namespace offers them and root."""
    op = operator()
    text = op.help()
    namespace = op.namespace()
    for name, signature, _ in HELPERS:
        assert signature in text
        assert callable(namespace[name])
    assert namespace["root"] is op.root
