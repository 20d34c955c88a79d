"""/metrics: what a scrape reads from the service tree, and the HTTP endpoint on loopback."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, cast

import pytest_twisted  # type: ignore[import-untyped]  # no py.typed
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.internet.threads import deferToThread
from twisted.logger import ILogObserver, globalLogPublisher

from b2bua.charging.stats import STAT_NAMES
from b2bua.config import parse_config_text
from b2bua.ops.cdr import CdrWriter
from b2bua.ops.exposition import Family, Sample, render
from b2bua.ops.metrics import CHARGING_METRICS, MetricsService, Sources, collect
from b2bua.tap import build_service
from tests.support.ports import free_port

P = ParamSpec("P")

CONFIG = (
    "[sip]\nlisten = udp:127.0.0.1:5999\n"
    "[diameter]\norigin_host = b2bua.test\norigin_realm = test\n"
    "[peer:ocs]\nuri = aaa://127.0.0.1:3999\nhost = ocs.test\n"
    "[route:all]\nnext_hop = 127.0.0.1:5998\ncharging = orig\n"
)


def in_reactor(test: Callable[P, Coroutine[Any, Any, None]]) -> Callable[P, Deferred[None]]:
    """pytest_twisted.ensureDeferred, typed: the coroutine test runs in the reactor."""
    wrapped: Callable[P, Deferred[None]] = pytest_twisted.ensureDeferred(test)
    return wrapped


def the_reactor() -> Any:
    from twisted.internet import reactor  # noqa: TID251 - pytest-twisted's running reactor

    return reactor


def fetch(url: str) -> tuple[int, str, str]:
    """GET `url` (in a thread): status, content type and body."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.headers["content-type"], response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["content-type"], err.read().decode()


def lines_of(text: str) -> dict[str, str]:
    """Sample lines as {name{labels}: value}."""
    return dict(
        line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#")
    )


def test_scrape_reads_every_live_counter_of_the_tree() -> None:
    """Charging's 14 statistics, sessions, calls, SIP and Diameter figures appear as read."""
    root = build_service(parse_config_text(CONFIG + "[metrics]\nlisten =\n"), MemoryReactorClock())
    assert root.metrics is None and root.charging is not None and root.diameter is not None
    stats = root.charging.stats
    stats.request_sent("initial")
    stats.answer_received("initial", success=True, elapsed_ms=12.0)
    stats.billed_secs = 42
    root.calls.stats.ended["caller hung up"] += 2
    root.endpoint.stats.count_request("INVITE")
    root.endpoint.stats.count_request("FROB")
    root.endpoint.stats.responses_sent_by_status[200] += 1
    root.endpoint.stats.responses_received_by_status[180] += 3
    sources = Sources(root.calls, root.endpoint, root.diameter, root.charging)
    samples = lines_of(render(collect(sources)))
    for stat in STAT_NAMES:
        assert CHARGING_METRICS[stat][0] in samples, stat
    assert samples["b2bua_initial_ccrs_total"] == "1"
    assert samples["b2bua_successful_initial_ccrs_total"] == "1"
    assert samples["b2bua_ccr_avg_response_time"] == "12"
    assert samples["b2bua_billed_secs_total"] == "42"
    assert samples["b2bua_ro_sessions_active"] == "0"
    assert samples["b2bua_calls_active"] == "0"
    assert samples['b2bua_calls_ended_total{reason="caller hung up"}'] == "2"
    assert samples['b2bua_calls_ended_total{reason="credit exhausted"}'] == "0"
    assert samples['b2bua_sip_requests_received_total{method="INVITE"}'] == "1"
    assert samples['b2bua_sip_requests_received_total{method="OTHER"}'] == "1"
    assert samples['b2bua_sip_responses_sent_total{code="200"}'] == "1"
    assert samples['b2bua_sip_responses_received_total{code="180"}'] == "3"
    assert samples["b2bua_diameter_peers_up"] == "0"
    assert samples['b2bua_diameter_peer_up{peer="ocs"}'] == "0"
    assert samples["b2bua_diameter_pending_requests"] == "0"


def test_tree_without_diameter_has_no_charging_metrics() -> None:
    """No peers: no charging figures, but calls and SIP are still exported."""
    root = build_service(
        parse_config_text("[sip]\nlisten = udp:127.0.0.1:5999\n[metrics]\nlisten =\n"),
        MemoryReactorClock(),
    )
    names = {family.name for family in collect(Sources(root.calls, root.endpoint))}
    assert "b2bua_calls_active" in names and "b2bua_sip_requests_received_total" in names
    assert "b2bua_initial_ccrs_total" not in names


def test_tree_has_metrics_service_and_cdr_observer_when_configured(tmp_path: Any) -> None:
    """[metrics] listen adds the service; [cdr] file adds the observer after charging's."""
    root = build_service(
        parse_config_text(
            CONFIG + f"[metrics]\nlisten = tcp:{free_port()}:interface=127.0.0.1\n"
            f"[cdr]\nfile = {tmp_path}/cdr.jsonl\n",
            str(tmp_path / "b2bua.conf"),
        ),
        MemoryReactorClock(),
    )
    assert root.metrics is not None and root.getServiceNamed("metrics") is root.metrics
    assert isinstance(root.cdr, CdrWriter)
    assert root.calls.observers[-1] is root.cdr


@in_reactor
async def test_metrics_are_served_over_http_on_loopback() -> None:
    """GET /metrics answers 200 in the 0.0.4 text format; other paths get 404."""
    reactor = the_reactor()
    port = free_port()
    families = [Family("b2bua_test_total", "counter", "a test", [Sample(5)])]
    service = MetricsService(f"tcp:{port}:interface=127.0.0.1", lambda: families, reactor)
    service.startService()
    try:
        status, content_type, body = await deferToThread(fetch, f"http://127.0.0.1:{port}/metrics")
        assert status == 200
        assert content_type == "text/plain; version=0.0.4; charset=utf-8"
        assert "b2bua_test_total 5\n" in body
        status, _, _ = await deferToThread(fetch, f"http://127.0.0.1:{port}/other")
        assert status == 404
    finally:
        await service.stopService()


@in_reactor
async def test_a_port_in_use_leaves_metrics_off_with_an_error() -> None:
    """A listener that cannot bind logs one error and does not stop the process."""
    reactor = the_reactor()
    port = free_port()
    first = MetricsService(f"tcp:{port}:interface=127.0.0.1", list, reactor)
    first.startService()
    seen: list[str] = []

    def observer(event: dict[str, Any]) -> None:
        if "cannot listen" in event.get("log_format", ""):
            seen.append(event["listen"])

    globalLogPublisher.addObserver(cast(ILogObserver, observer))
    try:
        second = MetricsService(f"tcp:{port}:interface=127.0.0.1", list, reactor)
        second.startService()
        assert second.port is None and seen == [f"tcp:{port}:interface=127.0.0.1"]
        second.stopService()
    finally:
        globalLogPublisher.removeObserver(cast(ILogObserver, observer))
        await first.stopService()
