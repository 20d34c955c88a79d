"""Metrics and CDRs end to end: one charged SIPp call, then a scrape and the CDR line.

Real processes on loopback: the daemon (lab OCS in-process, [metrics] and [cdr] on), SIPp
on both legs; the scrape and the CDR line are checked against the OCS ledger.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from b2bua.charging.stats import STAT_NAMES
from b2bua.diameter.service import CCA_LATENCY_BOUNDS
from b2bua.ops.metrics import CHARGING_METRICS
from tests.support.daemon import Daemon
from tests.support.ports import free_port
from tests.support.sipp import Sipp, run_until_done

pytestmark = pytest.mark.integration


class Lab:
    """The daemon with its OCS, metrics and CDRs on free loopback ports, and a callee."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.sip_port, self.callee_port = free_port(), free_port()
        self.ocs_port, self.metrics_port = free_port(), free_port()
        accounts = {"accounts": [{"subscriber": "+15550101", "seconds": 600}]}
        (workdir / "accounts.json").write_text(json.dumps(accounts))
        self.ledger = workdir / "ledger.jsonl"
        self.cdr = workdir / "cdr.jsonl"
        config = workdir / "b2bua.conf"
        config.write_text(
            f"[sip]\nlisten = udp:127.0.0.1:{self.sip_port}\n"
            "[calls]\ntrusted = 127.0.0.0/8\n"
            f"[route:all]\nnext_hop = 127.0.0.1:{self.callee_port}\ncharging = orig\n"
            "incoming_trunk_id = sbc-in\n"
            "[diameter]\norigin_host = b2bua.test\norigin_realm = test\n"
            "destination_realm = test\nreconnect_interval = 1\n"
            f"[peer:ocs]\nuri = aaa://127.0.0.1:{self.ocs_port}\nhost = ocs.test\n"
            f"[ocs]\nenabled = yes\nlisten = aaa://127.0.0.1:{self.ocs_port}\n"
            "origin_host = ocs.test\norigin_realm = test\n"
            "accounts = accounts.json\nledger = ledger.jsonl\n"
            f"[metrics]\nlisten = tcp:{self.metrics_port}:interface=127.0.0.1\n"
            "[cdr]\nfile = cdr.jsonl\n"
        )
        self.daemon = Daemon(config, log_path=workdir / "b2bua.log")
        self.daemon.wait_for_log("Diameter peer ocs open")
        self.daemon.wait_for_log("metrics on http://")
        self.sipps: list[Sipp] = []

    def sipp(self, scenario: str, port: int, **kwargs: object) -> Sipp:
        sipp = Sipp(scenario, self.dir, port, timeout=60, **kwargs)  # type: ignore[arg-type]
        self.sipps.append(sipp)
        return sipp.start()

    def scrape(self) -> dict[str, float]:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            assert response.status == 200
            text = response.read().decode()
        samples = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                samples[name] = float(value)
        return samples

    def ledger_entries(self) -> list[dict[str, object]]:
        if not self.ledger.exists():
            return []
        return [json.loads(line) for line in self.ledger.read_text().splitlines() if line]

    def wait_for(self, check: object, what: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():  # type: ignore[operator]
                return
            time.sleep(0.05)
        raise AssertionError(f"{what} not within {timeout}s:\n{self.daemon.log_text()}")

    def close(self) -> None:
        for sipp in self.sipps:
            sipp.stop()
        self.daemon.stop()


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    lab = Lab(tmp_path)
    yield lab
    lab.close()
    assert "Traceback" not in lab.daemon.log_text(), lab.daemon.log_text()


def test_one_charged_call_shows_in_metrics_and_in_one_cdr_line(lab: Lab) -> None:
    """A 2 s call: the 14 statistics, calls and SIP counters, and a CDR matching the ledger."""
    callee = lab.sipp("uas", lab.callee_port)
    caller = lab.sipp(
        "charged_uac.xml",
        free_port(),
        remote=f"127.0.0.1:{lab.sip_port}",
        service="15550199",
        extra=["-key", "caller", "+15550101", "-d", "2000"],
    )
    assert run_until_done(caller, callee, timeout=40) == [0, 0], caller.report() + callee.report()
    lab.wait_for(lambda: lab.cdr.exists() and lab.cdr.read_text(), "the CDR line")
    lab.wait_for(
        lambda: any(e["request_type"] == "TERMINATE" for e in lab.ledger_entries()), "the CCR-T"
    )
    lab.wait_for(lambda: lab.scrape()["b2bua_ro_sessions_active"] == 0, "the session's end")
    debited = sum(int(e["debited"]) for e in lab.ledger_entries())  # type: ignore[call-overload]
    assert 2 <= debited <= 3

    samples = lab.scrape()
    expected = {
        "initial_ccrs": 1,
        "interim_ccrs": 0,
        "final_ccrs": 1,
        "successful_initial_ccrs": 1,
        "successful_interim_ccrs": 0,
        "successful_final_ccrs": 1,
        "failed_initial_ccrs": 0,
        "failed_interim_ccrs": 0,
        "failed_final_ccrs": 0,
        "ccr_timeouts": 0,
        "billed_secs": debited,
        "killed_calls": 0,
    }
    assert set(expected) | {"ccr_avg_response_time", "ccr_responses_time"} == set(STAT_NAMES)
    for stat, value in expected.items():
        assert samples[CHARGING_METRICS[stat][0]] == value, stat
    average = samples["b2bua_ccr_avg_response_time"]
    assert 0 < average < 1000  # ms, on loopback
    assert samples["b2bua_ccr_responses_time_total"] == pytest.approx(2 * average)
    assert samples["b2bua_calls_active"] == 0
    assert samples['b2bua_calls_ended_total{reason="caller hung up"}'] == 1
    assert samples['b2bua_sip_requests_received_total{method="INVITE"}'] >= 1
    assert samples['b2bua_sip_requests_received_total{method="BYE"}'] >= 1
    assert samples['b2bua_sip_responses_sent_total{code="200"}'] >= 2  # INVITE and BYE
    assert samples['b2bua_sip_responses_received_total{code="200"}'] >= 2
    assert samples["b2bua_diameter_peers_up"] == 1
    assert samples['b2bua_diameter_peer_up{peer="ocs"}'] == 1
    assert samples["b2bua_diameter_pending_requests"] == 0
    assert samples['b2bua_diameter_answer_latency_seconds{peer="ocs"}'] > 0
    # CCA-I and CCA-T, each counted once; every bucket is cumulative up to +Inf.
    histogram = 'b2bua_cca_latency_seconds_bucket{peer="ocs",le="%s"}'
    assert samples['b2bua_cca_latency_seconds_count{peer="ocs"}'] == 2
    assert samples[histogram % "+Inf"] == 2 and samples[histogram % "10"] == 2
    buckets = [value for name, value in samples.items() if name.startswith(histogram[:-8])]
    assert len(buckets) == len(CCA_LATENCY_BOUNDS) + 1 and buckets == sorted(buckets)
    assert samples['b2bua_cca_latency_seconds_sum{peer="ocs"}'] > 0

    (record,) = [json.loads(line) for line in lab.cdr.read_text().splitlines()]
    assert record["end_reason"] == "caller hung up" and record["sip_status"] is None
    assert 2.0 <= record["duration"] <= 2.9
    assert record["billed_secs"] == debited
    session_ids = {str(e["session_id"]) for e in lab.ledger_entries()}
    assert record["ro_session_ids"] == sorted(session_ids)
    assert record["ro_result_codes"] == [2001]  # the CCA-I's: the CDR leaves before the CCA-T
    assert record["kind"] == "call"
    assert record["caller"].startswith("sip:+15550101@") or "15550101" in record["caller"]
    assert "15550199" in record["callee"]
    assert record["route"] == "all" and record["incoming_trunk_id"] == "sbc-in"
    assert (
        record["a_call_id"] and record["b_call_id"] and record["a_call_id"] != record["b_call_id"]
    )
    times = [record["invite_time"], record["answer_time"], record["end_time"]]
    assert all(t.endswith("Z") and len(t) == len("2026-01-01T00:00:00.000Z") for t in times)
    parsed = [datetime.fromisoformat(t) for t in times]
    assert parsed == sorted(parsed)
    assert (parsed[2] - parsed[1]).total_seconds() == pytest.approx(record["duration"], abs=0.002)
