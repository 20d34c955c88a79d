"""/metrics: what a scrape reads from the service tree, and the HTTP endpoint on loopback."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec

import pytest
import pytest_twisted  # type: ignore[import-untyped]  # no py.typed
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.internet.threads import deferToThread

from b2bua.charging.stats import STAT_NAMES
from b2bua.config import parse_config_text
from b2bua.daemon import ListenError
from b2bua.diameter.service import CCA_LATENCY_BOUNDS
from b2bua.ops.cdr import CdrWriter
from b2bua.ops.exposition import Family, Sample, render
from b2bua.ops.metrics import CHARGING_METRICS, MetricsService, Sources, collect
from b2bua.tap import build_service
from tests.support.daemon import twistd
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
async def test_a_port_in_use_stops_start_up_with_one_clear_error() -> None:
    """A listener that cannot bind raises ListenError naming it (start-up ends, status 1)."""
    reactor = the_reactor()
    port = free_port()
    listen = f"tcp:{port}:interface=127.0.0.1"
    first = MetricsService(listen, list, reactor)
    first.startService()
    try:
        second = MetricsService(listen, list, reactor)
        with pytest.raises(ListenError, match=f"metrics cannot listen on {listen}: "):
            second.startService()
        assert second.port is None and not second.running
    finally:
        await first.stopService()


def test_metrics_port_in_use_ends_the_daemon_with_status_1(tmp_path: Any) -> None:
    """The real daemon with its metrics port taken exits 1 with one critical line."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = tmp_path / "b2bua.conf"
        config.write_text(
            f"[sip]\nlisten = udp:127.0.0.1:{free_port()}\n"
            f"[metrics]\nlisten = tcp:{port}:interface=127.0.0.1\n"
        )
        result = twistd("-n", "--pidfile=", "b2bua", "--config", str(config), cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    critical = [line for line in output.splitlines() if "#critical]" in line]
    assert len(critical) == 1 and f"metrics cannot listen on tcp:{port}" in critical[0], output
    assert "Traceback" not in output


def test_cca_latency_histogram_counts_each_answer_once_by_peer() -> None:
    """Observed latencies land in the first bucket whose bound is >= them; cumulative on read."""
    root = build_service(parse_config_text(CONFIG + "[metrics]\nlisten =\n"), MemoryReactorClock())
    assert root.diameter is not None
    ((name, live),) = root.diameter.cca_latency()
    assert name == "ocs" and live.bounds == CCA_LATENCY_BOUNDS
    for seconds in (0.0004, 0.001, 0.003, 0.2, 30.0):
        live.observe(seconds)
    samples = lines_of(render(collect(Sources(diameter=root.diameter))))
    bucket = 'b2bua_cca_latency_seconds_bucket{peer="ocs",le="%s"}'
    assert samples[bucket % "0.001"] == "2"  # 0.4 ms and exactly 1 ms
    assert samples[bucket % "0.0025"] == "2"
    assert samples[bucket % "0.005"] == "3"
    assert samples[bucket % "0.25"] == "4"
    assert samples[bucket % "10"] == "4"
    assert samples[bucket % "+Inf"] == "5"
    assert samples['b2bua_cca_latency_seconds_count{peer="ocs"}'] == "5"
    assert float(samples['b2bua_cca_latency_seconds_sum{peer="ocs"}']) == pytest.approx(30.2044)
    assert samples["b2bua_diameter_pending_requests"] == "0"  # the gauges are still there
