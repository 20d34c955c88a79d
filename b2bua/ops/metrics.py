"""``/metrics``: the Prometheus scrape endpoint (twisted.web glue).

Pull-based: every scrape reads the live objects of the service tree (the charging
statistics, the call map, the SIP endpoint's and the Diameter node's counters) and
renders them with :mod:`b2bua.ops.exposition`; nothing is done per SIP or Diameter
message for the metrics' sake.  The names are listed in :data:`CHARGING_METRICS` and in
README.md ("Metrics and CDRs").

A metrics listener that cannot bind ends start-up (one line, exit status 1), as any
other listener does: a node whose monitoring silently failed would look healthy while
blind.  ``[metrics] listen`` empty runs without it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IListeningPort
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from b2bua import logs
from b2bua.call.events import EndReason
from b2bua.charging.stats import STAT_NAMES
from b2bua.daemon import listen_now
from b2bua.ops.exposition import CONTENT_TYPE, Family, MetricType, Sample, render

if TYPE_CHECKING:
    from b2bua.call.callmap import CallMap
    from b2bua.charging.engine import ChargingEngine
    from b2bua.diameter.service import DiameterService
    from b2bua.sip.endpoint import SipEndpoint
    from b2bua.store.service import StoreService

__all__ = ["CHARGING_METRICS", "MetricsResource", "MetricsService", "Sources", "collect"]

log = logs.logger(__name__)

#: Kamailio's ims_charging statistic -> (Prometheus name, type, help).
CHARGING_METRICS: dict[str, tuple[str, MetricType, str]] = {
    "initial_ccrs": ("b2bua_initial_ccrs_total", "counter", "CCR-Initial requests sent"),
    "interim_ccrs": ("b2bua_interim_ccrs_total", "counter", "CCR-Update requests sent"),
    "final_ccrs": ("b2bua_final_ccrs_total", "counter", "CCR-Termination requests sent"),
    "successful_initial_ccrs": (
        "b2bua_successful_initial_ccrs_total",
        "counter",
        "CCA-Initial answers with a 2xxx Result-Code",
    ),
    "successful_interim_ccrs": (
        "b2bua_successful_interim_ccrs_total",
        "counter",
        "CCA-Update answers with a 2xxx Result-Code",
    ),
    "successful_final_ccrs": (
        "b2bua_successful_final_ccrs_total",
        "counter",
        "CCA-Termination answers with a 2xxx Result-Code",
    ),
    "failed_initial_ccrs": (
        "b2bua_failed_initial_ccrs_total",
        "counter",
        "CCR-Initial requests failed (error answer, timeout, no peer)",
    ),
    "failed_interim_ccrs": (
        "b2bua_failed_interim_ccrs_total",
        "counter",
        "CCR-Update requests failed (error answer, timeout, no peer)",
    ),
    "failed_final_ccrs": (
        "b2bua_failed_final_ccrs_total",
        "counter",
        "CCR-Termination requests failed (error answer, timeout, no peer)",
    ),
    "ccr_avg_response_time": (
        "b2bua_ccr_avg_response_time",
        "gauge",
        "mean CCR round trip in milliseconds over the answers received",
    ),
    "ccr_responses_time": (
        "b2bua_ccr_responses_time_total",
        "counter",
        "CCR round trips summed, in milliseconds",
    ),
    "ccr_timeouts": ("b2bua_ccr_timeouts_total", "counter", "CCRs not answered within Tx"),
    "billed_secs": (
        "b2bua_billed_secs_total",
        "counter",
        "seconds reported to the OCS by finished Ro sessions",
    ),
    "killed_calls": (
        "b2bua_killed_calls_total",
        "counter",
        "calls ended by b2bua for lack of credit",
    ),
}

#: Event charging statistics (SIP MESSAGE) -> (Prometheus name, type, help).
EVENT_METRICS: dict[str, tuple[str, MetricType, str]] = {
    "event_ccrs": ("b2bua_event_ccrs_total", "counter", "CCRs of charged events sent"),
    "successful_event_ccrs": (
        "b2bua_successful_event_ccrs_total",
        "counter",
        "CCAs of charged events with a 2xxx Result-Code",
    ),
    "failed_event_ccrs": (
        "b2bua_failed_event_ccrs_total",
        "counter",
        "CCRs of charged events failed (error answer, timeout, no peer)",
    ),
    "billed_events": (
        "b2bua_billed_events_total",
        "counter",
        "event units (messages) reported used to the OCS",
    ),
    "refused_events": (
        "b2bua_refused_events_total",
        "counter",
        "charged events refused (no credit, charging error)",
    ),
}


@dataclass(frozen=True, slots=True)
class Sources:
    """The live objects a scrape reads (None: not configured)."""

    calls: CallMap | None = None
    endpoint: SipEndpoint | None = None
    diameter: DiameterService | None = None
    charging: ChargingEngine | None = None
    store: StoreService | None = None


def _family(name: str, kind: MetricType, text: str, *samples: Sample) -> Family:
    return Family(name, kind, text, samples)


def collect(sources: Sources) -> list[Family]:
    """Every metric of one scrape, read from ``sources`` now."""
    families: list[Family] = []
    charging = sources.charging
    if charging is not None:
        snapshot = charging.stats.snapshot()
        for stat in STAT_NAMES:
            name, kind, text = CHARGING_METRICS[stat]
            families.append(_family(name, kind, text, Sample(snapshot[stat])))
        for stat, value in charging.stats.event_snapshot().items():
            name, kind, text = EVENT_METRICS[stat]
            families.append(_family(name, kind, text, Sample(value)))
        families.append(
            _family(
                "b2bua_ro_sessions_active",
                "gauge",
                "Ro sessions open or opening",
                Sample(charging.active_sessions),
            )
        )
    if sources.calls is not None:
        calls = sources.calls
        families.append(
            _family("b2bua_calls_active", "gauge", "calls not ended yet", Sample(calls.active))
        )
        ended = calls.stats.ended
        reasons = [reason.value for reason in EndReason]
        reasons += sorted(set(ended) - set(reasons))
        families.append(
            _family(
                "b2bua_calls_ended_total",
                "counter",
                "calls ended, by end reason",
                *(Sample(ended.get(reason, 0), {"reason": reason}) for reason in reasons),
            )
        )
        families.append(
            _family(
                "b2bua_calls_received_total",
                "counter",
                "initial INVITEs received",
                Sample(calls.stats.calls_received),
            )
        )
        families.append(
            _family(
                "b2bua_calls_answered_total",
                "counter",
                "calls answered by the callee",
                Sample(calls.stats.calls_answered),
            )
        )
        families.append(
            _family(
                "b2bua_calls_refused_overload_total",
                "counter",
                "initial INVITEs refused 503 by overload control (max_call_rate, overload_lag)",
                Sample(calls.stats.refused_overload),
            )
        )
    if sources.endpoint is not None:
        families.extend(_sip(sources.endpoint))
    if sources.diameter is not None:
        families.extend(_diameter(sources.diameter))
    if sources.store is not None:
        families.extend(_store(sources.store))
    return families


def _store(store: StoreService) -> list[Family]:
    """[store]: Redis reachability, the write queue, and what was written and restored."""
    stats = store.stats
    return [
        _family(
            "b2bua_store_redis_up", "gauge", "1 while Redis answers", Sample(int(store.redis_up))
        ),
        _family(
            "b2bua_store_queue_depth",
            "gauge",
            "calls whose writes wait for Redis",
            Sample(store.queue_depth),
        ),
        _family(
            "b2bua_store_writes_total",
            "counter",
            "call records written or deleted in Redis",
            Sample(stats.writes),
        ),
        _family(
            "b2bua_store_write_errors_total",
            "counter",
            "store writes that failed (queued for later)",
            Sample(stats.write_errors),
        ),
        _family(
            "b2bua_store_records_restored_total",
            "counter",
            "own call records restored at start",
            Sample(stats.restored),
        ),
        _family(
            "b2bua_store_records_adopted_total",
            "counter",
            "call records adopted from dead instances",
            Sample(stats.adopted),
        ),
        _family(
            "b2bua_store_bad_records_total",
            "counter",
            "call records that could not be restored (deleted)",
            Sample(stats.bad_records),
        ),
        _family(
            "b2bua_store_leases_lost_total",
            "counter",
            "renewals that found this instance's calls adopted by a survivor",
            Sample(stats.leases_lost),
        ),
    ]


def _sip(endpoint: SipEndpoint) -> list[Family]:
    stats = endpoint.stats
    return [
        _family(
            "b2bua_sip_requests_received_total",
            "counter",
            "SIP requests received, by method (retransmissions included)",
            *(
                Sample(count, {"method": method})
                for method, count in sorted(stats.requests_by_method.items())
            ),
        ),
        _family(
            "b2bua_sip_responses_sent_total",
            "counter",
            "SIP responses sent, by status code (retransmissions included)",
            *(
                Sample(count, {"code": str(code)})
                for code, count in sorted(stats.responses_sent_by_status.items())
            ),
        ),
        _family(
            "b2bua_sip_responses_received_total",
            "counter",
            "SIP responses received, by status code (retransmissions included)",
            *(
                Sample(count, {"code": str(code)})
                for code, count in sorted(stats.responses_received_by_status.items())
            ),
        ),
        _family(
            "b2bua_sip_transactions",
            "gauge",
            "SIP transactions live (client and server, until their RFC 3261 timers end them)",
            Sample(len(endpoint.table)),
        ),
    ]


def _diameter(diameter: DiameterService) -> list[Family]:
    peers = diameter.peer_status()
    latencies = [
        Sample(peer.latency, {"peer": peer.name}) for peer in peers if peer.latency is not None
    ]
    return [
        _family(
            "b2bua_diameter_peers_up",
            "gauge",
            "Diameter peers open and taking requests",
            Sample(sum(peer.usable for peer in peers)),
        ),
        _family(
            "b2bua_diameter_peer_up",
            "gauge",
            "1 when the Diameter peer is open and taking requests",
            *(Sample(int(peer.usable), {"peer": peer.name}) for peer in peers),
        ),
        _family(
            "b2bua_diameter_pending_requests",
            "gauge",
            "Diameter requests waiting for an answer",
            Sample(diameter.pending_count),
        ),
        _family(
            "b2bua_diameter_answer_latency_seconds",
            "gauge",
            "moving average of the answer latency of each Diameter peer",
            *latencies,
        ),
        _family(
            "b2bua_diameter_requests_timed_out_total",
            "counter",
            "Diameter requests not answered within Tx",
            Sample(diameter.stats.requests_timed_out),
        ),
        _family(
            "b2bua_cca_latency_seconds",
            "histogram",
            "time from a CCR sent to its CCA received, by Diameter peer",
            *(
                sample
                for peer, live in diameter.cca_latency()
                for sample in live.samples({"peer": peer})
            ),
        ),
    ]


class MetricsResource(Resource):
    """``GET /metrics`` renders ``collect()``; every other path is 404."""

    isLeaf = True

    def __init__(self, collect: Callable[[], list[Family]]) -> None:
        super().__init__()
        self._collect = collect

    def render_GET(self, request: Request) -> bytes:
        if request.path not in (b"/metrics", b"/metrics/"):
            request.setResponseCode(404)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"not found; try /metrics\n"
        try:
            body = render(self._collect()).encode("utf-8")
        except Exception:  # a scrape must not take the process down
            log.failure("rendering /metrics failed")
            request.setResponseCode(500)
            return b"metrics unavailable\n"
        request.setHeader(b"content-type", CONTENT_TYPE.encode("ascii"))
        return body

    def render_HEAD(self, request: Request) -> bytes:
        return self.render_GET(request)


class MetricsService(Service):
    """Listens on a Twisted server endpoint string and serves ``/metrics``."""

    def __init__(self, listen: str, collect: Callable[[], list[Family]], reactor: Any) -> None:
        self.listen = listen
        self.site = Site(MetricsResource(collect))
        self.site.displayTracebacks = False
        self.site.noisy = False
        self._reactor = reactor
        self.port: IListeningPort | None = None

    def startService(self) -> None:
        port: IListeningPort = listen_now(self._reactor, self.listen, self.site, "metrics")
        self.port = port
        super().startService()
        address = port.getHost()
        where = f"{getattr(address, 'host', '')}:{getattr(address, 'port', '')}".strip(":")
        log.info("metrics on http://{where}/metrics", where=where or self.listen)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        port, self.port = self.port, None
        if port is None:
            return succeed(None)
        stopped = port.stopListening()
        return stopped if isinstance(stopped, Deferred) else succeed(None)
