"""Memory and CPU per call in the call layer, measured in process (tracemalloc, cProfile).

Runs the real SIP endpoint and call map (``tests.call.test_callmap.World``: a fake UDP
socket, virtual time) and sets up N calls (INVITE, 180, 200, ACK), lets the INVITE
transactions run out (Timer L/M, 32 s of virtual time), then reports the bytes still
allocated per live call and the source lines that hold most of them (and, before, the
bytes per call while the INVITE transactions were still there).  No charging: the
Diameter session's share is measured by the harness memory run (``bench/run.py``).

``--cpu`` instead runs N whole calls (INVITE, 180, 200, ACK, BYE, 200) one after the
other and reports the CPU time per call (the SBC and callee sides, which parse what b2bua
sends and build its input, included), then profiles more of them.

    python bench/call_memory.py [--calls N] [--top K] [--cpu]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from b2bua.sip.message import Request, Response, parse_message
from tests.call.fakes import SDP_B
from tests.call.test_callmap import CALLEE, World, in_dialog, invite, reply


def _last_to(world: World, to: tuple[str, int]) -> Request | None:
    for data, addr in reversed(world.udp.sent):
        if addr == to:
            message = parse_message(data)
            return message if isinstance(message, Request) else None
    return None


def _call(world: World, n: int, *, keep_ok: bool = False) -> None:
    """One call up to the ACK, with its own Call-ID, tag and branches."""
    call_id = f"call-{n}@sbc"
    world.send(invite(call_id=call_id, branch=f"z9hG4bK-inv{n}"))
    b_invite = _last_to(world, CALLEE)
    assert b_invite is not None and b_invite.method == "INVITE"
    world.send(reply(b_invite, 180, tag=f"tb{n}"), CALLEE)
    world.send(reply(b_invite, 200, body=SDP_B, tag=f"tb{n}"), CALLEE)
    ok = parse_message(world.udp.sent[-1][0])
    assert not isinstance(ok, Request) and ok.status == 200, ok
    world.send(in_dialog("ACK", ok, cseq=1, branch=f"z9hG4bK-ack{n}", call_id=call_id))
    if keep_ok:
        _last_ok[:] = [ok]
    world.udp.sent.clear()


def measure(calls: int, top: int) -> float:
    """Bytes per established call; prints the top allocation sites."""
    world = World()
    _call(world, -1)  # warm caches and lazily built tables
    world.advance(40)
    gc.collect()
    tracemalloc.start(1)
    before = tracemalloc.take_snapshot()
    for n in range(calls):
        _call(world, n)
    gc.collect()
    young = tracemalloc.take_snapshot().compare_to(before, "lineno")
    print(f"{calls} calls set up, their INVITE transactions still there: "
          f"{sum(stat.size_diff for stat in young) / calls:.0f} B per call")  # fmt: skip
    world.advance(40)  # INVITE transactions end (Timer L 64*T1 on the UAS side)
    gc.collect()
    after = tracemalloc.take_snapshot()
    assert world.callmap.active == calls + 1, world.callmap.active
    stats = after.compare_to(before, "lineno")
    total = sum(stat.size_diff for stat in stats)
    print(f"{calls} established calls: {total / calls:.0f} B per call "
          f"({len(world.endpoint.table)} transactions left)")  # fmt: skip
    for stat in stats[:top]:
        frame = stat.traceback[0]
        print(f"{stat.size_diff / calls:8.0f} B {stat.count_diff / calls:6.1f} blocks  "
              f"{frame.filename.split('/b2bua/')[-1]}:{frame.lineno}")  # fmt: skip
    return total / calls


def _hang_up(world: World, n: int) -> None:
    """The caller's BYE for call ``n`` and the callee's 200 to the B-leg BYE."""
    world.send(in_dialog("BYE", _last_ok[0], cseq=2, branch=f"z9hG4bK-bye{n}",
                         call_id=f"call-{n}@sbc"))  # fmt: skip
    bye = _last_to(world, CALLEE)
    assert bye is not None and bye.method == "BYE", bye
    world.send(reply(bye, 200, tag=f"tb{n}"), CALLEE)
    world.udp.sent.clear()


#: The caller's 200 of the call set up last (its To tag goes into the BYE).
_last_ok: list[Response] = []


def cpu(calls: int, top: int) -> float:
    """Seconds of CPU per whole call, then (``top`` > 0) the top functions by own time."""
    world = World()
    _calls(world, range(-200, 0))  # warm up
    gc.collect()
    started = time.process_time()
    _calls(world, range(calls))
    spent = (time.process_time() - started) / calls
    print(f"{calls} calls: {spent * 1e6:.0f} us of CPU per call (SBC and callee side included)")
    if top > 0:
        profile = cProfile.Profile()
        profile.enable()
        _calls(world, range(calls, calls + calls // 2))
        profile.disable()
        pstats.Stats(profile).sort_stats("tottime").print_stats(top)
    return spent


def _calls(world: World, numbers: range) -> None:
    for n in numbers:
        _call(world, n, keep_ok=True)
        _hang_up(world, n)
        if n % 100 == 0:
            world.advance(1.0)  # transaction timers run, as they would


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--cpu", action="store_true", help="CPU per whole call instead")
    args = parser.parse_args()
    if args.cpu:
        cpu(args.calls, args.top)
    else:
        measure(args.calls, args.top)


if __name__ == "__main__":
    main()
