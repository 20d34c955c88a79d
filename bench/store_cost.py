"""What [store] mode = realtime costs Redis: commands and bytes per call, memory per stored call.

Real processes on loopback: a private redis-server (no persistence), ``twistd b2bua`` with the
lab OCS in process and ``[store] mode = realtime``, SIPp on both legs. N charged calls are
placed at once and held; while they are all up, Redis's ``used_memory`` and the number of
stored records are read; when they have all ended, ``INFO commandstats`` and the network
counters give the commands and bytes the store sent per call (lease renewals and adoption
checks included: they are per instance, not per call, and small for a short run).

Reported, never asserted (speed and size depend on the machine). Bounded: SIPp has global
timeouts and every wait a deadline; every process started here is stopped at the end.

    python bench/store_cost.py                 # 50 calls of 8 s, CCR-U every 3 s
    python bench/store_cost.py --calls 200 --hold 10000
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))

from tests.integration.test_ocs_shared_redis import redis_command  # noqa: E402
from tests.ocs.redis_fixture import RedisServer, start_redis_server  # noqa: E402
from tests.support.daemon import Daemon  # noqa: E402
from tests.support.ports import free_port  # noqa: E402
from tests.support.sipp import Sipp, run_until_done  # noqa: E402

PREFIX = "bench:store:"
INSTANCE = "bench-1"


def info(server: RedisServer, section: str) -> dict[str, str]:
    """``INFO section`` as a dict."""
    text: str = redis_command(server, "INFO", section)
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def command_counts(server: RedisServer) -> dict[str, int]:
    """calls per command (``cmdstat_hset: calls=3,...``)."""
    counts = {}
    for key, value in info(server, "commandstats").items():
        if key.startswith("cmdstat_"):
            fields = dict(item.split("=") for item in value.split(","))
            counts[key[len("cmdstat_") :]] = int(fields["calls"])
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--hold", type=int, default=8000, help="talk time of each call (ms)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="store-cost-"))
    redis = start_redis_server(work / "redis")
    sip_port, callee_port, ocs_port = free_port(), free_port(), free_port()
    (work / "accounts.json").write_text(
        json.dumps({"accounts": [{"subscriber": "+15550101", "seconds": 10**9}]})
    )
    config = work / "b2bua.conf"
    config.write_text(
        f"[sip]\nlisten = udp:127.0.0.1:{sip_port}\n"
        f"[calls]\ntrusted = 127.0.0.0/8\n"
        f"[route:all]\nnext_hop = 127.0.0.1:{callee_port}\ncharging = orig\n"
        "[diameter]\norigin_host = b2bua.bench\norigin_realm = bench\n"
        f"destination_realm = bench\n[peer:ocs]\nuri = aaa://127.0.0.1:{ocs_port}\n"
        f"host = ocs.bench\n[ocs]\nenabled = yes\nlisten = aaa://127.0.0.1:{ocs_port}\n"
        "origin_host = ocs.bench\norigin_realm = bench\naccounts = accounts.json\n"
        "[charging]\nreservation_units = 4\ninterim_update_credits = 4\ntimer_buffer = 1\n"
        "[metrics]\nlisten =\n[log]\nlevel = warn\n"
        f"[store]\nmode = realtime\nurl = redis://{redis.host}:{redis.port}/0\n"
        f"key_prefix = {PREFIX}\ninstance_id = {INSTANCE}\n"
    )
    daemon = Daemon(config, log_path=work / "b2bua.log")
    sipps: list[Sipp] = []
    try:
        deadline = time.monotonic() + 30
        while redis_command(redis, "GET", f"{PREFIX}lease:{INSTANCE}") is None:
            assert time.monotonic() < deadline, daemon.log_text()
            time.sleep(0.1)
        time.sleep(1.0)  # the Diameter peer opens
        memory_before = int(info(redis, "memory")["used_memory"])
        commands_before = command_counts(redis)
        stats_before = info(redis, "stats")
        callee = Sipp("uas", work, callee_port, calls=args.calls, timeout=120).start()
        caller = Sipp(
            "charged_uac.xml",
            work,
            free_port(),
            remote=f"127.0.0.1:{sip_port}",
            calls=args.calls,
            rate=max(10.0, args.calls / 2),
            timeout=120,
            service="15550199",
            extra=["-key", "caller", "+15550101", "-d", str(args.hold), "-l", str(args.calls)],
        ).start()
        sipps += [callee, caller]
        # All calls up: sample the stored records and Redis's memory at their peak.
        peak_records, peak_memory = 0, memory_before
        hold_deadline = time.monotonic() + args.hold / 1000 + args.calls / 10 + 10
        while time.monotonic() < hold_deadline and caller.process.poll() is None:  # type: ignore[union-attr]
            records = int(redis_command(redis, "HLEN", f"{PREFIX}calls:{INSTANCE}"))
            if records >= peak_records:
                peak_records = records
                peak_memory = int(info(redis, "memory")["used_memory"])
            time.sleep(0.2)
        statuses = run_until_done(caller, callee, timeout=120)
        time.sleep(1.0)  # the last deletes
        commands_after = command_counts(redis)
        stats_after = info(redis, "stats")
        sent = {
            name: commands_after.get(name, 0) - commands_before.get(name, 0)
            for name in sorted(set(commands_after) | set(commands_before))
            if commands_after.get(name, 0) != commands_before.get(name, 0)
            and name not in ("info", "hlen")  # this script's own sampling
        }
        total = sum(sent.values())
        bytes_in = int(stats_after["total_net_input_bytes"]) - int(
            stats_before["total_net_input_bytes"]
        )
        calls = args.calls
        per_record = (peak_memory - memory_before) / peak_records if peak_records else 0.0
        report = {
            "calls": calls,
            "hold_ms": args.hold,
            "sipp_status": statuses,
            "redis_commands": sent,
            "commands_per_call": round(total / calls, 2),
            "bytes_to_redis_per_call": round(bytes_in / calls),
            "records_at_peak": peak_records,
            "redis_memory_per_stored_call_bytes": round(per_record),
        }
        print(json.dumps(report, indent=2))
        return 0 if statuses == [0, 0] else 1
    finally:
        for sipp in sipps:
            sipp.stop()
        daemon.stop()
        redis.stop()


if __name__ == "__main__":
    raise SystemExit(main())
