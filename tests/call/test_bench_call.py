"""Micro-benchmark of one whole call through the SIP endpoint and the call map (no charging).

Run with ``make bench-micro``; by default the suite passes ``--benchmark-disable`` and the
body runs once as a smoke test.  Each round is INVITE, 180, 200, ACK, BYE and its 200 on a
fake UDP socket in virtual time; the SBC's and the callee's side (building and parsing
their messages) are included.  ``bench/call_memory.py`` measures the memory per call.
"""

from __future__ import annotations

from itertools import count
from typing import Any

import pytest

from b2bua.sip.message import Request, Response, parse_message
from tests.call.fakes import SDP_B
from tests.call.test_callmap import CALLEE, World, in_dialog, invite, reply


def _last_to_callee(world: World) -> Request:
    data = next(d for d, addr in reversed(world.udp.sent) if addr == CALLEE)
    message = parse_message(data)
    assert isinstance(message, Request)
    return message


def whole_call(world: World, n: int) -> None:
    """One call from INVITE to the 200 for the B-leg BYE; nothing is left but transactions."""
    call_id = f"call-{n}@sbc"
    world.send(invite(call_id=call_id, branch=f"z9hG4bK-inv{n}"))
    b_invite = _last_to_callee(world)
    world.send(reply(b_invite, 180, tag=f"tb{n}"), CALLEE)
    world.send(reply(b_invite, 200, body=SDP_B, tag=f"tb{n}"), CALLEE)
    ok = parse_message(world.udp.sent[-1][0])
    assert isinstance(ok, Response) and ok.status == 200
    world.send(in_dialog("ACK", ok, cseq=1, branch=f"z9hG4bK-ack{n}", call_id=call_id))
    world.send(in_dialog("BYE", ok, cseq=2, branch=f"z9hG4bK-bye{n}", call_id=call_id))
    bye = _last_to_callee(world)
    assert bye.method == "BYE"
    world.send(reply(bye, 200, tag=f"tb{n}"), CALLEE)
    world.udp.sent.clear()
    if n % 100 == 0:
        world.advance(1.0)  # the transactions' timers run, as they would


@pytest.mark.benchmark
def test_bench_whole_call(benchmark: Any) -> None:
    """INVITE to BYE of one call (both legs), endpoint and call map."""
    world = World()
    numbers = count()
    benchmark(lambda: whole_call(world, next(numbers)))
    assert world.callmap.active == 0
